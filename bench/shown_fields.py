"""Every stylized mesh shown renders its field: `make demo`'s imported mesh (As Captured, so Cycles
shows its colours as stylized) and a copy of it (Shift+D) moved, turned and scaled beside it,
through the INS engine's F12 and through Cycles; how near the two come (PSNR over the frame) and
the engine's time with one field and with two (JSON lines with the hardware), in one picture.

    python bench/shown_fields.py --blend runs/demo/demo.blend --job runs/demo/job \\
        --out docs/figures/ins_engine_two_fields.png

Nothing is set for the copy: the engine finds it among the objects the render shows.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import bpy
from mathutils import Vector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.blender_frames import (add_scene_arguments, as_the_field_shows, engine_beside_cycles, frame_size, opened_scene,  # noqa: E402
                                  psnr, render_exr, save_pictures)
from bench.common import emit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_arguments(parser)
    parser.add_argument("--cycles-samples", type=int, default=32)
    parser.add_argument("--move", type=float, nargs=3, default=(0.15, 0.8, 0.0), help="the copy's move, in scene units")
    parser.add_argument("--turn", type=float, default=60.0, help="the copy's turn about the vertical, degrees")
    parser.add_argument("--scale", type=float, default=0.6)
    args = parser.parse_args()

    from ins_blender import importer

    with opened_scene(args.blend, args.job, args.size) as scene:
        as_the_field_shows(scene)
        mesh = importer.import_result(scene, args.job, shading="CAPTURED")
        copy = mesh.copy()  # Shift+D keeps the object's custom properties: it names the same job
        copy.data = mesh.data.copy()
        for collection in mesh.users_collection:
            collection.objects.link(copy)
        copy.location += Vector(args.move)
        copy.rotation_euler.z, copy.scale = math.radians(args.turn), (args.scale,) * 3
        pictures = []
        with tempfile.TemporaryDirectory() as folder:
            render_exr(Path(folder) / "warm.exr")  # starts the render server and loads the model
            for copies in (False, True):
                copy.hide_render = not copies
                bpy.context.view_layer.update()
                engine, cycles, seconds = engine_beside_cycles(scene, Path(folder), args.cycles_samples)
                score = psnr(cycles, engine)
                emit("ins_engine_shown_fields", size=frame_size(scene), fields=2 if copies else 1, engine_seconds=round(seconds, 3),
                     cycles_samples=args.cycles_samples, psnr_meshes_vs_engine=round(score, 2))
                what = "the mesh and a copy (Shift+D)" if copies else "the mesh alone"
                pictures += [(engine, f"INS engine, {what}"), (cycles, f"the mesh{'es' if copies else ''} in Cycles: {score:.1f} dB")]
        save_pictures(args.out, pictures)


if __name__ == "__main__":
    main()
