"""Seconds per frame of the render server behind the INS render engine (model loaded once).

    python bench/render_server_speed.py JOB --width 800 --height 800 --frames 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit  # noqa: E402
from ins_core.protocol import QuitCommand, RenderCommand, decode_event, encode  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("job", type=Path)
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--frames", type=int, default=5)
    args = parser.parse_args()
    transforms = json.loads((args.job / "dataset" / "transforms_train.json").read_text())
    c2w = transforms["frames"][0]["transform_matrix"]
    import math

    focal = 0.5 * args.width / math.tan(0.5 * transforms["camera_angle_x"])
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "ins_core.worker", str(args.job), "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    for line in server.stdout:
        event = decode_event(line)
        if event is not None and event.event in ("ready", "error"):
            break
    emit("render_server_start", seconds=round(time.perf_counter() - start, 2), event=event.event)
    out = Path(tempfile.mkdtemp())
    times = []
    for frame in range(args.frames):
        command = RenderCommand(request_id=str(frame), c2w=c2w, fx=focal, fy=focal, cx=args.width / 2, cy=args.height / 2,
                                width=args.width, height=args.height, out=str(out / f"{frame}.png"), style_mix=None)
        begin = time.perf_counter()
        server.stdin.write(encode(command) + "\n")
        server.stdin.flush()
        for line in server.stdout:
            event = decode_event(line)
            if event is not None and event.event in ("rendered", "error"):
                break
        times.append(time.perf_counter() - begin)
    server.stdin.write(encode(QuitCommand()) + "\n")
    server.stdin.flush()
    server.wait(timeout=60)
    emit("render_server_frame", width=args.width, height=args.height, seconds_first=round(times[0], 3),
         seconds_median=round(sorted(times)[len(times) // 2], 3), frames=len(times))


if __name__ == "__main__":
    main()
