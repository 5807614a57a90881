"""NeuS-style rendering of a signed distance field.

Samples p_0..p_S along each ray; opacity of interval i from the SDF at its two ends (see
`neus_alpha`); its colour from the field at the interval's middle (features and normals averaged
from the ends, so each point is evaluated once).
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


def render_sdf_rays(field: SdfField, origins: torch.Tensor, directions: torch.Tensor, n_samples: int,
                    background: torch.Tensor | None = None, jitter: bool = False) -> SdfRenderOutput:
    near, far, hit = intersect_aabb(origins, directions, field.aabb)
    step = (far - near) / n_samples
    offset = torch.rand_like(near) if jitter else torch.zeros_like(near)
    ticks = torch.arange(n_samples + 1, device=origins.device, dtype=origins.dtype)
    t = near[:, None] + (ticks[None, :] + offset[:, None]) * step[:, None]  # [R, S+1]
    points = origins[:, None, :] + t[..., None] * directions[:, None, :]
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
