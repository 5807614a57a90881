"""Whole images from a trained model: camera views (NeRF, SDF) or image grids (image fields)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.cameras import image_pixels, rays_from_pixels
from .fast import fast_renderer


@dataclass
class ViewRender:
    rgb: torch.Tensor  # [H, W, 3] composited over the background
    depth: torch.Tensor  # [H, W] distance along the ray, divided by opacity where it is > 0
    opacity: torch.Tensor  # [H, W]

    def rgba(self) -> torch.Tensor:
        """Straight-alpha RGBA, assuming rgb was composited over black."""
        alpha = self.opacity[..., None]
        return torch.cat([(self.rgb / alpha.clamp_min(1e-6)).clamp(0, 1) * (alpha > 0), alpha], dim=-1)


# Rays per renderer call: the fast path bounds its own field calls, so it takes larger pieces.
REFERENCE_CHUNK = 8192
FAST_CHUNK = 1 << 15


@torch.no_grad()
def render_view(model, c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int,
                background: torch.Tensor | None = None, chunk: int | None = None, fast: bool = True) -> ViewRender:
    """Render one camera in chunks of rays. The model decides whether gradients are needed.

    With `fast` (and a model in eval mode that the fast path knows) the frame comes from the
    inference renderer, the same picture for less work; `fast=False` always uses `model.render`.
    """
    device = c2w.device
    pixels = image_pixels(width, height, device)
    background = torch.zeros(3, device=device) if background is None else background
    renderer = (fast_renderer(model) if fast else None) or model.render
    chunk = chunk or (FAST_CHUNK if fast else REFERENCE_CHUNK)
    rgb, depth, opacity = [], [], []
    for start in range(0, pixels.shape[0], chunk):
        origins, directions = rays_from_pixels(pixels[start:start + chunk], c2w, intrinsics)
        out = renderer(origins, directions, background.expand(origins.shape[0], 3))
        rgb.append(out.rgb.detach())
        depth.append(out.depth.detach())
        opacity.append(out.opacity.detach())
    rgb_t, depth_t, opacity_t = torch.cat(rgb), torch.cat(depth), torch.cat(opacity)
    depth_t = torch.where(opacity_t > 1e-4, depth_t / opacity_t.clamp_min(1e-4), torch.zeros_like(depth_t))
    return ViewRender(rgb_t.view(height, width, 3), depth_t.view(height, width), opacity_t.view(height, width))


@torch.no_grad()
def render_image_field(field, width: int, height: int, chunk: int = 65536) -> torch.Tensor:
    """An image field sampled at the pixel centres of a width x height grid: [H, W, 3]."""
    device = next(field.parameters()).device
    uv = image_pixels(width, height, device) / torch.tensor([width, height], device=device, dtype=torch.float32)
    return torch.cat([field(uv[s:s + chunk]) for s in range(0, uv.shape[0], chunk)]).view(height, width, 3)
