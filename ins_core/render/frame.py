"""One frame as the INS render engine hands it to Blender: the field's image (over the world's
colour, or not) and the passes asked for, each pixel sampled on a k x k grid inside it.

As Cycles does with its samples, the image, the Mist pass and the Normal pass are the means of
the pixel's samples (the image in linear light), and the Z pass is one sample's: here the one
nearest the pixel's centre, so depth is never a blend of a near and a far surface at an edge.
One sample a pixel is the pixel's centre, as before anti-aliasing. With a thin lens (the camera's
depth of field) each of a pixel's rays also starts at its own point of the aperture (lens.py), so
the samples blur what lies off the plane in focus, the Z pass included, as Cycles' do. With the
camera's poses over the shutter (motion blur) each ray is cast at its own time (motion.py). With
a placement (the object the field follows in Blender) the camera is taken into the field's own
frame and the passes back out (placement.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data.lens import ThinLens, lens_samples
from ..data.motion import poses_at, shutter_samples
from ..data.placement import Placement
from ..protocol import square_samples
from .normals import model_normals, normal_pass
from .passes import linear_to_srgb, mist_pass, over_background, srgb_to_linear, z_pass
from .views import render_view


# Under this opacity a pixel's ray met nothing to lay in order (render_view's own floor).
EMPTY_OPACITY = 1e-4


@dataclass
class Frame:
    rgba: torch.Tensor  # [H, W, 4] sRGB-encoded, straight alpha (opaque when laid over a background)
    depth: torch.Tensor | None = None  # [H, W] the Z pass
    mist: torch.Tensor | None = None  # [H, W]
    normal: torch.Tensor | None = None  # [H, W, 3]
    # [H, W] how far along the camera's axis what each pixel shows lies, wherever the field is not
    # empty there (inf where it is): the order several fields' frames are laid in (together.py)
    order: torch.Tensor | None = None


def subpixel_offsets(samples: int) -> list[tuple[float, float]]:
    """Where a pixel's `samples` rays go (a square number: a k x k grid of cell centres), as
    offsets from the pixel's centre in pixels, row by row."""
    side = math.isqrt(square_samples(samples, "Samples per pixel"))
    steps = [(i + 0.5) / side - 0.5 for i in range(side)]
    return [(x, y) for y in steps for x in steps]


@torch.no_grad()
def render_frame(model, c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int, *, samples: int = 1,
                 background: torch.Tensor | None = None, no_depth: float | None = None,
                 mist: tuple[float, float, float] | None = None, normals: bool = False, orthographic: bool = False,
                 lens: ThinLens | None = None, motion: torch.Tensor | None = None, placement: Placement | None = None,
                 ordered: bool = False, fast: bool = True, workers: int = 1) -> Frame:
    """The frame of a camera: `background` a linear RGB colour to lay the field over (None: keep
    its alpha); the Z pass with `no_depth` where no surface is (None: no Z pass); the Mist pass
    for `mist` = (start, depth, falloff exponent); the Normal pass with `normals`; depth of field
    through `lens`; motion blur from the camera's poses `motion` [S, 4, 4] over the shutter; the
    field where `placement` puts it (every camera argument in world units, as Blender's); with
    `ordered`, the depth each pixel is laid at among other fields (`Frame.order`)."""
    if placement is not None:
        frame = render_frame(model, placement.pose_in_field(c2w), placement.intrinsics_in_field(intrinsics, orthographic),
                             width, height, samples=samples, background=background, no_depth=no_depth,
                             mist=placement.mist_in_field(mist), normals=normals, orthographic=orthographic,
                             lens=placement.lens_in_field(lens), motion=None if motion is None else placement.pose_in_field(motion),
                             ordered=ordered, fast=fast, workers=workers)
        return Frame(frame.rgba, None if frame.depth is None else placement.depth_to_world(frame.depth, no_depth), frame.mist,
                     None if frame.normal is None else placement.normals_to_world(frame.normal),
                     None if frame.order is None else frame.order * placement.scale)
    offsets = subpixel_offsets(samples)
    points = [None] * samples if lens is None else lens_samples(lens, samples, width * height, c2w.device)
    times = [None] * samples if motion is None else shutter_samples(samples, width * height, c2w.device)
    centre = min(range(len(offsets)), key=lambda i: offsets[i][0] ** 2 + offsets[i][1] ** 2)
    normals_at = model_normals(model) if normals else None
    light = coverage = mist_sum = normal_sum = depth = order = None

    def add(total, value):
        return value if total is None else total + value

    for index, offset in enumerate(offsets):
        render = render_view(model, c2w, intrinsics, width, height, fast=fast, workers=workers,
                             orthographic=orthographic, offset=offset, lens=lens, lens_points=points[index],
                             ray_c2w=None if motion is None else poses_at(motion.to(c2w), times[index]))
        rgba = render.rgba()
        light = add(light, srgb_to_linear(rgba[..., :3]) * rgba[..., 3:])  # premultiplied, linear
        coverage = add(coverage, rgba[..., 3:])
        if mist is not None:
            mist_sum = add(mist_sum, mist_pass(render, *mist))
        if normals_at is not None:
            normal_sum = add(normal_sum, normal_pass(render, c2w, intrinsics, normals_at))
        if no_depth is not None and index == centre:
            depth = z_pass(render, intrinsics, no_depth)
        if ordered and index == centre:
            order = z_pass(render, intrinsics, math.inf, min_opacity=EMPTY_OPACITY)
    n = len(offsets)
    alpha = coverage / n
    rgba = torch.cat([linear_to_srgb(light / n / alpha.clamp_min(1e-6)) * (alpha > 0), alpha], dim=-1)
    if background is not None:
        rgba = over_background(rgba, background)
    return Frame(rgba, depth, None if mist_sum is None else mist_sum / n, None if normal_sum is None else normal_sum / n, order)
