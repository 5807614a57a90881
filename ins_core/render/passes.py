"""A view render turned into what a render engine hands to Blender: the combined image over the
world's colour, the Z pass and the Mist pass.

The fields' colours are sRGB-encoded (they learnt from 8-bit renders saved under the "Standard"
view transform), while Blender's world colour and its render result are linear light, so the
field is laid over the world in linear light and encoded back. Blender's Z pass is the distance
along the camera's viewing axis, one sample a pixel: a pixel shows a surface where the field is
at least half opaque, and elsewhere holds `no_depth` (Cycles writes 1e10 there). Blender's Mist
pass runs from 0 at the world's mist start to 1 at start + depth, by the distance from the camera
(not along the axis), shaped by the falloff, and is 1 where nothing is; a partly transparent pixel
is mist by the share it lets through.
"""

from __future__ import annotations

import torch

from ..data.cameras import camera_directions
from ..data.lens import thin_lens_rays
from .views import ViewRender

SURFACE_OPACITY = 0.5


def srgb_to_linear(encoded: torch.Tensor) -> torch.Tensor:
    """The sRGB transfer function undone, values in [0, 1]."""
    return torch.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """Linear light in [0, 1] (clipped) encoded with the sRGB transfer function."""
    linear = linear.clamp(0.0, 1.0)
    return torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def over_background(rgba: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Straight-alpha RGBA [H, W, 4] (sRGB-encoded colours) over a linear RGB colour [3]: opaque
    RGBA, sRGB-encoded, composited in linear light."""
    alpha = rgba[..., 3:]
    linear = srgb_to_linear(rgba[..., :3]) * alpha + background.to(rgba) * (1.0 - alpha)
    return torch.cat([linear_to_srgb(linear), torch.ones_like(alpha)], dim=-1)


def z_pass(render: ViewRender, intrinsics: torch.Tensor, no_depth: float, min_opacity: float = SURFACE_OPACITY) -> torch.Tensor:
    """[H, W] distance along the viewing axis to the surface each pixel shows (`render.depth` runs
    along unit rays through the pixel centres), `no_depth` where the field is under `min_opacity`
    (half opaque: Blender's Z pass)."""
    height, width = render.depth.shape
    if render.lens is not None:  # each ray from its aperture point: the axis's share of its unit direction
        _, directions = thin_lens_rays(camera_directions(render.pixels(), intrinsics.to(render.depth)), render.orthographic,
                                       render.lens, render.lens_points)
        along_axis = render.depth * -directions[:, 2].view(height, width)
    elif render.orthographic:  # the rays run along the axis
        along_axis = render.depth
    else:
        pixels = render.pixels()
        ray_length_per_unit_axis = camera_directions(pixels, intrinsics.to(pixels)).norm(dim=-1).view(height, width)
        along_axis = render.depth / ray_length_per_unit_axis
    return torch.where(render.opacity >= min_opacity, along_axis, torch.full_like(along_axis, no_depth))


def mist_pass(render: ViewRender, start: float, depth: float, exponent: float) -> torch.Tensor:
    """[H, W] Blender's Mist pass: `((distance - start) / depth)` clipped to [0, 1] and raised to
    `exponent` (the falloff: 2 quadratic, 1 linear, 0.5 inverse quadratic), as Cycles computes it,
    with each pixel's expected distance along its unit ray (one value a ray; frame.py averages a
    pixel's rays, as Cycles its samples), then `1 - opacity * (1 - mist)`: 1 where the field is empty."""
    distance = render.depth
    if depth > 0:
        amount = ((distance - start) / depth).clamp(0.0, 1.0)
    else:  # a mist of no depth is a step at its start
        amount = (distance > start).to(distance.dtype)
    return 1.0 - render.opacity * (1.0 - amount ** exponent)
