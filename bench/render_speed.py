"""Seconds per frame of a trained run in one process: the reference renderer and the fast path side
by side (frames interleaved, so other work on the machine weighs on both alike), at 1 and at all
threads, with the PSNR between the two frames.

    python bench/render_speed.py --run runs/lego100_styles/starry_night_default --size 256 --frames 3
    python bench/render_speed.py --sdf-like runs/lego100 --size 128   # an SDF field of that run's size
    python bench/render_speed.py --run RUN --size 1920x1080 --device cuda --threads 1
    python bench/render_speed.py --run RUN --workers 2   # also the fast path on 2 worker threads (as the server)

The SDF reference renderer evaluates every sample whatever the field holds, so an untrained SDF
field of the right size times it faithfully. JSON lines on stdout (and appended to --out).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import append_json_lines, emit_hardware, sync  # noqa: E402
from ins_core.data.cameras import Intrinsics, look_at  # noqa: E402
from ins_core.render.fast import fast_renderer  # noqa: E402
from ins_core.render.views import render_view  # noqa: E402


def load_model(args) -> tuple[torch.nn.Module, str]:
    from ins_core.train.loading import open_run
    from ins_core.train.scene_models import build_model

    if args.run:
        return open_run(args.run, args.device, load_data=False).model, str(args.run)
    config = json.loads((args.sdf_like / "run.json").read_text())
    aabb = torch.tensor(config["aabb"], dtype=torch.float32).view(2, 3)
    settings = {"field": config["model"]["field"], "n_samples": config["model"]["n_samples"]}
    return build_model("sdf", aabb, settings).to(args.device).eval(), f"untrained sdf sized like {args.sdf_like}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path)
    source.add_argument("--sdf-like", type=Path, help="a run whose box and field size the SDF takes")
    parser.add_argument("--size", default="256", help="N or WxH")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--workers", default="", help="also time frames split over N worker threads (torch at 1 thread), e.g. 2")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    width, height = (int(v) for v in args.size.split("x")) if "x" in args.size else (int(args.size),) * 2
    lines = [{"figure": "hardware", **emit_hardware(device)}]

    def record(figure: str, **values) -> None:
        line = {"figure": figure, **values}
        print(json.dumps(line), flush=True)
        lines.append(line)

    model, label = load_model(args)
    load_start = round(os.getloadavg()[0], 2)
    begin = time.perf_counter()
    fast_renderer(model)  # the lattices, built once per model (the render server does it before `ready`)
    prepare_s = round(time.perf_counter() - begin, 2)
    intrinsics = Intrinsics.from_fov(math.radians(40), width, height).as_tensor(device)
    radius = float((model.field.aabb[1] - model.field.aabb[0]).norm()) * 1.4
    white = torch.ones(3, device=device)
    configs = [(int(t), 1) for t in args.threads.split(",")] + [(1, int(w)) for w in args.workers.split(",") if w and int(w) > 1]
    for threads, workers in configs:
        torch.set_num_threads(threads)
        times = {"reference": [], "fast": []}
        agreement = []
        for frame in range(args.frames):  # an orbit around the box
            angle = 2 * math.pi * frame / max(args.frames, 1)
            eye = torch.tensor([math.cos(angle), math.sin(angle), 0.5], device=device) * radius
            c2w = look_at(eye + model.field.aabb.mean(0), model.field.aabb.mean(0))
            frames = {}
            for name in times:
                start = time.perf_counter()
                frames[name] = render_view(model, c2w, intrinsics, width, height, white, fast=name == "fast",
                                           workers=workers if name == "fast" else 1)
                sync(device)
                times[name].append(time.perf_counter() - start)
            mse = float(((frames["fast"].rgb - frames["reference"].rgb) ** 2).mean())
            agreement.append(round(-10 * math.log10(max(mse, 1e-12)), 2))
        medians = {name: statistics.median(t) for name, t in times.items()}
        record("render_frame", model=label, width=width, height=height, device=str(device), threads=threads, workers=workers, frames=args.frames,
               reference_s_median=round(medians["reference"], 3), fast_s_median=round(medians["fast"], 3),
               speedup=round(medians["reference"] / medians["fast"], 2), fast_rays_per_s=round(width * height / medians["fast"]), fast_fps=round(1 / medians["fast"], 2),
               prepare_s=prepare_s, psnr_fast_vs_reference_db=agreement,
               load_1min_start=load_start, load_1min_end=round(os.getloadavg()[0], 2))
    if args.out:
        append_json_lines(args.out, lines)


if __name__ == "__main__":
    main()
