"""Check Worker in the installed extension: Blender's own Python (no torch here) must get advice
that fits this Blender, and the Worker Python preference must work.

    blender -b --python tests/real_blender/check_worker.py
"""

import importlib
import sys

import bpy

PACKAGE = "bl_ext.user_default.ins_stylize"

worker_check = importlib.import_module(f"{PACKAGE}.worker_check")
own = worker_check.check_worker("", timeout=120)
print(f"Check Worker, Blender's own Python: {own.message}")
preference = bpy.context.preferences.addons[PACKAGE].preferences.worker_python
chosen = worker_check.check_worker(preference, timeout=120)
print(f"Check Worker, {preference}: {chosen.message}")
if own.ok or "Worker Python to a Python that has torch" not in own.message or not chosen.ok:
    sys.exit(1)
