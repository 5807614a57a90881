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
import math
import shutil
import sys
from pathlib import Path

import bpy

from ins_core.data.demo_scene import write_demo_style
from ins_core.errors import InputError

from . import register, unregister
from .batch import BatchError, run_batch

OBJECTS = (
    # (primitive, location, scale, colour)
    ("sphere", (-0.45, -0.2, 0.35), 0.32, (0.85, 0.18, 0.1)),
    ("cube", (0.4, -0.25, 0.28), 0.26, (0.1, 0.3, 0.85)),
    ("torus", (0.05, 0.45, 0.3), 0.28, (0.15, 0.65, 0.2)),
    ("cylinder", (0.0, 0.0, -0.05), 0.9, (0.7, 0.65, 0.55)),
)


def _material(name: str, colour) -> bpy.types.Material:
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*colour, 1.0)
    return material


def build_demo_scene() -> bpy.types.Scene:
    """Primitives on a pedestal, a sun, and a camera (the auto rig captures around them)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    for kind, location, scale, colour in OBJECTS:
        if kind == "sphere":
            bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0, location=location, segments=48, ring_count=24)
        elif kind == "cube":
            bpy.ops.mesh.primitive_cube_add(size=2.0, location=location, rotation=(0, 0, math.radians(30)))
        elif kind == "torus":
            bpy.ops.mesh.primitive_torus_add(location=location, rotation=(math.radians(90), 0, 0), major_radius=1.0, minor_radius=0.35)
        else:
            bpy.ops.mesh.primitive_cylinder_add(radius=1.0, depth=0.1, location=location, vertices=64)
        obj = bpy.context.active_object
        obj.scale = (scale, scale, scale)
        obj.data.materials.append(_material(f"demo_{kind}", colour))
    bpy.ops.object.light_add(type="SUN", rotation=(math.radians(40), 0, math.radians(30)))
    bpy.context.active_object.data.energy = 3.0
    world = bpy.data.worlds.new("demo_world")
    world.use_nodes = True
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (0.8, 0.8, 0.78, 1.0)  # a light backdrop for the dark demo palette
    background.inputs["Strength"].default_value = 1.0
    scene.world = world
    bpy.ops.object.camera_add(location=(2.6, -2.6, 1.9))
    camera = bpy.context.active_object
    direction = -camera.location.normalized()
    camera.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
    scene.camera = camera
    scene.render.resolution_x = scene.render.resolution_y = 128
    scene.cycles.samples = 16
    return scene


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
