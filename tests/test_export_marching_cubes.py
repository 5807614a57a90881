"""Export, geometry: grid sampling, marching cubes orientation and accuracy, refusals, clean-up.

Also holds the small analytic fields the other test_export_* files import (an SDF sphere and a
smooth density sphere), so every file checks against the same exact answers.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from ins_core.errors import InputError
from ins_core.export import cleanup, marching_cubes
from ins_core.export.marching_cubes import (
    BYTES_PER_SAMPLE,
    check_grid_fits,
    default_density_level,
    estimate_grid_bytes,
    extract_mesh,
    sample_grid,
)

BOX = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
RADIUS = 0.6
CENTRE = torch.tensor([0.05, -0.03, 0.02])  # off the grid's symmetry, so errors cannot cancel
DENSITY_INSIDE, DENSITY_SOFTNESS = 50.0, 0.02


def sphere_sdf(points: torch.Tensor) -> torch.Tensor:
    return (points - CENTRE).norm(dim=-1) - RADIUS


def sphere_density(points: torch.Tensor) -> torch.Tensor:
    """50 inside, 0 outside, a smooth sigmoid step of width ~0.02 at the radius."""
    return DENSITY_INSIDE * torch.sigmoid(-sphere_sdf(points) / DENSITY_SOFTNESS)


def density_radius(level: float) -> float:
    """Where sphere_density equals `level`: the exact level-set radius."""
    share = level / DENSITY_INSIDE
    return RADIUS + DENSITY_SOFTNESS * math.log(1.0 / share - 1.0)


def hollow_sphere_sdf(points: torch.Tensor, inner: float = 0.35) -> torch.Tensor:
    """The test sphere with a sealed spherical pocket of radius `inner` at its centre."""
    return torch.maximum(sphere_sdf(points), inner - (points - CENTRE).norm(dim=-1))


def sphere_mesh(resolution: int = 48) -> tuple[np.ndarray, np.ndarray]:
    grid = sample_grid(sphere_sdf, BOX, resolution)
    return extract_mesh(grid, BOX, 0.0, "sdf")


def radii(vertices: np.ndarray) -> np.ndarray:
    return np.linalg.norm(vertices - CENTRE.numpy(), axis=1)


def outward_fraction(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Share of faces whose normal points away from the sphere centre."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    return float(((mesh.face_normals * (mesh.triangles_center - CENTRE.numpy())).sum(axis=1) > 0).mean())


def test_sdf_sphere_is_closed_accurate_and_points_outwards():
    vertices, faces = sphere_mesh(48)
    assert vertices.dtype == np.float32 and faces.shape[1] == 3
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight
    assert mesh.volume > 0
    assert outward_fraction(vertices, faces) == 1.0
    cell = 2.0 / 47
    assert abs(radii(vertices).mean() - RADIUS) < 0.2 * cell
    assert radii(vertices).max() - radii(vertices).min() < 0.5 * cell
    assert mesh.volume == pytest.approx(4.0 / 3.0 * math.pi * RADIUS**3, rel=0.02)


def test_density_sphere_extracts_outwards_at_the_default_level():
    level = default_density_level(BOX)
    assert level == pytest.approx(math.log(2.0) * 64.0)  # 128 cells over a 2-unit box
    grid = sample_grid(sphere_density, BOX, 48)
    vertices, faces = extract_mesh(grid, BOX, level, "density")
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight and mesh.volume > 0
    assert outward_fraction(vertices, faces) == 1.0
    assert abs(radii(vertices).mean() - density_radius(level)) < 0.01


def test_matter_cut_by_the_box_is_capped_inside_the_box():
    box = np.array([[-1.0, -1.0, 0.0], [1.0, 1.0, 1.0]])  # cuts the sphere near its equator
    vertices, faces = extract_mesh(sample_grid(sphere_sdf, box, 32), box, 0.0, "sdf")
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight and mesh.volume > 0
    assert (vertices >= box[0] - 1e-6).all() and (vertices <= box[1] + 1e-6).all()
    assert np.isclose(vertices[:, 2], 0.0).sum() > 20  # the cap lies on the box face
    open_vertices, _ = extract_mesh(sample_grid(sphere_sdf, box, 32), box, 0.0, "sdf", close_boundary=False)
    assert not trimesh.Trimesh(open_vertices, _, process=False).is_watertight


def test_occupancy_skips_evaluation_and_fills_the_empty_value():
    seen = []

    def counting_sdf(points: torch.Tensor) -> torch.Tensor:
        seen.append(len(points))
        return sphere_sdf(points)

    def near_or_inside(points: torch.Tensor) -> torch.Tensor:
        return sphere_sdf(points) < 0.2

    grid = sample_grid(counting_sdf, BOX, 24, occupied_fn=near_or_inside, chunk=1000, empty_value=0.5)
    full = sample_grid(sphere_sdf, BOX, 24)
    occupied = full < 0.2
    assert sum(seen) == occupied.sum() < 24**3 / 2
    assert np.array_equal(grid[occupied], full[occupied])
    assert (grid[~occupied] == 0.5).all()
    # The surface lies in occupied space, so the mesh is the same.
    assert np.allclose(extract_mesh(grid, BOX, 0.0, "sdf")[0], extract_mesh(full, BOX, 0.0, "sdf")[0], atol=1e-6)


def test_non_finite_values_become_empty():
    def bad(points: torch.Tensor) -> torch.Tensor:
        values = sphere_sdf(points)
        values[::7] = float("nan")
        return values

    grid = sample_grid(bad, BOX, 16, empty_value=1.0)
    assert np.isfinite(grid).all() and (grid == 1.0).sum() >= 16**3 // 7


def test_empty_level_set_names_the_range_and_suggests_a_threshold():
    grid = sample_grid(sphere_density, BOX, 16)
    with pytest.raises(InputError, match=r"no surface at level 80 \(its values run from \S+ to 50\); pick a threshold between them, e\.g\. 25"):
        extract_mesh(grid, BOX, 80.0, "density")
    with pytest.raises(InputError, match="signed distance"):
        extract_mesh(np.ones((8, 8, 8)), BOX, 0.0, "sdf")


def test_too_large_a_grid_is_refused_with_the_figure_and_a_resolution_that_fits():
    assert estimate_grid_bytes(256) == 256**3 * BYTES_PER_SAMPLE
    with pytest.raises(InputError, match=r"2048 needs about 77\.3 GB .* 1\.0 GB is allowed; use resolution 480 or less"):
        check_grid_fits(2048, memory_budget=10**9)
    with pytest.raises(InputError, match=r"needs about 151 MB"):
        sample_grid(sphere_sdf, BOX, 256, memory_budget=100 * 10**6)
    check_grid_fits(480, memory_budget=10**9)  # the suggestion does fit


def test_bad_mode_and_box_are_refused():
    with pytest.raises(InputError, match="'density' \\(NeRF\\) or 'sdf'"):
        extract_mesh(np.zeros((4, 4, 4)), BOX, 0.0, "nerf")
    with pytest.raises(InputError, match="empty or not finite"):
        sample_grid(sphere_sdf, [[0, 0, 0], [1, 0, 1]], 8)


# --- the two marching-cubes backends ----------------------------------------------------------


def vertex_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric nearest-vertex distance: the farthest any vertex of one mesh is from the other's."""
    return float(max(cKDTree(b).query(a)[0].max(), cKDTree(a).query(b)[0].max()))


def test_without_pymcubes_scikit_image_gives_the_same_meshes(monkeypatch):
    """The project's environment has both, so both run here for real; PyMCubes' absence (macOS
    arm64, Python 3.13) is simulated by making `import mcubes` fail."""
    assert marching_cubes.BACKEND == "PyMCubes"
    cut = np.array([[-1.0, -1.0, 0.0], [1.0, 1.0, 1.0]])  # the box caps the sphere: vertices clamped
    cases = [(BOX, sphere_sdf, 0.0, "sdf"), (BOX, sphere_density, default_density_level(BOX), "density"),
             (cut, sphere_sdf, 0.0, "sdf")]
    grids = [(box, sample_grid(fn, box, 40), level, mode) for box, fn, level, mode in cases]
    pymcubes = [extract_mesh(grid, box, level, mode) for box, grid, level, mode in grids]

    monkeypatch.setitem(sys.modules, "mcubes", None)  # `import mcubes` raises ImportError
    march, backend = marching_cubes.pick_marching_cubes()
    assert backend == "scikit-image"
    monkeypatch.setattr(marching_cubes, "_march", march)
    for (box, grid, level, mode), (mc_v, mc_f) in zip(grids, pymcubes):
        sk_v, sk_f = extract_mesh(grid, box, level, mode)
        cell = float((box[1] - box[0]).min()) / 39
        assert sk_v.dtype == np.float32 and sk_f.dtype == np.int64
        assert len(sk_v) == len(mc_v) and len(sk_f) == len(mc_f)
        assert vertex_gap(sk_v, mc_v) < 1e-4 * cell  # same vertices, same (x, y, z) order
        mc, sk = trimesh.Trimesh(mc_v, mc_f, process=False), trimesh.Trimesh(sk_v, sk_f, process=False)
        assert sk.is_watertight and sk.is_winding_consistent
        assert sk.volume > 0 and sk.volume == pytest.approx(mc.volume, rel=1e-3)  # same winding
        if box is BOX:
            assert outward_fraction(sk_v, sk_f) == 1.0


def test_mesh_export_needs_pymcubes_or_scikit_image(monkeypatch):
    monkeypatch.setitem(sys.modules, "mcubes", None)
    monkeypatch.setitem(sys.modules, "skimage.measure", None)
    with pytest.raises(ImportError, match=r"PyMCubes \(import mcubes\) or scikit-image"):
        marching_cubes.pick_marching_cubes()


# --- clean-up --------------------------------------------------------------------------------


def test_keep_largest_removes_a_small_separate_blob():
    big_v, big_f = sphere_mesh(32)
    blob = trimesh.creation.icosphere(subdivisions=0, radius=0.05)  # 20 faces, under 2%
    vertices = np.concatenate([big_v, blob.vertices + [0.9, 0.9, 0.9]]).astype(np.float32)
    faces = np.concatenate([big_f, blob.faces + len(big_v)])
    kept_v, kept_f = cleanup.keep_largest(vertices, faces)
    assert len(kept_f) == len(big_f) and len(kept_v) == len(big_v)
    assert radii(kept_v).max() < 0.7  # the blob at distance ~1.5 went
    # A piece holding at least min_fraction of the faces stays even beyond n_components.
    both_v, both_f = cleanup.keep_largest(vertices, faces, n_components=1, min_fraction=0.001)
    assert len(both_f) == len(faces)
    two_v, two_f = cleanup.keep_largest(vertices, faces, n_components=2, min_fraction=1.0)
    assert len(two_f) == len(faces)


def test_component_labels_join_a_chain():
    faces = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 6], [7, 8, 9]])
    labels = cleanup.component_labels(faces, 10)
    assert len(set(labels[:7])) == 1 and labels[0] == 0
    assert len(set(labels[7:])) == 1 and labels[7] != labels[0]


def test_decimate_meets_the_face_budget_and_keeps_the_shape():
    vertices, faces = sphere_mesh(48)
    small_v, small_f = cleanup.decimate(vertices, faces, 2000)
    assert 1900 <= len(small_f) <= 2000 < len(faces)
    assert np.abs(radii(small_v) - RADIUS).max() < 0.01  # every vertex stays on the sphere
    small = trimesh.Trimesh(small_v, small_f, process=False)
    assert small.is_watertight and small.is_winding_consistent and small.volume > 0
    same_v, same_f = cleanup.decimate(vertices, faces, len(faces) + 1)
    assert same_f is faces or np.array_equal(same_f, faces)


def test_decimate_keeps_an_open_border_unless_the_budget_needs_it():
    vertices, faces = sphere_mesh(48)
    upper = faces[vertices[faces].mean(axis=1)[:, 2] > CENTRE[2].item()]  # an open bowl
    bowl_v, bowl_f = cleanup.compact(vertices, upper)
    edges = np.sort(bowl_f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, count = np.unique(edges, axis=0, return_counts=True)
    border = bowl_v[np.unique(unique[count == 1])]  # vertices on edges of one face only
    rim = {tuple(p) for p in np.round(border, 5)}
    loose_v, loose_f = cleanup.decimate(bowl_v, bowl_f, len(bowl_f) // 3)
    assert len(loose_f) <= len(bowl_f) // 3
    assert rim <= {tuple(p) for p in np.round(loose_v, 5)}  # every rim vertex is still there
    tight_v, tight_f = cleanup.decimate(bowl_v, bowl_f, 60)  # fewer faces than the rim has edges
    assert len(tight_f) <= 60 and len(border) > 60
    assert np.abs(radii(tight_v) - RADIUS).max() < 0.05


def test_vertex_normals_are_unit_and_radial():
    vertices, faces = sphere_mesh(32)
    normals = cleanup.vertex_normals(vertices, faces)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    radial = (vertices - CENTRE.numpy()) / radii(vertices)[:, None]
    assert (normals * radial).sum(axis=1).min() > 0.95


def _bumpy_sphere(resolution: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The test sphere with every vertex pushed in or out along its radius by up to 0.4 of a grid
    cell at random: the grain a NeRF's level set has."""
    vertices, faces = sphere_mesh(resolution)
    cell = 2.0 / resolution
    radial = (vertices - CENTRE.numpy()) / radii(vertices)[:, None]
    bumps = np.random.default_rng(seed).uniform(-0.4 * cell, 0.4 * cell, len(vertices))
    return (vertices + bumps[:, None] * radial).astype(np.float32), faces


def _normal_error_degrees(vertices: np.ndarray, faces: np.ndarray) -> float:
    radial = (vertices - CENTRE.numpy()) / radii(vertices)[:, None]
    cosine = (cleanup.vertex_normals(vertices, faces) * radial).sum(axis=1).clip(-1.0, 1.0)
    return float(np.degrees(np.arccos(cosine)).mean())


def test_smoothing_takes_the_bumps_away_and_keeps_the_size():
    vertices, faces = _bumpy_sphere()
    smoothed = cleanup.smooth(vertices, faces, 20)
    before, after = _normal_error_degrees(vertices, faces), _normal_error_degrees(smoothed, faces)
    assert after < 0.35 * before, (before, after)
    # Taubin's inflating step keeps the radius; averaging with the neighbours alone would shrink it.
    assert abs(radii(smoothed).mean() - RADIUS) < 0.1 * (2.0 / 40)
    assert np.abs(radii(smoothed) - RADIUS).max() < np.abs(radii(vertices) - RADIUS).max()
    assert smoothed.dtype == vertices.dtype and smoothed.shape == vertices.shape
    assert cleanup.smooth(vertices, faces, 0) is vertices
    with pytest.raises(InputError, match="smoothing iterations must be 0 or more, not -1"):
        cleanup.smooth(vertices, faces, -1)


def test_smoothing_leaves_an_open_border_where_it_is():
    vertices, faces = _bumpy_sphere()
    bowl_v, bowl_f = cleanup.compact(vertices, faces[vertices[faces].mean(axis=1)[:, 2] > CENTRE[2].item()])
    edges = np.sort(bowl_f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, count = np.unique(edges, axis=0, return_counts=True)
    rim = np.unique(unique[count == 1])
    smoothed = cleanup.smooth(bowl_v, bowl_f, 20)
    assert np.array_equal(smoothed[rim], bowl_v[rim])
    inside = np.setdiff1d(np.arange(len(bowl_v)), rim)
    assert np.linalg.norm(smoothed[inside] - bowl_v[inside], axis=1).mean() > 0.1 * (2.0 / 40)


def test_sdf_narrow_band_gives_the_same_mesh_as_the_full_grid():
    """Only samples near the surface are evaluated, yet marching cubes sees the same crossings."""
    evaluated = []

    def counting_sdf(points: torch.Tensor) -> torch.Tensor:
        evaluated.append(len(points))
        return sphere_sdf(points)

    resolution = 96
    full = sample_grid(sphere_sdf, BOX, resolution)
    occupied, fill = marching_cubes.sdf_band(counting_sdf, BOX, resolution)
    evaluated.clear()  # count the fine pass only
    banded = sample_grid(counting_sdf, BOX, resolution, occupied, fill_fn=fill)
    assert sum(evaluated) < 0.4 * resolution**3
    assert np.array_equal(np.sign(banded), np.sign(full))  # every sample on the right side
    near = np.abs(full) < 0.05
    assert np.array_equal(banded[near], full[near])  # exact wherever the surface is close
    full_v, full_f = extract_mesh(full, BOX, 0.0, "sdf")
    band_v, band_f = extract_mesh(banded, BOX, 0.0, "sdf")
    assert np.array_equal(full_f, band_f) and np.allclose(full_v, band_v)
