"""Where a NeRF fit step's time goes: torch's profiler over a few steps of a lego fit, the
operations that took the most device time (CUDA kernels on a GPU, CPU operators on a CPU).

    python bench/fit_profile.py --data .benchdata/lego400 --resolution 400 --device cuda [--blend sum]

Warms up first (the occupancy grid settles, the allocator fills), then profiles --steps steps.
Prints JSON lines: the hardware, the setup, a step's mean time, then one line per operation
(name, calls, total and per-step milliseconds, its share of the profiled device time; on a GPU
both operators and their kernels are listed, each share against the kernels' total).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Stopwatch, emit, emit_hardware  # noqa: E402
from bench.fit_lego import DEFAULT_DATA, lego_fit_request  # noqa: E402
from bench.hashgrid_lookups import BLENDS, LOOKUPS, use_blend, use_lookups  # noqa: E402
from ins_core.train.fit import start_fit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--resolution", type=int, default=400)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--warmup", type=int, default=300, help="steps before the profile")
    parser.add_argument("--steps", type=int, default=32, help="steps profiled")
    parser.add_argument("--top", type=int, default=20, help="operations listed")
    parser.add_argument("--lookups", choices=LOOKUPS, default="auto")
    parser.add_argument("--blend", choices=BLENDS, default="auto")
    args = parser.parse_args()
    use_lookups(args.lookups)
    use_blend(args.blend)
    out = Path(tempfile.mkdtemp(prefix="fit_profile_")) / "run"
    session = start_fit(lego_fit_request(args.data, out, args.device, args.resolution))
    device = session.device
    emit_hardware(device)
    emit("setup", resolution=args.resolution, lookups=args.lookups, blend=args.blend, warmup=args.warmup, steps=args.steps,
         batch_rays=session.config["batch_rays"], n_samples=session.config["model"]["n_samples"])
    session.trainer.total_steps = args.warmup + 2 * args.steps  # the learning rate decays as in a short fit
    for _ in range(args.warmup):
        session.trainer.step()
    clock = Stopwatch(device)
    clock.start()
    for _ in range(args.steps):
        session.trainer.step()
    emit("fit_step", mean_ms=round(1e3 * clock.stop() / args.steps, 2), unprofiled=True)
    on_gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as profiler:
        for _ in range(args.steps):
            session.trainer.step()
        if on_gpu:
            torch.cuda.synchronize(device)
    # Self time: each operation's own, not its children's. On a GPU both an operator (aten::bmm) and
    # the kernels it launched carry the same device time, so the whole is the kernels' sum alone.
    timed = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    events = [event for event in profiler.key_averages() if getattr(event, timed, 0) > 0]
    kernels = [event for event in events if event.device_type != DeviceType.CPU] if on_gpu else events
    total = sum(getattr(event, timed) for event in kernels or events) or 1.0
    for event in sorted(events, key=lambda e: getattr(e, timed), reverse=True)[: args.top]:
        spent = getattr(event, timed)
        emit("fit_profile", op=event.key[:120], calls=event.count, total_ms=round(spent / 1e3, 2),
             per_step_ms=round(spent / 1e3 / args.steps, 3), share=round(spent / total, 3), device_time=on_gpu)


if __name__ == "__main__":
    main()
