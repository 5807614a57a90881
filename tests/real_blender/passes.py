"""Inside Blender, before `-f`: have the frame written as an uncompressed multilayer EXR with the
Z, Mist and Normal passes on and Film > Transparent off, so `check.sh` can read the INS engine's
Depth, Mist and Normal passes and the world behind the field back (ins_core/data/exr.py).

    blender -b out.blend -E INS --python tests/real_blender/passes.py -o OUT/passes_#### -f 1
"""

import bpy

scene = bpy.context.scene
scene.render.film_transparent = False
for layer in scene.view_layers:
    layer.use_pass_z = layer.use_pass_mist = layer.use_pass_normal = True
if scene.world is None:
    scene.world = bpy.data.worlds.new("World")
mist = scene.world.mist_settings  # a mist over the object's distances (3-5), so the pass is not flat
mist.start, mist.depth, mist.falloff = 2.0, 4.0, "LINEAR"
settings = scene.render.image_settings
if "media_type" in settings.bl_rna.properties:  # Blender 5: the container first, then the format
    settings.media_type = "MULTI_LAYER_IMAGE"
settings.file_format = "OPEN_EXR_MULTILAYER"
settings.exr_codec, settings.color_depth = "NONE", "32"
