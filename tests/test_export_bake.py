"""Export, texture: UV unwrapping, texture-space rasterising, colour lookup, dilation, vertex colours."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ins_core.export import bake, cleanup, uv
from test_export_marching_cubes import CENTRE, RADIUS, radii, sphere_mesh

SIZE = 256


@pytest.fixture(scope="module")
def unwrapped():
    """The 48^3 SDF sphere, unwrapped for a 256^2 texture (cut into pieces, as big meshes are)."""
    vertices, faces = sphere_mesh(48)
    normals = cleanup.vertex_normals(vertices, faces)
    vmapping, new_faces, uvs = uv.unwrap(vertices, faces, SIZE, piece_faces=2000)
    return {
        "vertices": vertices, "faces": faces,
        "v": vertices[vmapping], "f": new_faces, "uv": uvs, "n": normals[vmapping], "vmapping": vmapping,
    }


def red(points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
    return torch.tensor([1.0, 0.0, 0.0]).expand(len(points), 3)


def position_colour(points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
    return 0.5 + 0.5 * torch.sin(3.0 * points)


def uv_inradius_in_texels(uvs: np.ndarray, faces: np.ndarray, size: int) -> np.ndarray:
    """Radius of each triangle's inscribed circle in texture space: twice the area over the perimeter."""
    a, b, c = (uvs[faces[:, k]].astype(np.float64) * size for k in range(3))
    area = 0.5 * np.abs((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0])
    perimeter = sum(np.linalg.norm(p - q, axis=1) for p, q in ((a, b), (b, c), (c, a)))
    return 2.0 * area / np.maximum(perimeter, 1e-12)


def test_unwrap_keeps_the_geometry_and_puts_uvs_in_the_unit_square(unwrapped):
    u = unwrapped
    assert u["uv"].dtype == np.float32 and u["uv"].shape == (len(u["v"]), 2)
    assert (u["uv"] >= 0).all() and (u["uv"] <= 1).all()
    assert len(u["f"]) == len(u["faces"])
    assert np.array_equal(u["v"][u["f"]], u["vertices"][u["faces"]])  # same triangles, same order
    assert len(u["v"]) >= len(u["vertices"])  # seams split vertices, never merge them


def test_charts_do_not_overlap_and_every_face_gets_texels_or_is_tiny(unwrapped):
    u = unwrapped
    corners = bake._texel_corners(u["uv"], u["f"], SIZE)
    face, col, row = bake._candidates(corners, SIZE)
    score, _ = bake._edge_scores(corners, face, np.stack([col + 0.5, row + 0.5], axis=1))
    inside = score > 1e-3  # texel centres strictly inside a triangle
    assert np.bincount((row * SIZE + col)[inside], minlength=SIZE * SIZE).max() == 1

    face_of, bary = bake.rasterize(u["uv"], u["f"], SIZE)
    covered = np.zeros(len(u["f"]), dtype=bool)
    covered[face_of[face_of >= 0]] = True
    # A disc of radius sqrt(1/2) texel always holds a texel centre, so a triangle with a larger
    # inscribed circle owns that texel outright; only smaller ("tiny") faces may own none.
    assert (uv_inradius_in_texels(u["uv"], u["f"], SIZE)[~covered] < math.sqrt(0.5)).all()
    assert covered.mean() > 0.9
    assert np.allclose(bary[face_of >= 0].sum(axis=1), 1.0, atol=1e-5) and (bary >= 0).all()


def test_rasterize_is_conservative_on_a_single_triangle():
    size = 20
    uvs = np.array([[0.13, 0.11], [0.62, 0.16], [0.17, 0.58]], dtype=np.float32)
    face_of, bary = bake.rasterize(uvs, np.array([[0, 1, 2]]), size)
    covered = face_of == 0
    # Dense points on the triangle, in texel units (column, row), row 0 at v = 1.
    w = np.random.default_rng(0).dirichlet(np.ones(3), 20000)
    points = w @ uvs * size
    points[:, 1] = size - points[:, 1]
    # Every texel the triangle touches is covered, even where the texel centre is outside.
    touched = np.zeros_like(covered)
    touched[points[:, 1].astype(int), points[:, 0].astype(int)] = True
    assert covered[touched].all()
    rows, cols = np.mgrid[0:size, 0:size]
    centres = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1)
    corners = bake._texel_corners(uvs, np.array([[0, 1, 2]]), size)
    centre_inside = bake._edge_scores(corners, np.zeros(len(centres), dtype=np.int64), centres)[0] > 0
    assert covered.sum() > centre_inside.sum() + 10  # a plain (centre-sampling) rasteriser gets fewer
    # Texels whose centre is over two texels away are not.
    nearest = np.sqrt(((centres[:, None, :] - points[None, ::20]) ** 2).sum(-1)).min(axis=1).reshape(size, size)
    assert not covered[nearest > 2.0].any()
    # Barycentrics put each texel's surface point on the triangle.
    assert np.allclose(bary[covered].sum(axis=1), 1.0, atol=1e-6) and (bary[covered] >= 0).all()


def test_constant_red_bakes_red_everywhere_including_the_dilated_border(unwrapped):
    u = unwrapped
    texture, covered = bake.bake_texture(u["v"], u["f"], u["uv"], u["n"], red, SIZE, dilation=4)
    assert texture.shape == (SIZE, SIZE, 3) and texture.dtype == np.uint8
    assert 0.2 < covered.mean() < 0.95
    assert (texture[covered] == [255, 0, 0]).all()
    ring = bake.dilate(np.zeros((SIZE, SIZE, 3)), covered, 4)[1] & ~covered
    assert ring.sum() > 0 and (texture[ring] == [255, 0, 0]).all()
    assert (texture == [255, 0, 0]).all()  # what dilation leaves is filled with the mean colour


def test_baked_texture_matches_the_field_at_the_vertices(unwrapped):
    u = unwrapped
    texture, _ = bake.bake_texture(u["v"], u["f"], u["uv"], u["n"], position_colour, SIZE, offset=0.0)
    col = np.clip((u["uv"][:, 0] * SIZE).astype(int), 0, SIZE - 1)
    row = np.clip(((1.0 - u["uv"][:, 1]) * SIZE).astype(int), 0, SIZE - 1)  # v = 1 is row 0
    expected = 0.5 + 0.5 * np.sin(3.0 * u["v"])
    assert np.abs(texture[row, col] / 255.0 - expected).mean() < 0.02


def test_colour_is_looked_up_from_outside_along_the_normal(unwrapped):
    u = unwrapped
    calls = []

    def recording(points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
        calls.append((points.clone(), view_dirs.clone()))
        return red(points, view_dirs)

    bake.bake_texture(u["v"], u["f"], u["uv"], u["n"], recording, SIZE, offset=0.05)
    points = torch.cat([c[0] for c in calls]).numpy()
    dirs = torch.cat([c[1] for c in calls]).numpy()
    assert radii(points).min() > RADIUS + 0.03  # every lookup starts outside the sphere
    outward = (points - CENTRE.numpy()) / radii(points)[:, None]
    assert (dirs * outward).sum(axis=1).max() < -0.98  # looking back in, along -normal
    assert np.allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-4)


def test_several_directions_average_around_the_normal():
    normals = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -0.6, 0.8]])
    directions = bake.view_directions(normals, 5)
    assert len(directions) == 5 and np.array_equal(directions[0], normals)
    for d in directions[1:]:
        assert np.allclose((d * normals).sum(axis=1), math.cos(bake.CONE_ANGLE))
        assert np.allclose(np.linalg.norm(d, axis=1), 1.0)
    assert np.allclose(sum(directions[1:]) / 4, math.cos(bake.CONE_ANGLE) * normals, atol=1e-9)

    def seen_from(points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
        return 0.5 - 0.5 * view_dirs  # colour encodes where the look came from
    colours = bake.shade_points(np.zeros((3, 3)), normals, seen_from, n_directions=5)
    expected = 0.5 + 0.5 * normals * (1.0 + 4.0 * math.cos(bake.CONE_ANGLE)) / 5.0
    assert np.allclose(colours, expected, atol=1e-6)


def test_dilate_grows_exactly_n_rings():
    filled = np.zeros((15, 15), dtype=bool)
    filled[7, 7] = True
    colour = np.zeros((15, 15, 3), dtype=np.float32)
    colour[7, 7] = [0.2, 0.4, 0.6]
    grown, mask = bake.dilate(colour, filled, 3)
    rows, cols = np.mgrid[0:15, 0:15]
    assert np.array_equal(mask, np.maximum(abs(rows - 7), abs(cols - 7)) <= 3)
    assert np.allclose(grown[mask], [0.2, 0.4, 0.6])


def test_vertex_colors_fallback():
    vertices, faces = sphere_mesh(24)
    normals = cleanup.vertex_normals(vertices, faces)
    colours = bake.vertex_colors(vertices, normals, red)
    assert colours.shape == (len(vertices), 3) and colours.dtype == np.float32
    assert np.array_equal(colours, np.tile([1.0, 0.0, 0.0], (len(vertices), 1)).astype(np.float32))
    smooth = bake.vertex_colors(vertices, normals, position_colour, offset=0.0)
    assert np.allclose(smooth, 0.5 + 0.5 * np.sin(3.0 * vertices), atol=1e-6)
