"""How well the exported mesh stands in for the trained field: texture fidelity and geometry.

    python bench/mesh_quality.py --run RUN [--resolution 256] [--texture 1024] [--pictures DIR]
    python bench/mesh_quality.py --run DEMO_SDF_RUN --reference demo      # + Chamfer to the true shape
    python bench/mesh_quality.py --run RUN --variants ray_100k_faces --smooth 0 5 10 20   # the smoothing's cost

For each export variant (colour from a short volume-rendered ray or from the field at the point;
one look-up direction or three; no face budget or a budget), it exports the run, rasterizes the
mesh through the run's held-out cameras and compares with the field's own renders (PSNR over
white, silhouette IoU), and with the photographs. It also reports the share of the texture the
UV charts cover. With `--reference demo` it measures the Chamfer distance from the mesh to the
exact shape of the core's demo scene (marching cubes of its analytic SDF at 384^3): only for a run
trained on that scene (`python -m ins_core demo`'s dataset), not on the Blender demo `make demo`
builds, whose primitives lie elsewhere (a Chamfer distance of 0.14-0.15 there says nothing).
One JSON line per figure, the hardware first.
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
from ins_core.eval.mesh_fidelity import chamfer_distance, load_export, render_mesh, texture_fidelity  # noqa: E402
from ins_core.eval.pictures import image_grid, save_png  # noqa: E402
from ins_core.export import bake  # noqa: E402
from ins_core.export.from_run import export_run  # noqa: E402
from ins_core.export.marching_cubes import extract_mesh, sample_grid  # noqa: E402
from ins_core.presets import MESH_SMOOTH_ITERATIONS  # noqa: E402
from ins_core.render.views import render_view  # noqa: E402
from ins_core.train.loading import open_run  # noqa: E402

VARIANTS = {
    "ray": {},
    "point": {"color_lookup": "point"},
    "ray_3_directions": {"n_directions": 3},
    "ray_100k_faces": {"target_faces": 100_000},
    "ray_30k_faces": {"target_faces": 30_000},
}


def texture_coverage(export_dir: Path, size: int) -> float | None:
    """Share of the texture's texels that lie on a UV chart."""
    with np.load(export_dir / "mesh.npz") as mesh:
        if "uvs" not in mesh.files:
            return None
        face_of, _ = bake.rasterize(mesh["uvs"], mesh["faces"].astype(np.int64), size)
    return float((face_of >= 0).mean())


def demo_reference_mesh(resolution: int = 384) -> tuple[torch.Tensor, torch.Tensor]:
    """The demo scene's true surface: marching cubes of its exact SDF."""
    from ins_core.data.demo_scene import scene_aabb, scene_sdf

    box = np.array(scene_aabb())
    grid = sample_grid(lambda p: torch.from_numpy(scene_sdf(p.cpu().numpy())).float(), box, resolution, None, empty_value=1.0)
    vertices, faces = extract_mesh(grid, box, 0.0, "sdf")
    return torch.from_numpy(vertices), torch.from_numpy(faces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a trained run (content or stylized) with held-out views")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--texture", type=int, default=1024)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--reference", choices=("demo",), help="also measure the Chamfer distance to this known shape (the core demo's, `python -m ins_core demo`)")
    parser.add_argument("--smooth", type=int, nargs="+", default=[MESH_SMOOTH_ITERATIONS],
                        help="export each variant with each of these counts of smoothing rounds")
    parser.add_argument("--pictures", type=Path, help="write field-vs-mesh pictures of the first variant here")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    trained = open_run(args.run, args.device)
    emit_hardware(trained.device)
    views = trained.data.test if trained.data.test is not None and len(trained.data.test) else trained.data.train
    reference = demo_reference_mesh() if args.reference == "demo" else None
    work = Path(tempfile.mkdtemp(prefix="mesh_quality_"))
    runs = [(name, rounds) for name in args.variants.split(",") for rounds in args.smooth]
    for index, (name, rounds) in enumerate(runs):
        out = work / f"{name}_{rounds}"
        start = time.perf_counter()
        result = export_run(trained, out, args.resolution, args.texture, smooth_iterations=rounds, **VARIANTS[name])
        seconds = time.perf_counter() - start
        mesh = load_export(out, trained.device)
        fidelity = texture_fidelity(trained, mesh, views)
        figures = {key: round(value, 4) for key, value in fidelity.items() if key != "views"}
        if reference is not None:
            chamfer = chamfer_distance(mesh.vertices.cpu(), mesh.faces.cpu(), *reference)
            figures.update({f"chamfer_{key}": round(value, 5) for key, value in chamfer.items()})
        emit("mesh_quality", variant=name, smooth_iterations=rounds, kind=trained.kind, resolution=args.resolution, texture=args.texture,
             level=round(result.level, 4), export_seconds=round(seconds, 2),
             stage_seconds={stage: round(s, 2) for stage, s in result.timings.items()},
             texture_coverage=texture_coverage(out, args.texture), **figures)
        if index == 0 and args.pictures:
            save_pictures(args.pictures, trained, mesh, views)
    emit("memory", **peak_memory_mb(trained.device))


def save_pictures(folder: Path, trained, mesh, views) -> None:
    """Field render, mesh render and their difference for the first two held-out views."""
    white = torch.ones(3, device=trained.device)
    for k in range(min(2, len(views))):
        field = render_view(trained.model, views.c2w[k], views.intrinsics[k], views.width, views.height, white).rgb
        drawn = render_mesh(mesh, views.c2w[k], views.intrinsics[k], views.width, views.height)
        alpha = drawn.alpha.unsqueeze(-1)
        mesh_rgb = drawn.rgb * alpha + (1 - alpha)
        difference = (4 * (field - mesh_rgb).abs()).clamp(0, 1)
        images = [t.cpu().numpy() for t in (field, mesh_rgb, difference)]
        save_png(folder / f"mesh_vs_field_{k}.png", image_grid(images, ["field", "textured mesh", "difference x4"]))


if __name__ == "__main__":
    main()
