"""What the world gives an INS render: the colour behind the stylized field, as Cycles shows it
where no object is (or nothing at all with Film > Transparent), and the Mist pass's settings.

The field has no world of its own, so the engine asks its render server to lay the field over one
colour: the Background shader's Color times Strength when those are plain values, else (a sky
texture, an HDRI) the world's viewport colour, the colour Blender's own Workbench shows. Colours
are linear RGB, as Blender keeps them. A frame whose field is hidden is the world alone
(`empty_passes`).
"""

from __future__ import annotations

import array

import bpy

from ins_core.protocol import NO_DEPTH

BLACK = (0.0, 0.0, 0.0)
# The falloff of World > Mist Pass as the power Cycles raises the mist amount to.
MIST_EXPONENTS = {"QUADRATIC": 2.0, "LINEAR": 1.0, "INVERSE_QUADRATIC": 0.5}
NO_WORLD_MIST = (0.0, 100.0, 1.0)  # what Cycles' Mist pass uses in a scene without a world (measured)


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


def mist_settings(scene) -> tuple[float, float, float]:
    """(start, depth, falloff exponent) of the scene's Mist pass, as Cycles reads them."""
    world = scene.world
    if world is None:
        return NO_WORLD_MIST
    mist = world.mist_settings
    return float(mist.start), float(mist.depth), MIST_EXPONENTS[mist.falloff]


def empty_passes(width: int, height: int, background: list[float] | None, depth: bool, mist: bool,
                 normal: bool) -> dict[str, array.array]:
    """The render passes of a frame with no field in it, flat as `RenderPass.rect` takes them: the
    world's colour (nothing with Film > Transparent), and where the passes are asked for, what the
    render server writes where the field is empty: no depth, full mist, no normal."""
    pixels = width * height
    colour = (0.0, 0.0, 0.0, 0.0) if background is None else (*background, 1.0)
    passes = {"Combined": array.array("f", colour) * pixels}
    for name, asked, value, channels in (("Depth", depth, NO_DEPTH, 1), ("Mist", mist, 1.0, 1), ("Normal", normal, 0.0, 3)):
        if asked:
            passes[name] = array.array("f", [value]) * (pixels * channels)
    return passes
