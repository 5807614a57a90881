"""Set the installed INS extension's Worker Python preference and save the preferences.

    blender -b --python tests/real_blender/set_worker_python.py -- /path/to/python
"""

import sys

import bpy

ADDON = "bl_ext.user_default.ins_stylize"

python = sys.argv[sys.argv.index("--") + 1]
addon = bpy.context.preferences.addons.get(ADDON)
if addon is None:
    sys.exit(f"The extension {ADDON} is not enabled; install it with `blender --command extension install-file -e`.")
addon.preferences.worker_python = python
bpy.ops.wm.save_userpref()
print(f"INS Worker Python: {addon.preferences.worker_python}")
