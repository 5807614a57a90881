"""The panel's time estimate: this machine's measured throughput, else the presets' rough figures.

The worker records its steps/s per (device, mode, preset) in a small file (ins_core.throughput);
here a preset's step counts become "About 7 min here" (its stylization scaled to the size of the
views the job will train on, when the record says what size it was measured at). Without a record for that choice, the
presets' constant ranges are shown and say that nothing was measured yet. The file is read again
only when it changes (the panel draws often). Plain Python: no bpy, no torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from ins_core import presets as core_presets
from ins_core import throughput

from .presets import QualityPreset

_cache: dict = {"path": None, "stamp": None, "records": {}}


def _records(path: Path | None = None) -> dict[str, dict]:
    path = Path(path) if path is not None else throughput.default_path()
    try:
        info = os.stat(path)
        stamp = (info.st_mtime_ns, info.st_size)
    except OSError:
        stamp = None
    if _cache["path"] != path or _cache["stamp"] != stamp:
        _cache.update(path=path, stamp=stamp, records=throughput.load(path) if stamp else {})
    return _cache["records"]


def measured_seconds(preset: QualityPreset, mode: str, device: str, path: Path | None = None,
                     view_size: tuple[int, int] | None = None) -> float | None:
    """Seconds the preset's job takes here at the recorded rates, training on views of `view_size`
    (width, height; None: as measured); None when not measured yet."""
    record = _records(path).get(throughput.key(device, mode, preset.key))
    if record is None:
        return None
    # The preset's steps on the device the record was measured on: an "auto" job's is in the record.
    kind = record.get("device_kind", "cpu") if device == "auto" else core_presets.device_kind(device)
    steps = preset.budget(kind)
    pixels = view_size[0] * view_size[1] if view_size else None
    return throughput.estimate_s(record, steps["pretrain_steps"], steps["stylize_steps"], pixels)


def _about(seconds: float) -> str:
    if seconds < 90:
        return f"About {max(10, round(seconds / 10) * 10)} s here"
    minutes = seconds / 60
    if minutes < 90:
        return f"About {round(minutes)} min here"
    return f"About {minutes / 60:.1f} h here"


def estimate_lines(preset: QualityPreset, mode: str, device: str, path: Path | None = None,
                   view_size: tuple[int, int] | None = None) -> list[str]:
    """Short lines for the sidebar: the measured estimate, or the rough ranges marked as such."""
    seconds = measured_seconds(preset, mode, device, path, view_size)
    if seconds is not None:
        return [_about(seconds), "(measured on this machine)"]
    return [*preset.estimate_lines(), "Not measured here yet"]
