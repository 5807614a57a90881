"""Worker training speed when the CPU is shared: steps/s of a NeRF fit (the worker's pre-training)
for 1, 2 and N torch threads (and "auto": the worker's adaptive rule), with the CPU quiet or busy, at normal and lowered priority.

    python bench/worker_load.py --loads quiet,torch1,cycles --out bench/results/cpu-worker-load.jsonl

Loads, each started before the fit and stopped after it:
  quiet   nothing else runs;
  torch1  another torch process keeps one core busy (1 thread of matrix products: a second worker);
  cycles  a Cycles render loop through bpy, all cores (an artist rendering while the job runs).
Each fit runs in a fresh process (threads and niceness are per process and niceness cannot be
raised back): warm-up steps, then --steps steps or --seconds, whichever ends first. The load's
own work rate during the fit (renders/min, products/min; also measured alone first) tells what the rest of the machine kept:
the proxy for a responsive Blender. One JSON line per figure, with the hardware and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO_DATA = ROOT / "runs" / "demo" / "job" / "dataset"

# A load counts its finished work units into a file (write-then-rename) so the parent can read its rate.
TORCH_LOAD = """
import os, sys, torch
torch.set_num_threads(1)
a = torch.randn(384, 384)
count, out = 0, sys.argv[1]
while True:
    for _ in range(10):
        b = a @ a
    count += 1
    with open(out + ".tmp", "w") as f:
        f.write(str(count))
    os.replace(out + ".tmp", out)
"""

CYCLES_LOAD = """
import os, sys, bpy
bpy.ops.wm.read_factory_settings(use_empty=False)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 16
scene.render.resolution_x, scene.render.resolution_y = 320, 240
scene.render.filepath = os.path.join(os.path.dirname(sys.argv[-1]), "frame.png")
count, out = 0, sys.argv[-1]
while True:
    bpy.ops.render.render(write_still=True)
    count += 1
    with open(out + ".tmp", "w") as f:
        f.write(str(count))
    os.replace(out + ".tmp", out)
"""

LOADS = {"torch1": TORCH_LOAD, "cycles": CYCLES_LOAD}


def child(args: argparse.Namespace) -> None:
    """One fit in this process: print {"steps_per_s", ...} as JSON."""
    import torch

    from ins_core.train.fit import FitRequest, start_fit

    from ins_core.sharing import Adaptive

    if args.nice:
        os.nice(args.nice)
    # "auto": the worker's rule (ins_core.sharing.Adaptive), which needs a calm spell before its last core.
    adaptive = Adaptive() if args.threads == "auto" else None
    torch.set_num_threads(adaptive.threads if adaptive else int(args.threads))
    warmup_s = adaptive.calm_s + adaptive.interval_s if adaptive else 0.0
    thread_steps: dict[int, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        session = start_fit(FitRequest(data=Path(args.data), kind="nerf", out=Path(tmp) / "run", device="cpu",
                                       resolution=64, steps=100_000, seed=0))
        session.checkpoint_every = 10**9  # no checkpoint writes inside the timed steps
        marks: list[float] = []
        deadline = [None]
        began = time.perf_counter()

        def on_step(_result, _elapsed):
            marks.append(time.perf_counter())
            if adaptive is not None and (changed := adaptive.step()):
                torch.set_num_threads(changed)
            if deadline[0] is None and len(marks) >= args.warmup and marks[-1] - began >= warmup_s:
                deadline[0] = marks[-1] + args.seconds
                del marks[:-1]
            elif deadline[0] is not None:
                thread_steps[torch.get_num_threads()] = thread_steps.get(torch.get_num_threads(), 0) + 1

        def should_stop() -> bool:
            return deadline[0] is not None and (len(marks) - 1 >= args.steps or time.perf_counter() > deadline[0])

        session.run_loop(on_step=on_step, should_stop=should_stop)
        steps = len(marks) - 1
        print(json.dumps({"steps": steps, "seconds": round(marks[-1] - marks[0], 3),
                          "steps_per_s": round(steps / (marks[-1] - marks[0]), 3),
                          "torch_threads": torch.get_num_threads(), "steps_by_threads": thread_steps, "nice": os.nice(0)}), flush=True)


class Load:
    """A background load process and the count of work it has done."""

    def __init__(self, name: str, folder: Path):
        self.name = name
        self.counter = folder / f"{name}.count"
        self.process = None
        if name in LOADS:
            self.process = subprocess.Popen([sys.executable, "-c", LOADS[name], str(self.counter)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 120
            while self.count() < 1:  # running for real (bpy or torch imported, first unit done)
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the {name} load did not start")
                time.sleep(0.2)

    def count(self) -> int:
        try:
            return int(self.counter.read_text())
        except (OSError, ValueError):
            return 0

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)


def measure(args: argparse.Namespace, data: Path, load: Load, threads: int, nice: int) -> dict:
    before, start = load.count(), time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", "--data", str(data), "--threads", str(threads),
                           "--nice", str(nice), "--steps", str(args.steps), "--seconds", str(args.seconds),
                           "--warmup", str(args.warmup)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    figure = json.loads(done.stdout.strip().splitlines()[-1])
    if load.process is not None:
        # Whole child run (start-up included): the load's rate while the worker ran beside it.
        figure["load_units_per_min"] = round((load.count() - before) / wall * 60, 2)
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", default=str(DEMO_DATA), help="a NeRF dataset folder (default: the demo job's)")
    parser.add_argument("--threads", default=None, help="torch thread counts, e.g. 1,2,auto, or none: the loads alone (default: 1, 2 and the core count)")
    parser.add_argument("--nice", default="0,10", help="niceness increments to try")
    parser.add_argument("--loads", default="quiet,torch1,cycles")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seconds", type=float, default=25.0, help="stop timing after this long even before --steps")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", default=None, help="append the JSON lines to this file too")
    args = parser.parse_args()
    if args.child:
        args.nice = int(args.nice)
        return child(args)

    import torch

    from bench.common import append_json_lines, emit, emit_hardware

    lines = []
    hardware = emit_hardware(torch.device("cpu"))
    lines.append({"figure": "hardware", **hardware})
    cores = os.cpu_count() or 1
    thread_counts = [t for t in args.threads.split(",") if t != "none"] if args.threads else [str(t) for t in sorted({1, 2, cores})]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "dataset"
        if Path(args.data).is_dir():
            shutil.copytree(args.data, data)  # a private copy: the demo folder may be rewritten meanwhile
        else:
            from ins_core.data.demo_scene import write_demo_dataset

            write_demo_dataset(data, n_train=24, n_test=0, resolution=64)
        for load_name in args.loads.split(","):
            load = Load(load_name, Path(tmp))
            try:
                if load.process is not None:  # the load's own rate with no worker beside it
                    before = load.count()
                    time.sleep(args.seconds)
                    line = {"figure": "load_alone", "load": load_name, "load_units_per_min": round((load.count() - before) / args.seconds * 60, 2),
                            "seconds": args.seconds, "loadavg": round(os.getloadavg()[0], 2), "cpu": hardware.get("cpu")}
                    emit(**line)
                    lines.append(line)
                for nice in (int(n) for n in args.nice.split(",")):
                    for threads in thread_counts:
                        load_before = os.getloadavg()[0]
                        figure = measure(args, data, load, threads, nice)
                        line = {"figure": "worker_steps_per_s", "load": load_name, "threads": int(threads) if threads.isdigit() else threads, "nice": nice,
                                **figure, "cores": cores, "loadavg_before": round(load_before, 2),
                                "loadavg_after": round(os.getloadavg()[0], 2), "cpu": hardware.get("cpu")}
                        emit(**line)
                        lines.append(line)
            finally:
                load.stop()
    if args.out:
        append_json_lines(args.out, lines)


if __name__ == "__main__":
    main()
