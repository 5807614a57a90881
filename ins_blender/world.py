"""What lies behind the stylized field in an INS render: the world's colour, as Cycles shows it
where no object is, or nothing at all with Film > Transparent.

The field has no world of its own, so the engine asks its render server to lay the field over one
colour: the Background shader's Color times Strength when those are plain values, else (a sky
texture, an HDRI) the world's viewport colour, the colour Blender's own Workbench shows. Colours
are linear RGB, as Blender keeps them.
"""

from __future__ import annotations

import bpy

BLACK = (0.0, 0.0, 0.0)


def background_colour(scene) -> list[float] | None:
    """The linear RGB colour behind the field in `scene`'s renders; None with Film > Transparent."""
    if scene.render.film_transparent:
        return None
    world = scene.world
    if world is None:
        return list(BLACK)  # Cycles renders a scene without a world over black
    shader = _background_shader(world)
    if shader is not None:
        colour, strength = shader.inputs["Color"], shader.inputs["Strength"]
        if not colour.is_linked and not strength.is_linked:
            return [max(0.0, float(c) * float(strength.default_value)) for c in colour.default_value[:3]]
    return [max(0.0, float(c)) for c in world.color]


def _background_shader(world):
    """The Background node feeding the world's active output, when the world uses its nodes."""
    tree = world.node_tree
    # Blender 5 always uses a world's nodes (and warns on `use_nodes`); earlier ones may not.
    if tree is None or (bpy.app.version < (5, 0, 0) and not world.use_nodes):
        return None
    outputs = [node for node in tree.nodes if node.type == "OUTPUT_WORLD"]
    output = next((node for node in outputs if node.is_active_output), outputs[0] if outputs else None)
    if output is None or not output.inputs["Surface"].is_linked:
        return None
    source = output.inputs["Surface"].links[0].from_node
    return source if source.type == "BACKGROUND" else None
