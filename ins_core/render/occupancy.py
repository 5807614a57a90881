"""An occupancy grid over the scene box that lets the renderer skip empty space.

Each cell keeps a running maximum of the density seen in it (decayed a little at each update); a
cell is occupied while sigma * step_size would give a visible alpha. Training seeds the grid from the
views' visual hull, so even the first steps skip space no view can fill.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class OccupancyGrid(nn.Module):
    def __init__(self, aabb: torch.Tensor, resolution: int = 64):
        super().__init__()
        self.resolution = resolution
        self.register_buffer("aabb", aabb.clone().float())
        self.register_buffer("density", torch.full((resolution**3,), -1.0))  # -1: not measured yet
        self.register_buffer("allowed", torch.ones(resolution**3, dtype=torch.bool))  # e.g. the visual hull
        self.register_buffer("occupied", torch.ones(resolution**3, dtype=torch.bool))

    def cell_index(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat cell index of each point and whether the point lies inside the box."""
        unit = (points - self.aabb[0]) / (self.aabb[1] - self.aabb[0])
        inside = ((unit >= 0) & (unit < 1)).all(-1)
        cell = (unit.clamp(0, 1 - 1e-6) * self.resolution).long()
        r = self.resolution
        return (cell[..., 0] * r + cell[..., 1]) * r + cell[..., 2], inside

    def occupied_at(self, points: torch.Tensor) -> torch.Tensor:
        index, inside = self.cell_index(points)
        return self.occupied[index] & inside

    def cell_centres(self, index: torch.Tensor, jitter: bool = False) -> torch.Tensor:
        r = self.resolution
        ijk = torch.stack([index // (r * r), (index // r) % r, index % r], dim=-1).float()
        offset = torch.rand_like(ijk) if jitter else torch.full_like(ijk, 0.5)
        return self.aabb[0] + (ijk + offset) / r * (self.aabb[1] - self.aabb[0])

    @torch.no_grad()
    def seed(self, keep: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Mark cells empty for good where `keep(cell centres)` is False (e.g. outside the visual hull)."""
        index = torch.arange(self.resolution**3, device=self.occupied.device)
        self.allowed &= keep(self.cell_centres(index)).to(self.occupied.device)
        self.occupied &= self.allowed

    @torch.no_grad()
    def update(self, sigma_fn: Callable[[torch.Tensor], torch.Tensor], step_size: float, threshold: float = 0.01,
               decay: float = 0.95, fraction: float = 1.0, chunk: int = 1 << 18) -> float:
        """Re-measure the density in (a random `fraction` of) the allowed cells; returns the occupied share.

        Cells outside the allowed region (the visual hull) can never be occupied, so they are skipped.
        """
        candidates = self.allowed.nonzero(as_tuple=True)[0]
        if fraction < 1.0:
            # Without replacement: a cell drawn twice would get two writes in one scatter, and which
            # one lands is up to the threads (a fit with the same seed came out different).
            pick = torch.randperm(candidates.shape[0], device=candidates.device)[:max(1, int(candidates.shape[0] * fraction))]
            candidates = candidates[pick]
        index = candidates
        for start in range(0, index.shape[0], chunk):
            part = index[start:start + chunk]
            sigma = sigma_fn(self.cell_centres(part, jitter=True)).float()
            old = self.density[part]
            self.density[part] = torch.where(old < 0, sigma, torch.maximum(old * decay, sigma))
        measured = self.density >= 0
        # A cell stays occupied until measured; the threshold adapts to very faint scenes early on.
        mean_alpha = (self.density[measured & self.allowed] * step_size).mean().item() if measured.any() else threshold
        cut = min(threshold, mean_alpha)
        self.occupied = self.allowed & (~measured | (self.density * step_size > cut))
        return self.occupied.float().mean().item()
