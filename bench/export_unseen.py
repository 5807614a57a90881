"""What leaving out the faces no camera saw does to an exported mesh: faces, texture density, and
how closely the textured mesh follows the field, at the views' size and close up.

    python bench/export_unseen.py --run runs/demo/job/stylized [--pictures FILE]

Exports the run twice with the export's defaults (256^3, a 1024 texture, the CLI's face budget), once
with every surface (`--keep-unseen`) and once as the export does by default. Figures per export:
faces, the faces left out, the surface's area, the share of the texture's texels on a UV chart,
texels per unit of surface area, and the PSNR of the textured mesh against the field's own
renders through the run's test views (or, without any, its first training views) at their size
and at `--close` times their size, where the texture's density shows. One JSON line per figure,
the hardware first. With `--pictures FILE`: one test view close up (the field, the mesh with every
surface, the mesh as exported) and both meshes from below, where no camera looked.
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
from bench.mesh_quality import texture_coverage  # noqa: E402
from ins_core.cli import DEFAULT_EXPORT_FACES  # noqa: E402
from ins_core.data.cameras import look_at  # noqa: E402
from ins_core.eval.metrics import psnr  # noqa: E402
from ins_core.eval.mesh_fidelity import load_export, render_mesh  # noqa: E402
from ins_core.eval.pictures import image_grid, save_png  # noqa: E402
from ins_core.export.from_run import export_run  # noqa: E402
from ins_core.render.views import render_view  # noqa: E402
from ins_core.train.loading import open_run  # noqa: E402

TEXTURE_SIZE = 1024  # the export's default


def texture_density(export_dir: Path, texture_size: int) -> dict:
    """The surface's area, the share of the texture on its charts, and texels per unit of area."""
    with np.load(export_dir / "mesh.npz") as data:
        v, f = data["vertices"].astype(np.float64), data["faces"]
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum()
    coverage = texture_coverage(export_dir, texture_size)
    return {"surface_area": round(float(area), 3), "texture_coverage": round(coverage, 3),
            "texels_per_unit_area": round(coverage * texture_size**2 / float(area))}


def crop_around(alpha: torch.Tensor, margin: int = 8) -> tuple[slice, slice]:
    """Rows and columns of the box around what an alpha mask covers, a few pixels wider."""
    rows, cols = torch.nonzero(alpha > 0.5, as_tuple=True)
    height, width = alpha.shape
    return (slice(max(0, int(rows.min()) - margin), min(height, int(rows.max()) + margin + 1)),
            slice(max(0, int(cols.min()) - margin), min(width, int(cols.max()) + margin + 1)))


def over_white(rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return rgb * alpha[..., None] + (1.0 - alpha[..., None])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a trained run (content or stylized)")
    parser.add_argument("--close", type=int, default=4, help="close-up renders at this many times the views' size")
    parser.add_argument("--views", type=int, default=4, help="compare through at most this many views")
    parser.add_argument("--target-faces", type=int, default=DEFAULT_EXPORT_FACES, help="the face budget (the add-on's presets: 30 k to 500 k)")
    parser.add_argument("--pictures", type=Path)
    args = parser.parse_args()
    trained = open_run(args.run, "cpu")
    emit_hardware(trained.device)
    views = trained.data.test if trained.data.test is not None and len(trained.data.test) else trained.data.train
    picked = list(range(min(args.views, len(views))))
    width, height = views.width, views.height
    white = torch.ones(3)
    renders = {factor: [render_view(trained.model, views.c2w[i], views.intrinsics[i] * factor, width * factor, height * factor, white)
                        for i in picked] for factor in (1, args.close)}
    field = {factor: [render.rgb for render in renders[factor]] for factor in renders}
    close_crop = crop_around(renders[args.close][0].opacity)
    # Below the scene, looking up at its centre: a place no camera of the run was.
    box = trained.model.field.aabb.cpu()
    centre, size = box.mean(dim=0), float((box[1] - box[0]).norm())
    below = look_at(centre + torch.tensor([0.6, -0.6, -0.5]) * size, centre)
    below_intrinsics = torch.tensor([1.2 * width, 1.2 * width, width / 2, height / 2]) * args.close
    pictures, labels = [field[args.close][0].clamp(0, 1)[close_crop]], ["the field, close up"]
    undersides = []
    with tempfile.TemporaryDirectory() as scratch:
        for keep_unseen in (True, False):
            started = time.perf_counter()
            result = export_run(trained, Path(scratch) / str(keep_unseen), texture_size=TEXTURE_SIZE, target_faces=args.target_faces, keep_unseen=keep_unseen)
            seconds = time.perf_counter() - started
            mesh = load_export(Path(scratch) / str(keep_unseen))
            quality = {}
            for factor in (1, args.close):
                drawn = [render_mesh(mesh, views.c2w[i], views.intrinsics[i] * factor, width * factor, height * factor) for i in picked]
                quality[f"psnr_vs_field_x{factor}"] = round(float(np.mean([psnr(over_white(d.rgb, d.alpha), f) for d, f in zip(drawn, field[factor])])), 2)
                if factor == args.close:
                    pictures.append(over_white(drawn[0].rgb, drawn[0].alpha).clamp(0, 1)[close_crop])
            label = "every surface (--keep-unseen)" if keep_unseen else "as exported (unseen faces left out)"
            labels.append(label)
            underside = render_mesh(mesh, below, below_intrinsics, width * args.close, height * args.close)
            undersides.append((underside, f"{label}, from below"))
            emit("export_unseen", run=str(args.run), keep_unseen=keep_unseen, face_budget=args.target_faces, faces=result.n_faces, unseen_faces=result.unseen_faces,
                 export_s=round(seconds, 1), views=len(picked), view_size=f"{width}x{height}", close=args.close,
                 **texture_density(Path(scratch) / str(keep_unseen), TEXTURE_SIZE), **quality)
    if args.pictures:
        below_crop = crop_around(torch.maximum(*(u.alpha for u, _ in undersides)))
        images = pictures + [torch.ones_like(pictures[0])] + [over_white(u.rgb, u.alpha).clamp(0, 1)[below_crop] for u, _ in undersides]
        save_png(args.pictures, image_grid([(p.numpy() * 255).round().astype(np.uint8) for p in images],
                                           labels + [""] + [label for _, label in undersides], columns=3))

if __name__ == "__main__":
    main()
