"""A thin lens: depth of field as a Blender camera sets it up and Cycles renders it.

A pinhole ray through a pixel meets the plane in focus (`focus_distance` along the camera's axis);
with the lens, the pixel's ray starts instead at a point of the aperture (on the camera's plane,
`aperture_radius` in world units: a perspective camera's focal length in metres over twice its
f-stop, an orthographic camera's 1 over twice it, as Cycles takes them) and runs to that point in
focus. Surfaces on that plane stay sharp; others blur by the aperture's shape: round, or a regular
polygon of `blades` sides turned by `rotation`, narrowed across by `ratio` (anamorphic bokeh).

Camera space as in cameras.py: +X right, +Y up, looking down -Z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import require
from ..protocol import square_samples


@dataclass(frozen=True)
class ThinLens:
    focus_distance: float  # along the camera's axis, world units
    aperture_radius: float  # world units
    ratio: float = 1.0  # the aperture's width is divided by it
    blades: int = 0  # 0: round; 3 or more: a regular polygon
    rotation: float = 0.0  # the polygon's turn, radians

    def __post_init__(self) -> None:
        require(self.focus_distance > 0, f"The focus distance must be above 0, not {self.focus_distance}.")
        require(self.aperture_radius >= 0, f"The aperture radius must be 0 or more, not {self.aperture_radius}.")
        require(self.ratio > 0, f"The aperture ratio must be above 0, not {self.ratio}.")
        require(self.blades == 0 or self.blades >= 3, f"An aperture has 0 blades (round) or 3 or more, not {self.blades}.")


def _disk(uv: torch.Tensor) -> torch.Tensor:
    """The unit disk from the unit square, area for area and keeping neighbours together (Shirley
    and Chiu's concentric map), so stratified squares give stratified disks."""
    a, b = (2.0 * uv - 1.0).unbind(-1)
    outer_a = a.abs() > b.abs()
    radius = torch.where(outer_a, a, b)
    safe_a = torch.where(a == 0, torch.ones_like(a), a)
    safe_b = torch.where(b == 0, torch.ones_like(b), b)
    angle = torch.where(outer_a, (math.pi / 4) * (b / safe_a), math.pi / 2 - (math.pi / 4) * (a / safe_b))
    angle = torch.where((a == 0) & (b == 0), torch.zeros_like(angle), angle)
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)


def _polygon(uv: torch.Tensor, sides: int, rotation: float) -> torch.Tensor:
    """A regular polygon inscribed in the unit circle, area for area, its corners half a side's angle
    either side of `rotation` (as Cycles turns its blades): u picks the wedge between two corners and
    where across it, v how far out (the square root spreads the points evenly over the triangle)."""
    u, v = uv.unbind(-1)
    wedge = torch.clamp(torch.floor(u * sides), max=sides - 1)
    across = u * sides - wedge
    start = rotation + (2 * wedge - 1) * math.pi / sides
    end = start + 2 * math.pi / sides
    out = v.sqrt()
    x = out * ((1 - across) * torch.cos(start) + across * torch.cos(end))
    y = out * ((1 - across) * torch.sin(start) + across * torch.sin(end))
    return torch.stack([x, y], dim=-1)


def aperture_points(lens: ThinLens, uv: torch.Tensor) -> torch.Tensor:
    """Points [N, 2] (camera x, y, world units) on the lens's aperture, spread evenly over it by
    `uv` [N, 2] in the unit square."""
    shape = _disk(uv) if lens.blades == 0 else _polygon(uv, lens.blades, lens.rotation)
    return shape * torch.tensor([lens.aperture_radius / lens.ratio, lens.aperture_radius], dtype=uv.dtype, device=uv.device)


def lens_samples(lens: ThinLens, samples: int, pixels: int, device: torch.device | str | None = None,
                 seed: int = 0) -> list[torch.Tensor]:
    """For each of a pixel's `samples` rays, its aperture point in every pixel ([pixels, 2] each).
    Ray i of every pixel lies in its own cell of a k x k grid over the aperture's square (the cells
    shuffled against the pixel's k x k grid of positions, so the two do not go together), at a
    random place inside that cell, different from pixel to pixel: the blur comes out as fine noise
    that more samples smooth, as Cycles', rather than k * k sharp copies. `seed` makes a frame
    repeat exactly."""
    side = math.isqrt(square_samples(samples, "Samples per pixel"))
    generator = torch.Generator().manual_seed(seed)
    cells = torch.randperm(samples, generator=generator)
    points = []
    for cell in cells.tolist():
        corner = torch.tensor([cell % side, cell // side], dtype=torch.float32)
        uv = (corner + torch.rand(pixels, 2, generator=generator)) / side
        points.append(aperture_points(lens, uv).to(device))
    return points


def thin_lens_rays(directions: torch.Tensor, orthographic: bool, lens: ThinLens,
                   points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-space rays (origins [N, 3] on the camera's plane, unit directions [N, 3]) through the
    lens, from the pinhole rays' directions (camera_directions: z = -1) and aperture points [N, 2]."""
    zeros = torch.zeros_like(directions[:, :1])
    if orthographic:  # the pinhole ray leaves the camera's plane where the pixel is, along -z
        start = torch.cat([directions[:, :2], zeros], dim=-1)
        focus = start + torch.tensor([0.0, 0.0, -lens.focus_distance], dtype=directions.dtype, device=directions.device)
    else:
        start = torch.zeros_like(directions)
        focus = directions * lens.focus_distance
    origins = start + torch.cat([points.to(directions), zeros], dim=-1)
    return origins, torch.nn.functional.normalize(focus - origins, dim=-1)
