"""Two fields that pass through each other (a stylized mesh and a copy of it pushed into it): the
line where they meet, laid together pixel by pixel (each field's frame first, then at each pixel
the field nearer at the pixel's centre over the other, as the INS engine did before 2026-12-06)
and sample by sample (`render_fields`, each of a pixel's rays), both against the same frame with
64 samples a pixel laid sample by sample. PSNR over the frame and over the pixels along the line
(JSON lines with the hardware), in one picture with the meeting enlarged.

    python bench/fields_meeting.py --job runs/demo/job --out docs/figures/ins_engine_fields_meeting.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware  # noqa: E402
from ins_core.data.placement import Placement  # noqa: E402
from ins_core.eval.pictures import image_grid, save_png  # noqa: E402
from ins_core.job import JobPaths  # noqa: E402
from ins_core.render.frame import FieldLayer, render_fields, render_frame  # noqa: E402
from ins_core.render.passes import srgb_to_linear  # noqa: E402
from ins_core.render.together import frames_together  # noqa: E402
from ins_core.render_server import served_job  # noqa: E402


def copy_placement(move: list[float], turn_degrees: float, scale: float) -> Placement:
    """Moved by `move`, turned about the vertical and scaled evenly (what Shift+D then G, R, S give)."""
    turn = math.radians(turn_degrees)
    matrix = torch.eye(4, dtype=torch.float64)
    matrix[:2, :2] = torch.tensor([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]], dtype=torch.float64)
    matrix[:3, :3] *= scale
    matrix[:3, 3] = torch.tensor(move, dtype=torch.float64)
    return Placement.from_matrix(matrix)


def psnr(image: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR in dB between sRGB pictures in [0, 1]."""
    error = float(((image - reference) ** 2).mean())
    return 10 * math.log10(1.0 / max(error, 1e-12))


def enlarged(image: np.ndarray, centre: tuple[int, int], half: int, factor: int) -> np.ndarray:
    """The square of `half` pixels either side of `centre` (row, column), each pixel `factor` times wider."""
    rows = slice(max(0, centre[0] - half), centre[0] + half)
    columns = slice(max(0, centre[1] - half), centre[1] + half)
    return image[rows, columns].repeat(factor, axis=0).repeat(factor, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="a finished INS job folder (make demo's runs/demo/job)")
    parser.add_argument("--out", type=Path, required=True, help="the picture (PNG)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=4, help="samples a pixel (a square number), as the engine's Render Samples")
    parser.add_argument("--view", type=int, default=0, help="which of the job's held-out cameras")
    parser.add_argument("--move", type=float, nargs=3, default=(0.45, 0.15, 0.05), help="the copy's move, in scene units")
    parser.add_argument("--turn", type=float, default=40.0, help="the copy's turn about the vertical, degrees")
    parser.add_argument("--scale", type=float, default=0.9)
    args = parser.parse_args()

    job = JobPaths(args.job.resolve())
    served = served_job(job, "cpu")
    emit_hardware(served.run.device)
    cameras = json.loads((job.dataset_dir / "transforms_test.json").read_text())
    c2w = torch.tensor(cameras["frames"][args.view]["transform_matrix"], dtype=torch.float32)
    zoom = args.size / cameras["w"]
    intrinsics = torch.tensor([cameras["fl_x"], cameras["fl_y"], cameras["cx"], cameras["cy"]], dtype=torch.float32) * zoom
    model = served.run.model
    weights = served.style_weights(None)  # as the INS engine shows the job
    if weights is not None:
        model.set_style(weights)
    placements = [None, copy_placement(args.move, args.turn, args.scale)]
    background = torch.tensor([0.8, 0.8, 0.8])
    size = (args.size, args.size)

    started = time.perf_counter()
    alone = [render_frame(model, c2w, intrinsics, *size, samples=args.samples, placement=p, ordered=True) for p in placements]
    by_pixel = frames_together(alone, background)
    by_pixel_s = time.perf_counter() - started
    started = time.perf_counter()
    by_sample = render_fields([FieldLayer(model, p) for p in placements], c2w, intrinsics, *size, samples=args.samples,
                              background=background)
    by_sample_s = time.perf_counter() - started
    reference = render_fields([FieldLayer(model, p) for p in placements], c2w, intrinsics, *size, samples=64, background=background)

    # Along the line: both fields opaque there, and the reference a share of each (neither alone).
    linear = [srgb_to_linear(frame.rgba[..., :3]) for frame in (reference, *alone)]
    apart = [(linear[0] - one).abs().amax(dim=-1) > 0.03 for one in linear[1:]]
    line = (alone[0].rgba[..., 3] > 0.99) & (alone[1].rgba[..., 3] > 0.99) & apart[0] & apart[1]
    figures = {}
    for name, frame, seconds in (("by_pixel", by_pixel, by_pixel_s), ("by_sample", by_sample, by_sample_s)):
        figures[name] = (psnr(frame.rgba[..., :3], reference.rgba[..., :3]),
                         psnr(frame.rgba[..., :3][line], reference.rgba[..., :3][line]))
        emit("ins_fields_meeting", laid_together=name, size=f"{args.size}x{args.size}", samples=args.samples,
             seconds=round(seconds, 2), psnr_frame=round(figures[name][0], 2), psnr_meeting_line=round(figures[name][1], 2),
             meeting_pixels=int(line.sum()), reference_samples=64)

    pictures = [(frame.rgba[..., :3].clamp(0, 1).numpy() * 255).round().astype(np.uint8) for frame in (by_pixel, by_sample, reference)]
    rows, columns = torch.nonzero(line, as_tuple=True)
    centre = (int(rows.float().median()), int(columns.float().median()))
    labels = [f"pixel by pixel, {args.samples} samples: {figures['by_pixel'][1]:.1f} dB on the line",
              f"sample by sample, {args.samples} samples: {figures['by_sample'][1]:.1f} dB",
              "sample by sample, 64 samples (reference)"]
    crops = [enlarged(picture, centre, args.size // 10, 4) for picture in pictures]
    save_png(args.out, image_grid([*pictures, *crops], [*labels, *[f"enlarged 4x: {label.split(':')[0]}" for label in labels]], columns=3))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
