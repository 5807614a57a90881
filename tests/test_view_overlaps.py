"""Where neighbouring views see the same surface, and how their colours differ there."""

import torch

from ins_core.data.cameras import Intrinsics, image_pixels, look_at, rays_from_pixels
from ins_core.render.view_overlaps import SurfaceView, neighbour_overlaps, surface_points, view_differences

SIZE = 32


def _ground_view(eye) -> tuple[SurfaceView, torch.Tensor]:
    """A camera at `eye` looking at the origin of the ground plane z = 0, and what it sees of a
    texture painted on the ground: colours that depend on the ground point alone."""
    c2w = look_at(torch.tensor(eye), torch.zeros(3))
    intrinsics = Intrinsics.from_fov(0.6, SIZE, SIZE).as_tensor()
    origins, directions = rays_from_pixels(image_pixels(SIZE, SIZE), c2w, intrinsics)
    points = origins + directions * (-origins[:, 2:] / directions[:, 2:])
    texture = torch.stack([0.5 + 0.3 * torch.sin(3 * points[:, 0]), 0.5 + 0.3 * torch.cos(2 * points[:, 1]), torch.full_like(points[:, 0], 0.5)], dim=-1)
    return SurfaceView(c2w, intrinsics, points, torch.ones(SIZE, SIZE)), texture.view(SIZE, SIZE, 3)


def test_each_view_is_paired_with_its_nearest_and_a_painted_surface_agrees_between_them():
    views, images = zip(*[_ground_view(eye) for eye in ([0.0, -2.0, 2.0], [0.3, -2.0, 2.0], [2.0, 2.0, 2.0])])
    overlaps = neighbour_overlaps(list(views))
    pairs = {(o.source, o.target) for o in overlaps}
    assert pairs == {(0, 1), (1, 0), (2, 1)}  # the third camera's nearest is the second
    assert all(o.landing.visible.sum() > 0.3 * SIZE * SIZE for o in overlaps if o.source < 2)
    differences = view_differences(list(images), overlaps)
    assert differences.shape[1] == 3 and differences.pow(2).mean().sqrt() < 0.01  # the same ground colours, resampled

    # A view that draws the same ground redder: the disagreement is that red, in that direction alone.
    redder = [images[0], images[1] + torch.tensor([0.1, 0.0, 0.0]), images[2]]
    near = [o for o in overlaps if o.source < 2]
    rms = view_differences(redder, near).pow(2).mean(dim=0).sqrt()
    assert abs(float(rms[0]) - 0.1) < 0.01 and float(rms[1:].max()) < 0.01


def test_surface_points_lie_at_the_rendered_distance_along_each_ray():
    view, _ = _ground_view([0.0, -2.0, 2.0])
    distance = view.distance()
    torch.testing.assert_close(surface_points(distance, view.c2w, view.intrinsics), view.points, atol=1e-5, rtol=1e-5)
    assert abs(float(view.points[:, 2].abs().max())) < 1e-5  # on the ground
