"""Sampling-stride patches: P x P rays taken every s pixels from a (P*s) x (P*s) window of a view.

A larger stride covers more of the scene per step at the same cost, so style statistics see larger
structures. Windows that are almost all background are drawn again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.cameras import rays_from_pixels
from ..data.dataset import PosedViews


@dataclass
class Patch:
    origins: torch.Tensor  # [P*P, 3]
    directions: torch.Tensor  # [P*P, 3]
    rgba: torch.Tensor  # [P, P, 4] the photograph at the same pixels
    view: int
    size: int


def effective_stride(width: int, height: int, patch: int, stride: int) -> int:
    """The largest stride <= the asked one whose window still fits the view (at least 1)."""
    return max(1, min(stride, min(width, height) // patch))


def sample_patch(views: PosedViews, patch: int, stride: int, generator: torch.Generator | None = None,
                 min_foreground: float = 0.1, max_tries: int = 10) -> Patch:
    size = min(patch, views.width, views.height)
    stride = effective_stride(views.width, views.height, size, stride)
    window = size * stride
    device = views.images.device
    best = None
    for _ in range(max_tries):
        view = int(torch.randint(0, len(views), (1,), generator=generator))
        left = int(torch.randint(0, views.width - window + 1, (1,), generator=generator))
        top = int(torch.randint(0, views.height - window + 1, (1,), generator=generator))
        cols = left + stride * torch.arange(size, device=device) + stride // 2
        rows = top + stride * torch.arange(size, device=device) + stride // 2
        rgba = views.images[view][rows][:, cols].float() / 255.0
        coverage = float(rgba[..., 3].mean())
        if best is None or coverage > best[0]:
            best = (coverage, view, rows, cols, rgba)
        if coverage >= min_foreground:
            break
    _, view, rows, cols, rgba = best
    grid_rows, grid_cols = torch.meshgrid(rows.float(), cols.float(), indexing="ij")
    pixels = torch.stack([grid_cols, grid_rows], dim=-1).reshape(-1, 2) + 0.5
    origins, directions = rays_from_pixels(pixels, views.c2w[view], views.intrinsics[view])
    return Patch(origins, directions, rgba, view, size)
