"""Render a demo job's stylized mesh (result/mesh.glb, from any machine) in Cycles from the demo
scene's camera, as `make demo`'s cycles_mesh.png, and set it beside other pictures.

    python bench/demo_mesh_render.py --glb demo_result/mesh.glb --out /tmp/gpu_mesh.png \\
        --beside runs/demo/style.png "the generated painting" \\
        --beside runs/demo/cycles_mesh.png "CPU preview budget" --label "GPU preview budget" \\
        --grid docs/figures/demo_gpu_h200.png

Used for a job the GPU machine ran (PART=7 of bench/gpu_session.sh), whose machine has no Blender.
Needs the `bpy` module (the project's environment has it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import bpy
import numpy as np
from PIL import Image

from ins_blender.demo import render_still
from ins_blender.demo_scene import build_demo_scene
from ins_core.eval.pictures import image_grid, save_png


def render_glb(glb: Path, out: Path, samples: int) -> None:
    """The demo scene with its own meshes hidden and the glTF mesh imported in their place."""
    scene = build_demo_scene()
    scene.render.film_transparent = False
    for obj in scene.objects:
        if obj.type == "MESH":
            obj.hide_render = True
    bpy.ops.import_scene.gltf(filepath=str(glb))
    scene.cycles.samples = samples
    render_still(scene, "CYCLES", out)


def tile(path: Path, size: int) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.LANCZOS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glb", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the Cycles render (PNG)")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--label", default="the mesh")
    parser.add_argument("--beside", nargs=2, action="append", default=[], metavar=("PICTURE", "LABEL"))
    parser.add_argument("--grid", type=Path, help="write the pictures side by side here")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    render_glb(args.glb.resolve(), args.out.resolve(), args.samples)
    if args.grid:
        pictures = [(Path(p), label) for p, label in args.beside] + [(args.out, args.label)]
        save_png(args.grid, image_grid([tile(p, args.size) for p, _ in pictures], [label for _, label in pictures]))


if __name__ == "__main__":
    main()
