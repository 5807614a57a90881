"""Depth of field: the thin lens the INS engine renders a Blender camera's Depth of Field with
(ins_blender/depth_of_field.py -> ins_core/data/lens.py) against Cycles' own, and in a frame."""

import math

import pytest
import torch

from ins_core.data.cameras import image_pixels, rays_from_pixels
from ins_core.data.lens import ThinLens, aperture_points, lens_samples
from ins_core.errors import InputError

from sphere_coverage import SIZE, assert_like_cycles, camera_tensors, cycles_coverage, cycles_sphere_scene, sphere_hits


def test_aperture_points_cover_the_aperture_evenly():
    side = 64
    cells = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="xy"), -1).reshape(-1, 2)
    uv = (cells.float() + 0.5) / side
    disk = aperture_points(ThinLens(5.0, 0.5), uv)
    assert disk.norm(dim=-1).max() <= 0.5 + 1e-6
    # even over the area: half the points within radius / sqrt(2), the mean at the centre
    assert abs(float((disk.norm(dim=-1) < 0.5 / math.sqrt(2)).float().mean()) - 0.5) < 0.02  # 23 of 32 rings: 0.517
    assert disk.mean(dim=0).abs().max() < 1e-3
    hexagon = aperture_points(ThinLens(5.0, 1.0, blades=6, rotation=0.3), uv)
    angles = torch.atan2(hexagon[:, 1], hexagon[:, 0])
    # Cycles' blades: corners half a side's angle (30 degrees) either side of the rotation, so the
    # points reach the circle only there; along the rotation itself they stop at cos(30 degrees)
    near = lambda angle: ((angles - angle + math.pi) % (2 * math.pi) - math.pi).abs() < 0.02  # noqa: E731
    assert hexagon[near(0.3 + math.pi / 6)].norm(dim=-1).max() > 0.97
    assert hexagon[near(0.3)].norm(dim=-1).max() < math.cos(math.pi / 6) + 0.01
    stretched = aperture_points(ThinLens(5.0, 1.0, ratio=2.0), uv)
    assert stretched[:, 0].abs().max() < 0.51 and stretched[:, 1].abs().max() > 0.97  # narrowed across


def test_each_ray_of_a_pixel_takes_its_own_cell_of_the_aperture_somewhere_else_in_each_pixel():
    lens = ThinLens(5.0, 1.0)
    first, again = lens_samples(lens, 16, 500), lens_samples(lens, 16, 500)
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # a frame repeats exactly
    assert torch.stack([p.mean(dim=0) for p in first]).abs().max() > 0.2  # each ray its own part of the aperture
    assert torch.stack(first).mean(dim=(0, 1)).abs().max() < 0.02  # together the whole aperture
    assert float(first[0].std(dim=0).min()) > 0.05  # not one point for every pixel
    with pytest.raises(InputError, match="0 blades \\(round\\) or 3 or more"):
        ThinLens(5.0, 1.0, blades=2)


@pytest.mark.parametrize("case", ["round", "blades", "orthographic", "focus_object"])
def test_the_depth_of_field_is_the_one_cycles_renders(tmp_path, case):
    """Cycles renders a sphere's coverage through a camera with Depth of Field (1024 samples a
    pixel, no pixel filter); the thin lens the engine builds from the same camera, its rays through
    the pixels' centres from 16 x 16 aperture points each, covers the same pixels as much."""
    bpy = pytest.importorskip("bpy")
    from ins_blender.depth_of_field import depth_of_field

    scene, camera = cycles_sphere_scene(bpy)
    camera.location, camera.rotation_euler = (0.5, -6.0, 0.8), (math.radians(82), 0.0, math.radians(4))
    bpy.context.view_layer.update()  # (matrix_world follows)
    dof = camera.data.dof
    dof.use_dof, dof.focus_distance, dof.aperture_fstop = True, 3.0, 0.1  # the sphere twice as far as the focus
    if case == "blades":
        dof.aperture_blades, dof.aperture_rotation, dof.aperture_ratio = 5, 0.4, 1.6
    if case == "orthographic":
        camera.data.type, camera.data.ortho_scale, dof.aperture_fstop = "ORTHO", 3.0, 2.0
    if case == "focus_object":  # focused on an empty 2 along the axis, off the axis, before the sphere
        target = bpy.data.objects.new("Focus", None)
        scene.collection.objects.link(target)
        target.location = camera.matrix_world @ mathutils_vector((0.7, -0.4, -2.0))
        dof.focus_object = target
    bpy.context.view_layer.update()
    cycles = cycles_coverage(bpy, tmp_path)

    settings = depth_of_field(camera)
    if case == "focus_object":
        assert settings["focus_distance"] == pytest.approx(2.0, rel=1e-5)
    lens = ThinLens(**settings)
    c2w, intrinsics = camera_tensors(camera)
    pixels, orthographic = image_pixels(*SIZE), camera.data.type == "ORTHO"
    side = 16
    grid = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="xy"), -1).reshape(-1, 2)
    coverage = torch.zeros(SIZE[0] * SIZE[1])
    for cell in grid:
        points = aperture_points(lens, ((cell + 0.5) / side).expand(pixels.shape[0], 2))
        coverage += sphere_hits(*rays_from_pixels(pixels, c2w, intrinsics, orthographic, lens, points)).float()
    ours = (coverage / len(grid)).view(SIZE[1], SIZE[0])
    pinhole = sphere_hits(*rays_from_pixels(pixels, c2w, intrinsics, orthographic)).float().view(SIZE[1], SIZE[0])
    assert_like_cycles(ours, cycles, pinhole)


def mathutils_vector(values):
    from mathutils import Vector

    return Vector(values)


@pytest.mark.parametrize("orthographic", [False, True], ids=["perspective", "orthographic"])
def test_the_z_pass_through_a_lens_runs_along_the_cameras_axis(orthographic):
    """A wall square to the camera's axis at 4: every lens ray meets it 4 along the axis, however
    long and slanted the ray; the Z pass says 4 everywhere (the ray's own length would not)."""
    from ins_core.data.cameras import look_at
    from ins_core.protocol import NO_DEPTH
    from ins_core.render.passes import z_pass
    from ins_core.render.views import ViewRender

    width, height, wall = 20, 16, 4.0
    c2w = look_at(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([1.3, 3.0, 0.2]))
    intrinsics = torch.tensor([12.0, 12.0, 9.0, 8.5]) if not orthographic else torch.tensor([4.0, 4.0, 10.0, 8.0])
    lens = ThinLens(1.5, 0.4, blades=6)
    points = lens_samples(lens, 4, width * height)[2]
    render = ViewRender(torch.zeros(height, width, 3), torch.zeros(height, width), torch.ones(height, width), orthographic,
                        (0.25, -0.25), lens, points)
    origins, directions = render.rays(c2w, intrinsics)
    forward = -c2w[:3, 2]
    length = (wall - ((origins - c2w[:3, 3]) @ forward)) / (directions @ forward)
    render.depth = length.view(height, width)
    assert float(length.max() - length.min()) > 0.05  # the rays are not all alike
    assert torch.allclose(z_pass(render, intrinsics, NO_DEPTH), torch.full((height, width), wall), atol=1e-5)
