"""NeuS-style rendering of a signed distance field.

Samples p_0..p_S along each ray; opacity of interval i from the SDF at its two ends (see
`neus_alpha`); its colour from the field at the interval's middle (features and normals averaged
from the ends, so each point is evaluated once). Training uses `render_sdf_rays_in_band`: the same
picture, with gradients and colour only near the surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.cameras import intersect_aabb
from ..fields.sdf import SdfField
from .compositing import Composite, composite, neus_alpha


@dataclass
class SdfRenderOutput(Composite):
    gradients: torch.Tensor  # [R, S+1, 3] SDF gradients at the samples (eikonal loss)
    sdf: torch.Tensor  # [R, S+1]
    inside_box: torch.Tensor  # [R, S+1] which samples lie in the scene box


def ray_samples(field: SdfField, origins: torch.Tensor, directions: torch.Tensor, n_samples: int,
                jitter: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """S+1 evenly spaced samples through the box (jittered by one random offset per ray):
    distances t [R, S+1], points [R, S+1, 3], and which rays hit the box [R]."""
    near, far, hit = intersect_aabb(origins, directions, field.aabb)
    step = (far - near) / n_samples
    offset = torch.rand_like(near) if jitter else torch.zeros_like(near)
    ticks = torch.arange(n_samples + 1, device=origins.device, dtype=origins.dtype)
    t = near[:, None] + (ticks[None, :] + offset[:, None]) * step[:, None]
    return t, origins[:, None, :] + t[..., None] * directions[:, None, :], hit


def render_sdf_rays(field: SdfField, origins: torch.Tensor, directions: torch.Tensor, n_samples: int,
                    background: torch.Tensor | None = None, jitter: bool = False) -> SdfRenderOutput:
    t, points, hit = ray_samples(field, origins, directions, n_samples, jitter)
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
    inside = ((points >= field.aabb[0]) & (points <= field.aabb[1])).all(-1)
    return SdfRenderOutput(result.rgb, result.depth, result.opacity, result.weights, gradients, sdf, inside)


# Training in the surface band: |sdf| * s beyond BAND leaves NeuS's opacity within 3.4e-4 of its
# limit, so those samples need neither gradients nor colour; a share of them keeps the eikonal term
# on empty space.
BAND = 8.0
EIKONAL_SHARE = 0.1


def render_sdf_rays_in_band(field: SdfField, origins: torch.Tensor, directions: torch.Tensor, n_samples: int,
                            background: torch.Tensor | None = None, jitter: bool = True) -> SdfRenderOutput:
    """`render_sdf_rays` for training with the full pass (gradients, double backward, colour) only
    where it matters: one SDF pass without a graph finds the band; the rest keep that value."""
    t, points, hit = ray_samples(field, origins, directions, n_samples, jitter)
    n_rays = origins.shape[0]
    with torch.no_grad():
        rough = field.sdf(points.reshape(-1, 3)).view(n_rays, n_samples + 1)
        band = rough.abs() * field.inv_s() < BAND
        band[:, 1:] |= band[:, :-1].clone()  # an interval with one end in the band gets both
        band[:, :-1] |= band[:, 1:].clone()
        active = band | (torch.rand_like(rough) < EIKONAL_SHARE)
    index = active.nonzero(as_tuple=True)
    sdf_a, features_a, gradients_a = field.sdf_with_gradient(points[index], create_graph=True)
    sdf = rough.index_put(index, sdf_a)
    gradients = torch.zeros(n_rays, n_samples + 1, 3, device=origins.device).index_put(index, gradients_a)
    features = torch.zeros(n_rays, n_samples + 1, features_a.shape[-1], device=origins.device).index_put(index, features_a)

    alpha = neus_alpha(sdf, field.inv_s()) * hit[:, None]
    live = band[:, 1:] & band[:, :-1]  # intervals with colour
    ray, interval = live.nonzero(as_tuple=True)
    middle = 0.5 * (points[ray, interval] + points[ray, interval + 1])
    normals = torch.nn.functional.normalize(0.5 * (gradients[ray, interval] + gradients[ray, interval + 1]), dim=-1)
    mid_features = 0.5 * (features[ray, interval] + features[ray, interval + 1])
    rgb_live = field.color(middle, normals, directions[ray], mid_features)
    rgb = torch.zeros(n_rays, n_samples, 3, device=origins.device).index_put((ray, interval), rgb_live)
    result = composite(alpha, rgb, 0.5 * (t[:, 1:] + t[:, :-1]), background)
    inside = ((points >= field.aabb[0]) & (points <= field.aabb[1])).all(-1) & active
    return SdfRenderOutput(result.rgb, result.depth, result.opacity, result.weights, gradients, sdf, inside)
