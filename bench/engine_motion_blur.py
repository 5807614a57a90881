"""The INS render engine with Motion Blur, through Blender's own F12 (the `bpy` module): `make
demo`'s camera keyed to slide sideways across frame 1, rendered without motion blur and with
shutters of a half and a whole frame, side by side, and each frame's time (JSON lines with the
hardware).

    python bench/engine_motion_blur.py --blend runs/demo/demo.blend --job runs/demo/job \\
        --out docs/figures/ins_engine_motion_blur.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import bpy
import torch
from mathutils import Vector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware  # noqa: E402
from bench.engine_depth_of_field import combined_picture  # noqa: E402
from bench.engine_passes import render_exr  # noqa: E402
from ins_core.eval.pictures import image_grid, save_png  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blend", type=Path, required=True, help="a scene with a camera (make demo's demo.blend)")
    parser.add_argument("--job", type=Path, required=True, help="a finished INS job folder")
    parser.add_argument("--out", type=Path, required=True, help="the picture (PNG)")
    parser.add_argument("--size", type=int, default=256, help="the frame's longer side in pixels")
    parser.add_argument("--slide", type=float, default=0.12, help="how far the camera slides in a frame, scene units")
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
        camera = scene.camera
        here, sideways = camera.location.copy(), Vector(camera.matrix_world.col[0].xyz).normalized()
        for frame, share in ((0, -1.0), (2, 1.0)):  # through its own place at frame 1
            camera.location = here + sideways * (share * args.slide)
            camera.keyframe_insert("location", frame=frame)
        scene.frame_set(1)
        emit_hardware(torch.device("cpu"))
        pictures = []
        with tempfile.TemporaryDirectory() as folder:
            render_exr(Path(folder) / "warm.exr")  # starts the render server and loads the model
            for shutter in (0.0, 0.5, 1.0):
                scene.render.use_motion_blur, scene.render.motion_blur_shutter = shutter > 0, max(shutter, 0.01)
                channels, seconds = render_exr(Path(folder) / "frame.exr")
                emit("ins_engine_motion_blur_s", size=f"{scene.render.resolution_x}x{scene.render.resolution_y}",
                     samples=int(args.samples), shutter=shutter, slide_per_frame=args.slide, seconds=round(seconds, 3))
                label = "no motion blur" if shutter == 0 else f"shutter {shutter:g} frame"
                pictures.append((combined_picture(channels), f"{label}, {args.slide:g} a frame sideways"))
        save_png(args.out, image_grid([p for p, _ in pictures], [label for _, label in pictures]))
        print(f"wrote {args.out}")
    finally:
        ins_blender.unregister()


if __name__ == "__main__":
    main()
