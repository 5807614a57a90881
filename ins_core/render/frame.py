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
frame and the passes back out (placement.py). Several fields (every stylized object a scene
shows) are laid together sample by sample, nearest first (together.py), before the samples are
averaged: where one field passes in front of another the edge is as smooth as any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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


@dataclass
class FieldLayer:
    """One field of a frame: its model, where its object puts it (None: where it was captured), the
    camera's poses over the shutter relative to that object (motion blur) and its style mix (None:
    as the model is set)."""

    model: Any
    placement: Placement | None = None
    motion: torch.Tensor | None = None
    style_mix: list[float] | None = None


@dataclass
class _FieldCamera:
    """The frame's camera in one field's own frame (placement.py): each sample's aperture points
    there (the same places on the aperture for every field), and that field's Normal pass."""

    layer: FieldLayer
    c2w: torch.Tensor
    intrinsics: torch.Tensor
    mist: tuple[float, float, float] | None
    lens: ThinLens | None
    lens_points: list
    motion: torch.Tensor | None
    normals_at: Any

    @classmethod
    def of(cls, layer: FieldLayer, c2w, intrinsics, mist, lens, orthographic: bool, normals: bool, samples: int,
           pixels: int) -> "_FieldCamera":
        placement, motion = layer.placement, layer.motion
        if placement is not None:
            c2w, intrinsics = placement.pose_in_field(c2w), placement.intrinsics_in_field(intrinsics, orthographic)
            mist, lens = placement.mist_in_field(mist), placement.lens_in_field(lens)
            motion = None if motion is None else placement.pose_in_field(motion)
        points = [None] * samples if lens is None else lens_samples(lens, samples, pixels, c2w.device)
        return cls(layer, c2w, intrinsics, mist, lens, points, motion, model_normals(layer.model) if normals else None)

    def sample(self, index: int, width: int, height: int, offset, times, orthographic: bool, no_depth: float | None,
               ordered: bool, fast: bool, workers: int) -> Frame:
        """Sample `index` of each pixel (its ray through `offset`), its passes back in world units."""
        model, placement = self.layer.model, self.layer.placement
        if self.layer.style_mix is not None:
            model.set_style(self.layer.style_mix)
        render = render_view(model, self.c2w, self.intrinsics, width, height, fast=fast, workers=workers,
                             orthographic=orthographic, offset=offset, lens=self.lens, lens_points=self.lens_points[index],
                             ray_c2w=None if self.motion is None else poses_at(self.motion.to(self.c2w), times))
        depth = None if no_depth is None else z_pass(render, self.intrinsics, no_depth)
        normal = None if self.normals_at is None else normal_pass(render, self.c2w, self.intrinsics, self.normals_at)
        order = z_pass(render, self.intrinsics, math.inf, min_opacity=EMPTY_OPACITY) if ordered else None
        mist = None if self.mist is None else mist_pass(render, *self.mist)
        if placement is not None:
            depth = None if depth is None else placement.depth_to_world(depth, no_depth)
            normal = None if normal is None else placement.normals_to_world(normal)
            order = None if order is None else order * placement.scale
        return Frame(render.rgba(), depth, mist, normal, order)


@torch.no_grad()
def render_fields(layers: list[FieldLayer], c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int, *,
                  samples: int = 1, background: torch.Tensor | None = None, no_depth: float | None = None,
                  mist: tuple[float, float, float] | None = None, normals: bool = False, orthographic: bool = False,
                  lens: ThinLens | None = None, ordered: bool = False, fast: bool = True, workers: int = 1) -> Frame:
    """The frame of a camera showing every field of `layers`, each where its placement puts it:
    `background` a linear RGB colour to lay them over (None: keep the alpha); the Z pass with
    `no_depth` where no surface is (None: no Z pass); the Mist pass for `mist` = (start, depth,
    falloff exponent); the Normal pass with `normals`; depth of field through `lens`; every camera
    argument in world units, as Blender's; with `ordered`, how far each pixel's surface lies
    (`Frame.order`). Several fields are laid together nearest first ray by ray (together.py), so
    where one passes in front of another, or the two meet, the edge is smoothed by the pixel's
    samples as any other edge."""
    from .together import frames_together  # (together.py lays out this module's Frames)

    if not layers:
        raise ValueError("render_fields needs at least one field")
    offsets = subpixel_offsets(samples)
    moving = any(layer.motion is not None for layer in layers)
    times = [None] * samples if not moving else shutter_samples(samples, width * height, c2w.device)
    centre = min(range(len(offsets)), key=lambda i: offsets[i][0] ** 2 + offsets[i][1] ** 2)
    cameras = [_FieldCamera.of(layer, c2w, intrinsics, mist, lens, orthographic, normals, samples, width * height) for layer in layers]
    light = coverage = mist_sum = normal_sum = depth = order = None

    def add(total, value):
        return value if total is None else total + value

    for index, offset in enumerate(offsets):
        at_centre = index == centre
        frames = [camera.sample(index, width, height, offset, times[index], orthographic,
                                no_depth if at_centre else None, len(layers) > 1 or (ordered and at_centre), fast, workers)
                  for camera in cameras]
        frame = frames[0] if len(frames) == 1 else frames_together(frames)
        rgba = frame.rgba
        light = add(light, srgb_to_linear(rgba[..., :3]) * rgba[..., 3:])  # premultiplied, linear
        coverage = add(coverage, rgba[..., 3:])
        if mist is not None:
            mist_sum = add(mist_sum, frame.mist)
        if normals:
            normal_sum = add(normal_sum, frame.normal)
        if at_centre:
            depth, order = frame.depth, frame.order if ordered else None
    n = len(offsets)
    alpha = coverage / n
    rgba = torch.cat([linear_to_srgb(light / n / alpha.clamp_min(1e-6)) * (alpha > 0), alpha], dim=-1)
    if background is not None:
        rgba = over_background(rgba, background)
    return Frame(rgba, depth, None if mist_sum is None else mist_sum / n, None if normal_sum is None else normal_sum / n, order)


def render_frame(model, c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int, *, samples: int = 1,
                 background: torch.Tensor | None = None, no_depth: float | None = None,
                 mist: tuple[float, float, float] | None = None, normals: bool = False, orthographic: bool = False,
                 lens: ThinLens | None = None, motion: torch.Tensor | None = None, placement: Placement | None = None,
                 ordered: bool = False, fast: bool = True, workers: int = 1) -> Frame:
    """The frame of a camera showing one field (render_fields): motion blur from the camera's poses
    `motion` [S, 4, 4] over the shutter; the field where `placement` puts it."""
    return render_fields([FieldLayer(model, placement, motion)], c2w, intrinsics, width, height, samples=samples,
                         background=background, no_depth=no_depth, mist=mist, normals=normals, orthographic=orthographic,
                         lens=lens, ordered=ordered, fast=fast, workers=workers)
