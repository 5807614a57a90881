"""Reprojection between two cameras and the multi-view consistency term, on a textured floor
seen from two cameras 15 degrees apart (exact depth, so only the resampling is approximate)."""

from __future__ import annotations

import math

import torch

from ins_core.data.cameras import image_pixels, look_at, rays_from_pixels
from ins_core.losses.consistency import reprojection_difference
from ins_core.render.reprojection import reproject
from ins_core.train.style_objective import nearest_views

SIZE = 64
INTRINSICS = torch.tensor([70.0, 70.0, SIZE / 2, SIZE / 2])


def _camera(azimuth_degrees: float) -> torch.Tensor:
    a = math.radians(azimuth_degrees)
    return look_at(torch.tensor([2.0 * math.cos(a), 2.0 * math.sin(a), 2.0]), torch.zeros(3))


def _floor_view(c2w: torch.Tensor, texture_shift: float = 0.0):
    """A camera's view of the floor z = 0 painted with a smooth texture: points, distance, colours."""
    origins, directions = rays_from_pixels(image_pixels(SIZE, SIZE), c2w, INTRINSICS)
    t = -origins[:, 2] / directions[:, 2]
    points = origins + directions * t[:, None]
    x, y = points[:, 0] + texture_shift, points[:, 1]
    colour = torch.stack([0.5 + 0.4 * torch.sin(3 * x), 0.5 + 0.4 * torch.cos(2 * y), 0.5 + 0.2 * torch.sin(x + y)], dim=-1)
    return points, t.view(SIZE, SIZE), colour.view(SIZE, SIZE, 3)


def test_a_surface_seen_from_two_cameras_lands_where_the_other_camera_sees_the_same_colour():
    a, b = _camera(0.0), _camera(15.0)
    points_a, _, image_a = _floor_view(a)
    _, depth_b, image_b = _floor_view(b)
    solid = torch.ones(SIZE * SIZE, dtype=torch.bool)
    landing = reproject(points_a, solid, b, INTRINSICS, depth_b, torch.ones(SIZE, SIZE))
    assert landing.visible.float().mean() > 0.7  # most of the floor is in both frames
    assert float(reprojection_difference(image_a, landing, image_b)) < 1e-4
    # The same cameras, but the other view's texture moved: the views now disagree.
    _, _, moved = _floor_view(b, texture_shift=0.3)
    assert float(reprojection_difference(image_a, landing, moved)) > 1e-2


def test_points_hidden_in_the_other_view_are_left_out_and_give_a_zero_term_with_a_gradient():
    a, b = _camera(0.0), _camera(15.0)
    points_a, _, image_a = _floor_view(a)
    _, depth_b, image_b = _floor_view(b)
    solid = torch.ones(SIZE * SIZE, dtype=torch.bool)
    # Something stands in front of the floor for the other camera: at half the floor's distance.
    hidden = reproject(points_a, solid, b, INTRINSICS, depth_b * 0.5, torch.ones(SIZE, SIZE))
    assert not hidden.visible.any()
    image = image_a.clone().requires_grad_(True)
    term = reprojection_difference(image, hidden, image_b)
    term.backward()
    assert float(term.detach()) == 0.0 and torch.equal(image.grad, torch.zeros_like(image))
    # Nor do pixels that are not solid in this view, or not solid in the other.
    assert not reproject(points_a, ~solid, b, INTRINSICS, depth_b, torch.ones(SIZE, SIZE)).visible.any()
    assert not reproject(points_a, solid, b, INTRINSICS, depth_b, torch.full((SIZE, SIZE), 0.5)).visible.any()


def test_the_term_pulls_a_view_towards_its_neighbour_and_only_that_view():
    a, b = _camera(0.0), _camera(15.0)
    points_a, _, image_a = _floor_view(a)
    _, depth_b, moved_b = _floor_view(b, texture_shift=0.3)
    landing = reproject(points_a, torch.ones(SIZE * SIZE, dtype=torch.bool), b, INTRINSICS, depth_b, torch.ones(SIZE, SIZE))
    image = image_a.clone().requires_grad_(True)
    neighbour = moved_b.clone().requires_grad_(True)
    before = float(reprojection_difference(image, landing, neighbour).detach())
    optimiser = torch.optim.SGD([image], lr=0.5 * landing.visible.sum().item())
    for _ in range(20):
        optimiser.zero_grad()
        reprojection_difference(image, landing, neighbour).backward()
        optimiser.step()
    assert neighbour.grad is None  # the neighbour's render is a fixed target
    assert float(reprojection_difference(image, landing, neighbour).detach()) < 0.05 * before


def test_nearest_views_are_the_next_cameras_round_the_scene():
    c2w = torch.stack([_camera(30.0 * k) for k in range(12)])
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    neighbours = nearest_views(c2w, aabb, 2)
    assert neighbours.shape == (12, 2)
    for k in range(12):
        assert set(neighbours[k].tolist()) == {(k - 1) % 12, (k + 1) % 12}
    assert nearest_views(c2w[:2], aabb, 3).tolist() == [[1], [0]]
