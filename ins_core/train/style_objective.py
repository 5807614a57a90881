"""One stylization step's render and losses (`StyleObjective`): the loss network's targets per
style, the photographs' colours mapped to each painting, the views' kept surface samples, the
neighbouring views the consistency term compares, and the palette match after training."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from ..data.cameras import image_pixels, rays_from_pixels
from ..fields.stylization import one_style
from ..losses.backbone import Backbone
from ..losses.consistency import reprojection_difference
from ..losses.geometry import geometry_consistency
from ..losses.loss_precision import loss_network_dtype
from ..losses.object_window import MARGIN as WINDOW_MARGIN, on_object_window
from ..losses.style import (CONTENT_LAYER, GRAM_LAYERS, NNFM_LAYERS, StyleTargets, band_limited, color_transfer_matrix, gram_matrix, masked_gram_matrix,
                            nnfm_loss, palette_shortfall, principal_colours, relative_content_loss, total_variation)
from ..render.reprojection import Reprojection, reproject
from ..render.surface_samples import SurfaceSamples
from ..render.view_overlaps import SurfaceView, neighbour_overlaps, surface_points, view_differences
from ..render.views import render_view
from ..stylize_options import resolved_style_detail
from .deferred import deferred_backward
from .palette_match import PaletteSettings, SearchView, StylePalette, match_style_palettes
from .patches import Patch, sample_patch
from .scene_models import LossTerms, StylizedModel
from .stylize_settings import StylizeSettings

NEIGHBOURS = 3  # the consistency term compares a view with one of its nearest training views
SAMPLE_CACHE_BYTES = 2 << 30  # the views' kept surface samples on a CPU (lego at 100 px: about 4 MB a view)
# Each ray's faintest samples, together weighing at most this, are left out of the kept samples: every
# pixel stays within one level of an 8-bit image of the full sum. A NeRF's haze is many faint samples:
# on make demo's views 51 % of them are kept (lego at 100 px: 67 %), the colour heads' render and
# backward take 0.18 s a view instead of 0.38 (0.33), a step 1.15 s instead of 1.35-1.53 (lego:
# 1.17-1.24 instead of 1.31-1.39) on the 2-core EPYC, and a view's kept samples 3.3 MB instead of 6.3
# (lego: 2.9 instead of 4.4; `bench/faint_samples.py`; docs/performance.md).
FAINT_SAMPLES_BUDGET = 1.0 / 255.0


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
        self.coarse_screen = True  # the palette match screens its starts with `gram_loss(coarse=True)` first (benches compare)
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
        self.object_margin: int | None = WINDOW_MARGIN  # the palette match's loss network sees the object's window (None: whole views)
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
                       spread_weighs_colours: bool = False, coarse_refine: bool = False) -> bool:
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
        "auto" weighs the colour distance too, as the search does; `coarse_refine`: the search's refine
        steps at half the network's size (both tried, not the defaults). False (nothing changed)
        when `should_stop()` turned true during the search."""
        s = self.settings
        settings = PaletteSettings(s.palette_search_steps, s.palette_distribution, s.palette_consistency, s.palette_spread,
                                   s.palette_max_gain, refined_starts, spread_weighs_colours, coarse_refine)
        styles = self.palette_styles(max_views, should_stop)
        matched = None if styles is None else match_style_palettes(styles, settings, should_stop)
        if matched is None:
            return False
        self.chosen_spreads = [palette.spread for palette in matched]
        field = self.model.field
        for index, palette in enumerate(matched):
            field.compose_color_map(index, palette.affine.to(field.color_maps), palette.centre.to(field.color_maps))
        return True

    def palette_styles(self, max_views: int = 24, should_stop=None) -> list[StylePalette] | None:
        """What the palette match needs of each style: up to `max_views` training views rendered
        with it, its painting, the views its search looks through and its Gram loss, and (with
        `palette_consistency`) the colour differences of neighbouring views at shared points.
        None when `should_stop()` turned true, asked before each view is rendered (a view may need
        its samples marched first: seconds on a CPU, during which a job could not be cancelled)."""
        styles, overlaps = [], None
        for index, style in enumerate(self.style_pixels):
            self._use_style(index)
            # The geometry is the content's, the same for every style: where views overlap is found once.
            found = self._palette_views(max_views, self.settings.palette_consistency and index == 0, should_stop)
            if found is None:
                return None
            renders, surfaces = found
            if surfaces is not None:
                overlaps = neighbour_overlaps(surfaces)
            images = [view.premultiplied + (1 - view.opacity[..., None]) * self.white for view in renders]
            colors = torch.cat([image.reshape(-1, 3) for image in images])
            on_object = torch.cat([view.opacity.reshape(-1) > 0.5 for view in renders])
            chosen = renders[:: max(1, -(-len(renders) // PALETTE_SEARCH_VIEWS))]
            differences = view_differences(images, overlaps) if overlaps else None
            styles.append(StylePalette(colors, on_object, torch.from_numpy(style), chosen, functools.partial(self.gram_loss, style_index=index),
                                       differences, functools.partial(self.gram_loss, style_index=index, coarse=True) if self.coarse_screen else None))
        return styles

    @torch.no_grad()
    def _palette_views(self, max_views: int, with_surfaces: bool = False,
                       should_stop=None) -> tuple[list[SearchView], list[SurfaceView] | None] | None:
        """Up to `max_views` of the training views, evenly spread, rendered with the current style,
        and, `with_surfaces`, where each one's pixels see the surface (else None); None as soon as
        `should_stop()` is true."""
        field, views, cameras = self.model.field, [], []
        for view in self.view_indices[:: max(1, len(self.view_indices) // max_views)]:
            if should_stop is not None and should_stop():
                return None
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

    def gram_loss(self, image: torch.Tensor, opacity: torch.Tensor, style_index: int, coarse: bool = False) -> torch.Tensor:
        """The Gram term of `image_terms` alone, over the object (`opacity` [H, W]) of an image [H, W, 3],
        the loss network run on the object's window alone (`on_object_window`). `coarse`: the image
        and the painting both at half the network's size (a quarter of the work; the palette match
        screens its starts with it)."""
        size, targets = (self.settings.vgg_size // 2, self.coarse_targets) if coarse else (self.settings.vgg_size, self.targets)
        image, mask = self._on_window(_resize_long_side(_chw(image), size), opacity)
        return self._gram_term(self.extractor(image, list(GRAM_LAYERS), self.loss_dtype), mask, style_index, targets)

    @functools.cached_property
    def coarse_targets(self) -> StyleTargets:
        """The styles' Gram targets with each painting at half its size, for `gram_loss(coarse=True)`."""
        halved = [F.interpolate(style, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False) for style in self.targets.styles]
        return StyleTargets(self.extractor, halved, GRAM_LAYERS)

    def _on_window(self, image: torch.Tensor, opacity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """An image [1, C, h, w] at the loss network's size and its object's opacity [H, W] (any size,
        resized to the image's) cut to the object's window (`object_margin`; None: both whole)."""
        mask = F.interpolate(opacity[None, None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0] \
            if opacity.shape != image.shape[-2:] else opacity
        return on_object_window(image, mask, self.object_margin)

    def _gram_term(self, feats: dict, mask: torch.Tensor | None, style_index: int, targets: StyleTargets | None = None) -> torch.Tensor:
        """The style's relative Gram loss (`targets`, by default the styles'), over the pixels of `mask` [H, W] (None: all)."""
        grams = {layer: gram_matrix(feats[layer]) if mask is None else masked_gram_matrix(feats[layer], mask[None, None]) for layer in GRAM_LAYERS}
        return (self.targets if targets is None else targets)[style_index].relative_gram_loss(grams)

    def _use_style(self, style_index: int) -> None:
        self.model.set_style(one_style(style_index, self.n_styles))

    @torch.no_grad()
    def photo_features(self, photo: torch.Tensor, size: int | None, key: tuple[int, int] | None,
                       opacity: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The content layer's features of a photograph [H, W, 3] resized to `size`, on the window of
        its object (`opacity` [H, W]; None: the whole photograph), and their mean square over the whole
        photograph (the content term's unit); kept under `key` (view, style) while memory allows,
        since a view's photograph never changes."""
        if key in self.content_cache:
            return self.content_cache[key]
        photo_chw = _chw(photo)
        if size is not None:
            photo_chw = _resize_long_side(photo_chw, size)
        # The window's own features, not a crop of the whole photograph's: its edges then see the
        # same zero padding as the render's window.
        window = photo_chw if opacity is None else self._on_window(photo_chw, opacity)[0]
        features = self.extractor(window, [CONTENT_LAYER], self.loss_dtype)[CONTENT_LAYER]
        whole = features if window.shape == photo_chw.shape else self.extractor(photo_chw, [CONTENT_LAYER], self.loss_dtype)[CONTENT_LAYER]
        kept = (features, whole.float().pow(2).mean())
        if key is not None:
            while self.content_cache and (len(self.content_cache) + 1) * features.numel() * features.element_size() > CONTENT_CACHE_BYTES:
                self.content_cache.pop(next(iter(self.content_cache)))
            self.content_cache[key] = kept
        return kept

    def image_terms(self, render: torch.Tensor, photo: torch.Tensor, opacity: torch.Tensor | None, style_index: int, size: int | None,
                    photo_key: tuple[int, int] | None = None) -> tuple[torch.Tensor, dict]:
        """Style, content, NNFM and TV losses of a rendered image [H, W, 3] (resized to `size` for the
        loss network) over its object (`opacity` [H, W]; None: all of it); `photo_key` (view, style)
        lets the photograph's features be kept.

        With an opacity the loss network sees the object's window alone (`object_margin`). The
        content, NNFM and TV terms are means over the whole view, where the background adds a
        constant the fields cannot change (white rendered against white or its colour-mapped
        photograph): the window's means times its share of the view have their gradient, less that
        constant."""
        s = self.settings
        image, mask = _chw(render), None
        if size is not None:
            image = _resize_long_side(image, size)
        whole_pixels = image.shape[-2] * image.shape[-1]
        if opacity is not None:
            image, mask = self._on_window(image, opacity)
        share = image.shape[-2] * image.shape[-1] / whole_pixels
        feats = self.extractor(image, self.layers, self.loss_dtype)
        photo_feats, photo_mean_square = self.photo_features(photo, size, photo_key, opacity)
        target = self.targets[style_index]
        style = self._gram_term(feats, mask, style_index)
        content = share * relative_content_loss(feats[CONTENT_LAYER], photo_feats, photo_mean_square)
        total = s.style_weight * style + s.content_weight * content
        terms = {"style": style.detach(), "content": content.detach()}
        if s.nnfm_weight > 0:
            nnfm = share * nnfm_loss(feats, target.nnfm_features, search_dtype=self.loss_dtype)
            total = total + s.nnfm_weight * nnfm
            terms["nnfm"] = nnfm.detach()
        if s.tv_weight > 0:  # means over the window's neighbour pairs: times the share, the whole view's within a row or column of pairs
            total = total + s.tv_weight * share * total_variation(image)
        if s.palette_weight > 0 and opacity is not None:  # the object's pixels, at the render's own size
            palette = palette_shortfall(render[opacity > 0.5], *self.palettes[style_index])
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
        """The content geometry's visible samples of a training view (less each ray's faintest, `FAINT_SAMPLES_BUDGET`), kept while memory allows."""
        if view not in self.sample_cache:
            views = self.views
            origins, directions = rays_from_pixels(self.pixels, views.c2w[view], views.intrinsics[view] * self.render_scale)
            samples = self.model.surface_samples(origins, directions).without_faint(FAINT_SAMPLES_BUDGET)
            while self.sample_cache and sum(c.nbytes() for c in self.sample_cache.values()) + samples.nbytes() > self.cache_bytes:
                self.sample_cache.pop(next(iter(self.sample_cache)))
            self.sample_cache[view] = samples
        return self.sample_cache[view]

    def view_photo(self, view: int, style_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A training view's photograph at the render's size: its RGBA [H, W, 4] and the content
        target [H, W, 3] (over white, its colours mapped to the style's with `color_transfer`)."""
        rgba = self.views.rgba(view)
        if self.render_size != (self.views.height, self.views.width):
            rgba = F.interpolate(rgba.permute(2, 0, 1)[None], size=self.render_size, mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
        return rgba, self.content_target(over_white(rgba), style_index)

    def view_loss(self, view: int, style_index: int) -> LossTerms:
        """A training view through the loss network (its object's window: `image_terms`). The geometry
        stays the content's, so each pixel is a fixed blend of samples and only the style and colour
        heads are evaluated."""
        s = self.settings
        height, width = self.render_size
        rgba, photo = self.view_photo(view, style_index)
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
