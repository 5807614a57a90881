"""Several fields' frames in one: each pixel's layers nearest first, in linear light."""

import math

import pytest
import torch

from ins_core.data.cameras import Intrinsics, look_at
from ins_core.data.placement import Placement
from ins_core.protocol import NO_DEPTH
from ins_core.render.frame import Frame, render_frame
from ins_core.render.passes import linear_to_srgb, srgb_to_linear
from ins_core.render.together import frames_together
from scenes import sharp_sdf_sphere

SIZE = 24


def flat(colour, alpha: float, order: float, depth: float, mist: float, normal) -> Frame:
    """A 2 x 3 frame of one colour (sRGB), alpha, order and passes everywhere."""
    rgba = torch.tensor([*colour, alpha]).expand(2, 3, 4).clone()
    return Frame(rgba, torch.full((2, 3), depth), torch.full((2, 3), mist), torch.tensor(normal).expand(2, 3, 3).clone(),
                 torch.full((2, 3), order))


def test_the_nearer_layer_lies_over_the_farther_in_linear_light():
    red = flat((1.0, 0.0, 0.0), 1.0, order=2.0, depth=2.0, mist=0.2, normal=(1.0, 0.0, 0.0))
    half_blue = flat((0.0, 0.0, 1.0), 0.5, order=1.0, depth=NO_DEPTH, mist=0.9, normal=(0.0, 0.0, 0.5))
    for frames in ([red, half_blue], [half_blue, red]):  # the order given does not matter
        out = frames_together(frames)
        linear = srgb_to_linear(out.rgba[0, 0, :3])
        assert out.rgba[0, 0, 3] == pytest.approx(1.0)
        assert torch.allclose(linear, torch.tensor([0.5, 0.0, 0.5]), atol=1e-5)  # half of each, not of their codes
        assert out.depth[0, 0] == 2.0  # the nearest surface (the blue one is under half opaque: no Z)
        # Mist: 1 - (what the blue lets through of its own fog + what reaches the red of its own).
        assert out.mist[0, 0] == pytest.approx(1.0 - (0.1 + 0.5 * 0.8), abs=1e-6)
        assert torch.allclose(out.normal[0, 0], torch.tensor([0.5, 0.0, 0.5]))
    red.order.fill_(0.5)  # now the red is nearer: it covers the blue
    assert torch.allclose(frames_together([red, half_blue]).rgba[0, 0], torch.tensor([1.0, 0.0, 0.0, 1.0]))


def test_empty_pixels_show_what_lies_behind_or_the_background():
    empty = flat((0.0, 0.0, 0.0), 0.0, order=math.inf, depth=NO_DEPTH, mist=1.0, normal=(0.0, 0.0, 0.0))
    green = flat((0.0, 1.0, 0.0), 1.0, order=3.0, depth=3.0, mist=0.5, normal=(0.0, 1.0, 0.0))
    out = frames_together([empty, green])
    assert torch.allclose(out.rgba[0, 0], green.rgba[0, 0]) and out.mist[0, 0] == pytest.approx(0.5)
    out = frames_together([empty, empty], background=torch.tensor([0.2, 0.4, 0.8]))
    assert torch.allclose(out.rgba[0, 0], torch.cat([linear_to_srgb(torch.tensor([0.2, 0.4, 0.8])), torch.ones(1)]), atol=1e-6)
    assert out.depth[0, 0] == NO_DEPTH and out.mist[0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="order"):
        frames_together([Frame(green.rgba), green])


@pytest.fixture(scope="module")
def sphere():
    return sharp_sdf_sphere(), look_at(torch.tensor([0.0, -3.0, 0.0]), torch.zeros(3)), Intrinsics.from_fov(0.9, SIZE, SIZE).as_tensor()


def _moved(x: float, y: float) -> Placement:
    matrix = torch.eye(4, dtype=torch.float64)
    matrix[0, 3], matrix[1, 3] = x, y
    return Placement.from_matrix(matrix)


def test_two_placed_fields_in_one_frame_each_where_its_object_is(sphere):
    """The same field twice, one moved left and nearer, one right and farther: each shows where it
    shows alone, and where they overlap the nearer one covers the other (pixels at least 99 %
    covered: within what the 1 % left lets through of the black behind)."""
    model, c2w, intrinsics = sphere

    def alone(placement: Placement) -> Frame:
        return render_frame(model, c2w, intrinsics, SIZE, SIZE, samples=4, no_depth=NO_DEPTH, placement=placement, ordered=True)

    near, far = alone(_moved(-0.35, -0.6)), alone(_moved(0.35, 0.6))
    far.rgba[..., 0] = 0.0  # told apart by colour: the far one has no red
    both = frames_together([far, near], background=torch.tensor([0.0, 0.0, 0.0]))
    only_near = (near.rgba[..., 3] > 0.99) & (far.rgba[..., 3] < 1e-4)
    only_far = (far.rgba[..., 3] > 0.99) & (near.rgba[..., 3] < 1e-4)
    overlap = (near.rgba[..., 3] > 0.99) & (far.rgba[..., 3] > 0.99)
    assert only_near.sum() > 5 and only_far.sum() > 5 and overlap.sum() > 5
    assert torch.allclose(both.rgba[only_near][:, :3], near.rgba[only_near][:, :3], atol=3e-3)
    assert torch.allclose(both.rgba[only_far][:, :3], far.rgba[only_far][:, :3], atol=3e-3)
    assert torch.allclose(both.rgba[overlap][:, :3], near.rgba[overlap][:, :3], atol=3e-3)  # the nearer covers
    assert torch.equal(both.depth, torch.minimum(near.depth, far.depth))
    assert (near.order[overlap] < far.order[overlap]).all()
    assert torch.isinf(near.order[near.rgba[..., 3] < 1e-4]).all()
