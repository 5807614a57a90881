"""The built-in demo, end to end and headless: a small Blender scene and a generated painting,
stylized with the same pipeline as the Stylize Scene button, then rendered.

    python -m ins_blender.demo --out runs/demo          (Python with the `bpy` module; `make demo`)

Writes into --out: style.png (the generated demo painting), job/ (the INS job folder: dataset,
checkpoints, result with the textured mesh and renders), demo.blend (the scene with the imported
stylized mesh, render engine set to INS), cycles_mesh.png (Cycles render of the imported mesh),
ins_engine.png (the INS render engine's F12 of the same camera) and content_vs_stylized.png.
Nothing is downloaded; it runs on the CPU in a few minutes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import bpy

from ins_core.data.demo_scene import write_demo_style
from ins_core.errors import InputError

from . import register, unregister
from .batch import BatchError, run_batch
from .demo_scene import build_demo_scene


def _render(scene, engine: str, path: Path) -> None:
    scene.render.engine = engine
    scene.render.filepath = str(path)
    scene.render.image_settings.file_format = "PNG"
    bpy.ops.render.render(write_still=True)


def run_demo(out: Path, preset: str = "preview", device: str = "auto", force: bool = False) -> int:
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        if not force:
            raise InputError(f"'{out}' is not empty; pass --force to replace the previous demo or choose another --out.")
        if not (out / "job" / "job.json").exists() and not (out / "style.png").exists():
            raise InputError(f"'{out}' holds files that are not a previous demo; choose another --out.")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    style = write_demo_style(out / "style.png", size=256)
    scene = build_demo_scene()
    register()
    try:
        result = run_batch(scene, [style], "nerf", preset, out / "job", source="auto_rig", device=device,
                           outputs=("mesh", "render_engine"), samples=16)
        scene.render.film_transparent = False
        camera = scene.camera
        # Render the stylized mesh alone: it sits where the source objects are.
        for obj in scene.objects:
            if obj.type == "MESH" and obj.name != result.object_name:
                obj.hide_render = True
        _render(scene, "CYCLES", out / "cycles_mesh.png")
        scene.ins.render_job_dir = str(result.job_dir)
        _render(scene, "INS", out / "ins_engine.png")
        for obj in scene.objects:
            obj.hide_render = False
        scene.camera = camera
        bpy.ops.wm.save_as_mainfile(filepath=str(out / "demo.blend"), copy=True)
        print(f"demo: stylized in {result.seconds:.0f} s; results in {out}")
        return 0
    finally:
        unregister()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ins_blender.demo", description="Stylize the built-in demo scene headless.")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--preset", default="preview", choices=("preview", "standard", "high"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    parser.add_argument("--force", action="store_true", help="replace a previous demo in --out")
    args = parser.parse_args(argv)
    try:
        return run_demo(args.out, args.preset, args.device, args.force)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BatchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
