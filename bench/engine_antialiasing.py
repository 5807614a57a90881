"""The INS engine's samples a pixel: how near 1, 4, 9 and 16 rays a pixel come to 64 (an 8 x 8
grid, the reference), and what each costs, on a finished job's frame (JSON lines with the
hardware); and a picture of one edge, magnified, at each.

    python bench/engine_antialiasing.py --job runs/demo/job --out docs/figures/ins_engine_samples.png

The camera looks at the scene box's centre from above one corner (the demo's framing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware  # noqa: E402
from ins_core.data.cameras import Intrinsics, look_at  # noqa: E402
from ins_core.eval.pictures import image_grid, save_png  # noqa: E402
from ins_core.job import JobPaths  # noqa: E402
from ins_core.render.frame import render_frame  # noqa: E402
from ins_core.render.parallel import frame_workers  # noqa: E402
from ins_core.render_server import _prepare, _trained_run  # noqa: E402

REFERENCE = 64


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((image - reference) ** 2), 1e-12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="a finished INS job folder")
    parser.add_argument("--out", type=Path, required=True, help="the picture of an edge at each count (PNG)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--crop", type=int, nargs=4, default=(90, 80, 170, 160), metavar=("LEFT", "TOP", "RIGHT", "BOTTOM"))
    args = parser.parse_args()

    trained = _trained_run(JobPaths(args.job.resolve()), "cpu")
    _prepare(trained)  # as the render server does: lattices built, one torch thread, worker threads
    box = trained.model.field.aabb.cpu()
    centre, extent = 0.5 * (box[0] + box[1]), float((box[1] - box[0]).norm())
    c2w = look_at(centre + extent * torch.tensor([0.55, -0.7, 0.55]), centre)
    intrinsics = Intrinsics.from_fov(0.75, args.size, args.size).as_tensor()
    emit_hardware(torch.device("cpu"))

    def frame(samples: int) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        rgba = render_frame(trained.model, c2w, intrinsics, args.size, args.size, samples=samples,
                            background=torch.ones(3), workers=frame_workers()).rgba
        return rgba[..., :3].clamp(0, 1).numpy(), time.perf_counter() - started

    reference, _ = frame(REFERENCE)
    left, top, right, bottom = args.crop
    tiles, labels = [], []
    for samples in (1, 4, 9, 16, REFERENCE):
        image, seconds = frame(samples)
        emit("ins_engine_samples", samples=samples, size=f"{args.size}x{args.size}", seconds=round(seconds, 3),
             psnr_vs_64=round(psnr(image, reference), 2) if samples != REFERENCE else None)
        crop = (image[top:bottom, left:right] * 255 + 0.5).astype(np.uint8)
        tiles.append(np.repeat(np.repeat(crop, 4, axis=0), 4, axis=1))
        labels.append(f"{samples} a pixel, {seconds:.2f} s" + ("" if samples == REFERENCE else f", {psnr(image, reference):.1f} dB"))
    save_png(args.out, image_grid(tiles, labels))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
