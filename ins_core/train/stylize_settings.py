"""What a stylization run is asked for: every knob of the losses, the views and the palette match,
with its default and the measurement behind it (`StylizeSettings`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from ..losses.loss_precision import resolved_loss_precision
from ..stylize_options import (
    PALETTE_SPREAD_HINT,
    STYLE_DETAILS,
    STYLIZE_MODES,
    loss_network_size,
    palette_spread_problem,
    view_mode_only_asked,
)
from .palette_match import PaletteSettings


@dataclass
class StylizeSettings:
    """How stylization trains. `mode="view"` (the default) puts the loss network on whole rendered
    views with deferred back-propagation; `mode="patch"` is INS's sampling-stride patches.

    Stroke scale: the loss network sees each view resized to `vgg_size` pixels on its longer side,
    and the painting at `vgg_size * stroke_scale` (`style_size`). Its features are the same size in
    pixels in both, so a painting shown larger lends the view larger strokes: 2 makes strokes twice
    as big against the view, 0.5 half as big.

    Network size: `vgg_size` 0 (the default) is the device's, 256 on a CPU and 512 on a GPU, but in
    view mode no more than 1.6x the views' longer side (`loss_network_size`), where a view holds
    the painting's own detail: lego's 100 px views at 160 px instead of enlarged to 256, 253 -> 129 s
    a painting on a 2-core CPU without bfloat16, the strokes as large against the object and the
    painting's colours nearer (docs/performance.md).

    Detail: a view rendered smaller than `vgg_size` is enlarged for the loss network and carries
    none of the painting's finer texture, so with `style_detail` "view" (view mode) the targets are
    the painting's as such a view can show it (resized down to the view's size and back up, as
    `eval` measures it) instead of asking the views for texture they cannot hold (lego, 100 px,
    against "full", two seeds: every warp 0.84-1.06x of the content's instead of 0.88-1.19x, the speckle
    gone; see docs/stylization.md). Views nearly the loss network's size hold the painting's own
    detail, and there "full" paints finer strokes that still hold still, so "auto" (the default) takes
    "full" from 5/8 of `vgg_size` (`FULL_DETAIL_FROM`) and "view" below.

    Palette: after training one affine map per style gives the object the painting's colour mean
    and covariance (`color_transfer`; with `style_detail` "view", the painting's as a view shows
    it); of all such maps, the one whose views best match the painting's Gram statistics
    (`palette_search_steps`, `palette_match.py`; lego, 100 px: the Scream's Gram fall at the view's
    detail 62-71 % over five seeds against 53-70 % with ARF's map). `palette_spread` under 1 keeps
    the map's mean, its turn of colours and its shrinks but only part of its stretch
    (`partial_spread`); "auto", the default, takes the spread among `AUTO_SPREADS` whose views the
    same Gram loss scores lowest (`choose_spread`; docs/stylization.md). In view mode `palette_weight` also makes the rendered object
    reach the painting's colour range while training (`palette_shortfall`: one-sided, no mean), so
    the field paints with the painting's colours instead of leaving that map to stretch its own
    (lego, 100 px, weight 2 against 0: Matisse's warp 1.42x -> 1.29x of the content's and Gram fall
    60 -> 63 %, starry night's warp 1.51x -> 1.15x, the shipwreck's Gram fall 58 -> 66 %, the Scream's
    52 -> 50 %).

    Consistency (off by default): in view mode `consistency_weight` also pulls each view towards
    what a neighbouring training view showed at the same surface points when it last trained. Fine
    strokes on a soft NeRF are averaged over a short stretch of each ray, differently from each
    view; this keeps the strokes that survive that (lego, 100 px, weight 10 against 0: Matisse's
    warp 1.29x -> 1.17x of the content's, but the shipwreck's Gram fall 66 -> 56 % and its rough
    texture smoothed; at 100 the object turned flat grey). So it is for steady animations, not the default.

    Precision: the loss network computes in bfloat16 where the hardware has it (`loss_precision`
    "auto": CUDA GPUs with bfloat16, CPUs with AVX512-BF16 or AMX); its features come back as
    float32, so the losses and everything after them are computed as before. A VGG pass at 256 px
    with its gradient takes 0.20-0.32 s instead of 0.56-0.72 s on the 2-core Xeon, a lego step
    0.85 s instead of 1.24 s, the image gradient within 0.1 % of float32's in direction.

    Smoothness and views: `tv_weight` 100 with 48 training views on a CPU (lego, 100 px, two seeds:
    every painting within 1.2x of the content's warp, Matisse 1.15-1.16x and starry night 1.11-1.19x,
    against 1.25-1.36x with 50 and 24 views; their Gram falls 4-5 points lower, Matisse 58-59 %
    against 62-63 %). 200 steadies strokes further (Matisse 1.05-1.09x) at more of the texture.

    Grid colour path (NeRF, on by default): the SIM's hash grid also reaches the colour's logits
    through a linear path of its own per style (`StylizationConfig.grid_color_path`), beside the MLPs
    whose weights every point shares, so each grid cell can paint its own stroke (lego, 100 px, four
    paintings against the path off: the Gram fall at the painting's own detail 48-73 % against
    47-66 %, the Scream's 53 -> 60 %, starry night's body yellow and blue where it was pale cream, every
    warp within 0.76-1.07x of the content's). `grid_lr_scale` 3 instead of 1 changed none of that.

    Steps: 200 on a CPU (120 until 2026-12-05). On lego at 100 px the Scream's Gram fall at the
    view's detail was 56-63 % over five seeds with 120 steps (two over the 60 % bar) and 59.5-68 % with
    200 (four), on another field 48-67 % and 59-70 %; one painting took 95-107 s
    on a 2-core CPU (docs/stylization.md). `--steps 120` where time is short.
    """

    steps: int = 0  # 0: by mode and device (view: 200 CPU / 400 GPU; patch: 300 / 1000)
    mode: str = "view"
    lr: float = 0.0  # 0: by mode (view 3e-2; patch 5e-3, where the density head also trains)
    style_weight: float = 1.0
    content_weight: float = 0.3
    geometry_weight: float = 0.1
    nnfm_weight: float = 1.0
    tv_weight: float | None = None  # None: by mode (view 100: no pixel-sized speckle, which breaks consistency; patch 0)
    color_transfer: bool = True
    palette_weight: float = 2.0  # view mode: the object made to reach the painting's colour range while training (0: off)
    consistency_weight: float = 0.0  # view mode: each view made to agree with a neighbouring view where both see the surface (0: off)
    palette_max_gain: float | None = None  # cap on how much the palette map after training stretches colour differences (None: no cap)
    palette_search_steps: int = PaletteSettings.search_steps  # Adam steps searching the palette map's rotation for the painting's Gram statistics (0: ARF's map)
    palette_distribution: bool = PaletteSettings.distribution  # the search also weighs how far the object's colours lie from the painting's distribution of colours
    palette_consistency: bool = PaletteSettings.consistency  # the search also weighs how much a map stretches the differences between neighbouring views
    palette_spread: float | str = PaletteSettings.spread  # how far the palette map after training stretches colour differences towards the painting's spread (1: all the way, ARF; auto: chosen by the Gram loss)
    vgg_size: int = 0  # 0: the device's (256 CPU / 512 GPU), in view mode at most 1.6x the views' longer side
    stroke_scale: float = 1.0
    style_size: int = 0  # 0: vgg_size * stroke_scale
    tune_color_mlp: bool = False  # False: the style reaches colour only through the AM's feature (and the grid colour path)
    grid_color_path: bool = True  # NeRF: the SIM's grid also reaches the colour through a linear path of its own per style
    grid_lr_scale: float = 1.0  # the SIM's grid learns at this many times `lr`
    max_views: int = 0  # view mode: stylize with at most this many training views, evenly spread (0: all)
    render_scale: float = 1.0  # view mode: render each view at this multiple of the photographs' size for the loss network
    style_detail: str = "auto"  # view mode: "view" (the painting's targets keep only the detail a view of the render's size can show), "full", or "auto" (full for views of at least 5/8 of vgg_size)
    loss_precision: str = "auto"  # the loss network's dtype: "auto" (bfloat16 where the hardware has it), "float32", "bfloat16"
    patch: int = 32  # patch mode
    stride: int = 2  # patch mode

    @classmethod
    def for_device(cls, device: torch.device, view_side: int | None = None, **overrides) -> "StylizeSettings":
        """The settings for `device` with `overrides` (None: not given), checked; `view_side`, the
        training views' longer side in pixels, fits the loss network's size to them (view mode)."""
        gpu = device.type != "cpu"
        base = cls(patch=128) if gpu else cls(max_views=48)
        for key, value in overrides.items():
            if value is not None:
                setattr(base, key, value)
        if base.style_detail not in STYLE_DETAILS:
            raise InputError(f"The style detail '{base.style_detail}' is not one of {', '.join(STYLE_DETAILS)} (view: only what a view of the "
                             f"render's size can show; full: the painting's own detail; auto: full for views of at least 5/8 of the "
                             f"loss network's size, else view).")
        if base.mode not in STYLIZE_MODES:
            raise InputError(f"Stylization mode '{base.mode}' is not one of {', '.join(STYLIZE_MODES)}.")
        view = base.mode == "view"
        base.steps = base.steps or ((400 if gpu else 200) if view else (1000 if gpu else 300))
        base.lr = base.lr or (3e-2 if view else 5e-3)
        if base.tv_weight is None:
            base.tv_weight = 100.0 if view else 0.0
        if not base.stroke_scale > 0:
            raise InputError(f"The stroke scale must be a positive number (1 is the painting's own scale), got {base.stroke_scale}.")
        if not base.render_scale > 0:
            raise InputError(f"The render scale must be a positive number (1 renders views at the photographs' size), got {base.render_scale}.")
        if not base.palette_weight >= 0:
            raise InputError(f"The palette weight must be 0 or more (0: no palette term while training; the default is 2), got {base.palette_weight}.")
        if not base.tv_weight >= 0:
            raise InputError(f"The smoothness (total variation) weight must be 0 or more (0: none; the default is 100 in view mode), got {base.tv_weight}.")
        if not base.grid_lr_scale > 0:
            raise InputError(f"The grid's learning-rate scale must be a positive number (1: the rate of the rest), got {base.grid_lr_scale}.")
        if not base.consistency_weight >= 0:
            raise InputError(f"The consistency weight must be 0 or more (0: views not compared while training), got {base.consistency_weight}.")
        if not view:
            refused = view_mode_only_asked(overrides)
            if refused:
                option = "--" + refused[0].replace("_", "-")
                raise InputError(f"{option} works in view mode only; leave it out with --mode patch, or use --mode view (the default).")
            base.palette_weight = base.consistency_weight = 0.0
            base.style_detail = "full"
        if not (isinstance(base.palette_search_steps, int) and base.palette_search_steps >= 0):
            raise InputError(f"The palette search steps must be a whole number, 0 or more (0: ARF's colour map as it is; the default is 15), "
                             f"got {base.palette_search_steps}.")
        spread_problem = palette_spread_problem(base.palette_spread)
        if spread_problem:
            raise InputError(f"{spread_problem}; {PALETTE_SPREAD_HINT}")
        if base.palette_max_gain is not None and not base.palette_max_gain > 0:
            raise InputError(f"The palette gain cap must be a positive number (1.25: colour differences stretched at most 1.25x), got {base.palette_max_gain}.")
        if not base.vgg_size:
            largest = 512 if gpu else 256
            render_side = max(1, round(view_side * base.render_scale)) if view_side else None
            base.vgg_size = loss_network_size(render_side, largest) if view and render_side else largest
        if not base.style_size:
            base.style_size = max(64, round(base.vgg_size * base.stroke_scale))
        # Recorded as what it resolved to, so a resumed run keeps computing the same way.
        base.loss_precision = resolved_loss_precision(base.loss_precision, device)
        return base
