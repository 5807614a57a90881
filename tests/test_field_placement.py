"""The field where its object puts it (INS > Neural Render > Placement), against Cycles: a sphere's
mesh moved, turned and scaled by its object renders in Cycles as the field does through the
engine's placement (ins_blender/placement.py, ins_core/data/placement.py), the object's motion over
the shutter included."""

import math

import pytest
import torch

from ins_core.data.cameras import image_pixels, rays_from_pixels
from ins_core.data.motion import poses_at
from ins_core.data.placement import Placement

from sphere_coverage import SIZE, camera_tensors, cycles_coverage, cycles_sphere_scene, sphere_hits

# The field: the unit sphere, off its object's origin (so the object's turn moves it).
FIELD_CENTRE = torch.tensor([0.6, 0.0, 0.0])


def _placed_sphere_scene(bpy):
    from mathutils import Euler, Matrix

    scene, camera = cycles_sphere_scene(bpy)
    sphere = bpy.data.objects["Sphere"]
    sphere.data.transform(Matrix.Translation(FIELD_CENTRE.tolist()))
    sphere.location, sphere.rotation_euler, sphere.scale = (0.4, 0.7, 0.3), Euler((0.2, 0.4, 2.4)), (0.7, 0.7, 0.7)
    camera.location, camera.rotation_euler = (0.3, -6.0, 0.5), (math.radians(86), 0.0, math.radians(3))
    bpy.context.view_layer.update()
    return scene, camera, sphere


def _placement(sphere) -> Placement:
    from ins_blender.placement import checked_placement, world_matrix

    return Placement.from_matrix(checked_placement(sphere.name, world_matrix(sphere)))


def _error(ours: torch.Tensor, cycles: torch.Tensor) -> tuple[float, float]:
    error = (ours - cycles).abs()
    return float(error.mean()), float(error.max())


@pytest.mark.parametrize("orthographic", [False, True], ids=["perspective", "orthographic"])
def test_the_placed_field_covers_what_cycles_renders_of_the_placed_mesh(tmp_path, orthographic):
    """The field's rays through the pixels' centres (as Cycles samples them with no pixel filter),
    taken into its frame by the sphere's object's placement, meet the unit sphere where Cycles'
    render of the object shows it; left where it was captured, they would not."""
    bpy = pytest.importorskip("bpy")
    scene, camera, sphere = _placed_sphere_scene(bpy)
    if orthographic:
        camera.data.type, camera.data.ortho_scale = "ORTHO", 3.5
    cycles = cycles_coverage(bpy, tmp_path)

    placement = _placement(sphere)
    c2w, intrinsics = camera_tensors(camera)

    def coverage(pose: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return sphere_hits(*rays_from_pixels(image_pixels(*SIZE), pose, k, orthographic), FIELD_CENTRE).float().view(SIZE[1], SIZE[0])

    ours = coverage(placement.pose_in_field(c2w), placement.intrinsics_in_field(intrinsics, orthographic))
    where_captured = coverage(c2w, intrinsics)
    assert 0.05 < float(cycles.mean()) < 0.6  # the sphere in view, not filling it
    mean, _ = _error(ours, cycles)
    assert mean < 0.002, mean  # a pixel at the edge of Cycles' polygonal sphere, at most
    assert _error(where_captured, cycles)[0] > 0.05


def test_the_objects_motion_over_the_shutter_blurs_the_field_as_cycles_blurs_the_mesh(tmp_path):
    """A still camera, the sphere's object sliding and turning on Bezier keys during the shutter:
    Cycles' object motion blur, and the camera's poses relative to the object that the engine sends
    (each ray at its own time), cover the same pixels as much."""
    bpy = pytest.importorskip("bpy")
    from ins_blender.motion_blur import camera_motion

    scene, camera, sphere = _placed_sphere_scene(bpy)
    scene.render.use_motion_blur, scene.render.motion_blur_shutter = True, 1.0
    for frame, x, turn in ((0, -0.5, 2.2), (2, 1.1, 2.6)):
        sphere.location.x, sphere.rotation_euler.z = x, turn
        sphere.keyframe_insert("location", frame=frame)
        sphere.keyframe_insert("rotation_euler", frame=frame)
    scene.frame_set(1)
    cycles = cycles_coverage(bpy, tmp_path)

    scene.frame_set(1)
    frame_set = lambda frame, subframe: scene.frame_set(frame, subframe=subframe)  # noqa: E731 - as RenderEngine.frame_set
    poses = camera_motion(scene, camera, frame_set, None, sphere)
    assert poses is not None  # the camera holds still; the field's object does not
    placement = _placement(sphere)
    steps = placement.pose_in_field(torch.tensor(poses))
    pixels, n = image_pixels(*SIZE), 256
    coverage = torch.zeros(pixels.shape[0])
    for i in range(n):
        pose = poses_at(steps, torch.full((pixels.shape[0],), (i + 0.5) / n))
        coverage += sphere_hits(*rays_from_pixels(pixels, pose, camera_tensors(camera)[1]), FIELD_CENTRE).float()
    ours = (coverage / n).view(SIZE[1], SIZE[0])
    held = sphere_hits(*rays_from_pixels(pixels, placement.pose_in_field(camera_tensors(camera)[0]), camera_tensors(camera)[1]),
                       FIELD_CENTRE).float().view(SIZE[1], SIZE[0])
    blurred = float(((cycles > 0.05) & (cycles < 0.95)).float().mean())
    mean, worst = _error(ours, cycles)
    assert blurred > 0.05 and mean < 0.005 and worst < 0.1, (blurred, mean, worst)
    assert _error(held, cycles)[0] > 3 * mean
