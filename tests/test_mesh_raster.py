"""The mesh rasterizer against ray-plane intersections computed independently."""

from __future__ import annotations

import math

import pytest
import torch

from ins_core.data.cameras import Intrinsics, image_pixels, look_at, rays_from_pixels
from ins_core.render.mesh_raster import rasterize, sample_texture

W = H = 48
INTRINSICS = Intrinsics.from_fov(0.8, W, H).as_tensor()


def gradient_texture(size: int = 64) -> torch.Tensor:
    """Red grows with u (columns), green with v (upwards, so downwards rows lose green)."""
    cols = (torch.arange(size) + 0.5) / size
    rows = (torch.arange(size) + 0.5) / size
    red = cols.view(1, -1).expand(size, size)
    green = (1.0 - rows).view(-1, 1).expand(size, size)
    return torch.stack([red, green, torch.full((size, size), 0.25)], dim=-1)


def square(half: float, z: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A square in the plane Z = z, UVs spanning [0, 1] along +X and +Y."""
    vertices = torch.tensor([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    uvs = (vertices[:, :2] + half) / (2 * half)
    return vertices, faces, uvs


def test_sample_texture_follows_the_uv_convention():
    texture = gradient_texture()
    colour = sample_texture(texture, torch.tensor([[0.25, 0.75], [0.9, 0.1]]))
    assert torch.allclose(colour[:, 0], torch.tensor([0.25, 0.9]), atol=0.01)
    assert torch.allclose(colour[:, 1], torch.tensor([0.75, 0.1]), atol=0.01)


@pytest.mark.parametrize("tilt", [0.0, 50.0])
def test_each_pixel_shows_the_texture_where_its_ray_meets_the_plane(tilt):
    vertices, faces, uvs = square(1.0, 0.0)
    eye = torch.tensor([0.0, -3.0 * math.sin(math.radians(tilt)), 3.0 * math.cos(math.radians(tilt))])
    c2w = look_at(eye, torch.zeros(3), up=torch.tensor([0.0, 1.0, 0.0]) if tilt == 0 else None)
    render = rasterize(vertices, faces, c2w, INTRINSICS, W, H, uvs, gradient_texture())

    origins, directions = rays_from_pixels(image_pixels(W, H), c2w, INTRINSICS)
    t = -origins[:, 2] / directions[:, 2]
    hit = origins + t[:, None] * directions
    inside = (hit[:, :2].abs() < 0.97).all(dim=1)  # away from the border, where coverage is exact
    expected_uv = (hit[:, :2] + 1.0) / 2.0
    rgb = render.rgb.reshape(-1, 3)
    assert inside.sum() > 200
    assert (render.alpha.reshape(-1)[inside] == 1).all()
    # Perspective-correct: a tilted plane's UVs are not linear in screen space, yet they match.
    assert torch.allclose(rgb[inside, 0], expected_uv[inside, 0], atol=0.02)
    assert torch.allclose(rgb[inside, 1], expected_uv[inside, 1], atol=0.02)
    axis_depth = -((hit - eye) @ c2w[:3, 2])
    assert torch.allclose(render.depth.reshape(-1)[inside], axis_depth[inside], rtol=1e-3)
    outside = (hit[:, :2].abs() > 1.03).any(dim=1) | (t < 0)
    assert (render.alpha.reshape(-1)[outside] == 0).all()


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_the_nearer_surface_wins_whatever_the_face_order(order):
    near_v, near_f, near_uv = square(0.5, 0.5)
    far_v, far_f, far_uv = square(1.0, 0.0)
    parts = [(near_v, near_f, torch.full_like(near_uv, 0.95)), (far_v, far_f, torch.full_like(far_uv, 0.05))]
    first, second = parts[order[0]], parts[order[1]]
    vertices = torch.cat([first[0], second[0]])
    faces = torch.cat([first[1], second[1] + len(first[0])])
    uvs = torch.cat([first[2], second[2]])
    c2w = look_at(torch.tensor([0.0, 0.0, 3.0]), torch.zeros(3), up=torch.tensor([0.0, 1.0, 0.0]))
    render = rasterize(vertices, faces, c2w, INTRINSICS, W, H, uvs, gradient_texture())
    centre = render.rgb[H // 2, W // 2]
    assert centre[0] > 0.9  # the near square's texel (u = 0.95), not the far one's (u = 0.05)
    assert render.depth[H // 2, W // 2] == pytest.approx(2.5, rel=1e-4)


def test_supersampling_gives_partial_coverage_only_at_edges():
    vertices, faces, uvs = square(0.93, 0.0)  # edges a third of the way into a pixel
    c2w = look_at(torch.tensor([0.0, 0.0, 3.0]), torch.zeros(3), up=torch.tensor([0.0, 1.0, 0.0]))
    sharp = rasterize(vertices, faces, c2w, INTRINSICS, W, H, uvs, gradient_texture())
    soft = rasterize(vertices, faces, c2w, INTRINSICS, W, H, uvs, gradient_texture(), supersample=4)
    partial = (soft.alpha > 0) & (soft.alpha < 1)
    assert partial.any() and not ((sharp.alpha > 0) & (sharp.alpha < 1)).any()
    projected_area = float((2 * 0.93 * INTRINSICS[0] / 3.0) ** 2)  # the square's size in pixels
    assert abs(float(soft.alpha.sum()) - projected_area) < 0.02 * projected_area
    assert abs(float(soft.alpha.sum()) - projected_area) < abs(float(sharp.alpha.sum()) - projected_area)
    full = soft.alpha == 1
    assert torch.allclose(soft.rgb[full], sharp.rgb[full], atol=0.02)


def test_many_small_faces_render_like_two_big_ones(monkeypatch):
    """Chunking over faces must not change the picture: a finely split square, forced through many
    small chunks, renders the same as the two-triangle square."""
    import ins_core.render.mesh_raster as raster

    n = 24
    grid = torch.stack(torch.meshgrid(torch.linspace(-1, 1, n + 1), torch.linspace(-1, 1, n + 1), indexing="xy"), -1).reshape(-1, 2)
    vertices = torch.cat([grid, torch.zeros(len(grid), 1)], dim=1)
    index = torch.arange((n + 1) ** 2).view(n + 1, n + 1)
    a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, 1:], index[1:, :-1]
    faces = torch.cat([torch.stack([a, b, c], -1).reshape(-1, 3), torch.stack([a, c, d], -1).reshape(-1, 3)])
    uvs = (grid + 1) / 2
    c2w = look_at(torch.tensor([0.3, -1.5, 2.5]), torch.zeros(3))
    monkeypatch.setattr(raster, "CANDIDATES_PER_CHUNK", 64)
    fine = rasterize(vertices, faces, c2w, INTRINSICS, W, H, uvs, gradient_texture())
    coarse_v, coarse_f, coarse_uv = square(1.0, 0.0)
    coarse = rasterize(coarse_v, coarse_f, c2w, INTRINSICS, W, H, coarse_uv, gradient_texture())
    both = (fine.alpha == 1) & (coarse.alpha == 1)
    assert both.sum() > 0.95 * coarse.alpha.sum()
    assert torch.allclose(fine.rgb[both], coarse.rgb[both], atol=1e-3)


def test_vertex_colours_interpolate_across_faces():
    vertices, faces, uvs = square(1.0, 0.0)
    colours = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])  # = (u, v, 0)
    c2w = look_at(torch.tensor([0.0, 0.0, 3.0]), torch.zeros(3), up=torch.tensor([0.0, 1.0, 0.0]))
    by_colour = rasterize(vertices, faces, c2w, INTRINSICS, W, H, vertex_colors=colours)
    by_texture = rasterize(vertices, faces, c2w, INTRINSICS, W, H, uvs, gradient_texture())
    full = by_colour.alpha == 1
    assert torch.allclose(by_colour.rgb[full][:, :2], by_texture.rgb[full][:, :2], atol=0.02)
    with pytest.raises(ValueError, match="uvs and a texture, or vertex colours"):
        rasterize(vertices, faces, c2w, INTRINSICS, W, H, uvs=uvs)
