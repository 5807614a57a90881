"""Save the built-in demo scene (ins_blender/demo_scene.py, plain bpy) as a .blend, through the
installed extension, so the real Blender writes a file it can read.

    blender -b --python tests/real_blender/make_scene.py -- OUT.blend
"""

import importlib
import sys

import bpy

out = sys.argv[sys.argv.index("--") + 1]
demo_scene = importlib.import_module("bl_ext.user_default.ins_stylize.demo_scene")
scene = demo_scene.build_demo_scene()
scene.render.resolution_x, scene.render.resolution_y = 160, 90
bpy.ops.wm.save_as_mainfile(filepath=out)
print(f"saved {out}")
