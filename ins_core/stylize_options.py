"""What the stylization's options may be, in plain Python (no torch): the stylization checks its
settings against these, and so do the job file, the CLI and the Blender batch command, which
Blender imports."""

import argparse
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

# The loss network's size, where not asked for, follows the views (`loss_network_size`): no larger
# than a view needs to hold the painting's own detail, on a multiple of the object window's grain
# (8 px: every layer's cells and pooling windows where the whole view's are), and not below 64 px
# (relu4_3 still 8x8 cells).
LOSS_NETWORK_GRAIN = 8
SMALLEST_LOSS_NETWORK = 64

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


def loss_network_size(view_side: int, largest: int) -> int:
    """The longer side at which the loss network sees views `view_side` pixels on their longer side:
    `largest` (the device's: 256 on a CPU, 512 on a GPU), but no more than `view_side /
    FULL_DETAIL_FROM`, where the view holds the painting's own detail. A view enlarged further holds
    no more of it, so the network's time (its size squared) bought nothing but an enlargement to dull
    the painting for (lego, 100 px views, on a 2-core CPU without bfloat16: 160 px instead of 256,
    253 -> 129 s a painting; docs/performance.md). The painting is read at the same size times the
    stroke scale, so strokes keep their size against the view."""
    fitted = int(view_side / FULL_DETAIL_FROM) // LOSS_NETWORK_GRAIN * LOSS_NETWORK_GRAIN
    return max(min(largest, SMALLEST_LOSS_NETWORK), min(largest, fitted))


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


def add_look_options(parser: argparse.ArgumentParser, view_mode: str = "") -> None:
    """The options that shape how the painting looks on the scene, as `python -m ins_core stylize`
    and Blender's batch command both take them (with the settings' own names, so a batch job's
    overrides are gathered by name). `view_mode` heads the help of those only view-mode
    stylization has ("view mode: " where patch mode can be chosen too)."""
    parser.add_argument("--stroke-scale", type=float, help="how big brush strokes are: 1 the painting's own scale against a view, "
                                                           "2 twice as big")
    parser.add_argument("--tv-weight", type=float, help="how smooth the strokes are made while training (total variation; default 100 "
                                                        "in view mode, 0 in patch mode; 200 steadies them further from view to view, "
                                                        "at some of the painting's texture)")
    parser.add_argument("--style-detail", choices=STYLE_DETAILS, help=f"{view_mode}match the painting (its strokes and its colours) with "
                                                                      "only the detail a view of the render's size can show (view) or at "
                                                                      "its own detail (full: finer texture, which flickers from view to "
                                                                      "view on small views); auto, the default, takes full for views of "
                                                                      "at least 5/8 of the size the loss network sees them at")
    parser.add_argument("--palette-weight", type=float, help=f"{view_mode}make the object reach the painting's colour range while "
                                                             "training (default 2; 0 leaves the colours to the match after training)")
    parser.add_argument("--palette-spread", type=palette_spread_arg, help="how far the colour match after training stretches colour "
                                                                          "differences towards the painting's spread: 0 to 1 (1: in full, "
                                                                          "ARF's colour transfer; 0: none stretched), or auto, the "
                                                                          "default: chosen per painting among 1 to 0.5 by the Gram loss")
    parser.add_argument("--consistency-weight", type=float, help=f"{view_mode}make each view agree with a neighbouring view where both "
                                                                 "see the surface (default 0: off; 10 steadies the strokes from view "
                                                                 "to view but smooths away some of the painting's texture)")
