"""INS stylization: train the SIM and AM on top of a frozen content run.

Two ways to show the loss network the scene (`StylizeSettings.mode`):

- "view" (the default): each step takes one whole training view for one style (round robin over
  the K styles, one-hot embedding). The content geometry is kept exactly (the AM's density stays
  the content's), so a view is a fixed blend of surface samples that are found once and kept
  (`render/surface_samples.py`); only the style and colour heads run per step. The image loss
  sees the whole view at one stroke scale; views larger than a chunk of rays are back-propagated
  with deferred back-propagation (`deferred.py`), so memory stays that of one chunk.
- "patch": INS's sampling-stride patches, rendered with autograd, with the self-distilled
  geometry term keeping the stylized density near the teacher's.

Both minimise

    style_weight * Gram loss (relu1_2, relu2_2, relu3_3, relu4_3; over the object's pixels in view mode)
  + nnfm_weight * NNFM (relu3_x, ARF's nearest-neighbour feature matching: sharper strokes)
  + content_weight * content loss (relu2_2, against the photograph, recoloured to the style)
  [+ geometry_weight * L1(student raw density, teacher raw density) at the same samples, patch mode]
  + tv_weight * total variation of the view as the loss network sees it (view mode; without it the
    style loss paints pixel-sized speckle, which no two views agree on)
  [+ palette_weight * the painting's colour range the object lacks, view mode]
  [+ consistency_weight * squared difference from a neighbouring training view's last render at
    the same surface points (`losses/consistency.py`), view mode]

With colour transfer (on by default), the photographs' colours are mapped to each painting's mean
and covariance, and the field's output carries the same affine map per style, so stylization
starts in the painting's palette and the strokes are learned on top (ARF's pre-transfer).
Gram and content losses are divided by the size of their targets (relative errors), so the same
weights work with any backbone. Defaults were chosen by measurement on lego (see the README).
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from dataclasses import asdict, dataclass, field as dataclass_field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.styles import keep_style_copies, kept_style, load_style_image
from ..device import resolve_device
from ..errors import InputError
from ..fields.stylization import StylizationConfig, one_style
from ..losses.consistency import reprojection_difference
from ..losses.geometry import geometry_consistency
from ..data.cameras import image_pixels, rays_from_pixels
from ..losses.style import (CONTENT_LAYER, GRAM_LAYERS, NNFM_LAYERS, StyleTargets, band_limited, color_transfer_matrix, gram_matrix, masked_gram_matrix,
                            nnfm_loss, palette_shortfall, principal_colours, relative_content_loss, total_variation)
from ..losses.backbone import Backbone, resolve_backbone
from ..losses.loss_precision import loss_network_dtype, resolved_loss_precision
from .checkpoint import load_checkpoint
from ..render.reprojection import Reprojection, reproject
from ..render.surface_samples import SurfaceSamples
from ..render.view_overlaps import SurfaceView, neighbour_overlaps, surface_points, view_differences
from ..render.views import render_view
from ..stylize_options import (PALETTE_SPREAD_HINT, STYLE_DETAILS, STYLIZE_MODES, palette_spread_problem,
                               resolved_style_detail, view_mode_only_asked)
from .deferred import deferred_backward
from .fit import RunSession, data_path, load_run_data
from .palette_match import PaletteSettings, SearchView, StylePalette, match_style_palettes
from .patches import Patch, sample_patch
from .runs import RunDir
from .scene_models import LossTerms, StylizedModel, build_model
from .trainer import Trainer


@dataclass
class StylizeSettings:
    """How stylization trains. `mode="view"` (the default) puts the loss network on whole rendered
    views with deferred back-propagation; `mode="patch"` is INS's sampling-stride patches.

    Stroke scale: the loss network sees each view resized to `vgg_size` pixels on its longer side,
    and the painting at `vgg_size * stroke_scale` (`style_size`). Its features are the same size in
    pixels in both, so a painting shown larger lends the view larger strokes: 2 makes strokes twice
    as big against the view, 0.5 half as big.

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
    vgg_size: int = 256
    stroke_scale: float = 1.0
    style_size: int = 0  # 0: vgg_size * stroke_scale
    tune_color_mlp: bool = False  # False: the style reaches colour only through the AM's feature
    max_views: int = 0  # view mode: stylize with at most this many training views, evenly spread (0: all)
    render_scale: float = 1.0  # view mode: render each view at this multiple of the photographs' size for the loss network
    style_detail: str = "auto"  # view mode: "view" (the painting's targets keep only the detail a view of the render's size can show), "full", or "auto" (full for views of at least 5/8 of vgg_size)
    loss_precision: str = "auto"  # the loss network's dtype: "auto" (bfloat16 where the hardware has it), "float32", "bfloat16"
    patch: int = 32  # patch mode
    stride: int = 2  # patch mode

    @classmethod
    def for_device(cls, device: torch.device, **overrides) -> "StylizeSettings":
        gpu = device.type != "cpu"
        base = cls(vgg_size=512, patch=128) if gpu else cls(max_views=48)
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
        if not base.style_size:
            base.style_size = max(64, round(base.vgg_size * base.stroke_scale))
        # Recorded as what it resolved to, so a resumed run keeps computing the same way.
        base.loss_precision = resolved_loss_precision(base.loss_precision, device)
        return base


NEIGHBOURS = 3  # the consistency term compares a view with one of its nearest training views
SAMPLE_CACHE_BYTES = 2 << 30  # the views' kept surface samples on a CPU (lego at 100 px: about 4 MB a view)


def sample_cache_bytes(device: torch.device) -> int:
    """How much of the views' surface samples to keep: on a GPU a third of its free memory. The
    CPU's 2 GB held about a dozen of lego's 80 views at 400 px with a GPU's 256 samples a ray (up to
    170 MB a view: 13.5 GB at the peak with all kept), so nearly every step marched its view again;
    on an H200 no painting finished its 400 steps in 330 s, against 41 s with them all kept."""
    if device.type != "cuda":
        return SAMPLE_CACHE_BYTES
    free, _ = torch.cuda.mem_get_info(device)
    return free // 3


# The photographs' content features, kept per view and style (at vgg_size 256: 8 MB each); taking
# them again cost 0.1 s of a 1.2 s step on the 2-core CPU.
CONTENT_CACHE_BYTES = 1 << 30
PALETTE_SEARCH_VIEWS = 4  # views the palette match's search looks through (lego, 100 px: 48 starts screened, 15 steps from the best, in 28 s)


@dataclass
class StylizeRequest:
    run: Path
    styles: list[Path]
    out: Path
    device: str = "auto"
    settings: dict = dataclass_field(default_factory=dict)
    vgg_weights: str | None = None
    cache_dir: str | None = None
    allow_download: bool = False
    force: bool = False
    seed: int = 0


def over_white(rgba: torch.Tensor) -> torch.Tensor:
    return rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])


def _chw(image: torch.Tensor) -> torch.Tensor:
    """[H, W, 3] -> [1, 3, H, W]"""
    return image.permute(2, 0, 1)[None]


def _resize_long_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """[1, C, H, W] resized (bilinear, differentiable) so that its longer side is `size`."""
    h, w = image.shape[-2:]
    scale = size / max(h, w)
    if abs(scale - 1.0) < 1e-6:
        return image
    return F.interpolate(image, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear", align_corners=False)


def nearest_views(c2w: torch.Tensor, aabb: torch.Tensor, count: int) -> torch.Tensor:
    """For each camera [V, 4, 4], the indices [V, k] of the k others nearest to it in angle around
    the scene box's centre (k = min(count, V - 1))."""
    directions = torch.nn.functional.normalize(c2w[:, :3, 3] - (aabb[0] + aabb[1]) / 2, dim=-1)
    cosine = directions @ directions.T
    cosine.fill_diagonal_(-2.0)
    return cosine.topk(min(count, c2w.shape[0] - 1), dim=-1).indices


class StyleObjective:
    """What to render each step and the losses that pull it towards the styles."""

    def __init__(self, model: StylizedModel, backbone: Backbone, styles: list[np.ndarray], views, settings: StylizeSettings, device: torch.device):
        self.model = model
        self.extractor = backbone.extractor.to(device)
        self.loss_dtype = loss_network_dtype(settings.loss_precision, device)
        self.views = views
        self.settings = settings
        self.device = device
        self.render_scale = settings.render_scale if settings.mode == "view" else 1.0
        self.render_size = (max(1, round(views.height * self.render_scale)), max(1, round(views.width * self.render_scale)))
        style_tensors = [_chw(torch.from_numpy(s).to(device)) for s in styles]
        # Resolved here, where the views' size is known; the session records what it became.
        settings.style_detail = resolved_style_detail(settings.style_detail, max(self.render_size), settings.vgg_size)
        if settings.style_detail == "view" and settings.mode == "view":
            style_tensors = [band_limited(t, max(self.render_size) / settings.vgg_size) for t in style_tensors]
            # The colours too (the palette term, the photographs' pre-transfer, the match after
            # training): the painting's finest strokes carry colour variance a view cannot hold, and
            # a palette matched to them stretches what detail the view has instead (lego, 100 px,
            # starry night: after the match relu2_2's Gram distance stood 10 % above the content
            # render's; matched to the painting as seen, 34 % below). See docs/stylization.md.
            styles = [t[0].permute(1, 2, 0).float().cpu().numpy() for t in style_tensors]
        nnfm_layers = NNFM_LAYERS if settings.nnfm_weight > 0 else None
        self.targets = StyleTargets(self.extractor, style_tensors, GRAM_LAYERS, nnfm_layers)
        self.color_maps = None
        self.chosen_spreads: list[float] = []  # the palette match's spread per style, once matched
        if settings.color_transfer:
            photos = over_white(views.images.float() / 255.0)
            mask = views.images[..., 3] > 127
            self.color_maps = [color_transfer_matrix(photos.cpu(), torch.from_numpy(s), mask.cpu()).to(device).float() for s in styles]
        self.style_pixels = styles
        self.palettes = [tuple(x.float().to(device) for x in principal_colours(torch.from_numpy(st).reshape(-1, 3).double()))
                         for st in styles] if settings.palette_weight > 0 else None
        self.n_styles = len(styles)
        self.next_style = 0
        self.white = torch.ones(3, device=device)
        self.pixels = image_pixels(self.render_size[1], self.render_size[0], device)
        self.sample_cache: dict[int, SurfaceSamples] = {}
        count = len(views) if settings.max_views <= 0 else min(settings.max_views, len(views))
        self.view_indices = sorted({round(k * len(views) / count) for k in range(count)})
        self.cache_bytes = sample_cache_bytes(device)
        self.content_cache: dict[tuple[int, int], torch.Tensor] = {}
        self.layers = list(dict.fromkeys([*GRAM_LAYERS, CONTENT_LAYER, *(NNFM_LAYERS if settings.nnfm_weight > 0 else ())]))
        self.last_render: dict[tuple[int, int], torch.Tensor] = {}  # (view, style) -> its render when it last trained
        self.neighbours = nearest_views(views.c2w[self.view_indices], model.field.aabb, NEIGHBOURS) if len(self.view_indices) > 1 else None

    def batch(self) -> dict:
        style_index = self.next_style
        self.next_style = (self.next_style + 1) % self.n_styles
        if self.settings.mode == "view":
            return {"view": self.view_indices[int(torch.randint(0, len(self.view_indices), (1,)))], "style_index": style_index}
        return {"patch": sample_patch(self.views, self.settings.patch, self.settings.stride), "style_index": style_index}

    def content_target(self, photo: torch.Tensor, style_index: int) -> torch.Tensor:
        if self.color_maps is not None:
            matrix = self.color_maps[style_index]
            photo = (photo @ matrix[:, :3].T + matrix[:, 3]).clamp(0, 1)
        return photo

    def match_palettes(self, max_views: int = 24, should_stop=None, refined_starts: int | None = None,
                       spread_weighs_colours: bool = False) -> bool:
        """After training, map each style's rendered colours to the painting's mean and covariance
        (ARF's colour transfer, once more on the result), with the free rotation among such maps
        searched for the painting's Gram statistics (`palette_match.py`; `palette_search_steps`),
        its mix of colours (`palette_distribution`) and how little the map makes neighbouring views
        differ (`palette_consistency`: the differences of the views rendered here, before the map),
        then its stretch of colour differences taken only `palette_spread` of the way (with "auto",
        the spread the same views and loss choose; each style's is kept in `chosen_spreads`).
        The styles of one model share the maps' handedness, so that a mix of styles can turn one
        map into the other (`fields/color_mix.py`). The map is one affine per style, the same in
        every view, so it adds no disagreement of its own (it can only stretch what there is); it
        is kept in the field's `color_maps`, the
        colour it was matched about in `color_centres`. `refined_starts`: how many of the screened
        starts the search refines (None: `PaletteSearch.starts`' default); `spread_weighs_colours`:
        "auto" weighs the colour distance too, as the search does (tried, not the default). False (nothing changed)
        when `should_stop()` turned true during the search."""
        field, s = self.model.field, self.settings
        styles, overlaps = [], None
        for index, style in enumerate(self.style_pixels):
            self._use_style(index)
            # The geometry is the content's, the same for every style: where views overlap is found once.
            renders, surfaces = self._palette_views(max_views, with_surfaces=s.palette_consistency and index == 0)
            if surfaces is not None:
                overlaps = neighbour_overlaps(surfaces)
            images = [view.premultiplied + (1 - view.opacity[..., None]) * self.white for view in renders]
            colors = torch.cat([image.reshape(-1, 3) for image in images])
            on_object = torch.cat([view.opacity.reshape(-1) > 0.5 for view in renders])
            chosen = renders[:: max(1, -(-len(renders) // PALETTE_SEARCH_VIEWS))]
            differences = view_differences(images, overlaps) if overlaps else None
            styles.append(StylePalette(colors, on_object, torch.from_numpy(style), chosen, functools.partial(self.gram_loss, style_index=index),
                                       differences))
        settings = PaletteSettings(s.palette_search_steps, s.palette_distribution, s.palette_consistency, s.palette_spread,
                                   s.palette_max_gain, refined_starts, spread_weighs_colours)
        matched = match_style_palettes(styles, settings, should_stop)
        if matched is None:
            return False
        self.chosen_spreads = [palette.spread for palette in matched]
        for index, palette in enumerate(matched):
            field.compose_color_map(index, palette.affine.to(field.color_maps), palette.centre.to(field.color_maps))
        return True

    @torch.no_grad()
    def _palette_views(self, max_views: int, with_surfaces: bool = False) -> tuple[list[SearchView], list[SurfaceView] | None]:
        """Up to `max_views` of the training views, evenly spread, rendered with the current style,
        and, `with_surfaces`, where each one's pixels see the surface (else None)."""
        field, views, cameras = self.model.field, [], []
        for view in self.view_indices[:: max(1, len(self.view_indices) // max_views)]:
            c2w = self.views.c2w[view]
            if self.settings.mode == "view":
                samples = self.view_samples(view)
                height, width = self.render_size
                rgb, opacity = samples.composite(field.surface_color(samples), self.white), samples.opacity
                intrinsics, points = self.views.intrinsics[view] * self.render_scale, samples.surface_points
            else:
                height, width = self.views.height, self.views.width
                render = render_view(self.model, c2w, self.views.intrinsics[view], width, height, self.white)
                rgb, opacity, intrinsics = render.rgb, render.opacity, self.views.intrinsics[view]
                points = functools.partial(surface_points, render.depth, c2w, intrinsics)
            views.append(SearchView.from_render(rgb.reshape(height, width, 3), opacity.reshape(height, width), self.white))
            if with_surfaces:
                cameras.append(SurfaceView(c2w, intrinsics, points(), opacity.reshape(height, width)))
        return views, cameras if with_surfaces else None

    def gram_loss(self, image: torch.Tensor, opacity: torch.Tensor, style_index: int) -> torch.Tensor:
        """The Gram term of `image_terms` alone, over the object (`opacity` [H, W]) of an image [H, W, 3]."""
        _, feats = self._loss_network(image, self.settings.vgg_size, list(GRAM_LAYERS))
        return self._gram_term(feats, opacity, style_index)

    def _loss_network(self, render: torch.Tensor, size: int | None, layers: list[str]) -> tuple[torch.Tensor, dict]:
        """The image [1, 3, h, w] the loss network sees (resized to `size` on its longer side) and its features."""
        image = _chw(render)
        if size is not None:
            image = _resize_long_side(image, size)
        return image, self.extractor(image, layers, self.loss_dtype)

    def _gram_term(self, feats: dict, mask: torch.Tensor | None, style_index: int) -> torch.Tensor:
        """The style's relative Gram loss, over the pixels of `mask` [H, W] (None: all)."""
        grams = {layer: gram_matrix(feats[layer]) if mask is None else masked_gram_matrix(feats[layer], mask[None, None]) for layer in GRAM_LAYERS}
        return self.targets[style_index].relative_gram_loss(grams)

    def _use_style(self, style_index: int) -> None:
        self.model.set_style(one_style(style_index, self.n_styles))

    @torch.no_grad()
    def photo_features(self, photo: torch.Tensor, size: int | None, key: tuple[int, int] | None) -> torch.Tensor:
        """The content layer's features of a photograph [H, W, 3] resized to `size`; kept under
        `key` (view, style) while memory allows, since a view's photograph never changes."""
        if key in self.content_cache:
            return self.content_cache[key]
        photo_chw = _chw(photo)
        if size is not None:
            photo_chw = _resize_long_side(photo_chw, size)
        features = self.extractor(photo_chw, [CONTENT_LAYER], self.loss_dtype)[CONTENT_LAYER]
        if key is not None:
            while self.content_cache and (len(self.content_cache) + 1) * features.numel() * features.element_size() > CONTENT_CACHE_BYTES:
                self.content_cache.pop(next(iter(self.content_cache)))
            self.content_cache[key] = features
        return features

    def image_terms(self, render: torch.Tensor, photo: torch.Tensor, mask: torch.Tensor | None, style_index: int, size: int | None,
                    photo_key: tuple[int, int] | None = None) -> tuple[torch.Tensor, dict]:
        """Style, content, NNFM and TV losses of a rendered image [H, W, 3] (resized to `size` for the
        loss network); `photo_key` (view, style) lets the photograph's features be kept."""
        s = self.settings
        image, feats = self._loss_network(render, size, self.layers)
        photo_feats = self.photo_features(photo, size, photo_key)
        target = self.targets[style_index]
        style = self._gram_term(feats, mask, style_index)
        content = relative_content_loss(feats[CONTENT_LAYER], photo_feats)
        total = s.style_weight * style + s.content_weight * content
        terms = {"style": style.detach(), "content": content.detach()}
        if s.nnfm_weight > 0:
            nnfm = nnfm_loss(feats, target.nnfm_features, search_dtype=self.loss_dtype)
            total = total + s.nnfm_weight * nnfm
            terms["nnfm"] = nnfm.detach()
        if s.tv_weight > 0:
            total = total + s.tv_weight * total_variation(image)
        if s.palette_weight > 0 and mask is not None:  # the object's pixels, at the render's own size
            palette = palette_shortfall(render[mask > 0.5], *self.palettes[style_index])
            total = total + s.palette_weight * palette
            terms["palette"] = palette.detach()
        return total, terms

    def geometry(self, out) -> torch.Tensor:
        student = out.raw_density if self.model.content_kind == "nerf" else out.sdf.flatten()
        if not student.numel():
            return out.rgb.sum() * 0
        return geometry_consistency(student, self.model.field.content_raw)

    def loss(self, style_index: int, patch: Patch | None = None, view: int | None = None) -> LossTerms:
        self._use_style(style_index)
        if view is not None:
            return self.view_loss(view, style_index)
        return self.patch_loss(patch, style_index)

    def view_samples(self, view: int) -> SurfaceSamples:
        """The content geometry's visible samples of a training view, kept while memory allows."""
        if view not in self.sample_cache:
            views = self.views
            origins, directions = rays_from_pixels(self.pixels, views.c2w[view], views.intrinsics[view] * self.render_scale)
            samples = self.model.surface_samples(origins, directions)
            while self.sample_cache and sum(c.nbytes() for c in self.sample_cache.values()) + samples.nbytes() > self.cache_bytes:
                self.sample_cache.pop(next(iter(self.sample_cache)))
            self.sample_cache[view] = samples
        return self.sample_cache[view]

    def view_loss(self, view: int, style_index: int) -> LossTerms:
        """A whole training view through the loss network. The geometry stays the content's, so each
        pixel is a fixed blend of samples and only the style and colour heads are evaluated."""
        s, views = self.settings, self.views
        rgba = views.rgba(view)
        height, width = self.render_size
        if (height, width) != (views.height, views.width):
            rgba = F.interpolate(rgba.permute(2, 0, 1)[None], size=(height, width), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
        photo = self.content_target(over_white(rgba), style_index)
        samples = self.view_samples(view)

        def render(first: int, end: int) -> torch.Tensor:
            part = samples if (first, end) == (0, samples.n_rays) else samples.rays_slice(first, end)
            return part.composite(self.model.field.surface_color(part), self.white)

        agreement = self.neighbour_agreement(view, style_index) if s.consistency_weight > 0 and self.neighbours is not None else None

        def image_loss(image: torch.Tensor) -> tuple[torch.Tensor, dict]:
            total, terms = self.image_terms(image, photo, rgba[..., 3], style_index, s.vgg_size, (view, style_index))
            if agreement is not None:
                consistency = reprojection_difference(image, *agreement)
                total = total + s.consistency_weight * consistency
                terms["consistency"] = consistency.detach()
            return total, terms

        step = deferred_backward(render, height, width, image_loss)
        if s.consistency_weight > 0:
            self.last_render[view, style_index] = step.image
        return LossTerms(step.loss, F.mse_loss(step.image, photo), step.terms, backpropagated=True)

    @torch.no_grad()
    def neighbour_agreement(self, view: int, style_index: int) -> tuple[Reprojection, torch.Tensor] | None:
        """Where this view's surface points land in one of its nearest training views (chosen at
        random), and that view's render from when it last trained, the fixed target of the
        consistency term (None until it has trained). Rendering the neighbour afresh each step
        gave the same warp error on lego (Matisse 1.18x against 1.17x) for 27 % more time per step."""
        position = self.view_indices.index(view)
        other = self.view_indices[int(self.neighbours[position][torch.randint(0, self.neighbours.shape[1], (1,))])]
        if (other, style_index) not in self.last_render:
            return None
        height, width = self.render_size
        mine, theirs = self.view_samples(view), self.view_samples(other)
        their_depth = (theirs.surface_points() - self.views.c2w[other][:3, 3]).norm(dim=-1).view(height, width)
        their_image = self.last_render[other, style_index]
        landing = reproject(mine.surface_points(), mine.opacity > 0.9, self.views.c2w[other], self.views.intrinsics[other] * self.render_scale,
                            their_depth, theirs.opacity.view(height, width))
        return landing, their_image

    def patch_loss(self, patch: Patch, style_index: int) -> LossTerms:
        """INS's sampling-stride patch, rendered and back-propagated at once."""
        s = self.settings
        out = self.model.render(patch.origins, patch.directions, self.white.expand(patch.origins.shape[0], 3), jitter=True)
        render = out.rgb.view(patch.size, patch.size, 3)
        photo = self.content_target(over_white(patch.rgba), style_index)
        image_loss, terms = self.image_terms(render, photo, None, style_index, None)
        geometry = self.geometry(out)
        total = image_loss + s.geometry_weight * geometry
        return LossTerms(total, F.mse_loss(render, photo), {**terms, "geometry": geometry.detach()})


def _copy_styles(styles: list[Path], out: Path, working_size: int) -> tuple[list[dict], list[np.ndarray]]:
    """Load and check each style, keep a copy in RUN/styles so the run does not need the user's files."""
    images = [load_style_image(path, working_size, enlarge=True) for path in styles]  # a small painting too: its strokes at the size asked for
    return keep_style_copies(images, styles, out), [style.pixels for style in images]


class StylizeSession(RunSession):
    def __init__(self, run: RunDir, config: dict, device: torch.device, backbone: Backbone, style_pixels: list[np.ndarray], content_state: dict | None):
        super().__init__(run, config, device)
        torch.manual_seed(config["seed"])
        self.data = load_run_data(config, device, run.root)
        aabb = torch.tensor(config["aabb"], dtype=torch.float32).view(2, 3)
        model_settings = config["model"]
        if content_state is not None:  # a new run: start from the trained content model
            content = build_model(model_settings["content_kind"], aabb, model_settings["content"])
            content.load_state_dict(content_state)
            self.model = StylizedModel(content, StylizationConfig(**model_settings["stylization"])).to(device)
        else:
            self.model = build_model("stylized", aabb, model_settings).to(device)
        config["stylize"].setdefault("loss_precision", "float32")  # runs from before the setting computed in float32
        config["stylize"].setdefault("style_detail", "full")  # and matched the painting at its own detail
        config["stylize"].setdefault("palette_search_steps", 0)  # and took ARF's palette map as it was
        config["stylize"].setdefault("palette_spread", 1.0)  # in full
        config["stylize"].setdefault("palette_distribution", False)  # and searched the map by the Gram loss alone
        config["stylize"].setdefault("palette_consistency", False)  # not weighing how much it made views differ
        settings = StylizeSettings(**config["stylize"])
        if not settings.tune_color_mlp:
            self.model.field.color_mlp.requires_grad_(False)
        self.objective = StyleObjective(self.model, backbone, style_pixels, self.data.train, settings, device)
        config["stylize"]["style_detail"] = settings.style_detail  # "auto" as it resolved for these views
        self.trainer = Trainer(self.model, self.objective.batch, settings.lr, config["steps"], loss_fn=self.objective.loss)
        # Told what happens after the last step (the palette match takes a while without steps to count).
        self.note: Callable[[str], None] = lambda message: None
        self._resume()

    def finished(self) -> bool:
        """Trained, and the palette matched after training where colour transfer is on (until then a
        stopped or killed job is not done: the match runs when it resumes)."""
        return super().finished() and (self.config.get("recolored", False) or not self.objective.settings.color_transfer)

    def run_loop(self, time_budget=None, on_step=None, should_stop=None) -> str:
        self.finishing_s = 0.0
        outcome = super().run_loop(time_budget, on_step, should_stop)
        settings = self.objective.settings
        if self.step >= self.config["steps"] and settings.color_transfer and not self.config.get("recolored"):
            weighed = " and mix of colours" if settings.palette_distribution else ""
            weighed += ", steady from view to view" if settings.palette_consistency else ""
            searched = f", searching its map for the painting's strokes{weighed} ({settings.palette_search_steps} steps)" if settings.palette_search_steps else ""
            self.note(f"Matching each painting's palette{searched}")
            start = time.perf_counter()
            matched = self.objective.match_palettes(should_stop=should_stop)
            self.finishing_s = time.perf_counter() - start
            if not matched:
                return "stopped"
            self.config["recolored"] = True
            self.config["palette_spreads"] = self.objective.chosen_spreads  # what "auto" chose, per style
            self.save("done")
        return outcome


def start_stylize(request: StylizeRequest, log=None) -> StylizeSession:
    """Create (or resume) a stylized run from a trained NeRF or SDF run."""
    device = resolve_device(request.device)
    base = RunDir(request.run)
    base_config = base.require_trained()
    if base_config["kind"] not in ("nerf", "sdf"):
        raise InputError(f"Run '{request.run}' is a {base_config['kind']} run; stylize a trained NeRF or SDF run (python -m ins_core fit --field nerf ...).")
    if base_config.get("status") != "done":
        raise InputError(f"Run '{request.run}' has not finished training (step {base_config.get('step')} of {base_config.get('steps')}); run the same fit command again to finish it.")
    if not request.styles:
        raise InputError("No style image given; pass --style PATH (one or more).")
    settings = StylizeSettings.for_device(device, **request.settings)
    out = RunDir(request.out)
    # Relative locations, so that a job folder moved as a whole still resumes.
    signature = {"kind": "stylized", "base_run": os.path.relpath(base.root.resolve(), out.root.resolve()), "styles": [Path(p).name for p in request.styles]}
    resume = out.prepare_new(signature, request.force)
    backbone = resolve_backbone(request.vgg_weights, request.cache_dir, request.allow_download, log)
    if resume:
        config = out.read_config()
        style_pixels = [kept_style(out.root, record) for record in config["styles"]]
        return StylizeSession(out, config, device, backbone, style_pixels, None)
    try:
        records, style_pixels = _copy_styles(request.styles, out.root, settings.style_size)
    except InputError:
        shutil.rmtree(out.root, ignore_errors=True)
        raise
    content_state = load_checkpoint(base.checkpoint_path, device)["trainer"]["model"]
    config = {
        "kind": "stylized",
        "signature": signature,
        "base_run": str(base.root.resolve()),
        "content_kind": base_config["kind"],
        "data": {**base_config["data"], "relative": os.path.relpath(data_path(base_config["data"], base.root), out.root.resolve())},
        "aabb": base_config["aabb"],
        "device": request.device,
        "seed": request.seed,
        "model": {"content_kind": base_config["kind"], "content": base_config["model"], "stylization": StylizationConfig(n_styles=len(records)).to_dict()},
        "styles": records,
        "stylize": asdict(settings),
        "backbone": {"name": backbone.name, "pretrained": backbone.pretrained, "note": backbone.note},
        "vgg_weights": request.vgg_weights,
        "cache_dir": request.cache_dir,
        "steps": settings.steps,
        "step": 0,
        "status": "new",
    }
    session = StylizeSession(out, config, device, backbone, style_pixels, content_state)
    session.save("training")
    return session
