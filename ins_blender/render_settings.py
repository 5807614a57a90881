"""Render settings for capturing training views, and putting the user's settings back.

`preserved_render_settings(scene)` saves every setting that a capture touches and restores it on
exit, whether the block ends normally, raises, or is interrupted (KeyboardInterrupt, cancel).
`apply_capture_settings` switches the scene to what a training view needs.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any


# Settings a capture may change, as attribute paths from the scene, in restore order: an enum
# whose allowed values depend on another setting comes after it (the image format decides the
# colour modes and depths, the view transform decides the looks). Paths this Blender version
# does not have are skipped.
CAPTURE_SETTINGS: tuple[str, ...] = (
    "render.engine",
    "render.resolution_x",
    "render.resolution_y",
    "render.resolution_percentage",
    "render.pixel_aspect_x",
    "render.pixel_aspect_y",
    "render.film_transparent",
    "render.filepath",
    "render.use_border",
    "render.use_crop_to_border",
    "render.use_compositing",
    "render.use_sequencer",
    "render.use_single_layer",
    "render.use_multiview",
    "render.use_motion_blur",
    "render.image_settings.media_type",
    "render.image_settings.file_format",
    "render.image_settings.color_mode",
    "render.image_settings.color_depth",
    "render.image_settings.exr_codec",
    "render.image_settings.compression",
    "render.image_settings.color_management",
    "display_settings.display_device",
    "view_settings.view_transform",
    "view_settings.look",
    "view_settings.exposure",
    "view_settings.gamma",
    "view_settings.use_curve_mapping",
    "view_settings.use_white_balance",
    "cycles.samples",
    "cycles.device",
    "cycles.use_denoising",
    "eevee.taa_render_samples",
    "camera",
)

_MISSING = object()


def _resolve(scene, path: str) -> tuple[Any, str]:
    """(owner, attribute) of a dotted path from the scene; owner is None when it does not exist."""
    *parents, attr = path.split(".")
    owner = scene
    for name in parents:
        owner = getattr(owner, name, None)
        if owner is None:
            return None, attr
    if not hasattr(owner, attr):
        return None, attr
    return owner, attr


def snapshot_render_settings(scene) -> dict[str, Any]:
    """The current value of every capture setting this Blender has, plus the frame."""
    values: dict[str, Any] = {}
    for path in CAPTURE_SETTINGS:
        owner, attr = _resolve(scene, path)
        if owner is not None:
            values[path] = getattr(owner, attr)
    values["frame_current"] = scene.frame_current
    values["frame_subframe"] = scene.frame_subframe
    return values


def restore_render_settings(scene, values: dict[str, Any]) -> list[str]:
    """Put back a snapshot; returns the settings that could not be restored (normally none).

    Every setting is attempted even if one fails. The frame goes first: changing frame
    re-evaluates the animation, and may switch the active camera through timeline markers,
    which the saved `camera` then overrides. The frame is only set if it differs, since
    re-evaluating would otherwise overwrite un-keyed edits of animated properties.
    """
    failed = []
    frame, subframe = values.get("frame_current"), values.get("frame_subframe", 0.0)
    if frame is not None and (scene.frame_current != frame or abs(scene.frame_subframe - subframe) > 1e-9):
        try:
            scene.frame_set(frame, subframe=subframe)
        except Exception as error:  # noqa: BLE001 - keep restoring the rest
            failed.append(f"frame ({error})")
    for path in CAPTURE_SETTINGS:
        if path not in values:
            continue
        owner, attr = _resolve(scene, path)
        if owner is None:
            failed.append(f"{path} (no longer exists)")
            continue
        try:
            if getattr(owner, attr) != values[path]:
                setattr(owner, attr, values[path])
        except Exception as error:  # noqa: BLE001 - e.g. the saved camera was deleted meanwhile
            failed.append(f"{path} ({error})")
    return failed


@contextmanager
def preserved_render_settings(scene):
    """Save the capture settings (and frame) on entry, restore them on any exit.

    If restoring fails while another exception is propagating, the failures are printed and the
    original exception wins; after a normal exit they raise a RuntimeError.
    """
    saved = snapshot_render_settings(scene)
    completed = False
    try:
        yield saved
        completed = True
    finally:
        failed = restore_render_settings(scene, saved)
        if failed:
            message = "INS capture could not restore these render settings: " + "; ".join(failed)
            if completed:
                raise RuntimeError(message)
            print(message, file=sys.stderr)


def _set_if_present(scene, path: str, value: Any) -> None:
    owner, attr = _resolve(scene, path)
    if owner is not None:
        setattr(owner, attr, value)


def use_png_output(scene) -> None:
    """Write the render as an 8-bit RGBA PNG (a training image)."""
    settings = scene.render.image_settings
    _set_if_present(scene, "render.image_settings.media_type", "IMAGE")
    settings.file_format = "PNG"
    settings.color_mode = "RGBA"
    settings.color_depth = "8"
    settings.compression = 15


@contextmanager
def depth_output(scene):
    """Write renders, while inside, with their passes as a 32-bit float multilayer OpenEXR,
    ZIP-compressed (a training view's depth: ins_core reads the Depth pass); PNG again after.

    The pixel aspect is 1 while inside: Blender refuses to write a multilayer EXR of a render with
    another aspect ("conflicting attributes": each pass's header gets its own). The image is the
    same; the view's intrinsics already hold the aspect.
    """
    settings, render = scene.render.image_settings, scene.render
    aspect = render.pixel_aspect_x, render.pixel_aspect_y
    # Blender 5 picks the container first (a multilayer image), then the format within it.
    _set_if_present(scene, "render.image_settings.media_type", "MULTI_LAYER_IMAGE")
    settings.file_format = "OPEN_EXR_MULTILAYER"
    settings.color_depth = "32"
    settings.exr_codec = "ZIP"
    render.pixel_aspect_x = render.pixel_aspect_y = 1.0
    try:
        yield
    finally:
        render.pixel_aspect_x, render.pixel_aspect_y = aspect
        use_png_output(scene)


def apply_capture_settings(scene, width: int, height: int, *, engine: str = "CYCLES", samples: int = 16,
                           denoise: bool = False) -> None:
    """Switch the scene to what a training view needs (call inside `preserved_render_settings`).

    Pixel aspect, the render device and the world are left as the user set them; the intrinsics
    written by the capture account for the pixel aspect.
    """
    render = scene.render
    render.engine = engine  # TypeError for an engine that is not registered: check it beforehand
    render.resolution_x, render.resolution_y = width, height
    render.resolution_percentage = 100
    # Transparent film: the alpha channel is the object mask NeRF/SDF training uses.
    render.film_transparent = True
    # Whole frame, one view layer, no stereo, no motion blur, no compositor or sequencer: every
    # training image must be exactly what the camera sees at one instant.
    render.use_border = False
    render.use_crop_to_border = False
    render.use_compositing = False
    render.use_sequencer = False
    render.use_single_layer = True
    render.use_multiview = False
    render.use_motion_blur = False

    use_png_output(scene)
    # Images are written with the scene's colour management, not an override in the output panel.
    _set_if_present(scene, "render.image_settings.color_management", "FOLLOW_SCENE")

    # Standard view transform, no look, neutral exposure/gamma/curves/white balance: the training
    # images must hold the scene's colours as plain sRGB. Filmic or AgX would tone-map them
    # (compress highlights, desaturate), so the field would learn the tone-mapped colours and a
    # render of the field would then be tone-mapped a second time by Blender's view transform.
    try:
        scene.display_settings.display_device = "sRGB"
    except TypeError:  # a custom OCIO config without an "sRGB" display: keep the user's
        pass
    view = scene.view_settings
    view.view_transform = "Standard"
    view.look = "None"
    view.exposure = 0.0
    view.gamma = 1.0
    view.use_curve_mapping = False
    _set_if_present(scene, "view_settings.use_white_balance", False)

    if engine == "CYCLES" and hasattr(scene, "cycles"):
        scene.cycles.samples = samples
        scene.cycles.use_denoising = denoise
    elif hasattr(scene, "eevee") and engine.startswith("BLENDER_EEVEE"):
        scene.eevee.taa_render_samples = samples
