"""Rays and projections against cameras computed by hand."""

import math

import pytest
import torch

from ins_core.data.cameras import Intrinsics, camera_directions, image_pixels, intersect_aabb, look_at, project_points, rays_from_pixels


def test_centre_pixel_of_an_unrotated_camera_looks_down_minus_z():
    intr = Intrinsics.from_fov(math.radians(90), 4, 4)
    assert intr.fx == pytest.approx(2.0)  # 0.5 * 4 / tan(45 deg)
    origins, dirs = rays_from_pixels(torch.tensor([[2.0, 2.0]]), torch.eye(4), intr.as_tensor())
    assert torch.allclose(dirs, torch.tensor([[0.0, 0.0, -1.0]]))
    assert torch.allclose(origins, torch.zeros(1, 3))


def test_corner_pixel_direction_matches_hand_computation():
    # 90 degree horizontal field of view, 4x2 image: fx = fy = 2, cx = 2, cy = 1.
    intr = Intrinsics.from_fov(math.radians(90), 4, 2).as_tensor()
    top_left = camera_directions(torch.tensor([[0.5, 0.5]]), intr)
    # x = (0.5 - 2) / 2 = -0.75, y = -(0.5 - 1) / 2 = +0.25 (rows go down, camera Y goes up)
    assert torch.allclose(top_left, torch.tensor([[-0.75, 0.25, -1.0]]))


def test_camera_rotation_and_translation_apply():
    # A camera at (0, -5, 0) looking along +Y (Blender: rotate 90 degrees about X).
    c2w = torch.tensor([[1.0, 0, 0, 0], [0, 0, -1, -5], [0, 1, 0, 0], [0, 0, 0, 1]])
    intr = Intrinsics.from_fov(math.radians(60), 10, 10).as_tensor()
    origins, dirs = rays_from_pixels(torch.tensor([[5.0, 5.0]]), c2w, intr)
    assert torch.allclose(origins, torch.tensor([[0.0, -5.0, 0.0]]))
    assert torch.allclose(dirs, torch.tensor([[0.0, 1.0, 0.0]]), atol=1e-6)


def test_projection_inverts_ray_generation():
    c2w = look_at(torch.tensor([3.0, -2.0, 1.5]), torch.tensor([0.1, 0.2, 0.0]))
    intr = torch.tensor([50.0, 55.0, 31.0, 22.0])
    pixels = torch.tensor([[3.5, 4.5], [31.0, 22.0], [60.2, 40.7]])
    origins, dirs = rays_from_pixels(pixels, c2w, intr)
    points = origins + 2.5 * dirs
    projected, depth = project_points(points, c2w, intr)
    assert torch.allclose(projected, pixels, atol=1e-4)
    assert (depth > 0).all()


def test_orthographic_rays_are_parallel_from_the_cameras_plane():
    """An orthographic camera's intrinsics are pixels per unit: a pixel 20 px right of the principal
    point starts its ray 20 / fx units along the camera's x, every ray along the camera's -z."""
    c2w = look_at(torch.tensor([0.0, -4.0, 1.0]), torch.tensor([0.0, 0.0, 1.0]))
    intrinsics = torch.tensor([10.0, 5.0, 16.0, 12.0])  # 10 px a unit across, 5 down
    pixels = torch.tensor([[16.0, 12.0], [36.0, 12.0], [16.0, 2.0]])
    origins, directions = rays_from_pixels(pixels, c2w, intrinsics, orthographic=True)
    forward, right, up = -c2w[:3, 2], c2w[:3, 0], c2w[:3, 1]
    assert torch.allclose(directions, forward.expand(3, 3), atol=1e-6)
    assert torch.allclose(origins[0], c2w[:3, 3], atol=1e-6)
    assert torch.allclose(origins[1], c2w[:3, 3] + 2.0 * right, atol=1e-6)
    assert torch.allclose(origins[2], c2w[:3, 3] + 2.0 * up, atol=1e-6)  # rows grow downwards


def test_look_at_is_a_rotation_pointing_minus_z_at_the_target():
    c2w = look_at(torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3))
    rotation = c2w[:3, :3]
    assert torch.allclose(rotation @ rotation.T, torch.eye(3), atol=1e-6)
    assert torch.det(rotation) == pytest.approx(1.0, abs=1e-6)
    forward = -rotation[:, 2]
    assert torch.allclose(forward, -torch.tensor([1.0, 2.0, 3.0]) / math.sqrt(14), atol=1e-6)


def test_image_pixels_are_row_major_centres():
    pixels = image_pixels(3, 2)
    assert pixels.shape == (6, 2)
    assert pixels[0].tolist() == [0.5, 0.5] and pixels[3].tolist() == [0.5, 1.5]


def test_ray_box_intersection():
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    origins = torch.tensor([[0.0, 0.0, 5.0], [3.0, 3.0, 5.0], [0.0, 0.0, 0.0]])
    dirs = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    near, far, hit = intersect_aabb(origins, dirs, aabb)
    assert hit.tolist() == [True, False, True]
    assert near[0].item() == pytest.approx(4.0) and far[0].item() == pytest.approx(6.0)
    assert near[2].item() == pytest.approx(0.0) and far[2].item() == pytest.approx(1.0)


def test_the_views_cameras_read_without_their_pixels_are_those_the_dataset_loads(tmp_path, monkeypatch):
    from PIL import ImageFile

    from ins_core.data import dataset
    from scenes import sphere_views, write_dataset

    intr, views = sphere_views(6, 16)
    split = write_dataset(tmp_path / "split", intr, views, split_every=3)  # transforms_train.json + transforms_test.json
    one_file = write_dataset(tmp_path / "one", intr, views)  # transforms_train.json alone, views held out by position
    for folder in (split, one_file):
        for resolution in (None, 8):
            train, test = dataset.load_dataset(folder, resolution, holdout_every=4)
            loaded = [v for v in (train, test) if v is not None]
            decoded = []
            monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image))  # no pixels may be decoded
            cameras = dataset.load_cameras(folder, resolution)
            monkeypatch.undo()
            assert not decoded and len(cameras) == 6 and (cameras.width, cameras.height) == (train.width, train.height)
            # The same cameras, training views first, whatever the split.
            assert torch.equal(cameras.c2w, torch.cat([v.c2w for v in loaded])) == (folder == split)
            order = lambda c2w: sorted(map(tuple, c2w.flatten(1).tolist()))  # noqa: E731
            assert order(cameras.c2w) == order(torch.cat([v.c2w for v in loaded]))
            assert torch.equal(cameras.intrinsics, torch.cat([v.intrinsics for v in loaded]))
