"""Helpers shared by the benchmarks: JSON lines with the hardware, wall-clock with device sync."""

from __future__ import annotations

import json
import resource
import sys
import time

import torch

from ins_core.device import hardware_description


def emit(figure: str, **values) -> None:
    """One JSON line per figure on stdout."""
    print(json.dumps({"figure": figure, **values}), flush=True)


def emit_hardware(device: torch.device) -> dict:
    info = hardware_description(device)
    emit("hardware", **info, python=sys.version.split()[0])
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> dict:
    """Peak GPU memory allocated by torch, or the process's peak resident memory on the CPU."""
    if device.type == "cuda":
        return {"peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


class Stopwatch:
    """Counts only the time between start() and stop(), so evaluation can be left out."""

    def __init__(self, device: torch.device):
        self.device = device
        self.total = 0.0
        self._started = None

    def start(self) -> None:
        self._started = time.perf_counter()

    def stop(self) -> float:
        sync(self.device)
        self.total += time.perf_counter() - self._started
        self._started = None
        return self.total

    def peek(self) -> float:
        return self.total + (time.perf_counter() - self._started if self._started is not None else 0.0)


def append_json_lines(path, lines: list[dict]) -> None:
    """Add figures to a results file (one JSON object per line), creating its folder."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.writelines(json.dumps(line) + "\n" for line in lines)


def resumed_stylizations(paths, device: str):
    """For each finished stylized run, its path and a stylize session resumed on it (the field,
    views, settings and loss network as `stylize` left them); the hardware said before the first."""
    from ins_core.eval.evaluate import content_run_of
    from ins_core.train.loading import open_run
    from ins_core.train.stylize import StylizeRequest, start_stylize

    for index, path in enumerate(paths):
        finished = open_run(path, device, load_data=False)
        if index == 0:
            emit_hardware(finished.device)
        content = content_run_of(finished)
        yield path, start_stylize(StylizeRequest(run=content.run.root, styles=finished.config["signature"]["styles"], out=path,
                                                 device=device, settings={}, force=False), log=lambda message: None)


def first_style_search(session):
    """A resumed stylize session's colour maps set back to the identity (what the palette match
    after training starts from), the identity, and its first style's palette search as `stylize` sets it up."""
    from ins_core.train.palette_match import PaletteSettings, style_search

    objective, field = session.objective, session.model.field
    identity = torch.eye(3, 4, device=field.color_maps.device).expand_as(field.color_maps)
    with torch.no_grad():
        field.color_maps.copy_(identity)
    s = objective.settings
    return identity, style_search(objective.palette_styles()[0], PaletteSettings(distribution=s.palette_distribution, consistency=s.palette_consistency))


def stylized_runs_parser(description: str, help_text: str = "finished single-style stylized runs"):
    """The arguments of a bench over finished stylized runs (`resumed_stylizations`): --stylized-run and --device."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--stylized-run", type=Path, nargs="+", required=True, help=help_text)
    parser.add_argument("--device", default="auto")
    return parser


def first_style_searches(description: str):
    """A bench over finished single-style stylized runs (`stylized_runs_parser`'s arguments): for
    each, its path, the resumed session and `first_style_search`'s identity and search."""
    args = stylized_runs_parser(description).parse_args()
    for path, session in resumed_stylizations(args.stylized_run, args.device):
        yield path, session, *first_style_search(session)
