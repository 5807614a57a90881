"""The built-in demo, end to end and headless: a small Blender scene and a generated painting,
stylized with the same pipeline as the Stylize Scene button, then rendered.

    python -m ins_blender.demo --out runs/demo          (Python with the `bpy` module; `make demo`)

Writes into --out: style.png (the generated demo painting), job/ (the INS job folder: dataset,
checkpoints, result with the textured mesh and renders), demo.blend (the scene with the imported
stylized mesh, render engine set to INS), cycles_mesh.png (Cycles render of the imported mesh),
ins_engine.png (the INS render engine's F12 of the same camera) and overview.png (the training view
nearest the scene camera, the painting, and those two renders side by side: the README's picture).
Nothing is downloaded; it runs on the CPU in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import bpy
import numpy as np

from ins_core.data.demo_scene import write_demo_style
from ins_core.data.images import load_rgb, resize_rgba
from ins_core.errors import InputError
from ins_core.eval.pictures import image_grid, save_png

from . import register, unregister
from .batch import BatchError, run_batch
from .demo_scene import build_demo_scene


def render_still(scene, engine: str, path: Path) -> None:
    """Render `scene` once with `engine` ("CYCLES", "INS", ...) to the PNG `path`."""
    scene.render.engine = engine
    scene.render.filepath = str(path)
    scene.render.image_settings.file_format = "PNG"
    bpy.ops.render.render(write_still=True)


def nearest_training_view(dataset: Path, camera_location) -> Path:
    """The training view (transforms_train.json under `dataset`) whose camera looks at the scene from
    the direction nearest to `camera_location`'s, both seen from the origin."""
    frames = json.loads((dataset / "transforms_train.json").read_text())["frames"]
    positions = np.array([[row[3] for row in frame["transform_matrix"][:3]] for frame in frames], dtype=np.float64)
    target = np.asarray(camera_location, dtype=np.float64)
    cosines = positions @ target / (np.linalg.norm(positions, axis=1) * np.linalg.norm(target) + 1e-12)
    return dataset / frames[int(np.argmax(cosines))]["file_path"]


def write_overview(out: Path, training_view: Path, size: int) -> Path:
    """overview.png in `out`: the training view, the painting (style.png), the stylized mesh in Cycles
    (cycles_mesh.png) and the INS render engine (ins_engine.png), each `size` pixels on its longer
    side, transparent pixels over white."""
    tiles, labels = [], []
    for path, label in ((training_view, "a training view (Cycles)"), (out / "style.png", "the generated painting"),
                        (out / "cycles_mesh.png", "stylized mesh in Cycles"), (out / "ins_engine.png", "INS render engine")):
        rgb = load_rgb(path, label)
        height, width = rgb.shape[:2]
        scale = size / max(height, width)
        tiles.append(resize_rgba((rgb * 255 + 0.5).astype(np.uint8), max(1, round(width * scale)), max(1, round(height * scale))))
        labels.append(f"{label}, {width}x{height}")
    path = out / "overview.png"
    save_png(path, image_grid(tiles, labels))
    return path


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
        # The import showed the stylized mesh in place of the objects it was made from (demo.blend
        # opens so; Show Originals brings them back).
        render_still(scene, "CYCLES", out / "cycles_mesh.png")
        scene.ins.render_job_dir = str(result.job_dir)
        render_still(scene, "INS", out / "ins_engine.png")
        scene.camera = camera
        write_overview(out, nearest_training_view(result.job_dir / "dataset", camera.matrix_world.translation),
                       max(scene.render.resolution_x, scene.render.resolution_y))
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
