"""Scene bounds from the views themselves: a visual hull carved from the alpha masks.

Used when a dataset has no `aabb`: a point belongs to the object only if every camera that sees it
sees foreground there. The same carving seeds the occupancy grid, so training starts by skipping
space that no view can fill.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError
from .cameras import project_points


def cameras_centre(c2w: torch.Tensor) -> torch.Tensor:
    """The point closest (least squares) to all cameras' optical axes: what the rig looks at."""
    origins = c2w[:, :3, 3].double()
    axes = -c2w[:, :3, 2].double()
    axes = axes / axes.norm(dim=-1, keepdim=True)
    projector = torch.eye(3, dtype=torch.float64) - axes[:, :, None] * axes[:, None, :]
    lhs = projector.sum(0)
    rhs = (projector @ origins[:, :, None]).sum(0)
    if torch.linalg.matrix_rank(lhs) < 3:  # parallel cameras: fall back to the mean position
        return origins.mean(0).float()
    return torch.linalg.solve(lhs, rhs).squeeze(-1).float()


def foreground_votes(points: torch.Tensor, alpha: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor,
                     threshold: float = 0.05, dilation: int = 1) -> torch.Tensor:
    """For each point: -1 if some camera sees background there, else how many cameras saw it.

    alpha [N, H, W] in [0, 1]; dilating the masks by `dilation` pixels keeps thin parts (and cells
    whose centre falls just outside the silhouette) from being carved away.
    """
    height, width = alpha.shape[1:]
    size = 2 * dilation + 1
    dilated = F.max_pool2d(alpha[:, None], kernel_size=size, stride=1, padding=dilation)[:, 0]
    seen = torch.zeros(points.shape[0], dtype=torch.int32)
    carved = torch.zeros(points.shape[0], dtype=torch.bool)
    for view in range(alpha.shape[0]):
        pixels, depth = project_points(points, c2w[view], intrinsics[view])
        col, row = pixels[:, 0].floor().long(), pixels[:, 1].floor().long()
        inside = (depth > 0) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
        foreground = torch.zeros_like(inside)
        foreground[inside] = dilated[view, row[inside], col[inside]] > threshold
        carved |= inside & ~foreground
        seen += inside.int()
    return torch.where(carved, torch.full_like(seen, -1), seen)


def carve_aabb(alpha: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor, resolution: int = 64) -> torch.Tensor:
    """A scene box [2, 3] around the visual hull of the masks, with a margin of two cells.

    The search is limited to the sphere inside the nearest camera, and a point must be seen by at
    least half the views: a point far behind the object is foreground in the few views that look
    through the object at it, but outside the frame of most others.
    """
    centre = cameras_centre(c2w)
    radius = (c2w[:, :3, 3] - centre).norm(dim=-1).min().item()
    axis = torch.linspace(-radius, radius, resolution)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3) + centre
    votes = foreground_votes(grid, alpha, c2w, intrinsics)
    kept = grid[votes >= max(1, (alpha.shape[0] + 1) // 2)]
    if kept.shape[0] == 0:
        raise InputError("The views show no object: every image is transparent where the cameras look; render the scene with the objects in view, or give an 'aabb' in transforms.json.")
    cell = 2 * radius / (resolution - 1)
    return torch.stack([kept.min(0).values - 2 * cell, kept.max(0).values + 2 * cell])
