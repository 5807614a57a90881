"""What leaving each ray's faintest samples out of a stylization's kept samples saves, and costs.

    python bench/faint_samples.py --run runs/demo/job/checkpoints/content --style runs/demo/job/styles/00_style.png
    python bench/faint_samples.py --run runs/lego100 --style ../shared/data/styles/starry_night.jpg --budgets 0 0.002 0.0039

For each budget (0: every visible sample, as before 2026-12-07): the share of samples kept over the
first views and their memory, the largest pixel difference from the full sum, and the colour heads' render and
backward on a view; then whole stylization steps, the budgets taking turns in one process (each
round takes every view's samples first, so only steps on kept samples are timed). One JSON line per
figure, the hardware first. The run is a trained content run; the stylized run is written to a
scratch folder and thrown away.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ins_core.train.style_objective as style_objective  # noqa: E402
from bench.common import emit, emit_hardware  # noqa: E402
from ins_core.train.stylize import StylizeRequest, start_stylize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a trained NeRF or SDF run")
    parser.add_argument("--style", type=Path, required=True)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.0, style_objective.FAINT_SAMPLES_BUDGET])
    parser.add_argument("--views", type=int, default=3, help="views the per-view figures are taken over")
    parser.add_argument("--steps", type=int, default=10, help="steps timed per budget and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        session = start_stylize(StylizeRequest(run=args.run, styles=[args.style], out=Path(scratch) / "stylized", device="cpu", force=True,
                                               settings={"steps": 10_000}))
        objective, field = session.objective, session.model.field
        emit_hardware(session.device)
        objective.model.set_style(torch.tensor([1.0]))
        views = objective.view_indices[: args.views]
        for budget in args.budgets:
            kept, kept_mb, difference, seconds = 0.0, 0.0, 0.0, []
            for view in views:
                style_objective.FAINT_SAMPLES_BUDGET, objective.sample_cache = 0.0, {}
                every = objective.view_samples(view)
                samples = every.without_faint(budget)
                kept += len(samples.weight) / len(every.weight) / len(views)
                kept_mb += samples.nbytes() / 2**20 / len(views)
                with torch.no_grad():
                    full = every.composite(field.surface_color(every), objective.white)
                    difference = max(difference, float((samples.composite(field.surface_color(samples), objective.white) - full).abs().max()))
                for _ in range(3):
                    started = time.perf_counter()
                    samples.composite(field.surface_color(samples), objective.white).sum().backward()
                    seconds.append(time.perf_counter() - started)
            emit("faint_samples_view", budget=budget, kept_share=round(kept, 3), kept_mb_per_view=round(kept_mb, 2), max_pixel_difference=round(difference, 5),
                 render_backward_s=round(sum(seconds) / len(seconds), 3), views=len(views))
        for round_index in range(args.rounds):
            for budget in args.budgets:
                style_objective.FAINT_SAMPLES_BUDGET, objective.sample_cache = budget, {}
                for view in objective.view_indices:
                    objective.view_samples(view)
                started = time.perf_counter()
                for _ in range(args.steps):
                    session.trainer.step()
                emit("faint_samples_step", budget=budget, round=round_index, step_s=round((time.perf_counter() - started) / args.steps, 3))


if __name__ == "__main__":
    main()
