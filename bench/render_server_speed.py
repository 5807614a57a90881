"""Seconds per frame of the render server behind the INS render engine (model loaded once):
the reference renderer and the fast path side by side in one run, frames interleaved so that
other work on the machine weighs on both alike.

    python bench/render_server_speed.py JOB --width 256 --height 256 --frames 5 --out bench/results/x.jsonl

With --baseline DIR (a checkout of earlier code, e.g. `git archive COMMIT | tar -x -C DIR`) a
third server runs that code's fast path, so the ratio to the previous code comes from the same run.

Also times the viewport's first image: 1/8 of a --viewport region (what the engine asks for first
when the view stops), and a 1/16 one for comparison. Each request orbits to the next training camera. JSON lines on stdout (and
appended to --out), with the hardware and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import append_json_lines, emit, emit_hardware  # noqa: E402
from ins_core.protocol import QuitCommand, RenderCommand, decode_event, encode  # noqa: E402

REFERENCE_SERVER = "import sys; from ins_core.render_server import serve; sys.exit(serve(sys.argv[1], fast=False))"


class Server:
    def __init__(self, job: Path, fast: bool, code: Path | None = None):
        """`code`: a checkout whose ins_core the server runs (default: this one)."""
        argv = ["-m", "ins_core.worker", str(job.resolve()), "--serve"] if fast else ["-c", REFERENCE_SERVER, str(job.resolve())]
        env = dict(os.environ, PYTHONPATH=str(code)) if code else None
        start = time.perf_counter()
        self.process = subprocess.Popen([sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        cwd=code, env=env)
        event = self._wait(("ready", "error"))
        if event.event != "ready":
            raise SystemExit(f"the render server for {job} did not start: {event}")
        self.start_s = time.perf_counter() - start

    def _wait(self, kinds: tuple[str, ...]):
        for line in self.process.stdout:
            event = decode_event(line)
            if event is not None and event.event in kinds:
                return event
        raise SystemExit("the render server stopped without answering")

    def render(self, command: RenderCommand) -> float:
        begin = time.perf_counter()
        self.process.stdin.write(encode(command) + "\n")
        self.process.stdin.flush()
        event = self._wait(("rendered", "error"))
        if event.event != "rendered":
            raise SystemExit(f"render failed: {event}")
        return time.perf_counter() - begin

    def close(self) -> None:
        self.process.stdin.write(encode(QuitCommand()) + "\n")
        self.process.stdin.flush()
        self.process.wait(timeout=60)


def command_for(transforms: dict, view: int, width: int, height: int, out: Path) -> RenderCommand:
    frames = transforms["frames"]
    focal = 0.5 * width / math.tan(0.5 * transforms["camera_angle_x"])
    return RenderCommand(request_id=str(view), c2w=frames[view % len(frames)]["transform_matrix"], fx=focal, fy=focal,
                         cx=width / 2, cy=height / 2, width=width, height=height, out=str(out), style_mix=None)


def psnr(a: Path, b: Path) -> float:
    """PSNR of what is seen: premultiplied colour and alpha (the straight colour of a nearly
    transparent pixel is invisible over any background, yet divided by a tiny alpha it can be anything)."""
    x, y = (np.asarray(Image.open(p).convert("RGBA"), dtype=np.float64) / 255 for p in (a, b))
    x, y = (np.concatenate([z[..., :3] * z[..., 3:], z[..., 3:]], axis=-1) for z in (x, y))
    return round(-10 * math.log10(max(float(((x - y) ** 2).mean()), 1e-12)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("job", type=Path)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--viewport", default="1280x720", help="region whose 1/8 is the first preview image")
    parser.add_argument("--no-reference", action="store_true", help="time the fast server only (large frames)")
    parser.add_argument("--baseline", type=Path, help="a checkout of earlier code: its fast server is timed too")
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args()
    lines: list[dict] = []

    def record(figure: str, **values) -> None:
        emit(figure, **values)
        lines.append({"figure": figure, **values})

    import torch

    lines.append({"figure": "hardware", **emit_hardware(torch.device("cpu"))})
    record("load_average", when="start", load_1min=round(os.getloadavg()[0], 2), cpus=os.cpu_count())
    transforms = json.loads((args.job / "dataset" / "transforms_train.json").read_text())
    out = Path(tempfile.mkdtemp())
    servers = {"fast": Server(args.job, fast=True)}
    if args.baseline:
        servers["baseline"] = Server(args.job, fast=True, code=args.baseline.resolve())
    if not args.no_reference:
        servers["reference"] = Server(args.job, fast=False)
    record("render_server_start", **{f"{name}_s": round(s.start_s, 2) for name, s in servers.items()})

    times: dict[str, list[float]] = {name: [] for name in servers}
    agreement = []
    for frame in range(args.frames):
        for name, server in servers.items():
            times[name].append(server.render(command_for(transforms, frame, args.width, args.height, out / f"{name}{frame}.png")))
        if "reference" in servers:
            agreement.append(psnr(out / f"fast{frame}.png", out / f"reference{frame}.png"))
    medians = {f"{name}_s_median": round(statistics.median(t), 3) for name, t in times.items()}
    ratio = {f"speedup_vs_{name}": round(medians[f"{name}_s_median"] / medians["fast_s_median"], 2) for name in servers if name != "fast"}
    record("render_server_frame", job=str(args.job), baseline=str(args.baseline) if args.baseline else None, width=args.width, height=args.height, frames=args.frames, **medians,
           **{f"{name}_s_all": [round(x, 3) for x in t] for name, t in times.items()}, **ratio,
           psnr_fast_vs_reference_db=agreement or None)

    region_w, region_h = (int(v) for v in args.viewport.split("x"))
    for level, fraction in enumerate((8, 16)):  # 1/8: ins_blender/viewport_preview.py VIEWPORT_LEVELS[0]
        small_w, small_h = math.ceil(region_w / fraction), math.ceil(region_h / fraction)
        first = {name: [] for name in servers if name != "reference"}
        for k in range(args.frames):
            for name in first:
                command = command_for(transforms, 100 + k, small_w, small_h, out / f"small{name}{fraction}_{k}.png")
                first[name].append(servers[name].render(command))
        record("viewport_first_image" if level == 0 else f"viewport_image_1_{fraction}", viewport=args.viewport, fraction=f"1/{fraction}",
               width=small_w, height=small_h, **{f"{name}_s_median": round(statistics.median(t), 3) for name, t in first.items()},
               **{f"{name}_s_all": [round(x, 3) for x in t] for name, t in first.items()})
    for server in servers.values():
        server.close()
    record("load_average", when="end", load_1min=round(os.getloadavg()[0], 2), cpus=os.cpu_count())
    if args.out:
        append_json_lines(args.out, lines)


if __name__ == "__main__":
    main()
