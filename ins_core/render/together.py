"""Several fields in one frame: every stylized object of a scene through the INS engine at once.

Each field renders the same rays of the camera (one sample of every pixel, no background, with
how far along the camera's axis each ray's surface lies: frame.render_fields); ray by ray the
fields are laid nearest first and composited over one another in linear light, premultiplied, as
one volume would be where the fields do not overlap in depth (they are separate objects; where two
interpenetrate, the nearer at the ray wins it, and the pixel's samples smooth the line where they
meet). The passes follow the same order: Z the nearest surface's, Mist and Normal weighted by what
each field lets through from those in front.
"""

from __future__ import annotations

import torch

from .frame import Frame
from .passes import linear_to_srgb, over_background, srgb_to_linear


def _layered(values: list[torch.Tensor], order: torch.Tensor) -> torch.Tensor:
    """[K, H, W, C] of K frames' [H, W, C] values, each pixel's nearest first (`order` [K, H, W] indices)."""
    stacked = torch.stack(values)
    return torch.gather(stacked, 0, order[..., None].expand_as(stacked))


def frames_together(frames: list[Frame], background: torch.Tensor | None = None) -> Frame:
    """One frame of `frames` (each rendered with `ordered` and no background) laid nearest first,
    then over `background` (a linear RGB colour; None keeps the alpha). Passes are in the result
    when every frame has them."""
    if any(frame.order is None for frame in frames):
        raise ValueError("each frame laid together needs its order (render_frame(..., ordered=True))")
    nearest_first = torch.stack([frame.order for frame in frames]).argsort(dim=0)
    alpha = _layered([frame.rgba[..., 3:] for frame in frames], nearest_first)
    light = _layered([srgb_to_linear(frame.rgba[..., :3]) * frame.rgba[..., 3:] for frame in frames], nearest_first)
    # What reaches each layer through the ones in front of it.
    through = torch.cumprod(torch.cat([torch.ones_like(alpha[:1]), 1.0 - alpha[:-1]]), dim=0)
    coverage = (through * alpha).sum(0)
    colour = (through * light).sum(0) / coverage.clamp_min(1e-6)
    rgba = torch.cat([linear_to_srgb(colour) * (coverage > 0), coverage], dim=-1)
    if background is not None:
        rgba = over_background(rgba, background)
    depth = mist = normal = None
    if all(frame.depth is not None for frame in frames):
        depth = torch.stack([frame.depth for frame in frames]).min(dim=0).values
    if all(frame.mist is not None for frame in frames):  # a frame's mist is 1 - alpha (1 - its surface's mist)
        fog = _layered([1.0 - frame.mist[..., None] for frame in frames], nearest_first)
        mist = 1.0 - (through * fog).sum(0)[..., 0]
    if all(frame.normal is not None for frame in frames):  # (each frame's normals are weighed by its alpha already)
        normal = (through * _layered([frame.normal for frame in frames], nearest_first)).sum(0)
    order = torch.stack([frame.order for frame in frames]).min(dim=0).values
    return Frame(rgba, depth, mist, normal, order)
