"""How well a stylized run did: style match, content kept, geometry kept, multi-view consistency.

- Style match: Gram distance between renders and the style image (lower is closer), before
  (the content run) and after stylization, and for the painting itself pasted into the content's
  silhouette at the render's size: what a perfect stylization of those pixels would score, since
  the object's outline and a small render keep even the painting's own Gram distance well above 0.
- The same three Gram distances to the painting as the view can show it (`painting_as_seen`,
  `style_distance_seen_*`): a view rendered smaller than the loss network's working size is
  enlarged for it and carries none of the painting's finer detail, so against the painting at its
  own detail even the pasted painting keeps half of the distance (lego, 100 px); against the
  painting as seen, a perfect stylization of those pixels is what falls to (near) 0.
- Content kept: VGG content loss of stylized renders against the photographs.
- Geometry kept: mean |depth difference| between stylized and content renders where both see
  the object.
- Multi-view consistency: each stylized view is warped onto another view with its rendered depth and
  the known cameras; pixels hidden in the other view fail a depth test and are left out; the masked
  RMSE is reported for nearby (short range) and distant (long range) view pairs; and, as the
  reference for it, that of the content renders seen through the style's colour map (`through_palette`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data.cameras import look_at
from ..fields.stylization import one_style
from ..losses.style import CONTENT_LAYER, band_limited, content_loss, object_style_distances, painting_grams
from ..render.reprojection import reproject
from ..render.view_overlaps import surface_points as points_at_depth
from ..render.views import ViewRender, render_view


@dataclass
class CameraView:
    c2w: torch.Tensor
    intrinsics: torch.Tensor
    width: int
    height: int


def orbit_views(aabb: torch.Tensor, template: CameraView, radius: float, elevation: float, n: int) -> list[CameraView]:
    """n cameras evenly spaced in azimuth around the box centre (consecutive ones are close)."""
    centre = (aabb[0] + aabb[1]) / 2
    views = []
    for k in range(n):
        azimuth = 2 * math.pi * k / n
        eye = centre + radius * torch.tensor([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)], device=centre.device)
        views.append(CameraView(look_at(eye, centre), template.intrinsics, template.width, template.height))
    return views


def surface_points(render: ViewRender, view: CameraView) -> torch.Tensor:
    """The world point [H*W, 3] each pixel of a render sees, at its rendered depth."""
    return points_at_depth(render.depth, view.c2w, view.intrinsics)


def warp_error(source: ViewRender, source_view: CameraView, target: ViewRender, target_view: CameraView, depth_tolerance: float = 0.03) -> tuple[float, int]:
    """RMSE between source pixels and the target pixels they land on, over visible, unoccluded points."""
    points = surface_points(source, source_view)
    solid = source.opacity.reshape(-1) > 0.9
    landing = reproject(points, solid, target_view.c2w, target_view.intrinsics, target.depth, target.opacity, depth_tolerance)
    if not landing.visible.any():
        return float("nan"), 0
    difference = source.rgb.reshape(-1, 3)[landing.visible] - landing.sample(target.rgb)
    return float(difference.pow(2).mean().sqrt()), int(landing.visible.sum())


def consistency(model, views: list[CameraView], short_gap: int = 1, long_gap: int | None = None, on_view=None,
                renders_out: list | None = None) -> dict:
    """Mean warp RMSE over pairs (k, k + gap) of orbit views, for a short and a long gap.
    `on_view()` is called after each view is rendered (progress); `renders_out` receives the renders."""
    white = torch.ones(3, device=views[0].c2w.device)
    renders = renders_out if renders_out is not None else []
    for v in views:
        renders.append(render_view(model, v.c2w, v.intrinsics, v.width, v.height, white))
        if on_view is not None:
            on_view()
    return warp_consistency(renders, views, short_gap, long_gap)


def warp_consistency(renders: list[ViewRender], views: list[CameraView], short_gap: int = 1, long_gap: int | None = None) -> dict:
    """`consistency` of renders already made."""
    long_gap = long_gap or max(2, len(views) // 6)
    result = {}
    for name, gap in (("short_range", short_gap), ("long_range", long_gap)):
        errors = [warp_error(renders[k], views[k], renders[(k + gap) % len(views)], views[(k + gap) % len(views)])[0] for k in range(len(views))]
        errors = [e for e in errors if not math.isnan(e)]
        result[f"{name}_rmse"] = sum(errors) / len(errors) if errors else float("nan")
        result[f"{name}_degrees"] = 360.0 * gap / len(views)
    return result


def through_palette(renders: list[ViewRender], field) -> list[ViewRender]:
    """Renders with the stylized field's current colour map applied to every pixel.

    The map is the same for every view and pixel, so it adds no inconsistency; but it stretches
    colour differences (up to 2x for a painting far from the content's palette), the warp error
    between views included. The content seen through the same map is the fair reference for the
    stylized run's warp error."""
    out = []
    for render in renders:
        rgb = field.recolor(render.rgb.reshape(-1, 3)).view_as(render.rgb)
        out.append(ViewRender(rgb, render.depth, render.opacity))
    return out


def _mean_per_layer(per_view: list[dict[str, float]]) -> dict[str, float]:
    return {name: sum(view[name] for view in per_view) / len(per_view) for name in per_view[0]}


def object_distances(renders: list[torch.Tensor], masks: list[torch.Tensor], targets: dict, extractor, size: int | None) -> dict[str, float]:
    """Gram distance per layer of the rendered object (`masks`) to the painting's Grams
    (`painting_grams`) at the loss network's working size, averaged over the views."""
    return _mean_per_layer([object_style_distances(r, m, targets, extractor, size) for r, m in zip(renders, masks)])


def object_distance(renders: list[torch.Tensor], masks: list[torch.Tensor], targets: dict, extractor, size: int | None) -> float:
    """`object_distances` summed over the layers: the Gram distance `eval` reports."""
    return sum(object_distances(renders, masks, targets, extractor, size).values())


def style_and_content(renders: list[torch.Tensor], photos: list[torch.Tensor], targets: dict, extractor,
                      masks: list[torch.Tensor], size: int | None) -> dict:
    """Gram distance of the rendered object (`masks`) to the painting's Grams (`targets`), at the
    loss network's working size, and content loss of renders against photographs."""
    style_distance = object_distance(renders, masks, targets, extractor, size)
    with torch.no_grad():
        content = sum(float(content_loss(extractor(r.permute(2, 0, 1)[None], [CONTENT_LAYER]), extractor(p.permute(2, 0, 1)[None], [CONTENT_LAYER]))) for r, p in zip(renders, photos)) / len(renders)
    return {"style_distance": style_distance, "content_loss": content}


def painting_in_view(style: torch.Tensor, height: int, width: int, working_size: int | None) -> torch.Tensor:
    """The painting [H, W, 3] as a `height` x `width` view shows it to the loss network: the loss
    network sees the view at `working_size` on its longer side and the painting's pixels at their
    own size (the stroke scale is already in the painting's size), so the view covers a central
    crop of that many painting pixels (the painting tiled if smaller), resampled to the view's pixels."""
    scale = 1.0 if working_size is None else working_size / max(height, width)
    crop_h, crop_w = max(1, round(height * scale)), max(1, round(width * scale))
    reps = (-(-crop_h // style.shape[0]), -(-crop_w // style.shape[1]))
    tiled = style.repeat(reps[0], reps[1], 1)
    top, left = (tiled.shape[0] - crop_h) // 2, (tiled.shape[1] - crop_w) // 2
    crop = tiled[top:top + crop_h, left:left + crop_w].permute(2, 0, 1)[None]
    view = torch.nn.functional.interpolate(crop, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return view[0].permute(1, 2, 0).clamp(0, 1)


def painting_pasted_distances(style: torch.Tensor, masks: list[torch.Tensor], extractor, working_size: int | None,
                              targets: dict | None = None) -> dict[str, float]:
    """Gram distance per layer of the painting itself, pasted over white into each silhouette
    (`masks`, opacities [H, W]) at the render's size, to `targets` (default: the painting's own
    Grams): the score of a perfect stylization of those pixels."""
    targets = painting_grams(style, extractor) if targets is None else targets
    pasted = []
    for mask in masks:
        painting = painting_in_view(style.to(mask), mask.shape[0], mask.shape[1], working_size)
        pasted.append(painting * mask[..., None] + (1 - mask[..., None]))
    return object_distances(pasted, masks, targets, extractor, working_size)


def painting_pasted_distance(style: torch.Tensor, masks: list[torch.Tensor], extractor, working_size: int | None,
                             targets: dict | None = None) -> float:
    """`painting_pasted_distances` summed over the layers."""
    return sum(painting_pasted_distances(style, masks, extractor, working_size, targets).values())


def painting_as_seen(style: torch.Tensor, view_side: int, working_size: int | None) -> torch.Tensor:
    """The painting [H, W, 3] with only the detail that a view `view_side` pixels on its longer
    side keeps once the loss network enlarges it to `working_size`: resized down by that ratio and
    back up, as the view itself is."""
    if working_size is None:
        return style
    return band_limited(style.permute(2, 0, 1)[None], view_side / working_size)[0].permute(1, 2, 0)


def color_statistics_distance(images: list[torch.Tensor], masks: list[torch.Tensor], style: torch.Tensor) -> float:
    """Distance between the colour mean / covariance of the rendered object and of the style image.

    Independent of any loss network, so it also judges the offline backbone fairly:
    |mean_r - mean_s| + |cov_r - cov_s|_F over RGB in [0, 1], object pixels only.
    """
    pixels = torch.cat([image.reshape(-1, 3)[mask.reshape(-1)] for image, mask in zip(images, masks)]).double()
    reference = style.reshape(-1, 3).double()
    if pixels.shape[0] < 2:
        return float("nan")
    return float((pixels.mean(0) - reference.mean(0)).norm() + (torch.cov(pixels.T) - torch.cov(reference.T)).norm())


def silhouette_iou(a: ViewRender, b: ViewRender) -> float:
    """Intersection over union of where two renders are opaque (opacity > 0.5)."""
    solid_a, solid_b = a.opacity > 0.5, b.opacity > 0.5
    union = (solid_a | solid_b).sum()
    return float((solid_a & solid_b).sum() / union) if union else 1.0


def saturated_fraction(render: ViewRender, silhouette: torch.Tensor, low: float = 0.02, high: float = 0.98) -> float:
    """Share of the object's pixels that went flat white or flat black (the collapse to watch for)."""
    rgb = render.rgb[silhouette]
    if not rgb.shape[0]:
        return 0.0
    flat = (rgb > high).all(dim=-1) | (rgb < low).all(dim=-1)
    return float(flat.float().mean())


def depth_difference(a: ViewRender, b: ViewRender) -> float:
    """Mean |depth_a - depth_b| where both renders are solid."""
    both = (a.opacity > 0.9) & (b.opacity > 0.9)
    return float((a.depth - b.depth).abs()[both].mean()) if both.any() else float("nan")


def typical_orbit(views, aabb: torch.Tensor, n: int = 24) -> list[CameraView]:
    """An orbit at the distance and elevation of the first view, with its intrinsics."""
    template = CameraView(views.c2w[0], views.intrinsics[0], views.width, views.height)
    offset = views.c2w[0, :3, 3] - (aabb[0] + aabb[1]) / 2
    return orbit_views(aabb, template, float(offset.norm()), float(torch.asin(offset[2] / offset.norm())), n)


def evaluate_stylized(stylized, content, views, styles: list[torch.Tensor], extractor, orbit_size: int = 24,
                      renders_out: dict | None = None, working_size: int | None = None, progress=None) -> dict:
    """Per style: style match before/after, content kept, geometry kept, collapse checks, multi-view consistency.

    stylized / content: opened runs (TrainedRun); views: held-out views; styles: [H, W, 3] images.
    `renders_out`, when given, receives the renders: {"content": [...], "styles": [[...] per style]}.
    `working_size`: the longer side at which the loss network looked at views (the run's `vgg_size`).
    `progress(done, total)`: called after each rendered view.
    """
    white = torch.ones(3, device=views.c2w.device)
    total, done = (len(views) + orbit_size) * (1 + len(styles)), 0

    def rendered() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    def renders(model):
        out = []
        for k in range(len(views)):
            out.append(render_view(model, views.c2w[k], views.intrinsics[k], views.width, views.height, white))
            rendered()
        return out

    photos = [views.rgba(k)[..., :3] * views.rgba(k)[..., 3:] + (1 - views.rgba(k)[..., 3:]) for k in range(len(views))]
    content_renders = renders(content.model)
    orbit = typical_orbit(views, content.model.field.aabb, orbit_size)
    content_orbit: list[ViewRender] = []
    result = {"content": consistency(content.model, orbit, on_view=rendered, renders_out=content_orbit), "styles": []}
    for index, style in enumerate(styles):
        stylized.model.set_style(one_style(index, len(styles)))
        stylized_renders = renders(stylized.model)
        masks = [r.opacity for r in content_renders]
        grams = painting_grams(style, extractor)
        before = style_and_content([r.rgb for r in content_renders], photos, grams, extractor, masks, working_size)
        painting_distance = painting_pasted_distance(style, masks, extractor, working_size, grams)
        after = style_and_content([r.rgb for r in stylized_renders], photos, grams, extractor, masks, working_size)
        seen = painting_grams(painting_as_seen(style, max(views.width, views.height), working_size), extractor)
        seen_distances = {f"style_distance_seen_{when}": object_distance([r.rgb for r in model_renders], masks, seen, extractor, working_size)
                          for when, model_renders in (("before", content_renders), ("after", stylized_renders))}
        seen_distances["style_distance_seen_painting"] = painting_pasted_distance(style, masks, extractor, working_size, seen)
        color_before = color_statistics_distance([r.rgb for r in content_renders], [r.opacity > 0.5 for r in content_renders], style)
        color_after = color_statistics_distance([r.rgb for r in stylized_renders], [r.opacity > 0.5 for r in stylized_renders], style)
        depth = [depth_difference(a, b) for a, b in zip(stylized_renders, content_renders)]
        iou = [silhouette_iou(a, b) for a, b in zip(stylized_renders, content_renders)]
        saturated = [saturated_fraction(a, b.opacity > 0.5) for a, b in zip(stylized_renders, content_renders)]
        result["styles"].append({
            "style": index,
            "style_distance_before": before["style_distance"],
            "style_distance_after": after["style_distance"],
            "style_distance_painting": painting_distance,
            **seen_distances,
            "color_distance_before": color_before,
            "color_distance_after": color_after,
            "content_loss_before": before["content_loss"],
            "content_loss_after": after["content_loss"],
            "depth_l1_vs_content": float(sum(depth) / len(depth)),
            "silhouette_iou": float(sum(iou) / len(iou)),
            "saturated_fraction": float(sum(saturated) / len(saturated)),
            **consistency(stylized.model, orbit, on_view=rendered),
            **{f"palette_reference_{key}": value for key, value in
               warp_consistency(through_palette(content_orbit, stylized.model.field), orbit).items() if key.endswith("rmse")},
        })
        if renders_out is not None:
            renders_out.setdefault("styles", []).append([r.rgb for r in stylized_renders])
    if renders_out is not None:
        renders_out["content"] = [r.rgb for r in content_renders]
    return result
