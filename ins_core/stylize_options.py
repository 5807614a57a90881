"""What the stylization's options may be, in plain Python (no torch): the stylization checks its
settings against these, and so do the job file, the CLI and the Blender batch command, which
Blender imports."""

from collections.abc import Callable
from typing import Any

STYLIZE_MODES = ("view", "patch")
STYLE_DETAILS = ("auto", "view", "full")
# "auto" asks for the painting's own detail where a view fills at least this share of the loss
# network's size, and for the painting as the view can show it below (lego, a CPU's 256 px loss
# network: at 160 px the own detail painted finer strokes for all four paintings, starry night's
# Gram fall 60 % against 42 %, every warp within 1.14x of the content's; at 128 px it painted
# speckle that flickers, warps 1.27-1.63x: docs/stylization.md).
FULL_DETAIL_FROM = 0.625

# The palette match's spread (how far it stretches colour differences towards the painting's):
# a number from 0 to 1, or "auto", the default: the spread among `AUTO_SPREADS` whose views score
# the lowest Gram loss (lego, 100 px: the Scream's Gram fall at the view's detail 60-68 % -> 67-71 %
# at 1/2; docs/stylization.md). Not below 1/2: there its orange was already softer and browner,
# and lower was not tried.
PALETTE_SPREAD_AUTO = "auto"
AUTO_SPREADS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)

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


def palette_spread_problem(value: Any) -> str | None:
    """None for a valid palette spread ("auto" or a number from 0 to 1), else what is wrong with it."""
    if value == PALETTE_SPREAD_AUTO:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"The palette spread {value!r} is neither auto nor a number"
    if not 0.0 <= value <= 1.0:
        return f"The palette spread must be between 0 and 1, got {value:g}"
    return None


PALETTE_SPREAD_HINT = ("use auto (the default: chosen per painting by the Gram loss), or a number from 0 to 1 "
                       "(1: colour differences stretched to the painting's spread in full; 0: not stretched at all).")


def palette_spread_arg(text: str) -> float | str:
    """A command line's palette spread: "auto", a number, or the text as given, which the settings'
    check then refuses with a sentence (an argparse error would bury it under the usage)."""
    if text.strip().lower() == PALETTE_SPREAD_AUTO:
        return PALETTE_SPREAD_AUTO
    try:
        return float(text)
    except ValueError:
        return text
