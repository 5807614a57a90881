"""Where the surface seen by one camera lands in another, and what that camera sees there.

Used twice: by the evaluation's warp error (how much two stylized views disagree) and by the
multi-view consistency term while stylizing (which makes them agree). Points come from a view's
rendered depth; a point counts only where the other view sees a surface at the same distance
(so parts hidden there are left out), and the other view's colour is sampled bilinearly, so that
resampling a fine texture is not counted as disagreement.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.cameras import project_points


@dataclass
class Reprojection:
    visible: torch.Tensor  # [N] bool: the source points the target view sees, unoccluded
    grid: torch.Tensor  # [V, 2] where the visible ones land, in grid_sample's [-1, 1] coordinates

    def sample(self, image: torch.Tensor) -> torch.Tensor:
        """The target image's colours [V, C] at the visible points (bilinear), from an [H, W, C] image."""
        sampled = F.grid_sample(image.permute(2, 0, 1)[None], self.grid[None, None], mode="bilinear",
                                padding_mode="border", align_corners=False)
        return sampled[0, :, 0].T


def reproject(points: torch.Tensor, solid: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor,
              depth: torch.Tensor, opacity: torch.Tensor, depth_tolerance: float = 0.03) -> Reprojection:
    """Surface points [N, 3] (those with `solid` set) seen by the camera (c2w, intrinsics) whose
    rendered distance along each ray is `depth` [H, W] and opacity `opacity` [H, W].

    A point is visible there when it projects inside the frame onto a solid pixel (opacity > 0.9)
    whose distance agrees with the point's within `depth_tolerance` of it (nearest pixel)."""
    height, width = depth.shape
    projected, _ = project_points(points, c2w, intrinsics)
    inside = (projected[:, 0] >= 0) & (projected[:, 0] < width) & (projected[:, 1] >= 0) & (projected[:, 1] < height)
    col = projected[:, 0].long().clamp(0, width - 1)
    row = projected[:, 1].long().clamp(0, height - 1)
    distance = (points - c2w[:3, 3]).norm(dim=-1)
    visible = solid & inside & (opacity[row, col] > 0.9) & ((depth[row, col] - distance).abs() < depth_tolerance * distance)
    grid = projected[visible, :2] / torch.tensor([width, height], device=points.device, dtype=points.dtype) * 2 - 1
    return Reprojection(visible, grid)
