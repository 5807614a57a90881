"""Mesh export speed on the analytic demo scene: marching cubes at 256^3 + a 1024x1024 texture.

    python bench/export_speed.py [--resolution 256] [--texture 1024]

Target (DESIGN.md): <= 60 s on CPU for the whole export (grid sampling, marching cubes,
clean-up, UV unwrap, bake, writing glb + obj + npz). Prints JSON lines: the hardware, one line
per stage (seconds, faces), then the total with the file sizes and peak memory. The field is
the demo scene's analytic SDF (numpy) and a cheap colour function, so the figures measure the
exporter, not a network.
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

from bench.common import emit, emit_hardware, peak_memory_mb  # noqa: E402
from ins_core.data.demo_scene import scene_aabb, scene_sdf  # noqa: E402
from ins_core.export import export_mesh  # noqa: E402

TARGET_SECONDS = 60.0


def scalar_fn(points: torch.Tensor) -> torch.Tensor:
    """The demo scene's signed distance (numpy) behind the torch callable the exporter expects."""
    return torch.from_numpy(scene_sdf(points.cpu().numpy())).to(torch.float32)


def color_fn(points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
    """A cheap colour field: smooth bands in position, so the bake has something to show."""
    return 0.5 + 0.5 * torch.sin(6.0 * points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--texture", type=int, default=1024)
    args = parser.parse_args()

    emit_hardware(torch.device("cpu"))
    low, high = scene_aabb()
    with tempfile.TemporaryDirectory(prefix="ins_export_bench_") as out:
        start = time.perf_counter()
        result = export_mesh(scalar_fn, color_fn, np.array([low, high]), out, "sdf", resolution=args.resolution, texture_size=args.texture)
        total = time.perf_counter() - start
        sizes = {path.name: path.stat().st_size for path in (result.glb, result.obj, result.npz, result.texture)}
    setup = {"resolution": args.resolution, "texture": args.texture, "faces": result.n_faces}
    for stage, seconds in result.timings.items():
        emit("export_stage", stage=stage, seconds=round(seconds, 3), **setup)
    emit(
        "export_total", seconds=round(total, 3), target_seconds=TARGET_SECONDS, within_target=total <= TARGET_SECONDS,
        vertices=result.n_vertices, file_bytes=sizes, **setup, **peak_memory_mb(torch.device("cpu")),
    )


if __name__ == "__main__":
    main()
