"""Motion blur: a camera moving during the shutter, as the INS engine takes it from Blender
(ins_blender/motion_blur.py) and casts its rays (ins_core/data/motion.py), against Cycles."""

import math

import pytest
import torch

from ins_core.data.cameras import image_pixels, rays_from_pixels
from ins_core.data.motion import poses_at, shutter_samples

from sphere_coverage import SIZE, assert_like_cycles, camera_tensors, cycles_coverage, cycles_sphere_scene, sphere_hits


def _turn(angle: float, axis: int) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    m = torch.eye(4, dtype=torch.float64)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def test_poses_between_the_steps_move_and_turn_evenly():
    start = _turn(0.2, 2)
    start[:3, 3] = torch.tensor([1.0, 0.0, 0.0])
    end = _turn(1.0, 2) @ _turn(0.4, 0)
    end[:3, 3] = torch.tensor([3.0, 2.0, 0.0])
    steps = torch.stack([start, end]).float()
    ends = poses_at(steps, torch.tensor([0.0, 1.0]))
    assert torch.allclose(ends, steps, atol=1e-5)
    middle = poses_at(steps, torch.tensor([0.5]))[0]
    assert torch.allclose(middle[:3, 3], torch.tensor([2.0, 1.0, 0.0]), atol=1e-6)
    assert torch.allclose(middle[:3, :3] @ middle[:3, :3].T, torch.eye(3), atol=1e-5)  # still a rotation
    # half way in angle: the turn from the start to the middle equals the one from the middle to the end
    first = middle[:3, :3].double() @ start[:3, :3].T
    second = end[:3, :3] @ middle[:3, :3].double().T
    assert torch.allclose(first, second, atol=1e-5)
    times = shutter_samples(4, 1000)
    quarters = [torch.unique((t * 4).floor()).tolist() for t in times]
    assert all(len(q) == 1 for q in quarters) and sorted(q[0] for q in quarters) == [0, 1, 2, 3]  # each ray its own quarter
    assert float(times[0].std()) > 0.05  # a different time in each pixel


@pytest.mark.parametrize("position", ["CENTER", "START"])
def test_the_motion_blur_is_the_one_cycles_renders(tmp_path, position):
    """Cycles renders a sphere's coverage seen by a camera sliding and turning during the shutter
    (1024 samples a pixel, no pixel filter); the poses the engine reads over the shutter, each ray
    at its own time, cover the same pixels as much, where a camera held at the frame would not."""
    bpy = pytest.importorskip("bpy")
    from ins_blender.motion_blur import camera_motion

    scene, camera = cycles_sphere_scene(bpy)
    scene.render.use_motion_blur, scene.render.motion_blur_shutter, scene.render.motion_blur_position = True, 1.0, position
    for frame, x, turn in ((0, -0.9, -4.0), (2, 0.9, 4.0)):  # sliding and turning (Bezier keys: a curved path)
        camera.location, camera.rotation_euler = (x, -6.0, 0.3), (math.radians(88), 0.0, math.radians(turn))
        camera.keyframe_insert("location", frame=frame)
        camera.keyframe_insert("rotation_euler", frame=frame)
    scene.frame_set(1)
    cycles = cycles_coverage(bpy, tmp_path)

    scene.frame_set(1)
    frame_set = lambda frame, subframe: scene.frame_set(frame, subframe=subframe)  # noqa: E731 - what RenderEngine.frame_set does
    poses = camera_motion(scene, camera, frame_set)
    assert poses is not None and len(poses) == 3
    still, intrinsics = camera_tensors(camera)
    pixels, steps, n = image_pixels(*SIZE), torch.tensor(poses), 256
    coverage = torch.zeros(pixels.shape[0])
    for i in range(n):
        pose = poses_at(steps, torch.full((pixels.shape[0],), (i + 0.5) / n))
        coverage += sphere_hits(*rays_from_pixels(pixels, pose, intrinsics)).float()
    ours = (coverage / n).view(SIZE[1], SIZE[0])
    held = sphere_hits(*rays_from_pixels(pixels, still, intrinsics)).float().view(SIZE[1], SIZE[0])
    assert_like_cycles(ours, cycles, held)
    # A camera that holds still during the shutter sends no motion (no work for nothing).
    scene.frame_set(5)
    assert camera_motion(scene, camera, frame_set) is None
