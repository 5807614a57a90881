"""How much smoothing the exported mesh wants: its normals and its distance to the scene's true
surface, and how well its baked texture still stands in for the field, on the `make demo` job.

    python bench/mesh_smoothing.py --job runs/demo/job [--iterations 0 5 10 20 40] \\
        [--grids 96:30000 192:100000] [--pictures docs/figures/mesh_smoothing.png]

Exports the job's stylized run as the worker does (its style mix, the faces no camera saw left
out, a face budget) at each grid size and face budget, with each count of smoothing rounds, and
measures against the demo scene's own meshes (built again with the `bpy` module): the mean angle
between the mesh's face normals and the true surface's at the nearest point (the grain a light
shows), the mean distance each way (above the pedestal's unseen underside), and the mesh's texture
against the field through the held-out views (PSNR over white). One JSON line per figure, the
hardware first. With `--pictures`, the first grid's mesh unsmoothed and at the default, grey and
shaded smooth in Cycles (as the imported mesh is) from the demo's camera and close to the cube.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware  # noqa: E402
from bench.depth_supervision import SEEN_ABOVE, chamfer_seen, render_surfaces, scene_surface  # noqa: E402
from ins_core.eval.mesh_fidelity import load_export, sample_surface_faces, texture_fidelity  # noqa: E402
from ins_core.export.from_run import export_run  # noqa: E402
from ins_core.job import JobPaths, JobSpec  # noqa: E402
from ins_core.presets import MESH_SMOOTH_ITERATIONS  # noqa: E402
from ins_core.train.loading import open_run  # noqa: E402


def area_samples(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` points spread over the mesh's area, each with its face's unit normal."""
    points, chosen = sample_surface_faces(torch.tensor(vertices, dtype=torch.float64), torch.as_tensor(faces, dtype=torch.int64),
                                          count, torch.Generator().manual_seed(seed))
    corners = np.asarray(vertices, dtype=np.float64)[faces[chosen.numpy()]]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return points.numpy(), cross / np.maximum(np.linalg.norm(cross, axis=1, keepdims=True), 1e-30)


def normal_error(mesh: tuple[np.ndarray, np.ndarray], truth: tuple[np.ndarray, np.ndarray]) -> dict:
    """Angles (degrees) between the mesh's face normals and the true surface's at the nearest true
    point, over the mesh's area above the unseen underside (orientation ignored)."""
    from scipy.spatial import cKDTree

    true_points, true_normals = area_samples(*truth, 1_000_000, 0)
    points, normals = area_samples(*mesh, 200_000, 1)
    keep_true, keep = true_points[:, 2] > SEEN_ABOVE, points[:, 2] > SEEN_ABOVE
    nearest = cKDTree(true_points[keep_true]).query(points[keep])[1]
    cosine = np.abs((normals[keep] * true_normals[keep_true][nearest]).sum(axis=1)).clip(0.0, 1.0)
    angle = np.degrees(np.arccos(cosine))
    return {"normal_error_deg": float(angle.mean()), "normal_error_median_deg": float(np.median(angle)),
            "normal_error_p90_deg": float(np.quantile(angle, 0.9))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", type=Path, required=True, help="make demo's job folder (runs/demo/job)")
    parser.add_argument("--iterations", type=int, nargs="+", default=[0, 5, 10, 20, 40])
    parser.add_argument("--grids", nargs="+", default=["96:30000", "192:100000"], help="grid cells per side:face budget")
    parser.add_argument("--texture-size", type=int, default=512)
    parser.add_argument("--pictures", type=Path)
    args = parser.parse_args()
    from ins_blender.demo_scene import build_demo_scene

    truth = scene_surface(build_demo_scene())
    paths = JobPaths(args.job)
    spec = JobSpec.load(paths.job_json)
    trained = open_run(paths.root / "checkpoints" / "stylized", "cpu")
    n_styles = len(trained.config["styles"])
    trained.model.set_style(spec.style_mix or [1.0] + [0.0] * (n_styles - 1))
    emit_hardware(trained.device)
    surfaces = []
    with tempfile.TemporaryDirectory() as scratch:
        for grid_index, grid in enumerate(args.grids):
            resolution, faces = (int(x) for x in grid.split(":"))
            for rounds in args.iterations:
                out = Path(scratch) / f"{resolution}_{rounds}"
                started = time.perf_counter()
                result = export_run(trained, out, resolution, args.texture_size, target_faces=faces, smooth_iterations=rounds)
                seconds = time.perf_counter() - started
                with np.load(result.npz) as data:
                    mesh = (data["vertices"].astype(np.float64), data["faces"].astype(np.int64))
                fidelity = texture_fidelity(trained, load_export(out, trained.device), trained.data.test)
                figures = {**chamfer_seen(mesh, truth), **normal_error(mesh, truth)}
                emit("mesh_smoothing", scene="make demo (stylized run)", grid=resolution, face_budget=faces, smooth_iterations=rounds,
                     faces=result.n_faces, export_s=round(seconds, 1), mesh_vs_field_psnr=round(fidelity["psnr_vs_field"], 2),
                     **{key: round(value, 4) for key, value in figures.items()})
                if grid_index == 0 and rounds in (0, MESH_SMOOTH_ITERATIONS):
                    surfaces.append((f"{resolution}^3, {faces // 1000} k faces, smoothing {rounds}", *mesh))
    if args.pictures:
        render_surfaces(surfaces, args.pictures, shade_smooth=True)


if __name__ == "__main__":
    main()
