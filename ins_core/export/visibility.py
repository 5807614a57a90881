"""Which parts of an extracted surface the training cameras saw: faces no view saw are dropped.

A NeRF learns only what its views show. Inside solid objects and under what they stand on it is
free to leave hollows, and marching cubes turns every hollow's wall into a surface: shells nobody
can see, which in a captured scene hold as many faces as the visible surface, take half the
texture's space and bake colours the field never learnt.

Whether a camera sees a vertex is asked of the mesh itself, so the answer is what the mesh will
show: the mesh is drawn into a depth buffer per camera, whose pixels are made about `PIXEL_CELLS`
grid cells wide, and a vertex is seen when it lies no farther along the view than the surface at
its pixel (plus a tolerance, and the depth a pixel spans on a surface seen at a grazing angle). A
face stays when any camera sees any of its corners. Cameras come in as plain tensors (`Cameras`),
so this module knows nothing about fields or runs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ins_core.data.cameras import Cameras, project_points
from ins_core.render.mesh_raster import depth_buffer

# How far behind the surface at its pixel a vertex may lie and still count as seen, in grid cells:
# marching cubes puts a surface's vertices up to a cell apart along the view.
TOLERANCE_CELLS = 2.0
# The depth buffer's pixels span about this many grid cells at the scene: finer costs time, coarser
# lets a small part in front of another's edge share a pixel with it and read as hidden.
PIXEL_CELLS = 1.5
# The buffer's longest side at most, whatever the cells (time grows with its pixels).
MAX_PIXELS_SIDE = 512
# Cameras asked at most: spread evenly over the run's views, they see what all of them see.
MAX_CAMERAS = 48


def distance_spread(distance: torch.Tensor) -> torch.Tensor:
    """[H, W]: how much depth each pixel spans where its surface is seen at a grazing angle: per
    image axis, the smaller of the steps to the pixels on either side (a slope changes the depth
    on both sides alike; an object's edge in front of a farther one only on one side, and must not
    let what lies behind the nearer object count as seen), the larger over the two axes."""
    padded = F.pad(distance[None, None], (1, 1, 1, 1), mode="constant", value=math.inf)[0, 0]
    centre = padded[1:-1, 1:-1]
    spread = torch.zeros_like(distance)
    for before, after in ((padded[:-2, 1:-1], padded[2:, 1:-1]), (padded[1:-1, :-2], padded[1:-1, 2:])):
        steps = torch.stack([(before - centre).abs(), (after - centre).abs()])
        smaller = torch.where(torch.isfinite(steps), steps, torch.full_like(steps, math.inf)).min(dim=0).values
        spread = torch.maximum(spread, torch.where(torch.isfinite(smaller), smaller, torch.zeros_like(smaller)))
    return spread


def fill_gaps(depth: torch.Tensor) -> torch.Tensor:
    """An empty pixel takes the nearest depth among its eight neighbours. A vertex at an outline
    lies within a pixel of it, often in a pixel whose centre the surface does not reach: compared
    with nothing there, the back of a rounded object just behind its outline would count as seen.
    Pixels with a depth keep it, so what lies beside a nearer object's edge is not hidden."""
    nearest_around = -F.max_pool2d(-depth[None, None], 3, stride=1, padding=1)[0, 0]
    return torch.where(torch.isinf(depth), nearest_around, depth)


def seen_points(points: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor, depth: torch.Tensor,
                tolerance: float) -> torch.Tensor:
    """[P] bool: whether a camera whose depth buffer is `depth` [H, W] (along the viewing axis, inf
    where empty) sees each point: it projects inside the image, in front of the camera, and no
    farther along the view than the surface at its pixel plus the pixel's `distance_spread` and
    `tolerance`."""
    height, width = depth.shape
    limit = depth + distance_spread(depth) + tolerance
    pixels, along_axis = project_points(points, c2w, intrinsics)
    col, row = pixels[:, 0].floor().long(), pixels[:, 1].floor().long()
    inside = (along_axis > 0) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    return inside & (along_axis <= limit[row.clamp(0, height - 1), col.clamp(0, width - 1)])


def buffer_size(points: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int,
                cell: float) -> tuple[torch.Tensor, int, int]:
    """The camera's intrinsics and image size scaled so that a pixel spans `PIXEL_CELLS` cells at
    the median distance of the points (the longest side at most `MAX_PIXELS_SIDE`)."""
    distance = float((points - c2w[:3, 3]).norm(dim=-1).median())
    footprint = distance / float(intrinsics[0])  # world size of one of the camera's pixels there
    scale = min(footprint / (PIXEL_CELLS * cell), MAX_PIXELS_SIDE / max(width, height))
    new_width, new_height = max(8, round(width * scale)), max(8, round(height * scale))
    factors = torch.tensor([new_width / width, new_height / height] * 2, dtype=intrinsics.dtype, device=intrinsics.device)
    return intrinsics * factors, new_width, new_height


def seen_vertices(vertices: np.ndarray, faces: np.ndarray, cameras: Cameras, cell: float, device: torch.device | str = "cpu") -> np.ndarray:
    """[V] bool: whether some camera sees each vertex of the mesh, the mesh itself hiding it
    (`cell`: the marching-cubes grid spacing in world units)."""
    points = torch.as_tensor(vertices, dtype=torch.float32, device=device)
    triangles = torch.as_tensor(np.asarray(faces, dtype=np.int64), device=device)
    picked = torch.linspace(0, len(cameras) - 1, min(len(cameras), MAX_CAMERAS)).round().long()
    seen = torch.zeros(len(points), dtype=torch.bool, device=device)
    for index in picked.tolist():
        c2w = cameras.c2w[index].to(device, torch.float32)
        intrinsics, width, height = buffer_size(points, c2w, cameras.intrinsics[index].to(device, torch.float32),
                                                cameras.width, cameras.height, cell)
        depth = fill_gaps(depth_buffer(points, triangles, c2w, intrinsics, width, height))
        seen |= seen_points(points, c2w, intrinsics, depth, TOLERANCE_CELLS * cell)
    return seen.cpu().numpy()


def seen_faces(faces: np.ndarray, vertex_seen: np.ndarray) -> np.ndarray:
    """[F] bool: faces with at least one seen corner (a face at the edge of what the cameras saw
    stays, so the kept surface has no gaps along that edge)."""
    return vertex_seen[np.asarray(faces, dtype=np.int64)].any(axis=1)
