"""What the render engine's passes are made of: the field over the world's colour, and the Z pass."""

import math

import pytest
import torch

from ins_core.data.cameras import Intrinsics, camera_directions, image_pixels, look_at, project_points, rays_from_pixels
from ins_core.protocol import NO_DEPTH
from ins_core.render.passes import linear_to_srgb, mist_pass, over_background, srgb_to_linear, z_pass
from ins_core.render.views import ViewRender, render_view
from ins_core.train.scene_models import SdfModel


def test_srgb_encoding_round_trips_and_matches_the_standard_at_known_points():
    values = torch.linspace(0, 1, 101)
    assert torch.allclose(srgb_to_linear(linear_to_srgb(values)), values, atol=1e-5)
    assert math.isclose(float(linear_to_srgb(torch.tensor(0.18))), 0.4613561, abs_tol=1e-5)  # middle grey
    assert math.isclose(float(srgb_to_linear(torch.tensor(0.5))), 0.2140411, abs_tol=1e-5)


def test_over_background_blends_in_linear_light_and_is_opaque():
    rgba = torch.tensor([[[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.5]]])
    world = torch.tensor([0.0, 0.0, 0.0])
    out = over_background(rgba, world)
    assert torch.equal(out[..., 3], torch.ones(1, 3))
    assert torch.allclose(out[0, 0, :3], torch.tensor([1.0, 0.0, 0.0]))  # the field where it is opaque
    assert torch.allclose(out[0, 1, :3], torch.zeros(3))  # the world where it is empty
    # Half-covering white over black is half the light, not half the code value: 0.735 encoded.
    assert torch.allclose(out[0, 2, :3], linear_to_srgb(torch.tensor(0.5)).expand(3), atol=1e-6)
    assert 0.73 < float(out[0, 2, 0]) < 0.74


def test_the_z_pass_is_the_distance_along_the_viewing_axis_to_the_surface():
    """An SDF at its initial sphere about the box's centre, made sharp, seen up close with a wide
    lens, so that ray length and axial distance differ by up to 6 % over the sphere."""
    torch.manual_seed(0)
    aabb = torch.tensor([[-0.6, -0.6, -0.6], [0.6, 0.6, 0.6]])
    model = SdfModel(aabb, {"n_levels": 4, "log2_table_size": 10, "max_resolution": 32, "hidden_dim": 32}, n_samples=64).eval()
    with torch.no_grad():
        model.field.variance.fill_(0.5)  # a sharp surface, as a trained one is
    size, eye = 40, torch.tensor([0.0, -0.9, 0.0])
    c2w, intrinsics = look_at(eye, torch.zeros(3)), Intrinsics.from_fov(1.2, size, size).as_tensor()
    render = render_view(model, c2w, intrinsics, size, size)
    depth = z_pass(render, intrinsics, NO_DEPTH)

    surface = render.opacity >= 0.5
    assert surface.sum() > 100 and (~surface).sum() > 100
    assert (depth[~surface] == NO_DEPTH).all()
    # The points each surface pixel's ray reaches, projected back: their axial depth is the pass.
    pixels = image_pixels(size, size)
    origins, directions = rays_from_pixels(pixels, c2w, intrinsics)
    points = (origins + directions * render.depth.reshape(-1, 1))[surface.reshape(-1)]
    _, axial = project_points(points, c2w, intrinsics)
    assert torch.allclose(depth[surface], axial, rtol=1e-4)
    # ...which is shorter than the ray where the ray runs off the axis (and lands on the sphere).
    off_axis = camera_directions(pixels, intrinsics).norm(dim=-1).reshape(size, size) > 1.04
    assert (surface & off_axis).sum() > 10
    assert (depth[surface & off_axis] < 0.97 * render.depth[surface & off_axis]).all()
    with torch.no_grad():  # and the points are on the surface: the SDF's zero level
        assert model.field.sdf(points).abs().median() < 0.02


def test_the_mist_pass_of_a_partly_covered_pixel_lets_the_mist_through_by_its_share():
    render = ViewRender(rgb=torch.zeros(1, 4, 3), depth=torch.tensor([[3.0, 3.0, 8.0, 0.0]]),
                        opacity=torch.tensor([[1.0, 0.5, 1.0, 0.0]]))
    mist = mist_pass(render, start=2.0, depth=4.0, exponent=2.0)
    assert torch.allclose(mist, torch.tensor([[0.0625, 1 - 0.5 * (1 - 0.0625), 1.0, 1.0]]))  # ((3 - 2) / 4)^2, ..., empty: 1
    step = mist_pass(render, start=5.0, depth=0.0, exponent=1.0)  # no depth: all or nothing at the start
    assert torch.equal(step, torch.tensor([[0.0, 0.5, 1.0, 1.0]]))


@pytest.mark.parametrize("falloff, exponent", [("QUADRATIC", 2.0), ("LINEAR", 1.0), ("INVERSE_QUADRATIC", 0.5)])
def test_the_mist_pass_is_the_one_cycles_renders(tmp_path, falloff, exponent):
    """Cycles renders a ground plane's Mist pass, the horizon in view; the same camera's rays (as the
    INS engine sends it) meet the same plane, and `mist_pass` on their distances gives Cycles' values:
    the distance from the camera, not along its axis, each falloff's power, and 1 over the sky."""
    bpy = pytest.importorskip("bpy")
    from ins_blender.capture import camera_intrinsics, camera_to_world
    from ins_blender.world import MIST_EXPONENTS
    from ins_core.data.exr import read_exr_channels

    assert MIST_EXPONENTS[falloff] == exponent  # what the engine sends for the world's falloff
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples, scene.cycles.filter_width = 1, 0.01  # each pixel's centre, as the field's rays
    scene.render.resolution_x, scene.render.resolution_y = 32, 24
    bpy.ops.mesh.primitive_plane_add(size=100.0)
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    camera.location, camera.rotation_euler = (0.0, -6.0, 3.0), (math.radians(75), 0.0, math.radians(10))
    camera.data.lens = 20.0  # wide: a corner's ray is a third longer than its axial distance
    scene.camera = camera
    scene.world = bpy.data.worlds.new("World")
    scene.world.mist_settings.start, scene.world.mist_settings.depth, scene.world.mist_settings.falloff = 2.0, 9.0, falloff
    bpy.context.view_layer.use_pass_mist = True
    settings = scene.render.image_settings
    if "media_type" in settings.bl_rna.properties:  # Blender 5: the container first, then the format
        settings.media_type = "MULTI_LAYER_IMAGE"
    settings.file_format, settings.exr_codec, settings.color_depth = "OPEN_EXR_MULTILAYER", "NONE", "32"
    bpy.ops.render.render()
    bpy.data.images["Render Result"].save_render(str(tmp_path / "mist.exr"))
    cycles = torch.from_numpy(read_exr_channels(tmp_path / "mist.exr")[f"{bpy.context.view_layer.name}.Mist.Z"].copy())

    k = camera_intrinsics(camera.data, 32, 24)
    intrinsics = torch.tensor([k.fl_x, k.fl_y, k.cx, k.cy])
    origins, directions = rays_from_pixels(image_pixels(32, 24), torch.tensor(camera_to_world(camera.matrix_world)), intrinsics)
    distance = -origins[:, 2] / directions[:, 2]
    hits = (directions[:, 2] < 0) & ((origins + directions * distance[:, None])[:, :2].abs() <= 50.0).all(dim=-1)
    render = ViewRender(rgb=torch.zeros(24, 32, 3), depth=torch.where(hits, distance, 0.0).view(24, 32), opacity=hits.float().view(24, 32))
    assert 0.2 < hits.float().mean() < 0.9  # ground and sky both in view
    assert torch.allclose(mist_pass(render, 2.0, 9.0, exponent), cycles, atol=2e-4)
