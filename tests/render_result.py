"""The render result of a Blender scene as the tests read it: saved as an uncompressed 32-bit
multilayer EXR (what a compositor or a pipeline gets) and read back pass by pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ins_core.data.exr import read_exr_channels

# A pass's channels as Blender names them in the EXR.
PASS_CHANNELS = {"Combined": "RGBA", "Depth": "Z", "Mist": "Z", "Normal": "XYZ"}


def render_passes(bpy, tmp_path: Path) -> dict[str, np.ndarray]:
    """F12 on the current scene: {pass name: [H, W] for one channel, [H, W, C] for more}, top row
    first, for each pass the view layer has."""
    settings = bpy.context.scene.render.image_settings
    if "media_type" in settings.bl_rna.properties:  # Blender 5: the container first, then the format
        settings.media_type = "MULTI_LAYER_IMAGE"
    settings.file_format, settings.exr_codec, settings.color_depth = "OPEN_EXR_MULTILAYER", "NONE", "32"
    bpy.ops.render.render()
    path = Path(tmp_path) / "passes.exr"
    bpy.data.images["Render Result"].save_render(str(path))
    channels = read_exr_channels(path)
    layer = bpy.context.view_layer.name
    passes = {}
    for name, letters in PASS_CHANNELS.items():
        found = [channels.get(f"{layer}.{name}.{letter}") for letter in letters]
        if all(values is not None for values in found):
            passes[name] = found[0] if len(found) == 1 else np.stack(found, axis=-1)
    return passes
