"""A frame's samples: k x k rays a pixel, averaged for the image, Mist and Normal; Z from one."""

import pytest
import torch

from ins_core.data.cameras import Intrinsics, look_at
from ins_core.errors import InputError
from ins_core.protocol import NO_DEPTH
from ins_core.render.frame import render_frame, subpixel_offsets
from scenes import sharp_sdf_sphere

SIZE = 24


def test_the_samples_of_a_pixel_are_the_centres_of_a_grid_inside_it():
    assert subpixel_offsets(1) == [(0.0, 0.0)]
    assert subpixel_offsets(4) == [(-0.25, -0.25), (0.25, -0.25), (-0.25, 0.25), (0.25, 0.25)]
    assert len(subpixel_offsets(9)) == 9 and (0.0, 0.0) in subpixel_offsets(9)
    for bad in (0, 3, 8, -4, 2.0):
        with pytest.raises(InputError, match="square number"):
            subpixel_offsets(bad)


@pytest.fixture(scope="module")
def sphere():
    """A sharp SDF sphere (its initial one) seen whole: edges a ray either hits or misses."""
    return sharp_sdf_sphere(), look_at(torch.tensor([0.0, -1.6, 0.3]), torch.zeros(3)), Intrinsics.from_fov(0.9, SIZE, SIZE).as_tensor()


def test_more_samples_come_nearer_the_pixels_true_coverage(sphere):
    """Against 64 samples a pixel, one sample's edges are stair-steps (each pixel all or nothing);
    four already halve the error."""
    model, c2w, intrinsics = sphere
    reference = render_frame(model, c2w, intrinsics, SIZE, SIZE, samples=64).rgba[..., 3]
    errors = {n: float((render_frame(model, c2w, intrinsics, SIZE, SIZE, samples=n).rgba[..., 3] - reference).abs().mean())
              for n in (1, 4, 16)}
    assert errors[4] < 0.5 * errors[1] and errors[16] < errors[4]
    edge = (reference > 0.1) & (reference < 0.9)
    assert edge.sum() > 20  # the silhouette is in view


def test_the_passes_of_a_sampled_frame(sphere):
    """Mist and Normal are their samples' means; Z is the centre sample's, as one sample gives it."""
    model, c2w, intrinsics = sphere
    one = render_frame(model, c2w, intrinsics, SIZE, SIZE, samples=1, no_depth=NO_DEPTH, mist=(1.0, 1.0, 1.0), normals=True)
    nine = render_frame(model, c2w, intrinsics, SIZE, SIZE, samples=9, no_depth=NO_DEPTH, mist=(1.0, 1.0, 1.0), normals=True)
    assert torch.equal(nine.depth, one.depth)  # 3 x 3: the centre sample is the pixel's centre
    coverage, length = nine.rgba[..., 3], nine.normal.norm(dim=-1)
    assert (length <= coverage + 1e-4).all()  # the mean of unit normals, weighed by their samples' opacity
    inside = coverage > 0.999
    assert length[inside].median() > 0.97  # (shorter where the surface turns within the pixel, as in Cycles)
    assert torch.allclose(nine.mist[inside], one.mist[inside], atol=0.05)  # the same surface, sampled finer
    assert (nine.mist[coverage < 1e-3] > 0.999).all()
    # Over a background, opaque; without, the coverage as alpha.
    over = render_frame(model, c2w, intrinsics, SIZE, SIZE, samples=4, background=torch.tensor([0.0, 0.0, 1.0]))
    assert torch.equal(over.rgba[..., 3], torch.ones(SIZE, SIZE))
    assert one.depth is not None and render_frame(model, c2w, intrinsics, SIZE, SIZE).depth is None


def test_a_lens_blurs_what_lies_off_the_plane_in_focus(sphere):
    """Through a thin lens focused on the sphere's front the frame is the pinhole's, give or take
    the rays' spread; focused far behind it, the silhouette blurs over pixels, and the Z and
    Normal passes come from where the lens's rays meet the surface."""
    model, c2w, intrinsics = sphere
    from ins_core.data.lens import ThinLens

    pinhole = render_frame(model, c2w, intrinsics, SIZE, SIZE, samples=16, no_depth=NO_DEPTH, normals=True)
    front = float(pinhole.depth[pinhole.depth < NO_DEPTH].min())
    focused = render_frame(model, c2w, intrinsics, SIZE, SIZE, samples=16, no_depth=NO_DEPTH,
                           lens=ThinLens(front + 0.1, 0.08))
    blurred = render_frame(model, c2w, intrinsics, SIZE, SIZE, samples=16, no_depth=NO_DEPTH, normals=True,
                           lens=ThinLens(20.0, 0.08))
    partial = lambda frame: int(((frame.rgba[..., 3] > 0.05) & (frame.rgba[..., 3] < 0.95)).sum())  # noqa: E731
    assert (focused.rgba[..., 3] - pinhole.rgba[..., 3]).abs().mean() < 0.01
    assert partial(blurred) > 1.8 * partial(pinhole), (partial(pinhole), partial(blurred))
    solid = (pinhole.rgba[..., 3] > 0.99) & (blurred.rgba[..., 3] > 0.99)
    # Z: one lens ray's surface, a little aside from the pinhole's on the curved sphere
    assert ((blurred.depth[solid] - pinhole.depth[solid]).abs() / pinhole.depth[solid]).median() < 0.03
    assert blurred.normal[solid].norm(dim=-1).median() > 0.9  # the mean of normals where the lens rays meet the surface


def _placement_matrix(scale: float, mirror: bool = False) -> torch.Tensor:
    """Field-to-world: turned 40 degrees about a tilted axis, moved, scaled by `scale` (mirrored in x)."""
    axis = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    axis = axis / axis.norm()
    k = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=torch.float64)
    angle = torch.tensor(0.7, dtype=torch.float64)
    turn = torch.eye(3, dtype=torch.float64) + torch.sin(angle) * k + (1 - torch.cos(angle)) * k @ k
    matrix = torch.eye(4, dtype=torch.float64)
    matrix[:3, :3] = turn * scale @ torch.diag(torch.tensor([-1.0 if mirror else 1.0, 1.0, 1.0], dtype=torch.float64))
    matrix[:3, 3] = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    return matrix


@pytest.mark.parametrize("case", ["perspective", "orthographic", "lens", "mirrored"])
def test_a_placed_field_renders_as_if_the_camera_had_moved_the_other_way(sphere, case):
    """Moved, turned and scaled 1.7 times (or mirrored), the field looks from a camera placed with
    it as it looked from the camera before; only what is measured in world units grows with the
    scale (the Z pass, and the mist's, lens's and orthographic camera's distances going in), and
    the normals turn with the field."""
    from ins_core.data.lens import ThinLens
    from ins_core.data.placement import Placement

    model, c2w, intrinsics = sphere
    scale = 1.0 if case == "mirrored" else 1.7
    placement = Placement.from_matrix(_placement_matrix(scale, mirror=case == "mirrored"))
    orthographic = case == "orthographic"
    if orthographic:
        intrinsics = torch.tensor([SIZE / 1.6, SIZE / 1.6, SIZE / 2, SIZE / 2])
    lens = ThinLens(1.2, 0.05) if case == "lens" else None
    world_c2w = placement.matrix.float() @ c2w
    world_c2w[:3, :3] /= scale  # a camera's axes are unit (camera_to_world)
    mist = (1.0, 0.8, 2.0)
    before = render_frame(model, c2w, intrinsics, SIZE, SIZE, samples=4, no_depth=NO_DEPTH, mist=mist, normals=True,
                          orthographic=orthographic, lens=lens)
    world = lambda values: None if values is None else (values[0] * scale, values[1] * scale, *values[2:])  # noqa: E731
    placed = render_frame(model, world_c2w, intrinsics if not orthographic else torch.cat([intrinsics[:2] / scale, intrinsics[2:]]),
                          SIZE, SIZE, samples=4, no_depth=NO_DEPTH, mist=world(mist), normals=True, orthographic=orthographic,
                          lens=None if lens is None else ThinLens(lens.focus_distance * scale, lens.aperture_radius * scale),
                          placement=placement)
    assert float(before.rgba[..., 3].mean()) > 0.1  # the sphere is in view
    assert torch.allclose(placed.rgba, before.rgba, atol=2e-3)
    assert torch.allclose(placed.mist, before.mist, atol=1e-3)
    surface = before.depth < NO_DEPTH
    assert torch.equal(placed.depth < NO_DEPTH, surface)
    assert torch.allclose(placed.depth[surface], before.depth[surface] * scale, rtol=1e-3)
    turned = before.normal @ placement.rotation.float().T
    assert torch.allclose(placed.normal, turned, atol=2e-3)
    assert (placed.normal - before.normal).abs().max() > 0.3  # (the field's normals did turn)


@pytest.mark.parametrize("scale, why", [((1.0, 2.0, 1.0), "uneven"), ((1.0, 1.0, 0.0), "flat"), ("shear", "sheared"),
                                        ("nan", "not finite")])
def test_a_placement_that_is_not_a_move_turn_and_one_scale_is_refused(scale, why):
    from ins_core.data.placement import Placement

    matrix = torch.eye(4, dtype=torch.float64)
    if scale == "shear":
        matrix[0, 1] = 0.5
    elif scale == "nan":
        matrix[1, 3] = float("nan")
    else:
        matrix[:3, :3] = torch.diag(torch.tensor(scale, dtype=torch.float64))
    with pytest.raises(InputError, match="three equal Scale values"):
        Placement.from_matrix(matrix)
    # Blender's float32 matrix of an evenly scaled, turned object passes, noise in its last row and all.
    noisy = _placement_matrix(0.3).float()
    noisy[3, :3] = torch.tensor([-2.8e-8, 2.6e-8, 1.5e-7])
    assert Placement.from_matrix(noisy).scale == pytest.approx(0.3, rel=1e-5)
