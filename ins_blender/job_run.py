"""A whole run: an optional capture (a background Blender rendering the views), then the worker,
as one thing to poll. No bpy, no torch."""

from __future__ import annotations

import time
from pathlib import Path

from ins_core import throughput
from ins_core.job import JobPaths

from .worker_launch import WorkerError, worker_argv, worker_env
from .worker_process import WorkerProcess
from .worker_state import TERMINAL, WorkerState


class JobRun:
    """Capture (optional, a background Blender) then the worker, as one thing to poll.

    status: capturing, running, cancelling, finished, cancelled, failed. `message` is the latest
    line for the user and, at the end, the one-sentence report.
    """

    def __init__(self, job_dir, python: str, *, bundled: bool = True, capture_argv: list[str] | None = None,
                 capture_env: dict | None = None, scene_name: str = "") -> None:
        self.job = JobPaths(Path(job_dir).resolve())
        self.python = python
        self.bundled = bundled
        self.capture_argv = capture_argv
        self.capture_env = capture_env
        self.scene_name = scene_name
        self.capture: WorkerProcess | None = None
        self.worker: WorkerProcess | None = None
        self.status = "new"
        self.message = ""
        self._cancel = False
        self.started_at = time.monotonic()

    @property
    def current(self) -> WorkerProcess | None:
        return self.worker or self.capture

    @property
    def state(self) -> WorkerState:
        current = self.current
        return current.state if current is not None else WorkerState()

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def result_json(self) -> Path | None:
        return self.worker.state.result if self.worker is not None else None

    def start(self) -> "JobRun":
        """Start the first process; WorkerError when it cannot start (nothing is left running)."""
        if self.capture_argv:
            self.capture = WorkerProcess(self.capture_argv, self.job.root, env=self.capture_env,
                                         stderr_path=self.job.root / "capture_stderr.txt",
                                         label="capture", python=self.capture_argv[0]).start()
            self.status = "capturing"
            self.message = "Capturing views in a background Blender..."
        else:
            self._start_worker()
        return self

    def _start_worker(self) -> None:
        env = worker_env(self.bundled)
        self.worker = WorkerProcess(worker_argv(self.python, self.job.root, bundled=self.bundled), self.job.root, env=env,
                                    label="worker", python=self.python).start()
        self.status = "running"
        self.message = "Worker started."

    def update(self) -> list:
        """Poll the current process; moves from capture to the worker; never blocks."""
        if self.done:
            return []
        current = self.current
        events = current.poll() if current is not None else []
        state = current.state if current is not None else None
        if state is not None and state.message:
            self.message = state.message
        if current is self.capture and state is not None and state.done:
            if state.status == "finished" and not self._cancel:
                throughput.record_capture(self.job.job_json, time.monotonic() - self.started_at)  # the panel's estimate
                try:
                    self._start_worker()
                except WorkerError as error:
                    self.status, self.message = "failed", str(error)
            elif state.status == "finished":
                self.status, self.message = "cancelled", "Cancelled during the capture."
            else:
                self.status = state.status
                self.message = state.message if state.status == "failed" else "Cancelled during the capture."
        elif current is self.worker and state is not None:
            if state.done:
                self.status, self.message = state.status, state.message
            elif state.status == "cancelling":
                self.status = "cancelling"
        return events

    def request_cancel(self) -> None:
        self._cancel = True
        if self.current is not None and not self.done:
            self.current.request_cancel()
            self.status = "cancelling"
            self.message = "Cancelling..."

    def wait(self, timeout: float | None = None, on_events=None, should_stop=None, silence_s: float | None = None) -> str:
        """Block until the run ends (batch mode and tests), `timeout` seconds in all, or until the
        current process has sent no event for `silence_s` seconds (a hang: a slow machine still
        sends progress)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        heard = time.monotonic()
        while not self.done:
            current = self.current
            events = current.wait_event(0.1) if current is not None else []
            # wait_event already applied them; update() moves phases, copies the status and may
            # drain events that came meanwhile: those are shown too.
            events += self.update()
            if events:
                heard = time.monotonic()
                if on_events is not None:
                    on_events(events)
            if should_stop is not None and not self._cancel and should_stop():
                self.request_cancel()
            if deadline is not None and time.monotonic() > deadline:
                break
            if silence_s is not None and time.monotonic() - heard > silence_s:
                break
        return self.status
