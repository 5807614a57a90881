"""Where neighbouring views see the same surface points, and how their colours differ there.

The palette match after training uses it to see how much a colour map would make the views
disagree (`train/palette_match.py`, `ViewDifferences`): each view is paired with its nearest
neighbour (by camera position) and its surface points are reprojected into it (`reproject`: only
those the neighbour sees unoccluded count).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.cameras import image_pixels, rays_from_pixels
from .reprojection import Reprojection, reproject

SOLID = 0.9  # a pixel's opacity from which its surface point is taken (as the warp error does)


@dataclass
class SurfaceView:
    """A camera and what its pixels see: c2w [4, 4], intrinsics [4] at this size, the surface
    point of each pixel [H*W, 3] (row-major) and the opacity [H, W]."""

    c2w: torch.Tensor
    intrinsics: torch.Tensor
    points: torch.Tensor
    opacity: torch.Tensor

    def distance(self) -> torch.Tensor:
        """[H, W] distance from the camera to each pixel's surface point (along its ray)."""
        return (self.points - self.c2w[:3, 3]).norm(dim=-1).view_as(self.opacity)


def surface_points(depth: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """The world point [H*W, 3] each pixel sees at its distance along the ray `depth` [H, W]."""
    height, width = depth.shape
    origins, directions = rays_from_pixels(image_pixels(width, height, depth.device), c2w, intrinsics)
    return origins + directions * depth.reshape(-1, 1)


@dataclass
class Overlap:
    """View `source`'s surface points that view `target` sees too, and where they land there."""

    source: int
    target: int
    landing: Reprojection


def neighbour_overlaps(views: list[SurfaceView]) -> list[Overlap]:
    """Each view with its nearest other view, where they see the same surface (pairs that share
    nothing are left out)."""
    if len(views) < 2:
        return []
    centres = torch.stack([view.c2w[:3, 3] for view in views])
    gaps = torch.cdist(centres, centres)
    gaps.fill_diagonal_(float("inf"))
    overlaps = []
    for source, target in enumerate(gaps.argmin(dim=1).tolist()):
        mine, theirs = views[source], views[target]
        landing = reproject(mine.points, mine.opacity.reshape(-1) > SOLID, theirs.c2w, theirs.intrinsics, theirs.distance(), theirs.opacity)
        if landing.visible.any():
            overlaps.append(Overlap(source, target, landing))
    return overlaps


def view_differences(images: list[torch.Tensor], overlaps: list[Overlap]) -> torch.Tensor:
    """The colour differences [N, 3] between overlapping views' images [H, W, 3] at their shared
    surface points (the target's colour sampled bilinearly)."""
    parts = [images[o.source].reshape(-1, 3)[o.landing.visible] - o.landing.sample(images[o.target]) for o in overlaps]
    return torch.cat(parts) if parts else torch.zeros(0, 3)
