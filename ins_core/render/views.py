"""Whole images from a trained model: camera views (NeRF, SDF) or image grids (image fields)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.cameras import image_pixels, rays_from_pixels
from ..data.lens import ThinLens
from ..device import subnormals_flushed
from .fast import fast_renderer
from .parallel import map_chunks


@dataclass
class ViewRender:
    rgb: torch.Tensor  # [H, W, 3] composited over the background
    depth: torch.Tensor  # [H, W] distance along the ray, divided by opacity where it is > 0
    opacity: torch.Tensor  # [H, W]
    orthographic: bool = False  # how the rays were cast (rays_from_pixels): depth from the camera's plane
    offset: tuple[float, float] = (0.0, 0.0)  # where in each pixel its ray went, from the centre, in pixels
    lens: ThinLens | None = None  # depth of field: the rays started at lens_points [H*W, 2] on the aperture
    lens_points: torch.Tensor | None = None
    ray_c2w: torch.Tensor | None = None  # motion blur: each ray's own camera pose [H*W, 4, 4] (motion.py)

    def pixels(self) -> torch.Tensor:
        """[H*W, 2] the image positions the rays went through (row-major)."""
        height, width = self.depth.shape
        return image_pixels(width, height, self.depth.device) + torch.tensor(self.offset, device=self.depth.device)

    def rays(self, c2w: torch.Tensor, intrinsics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The world-space rays [H*W, 3] (origins, unit directions) this render cast, row-major."""
        pose = c2w if self.ray_c2w is None else self.ray_c2w
        return rays_from_pixels(self.pixels(), pose, intrinsics.to(c2w), self.orthographic, self.lens, self.lens_points)

    def rgba(self) -> torch.Tensor:
        """Straight-alpha RGBA, assuming rgb was composited over black."""
        alpha = self.opacity[..., None]
        return torch.cat([(self.rgb / alpha.clamp_min(1e-6)).clamp(0, 1) * (alpha > 0), alpha], dim=-1)


# Rays per renderer call: the fast path bounds its own field calls, so it takes larger pieces.
REFERENCE_CHUNK = 8192
FAST_CHUNK = 1 << 15
# Rays per chunk when worker threads share a frame: WORKER_CHUNK balanced two workers best on a
# 256x256 frame (1024-2048 alike, 8192 slower); each chunk pays a fixed cost (op dispatch per
# block of samples), so small frames get fewer chunks (the 80x45 image: two), one per worker at least.
WORKER_CHUNK = 1 << 12
WORKER_MIN_CHUNK = 1 << 11


@torch.no_grad()
def render_view(model, c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int,
                background: torch.Tensor | None = None, chunk: int | None = None, fast: bool = True,
                workers: int = 1, orthographic: bool = False, offset: tuple[float, float] = (0.0, 0.0),
                lens: ThinLens | None = None, lens_points: torch.Tensor | None = None,
                ray_c2w: torch.Tensor | None = None) -> ViewRender:
    """Render one camera in chunks of rays (an `orthographic` one: see rays_from_pixels), each
    through its pixel's centre moved by `offset` pixels, from its point `lens_points` [H*W, 2] of
    the aperture of a `lens` when one is given, each from its own camera pose `ray_c2w`
    [H*W, 4, 4] when given (a camera moving during the shutter). The model decides whether
    gradients are needed.

    With `fast` (and a model in eval mode that the fast path knows) the frame comes from the
    inference renderer, the same picture for less work; `fast=False` always uses `model.render`.
    `workers` > 1 draws the chunks on that many threads (see parallel.py: set torch to 1 thread).
    """
    device = c2w.device
    pixels = image_pixels(width, height, device) + torch.tensor(offset, device=device)
    background = torch.zeros(3, device=device) if background is None else background
    renderer = (fast_renderer(model) if fast else None) or model.render
    if chunk is None and workers > 1:
        n = pixels.shape[0]
        chunk = min(max(-(-n // (4 * workers)), WORKER_MIN_CHUNK), WORKER_CHUNK, -(-n // workers))
    chunk = chunk or (FAST_CHUNK if fast else REFERENCE_CHUNK)

    def draw(start: int):
        with torch.no_grad(), subnormals_flushed():  # both are per thread
            points = None if lens_points is None else lens_points[start:start + chunk]
            pose = c2w if ray_c2w is None else ray_c2w[start:start + chunk]
            origins, directions = rays_from_pixels(pixels[start:start + chunk], pose, intrinsics, orthographic, lens, points)
            out = renderer(origins, directions, background.expand(origins.shape[0], 3))
            return out.rgb.detach(), out.depth.detach(), out.opacity.detach()

    rgb, depth, opacity = zip(*map_chunks(draw, range(0, pixels.shape[0], chunk), workers))
    rgb_t, depth_t, opacity_t = torch.cat(rgb), torch.cat(depth), torch.cat(opacity)
    depth_t = torch.where(opacity_t > 1e-4, depth_t / opacity_t.clamp_min(1e-4), torch.zeros_like(depth_t))
    return ViewRender(rgb_t.view(height, width, 3), depth_t.view(height, width), opacity_t.view(height, width), orthographic,
                      (float(offset[0]), float(offset[1])), lens, lens_points, ray_c2w)


@torch.no_grad()
def render_image_field(field, width: int, height: int, chunk: int = 65536) -> torch.Tensor:
    """An image field sampled at the pixel centres of a width x height grid: [H, W, 3]."""
    device = next(field.parameters()).device
    uv = image_pixels(width, height, device) / torch.tensor([width, height], device=device, dtype=torch.float32)
    return torch.cat([field(uv[s:s + chunk]) for s in range(0, uv.shape[0], chunk)]).view(height, width, 3)
