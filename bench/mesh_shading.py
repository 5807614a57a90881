"""The imported stylized mesh in Cycles with each Shading (Lit, As Captured) beside the INS
engine's own frame of the field, from `make demo`'s camera, with how near each comes to the field
(PSNR over the frame; JSON lines with the hardware), in one picture.

    python bench/mesh_shading.py --blend runs/demo/demo.blend --job runs/demo/job \\
        --out docs/figures/mesh_shading.png

The .blend is `make demo`'s (its camera, lights, world and the scene's own objects, hidden here).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import bpy
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.blender_frames import add_scene_arguments, as_the_field_shows, frame_size, opened_scene, psnr, save_pictures  # noqa: E402
from bench.common import emit  # noqa: E402


def render_png(path: Path) -> np.ndarray:
    bpy.ops.render.render()
    bpy.data.images["Render Result"].save_render(str(path))
    return np.asarray(Image.open(path).convert("RGB"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_arguments(parser)
    parser.add_argument("--cycles-samples", type=int, default=32)
    args = parser.parse_args()

    from ins_blender import importer

    with opened_scene(args.blend, args.job, args.size) as scene:
        as_the_field_shows(scene)
        # The field shows where its mesh is shown: the first import places it for the engine's frame.
        meshes = {"LIT": importer.import_result(scene, args.job, shading="LIT")}
        pictures = []
        with tempfile.TemporaryDirectory() as folder:
            engine = render_png(Path(folder) / "engine.png")
            pictures.append((engine, "the INS engine (the field)"))
            scene.render.engine, scene.cycles.samples = "CYCLES", args.cycles_samples
            for shading, label in (("LIT", "Lit"), ("CAPTURED", "As Captured")):
                mesh = meshes.get(shading) or importer.import_result(scene, args.job, shading=shading)
                image = render_png(Path(folder) / f"{shading}.png")
                mesh.hide_render = True
                score = psnr(image, engine)
                emit("mesh_shading_psnr_vs_engine", shading=shading, size=frame_size(scene),
                     cycles_samples=args.cycles_samples, psnr=round(score, 2))
                pictures.append((image, f"the mesh in Cycles, {label}: {score:.1f} dB"))
        save_pictures(args.out, pictures)


if __name__ == "__main__":
    main()
