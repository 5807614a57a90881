"""What a worker's events say: its status, stage, progress, ETA, preview, result, the render
server's answers. `apply_event` is the one place an event changes the state; `WorkerProcess` feeds
it the events its reader decodes, and the add-on's progress bar, the batch command's lines and the
render engine read the state. No bpy, no subprocess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ins_core.protocol import (
    CancelledEvent,
    ErrorEvent,
    LogEvent,
    PreviewEvent,
    ProgressEvent,
    ReadyEvent,
    RenderedEvent,
    ResultEvent,
    StageEvent,
)

TERMINAL = ("finished", "cancelled", "failed")

# Overall progress bar: the share of the whole run each stage covers.
STAGE_SPANS = {
    "capture": (0.0, 0.1),
    "pretrain": (0.1, 0.6),
    "stylize": (0.6, 0.9),
    "export": (0.9, 1.0),
    "render": (0.0, 1.0),
}
STAGE_LABELS = {"capture": "Capturing views", "pretrain": "Pre-training", "stylize": "Stylizing",
                "export": "Exporting", "render": "Rendering"}



@dataclass
class WorkerState:
    status: str = "new"  # new, running, cancelling, finished, cancelled, failed
    stage: str = ""
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    psnr: float | None = None
    eta_s: float | None = None
    message: str = ""  # the latest line for the user (log events, then the final report)
    preview: Path | None = None
    preview_serial: int = 0  # bumps with every preview event (the same path may be rewritten)
    result: Path | None = None
    error: ErrorEvent | None = None
    cancelled: bool = False  # the worker said "cancelled"
    ready: bool = False  # the render server said "ready"
    rendered: dict[str, Path] = field(default_factory=dict)
    returncode: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def stage_fraction(self) -> float:
        if self.total_steps <= 0:
            return 0.0
        return max(0.0, min(1.0, self.step / self.total_steps))

    @property
    def overall(self) -> float:
        """0..1 over the whole run (stages weighted by STAGE_SPANS)."""
        if self.status == "finished":
            return 1.0
        low, high = STAGE_SPANS.get(self.stage, (0.0, 0.0))
        return low + (high - low) * self.stage_fraction

    def stage_text(self) -> str:
        label = STAGE_LABELS.get(self.stage, self.stage.capitalize() or "Starting")
        if self.total_steps > 0:
            label += f" {self.step}/{self.total_steps}"
        if self.psnr is not None:
            label += f", PSNR {self.psnr:.1f} dB"
        elif self.loss is not None:
            label += f", loss {self.loss:.4g}"
        return label


def format_eta(seconds: float | None) -> str:
    """'about 3 min left' style text; '' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s left"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min left"
    return f"about {seconds / 3600:.1f} h left"


def apply_event(state: WorkerState, event, job_file: Callable[[str, bool], Path | None]) -> None:
    """Take one decoded event into `state`; `job_file(path, allow_absolute)` resolves a path the
    event names inside the job folder (None when it points outside)."""
    s = state
    if isinstance(event, StageEvent):
        s.stage, s.total_steps, s.step = event.stage, event.total_steps, 0
        s.eta_s = None
    elif isinstance(event, ProgressEvent):
        s.step, s.total_steps = event.step, event.total_steps
        s.loss, s.psnr, s.eta_s = event.loss, event.psnr, event.eta_s
    elif isinstance(event, PreviewEvent):
        path = job_file(event.path, False)
        if path is not None:
            s.preview = path
            s.preview_serial += 1
    elif isinstance(event, ResultEvent):
        s.result = job_file(event.path, False)
    elif isinstance(event, ErrorEvent):
        s.error = event
    elif isinstance(event, CancelledEvent):
        s.cancelled = True
    elif isinstance(event, LogEvent):
        if event.level in ("info", "warning", "error") and event.message:
            s.message = event.message
            if event.level != "info":
                s.warnings.append(event.message)
    elif isinstance(event, ReadyEvent):
        s.ready = True
    elif isinstance(event, RenderedEvent):
        path = job_file(event.path, True)
        if path is not None:
            s.rendered[event.request_id] = path
