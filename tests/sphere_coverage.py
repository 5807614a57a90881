"""A unit sphere at the origin as Cycles renders its coverage (film transparent, 1024 samples a
pixel, no pixel filter) and as rays cast by the project's camera maths meet it: the tests of the
engine's depth of field and motion blur compare the two."""

from __future__ import annotations

from pathlib import Path

import torch

from render_result import render_passes

SIZE = (32, 24)
CENTRE, RADIUS = torch.tensor([0.0, 0.0, 0.0]), 1.0


def sphere_hits(origins: torch.Tensor, directions: torch.Tensor, centre: torch.Tensor = CENTRE) -> torch.Tensor:
    """[N] bool: which rays (unit directions) meet the sphere (at `centre`) in front of them."""
    to_centre = centre - origins
    along = (to_centre * directions).sum(-1)
    return (along > 0) & ((to_centre.norm(dim=-1) ** 2 - along ** 2) < RADIUS ** 2)


def cycles_sphere_scene(bpy):
    """An empty scene for Cycles at SIZE with the sphere and a camera (the scene's, not placed yet)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine, scene.render.film_transparent = "CYCLES", True
    scene.cycles.samples, scene.cycles.filter_width, scene.cycles.use_denoising = 1024, 0.01, False
    scene.render.resolution_x, scene.render.resolution_y = SIZE
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    bpy.ops.mesh.primitive_uv_sphere_add(segments=128, ring_count=64, radius=RADIUS, location=CENTRE.tolist())
    return scene, camera


def cycles_coverage(bpy, tmp_path: Path) -> torch.Tensor:
    """[H, W] the sphere's coverage in Cycles' render of the current scene (its alpha)."""
    return torch.from_numpy(render_passes(bpy, tmp_path)["Combined"][..., 3].copy())


def camera_tensors(camera) -> tuple[torch.Tensor, torch.Tensor]:
    """(camera-to-world [4, 4], intrinsics [4]) of a Blender camera at SIZE, as the INS engine sends them."""
    from ins_blender.camera_model import camera_intrinsics, camera_to_world

    k = camera_intrinsics(camera.data, *SIZE)
    return torch.tensor(camera_to_world(camera.matrix_world)), torch.tensor([k.fl_x, k.fl_y, k.cx, k.cy])


def assert_like_cycles(ours: torch.Tensor, cycles: torch.Tensor, held: torch.Tensor) -> None:
    """Ours is Cycles' coverage within 0.015 on average (0.1 anywhere) where a wide blur shows, and
    at least three times nearer it than `held`, the sharp picture without the effect."""
    blurred = ((cycles > 0.05) & (cycles < 0.95)).float().mean()
    assert blurred > 0.05, blurred  # a wide blur: the comparison can tell the effect from none
    error = (ours - cycles).abs()
    assert error.mean() < 0.015 and error.max() < 0.1, (float(error.mean()), float(error.max()))
    assert (held - cycles).abs().mean() > 3 * error.mean()
