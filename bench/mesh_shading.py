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
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware  # noqa: E402
from ins_core.eval.pictures import image_grid, save_png  # noqa: E402


def render_png(path: Path) -> np.ndarray:
    bpy.ops.render.render()
    bpy.data.images["Render Result"].save_render(str(path))
    return np.asarray(Image.open(path).convert("RGB"))


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    error = np.mean((image.astype(np.float64) / 255 - reference.astype(np.float64) / 255) ** 2)
    return float(10 * np.log10(1.0 / max(error, 1e-12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blend", type=Path, required=True, help="make demo's demo.blend")
    parser.add_argument("--job", type=Path, required=True, help="its finished INS job folder")
    parser.add_argument("--out", type=Path, required=True, help="the picture (PNG)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--cycles-samples", type=int, default=32)
    args = parser.parse_args()

    import ins_blender
    from ins_blender import importer

    ins_blender.register()  # before the file opens, so its INS settings are read
    try:
        bpy.ops.wm.open_mainfile(filepath=str(args.blend.resolve()))
        scene = bpy.context.scene
        scene.render.resolution_x = scene.render.resolution_y = args.size
        scene.render.resolution_percentage = 100
        scene.render.film_transparent = False
        scene.view_settings.view_transform = "Standard"  # the field's colours as they are
        scene.render.dither_intensity = 0.0
        scene.ins.render_job_dir = str(args.job.resolve())
        emit_hardware(torch.device("cpu"))
        for obj in scene.objects:  # the scene's own meshes and any earlier import give way
            if obj.type == "MESH":
                obj.hide_render = True
        pictures = []
        with tempfile.TemporaryDirectory() as folder:
            scene.render.engine = "INS"
            engine = render_png(Path(folder) / "engine.png")
            pictures.append((engine, "the INS engine (the field)"))
            scene.render.engine, scene.cycles.samples = "CYCLES", args.cycles_samples
            for shading, label in (("LIT", "Lit"), ("CAPTURED", "As Captured")):
                mesh = importer.import_result(scene, args.job, shading=shading)
                image = render_png(Path(folder) / f"{shading}.png")
                mesh.hide_render = True
                score = psnr(image, engine)
                emit("mesh_shading_psnr_vs_engine", shading=shading, size=f"{args.size}x{args.size}",
                     cycles_samples=args.cycles_samples, psnr=round(score, 2))
                pictures.append((image, f"the mesh in Cycles, {label}: {score:.1f} dB"))
        save_png(args.out, image_grid([p for p, _ in pictures], [label for _, label in pictures]))
        print(f"wrote {args.out}")
    finally:
        ins_blender.unregister()


if __name__ == "__main__":
    main()
