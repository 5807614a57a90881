"""The field following its object in the INS engine: `make demo`'s imported mesh (As Captured, so
Cycles shows its colours as stylized) in place, then moved, turned and scaled; each time the INS
engine's F12 of the field beside Cycles' render of the mesh, how near the two come (PSNR over the
frame) and the engine's time (JSON lines with the hardware), in one picture.

    python bench/field_placement.py --blend runs/demo/demo.blend --job runs/demo/job \\
        --out docs/figures/ins_engine_field_placement.png

Import Result makes the mesh the field's Placement (INS > Neural Render), since its job is the one
the engine renders; nothing else is set for the field to follow it.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import bpy  # noqa: F401 - (it provides mathutils)
from mathutils import Vector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.blender_frames import (add_scene_arguments, as_the_field_shows, engine_beside_cycles, frame_size, opened_scene,  # noqa: E402
                                  psnr, render_exr, save_pictures)
from bench.common import emit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_arguments(parser)
    parser.add_argument("--cycles-samples", type=int, default=32)
    parser.add_argument("--turn", type=float, default=40.0, help="degrees about the vertical")
    parser.add_argument("--scale", type=float, default=0.75)
    parser.add_argument("--move", type=float, nargs=3, default=(0.35, 0.0, 0.0), help="by how much, in scene units")
    args = parser.parse_args()

    from ins_blender import importer

    with opened_scene(args.blend, args.job, args.size) as scene:
        as_the_field_shows(scene)
        mesh = importer.import_result(scene, args.job, shading="CAPTURED")
        assert scene.ins.field_object == mesh  # the import placed the field by the mesh
        pictures = []
        with tempfile.TemporaryDirectory() as folder:
            render_exr(Path(folder) / "warm.exr")  # starts the render server and loads the model
            for placed in (False, True):
                if placed:
                    # About its own origin, the centre of its bounds since import.
                    mesh.location += Vector(args.move)
                    mesh.rotation_euler.z, mesh.scale = math.radians(args.turn), (args.scale,) * 3
                    bpy.context.view_layer.update()
                engine, cycles, seconds = engine_beside_cycles(scene, Path(folder), args.cycles_samples)
                score = psnr(cycles, engine)
                where = (f"moved {tuple(args.move)}, turned {args.turn:g} deg, scaled {args.scale:g}" if placed else "where captured")
                emit("ins_engine_field_placement", size=frame_size(scene), placed=placed, engine_seconds=round(seconds, 3),
                     cycles_samples=args.cycles_samples, psnr_mesh_vs_engine=round(score, 2))
                pictures += [(engine, f"INS engine, {where}"), (cycles, f"the mesh in Cycles: {score:.1f} dB")]
        save_pictures(args.out, pictures)


if __name__ == "__main__":
    main()
