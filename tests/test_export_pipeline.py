"""Export, end to end: field callables -> glb + obj + mtl + png + npz, progress, options, refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from ins_core.errors import InputError
from ins_core.export import export_mesh
from ins_core.export.marching_cubes import default_density_level
from test_export_marching_cubes import BOX, RADIUS, density_radius, radii, sphere_density, sphere_sdf


def red(points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
    return torch.tensor([1.0, 0.0, 0.0]).expand(len(points), 3)


def test_sdf_sphere_exports_every_file_with_a_red_texture(tmp_path):
    events = []
    result = export_mesh(sphere_sdf, red, BOX, tmp_path / "out", "sdf", resolution=48, texture_size=128,
                         progress=lambda stage, fraction: events.append((stage, fraction)))
    for path in (result.glb, result.obj, result.mtl, result.npz, result.texture):
        assert path.is_file() and path.parent == tmp_path / "out"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mesh.glb", "mesh.mtl", "mesh.npz", "mesh.obj", "texture.png"]
    texture = np.asarray(Image.open(result.texture))
    assert texture.shape == (128, 128, 3) and (texture == [255, 0, 0]).all()

    with np.load(result.npz) as data:
        vertices, faces, uvs = data["vertices"], data["faces"], data["uvs"]
    assert result.n_faces == len(faces) and result.n_vertices == len(vertices)
    assert (uvs >= 0).all() and (uvs <= 1).all()
    # Seams split vertices for the UVs; merged again by position the mesh is closed and points out.
    welded = trimesh.Trimesh(vertices, faces, process=True)
    assert welded.is_watertight and welded.volume > 0
    assert abs(radii(vertices).mean() - RADIUS) < 0.01
    assert len(trimesh.load(result.glb, process=False, force="mesh").vertices) == len(vertices)

    stages = list(dict.fromkeys(stage for stage, _ in events))
    assert stages == ["grid", "marching_cubes", "cleanup", "uv", "bake", "write"]
    for stage in stages:  # each stage runs once, from 0 up to 1
        fractions = [f for s, f in events if s == stage]
        assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert [s for s, _ in events] == sorted((s for s, _ in events), key=stages.index)
    assert set(result.timings) == set(stages) and all(t >= 0 for t in result.timings.values())
    assert result.to_json()["n_faces"] == result.n_faces


def test_density_sphere_with_vertex_colours_and_a_face_budget(tmp_path):
    result = export_mesh(sphere_density, red, BOX, tmp_path, "density", resolution=40,
                         vertex_colors_only=True, target_faces=1500)
    assert result.texture is None and not (tmp_path / "texture.png").exists()
    assert result.level == pytest.approx(default_density_level(BOX))
    with np.load(result.npz) as data:
        assert "uvs" not in data.files
        assert np.allclose(data["vertex_colors"], [1.0, 0.0, 0.0])
        vertices, faces = data["vertices"], data["faces"]
    assert len(faces) <= 1500
    assert trimesh.Trimesh(vertices, faces, process=False).volume > 0
    assert abs(radii(vertices).mean() - density_radius(result.level)) < 0.03


def test_floaters_go_unless_asked_to_keep_everything(tmp_path):
    def sphere_and_speck(points: torch.Tensor) -> torch.Tensor:
        speck = (points - torch.tensor([0.85, 0.85, 0.85])).norm(dim=-1) - 0.06
        return torch.minimum(sphere_sdf(points), speck)

    kept = export_mesh(sphere_and_speck, red, BOX, tmp_path / "a", "sdf", resolution=32, vertex_colors_only=True)
    everything = export_mesh(sphere_and_speck, red, BOX, tmp_path / "b", "sdf", resolution=32,
                             vertex_colors_only=True, keep_components=0)
    assert kept.n_faces < everything.n_faces
    with np.load(kept.npz) as data:
        assert radii(data["vertices"]).max() < RADIUS + 0.05


def test_refusals_come_before_any_work(tmp_path):
    calls = []

    def counting(points: torch.Tensor) -> torch.Tensor:
        calls.append(len(points))
        return sphere_sdf(points)

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="output folder"):
        export_mesh(counting, red, BOX, blocker / "out", "sdf", resolution=16)
    with pytest.raises(InputError, match=r"needs about 1\.2 GB .* 100 MB is allowed; use resolution 208 or less"):
        export_mesh(counting, red, BOX, tmp_path / "out", "sdf", resolution=512, memory_budget=10**8)
    with pytest.raises(InputError, match="'density' \\(NeRF\\) or 'sdf'"):
        export_mesh(counting, red, BOX, tmp_path / "out", "occupancy", resolution=16)
    with pytest.raises(InputError, match="smoothing iterations must be 0 or more, not -3"):
        export_mesh(counting, red, BOX, tmp_path / "out", "sdf", resolution=16, smooth_iterations=-3)
    assert calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    with pytest.raises(InputError, match="no surface at level 100"):
        export_mesh(sphere_density, red, BOX, tmp_path / "out", "density", resolution=16, level=100.0)
    assert not (tmp_path / "out").exists()


def test_several_view_directions_reach_the_colour_function(tmp_path):
    seen = []

    def recording(points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
        seen.append(view_dirs)
        return red(points, view_dirs)

    export_mesh(sphere_sdf, recording, BOX, tmp_path, "sdf", resolution=16, texture_size=32, n_directions=3)
    dirs = torch.cat(seen)
    assert len(dirs) % 3 == 0
    angles = torch.rad2deg(torch.acos(torch.clamp((dirs[: len(dirs) // 3] * dirs[len(dirs) // 3 :][: len(dirs) // 3]).sum(-1), -1, 1)))
    assert torch.allclose(angles, torch.full_like(angles, 30.0), atol=0.1)
    assert math.isclose(float(dirs.norm(dim=-1).mean()), 1.0, rel_tol=1e-5)
