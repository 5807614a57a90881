"""The INS render engine with the camera's Depth of Field, through Blender's own F12 (the `bpy`
module): the frame without it, then focused on one object and on another, side by side, and each
frame's time (JSON lines with the hardware).

    python bench/engine_depth_of_field.py --blend runs/demo/demo.blend --job runs/demo/job \\
        --near Cube --far Sphere --out docs/figures/ins_engine_depth_of_field.png

The .blend is `make demo`'s (its camera, world and objects to focus on); the job any finished INS job.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import bpy
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware  # noqa: E402
from bench.engine_passes import render_exr  # noqa: E402
from ins_core.eval.pictures import image_grid, save_png  # noqa: E402
from ins_core.render.passes import linear_to_srgb  # noqa: E402


def combined_picture(channels: dict[str, np.ndarray]) -> np.ndarray:
    linear = np.stack([channels[f"Combined.{c}"] for c in "RGB"], axis=-1)
    return (linear_to_srgb(torch.from_numpy(linear)).numpy() * 255 + 0.5).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blend", type=Path, required=True, help="a scene with a camera (make demo's demo.blend)")
    parser.add_argument("--job", type=Path, required=True, help="a finished INS job folder")
    parser.add_argument("--near", required=True, help="the object to focus on first")
    parser.add_argument("--far", required=True, help="the object to focus on then")
    parser.add_argument("--out", type=Path, required=True, help="the picture (PNG)")
    parser.add_argument("--size", type=int, default=256, help="the frame's longer side in pixels")
    parser.add_argument("--fstop", type=float, default=0.2, help="the camera's F-Stop")
    parser.add_argument("--samples", default="16", choices=("1", "4", "9", "16"), help="rays a pixel (the engine's Samples)")
    args = parser.parse_args()

    import ins_blender

    ins_blender.register()  # before the file opens, so its INS settings are read
    try:
        bpy.ops.wm.open_mainfile(filepath=str(args.blend.resolve()))
        scene = bpy.context.scene
        scene.ins.render_job_dir = str(args.job.resolve())
        scene.ins.render_samples = args.samples
        scene.render.engine = "INS"
        scale = args.size / max(scene.render.resolution_x, scene.render.resolution_y)
        scene.render.resolution_x, scene.render.resolution_y = round(scene.render.resolution_x * scale), round(scene.render.resolution_y * scale)
        scene.render.resolution_percentage = 100
        dof = scene.camera.data.dof
        emit_hardware(torch.device("cpu"))
        pictures = []
        with tempfile.TemporaryDirectory() as folder:
            render_exr(Path(folder) / "warm.exr")  # starts the render server and loads the model
            for focus in (None, args.near, args.far):
                dof.use_dof = focus is not None
                if focus is not None:
                    dof.focus_object, dof.aperture_fstop = bpy.data.objects[focus], args.fstop
                channels, seconds = render_exr(Path(folder) / "frame.exr")
                label = "no depth of field" if focus is None else f"focused on the {focus.lower()}, f/{args.fstop:g}"
                emit("ins_engine_depth_of_field_s", size=f"{scene.render.resolution_x}x{scene.render.resolution_y}",
                     samples=int(args.samples), focus=focus, fstop=args.fstop if focus else None, seconds=round(seconds, 3))
                pictures.append((combined_picture(channels), label))
        save_png(args.out, image_grid([p for p, _ in pictures], [label for _, label in pictures]))
        print(f"wrote {args.out}")
    finally:
        ins_blender.unregister()


if __name__ == "__main__":
    main()
