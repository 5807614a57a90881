"""What the render engine's passes are made of: the field over the world's colour, the Z, Mist and
Normal passes."""

import math

import pytest
import torch

from ins_core.data.cameras import Intrinsics, camera_directions, image_pixels, look_at, project_points, rays_from_pixels
from ins_core.protocol import NO_DEPTH
from ins_core.render.normals import field_normals, model_normals, normal_pass
from ins_core.render.passes import linear_to_srgb, mist_pass, over_background, srgb_to_linear, z_pass
from ins_core.render.views import ViewRender, render_view
from ins_core.train.scene_models import SdfModel
from render_result import render_passes


SIZE = (32, 24)


def _cycles_scene(bpy, location, rotation, lens):
    """An empty scene for Cycles at SIZE, one sample at each pixel's centre (as the field's rays),
    seen by a camera at `location` turned by `rotation` (degrees, XYZ Euler)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples, scene.cycles.filter_width = 1, 0.01
    scene.render.resolution_x, scene.render.resolution_y = SIZE
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    camera.location, camera.rotation_euler = location, [math.radians(a) for a in rotation]
    camera.data.lens = lens
    scene.camera = camera
    return scene


def _camera_rays(camera):
    """The camera's pixel rays as the INS engine sends them: (origins, directions [H*W, 3], c2w, intrinsics)."""
    from ins_blender.camera_model import camera_intrinsics, camera_to_world

    k = camera_intrinsics(camera.data, *SIZE)
    intrinsics = torch.tensor([k.fl_x, k.fl_y, k.cx, k.cy])
    c2w = torch.tensor(camera_to_world(camera.matrix_world))
    return (*rays_from_pixels(image_pixels(*SIZE), c2w, intrinsics), c2w, intrinsics)


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
    from ins_blender.world import MIST_EXPONENTS

    assert MIST_EXPONENTS[falloff] == exponent  # what the engine sends for the world's falloff
    scene = _cycles_scene(bpy, location=(0.0, -6.0, 3.0), rotation=(75, 0, 10), lens=20.0)  # wide: a corner's ray is a third longer than its axis
    bpy.ops.mesh.primitive_plane_add(size=100.0)
    scene.world = bpy.data.worlds.new("World")
    scene.world.mist_settings.start, scene.world.mist_settings.depth, scene.world.mist_settings.falloff = 2.0, 9.0, falloff
    bpy.context.view_layer.use_pass_mist = True
    cycles = torch.from_numpy(render_passes(bpy, tmp_path)["Mist"])
    origins, directions, _, _ = _camera_rays(scene.camera)
    distance = -origins[:, 2] / directions[:, 2]
    hits = (directions[:, 2] < 0) & ((origins + directions * distance[:, None])[:, :2].abs() <= 50.0).all(dim=-1)
    render = ViewRender(rgb=torch.zeros(24, 32, 3), depth=torch.where(hits, distance, 0.0).view(24, 32), opacity=hits.float().view(24, 32))
    assert 0.2 < hits.float().mean() < 0.9  # ground and sky both in view
    assert torch.allclose(mist_pass(render, 2.0, 9.0, exponent), cycles, atol=2e-4)


CENTRE, RADIUS = torch.tensor([0.3, 0.2, 0.5]), 1.0


class _SphereSdf:
    """A sphere as an SDF field would hold it."""

    def sdf(self, points):
        return (points - CENTRE).norm(dim=-1) - RADIUS


class _SphereDensity:
    """A sphere as a NeRF field would hold it: raw density rising into the object, and a feature."""

    def density(self, points):
        return 40.0 * (RADIUS - (points - CENTRE).norm(dim=-1)), torch.zeros(points.shape[0], 4)


@pytest.mark.parametrize("field", [_SphereSdf(), _SphereDensity()], ids=["sdf", "nerf"])
def test_the_normal_pass_is_the_one_cycles_renders(tmp_path, field):
    """Cycles renders a smooth sphere's Normal pass from a turned camera; the same camera's rays meet
    the same sphere, and `normal_pass` with the field's differenced normals gives Cycles' values:
    world space (not the camera's), outward, zero where nothing is."""
    bpy = pytest.importorskip("bpy")
    scene = _cycles_scene(bpy, location=(4.0, -3.5, 2.5), rotation=(65, 5, 47), lens=60.0)
    bpy.ops.mesh.primitive_uv_sphere_add(segments=128, ring_count=64, radius=RADIUS, location=CENTRE.tolist())
    bpy.ops.object.shade_smooth()
    bpy.context.view_layer.use_pass_normal = True
    cycles = torch.from_numpy(render_passes(bpy, tmp_path)["Normal"])

    origins, directions, c2w, intrinsics = _camera_rays(scene.camera)
    to_centre = CENTRE - origins
    along = (to_centre * directions).sum(-1)
    miss = (to_centre.norm(dim=-1) ** 2 - along ** 2).clamp_min(0)  # squared distance of the ray from the centre
    hits = miss < RADIUS ** 2
    distance = along - (RADIUS ** 2 - miss).clamp_min(0).sqrt()
    render = ViewRender(rgb=torch.zeros(24, 32, 3), depth=torch.where(hits, distance, 0.0).view(24, 32), opacity=hits.float().view(24, 32))
    ours = normal_pass(render, c2w, intrinsics, lambda points: field_normals(field, points, step=0.02))

    assert 0.2 < hits.float().mean() < 0.8
    assert (ours.view(-1, 3)[~hits] == 0).all() and (cycles.reshape(-1, 3)[~hits].abs() < 1e-6).all()
    # Away from the silhouette (where the mesh's polygons and the sphere part), within a degree or so.
    facing = hits & (miss < (0.9 * RADIUS) ** 2)
    assert facing.sum() > 50
    assert (ours.view(-1, 3)[facing] - cycles.reshape(-1, 3)[facing]).abs().max() < 0.03
    assert cycles.reshape(-1, 3)[facing].std(dim=0).min() > 0.1  # the normals vary over all three axes


def test_the_normal_pass_faces_the_camera_and_weighs_by_opacity():
    """A plane's normal pointing away from the camera is turned toward it (as Cycles turns a back
    face's); a half-covered pixel holds half a normal, an empty one none."""
    c2w, intrinsics = look_at(torch.tensor([0.0, 0.0, 3.0]), torch.zeros(3)), Intrinsics.from_fov(0.5, 3, 1).as_tensor()
    render = ViewRender(rgb=torch.zeros(1, 3, 3), depth=torch.full((1, 3), 3.0), opacity=torch.tensor([[1.0, 0.5, 0.0]]))
    away = lambda points: torch.tensor([0.0, 0.0, -1.0]).expand_as(points)  # noqa: E731 - the plane z = 0 seen from above, normals down
    normals = normal_pass(render, c2w, intrinsics, away)
    assert torch.allclose(normals[0, 0], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(normals[0, 1], torch.tensor([0.0, 0.0, 0.5]))
    assert torch.equal(normals[0, 2], torch.zeros(3))


def test_a_models_normals_are_those_of_its_surface():
    """An SDF model at its initial sphere about the box's centre: at points on its zero level, the
    differenced normals agree with the SDF's exact gradient and point away from the centre."""
    torch.manual_seed(0)
    aabb = torch.tensor([[-0.6, -0.6, -0.6], [0.6, 0.6, 0.6]])
    model = SdfModel(aabb, {"n_levels": 4, "log2_table_size": 10, "max_resolution": 32, "hidden_dim": 32}, n_samples=64).eval()
    directions = torch.nn.functional.normalize(torch.randn(400, 3), dim=-1)
    with torch.no_grad():  # the zero level along each direction that leaves the surface inside the box, by bisection
        assert (model.field.sdf(torch.zeros(1, 3)) < 0).all()
        directions = directions[model.field.sdf(directions * 0.6) > 0]
        assert len(directions) > 200
        inside, outside = torch.zeros(len(directions)), torch.full((len(directions),), 0.6)
        for _ in range(30):
            middle = 0.5 * (inside + outside)
            out = model.field.sdf(directions * middle[:, None]) > 0
            inside, outside = torch.where(out, inside, middle), torch.where(out, middle, outside)
    points = directions * inside[:, None]
    normals = model_normals(model)(points)
    exact = torch.nn.functional.normalize(model.field.sdf_with_gradient(points, create_graph=False)[2], dim=-1)
    assert torch.allclose(normals.norm(dim=-1), torch.ones(len(points)), atol=1e-5)
    assert (normals * exact).sum(-1).min() > 0.95
    assert (normals * directions).sum(-1).min() > 0.5  # outward (the untrained sphere is lumpy: its exact normals too)


def test_an_orthographic_cameras_depth_and_mist_are_the_ones_cycles_renders(tmp_path):
    """Cycles renders a ground plane through an orthographic camera (shifted, the frame wider than
    tall): the rays the INS engine casts for it (parallel, from the camera's plane, at the
    intrinsics `camera_intrinsics` gives) meet the plane where Cycles' do: the same Z pass and the
    same Mist pass."""
    bpy = pytest.importorskip("bpy")
    scene = _cycles_scene(bpy, location=(1.0, -6.0, 4.0), rotation=(60, 0, 15), lens=50.0)
    camera = scene.camera.data
    camera.type, camera.ortho_scale, camera.shift_x, camera.shift_y = "ORTHO", 30.0, 0.1, -0.05
    bpy.ops.mesh.primitive_plane_add(size=40.0)
    scene.world = bpy.data.worlds.new("World")
    scene.world.mist_settings.start, scene.world.mist_settings.depth, scene.world.mist_settings.falloff = 2.0, 20.0, "LINEAR"
    bpy.context.view_layer.use_pass_z = bpy.context.view_layer.use_pass_mist = True
    passes = render_passes(bpy, tmp_path)

    from ins_blender.camera_model import camera_intrinsics, camera_to_world
    k = camera_intrinsics(camera, *SIZE)
    intrinsics = torch.tensor([k.fl_x, k.fl_y, k.cx, k.cy])
    c2w = torch.tensor(camera_to_world(scene.camera.matrix_world))
    origins, directions = rays_from_pixels(image_pixels(*SIZE), c2w, intrinsics, orthographic=True)
    distance = -origins[:, 2] / directions[:, 2]
    hits = (distance > 0) & ((origins + directions * distance[:, None])[:, :2].abs() <= 20.0).all(dim=-1)
    render = ViewRender(rgb=torch.zeros(24, 32, 3), depth=torch.where(hits, distance, 0.0).view(24, 32),
                        opacity=hits.float().view(24, 32), orthographic=True)
    assert 0.2 < hits.float().mean() < 0.9  # the plane's edge in view
    assert torch.allclose(z_pass(render, intrinsics, NO_DEPTH), torch.from_numpy(passes["Depth"]), rtol=1e-4)
    assert torch.allclose(mist_pass(render, 2.0, 20.0, 1.0), torch.from_numpy(passes["Mist"]), atol=2e-4)
