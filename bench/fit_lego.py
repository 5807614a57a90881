"""Time-to-PSNR of NeRF reconstruction on NeRF-synthetic lego (held-out views r_0, r_10, ..., r_90).

    python bench/fit_lego.py --resolution 100 --time-budget 60               # CPU target: >= 30 dB
    python bench/fit_lego.py --resolution 800 --time-budget 60 --device cuda # H100 target: >= 33 dB
    python bench/fit_lego.py --resolution 100 --time-budget 60 --set n_levels=12 --set log2_table_size=17 \
        --set lr=0.01 --set final_lr_fraction=0.1                          # the CPU's settings before 2026-12-03

Prints JSON lines: the hardware, then PSNR/SSIM on the held-out views at several training times
(evaluation time is not counted), then peak memory. Reads ../shared/data; the project itself never does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Stopwatch, emit, emit_hardware, peak_memory_mb  # noqa: E402
from bench.hashgrid_lookups import BLENDS, LOOKUPS, use_blend, use_lookups  # noqa: E402
from ins_core.eval.evaluate import evaluate_views  # noqa: E402
from ins_core.train.fit import TUNABLE, FitRequest, start_fit  # noqa: E402
from ins_core.train.loading import TrainedRun  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nerf_synthetic_lego"
HOLDOUT = [f"r_{i}" for i in range(0, 100, 10)]


def lego_fit_request(data: Path, out: Path, device: str, resolution: int, batch_rays: int | None = None,
                     tuning: dict | None = None) -> FitRequest:
    """A NeRF fit of lego with r_0, r_10, ..., r_90 held out. Its steps are an upper bound: the
    caller's time budget (or step count) ends it."""
    return FitRequest(data=data, kind="nerf", out=out, device=device, resolution=resolution, steps=10**6, batch_rays=batch_rays,
                      holdout_names=HOLDOUT, force=True, tuning=tuning)


def setting(text: str) -> tuple[str, float | int]:
    key, _, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = None
    if key not in TUNABLE or number is None:
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=NUMBER with KEY one of {', '.join(TUNABLE)}")
    return key, int(number) if number.is_integer() and key in ("n_levels", "log2_table_size") else number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--resolution", type=int, default=100)
    parser.add_argument("--time-budget", type=float, default=600.0)
    parser.add_argument("--evaluations", type=int, default=6, help="how many points on the time-to-PSNR curve")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-rays", type=int)
    parser.add_argument("--out", type=Path, help="keep the run here (default: a temporary folder)")
    parser.add_argument("--lookups", choices=LOOKUPS, default="auto",
                        help="the hash grid's look-ups: the product's choice (auto: all at once on a GPU, level by level on a CPU), or one way forced")
    parser.add_argument("--blend", choices=BLENDS, default="auto",
                        help="how the hash grid blends its corners: the product's choice (auto: sums on a GPU, matrix products on a CPU), or one way forced")
    parser.add_argument("--set", dest="tuning", type=setting, action="append", default=[], metavar="KEY=VALUE",
                        help=f"replace one of the device's defaults ({', '.join(TUNABLE)}), e.g. n_levels=12")
    args = parser.parse_args()

    use_lookups(args.lookups)
    use_blend(args.blend)
    out = args.out or Path(tempfile.mkdtemp(prefix="fit_lego_")) / "run"
    # The time budget ends the run. The learning-rate decay is set for roughly the number of steps
    # the budget allows (measured after the first steps).
    session = start_fit(lego_fit_request(args.data, out, args.device, args.resolution, args.batch_rays, dict(args.tuning)))
    device = session.device
    emit_hardware(device)
    field = session.config["model"]["field"]
    emit("setup", lookups=args.lookups, blend=args.blend, resolution=args.resolution, lr=session.trainer.base_lr, final_lr_fraction=session.trainer.final_lr_fraction,
         n_levels=field["n_levels"], log2_table_size=field["log2_table_size"], train_views=len(session.data.train), test_views=len(session.data.test),
         batch_rays=session.config["batch_rays"], n_samples=session.config["model"]["n_samples"], aabb=session.config["aabb"])
    trained = TrainedRun(session.run, session.config, session.model, session.data, device)
    marks = [args.time_budget * (k + 1) / args.evaluations for k in range(args.evaluations)]
    clock = Stopwatch(device)
    calibrated = False
    for mark in marks:
        clock.start()
        while clock.peek() < mark:
            session.trainer.step()
            if not calibrated and session.step == 50:
                clock.stop()
                steps_in_budget = int(50 * args.time_budget / clock.total)
                session.trainer.total_steps = steps_in_budget
                emit("schedule", steps_planned=steps_in_budget)
                calibrated = True
                clock.start()
        elapsed = clock.stop()
        session.model.eval()
        metrics = evaluate_views(trained, session.data.test)
        emit("time_to_psnr", elapsed_s=round(elapsed, 1), step=session.step, psnr=round(metrics["psnr"], 2), ssim=round(metrics["ssim"], 4))
    emit("memory", **peak_memory_mb(device))
    session.save("done")


if __name__ == "__main__":
    main()
