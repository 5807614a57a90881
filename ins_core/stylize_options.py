"""What the stylization's options may be, in plain Python (no torch): the stylization checks its
settings against these, and so do the job file, the CLI and the Blender batch command, which
Blender imports."""

from collections.abc import Callable
from typing import Any

STYLIZE_MODES = ("view", "patch")
STYLE_DETAILS = ("view", "full")

# Settings that only view-mode stylization has, with when a value asks for them. Patch mode
# renders scattered pixels, not views: it has no object mask to take a palette from, no view to
# render larger, no view size to match the painting's detail to and no neighbouring view to
# compare with, so asking for these there would be silently ignored.
VIEW_MODE_ONLY: dict[str, Callable[[Any], bool]] = {
    "style_detail": lambda value: True,
    "palette_weight": lambda value: value > 0,
    "consistency_weight": lambda value: value > 0,
    "render_scale": lambda value: value != 1.0,
}


def view_mode_only_asked(settings: dict[str, Any]) -> list[str]:
    """The view-mode-only settings that `settings` (name -> value, None for not given) asks for."""
    return [key for key, asks in VIEW_MODE_ONLY.items() if settings.get(key) is not None and asks(settings[key])]
