"""Bake a colour field into a texture (or into vertex colours) for an unwrapped mesh.

Each triangle is rasterised in texture space (vectorised in numpy: every triangle's texel
bounding box is expanded into candidate texels, then kept by edge distances). Coverage is
conservative: a texel counts when its centre lies within half a texel diagonal of a triangle,
so texels cut by a chart's border are filled too. Where several triangles claim a texel, the one
that holds the centre deepest inside wins. Each covered texel then asks the field for the colour
seen when looking at its surface point from just outside, along the interpolated normal, and
chart borders are grown outwards (dilated) so mipmapping and bilinear filtering find no
background colour next to a chart.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ins_core.errors import require

ColorFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
FractionFn = Callable[[float], None]

HALF_DIAGONAL = math.sqrt(0.5)  # texels: how far outside a triangle a covered texel's centre may be
DEFAULT_DILATION = 8
DEFAULT_COLOR_CHUNK = 1 << 16
CONE_ANGLE = math.radians(30.0)  # tilt of the extra view directions away from the normal
_FACE_CHUNK = 1 << 15


# --- rasterising ---------------------------------------------------------------------------


def _texel_corners(uvs: np.ndarray, faces: np.ndarray, size: int) -> np.ndarray:
    """Triangle corners [F, 3, 2] in texel units as (column, row); row 0 is the top (v = 1)."""
    corners = uvs[faces].astype(np.float64) * size
    corners[..., 1] = size - corners[..., 1]
    return corners


def _candidates(corners: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(face, column, row) of every texel whose centre lies in a triangle's expanded box."""
    low = np.clip(np.ceil(corners.min(axis=1) - HALF_DIAGONAL - 0.5), 0, size - 1).astype(np.int64)
    high = np.clip(np.floor(corners.max(axis=1) + HALF_DIAGONAL - 0.5), 0, size - 1).astype(np.int64)
    width, height = np.maximum(high - low + 1, 0).T
    counts = width * height
    face = np.repeat(np.arange(len(corners)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    col = low[face, 0] + local % width[face]
    row = low[face, 1] + local // width[face]
    return face, col, row


def _edge_scores(corners: np.ndarray, face: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For texel centres q [n, 2] against their triangles: the signed distance (texels) to the
    nearest edge, positive inside, and barycentric coordinates [n, 3] (clamped onto the
    triangle for centres just outside it)."""
    p = corners[face]  # [n, 3, 2]
    e = p[:, [1, 2, 0]] - p  # edge k runs from corner k to corner k+1
    to_q = q[:, None, :] - p
    cross = e[..., 0] * to_q[..., 1] - e[..., 1] * to_q[..., 0]  # [n, 3], twice sub-areas
    # Twice the signed area of the triangle: (p1 - p0) x (p2 - p0).
    area2 = e[:, 0, 0] * (p[:, 2, 1] - p[:, 0, 1]) - e[:, 0, 1] * (p[:, 2, 0] - p[:, 0, 0])
    sign = np.where(area2 > 0, 1.0, -1.0)  # inside is the side the winding puts it on
    distance = (sign[:, None] * cross / np.maximum(np.linalg.norm(e, axis=-1), 1e-12)).min(axis=1)
    distance[np.abs(area2) < 1e-12] = -np.inf  # a triangle with no area in UV covers nothing
    # The barycentric weight of corner k is the sub-area opposite it: the one on edge k+1.
    bary = cross[:, [1, 2, 0]] / np.where(area2 == 0, 1.0, area2)[:, None]
    bary = np.clip(bary, 0.0, None)
    bary /= np.maximum(bary.sum(axis=1, keepdims=True), 1e-12)
    return distance, bary


def rasterize(uvs: np.ndarray, faces: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Which triangle covers each texel: face index [S, S] int64 (-1: none) and barycentric
    coordinates [S, S, 3] float32 of the texel centre in that triangle."""
    corners = _texel_corners(np.asarray(uvs), np.asarray(faces, dtype=np.int64), size)
    best = np.full(size * size, -np.inf)
    face_of = np.full(size * size, -1, dtype=np.int64)
    bary_of = np.zeros((size * size, 3), dtype=np.float32)
    for start in range(0, len(corners), _FACE_CHUNK):
        chunk = corners[start : start + _FACE_CHUNK]
        face, col, row = _candidates(chunk, size)
        centres = np.stack([col + 0.5, row + 0.5], axis=1)
        score, bary = _edge_scores(chunk, face, centres)
        keep = np.isfinite(score) & (score >= -HALF_DIAGONAL)
        texel = (row * size + col)[keep]
        score, face, bary = score[keep], face[keep], bary[keep]
        # Within the chunk, the deepest claim on each texel: sort by texel then score, take the last.
        order = np.lexsort((score, texel))
        last = np.r_[texel[order][1:] != texel[order][:-1], True]
        win = order[last]
        texel, score = texel[win], score[win]
        better = score > best[texel]
        texel, win = texel[better], win[better]
        best[texel] = score[better]
        face_of[texel] = face[win] + start
        bary_of[texel] = bary[win]
    return face_of.reshape(size, size), bary_of.reshape(size, size, 3)


# --- colour ----------------------------------------------------------------------------------


def view_directions(normals: np.ndarray, n_directions: int, cone_angle: float = CONE_ANGLE) -> list[np.ndarray]:
    """Directions [N, 3] to look from: the normal itself, then (n_directions - 1) directions tilted
    by `cone_angle` from it, evenly round it, so view-dependent colour averages out."""
    require(n_directions >= 1, f"n_directions must be at least 1, not {n_directions}.")
    directions = [normals]
    if n_directions == 1:
        return directions
    helper = np.where(np.abs(normals[:, :1]) < 0.9, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
    first = np.cross(normals, helper)
    first /= np.maximum(np.linalg.norm(first, axis=1, keepdims=True), 1e-12)
    second = np.cross(normals, first)
    for k in range(n_directions - 1):
        phi = 2.0 * math.pi * k / (n_directions - 1)
        side = math.cos(phi) * first + math.sin(phi) * second
        directions.append(math.cos(cone_angle) * normals + math.sin(cone_angle) * side)
    return directions


@torch.no_grad()
def shade_points(
    points: np.ndarray,
    normals: np.ndarray,
    color_fn: ColorFn,
    n_directions: int = 1,
    offset: float = 0.0,
    chunk: int = DEFAULT_COLOR_CHUNK,
    device: torch.device | str = "cpu",
    progress: FractionFn | None = None,
) -> np.ndarray:
    """Colour [N, 3] float32 in [0, 1] of surface points seen from outside: for each direction d
    around the normal, color_fn(point + offset * d, -d), averaged over the directions."""
    points = np.asarray(points, dtype=np.float64)
    unit = np.asarray(normals, dtype=np.float64)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    directions = view_directions(unit, n_directions)
    total = np.zeros((len(points), 3), dtype=np.float64)
    steps, done = len(directions) * max(len(points), 1), 0
    for d in directions:
        for start in range(0, len(points), chunk):
            stop = min(start + chunk, len(points))
            origin = torch.as_tensor(points[start:stop] + offset * d[start:stop], dtype=torch.float32, device=device)
            view = torch.as_tensor(-d[start:stop], dtype=torch.float32, device=device)
            colour = color_fn(origin, view).reshape(-1, 3).to(torch.float32)
            total[start:stop] += torch.nan_to_num(colour, nan=0.0).clamp(0.0, 1.0).cpu().numpy()
            done += stop - start
            if progress is not None:
                progress(done / steps)
    return (total / len(directions)).astype(np.float32)


def default_offset(vertices: np.ndarray) -> float:
    """How far outside the surface to look from when the caller gives no scale: 0.1% of the
    mesh's bounding-box diagonal, enough to clear the marching cubes surface's float error."""
    return 1e-3 * float(np.linalg.norm(vertices.max(axis=0) - vertices.min(axis=0)))


def vertex_colors(
    vertices: np.ndarray,
    normals: np.ndarray,
    color_fn: ColorFn,
    n_directions: int = 1,
    offset: float | None = None,
    chunk: int = DEFAULT_COLOR_CHUNK,
    device: torch.device | str = "cpu",
    progress: FractionFn | None = None,
) -> np.ndarray:
    """Per-vertex colours [V, 3] float32 in [0, 1]: the fallback when no texture is baked."""
    offset = default_offset(vertices) if offset is None else offset
    return shade_points(vertices, normals, color_fn, n_directions, offset, chunk, device, progress)


# --- dilation ---------------------------------------------------------------------------------

_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def dilate(colour: np.ndarray, filled: np.ndarray, texels: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow filled regions outwards by `texels` rings: each empty texel touching filled ones
    (8-neighbourhood) takes their mean colour. Returns the new colour and filled mask."""
    colour, filled = colour.astype(np.float32).copy(), filled.copy()
    height, width = filled.shape
    for _ in range(texels):
        padded_colour = np.pad(colour * filled[..., None], ((1, 1), (1, 1), (0, 0)))
        padded_filled = np.pad(filled, 1).astype(np.float32)
        total = np.zeros_like(colour)
        count = np.zeros(filled.shape, dtype=np.float32)
        for dy, dx in _NEIGHBOURS:
            total += padded_colour[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
            count += padded_filled[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        grow = ~filled & (count > 0)
        if not grow.any():
            break
        colour[grow] = total[grow] / count[grow, None]
        filled |= grow
    return colour, filled


# --- baking -----------------------------------------------------------------------------------


def bake_texture(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    normals: np.ndarray,
    color_fn: ColorFn,
    size: int = 1024,
    n_directions: int = 1,
    offset: float | None = None,
    dilation: int = DEFAULT_DILATION,
    chunk: int = DEFAULT_COLOR_CHUNK,
    device: torch.device | str = "cpu",
    progress: FractionFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bake `color_fn` into an [S, S, 3] uint8 texture for a mesh with per-vertex `uvs` (as from
    `uv.unwrap`, with vertices and normals indexed the same way).

    Returns (texture, covered): `covered` [S, S] bool marks texels some triangle covers. Chart
    borders are dilated by `dilation` texels; texels still empty after that get the mean baked
    colour, so far mip levels blend towards the object's colour rather than black.
    """
    require(size >= 8, f"The texture size must be at least 8 texels, not {size}.")
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    face_of, bary = rasterize(uvs, faces, size)
    covered = face_of >= 0
    face, weight = face_of[covered], bary[covered].astype(np.float64)
    corners = faces[face]  # [n, 3]
    points = np.einsum("nk,nkc->nc", weight, vertices[corners])
    normal = np.einsum("nk,nkc->nc", weight, np.asarray(normals, dtype=np.float64)[corners])
    offset = default_offset(vertices) if offset is None else offset
    colour = np.zeros((size, size, 3), dtype=np.float32)
    colour[covered] = shade_points(points, normal, color_fn, n_directions, offset, chunk, device, progress)
    colour, filled = dilate(colour, covered, dilation)
    if covered.any():
        colour[~filled] = colour[covered].mean(axis=0)
    texture = (np.clip(colour, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return texture, covered
