"""What the stylization's options may be, in plain Python (no torch): the stylization checks its
settings against these, and so do the job file, the CLI and the Blender batch command, which
Blender imports."""

from collections.abc import Callable
from typing import Any

STYLIZE_MODES = ("view", "patch")
STYLE_DETAILS = ("auto", "view", "full")
# "auto" asks for the painting's own detail where a view fills at least this share of the loss
# network's size, and for the painting as the view can show it below (lego, starry night, 400
# steps: at 200 px views for a 256 px loss network the own detail painted finer strokes, its Gram
# fall 65 % against 55 %, the warp 1.03x of the content's; at 100 px it paints speckle that
# flickers: docs/stylization.md).
FULL_DETAIL_FROM = 0.75

# Settings that only view-mode stylization has, with when a value asks for them. Patch mode
# renders scattered pixels, not views: it has no object mask to take a palette from, no view to
# render larger, no view size to match the painting's detail to and no neighbouring view to
# compare with, so asking for these there would be silently ignored.
VIEW_MODE_ONLY: dict[str, Callable[[Any], bool]] = {
    "style_detail": lambda value: value != "auto",
    "palette_weight": lambda value: value > 0,
    "consistency_weight": lambda value: value > 0,
    "render_scale": lambda value: value != 1.0,
}


def view_mode_only_asked(settings: dict[str, Any]) -> list[str]:
    """The view-mode-only settings that `settings` (name -> value, None for not given) asks for."""
    return [key for key, asks in VIEW_MODE_ONLY.items() if settings.get(key) is not None and asks(settings[key])]


def resolved_style_detail(detail: str, render_size: int, vgg_size: int) -> str:
    """`detail` ("auto", "view" or "full") for views `render_size` pixels on their longer side that
    the loss network sees at `vgg_size`: "auto" becomes "full" from `FULL_DETAIL_FROM` of it, else "view"."""
    if detail != "auto":
        return detail
    return "full" if render_size >= FULL_DETAIL_FROM * vgg_size else "view"
