"""Training views' depth: the Z pass turned into ray distances, the batches that carry them, and
the loss term that teaches a field where its surfaces are."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ins_core.data.cameras import image_pixels, rays_from_pixels
from ins_core.data.dataset import PosedViews, load_dataset
from ins_core.data.depth import planar_to_distance, resize_nearest
from ins_core.errors import InputError
from ins_core.train.batches import RayBatcher
from ins_core.train.scene_models import depth_error


def test_planar_depth_becomes_the_distance_along_each_pixel_ray():
    fx, fy, cx, cy = 40.0, 50.0, 10.0, 8.0
    planar = np.full((16, 20), 3.0, np.float32)  # a wall facing the camera, 3 units ahead
    planar[0, 0] = 1e10  # Blender's "no surface"
    planar[0, 1] = np.inf
    distance = planar_to_distance(planar, (fx, fy, cx, cy))
    assert distance[0, 0] == 0 and distance[0, 1] == 0
    origins, directions = rays_from_pixels(image_pixels(20, 16), torch.eye(4), torch.tensor([fx, fy, cx, cy]))
    # The point at that distance along each ray lies on the wall z = -3.
    points = origins + directions * torch.from_numpy(distance).reshape(-1, 1)
    wall = points.view(16, 20, 3)[..., 2].numpy()
    assert np.allclose(wall[1:, 2:], -3.0, atol=1e-5)
    row, col = 15, 19
    assert distance[row, col] == pytest.approx(3.0 * math.sqrt(1 + ((col + 0.5 - cx) / fx) ** 2 + ((row + 0.5 - cy) / fy) ** 2), rel=1e-6)


def test_depth_is_resized_by_picking_pixels_never_by_averaging():
    depth = np.zeros((4, 4), np.float32)
    depth[:, 2:] = 5.0  # a silhouette's edge: surface on the right, nothing on the left
    small = resize_nearest(depth, 2, 2)
    assert set(np.unique(small)) == {0.0, 5.0}  # no 2.5: a distance where nothing is
    assert resize_nearest(depth, 4, 4) is depth
    assert resize_nearest(depth, 8, 8)[:, 3].tolist() == [0.0] * 8 and resize_nearest(depth, 8, 8)[:, 4].tolist() == [5.0] * 8


def test_the_depth_term_counts_solid_pixels_with_a_known_surface_relative_to_their_distance():
    target = torch.tensor([2.0, 4.0, 0.0, 3.0])
    rgba = torch.tensor([[0, 0, 0, 1.0], [0, 0, 0, 1.0], [0, 0, 0, 1.0], [0, 0, 0, 0.5]])  # the last: an edge pixel
    opacity = torch.tensor([1.0, 0.5, 1.0, 1.0])
    rendered = torch.tensor([2.2, 2.0, 7.0, 9.0])  # weights' sum: the second ray is half opaque at distance 4
    error = depth_error(rendered, opacity, target, rgba)
    assert float(error) == pytest.approx((0.2 / 2.0 + 0.0) / 2)  # the unknown and the edge pixel do not count
    assert depth_error(rendered, opacity, None, rgba) is None
    none_solid = depth_error(rendered, opacity, torch.zeros(4), rgba)
    assert float(none_solid) == 0.0


def test_a_ray_through_a_hole_is_left_to_the_colours():
    # Three solid pixels whose rays all read 10 % too far: opaque, half opaque, almost transparent
    # (a hole in the surface the pixel shows). The hole's ray would pull a thousand times harder
    # than the opaque one (1 / opacity); it is left out, and the others pull by their distance alone.
    target, rgba = torch.tensor([2.0, 2.0, 2.0]), torch.ones(3, 4)
    opacity = torch.tensor([1.0, 0.5, 0.001], requires_grad=True)
    rendered = (torch.tensor([2.2, 2.2, 2.2]) * opacity.detach()).requires_grad_()
    error = depth_error(rendered, opacity, target, rgba)
    assert float(error.detach()) == pytest.approx(0.1)
    error.backward()
    assert rendered.grad.tolist() == pytest.approx([0.25, 0.5, 0.0])  # 1 / (opacity * distance * rays counted)


def test_ray_batches_carry_the_depth_of_the_pixel_each_ray_goes_through():
    n, height, width = 3, 5, 7
    index = torch.arange(n * height * width, dtype=torch.float32).view(n, height, width)
    images = torch.zeros(n, height, width, 4, dtype=torch.uint8)
    images[..., 0] = (index % 251).to(torch.uint8)
    images[..., 1] = (index // 251).to(torch.uint8)
    images[..., 3] = 255
    c2w = torch.eye(4).expand(n, 4, 4).clone()
    views = PosedViews([f"r_{i}" for i in range(n)], images, c2w, torch.tensor([[5.0, 5.0, 3.5, 2.5]] * n),
                       torch.tensor([[-1.0] * 3, [1.0] * 3]), depth=index + 1.0)
    batch = RayBatcher(views, 64, torch.Generator().manual_seed(0))()
    pixel = batch["rgba"][:, 0] * 255 + batch["rgba"][:, 1] * 255 * 251
    assert torch.allclose(batch["depth"], pixel.round() + 1.0)
    assert "depth" not in RayBatcher(PosedViews(views.names, images, c2w, views.intrinsics, views.aabb), 8)()


def test_a_frames_depth_file_that_is_missing_or_not_an_exr_is_one_sentence(tmp_path):
    from PIL import Image

    (tmp_path / "train").mkdir()
    Image.new("RGBA", (4, 4)).save(tmp_path / "train" / "r_0.png")
    frame = {"file_path": "./train/r_0.png", "depth_file_path": "./train/r_0_depth.exr", "transform_matrix": np.eye(4).tolist()}
    (tmp_path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": [frame], "aabb": [[-1] * 3, [1] * 3]}))
    with pytest.raises(InputError, match=r"frames\[0\].*depth file '[^']*/train/r_0_depth\.exr' does not exist.*'depth_file_path'"):
        load_dataset(tmp_path, holdout_every=0)
    assert load_dataset(tmp_path, holdout_every=0, with_depth=False)[0].depth is None  # a missing file blocks only its reader
    (tmp_path / "train" / "r_0_depth.exr").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"r_0_depth\.exr' is not an OpenEXR file"):
        load_dataset(tmp_path, holdout_every=0)
    # What does not weigh depth does not read it: a load without depth, and every test view.
    train, _ = load_dataset(tmp_path, holdout_every=0, with_depth=False)
    assert train.depth is None
    Image.new("RGBA", (4, 4)).save(tmp_path / "train" / "r_1.png")
    plain = {"file_path": "./train/r_1.png", "transform_matrix": np.eye(4).tolist()}
    (tmp_path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": [frame, plain], "aabb": [[-1] * 3, [1] * 3]}))
    train, test = load_dataset(tmp_path, holdout_names={"r_0"})  # the broken depth is a test view's
    assert test.names == ["r_0"] and test.depth is None and train.depth is None


def test_a_fit_taught_by_the_captured_depth_puts_its_surfaces_where_the_scene_has_them(tmp_path, one_torch_thread):
    """Blender captures a plain cube (one colour: where its faces lie is the colours' guess), and
    the same short NeRF fit runs with and without the depth term: with it, the distance the field
    renders on the training views' opaque pixels is much closer to the scene's."""
    bpy = pytest.importorskip("bpy")
    from ins_blender.capture import capture_views
    from ins_core.render.views import render_view
    from ins_core.train.fit import FitRequest, start_fit
    from ins_core.train.loading import open_run

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_cube_add(size=1.0)
    capture_views(bpy.context.scene, tmp_path / "job", source="auto_rig", n_views=10, resolution=(32, 32), samples=4, test_every=0)
    views, _ = load_dataset(tmp_path / "job" / "dataset", holdout_every=0)
    assert views.depth is not None and views.depth.shape == (10, 32, 32)
    errors = {}
    for weight in (0.0, 0.1):
        session = start_fit(FitRequest(data=tmp_path / "job" / "dataset", kind="nerf", out=tmp_path / f"fit_{weight}", device="cpu",
                                       steps=140, batch_rays=256, depth_weight=weight, holdout_every=0))
        session.run_loop()
        model = session.model.eval()
        assert (session.data.train.depth is not None) == (weight > 0)  # read only where the fit weighs it
        relative = []
        for i in range(len(views)):
            render = render_view(model, views.c2w[i], views.intrinsics[i], 32, 32)
            solid = (views.images[i, ..., 3] == 255) & (views.depth[i] > 0)
            relative.append(((render.depth[solid] - views.depth[i][solid]).abs() / views.depth[i][solid]))
        errors[weight] = float(torch.cat(relative).mean())
    assert errors[0.1] < 0.5 * errors[0.0], errors  # 0.0044 against 0.020 (2-core EPYC, 2026-12-07)
    assert open_run(tmp_path / "fit_0.1").data.train.depth is None  # stylizing or evaluating the run never reads it
