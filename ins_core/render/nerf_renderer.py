"""Render rays through a radiance field: stratified samples, occupancy skipping, compositing.

The field only needs `density(x) -> (raw, h)`, `color(h, d) -> rgb` and a `sigma_from_raw`
activation, so the content field (CIM) and the stylized field (CIM + SIM + AM) render alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ..fields.activations import density_activation
from .compositing import Composite, alpha_to_weights, composite, density_to_alpha
from .occupancy import OccupancyGrid
from .samplers import RaySamples, stratified_samples

# Samples whose weight is below this do not get a colour: they cannot change the pixel visibly.
COLOR_WEIGHT_EPS = 1e-4


class RadianceField(Protocol):
    aabb: torch.Tensor

    def density(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def color(self, h: torch.Tensor, directions: torch.Tensor) -> torch.Tensor: ...


@dataclass
class RenderOutput(Composite):
    raw_density: torch.Tensor  # [M] raw density at the evaluated samples (for geometry distillation)
    n_evaluated: int


def render_nerf_rays(
    field: RadianceField,
    origins: torch.Tensor,
    directions: torch.Tensor,
    n_samples: int,
    grid: OccupancyGrid | None = None,
    background: torch.Tensor | None = None,
    jitter: bool = False,
) -> RenderOutput:
    """Composite the field along rays [R, 3]; samples in empty grid cells are skipped."""
    samples = stratified_samples(origins, directions, field.aabb, n_samples, jitter)
    return render_nerf_samples(field, samples, grid, background)


@dataclass
class SampleDensities:
    """The field at the samples of some rays: which (ray, slot) were evaluated, and what it gave there."""

    rays: torch.Tensor  # [M] ray of each evaluated sample
    slots: torch.Tensor  # [M] its index along the ray
    points: torch.Tensor  # [M, 3]
    raw: torch.Tensor  # [M] raw density
    features: torch.Tensor  # [M, F]
    alpha: torch.Tensor  # [R, S]


def sample_densities(field: RadianceField, samples: RaySamples, grid: OccupancyGrid | None = None) -> SampleDensities:
    """Evaluate the field's density at the ray samples that lie in occupied cells; alphas for all samples."""
    points = samples.points()  # [R, S, 3]
    active = samples.hit[:, None].expand_as(samples.t)
    if grid is not None:
        active = active & grid.occupied_at(points)
    rays, slots = active.nonzero(as_tuple=True)
    selected = points[rays, slots]
    raw, features = field.density(selected)
    sigma = torch.zeros_like(samples.t)
    sigma = sigma.index_put((rays, slots), density_activation(raw))
    return SampleDensities(rays, slots, selected, raw, features, density_to_alpha(sigma, samples.deltas))


def render_nerf_samples(field: RadianceField, samples: RaySamples, grid: OccupancyGrid | None = None,
                        background: torch.Tensor | None = None) -> RenderOutput:
    """Composite the field at given ray samples; samples in empty grid cells are skipped."""
    origins, directions = samples.origins, samples.directions
    d = sample_densities(field, samples, grid)
    rays, slots = d.rays, d.slots
    # The weights decide which samples get a colour; computing them twice is cheaper than colouring all.
    visible = alpha_to_weights(d.alpha.detach())[rays, slots] > COLOR_WEIGHT_EPS
    rgb = torch.zeros(*samples.t.shape, 3, device=origins.device)
    if visible.any():
        colored = field.color(d.features[visible], directions[rays[visible]])
        rgb = rgb.index_put((rays[visible], slots[visible]), colored)
    result = composite(d.alpha, rgb, samples.t, background)
    return RenderOutput(result.rgb, result.depth, result.opacity, result.weights, d.raw, int(d.points.shape[0]))
