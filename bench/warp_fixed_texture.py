"""What `eval`'s warp error does with fine texture that holds still: a calibration of the metric.

    python bench/warp_fixed_texture.py --content-run runs/lego400 [--stylized-run runs/styles/X ...]

Renders `eval`'s orbit of 24 views of the content field, then paints a texture fixed on its surface
onto every view (value noise on world-space cells, the same point always the same colour, so the
views agree by construction) and measures the warp RMSE at 15 and 60 degrees as `eval` does. Each
line also gives the views' fine detail (the RMS of a render minus its 3x3 mean over the object), so
a stylized run's warp can be set against a texture of the same fineness that cannot flicker.
Stylized runs given with --stylized-run are measured the same way (their own renders, no texture).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware  # noqa: E402
from ins_core.eval.stylization import CameraView, surface_points, typical_orbit, warp_consistency  # noqa: E402
from ins_core.render.views import ViewRender, render_view  # noqa: E402
from ins_core.train.loading import open_run  # noqa: E402

_CORNERS = torch.tensor([[dx, dy, dz] for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)])


def cell_values(cells: torch.Tensor) -> torch.Tensor:
    """A fixed pseudo-random value in [-1, 1] per integer cell [..., 3]."""
    mixed = (cells[..., 0] * 73856093) ^ (cells[..., 1] * 19349663) ^ (cells[..., 2] * 83492791)
    return (mixed % 1000003).float() / 1000003.0 * 2 - 1


def value_noise(points: torch.Tensor, cell: float) -> torch.Tensor:
    """Smoothly interpolated cell values at world points [..., 3]: a texture fixed in space."""
    scaled = points / cell
    base = scaled.floor()
    frac = scaled - base
    frac = frac * frac * (3 - 2 * frac)
    out = torch.zeros(points.shape[:-1])
    for corner in _CORNERS:
        weight = torch.where(corner.bool(), frac, 1 - frac).prod(-1)
        out += weight * cell_values(base.long() + corner)
    return out


def fine_detail(renders: list[ViewRender]) -> float:
    """RMS of each render minus its 3x3 mean, over the solid object, averaged over the views."""
    values = []
    for render in renders:
        rgb = render.rgb.permute(2, 0, 1)[None]
        detail = (rgb - F.avg_pool2d(rgb, 3, stride=1, padding=1, count_include_pad=False))[0].permute(1, 2, 0)
        solid = render.opacity > 0.9
        values.append(float(detail[solid].pow(2).mean().sqrt()))
    return sum(values) / len(values)


def measured(name: str, renders: list[ViewRender], orbit: list[CameraView], **extra) -> None:
    warp = warp_consistency(renders, orbit)
    emit("warp_fixed_texture", case=name, **extra, fine_detail=round(fine_detail(renders), 4),
         short_range_rmse=round(warp["short_range_rmse"], 4), long_range_rmse=round(warp["long_range_rmse"], 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--content-run", type=Path, required=True)
    parser.add_argument("--stylized-run", type=Path, action="append", default=[])
    parser.add_argument("--scale", type=int, default=1, help="render at this many times the views' size")
    parser.add_argument("--cells", type=float, nargs="+", default=[1, 2, 4, 8], help="texture cell sizes, in pixels on the object")
    parser.add_argument("--amplitudes", type=float, nargs="+", default=[0.1, 0.2])
    args = parser.parse_args()

    content = open_run(args.content_run, "cpu")
    emit_hardware(content.device)
    views = content.data.test
    orbit = [CameraView(v.c2w, v.intrinsics * args.scale, v.width * args.scale, v.height * args.scale)
             for v in typical_orbit(views, content.model.field.aabb, 24)]
    white = torch.ones(3)
    renders = [render_view(content.model, v.c2w, v.intrinsics, v.width, v.height, white) for v in orbit]
    measured("content", renders, orbit)
    points = [surface_points(r, v).reshape(v.height, v.width, 3) for r, v in zip(renders, orbit)]
    # A pixel's footprint on the object, roughly: lego spans about three quarters of a view.
    aabb = content.model.field.aabb
    footprint = float((aabb[1] - aabb[0]).max()) / (0.75 * orbit[0].width)
    for cell in args.cells:
        for amplitude in args.amplitudes:
            textured = [ViewRender((r.rgb + amplitude * value_noise(p, cell * footprint)[..., None] * r.opacity[..., None]).clamp(0, 1),
                                   r.depth, r.opacity) for r, p in zip(renders, points)]
            measured("content + fixed texture", textured, orbit, cell_pixels=cell, amplitude=amplitude)
    for path in args.stylized_run:
        stylized = open_run(path, "cpu", load_data=False)
        measured(path.name, [render_view(stylized.model, v.c2w, v.intrinsics, v.width, v.height, white) for v in orbit], orbit)


if __name__ == "__main__":
    main()
