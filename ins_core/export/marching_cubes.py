"""Sample a scalar field on a regular grid and extract its level set with marching cubes.

The field comes in as a plain callable (`scalar_fn(points [N, 3]) -> [N]`), so this module
knows nothing about NeRF or SDF networks. Grid index (i, j, k) is the point
aabb_min + (i, j, k) * spacing, i.e. the grid's first axis is world X, as marching cubes expects.
Marching cubes is PyMCubes (`mcubes`) where it imports, else scikit-image's, because PyMCubes publishes
no wheel for some platforms (macOS arm64, Python 3.13); both give the same vertices and winding.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from ins_core.errors import InputError, require

ScalarFn = Callable[[torch.Tensor], torch.Tensor]
OccupiedFn = Callable[[torch.Tensor], torch.Tensor]
FractionFn = Callable[[float], None]
Mode = Literal["density", "sdf"]
MODES: tuple[str, ...] = ("density", "sdf")

# Bytes held per grid sample at the peak: the float32 grid, its padded float32 copy (mcubes reads
# float32 in place: measured, no float64 copy; scikit-image's too), and one byte of slack for the mesh,
# which grows with the surface (~res^2) rather than the volume, and the per-chunk buffers.
BYTES_PER_SAMPLE = 4 + 4 + 1
DEFAULT_CHUNK = 1 << 18
# Cells across the scene's longest side at which `default_density_level` asks for alpha 0.5.
DENSITY_LEVEL_CELLS = 128


MarchFn = Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray]]


def pick_marching_cubes() -> tuple[MarchFn, str]:
    """(march, backend name): march(values, level) -> (vertices [V, 3] in grid index units, in the
    array's axis order, faces [F, 3]) with faces wound the way PyMCubes winds them (normals
    towards decreasing values). PyMCubes when it imports, else scikit-image."""
    try:
        import mcubes
    except ImportError:
        pass
    else:
        return mcubes.marching_cubes, "PyMCubes"
    try:
        from skimage.measure import marching_cubes as skimage_marching_cubes
    except ImportError as exc:
        raise ImportError("Mesh export needs PyMCubes (import mcubes) or scikit-image (import skimage); "
                          "neither is installed in this Python") from exc

    def march(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
        # "ascent" winds faces as mcubes does (measured on spheres: "descent", the default, is the
        # reverse); vertices already follow the array's axes; degenerate faces are kept, as mcubes keeps them.
        vertices, faces, _normals, _values = skimage_marching_cubes(values, level, gradient_direction="ascent")
        return vertices, faces

    return march, "scikit-image"


_march, BACKEND = pick_marching_cubes()


def check_aabb(aabb: np.ndarray | torch.Tensor | list) -> np.ndarray:
    """The scene box as float64 [2, 3] (min row, max row); refuse a malformed or empty box."""
    box = np.asarray(aabb.cpu() if isinstance(aabb, torch.Tensor) else aabb, dtype=np.float64)
    require(box.shape == (2, 3), f"The export box must be [[xmin, ymin, zmin], [xmax, ymax, zmax]], not shape {box.shape}.")
    require(
        bool(np.isfinite(box).all() and (box[1] > box[0]).all()),
        f"The export box {box.tolist()} is empty or not finite; give a max corner above the min corner on every axis.",
    )
    return box


def check_mode(mode: str) -> None:
    require(mode in MODES, f"The export mode must be 'density' (NeRF) or 'sdf', not {mode!r}.")


def grid_spacing(aabb: np.ndarray, resolution: int) -> np.ndarray:
    """World distance between neighbouring samples along each axis, [3]."""
    return (aabb[1] - aabb[0]) / (resolution - 1)


def estimate_grid_bytes(resolution: int) -> int:
    """Peak memory (bytes) that sampling and marching a resolution^3 grid needs."""
    return int(resolution) ** 3 * BYTES_PER_SAMPLE


def available_memory_bytes() -> int:
    """Physical memory the OS reports as available (MemAvailable), or 4 GiB when it cannot tell."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # Windows and macOS lack these names
        return 4 << 30


def _format_bytes(count: float) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.0f} MB"


def check_grid_fits(resolution: int, memory_budget: int | None = None) -> None:
    """Refuse (InputError) a grid that would not fit in `memory_budget` bytes (default: half of
    the available memory, leaving room for the field itself), suggesting a resolution that does."""
    require(
        isinstance(resolution, (int, np.integer)) and resolution >= 2,
        f"The marching cubes resolution must be a whole number of at least 2, not {resolution!r}.",
    )
    budget = available_memory_bytes() // 2 if memory_budget is None else int(memory_budget)
    needed = estimate_grid_bytes(resolution)
    if needed <= budget:
        return
    fitting = int((budget / BYTES_PER_SAMPLE) ** (1.0 / 3.0))
    suggestion = max(2, fitting - fitting % 16 if fitting >= 32 else fitting)  # a round-ish number
    raise InputError(
        f"Marching cubes at resolution {resolution} needs about {_format_bytes(needed)} of memory but only "
        f"{_format_bytes(budget)} is allowed; use resolution {suggestion} or less."
    )


def _grid_points(aabb: np.ndarray, resolution: int, flat: torch.Tensor) -> torch.Tensor:
    """World positions [n, 3] (float32) of the grid samples with flat indices `flat`.

    float32 throughout (exact for indices below 2^24), since MPS has no float64."""
    r = resolution
    ijk = torch.stack([flat // (r * r), (flat // r) % r, flat % r], dim=-1).to(torch.float32)
    low = torch.as_tensor(aabb[0], dtype=torch.float32, device=flat.device)
    step = torch.as_tensor(grid_spacing(aabb, r), dtype=torch.float32, device=flat.device)
    return low + ijk * step


@torch.no_grad()
def sample_grid(
    scalar_fn: ScalarFn,
    aabb: np.ndarray | torch.Tensor | list,
    resolution: int,
    occupied_fn: OccupiedFn | None = None,
    chunk: int = DEFAULT_CHUNK,
    empty_value: float = 0.0,
    device: torch.device | str = "cpu",
    memory_budget: int | None = None,
    progress: FractionFn | None = None,
    fill_fn: ScalarFn | None = None,
) -> np.ndarray:
    """Evaluate `scalar_fn` on a resolution^3 grid spanning `aabb`, as float32 [r, r, r].

    Points are made and evaluated `chunk` at a time so memory stays bounded by the grid
    itself. Where `occupied_fn` says a point is empty the field is not evaluated and the grid
    holds `fill_fn(points)` if given, else `empty_value` (0 density for NeRF, a positive
    distance for SDF), i.e. reads as outside: without `fill_fn`, `occupied_fn` must therefore
    cover the inside of objects too. Non-finite field values also become `empty_value`, so one
    bad sample cannot poison marching cubes.
    """
    box = check_aabb(aabb)
    check_grid_fits(resolution, memory_budget)
    require(chunk >= 1, f"The evaluation chunk must be at least 1 point, not {chunk}.")
    total = resolution**3
    grid = np.full(total, empty_value, dtype=np.float32)
    for start in range(0, total, chunk):
        flat = torch.arange(start, min(start + chunk, total), device=device)
        points = _grid_points(box, resolution, flat)
        if occupied_fn is not None:
            keep = occupied_fn(points).to(torch.bool).reshape(-1)
            if fill_fn is not None and not bool(keep.all()):
                grid[flat[~keep].cpu().numpy()] = fill_fn(points[~keep]).reshape(-1).to(torch.float32).cpu().numpy()
            points, flat = points[keep], flat[keep]
        if len(points):
            values = scalar_fn(points).reshape(-1).to(torch.float32)
            values = torch.nan_to_num(values, nan=empty_value, posinf=empty_value, neginf=empty_value)
            grid[flat.cpu().numpy()] = values.cpu().numpy()
        if progress is not None:
            progress(min(start + chunk, total) / total)
    return grid.reshape(resolution, resolution, resolution)


def sdf_band(scalar_fn: ScalarFn, aabb: np.ndarray, resolution: int, device: torch.device | str = "cpu",
             coarse_resolution: int | None = None) -> tuple[OccupiedFn, ScalarFn]:
    """(occupied_fn, fill_fn) that limit an SDF grid to a narrow band around the surface.

    A coarse grid (a quarter of the resolution) is evaluated first; a fine sample is evaluated
    only where the coarse grid, interpolated, is within two coarse cell diagonals of zero, and
    elsewhere takes the interpolated coarse value, whose sign is right that far from the surface.
    For a distance field every cell the surface passes through has its corners within one
    diagonal of zero, so all of marching cubes' crossing cells are evaluated exactly; only a
    fraction of the grid is (at 256^3, a few million samples instead of 16.7 million)."""
    coarse_resolution = coarse_resolution or max(16, resolution // 4)
    coarse = torch.from_numpy(sample_grid(scalar_fn, aabb, coarse_resolution, empty_value=1.0, device=device)).to(device)
    band = 2.0 * float(np.linalg.norm(grid_spacing(aabb, coarse_resolution)))
    low = torch.as_tensor(aabb[0], dtype=torch.float32, device=device)
    size = torch.as_tensor(aabb[1] - aabb[0], dtype=torch.float32, device=device)
    volume = coarse[None, None]  # [1, 1, X, Y, Z]; grid_sample's (x, y, z) index (Z, Y, X)

    def interpolate(points: torch.Tensor) -> torch.Tensor:
        normalised = ((points.to(torch.float32) - low) / size) * 2.0 - 1.0
        grid = normalised.flip(-1).view(1, 1, 1, -1, 3)
        return torch.nn.functional.grid_sample(volume, grid, mode="bilinear", align_corners=True).view(-1)

    def occupied(points: torch.Tensor) -> torch.Tensor:
        return interpolate(points).abs() < band

    return occupied, interpolate


def default_density_level(aabb: np.ndarray | torch.Tensor | list, cells: int = DENSITY_LEVEL_CELLS) -> float:
    """A NeRF density threshold: the density at which a slab 1/`cells` of the box's longest side
    thick is half opaque (alpha = 1 - exp(-sigma * d) = 0.5, so sigma = ln 2 / d).

    Why this rule: density has units of 1/length, so a fixed number (torch-ngp's 10) means a
    different opacity in a scene ten times larger; tying the threshold to the scene size keeps
    the extracted surface where a renderer shows matter. It does not depend on the marching
    cubes resolution, so a preview at 64^3 and a final at 512^3 give the same surface. For a
    2-unit box it is ln 2 * 64 ~= 44; trained NeRF surfaces climb well into the hundreds, so the
    surface sits on the steep rise and barely moves with the exact choice.
    """
    box = check_aabb(aabb)
    return float(math.log(2.0) * cells / float((box[1] - box[0]).max()))


def _pad(grid: np.ndarray, level: float, mode: str) -> np.ndarray:
    """The grid with one extra layer of 'outside' samples on every face, so matter that touches
    the box boundary is capped and the mesh closes (vertices there are clamped back to the box)."""
    margin = max(float(np.abs(grid).max()) * 1e-3, 1e-3)
    outside = level - margin if mode == "density" else level + margin
    return np.pad(grid, 1, mode="constant", constant_values=outside)


def extract_mesh(
    grid: np.ndarray,
    aabb: np.ndarray | torch.Tensor | list,
    level: float,
    mode: Mode,
    close_boundary: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Level-set mesh of a sampled field: vertices [V, 3] float32 in world units, faces [F, 3] int64.

    Faces wind counter-clockwise seen from outside (normals point out of the object). Inside
    is where density > level ("density") or distance < level ("sdf"). With `close_boundary`,
    matter cut by the box is capped by a face on the box, so the mesh is closed.
    """
    check_mode(mode)
    box = check_aabb(aabb)
    values = np.asarray(grid, dtype=np.float32)
    require(values.ndim == 3 and min(values.shape) >= 2, f"The grid must be [X, Y, Z] with 2+ samples per axis, not {values.shape}.")
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if not lo < level < hi:
        name = "density" if mode == "density" else "signed distance"
        middle = 0.5 * (lo + hi)
        raise InputError(
            f"The {name} grid has no surface at level {level:g} (its values run from {lo:.4g} to {hi:.4g}); "
            f"pick a threshold between them, e.g. {middle:.3g}."
        )
    shape = np.array(values.shape)
    if close_boundary:
        values = _pad(values, level, mode)
    vertices, faces = _march(values, float(level))
    vertices = np.asarray(vertices, dtype=np.float64)
    if close_boundary:
        vertices = np.clip(vertices - 1.0, 0.0, shape - 1)
    faces = faces.astype(np.int64)
    # Both backends orient faces towards decreasing values: outward where inside is high (density),
    # inward where inside is low (SDF), so SDF faces swap two corners.
    if mode == "sdf":
        faces = faces[:, [0, 2, 1]]
    step = (box[1] - box[0]) / (shape - 1)
    world = box[0] + vertices * step
    return world.astype(np.float32), np.ascontiguousarray(faces)
