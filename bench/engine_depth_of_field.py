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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.blender_frames import add_scene_arguments, combined_picture, frame_size, opened_scene, render_exr, save_pictures  # noqa: E402
from bench.common import emit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_arguments(parser)
    parser.add_argument("--near", required=True, help="the object to focus on first")
    parser.add_argument("--far", required=True, help="the object to focus on then")
    parser.add_argument("--fstop", type=float, default=0.2, help="the camera's F-Stop")
    parser.add_argument("--samples", default="16", choices=("1", "4", "9", "16"), help="rays a pixel (the engine's Samples)")
    args = parser.parse_args()

    with opened_scene(args.blend, args.job, args.size, args.samples) as scene:
        dof = scene.camera.data.dof
        pictures = []
        with tempfile.TemporaryDirectory() as folder:
            render_exr(Path(folder) / "warm.exr")  # starts the render server and loads the model
            for focus in (None, args.near, args.far):
                dof.use_dof = focus is not None
                if focus is not None:
                    dof.focus_object, dof.aperture_fstop = bpy.data.objects[focus], args.fstop
                channels, seconds = render_exr(Path(folder) / "frame.exr")
                label = "no depth of field" if focus is None else f"focused on the {focus.lower()}, f/{args.fstop:g}"
                emit("ins_engine_depth_of_field_s", size=frame_size(scene), samples=int(args.samples), focus=focus,
                     fstop=args.fstop if focus else None, seconds=round(seconds, 3))
                pictures.append((combined_picture(channels), label))
        save_pictures(args.out, pictures)


if __name__ == "__main__":
    main()
