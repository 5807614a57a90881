"""The arguments of the batch command (`blender -b scene.blend --command ins_stylize ...`, or after
`--` with `--python-expr`): the parser, its one-sentence errors, and the checks argparse cannot
make; the options named as the job's overrides are gathered in `args.overrides`. batch.py runs what
they ask.
"""

from __future__ import annotations

import argparse
import sys

from ins_core.errors import InputError
from ins_core.stylize_options import add_look_options

from . import presets

COMMAND = "ins_stylize"  # blender --command ins_stylize ...
DEVICE_NAMES = {"auto": "auto", "cpu": "cpu", "gpu": "mps" if sys.platform == "darwin" else "cuda",
                "cuda": "cuda", "mps": "mps"}
OUTPUT_NAMES = {"mesh": ["mesh"], "render_engine": ["render_engine"], "both": ["mesh", "render_engine"]}


def args_after_dashes(argv: list[str] | None) -> list[str]:
    """`argv` as given, else what follows `--` on Blender's command line (what belongs to INS)."""
    if argv is not None:
        return list(argv)
    return sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one sentence, no usage dump, no SystemExit
        raise InputError(f"Bad INS arguments: {message}; see `blender --command {COMMAND} --help`.")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"blender -b scene.blend --command {COMMAND}",
                description="Stylize a Blender scene with INS, headless.")
    p.add_argument("--style", action="append", required=True, help="style image (repeat for several)")
    p.add_argument("--mode", choices=("nerf", "sdf"), default="nerf")
    p.add_argument("--preset", choices=presets.ORDER, default="preview")
    p.add_argument("--views", type=int, help="cameras of the automatic rig (default: the preset's)")
    p.add_argument("--source", choices=("cameras", "animation", "auto_rig"),
                   help="where the views come from (default: scene cameras if any, else auto_rig)")
    p.add_argument("--collection", help="take the cameras from this collection")
    sphere = p.add_mutually_exclusive_group()
    sphere.add_argument("--hemisphere", dest="hemisphere", action="store_true", default=True)
    sphere.add_argument("--full-sphere", dest="hemisphere", action="store_false")
    p.add_argument("--resolution", type=int, help="longer side of the training views in pixels")
    p.add_argument("--samples", type=int, help="Cycles samples per training view")
    p.add_argument("--device", choices=tuple(DEVICE_NAMES), default="auto")
    p.add_argument("--outputs", choices=tuple(OUTPUT_NAMES), default="both")
    p.add_argument("--out", required=True, help="the job folder to create")
    p.add_argument("--python", default="", help="worker Python (default: the Worker Python preference, else Blender's own)")
    p.add_argument("--seed", type=int, default=0)
    add_look_options(p)
    p.add_argument("--keep-unseen", action="store_true", default=None,
                   help="keep the mesh's surfaces no training view sees (by default they are left out)")
    p.add_argument("--smooth", type=int, help="rounds of smoothing of the mesh's surface (default "
                                              f"{presets.core_presets.MESH_SMOOTH_ITERATIONS}; 0: the surface as extracted)")
    p.add_argument("--steps", metavar="PRETRAIN,STYLIZE",
                   help="training steps instead of the preset's (a quick check of the set-up: e.g. 200,30)")
    p.add_argument("--vgg-weights", help="local VGG-16 weights file")
    p.add_argument("--allow-download", action="store_true", help="allow downloading the VGG-16 weights")
    p.add_argument("--no-import", action="store_true", help="do not add the mesh to the scene")
    p.add_argument("--shading", choices=("lit", "captured"),
                   help="the imported mesh's material: lit (a Principled BSDF, taking the scene's lights) or captured (an "
                        "Emission: the colours as stylized, whatever the lights); default: the scene's INS setting (lit)")
    p.add_argument("--save", help="save a copy of the .blend with the imported result here")
    p.add_argument("--resume", action="store_true", help="continue the job already in --out")
    p.add_argument("--timeout", type=float, help="give up (cancel) after this many seconds")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(args_after_dashes(argv))
    if args.views is not None and args.views < 1:
        raise InputError(f"--views is {args.views}; use at least 1 (about 24-100).")
    if args.resolution is not None and args.resolution < 8:
        raise InputError(f"--resolution is {args.resolution}; use at least 8 pixels.")
    if args.samples is not None and args.samples < 1:
        raise InputError(f"--samples is {args.samples}; use at least 1.")
    if args.smooth is not None and args.smooth < 0:
        raise InputError(f"--smooth is {args.smooth}; use 0 (no smoothing) or more.")
    # Options named as the job's overrides, passed on only when given (else the job's defaults hold).
    args.overrides = {name: getattr(args, name) for name in ("stroke_scale", "palette_weight", "palette_spread", "consistency_weight", "tv_weight",
                                                                "style_detail")
                      if getattr(args, name) is not None}
    if args.keep_unseen:
        args.overrides["mesh_keep_unseen"] = True
    if args.smooth is not None:
        args.overrides["mesh_smooth"] = args.smooth
    if args.steps is not None:
        parts = args.steps.split(",")
        if len(parts) != 2 or not all(x.strip().isdigit() and int(x) > 0 for x in parts):
            raise InputError(f"--steps is {args.steps!r}; give two positive whole numbers, pre-training and stylization steps, e.g. 200,30.")
        args.overrides.update(pretrain_steps=int(parts[0]), stylize_steps=int(parts[1]))
    return args
