"""The built-in demo scene in Blender: primitives on a pedestal, a sun, a light backdrop and a
camera. Plain bpy (no numpy, no ins_core), so a real Blender without numpy can build it too:

    blender -b --python-expr "import bpy, bl_ext.user_default.ins_stylize.demo_scene as d; \
        d.build_demo_scene(); bpy.ops.wm.save_as_mainfile(filepath='/tmp/demo.blend')"
"""

from __future__ import annotations

import math

import bpy

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
    scene.render.resolution_x = scene.render.resolution_y = 256  # the demo's pictures (training views: the preset's size)
    scene.cycles.samples = 16
    return scene
