"""Export, what the cameras saw: faces no training camera sees are left out of the mesh.

The cameras here look at an analytic sphere: rings of cameras above its equator, which never see
its underside nor the pocket sealed inside it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ins_core.data.cameras import Cameras, image_pixels, look_at, rays_from_pixels
from ins_core.errors import InputError
from ins_core.export import export_mesh
from ins_core.export.visibility import distance_spread, seen_points
from ins_core.render.mesh_raster import depth_buffer
from test_export_marching_cubes import BOX, CENTRE, RADIUS, hollow_sphere_sdf, radii

SIZE = 160
INTRINSICS = torch.tensor([200.0, 200.0, SIZE / 2, SIZE / 2])  # the sphere 80 pixels across


def sphere_depth(c2w: torch.Tensor) -> torch.Tensor:
    """[H, W] depth along the viewing axis to the test sphere at each pixel centre, inf where its ray misses."""
    origins, directions = rays_from_pixels(image_pixels(SIZE, SIZE), c2w, INTRINSICS)
    to_centre = CENTRE - origins
    along = (to_centre * directions).sum(-1)
    gap2 = (to_centre * to_centre).sum(-1) - along**2
    hit = gap2 < RADIUS**2
    near = along - torch.sqrt((RADIUS**2 - gap2).clamp_min(0.0))
    along_axis = near * (directions * -c2w[:3, 2]).sum(-1)
    return torch.where(hit, along_axis, torch.full_like(near, math.inf)).view(SIZE, SIZE)


def cameras_above(elevations_deg=(20.0, 50.0, 80.0), per_ring: int = 8, distance: float = 3.0) -> Cameras:
    poses = []
    for elevation in elevations_deg:
        for k in range(per_ring):
            azimuth = 2 * math.pi * k / per_ring
            e = math.radians(elevation)
            eye = CENTRE + distance * torch.tensor([math.cos(e) * math.cos(azimuth), math.cos(e) * math.sin(azimuth), math.sin(e)])
            poses.append(look_at(eye, CENTRE))
    c2w = torch.stack(poses)
    return Cameras(c2w, INTRINSICS.expand(len(c2w), 4).clone(), SIZE, SIZE)


def test_a_point_is_seen_where_it_lies_on_or_in_front_of_the_surface_a_camera_shows():
    camera = cameras_above(elevations_deg=(0.0,), per_ring=1)  # one camera on +x, looking at the sphere
    c2w, intrinsics = camera.c2w[0], camera.intrinsics[0]
    depth = sphere_depth(c2w)
    eye = c2w[:3, 3]
    towards = (CENTRE - eye) / (CENTRE - eye).norm()
    surface = float(depth[SIZE // 2, SIZE // 2])
    assert surface == pytest.approx(3.0 - RADIUS, abs=0.02)
    points = torch.stack([
        eye + towards * surface,  # the surface the camera shows
        eye + towards * (surface - 0.3),  # between the camera and the sphere
        eye + towards * (surface + 0.3),  # inside the sphere, behind what the camera shows
        CENTRE + towards * RADIUS,  # the sphere's far side
        eye - towards * 1.0,  # behind the camera
        CENTRE + torch.tensor([0.0, 0.0, 0.95]),  # beside the sphere, where the camera sees through
        CENTRE + torch.tensor([0.0, 3.0, 0.0]),  # outside the camera's image
    ])
    assert seen_points(points, c2w, intrinsics, depth, tolerance=0.05).tolist() == [True, True, False, False, False, True, False]
    assert seen_points(points[2:3], c2w, intrinsics, depth, tolerance=0.35).item()  # the tolerance reaches behind the surface


def test_a_depth_buffer_holds_the_nearest_face_at_each_pixel():
    camera = cameras_above(elevations_deg=(0.0,), per_ring=1)
    c2w, intrinsics = camera.c2w[0], camera.intrinsics[0]
    right, up, back, eye = c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3]

    def square(depth: float, half: float) -> torch.Tensor:
        centre = eye - back * depth
        return torch.stack([centre + (a * right + b * up) * half for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))])

    vertices = torch.cat([square(2.0, 0.5), square(1.5, 0.1)])  # a small square in front of a large one
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    depth = depth_buffer(vertices, faces, c2w, intrinsics, SIZE, SIZE)
    assert depth[SIZE // 2, SIZE // 2] == pytest.approx(1.5)
    assert depth[SIZE // 2, SIZE // 2 + 35] == pytest.approx(2.0)  # beside the small square: 0.18 out at 2 units
    assert torch.isinf(depth[0, 0])
    assert torch.isfinite(depth).sum() == pytest.approx((0.5 / 2.0 * 200 * 2) ** 2, rel=0.05)


def test_a_pixels_depth_spread_follows_slopes_not_edges():
    slope = torch.arange(6.0).view(1, 6).expand(5, 6) * 0.2 + 2.0  # a surface tilted along the rows
    assert torch.allclose(distance_spread(slope), torch.full((5, 6), 0.2))
    step = torch.full((5, 6), 2.0)
    step[:, 3:] = 5.0  # an object's edge in front of a farther one: no pixel spans the gap
    assert distance_spread(step).max() == 0.0
    silhouette = slope.clone()
    silhouette[:, 4:] = float("inf")  # the sky beside the surface: its slope still counts
    assert torch.allclose(distance_spread(silhouette)[:, :4], torch.full((5, 4), 0.2))


def test_hidden_shells_and_unseen_undersides_are_left_out_and_what_was_seen_stays_whole(tmp_path):
    cameras = cameras_above()
    # Unsmoothed, so that the faces of the two meshes can be matched by their centres.
    everything = export_mesh(hollow_sphere_sdf, red, BOX, tmp_path / "all", "sdf", resolution=96, vertex_colors_only=True,
                             keep_components=0, smooth_iterations=0)
    seen = export_mesh(hollow_sphere_sdf, red, BOX, tmp_path / "seen", "sdf", resolution=96, vertex_colors_only=True,
                       keep_components=0, seen_by=cameras, smooth_iterations=0)
    assert everything.unseen_faces == 0 and seen.unseen_faces > 0
    assert seen.n_faces + seen.unseen_faces == everything.n_faces
    with np.load(everything.npz) as data:
        all_vertices, all_faces = data["vertices"], data["faces"]
    with np.load(seen.npz) as data:
        kept = data["vertices"]
    assert radii(kept).min() > RADIUS - 0.05  # the sealed pocket's wall went
    assert radii(all_vertices).min() < 0.4
    # Every outer face some camera looks at within 75 degrees of head-on stays, to a face.
    centres = all_vertices[all_faces].mean(axis=1)
    normals = (centres - CENTRE.numpy()) / np.linalg.norm(centres - CENTRE.numpy(), axis=1, keepdims=True)
    to_cameras = cameras.c2w[:, :3, 3].numpy()[None] - centres[:, None]
    facing = ((to_cameras / np.linalg.norm(to_cameras, axis=2, keepdims=True)) * normals[:, None]).sum(axis=2).max(axis=1)
    outer = radii(all_vertices)[all_faces].min(axis=1) > 0.5
    with np.load(seen.npz) as data:
        kept_centres = {tuple(np.round(c, 5)) for c in data["vertices"][data["faces"]].mean(axis=1)}
    watched = outer & (facing > math.cos(math.radians(75)))
    assert {tuple(np.round(c, 5)) for c in centres[watched]} <= kept_centres
    # Faces turned away from every camera (the underside) go (measured: all 2197 of them; a face with
    # one corner seen would stay, so a few along the edge of what the cameras see may).
    turned_away = outer & (facing < 0)
    kept_away = sum(tuple(np.round(c, 5)) in kept_centres for c in centres[turned_away])
    assert turned_away.sum() > 500 and kept_away < 0.05 * turned_away.sum(), (kept_away, turned_away.sum())


def test_a_surface_no_camera_sees_is_refused_with_the_way_out(tmp_path):
    cameras = cameras_above(elevations_deg=(50.0,), per_ring=2)
    away = cameras.c2w.clone()
    away[:, :3, 2] *= -1  # turned round: the cameras look away from the scene
    away[:, :3, 0] *= -1
    with pytest.raises(InputError, match=r"--keep-unseen"):
        export_mesh(hollow_sphere_sdf, red, BOX, tmp_path / "none", "sdf", resolution=32, vertex_colors_only=True,
                    seen_by=Cameras(away, cameras.intrinsics, SIZE, SIZE))
    assert not (tmp_path / "none" / "mesh.glb").exists()


def red(points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
    return torch.tensor([1.0, 0.0, 0.0]).expand(len(points), 3)
