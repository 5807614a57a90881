"""Several fields' frames in one: each pixel's layers nearest first, in linear light."""

import copy
import math

import pytest
import torch

from ins_core.data.cameras import Intrinsics, look_at
from ins_core.data.placement import Placement
from ins_core.protocol import NO_DEPTH
from ins_core.render.frame import FieldLayer, Frame, render_fields, render_frame
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


def _tinted(model, colour):
    """`model` made one flat colour (its colour head's last layer a constant, saturated)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        head = model.field.color_mlp[-1]
        head.weight.zero_()
        head.bias.copy_(torch.tensor(colour) * 24.0 - 12.0)  # 0 -> black, 1 -> full, through the colour activation
    return model


@pytest.fixture(scope="module")
def sphere():
    model = sharp_sdf_sphere()
    return model, look_at(torch.tensor([0.0, -3.0, 0.0]), torch.zeros(3)), Intrinsics.from_fov(0.9, SIZE, SIZE).as_tensor()


def _moved(x: float, y: float) -> Placement:
    matrix = torch.eye(4, dtype=torch.float64)
    matrix[0, 3], matrix[1, 3] = x, y
    return Placement.from_matrix(matrix)


NEAR, FAR = _moved(-0.35, -0.6), _moved(0.35, 0.6)


def test_two_placed_fields_in_one_frame_each_where_its_object_is(sphere):
    """The sphere twice, red moved left and nearer, blue moved right and farther: each shows where
    it shows alone, and where they overlap the nearer one covers the other (pixels at least 99 %
    covered: within what the 1 % left lets through, in linear light)."""
    model, c2w, intrinsics = sphere
    red, blue = _tinted(model, (1.0, 0.0, 0.0)), _tinted(model, (0.0, 0.0, 1.0))

    def alone(layer_model, placement: Placement) -> Frame:
        return render_frame(layer_model, c2w, intrinsics, SIZE, SIZE, samples=4, no_depth=NO_DEPTH, placement=placement, ordered=True)

    near, far = alone(red, NEAR), alone(blue, FAR)
    both = render_fields([FieldLayer(blue, FAR), FieldLayer(red, NEAR)], c2w, intrinsics, SIZE, SIZE, samples=4,
                         no_depth=NO_DEPTH, background=torch.tensor([0.0, 0.0, 0.0]))
    only_near = (near.rgba[..., 3] > 0.99) & (far.rgba[..., 3] < 1e-4)
    only_far = (far.rgba[..., 3] > 0.99) & (near.rgba[..., 3] < 1e-4)
    overlap = (near.rgba[..., 3] > 0.99) & (far.rgba[..., 3] > 0.99)
    assert only_near.sum() > 5 and only_far.sum() > 5 and overlap.sum() > 5
    assert torch.allclose(near.rgba[only_near][:, :3], torch.tensor([1.0, 0.0, 0.0]), atol=1e-3)  # (tinted as meant)
    for where, alone_frame in ((only_near, near), (only_far, far), (overlap, near)):  # the nearer covers where they overlap
        assert torch.allclose(srgb_to_linear(both.rgba[where][:, :3]), srgb_to_linear(alone_frame.rgba[where][:, :3]), atol=1e-2)
    assert torch.equal(both.depth, torch.minimum(near.depth, far.depth))
    assert (near.order[overlap] < far.order[overlap]).all()
    assert torch.isinf(near.order[near.rgba[..., 3] < 1e-4]).all()


def test_where_one_field_passes_in_front_of_another_its_edge_is_smoothed_by_the_samples(sphere):
    """The red sphere's edge over the blue one behind it: each edge pixel is red and blue in the
    shares the pixel's samples see them, in linear light, and opaque."""
    model, c2w, intrinsics = sphere
    red, blue = _tinted(model, (1.0, 0.0, 0.0)), _tinted(model, (0.0, 0.0, 1.0))
    near = render_frame(red, c2w, intrinsics, SIZE, SIZE, samples=16, placement=NEAR)
    far = render_frame(blue, c2w, intrinsics, SIZE, SIZE, samples=16, placement=FAR)
    both = render_fields([FieldLayer(red, NEAR), FieldLayer(blue, FAR)], c2w, intrinsics, SIZE, SIZE, samples=16)
    edge = (far.rgba[..., 3] > 0.999) & (near.rgba[..., 3] > 0.1) & (near.rgba[..., 3] < 0.9)
    assert edge.sum() >= 3
    linear = srgb_to_linear(both.rgba[edge][:, :3])
    share = near.rgba[edge][:, 3]
    assert torch.allclose(linear[:, 0], share, atol=0.02) and torch.allclose(linear[:, 2], 1.0 - share, atol=0.02)
    assert torch.allclose(both.rgba[edge][:, 3], torch.ones(int(edge.sum())), atol=1e-3)


def test_two_fields_that_pass_through_each_other_meet_on_a_line_the_samples_smooth(sphere):
    """Red and blue spheres side by side, their centres 0.2 apart in depth, so they interpenetrate:
    where both are opaque each of a pixel's samples shows the nearer surface at its own ray, and
    the pixels along the line where they meet are red and blue in sixteenths (laid together pixel
    by pixel, each was one or the other)."""
    model, c2w, intrinsics = sphere
    red, blue = _tinted(model, (1.0, 0.0, 0.0)), _tinted(model, (0.0, 0.0, 1.0))
    left, right = _moved(-0.15, 0.1), _moved(0.15, -0.1)
    alone = [render_frame(m, c2w, intrinsics, SIZE, SIZE, samples=16, placement=p) for m, p in ((red, left), (blue, right))]
    both = render_fields([FieldLayer(red, left), FieldLayer(blue, right)], c2w, intrinsics, SIZE, SIZE, samples=16)
    solid = (alone[0].rgba[..., 3] > 0.999) & (alone[1].rgba[..., 3] > 0.999)
    linear = srgb_to_linear(both.rgba[solid][:, :3])
    assert torch.allclose(linear[:, 0] + linear[:, 2], torch.ones(len(linear)), atol=0.01)  # one or the other, sample by sample
    mixed = (linear[:, 0] > 0.05) & (linear[:, 2] > 0.05)
    assert solid.sum() > 10 and mixed.sum() >= 2 and (linear[:, 0] > 0.95).any() and (linear[:, 2] > 0.95).any()
    sixteenths = linear[mixed][:, 0] * 16
    assert torch.allclose(sixteenths, sixteenths.round(), atol=0.2)


@pytest.mark.parametrize("case", ["motion", "lens"])
def test_each_field_blurs_as_it_does_alone_when_laid_together(sphere, case):
    """Two fields apart, one of them moving through the shutter (its own camera poses) or both
    through a thin lens (each field's aperture taken into its own frame, the right one scaled 0.8):
    wherever only one of them shows, the frame is that field's frame alone, blur and all."""
    from ins_core.data.lens import ThinLens

    model, c2w, intrinsics = sphere
    red, blue = _tinted(model, (1.0, 0.0, 0.0)), _tinted(model, (0.0, 0.0, 1.0))
    left = _moved(-0.55, 0.0)
    right_matrix = torch.eye(4, dtype=torch.float64) * 0.8
    right_matrix[3, 3], right_matrix[0, 3] = 1.0, 0.55
    right = Placement.from_matrix(right_matrix)
    lens, motion = None, None
    if case == "lens":
        lens = ThinLens(2.2, 0.4)
    else:  # the camera slides 0.5 to the right relative to the left field over the shutter
        motion = c2w.expand(3, 4, 4).clone()
        motion[:, 0, 3] += torch.tensor([-0.25, 0.0, 0.25])
    layers = [FieldLayer(red, left, motion), FieldLayer(blue, right)]
    alone = [render_frame(layer.model, c2w, intrinsics, SIZE, SIZE, samples=9, placement=layer.placement, motion=layer.motion,
                          lens=lens) for layer in layers]
    both = render_fields(layers, c2w, intrinsics, SIZE, SIZE, samples=9, lens=lens)
    sharp = render_frame(red, c2w, intrinsics, SIZE, SIZE, samples=9, placement=left).rgba[..., 3]
    soft = [((alpha > 0.05) & (alpha < 0.95)).sum() for alpha in (sharp, alone[0].rgba[..., 3])]
    assert soft[1] > 1.8 * soft[0]  # (blurred: a soft edge wider than the still, focused sphere's)
    for one, other in ((alone[0], alone[1]), (alone[1], alone[0])):
        only = (one.rgba[..., 3] > 0) & (other.rgba[..., 3] == 0)
        assert only.sum() > 20
        assert torch.allclose(both.rgba[only], one.rgba[only], atol=1e-4)
