"""Field to files: sample the grid, march, clean up, unwrap, bake, write glb + obj + npz.

The field arrives as plain callables, so the same pipeline serves NeRF (density) and SDF
runs, the CLI and the worker. `progress(stage, fraction)` reports each stage from 0 to 1 for a
tqdm bar or the worker's events.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ins_core.errors import require
from ins_core.export import bake, cleanup, marching_cubes, uv, visibility, writers
from ins_core.export.marching_cubes import Mode, OccupiedFn, ScalarFn
from ins_core.presets import MESH_SMOOTH_ITERATIONS

ProgressFn = Callable[[str, float], None]
GLB_NAME, NPZ_NAME = "mesh.glb", "mesh.npz"
VIEW_OFFSET_CELLS = 0.1
SDF_BAND_MIN_RESOLUTION = 96  # below this the whole SDF grid is cheap enough to evaluate


@dataclass
class ExportResult:
    """What `export_mesh` wrote and how long each stage took (seconds)."""

    glb: Path
    obj: Path
    mtl: Path
    npz: Path
    texture: Path | None  # None when only vertex colours were baked
    n_vertices: int
    n_faces: int
    level: float
    timings: dict[str, float] = field(default_factory=dict)
    unseen_faces: int = 0  # faces no camera saw, left out

    def to_json(self) -> dict:
        """Plain JSON-ready fields (for result.json); paths as strings."""
        return {
            "glb": str(self.glb),
            "obj": str(self.obj),
            "mtl": str(self.mtl),
            "npz": str(self.npz),
            "texture": None if self.texture is None else str(self.texture),
            "n_vertices": self.n_vertices,
            "n_faces": self.n_faces,
            "level": self.level,
            "timings": dict(self.timings),
            "unseen_faces": self.unseen_faces,
        }


EXPORT_STAGES = ("grid", "marching_cubes", "cleanup", "uv", "bake", "write")


def overall_fraction(stage: str, fraction: float) -> float:
    """Progress of the whole export from a stage's own fraction (stages weighted equally)."""
    index = EXPORT_STAGES.index(stage) if stage in EXPORT_STAGES else 0
    return (index + fraction) / len(EXPORT_STAGES)


class _Stages:
    """Times named stages and forwards fractions to the caller's progress callback."""

    def __init__(self, progress: ProgressFn | None) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}
        self._stage = ""
        self._start = 0.0

    def begin(self, stage: str) -> None:
        self._stage, self._start = stage, time.perf_counter()
        self.report(0.0)

    def report(self, fraction: float) -> None:
        if self.progress is not None:
            self.progress(self._stage, float(fraction))

    def end(self) -> None:
        self.timings[self._stage] = time.perf_counter() - self._start
        self.report(1.0)


def _empty_value(mode: str, spacing: np.ndarray) -> float:
    """What the grid holds where the occupancy grid says nothing is: no density for NeRF; for an
    SDF a distance of one cell diagonal, 'outside' without being so large that marching cubes
    pulls the surface far off where it meets evaluated samples."""
    return 0.0 if mode == "density" else float(np.linalg.norm(spacing))


def _drop_unseen(vertices: np.ndarray, faces: np.ndarray, cameras: visibility.Cameras, cell: float,
                 target_faces: int | None, device: torch.device | str) -> tuple[np.ndarray, np.ndarray, int]:
    """The mesh without the faces no camera sees, and how many those were. Over a face budget, the
    closed surface is decimated first, to the budget the seen part will need (an open border left
    by the cut cannot be simplified without moving what the views see); each decimated vertex takes
    the visibility of the nearest full-resolution one."""
    seen = visibility.seen_vertices(vertices, faces, cameras, cell, device)
    keep = visibility.seen_faces(faces, seen)
    require(bool(keep.any()), "No part of the surface lies where the run's cameras see it; export every surface "
                              "(--keep-unseen) or check that the run's views are the scene's.")
    if target_faces is not None and len(faces) > target_faces:
        from scipy.spatial import cKDTree  # scipy is a dependency already (PyMCubes needs it)

        fine_vertices = vertices
        vertices, faces = cleanup.decimate(vertices, faces, max(4, math.ceil(target_faces / keep.mean())))
        seen = seen[cKDTree(fine_vertices).query(vertices)[1]]
        keep = visibility.seen_faces(faces, seen)
    vertices, kept_faces = cleanup.compact(vertices, faces[keep])
    return vertices, kept_faces, int((~keep).sum())


def export_mesh(
    scalar_fn: ScalarFn,
    color_fn: bake.ColorFn,
    aabb: np.ndarray | torch.Tensor | list,
    out_dir: str | Path,
    mode: Mode,
    resolution: int = 256,
    texture_size: int = 1024,
    level: float | None = None,
    occupied_fn: OccupiedFn | None = None,
    keep_components: int = 1,
    target_faces: int | None = None,
    vertex_colors_only: bool = False,
    progress: ProgressFn | None = None,
    n_directions: int = 1,
    view_offset: float | None = None,
    device: torch.device | str = "cpu",
    memory_budget: int | None = None,
    seen_by: visibility.Cameras | None = None,
    smooth_iterations: int = MESH_SMOOTH_ITERATIONS,
) -> ExportResult:
    """Export the field's surface as mesh.glb, mesh.obj (+ mesh.mtl, texture.png) and mesh.npz.

    `level` defaults to 0 for an SDF and to `default_density_level(aabb)` for NeRF density.
    `keep_components` keeps that many largest pieces (plus any holding 2% of the faces);
    0 keeps every piece. `target_faces` decimates to that budget. With `vertex_colors_only`,
    no UVs or texture are made and the colour goes into the vertices. Colour is looked up from
    `view_offset` (default: a tenth of a grid cell) outside the surface, looking at it along
    `n_directions` directions around the normal. `device` is where grid points and texel points
    are made for the callables; `memory_budget` (bytes) caps the grid (default: half the
    available memory). `occupied_fn` must count the inside of objects as occupied: a skipped
    sample reads as outside, so a hollow occupancy shell would add an inner surface. With
    `seen_by` (the training cameras), faces none of them sees are left out: the walls of
    hollows inside objects and the undersides no view showed. `smooth_iterations` rounds of Taubin
    smoothing (after the decimation) take the level set's bumps away; 0 keeps the surface as marched.
    """
    # Every refusal comes before minutes of sampling.
    marching_cubes.check_mode(mode)
    box = marching_cubes.check_aabb(aabb)
    marching_cubes.check_grid_fits(resolution, memory_budget)
    require(keep_components >= 0, f"keep_components must be 0 (keep all) or more, not {keep_components}.")
    require(target_faces is None or target_faces >= 4, f"The face budget must be at least 4 faces, not {target_faces}.")
    require(vertex_colors_only or texture_size >= 8, f"The texture size must be at least 8 texels, not {texture_size}.")
    require(n_directions >= 1, f"n_directions must be at least 1, not {n_directions}.")
    require(smooth_iterations >= 0, f"The smoothing iterations must be 0 or more, not {smooth_iterations}.")
    out = Path(out_dir)
    writers.check_writable(out)
    spacing = marching_cubes.grid_spacing(box, resolution)
    level = float(level) if level is not None else (0.0 if mode == "sdf" else marching_cubes.default_density_level(box))
    stages = _Stages(progress)

    stages.begin("grid")
    fill_fn = None
    if mode == "sdf" and occupied_fn is None and resolution >= SDF_BAND_MIN_RESOLUTION:
        occupied_fn, fill_fn = marching_cubes.sdf_band(scalar_fn, box, resolution, device)
    grid = marching_cubes.sample_grid(
        scalar_fn, box, resolution, occupied_fn, empty_value=_empty_value(mode, spacing),
        device=device, memory_budget=memory_budget, progress=stages.report, fill_fn=fill_fn,
    )
    stages.end()

    stages.begin("marching_cubes")
    vertices, faces = marching_cubes.extract_mesh(grid, box, level, mode)
    del grid
    stages.end()

    stages.begin("cleanup")
    if keep_components:
        vertices, faces = cleanup.keep_largest(vertices, faces, keep_components)
    unseen = 0
    if seen_by is not None and len(seen_by):
        vertices, faces, unseen = _drop_unseen(vertices, faces, seen_by, float(spacing.max()), target_faces, device)
    if target_faces is not None:
        vertices, faces = cleanup.decimate(vertices, faces, target_faces)
    # Where matter meets the scene box marching cubes caps it on the box's face; smoothing must not
    # push that cap out of the box, where the field has nothing.
    vertices = np.clip(cleanup.smooth(vertices, faces, smooth_iterations), box[0], box[1]).astype(vertices.dtype)
    normals = cleanup.vertex_normals(vertices, faces)
    stages.end()

    # Look from a tenth of a grid cell outside: off the surface's float error, yet close enough
    # that the colour is the surface's own (a NeRF's colour away from its surface is untrained).
    offset = VIEW_OFFSET_CELLS * float(spacing.max()) if view_offset is None else float(view_offset)
    texture_png, uvs, colours = None, None, None
    if vertex_colors_only:
        stages.begin("bake")
        colours = bake.vertex_colors(vertices, normals, color_fn, n_directions, offset, device=device, progress=stages.report)
        stages.end()
    else:
        stages.begin("uv")
        vmapping, faces, uvs = uv.unwrap(vertices, faces, texture_size)
        vertices, normals = vertices[vmapping], normals[vmapping]
        stages.end()
        stages.begin("bake")
        texture, _ = bake.bake_texture(
            vertices, faces, uvs, normals, color_fn, texture_size, n_directions, offset,
            device=device, progress=stages.report,
        )
        texture_png = writers.encode_png(texture)
        stages.end()

    stages.begin("write")
    obj_files = writers.write_obj(out, vertices, faces, uvs, normals, texture_png, colours)
    glb = writers.write_glb(out / GLB_NAME, vertices, faces, uvs, normals, texture_png, colours)
    npz = writers.write_npz(out / NPZ_NAME, vertices, faces, uvs, normals, colours)
    stages.end()

    return ExportResult(
        glb=glb,
        obj=obj_files[writers.OBJ_NAME],
        mtl=obj_files[writers.MTL_NAME],
        npz=npz,
        texture=obj_files.get(writers.TEXTURE_NAME),
        n_vertices=len(vertices),
        n_faces=len(faces),
        level=level,
        timings=stages.timings,
        unseen_faces=unseen,
    )
