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

import bpy  # noqa: F401 - (it provides mathutils)
from mathutils import Vector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.blender_frames import add_scene_arguments, combined_picture, frame_size, opened_scene, render_exr, save_pictures  # noqa: E402
from bench.common import emit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_arguments(parser)
    parser.add_argument("--slide", type=float, default=0.12, help="how far the camera slides in a frame, scene units")
    parser.add_argument("--samples", default="16", choices=("1", "4", "9", "16"), help="rays a pixel (the engine's Samples)")
    args = parser.parse_args()

    with opened_scene(args.blend, args.job, args.size, args.samples) as scene:
        camera = scene.camera
        here, sideways = camera.location.copy(), Vector(camera.matrix_world.col[0].xyz).normalized()
        for frame, share in ((0, -1.0), (2, 1.0)):  # through its own place at frame 1
            camera.location = here + sideways * (share * args.slide)
            camera.keyframe_insert("location", frame=frame)
        scene.frame_set(1)
        pictures = []
        with tempfile.TemporaryDirectory() as folder:
            render_exr(Path(folder) / "warm.exr")  # starts the render server and loads the model
            for shutter in (0.0, 0.5, 1.0):
                scene.render.use_motion_blur, scene.render.motion_blur_shutter = shutter > 0, max(shutter, 0.01)
                channels, seconds = render_exr(Path(folder) / "frame.exr")
                emit("ins_engine_motion_blur_s", size=frame_size(scene), samples=int(args.samples), shutter=shutter,
                     slide_per_frame=args.slide, seconds=round(seconds, 3))
                label = "no motion blur" if shutter == 0 else f"shutter {shutter:g} frame"
                pictures.append((combined_picture(channels), f"{label}, {args.slide:g} a frame sideways"))
        save_pictures(args.out, pictures)


if __name__ == "__main__":
    main()
