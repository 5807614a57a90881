"""Sample positions along rays, clipped to the scene box."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.cameras import intersect_aabb


@dataclass
class RaySamples:
    origins: torch.Tensor  # [R, 3]
    directions: torch.Tensor  # [R, 3] unit
    t: torch.Tensor  # [R, S] sample distances (interval midpoints for NeRF, interval starts for SDF)
    deltas: torch.Tensor  # [R, S] interval lengths
    hit: torch.Tensor  # [R] whether the ray meets the box at all

    def points(self) -> torch.Tensor:
        """World positions [R, S, 3]."""
        return self.origins[:, None, :] + self.t[..., None] * self.directions[:, None, :]


def stratified_samples(origins: torch.Tensor, directions: torch.Tensor, aabb: torch.Tensor, n_samples: int, jitter: bool) -> RaySamples:
    """n_samples equal intervals between the box entry and exit; one sample per interval.

    With jitter the sample lies uniformly inside its interval (training), otherwise at its middle.
    Rays that miss the box get zero-length intervals, hence zero weight.
    """
    near, far, hit = intersect_aabb(origins, directions, aabb)
    steps = torch.linspace(0.0, 1.0, n_samples + 1, device=origins.device)
    edges = near[:, None] + (far - near)[:, None] * steps  # [R, S+1]
    lower, upper = edges[:, :-1], edges[:, 1:]
    offset = torch.rand_like(lower) if jitter else torch.full_like(lower, 0.5)
    t = lower + (upper - lower) * offset
    return RaySamples(origins, directions, t, upper - lower, hit)


def render_step(model) -> float:
    """A scene model's sample spacing along its box's diagonal: the finest detail its renders resolve."""
    aabb = model.field.aabb
    return float((aabb[1] - aabb[0]).norm()) / model.n_samples


def segment_samples(origins: torch.Tensor, directions: torch.Tensor, length: float, n_samples: int) -> RaySamples:
    """n_samples equal intervals over the first `length` of each ray (no box clipping), one
    sample at each interval's middle: for short probe rays whose span the caller chooses."""
    step = length / n_samples
    t = (torch.arange(n_samples, device=origins.device, dtype=origins.dtype) + 0.5) * step
    t = t.expand(origins.shape[0], n_samples)
    hit = torch.ones(origins.shape[0], dtype=torch.bool, device=origins.device)
    return RaySamples(origins, directions, t, torch.full_like(t, step), hit)
