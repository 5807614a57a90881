"""NeuS-style rendering of a signed distance field.

Samples p_0..p_S along each ray; opacity of interval i from the SDF at its two ends (see
`neus_alpha`); its colour from the field at the interval's middle (features and normals averaged
from the ends, so each point is evaluated once).

For training on a CPU, `prune=True` takes the SDF's gradient (a second-order graph, most of a CPU step's
cost) only at the samples whose value can move the picture: those where NeuS's logistic CDF is not
saturated and light still reaches, and the ends of the intervals that carry weight. Elsewhere the
opacity's derivative is below 3.4e-4 of its peak or the sample is hidden, so a value computed
without a graph stands in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.cameras import intersect_aabb
from ..fields.sdf import SdfField
from .compositing import Composite, alpha_to_weights, composite, neus_alpha
from .sdf_fast import SATURATED  # |sdf| * s beyond it: the logistic CDF is within 3.4e-4 of 0 or 1
# Samples behind this much accumulated opacity, and intervals carrying less weight, do not train.
HIDDEN = 1e-4


@dataclass
class SdfRenderOutput(Composite):
    gradients: torch.Tensor  # [R, S+1, 3] SDF gradients at the samples (eikonal loss)
    sdf: torch.Tensor  # [R, S+1]
    inside_box: torch.Tensor  # [R, S+1] which samples lie in the scene box
    has_gradient: torch.Tensor | None = None  # [R, S+1] which samples carry a gradient (None: all)
    points: torch.Tensor | None = None  # [R, S+1, 3] the samples' positions (pruned renders)


def render_sdf_rays(field: SdfField, origins: torch.Tensor, directions: torch.Tensor, n_samples: int,
                    background: torch.Tensor | None = None, jitter: bool = False, prune: bool = False) -> SdfRenderOutput:
    near, far, hit = intersect_aabb(origins, directions, field.aabb)
    step = (far - near) / n_samples
    offset = torch.rand_like(near) if jitter else torch.zeros_like(near)
    ticks = torch.arange(n_samples + 1, device=origins.device, dtype=origins.dtype)
    t = near[:, None] + (ticks[None, :] + offset[:, None]) * step[:, None]  # [R, S+1]
    points = origins[:, None, :] + t[..., None] * directions[:, None, :]
    inside = ((points >= field.aabb[0]) & (points <= field.aabb[1])).all(-1)
    if prune:
        return _render_pruned(field, points, directions, t, hit, inside, background)
    flat = points.reshape(-1, 3)
    sdf, features, gradients = field.sdf_with_gradient(flat, create_graph=field.training)
    n_rays = origins.shape[0]
    sdf = sdf.view(n_rays, n_samples + 1)
    gradients = gradients.view(n_rays, n_samples + 1, 3)
    features = features.view(n_rays, n_samples + 1, -1)

    alpha = neus_alpha(sdf, field.inv_s()) * hit[:, None]
    middle = 0.5 * (points[:, 1:] + points[:, :-1])
    normals = torch.nn.functional.normalize(0.5 * (gradients[:, 1:] + gradients[:, :-1]), dim=-1)
    mid_features = 0.5 * (features[:, 1:] + features[:, :-1])
    view = directions[:, None, :].expand_as(middle)
    rgb = field.color(middle.reshape(-1, 3), normals.reshape(-1, 3), view.reshape(-1, 3), mid_features.reshape(-1, mid_features.shape[-1]))
    result = composite(alpha, rgb.view(n_rays, n_samples, 3), 0.5 * (t[:, 1:] + t[:, :-1]), background)
    return SdfRenderOutput(result.rgb, result.depth, result.opacity, result.weights, gradients, sdf, inside)


def _render_pruned(field: SdfField, points: torch.Tensor, directions: torch.Tensor, t: torch.Tensor, hit: torch.Tensor,
                   inside: torch.Tensor, background: torch.Tensor | None) -> SdfRenderOutput:
    """The reference's picture and (to within the saturated and hidden samples' share) its gradients,
    with the SDF's gradient graph only where it matters (see the module's docstring)."""
    n_rays, n_points = points.shape[:2]
    flat = points.reshape(-1, 3)
    inv_s = field.inv_s()
    with torch.no_grad():
        rough = field.sdf(flat).view(n_rays, n_points)
        weights = alpha_to_weights(neus_alpha(rough, inv_s) * hit[:, None])
        lit = torch.cat([torch.ones_like(weights[:, :1]), 1.0 - weights.cumsum(-1)], dim=1) > HIDDEN  # light reaches sample i
        coloured = weights > HIDDEN  # [R, S]
        active = hit[:, None] & lit & (rough.abs() * inv_s < SATURATED)
        active[:, :-1] |= coloured
        active[:, 1:] |= coloured
    rows = active.view(-1).nonzero().squeeze(1)
    sdf_active, features_active, gradients_active = field.sdf_with_gradient(flat[rows], create_graph=torch.is_grad_enabled())
    sdf = rough.view(-1).index_put((rows,), sdf_active).view(n_rays, n_points)
    gradients = flat.new_zeros(flat.shape).index_put((rows,), gradients_active).view(n_rays, n_points, 3)
    features = flat.new_zeros(flat.shape[0], features_active.shape[-1]).index_put((rows,), features_active).view(n_rays, n_points, -1)

    alpha = neus_alpha(sdf, inv_s) * hit[:, None]
    ray, interval = coloured.nonzero(as_tuple=True)
    middle = 0.5 * (points[ray, interval] + points[ray, interval + 1])
    normals = torch.nn.functional.normalize(0.5 * (gradients[ray, interval] + gradients[ray, interval + 1]), dim=-1)
    mid_features = 0.5 * (features[ray, interval] + features[ray, interval + 1])
    colours = field.color(middle, normals, directions[ray], mid_features)
    rgb = points.new_zeros(n_rays, n_points - 1, 3).index_put((ray, interval), colours)
    result = composite(alpha, rgb, 0.5 * (t[:, 1:] + t[:, :-1]), background)
    return SdfRenderOutput(result.rgb, result.depth, result.opacity, result.weights, gradients, sdf, inside, active, points)
