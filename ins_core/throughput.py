"""Measured worker throughput on this machine, so the panel's time estimate is this machine's.

The worker records, per (device, mode, preset), the steps/s of each training stage and the seconds
spent outside training (start-up, export, renders), and the add-on the seconds its capture took,
into one small JSON file in the user's cache folder; the add-on reads it (plain Python: Blender imports this module) and turns a preset's
step counts into minutes. A missing, unreadable or malformed file means "not measured yet".

    {"version": 1, "records": {"cpu/nerf/preview": {"pretrain_steps_per_s": 6.1,
        "stylize_steps_per_s": 0.9, "stylize_view_pixels": 16384, "other_s": 40.0, "capture_s": 12.0,
        "threads": 1, "device_kind": "cpu", "updated": "2026-11-30T21:00:00"}}}

A stylization step renders one whole training view, so its time grows with the view's pixels (a
pre-training step takes a fixed batch of rays, whatever the views' size): the stylization rate is
recorded with the view size it ran at, and an estimate for another size scales it (`view_cost`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from .presets import DEVICE_KINDS  # an "auto" job's record says which the worker ran on

PATH_ENV = "INS_THROUGHPUT_FILE"
VERSION = 1
RATE_FIELDS = ("pretrain_steps_per_s", "stylize_steps_per_s")
SECONDS_FIELDS = ("other_s", "capture_s")  # the worker's time outside training; the add-on's capture
SIZE_FIELDS = ("stylize_view_pixels",)  # the training views' pixels (width x height) the stylization rate ran at
# A stylization step costs about (FIXED_VIEW_PIXELS + the view's pixels) x a machine's own factor:
# the loss network and the optimiser cost the same at every view size. Measured on a 2-core Xeon:
# 0.38 s a step at 64x64 and 0.62 s at 128x128 (the demo), 0.53 s at 100x100 and 3.8 s at 400x400
# (lego; the loss network at 256 px, then 512), both fitted by about 15 000 pixels' worth of fixed cost.
FIXED_VIEW_PIXELS = 15_000
MIN_STEPS = 20  # fewer measured steps than this say little about the rate (start-up dominates)


def default_path() -> Path:
    """INS_THROUGHPUT_FILE, else `ins_stylize/throughput.json` in the platform's user cache folder."""
    if os.environ.get(PATH_ENV):
        return Path(os.environ[PATH_ENV])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ins_stylize" / "throughput.json"


def key(device: str, mode: str, preset: str) -> str:
    """'cpu/nerf/preview': device as job.json names it (auto, cpu, cuda, mps)."""
    return f"{device}/{mode}/{preset}".lower()


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _clean(record) -> dict | None:
    """A record with only well-formed fields, or None when none is left."""
    if not isinstance(record, dict):
        return None
    clean = {name: float(record[name]) for name in RATE_FIELDS if _positive(record.get(name))}
    for name in SECONDS_FIELDS:
        if _positive(record.get(name)) or record.get(name) == 0:
            clean[name] = float(record[name])
    if not clean:
        return None
    clean.update({name: int(record[name]) for name in SIZE_FIELDS if _positive(record.get(name))})
    for name in ("threads", "updated"):
        if isinstance(record.get(name), (int, str)) and not isinstance(record.get(name), bool):
            clean[name] = record[name]
    if record.get("device_kind") in DEVICE_KINDS:
        clean["device_kind"] = record["device_kind"]
    return clean


def load(path: Path | None = None) -> dict[str, dict]:
    """Every usable record by key; {} for a missing or malformed file (never raises)."""
    path = Path(path) if path is not None else default_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    records = data.get("records") if isinstance(data, dict) and data.get("version") == VERSION else None
    if not isinstance(records, dict):
        return {}
    return {k: r for k, r in ((str(k), _clean(v)) for k, v in records.items()) if r is not None}


def record(record_key: str, values: dict, path: Path | None = None) -> bool:
    """Merge `values` into the record (write-then-rename); False when the file cannot be written."""
    path = Path(path) if path is not None else default_path()
    records = load(path)
    merged = {**records.get(record_key, {}), **values, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
    records[record_key] = merged
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".throughput", suffix=".tmp", delete=False,
                                         encoding="utf-8") as handle:
            json.dump({"version": VERSION, "records": records}, handle, indent=1)
        os.replace(handle.name, path)
    except OSError:
        return False
    return True


def stage_rate(steps: int, seconds: float) -> float | None:
    """Steps/s of a stage run, or None when too few steps were timed to mean anything."""
    if steps < MIN_STEPS or seconds <= 0:
        return None
    return steps / seconds


def view_cost(view_pixels: float, measured_pixels: float) -> float:
    """How many times a stylization step's time at `measured_pixels` one at `view_pixels` takes."""
    return (FIXED_VIEW_PIXELS + view_pixels) / (FIXED_VIEW_PIXELS + measured_pixels)


def estimate_s(rec: dict, pretrain_steps: int, stylize_steps: int, view_pixels: int | None = None) -> float | None:
    """Seconds for a job of these step counts at the recorded rates, its stylization on views of
    `view_pixels` (width x height; None: the size the rate was measured at); None without both rates."""
    pretrain, stylize = rec.get("pretrain_steps_per_s"), rec.get("stylize_steps_per_s")
    if not (_positive(pretrain) and _positive(stylize)):
        return None
    measured = rec.get("stylize_view_pixels")
    scale = view_cost(view_pixels, measured) if view_pixels and measured else 1.0
    return pretrain_steps / pretrain + stylize_steps / stylize * scale + sum(rec.get(name, 0.0) for name in SECONDS_FIELDS)


def record_capture(job_json: Path, seconds: float, path: Path | None = None) -> bool:
    """The capture's seconds for the job's (device, mode, preset); False when the job is unreadable."""
    try:
        spec = json.loads(Path(job_json).read_text(encoding="utf-8"))
        record_key = key(spec["device"], spec["mode"], spec["preset"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return record(record_key, {"capture_s": round(max(0.0, float(seconds)), 1)}, path)
