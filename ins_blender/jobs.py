"""Start, watch and stop the worker subprocess without ever blocking Blender's main thread.

Two layers in one module:

* Plain Python (no bpy, no torch), testable anywhere:
  `WorkerProcess` runs one subprocess that speaks the worker protocol (`ins_core.protocol`):
  `subprocess.Popen([python, "-m", "ins_core.worker", JOB], stdin=PIPE, stdout=PIPE,
  stderr=JOB/worker_stderr.txt)`, no shell; a daemon thread decodes stdout lines into a queue;
  `poll()` drains the queue and never waits. `request_cancel()` writes JOB/cancel and sends
  SIGTERM (the worker checkpoints and exits), `cancel()` also waits and kills after a timeout.
  A worker that cannot start, crashes, or exits without a result ends in status "failed" with one
  sentence naming the log file (and what to do when torch is missing).
  `JobRun` chains an optional capture process (a background Blender rendering the views) and the
  worker. `check_worker()` asks a Python whether it has torch (and CUDA) and ins_core.

* Blender glue (imports bpy lazily): a registry of running jobs per scene, a `bpy.app.timers`
  poller that copies their state into the scene's INS settings and the preview image, file-load
  handlers, and `shutdown_all()` (also run at exit) so quitting Blender stops every worker.
"""

from __future__ import annotations

import atexit
import collections
import json
import math
import os
import platform
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ins_core import throughput
from ins_core.errors import InputError
from ins_core.job import JobPaths
from ins_core.protocol import (
    CancelledEvent,
    ErrorEvent,
    LogEvent,
    PreviewEvent,
    ProgressEvent,
    ProtocolError,
    ReadyEvent,
    RenderedEvent,
    ResultEvent,
    StageEvent,
    decode_event,
    encode,
)

WORKER_MODULE = "ins_core.worker"  # what `python -m` runs; tests point it at a stand-in
EXTRA_PATHS: list[str] = []  # prepended to the worker's PYTHONPATH (tests, development)
STDERR_NAME = "worker_stderr.txt"
SERVER_STDERR_NAME = "render_server_stderr.txt"
CANCEL_GRACE_S = 30.0  # after a cancel request, how long the worker may take to checkpoint
EXIT_WITHOUT_EOF_S = 2.0  # a dead worker whose stdout stays open (a grandchild holds it)

TERMINAL = ("finished", "cancelled", "failed")
PREFERENCES_HINT = "Preferences > Add-ons > INS for Blender > Worker Python"
# Python versions each platform's full extension zip bundles torch for (build_addon.py; Blender
# installs only the wheels of its own platform and Python). linux-x64 lacks 3.13: PyPI has no cp313
# CPU torch for Linux. macos-x64 has no full zip (no torch wheels after 2.2).
BUNDLED_TORCH_PYTHONS: dict[str, tuple[tuple[int, int], ...]] = {
    "linux-x64": ((3, 11),),
    "windows-x64": ((3, 11), (3, 13)),
    "macos-arm64": ((3, 11), (3, 13)),
}
PYTHON_BLENDERS = {(3, 11): "Blender 4.2 - 5.0", (3, 13): "Blender 5.1+"}  # the Python each embeds
MACHINES = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}  # platform.machine() -> Blender's names

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


class WorkerError(Exception):
    """The worker could not be started or used; the message is one sentence for the user."""


# ---------------------------------------------------------------------------------------------
# Which Python, with which paths.
# ---------------------------------------------------------------------------------------------


def bundled_python() -> str:
    """Blender's own Python (in module mode: the Python running bpy)."""
    return sys.executable


def resolve_python(setting: str | None) -> tuple[str, bool]:
    """(python executable, is_bundled) for the Worker Python preference (empty = bundled).

    Raises WorkerError when a chosen path is missing, a folder, or not executable.
    """
    text = (setting or "").strip()
    if not text:
        return bundled_python(), True
    path = Path(os.path.expanduser(text))
    if path.is_dir():
        for candidate in (path / "bin" / "python3", path / "bin" / "python", path / "python.exe",
                          path / "Scripts" / "python.exe", path / "python3", path / "python"):
            if candidate.is_file():
                path = candidate
                break
        else:
            raise WorkerError(f"The worker Python '{text}' is a folder without a Python in it; choose the python executable (with torch) in {PREFERENCES_HINT}, or leave it empty to use Blender's own.")
    if not path.exists():
        raise WorkerError(f"The worker Python '{text}' does not exist; choose a Python with torch in {PREFERENCES_HINT}, or leave it empty to use Blender's own.")
    if os.name != "nt" and not os.access(path, os.X_OK):
        raise WorkerError(f"The worker Python '{text}' is not executable; choose a Python with torch in {PREFERENCES_HINT}.")
    same = _same_file(path, sys.executable)
    return str(path), same


def blender_platform() -> str:
    """This machine as Blender's extension platforms name it: linux-x64, windows-x64, macos-arm64..."""
    system = {"win32": "windows", "darwin": "macos"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    return f"{system}-{MACHINES.get(machine, machine)}"


def bundled_torch_advice(version: tuple[int, int] | None = None, where: str | None = None) -> str:
    """What to do when Blender's own Python (`version`, on platform `where`; default: the running
    one) cannot import torch: the full zips bundle torch only for some platforms and Pythons."""
    version = tuple(version or sys.version_info[:2])
    where = where or blender_platform()
    bundled = BUNDLED_TORCH_PYTHONS.get(where, ())
    worker_python = f"set {PREFERENCES_HINT} to a Python that has torch (pip install torch)"
    if not bundled:
        return f"The INS extension bundles torch for no Blender on {where}; {worker_python}"
    if version not in bundled:
        pythons = ", ".join(f"{major}.{minor} ({PYTHON_BLENDERS.get((major, minor), 'Blender')})"
                            for major, minor in bundled)
        return (f"Blender's own Python is {version[0]}.{version[1]}, and the INS extension bundles torch "
                f"on {where} only for Python {pythons}; {worker_python}")
    # torch is in the full zip for this Blender: the light zip, or a broken install of the full one.
    return (f"Blender's own Python has no torch: install the INS extension build that bundles torch (the "
            f"full {where} zip; if it is installed, reinstall it), or {worker_python}")


def _same_file(a, b) -> bool:
    # Compare paths, not inodes: a venv's python is a symlink to the base interpreter, but only
    # the venv path gives the venv's packages.
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def ins_core_root() -> str:
    """The folder holding the `ins_core` package this add-on uses (the extension's copy)."""
    import ins_core

    return str(Path(ins_core.__file__).resolve().parent.parent)


def worker_env(bundled: bool = True, base: dict | None = None) -> dict[str, str]:
    """Environment for a worker: PYTHONPATH so that it imports this add-on's ins_core.

    For Blender's own Python the whole current sys.path travels too (the extension's bundled
    wheels live there). An external Python keeps its own packages first: ins_core's folder (which,
    in a full extension zip, also holds the bundled CPU torch) is only appended to its path by
    `worker_argv`, so the user's CUDA torch is the one imported.
    """
    env = dict(os.environ if base is None else base)
    paths = list(EXTRA_PATHS)
    if bundled:
        paths += [ins_core_root()] + [p for p in sys.path if p and os.path.isdir(p)]
    else:
        env.pop("PYTHONHOME", None)
    if env.get("PYTHONPATH"):
        paths += env["PYTHONPATH"].split(os.pathsep)
    seen, ordered = set(), []
    for p in paths:
        if p not in seen:
            seen.add(p)
            ordered.append(p)
    env["PYTHONPATH"] = os.pathsep.join(ordered)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env.pop("PYTHONSTARTUP", None)
    return env


# Runs the worker module with ins_core's folder appended (not prepended) to sys.path.
_APPENDED_PATH_BOOTSTRAP = "import runpy, sys; sys.path.append(sys.argv.pop(1)); runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"


def worker_argv(python: str, job_dir, *, serve: bool = False, bundled: bool = True) -> list[str]:
    if bundled:
        argv = [python, "-m", WORKER_MODULE, str(Path(job_dir).resolve())]
    else:
        argv = [python, "-c", _APPENDED_PATH_BOOTSTRAP.format(module=WORKER_MODULE), ins_core_root(), str(Path(job_dir).resolve())]
    if serve:
        argv.append("--serve")
    return argv


# ---------------------------------------------------------------------------------------------
# State of one worker, from its events.
# ---------------------------------------------------------------------------------------------


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


def _missing_module(lines: list[str]) -> str | None:
    for line in reversed(lines):
        marker = "No module named "
        if marker in line:
            name = line.split(marker, 1)[1].strip().strip("'\"")
            return name.split(".")[0] if name.startswith(("torch", "numpy", "PIL")) else name
    return None


def _tail(path: Path, n: int = 40) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-n:]


# ---------------------------------------------------------------------------------------------
# One subprocess speaking the protocol.
# ---------------------------------------------------------------------------------------------

_LIVE: "weakref.WeakSet[WorkerProcess]" = weakref.WeakSet()


class WorkerProcess:
    """A worker (or render server, or capture) subprocess and what it has told us so far.

    argv: the full command (no shell). job_dir: the job directory (the cancel file lives there).
    label: how messages name it ("worker", "render server", "capture").
    python: the interpreter named in messages (default argv[0]).
    kind: "job" (cancel = checkpoint and stop) or "server" (stop = close stdin).
    """

    def __init__(self, argv: list[str], job_dir, *, env: dict | None = None, stderr_path=None,
                 label: str = "worker", python: str | None = None, kind: str = "job") -> None:
        self.argv = [str(a) for a in argv]
        self.job = JobPaths(Path(job_dir).resolve())
        self.env = env
        self.stderr_path = Path(stderr_path) if stderr_path else self.job.root / STDERR_NAME
        self.label = label
        self.python = python or self.argv[0]
        self.kind = kind
        self.state = WorkerState()
        self._proc: subprocess.Popen | None = None
        self._queue: queue.Queue = queue.Queue()
        self._eof = threading.Event()
        self._stray: collections.deque[str] = collections.deque(maxlen=20)
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._cancel_deadline: float | None = None
        self._cancel_requested = False
        self._exit_seen: float | None = None
        self.started_at: float | None = None

    # -- life cycle --------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "WorkerProcess":
        """Start the subprocess; WorkerError (one sentence) when it cannot be started."""
        if self._proc is not None:
            raise RuntimeError("a WorkerProcess starts only once")
        if not self.job.root.is_dir():
            raise WorkerError(f"The job folder '{self.job.root}' does not exist; start the job again from the INS panel.")
        try:
            self.job.cancel_path.unlink(missing_ok=True)  # a stale request would stop it at once
        except OSError:
            pass
        try:
            errfile = open(self.stderr_path, "ab")
        except OSError as error:
            raise WorkerError(f"Cannot write the log '{self.stderr_path}' ({error.strerror or error}); choose an output folder you can write to.") from None
        with errfile:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            errfile.write(f"\n=== {stamp} {self.label} started: {' '.join(self.argv)}\n".encode())
            errfile.flush()
            options: dict = {}
            if os.name == "nt":
                options["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(subprocess, "CREATE_NO_WINDOW", 0)
            else:
                options["start_new_session"] = True  # our own process group: killpg reaches its children
            try:
                self._proc = subprocess.Popen(
                    self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errfile,
                    cwd=str(self.job.root), env=self.env, close_fds=True, **options,
                )
            except FileNotFoundError:
                raise WorkerError(f"The worker Python '{self.python}' does not exist; choose a Python with torch in {PREFERENCES_HINT}, or leave it empty to use Blender's own.") from None
            except PermissionError:
                raise WorkerError(f"The worker Python '{self.python}' cannot be run (permission denied); choose a Python with torch in {PREFERENCES_HINT}.") from None
            except OSError as error:
                raise WorkerError(f"Cannot start the {self.label} with '{self.python}' ({error.strerror or error}); choose a Python with torch in {PREFERENCES_HINT}.") from None
        self.started_at = time.monotonic()
        self.state.status = "running"
        self._reader = threading.Thread(target=self._read, name=f"ins-{self.label}-reader", daemon=True)
        self._reader.start()
        _LIVE.add(self)
        return self

    def _read(self) -> None:
        proc = self._proc
        try:
            for raw in proc.stdout:
                line = raw.decode("utf-8", errors="replace").strip()
                if not line:
                    continue
                try:
                    event = decode_event(line)
                except ProtocolError as error:
                    self._queue.put(LogEvent(level="warning", message=f"Ignored a malformed {self.label} message ({error})"))
                    continue
                if event is None:
                    self._stray.append(line)
                else:
                    self._queue.put(event)
        except (OSError, ValueError):
            pass
        finally:
            self._eof.set()

    # -- events --------------------------------------------------------------------------------

    def poll(self) -> list:
        """New events since the last call (never blocks); updates `state`, detects the end."""
        with self._lock:
            events = self._drain()
            self._check_exit()
            return events

    def wait_event(self, timeout: float) -> list:
        """Like poll(), but waits up to `timeout` seconds for the first event or the end."""
        if not self.state.done:
            try:
                first = self._queue.get(timeout=max(0.0, timeout))
            except queue.Empty:
                first = None
            if first is not None:
                with self._lock:
                    self._apply(first)
                    return [first] + self.poll()
        return self.poll()

    def wait(self, timeout: float | None = None, on_events: Callable[[list], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> WorkerState:
        """Block until the worker ends (or `timeout`); for the batch mode and tests, not the UI."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.state.done:
            events = self.wait_event(0.1)
            if events and on_events is not None:
                on_events(events)
            if should_stop is not None and not self._cancel_requested and should_stop():
                self.request_cancel()
            if deadline is not None and time.monotonic() > deadline:
                break
        return self.state

    def _drain(self) -> list:
        events = []
        while True:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for event in events:
            self._apply(event)
        return events

    def _apply(self, event) -> None:
        s = self.state
        if isinstance(event, StageEvent):
            s.stage, s.total_steps, s.step = event.stage, event.total_steps, 0
            s.eta_s = None
        elif isinstance(event, ProgressEvent):
            s.step, s.total_steps = event.step, event.total_steps
            s.loss, s.psnr, s.eta_s = event.loss, event.psnr, event.eta_s
        elif isinstance(event, PreviewEvent):
            path = self._job_file(event.path)
            if path is not None:
                s.preview = path
                s.preview_serial += 1
        elif isinstance(event, ResultEvent):
            s.result = self._job_file(event.path)
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
            path = self._job_file(event.path, allow_absolute=True)
            if path is not None:
                s.rendered[event.request_id] = path

    def _job_file(self, relative: str, allow_absolute: bool = False) -> Path | None:
        if allow_absolute and os.path.isabs(relative):
            return Path(relative)
        try:
            return self.job.resolve(relative)
        except InputError as error:
            self.state.warnings.append(str(error))
            return None

    def _check_exit(self) -> None:
        if self.state.done or self._proc is None:
            return
        returncode = self._proc.poll()
        if returncode is None:
            if self._cancel_deadline is not None and time.monotonic() > self._cancel_deadline:
                self.kill()  # it did not stop in time; the next poll sees the exit
            return
        if not self._eof.is_set():
            now = time.monotonic()
            self._exit_seen = self._exit_seen or now
            if now - self._exit_seen < EXIT_WITHOUT_EOF_S:
                return
        if self._reader is not None:
            self._reader.join(timeout=1.0)
        self._drain()
        self._finish(returncode)

    def _finish(self, returncode: int) -> None:
        s = self.state
        s.returncode = returncode
        self._close_pipes()
        log = self._log_name()
        if s.error is not None:
            s.status = "failed"
            reason = s.error.message.strip().rstrip(".")
            s.message = f"{reason}; see the log '{log}'."
        elif s.result is not None and self.kind == "job":
            s.status = "finished"
            s.message = f"Finished: {self.job.root.name}."
        elif s.cancelled or self._cancel_requested:
            s.status = "cancelled"
            s.message = "Cancelled; the job keeps its checkpoint, so Resume continues it."
        elif self.kind == "server" and returncode == 0:
            s.status = "finished"
            s.message = f"The {self.label} stopped."
        else:
            s.status = "failed"
            s.message = self.crash_report(returncode)

    def _log_name(self) -> str:
        if self.state.error is not None:
            try:
                return str(self.job.resolve(self.state.error.log))
            except InputError:
                pass
        return str(self.job.log_path if self.job.log_path.exists() else self.stderr_path)

    def crash_report(self, returncode: int | None) -> str:
        """One sentence for a worker that stopped without a result."""
        lines = _tail(self.stderr_path) + list(self._stray)
        log = self.stderr_path
        missing = _missing_module(lines)
        if missing == "torch" and _same_file(self.python, bundled_python()):
            return f"{bundled_torch_advice()} (details in the log '{log}')."
        if missing == "torch":
            return (f"The worker Python '{self.python}' has no torch; install torch into it "
                    f"(pip install torch) or choose a Python with torch in {PREFERENCES_HINT} "
                    f"(details in the log '{log}').")
        if missing is not None:
            return (f"The worker Python '{self.python}' cannot import '{missing}'; install the INS "
                    f"extension with its bundled packages or choose a Python that has them in "
                    f"{PREFERENCES_HINT} (details in the log '{log}').")
        how = "without a result" if returncode == 0 else f"with exit status {returncode}"
        if returncode is not None and returncode < 0:
            try:
                how = f"killed by signal {signal.Signals(-returncode).name}"
            except ValueError:
                how = f"killed by signal {-returncode}"
        errors = [line.strip() for line in _tail(self.stderr_path) if not line.startswith("=== ")]
        last = (errors or [line.strip() for line in self._stray] or [""])[-1]
        detail = f" ({last[:200]})" if last else ""
        return f"The {self.label} stopped unexpectedly {how}{detail}; see the log '{log}'."

    # -- commands ------------------------------------------------------------------------------

    def send(self, message) -> None:
        """Write one protocol command line to the worker's stdin."""
        data = (encode(message) + "\n").encode("utf-8")
        with self._send_lock:
            if not self.alive or self._proc.stdin is None or self._proc.stdin.closed:
                raise WorkerError(f"The {self.label} is not running; see the log '{self.stderr_path}'.")
            try:
                self._proc.stdin.write(data)
                self._proc.stdin.flush()
            except (OSError, ValueError):
                raise WorkerError(f"The {self.label} stopped reading commands; see the log '{self.stderr_path}'.") from None

    def request_cancel(self, grace: float = CANCEL_GRACE_S) -> None:
        """Ask the worker to checkpoint and stop (cancel file + SIGTERM); never waits.

        poll() kills it if it is still running `grace` seconds later.
        """
        self._cancel_requested = True
        if not self.alive:
            return
        if self.state.status == "running":
            self.state.status = "cancelling"
            self.state.message = "Cancelling: finishing the step and saving a checkpoint..."
        try:
            self.job.cancel_path.write_text("cancel\n")
        except OSError:
            pass
        if os.name != "nt":  # on Windows terminate() would kill it outright: the file suffices
            try:
                self._proc.send_signal(signal.SIGTERM)
            except OSError:
                pass
        self._cancel_deadline = time.monotonic() + grace

    def cancel(self, timeout: float = CANCEL_GRACE_S) -> WorkerState:
        """Request a cancel, wait up to `timeout`, kill if needed; returns the final state."""
        self.request_cancel(timeout)
        self._reap(timeout)
        return self.state

    def close(self, timeout: float = 5.0) -> None:
        """Stop a server (or anything) quietly: close stdin, wait, then terminate and kill."""
        if self._proc is None:
            return
        self._close_stdin()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if self.kind == "job":
                self.request_cancel(timeout)
            else:
                try:
                    self._proc.terminate()
                except OSError:
                    pass
        self._reap(timeout)

    def kill(self) -> None:
        """Kill the process (and, on POSIX, its process group) and reap it."""
        if self._proc is None:
            return
        self.kill_now()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def kill_now(self) -> None:
        """SIGKILL to the process (and its process group on POSIX) without waiting: safe to call
        from a signal handler that may interrupt a wait on the same process."""
        if self._proc is None or self._proc.returncode is not None:
            return
        try:
            if os.name != "nt":
                os.killpg(self._proc.pid, signal.SIGKILL)
            else:
                self._proc.kill()
        except OSError:  # the group is gone already (ProcessLookupError is an OSError)
            try:
                self._proc.kill()
            except OSError:
                pass

    def _reap(self, timeout: float) -> None:
        try:
            self._proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            self.kill()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        self.poll()
        if not self.state.done:  # exited but stdout still open: settle now
            with self._lock:
                self._drain()
                self._finish(self._proc.poll())

    def _close_stdin(self) -> None:
        with self._send_lock:
            try:
                if self._proc is not None and self._proc.stdin is not None:
                    self._proc.stdin.close()
            except OSError:
                pass

    def _close_pipes(self) -> None:
        self._close_stdin()
        try:
            if self._proc is not None and self._proc.stdout is not None and self._eof.is_set():
                self._proc.stdout.close()
        except OSError:
            pass


def shutdown_all(timeout: float = 5.0) -> None:
    """Stop every live subprocess: jobs are cancelled (resumable), servers closed."""
    live = [w for w in list(_LIVE) if w.alive]
    for worker in live:
        if worker.kind == "job":
            worker.request_cancel(timeout)
        worker._close_stdin()
    deadline = time.monotonic() + timeout
    for worker in live:
        try:
            worker._proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
        except Exception:  # noqa: BLE001 - at exit nothing may stop the others' shutdown
            pass
    _RUNS.clear()


atexit.register(shutdown_all)


# ---------------------------------------------------------------------------------------------
# A whole run: optional capture process, then the worker.
# ---------------------------------------------------------------------------------------------


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
        _RUNS_ALL.add(self)
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


_RUNS_ALL: "weakref.WeakSet[JobRun]" = weakref.WeakSet()


# ---------------------------------------------------------------------------------------------
# Asking a Python whether it can be the worker.
# ---------------------------------------------------------------------------------------------

_CHECK_CODE = r"""
import json, sys
out = {"python": sys.version.split()[0], "executable": sys.executable}
try:
    torch = __import__("torch")  # in the child Python, never in Blender
except Exception as e:
    out["error"] = "torch"; out["detail"] = f"{type(e).__name__}: {e}"
else:
    out["torch"] = torch.__version__
    out["cuda"] = bool(torch.cuda.is_available())
    out["cuda_device"] = torch.cuda.get_device_name(0) if out["cuda"] else None
    mps = getattr(torch.backends, "mps", None)
    out["mps"] = bool(mps is not None and mps.is_available())
    try:
        import ins_core, ins_core.job
        out["ins_core"] = getattr(ins_core, "__version__", "?")
    except Exception as e:
        out["error"] = "ins_core"; out["detail"] = f"{type(e).__name__}: {e}"
    else:
        for name in ("numpy", "PIL"):
            try:
                __import__(name)
            except Exception as e:
                out["error"] = "module"; out["module"] = name; out["detail"] = f"{type(e).__name__}: {e}"
                break
print("INS_CHECK " + json.dumps(out), flush=True)
"""


@dataclass
class WorkerCheck:
    ok: bool
    message: str
    torch_version: str | None = None
    cuda: bool = False
    details: dict = field(default_factory=dict)


def check_worker(setting: str | None, timeout: float = 120.0) -> WorkerCheck:
    """Run `PYTHON -c "import torch, ins_core ..."` (no shell, with a timeout) and explain."""
    try:
        python, bundled = resolve_python(setting)
    except WorkerError as error:
        return WorkerCheck(False, str(error))
    try:
        # The same path order as the worker: an external Python's own packages first.
        code = _CHECK_CODE if bundled else f"import sys; sys.path.append({ins_core_root()!r})\n" + _CHECK_CODE
        done = subprocess.run([python, "-c", code], capture_output=True, timeout=timeout,
                              env=worker_env(bundled), stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return WorkerCheck(False, f"The worker Python '{python}' does not exist; choose a Python with torch in {PREFERENCES_HINT}.")
    except subprocess.TimeoutExpired:
        return WorkerCheck(False, f"The worker Python '{python}' did not answer within {timeout:g} s; try again, or choose another Python in {PREFERENCES_HINT}.")
    except OSError as error:
        return WorkerCheck(False, f"Cannot run the worker Python '{python}' ({error.strerror or error}); choose a Python with torch in {PREFERENCES_HINT}.")
    out = None
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("INS_CHECK "):
            try:
                out = json.loads(line[len("INS_CHECK "):])
            except ValueError:
                pass
    if out is None:
        last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
        return WorkerCheck(False, f"The worker Python '{python}' failed to run (exit status {done.returncode}: {last[:200]}); choose a working Python with torch in {PREFERENCES_HINT}.")
    error = out.get("error")
    if error == "torch":
        if bundled:
            return WorkerCheck(False, f"{bundled_torch_advice()}.", details=out)
        return WorkerCheck(False, f"The worker Python '{python}' has no torch: install it there (pip install torch), or choose a Python with torch in {PREFERENCES_HINT}.", details=out)
    if error == "ins_core":
        return WorkerCheck(False, f"The worker Python '{python}' has torch {out.get('torch')} but cannot import ins_core ({out.get('detail')}); reinstall the INS extension.", out.get("torch"), details=out)
    if error == "module":
        return WorkerCheck(False, f"The worker Python '{python}' lacks the package '{out.get('module')}'; install it there (pip install {'pillow' if out.get('module') == 'PIL' else out.get('module')}).", out.get("torch"), details=out)
    if out.get("cuda"):
        device = f"CUDA available ({out.get('cuda_device')})"
    elif out.get("mps"):
        device = "Apple GPU (MPS) available"
    else:
        device = "no GPU: runs on the CPU"
    return WorkerCheck(True, f"Worker OK: Python {out.get('python')}, torch {out.get('torch')}, {device}.",
                       out.get("torch"), bool(out.get("cuda")), details=out)


# ---------------------------------------------------------------------------------------------
# Blender glue: jobs per scene, the timer, the handlers.
# ---------------------------------------------------------------------------------------------

_RUNS: dict[str, JobRun] = {}  # scene name -> its running job
PREVIEW_IMAGE = "INS Preview"
TIMER_INTERVAL_S = 0.25


def active_run(scene) -> JobRun | None:
    run = _RUNS.get(scene.name)
    return run if run is not None and not run.done else None


def add_run(scene, run: JobRun) -> None:
    """Watch `run` for `scene` (its state goes into scene.ins) and start the timer."""
    _RUNS[scene.name] = run
    sync_scene(scene, run)
    ensure_timer()


def ensure_timer() -> None:
    import bpy

    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=TIMER_INTERVAL_S, persistent=True)


def stop_timer() -> None:
    import bpy

    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)


def _timer() -> float | None:
    """bpy.app.timers callback: poll every run, copy its state into its scene."""
    try:
        poll_all()
    except Exception as error:  # noqa: BLE001 - a timer that raises is dropped by Blender
        print(f"INS: job polling failed: {error}", file=sys.stderr)
    return TIMER_INTERVAL_S if _RUNS else None


def poll_all() -> None:
    import bpy

    for name, run in list(_RUNS.items()):
        run.update()
        scene = bpy.data.scenes.get(name)
        if scene is not None:
            sync_scene(scene, run)
        if run.done:
            _RUNS.pop(name, None)
    _redraw_ui()


def poll_scene(scene) -> JobRun | None:
    """Poll the scene's run now (the modal operator calls this on its timer)."""
    run = _RUNS.get(scene.name)
    if run is None:
        return None
    run.update()
    sync_scene(scene, run)
    if run.done:
        _RUNS.pop(scene.name, None)
    return run


def cancel_scene(scene) -> bool:
    run = _RUNS.get(scene.name)
    if run is None or run.done:
        return False
    run.request_cancel()
    sync_scene(scene, run)
    return True


def sync_scene(scene, run: JobRun) -> None:
    """Copy a run's state into scene.ins (status, stage, progress, ETA, message, preview)."""
    settings = getattr(scene, "ins", None)
    if settings is None:
        return
    state = run.state
    status = run.status.upper() if run.status != "new" else "RUNNING"
    _set(settings, "status", status)
    _set(settings, "job_dir", str(run.job.root))
    _set(settings, "stage", state.stage_text() if state.stage else "")
    _set(settings, "progress", float(state.overall))
    _set(settings, "eta_text", "" if run.done else format_eta(state.eta_s))
    if run.message:
        _set(settings, "message", run.message)
    if run.status == "finished":
        _set(settings, "progress", 1.0)
        if run.result_json is not None:
            _set(settings, "render_job_dir", str(run.job.root))
    serial = (id(run.current), state.preview_serial)
    if state.preview is not None and getattr(run, "_preview_seen", None) != serial:
        run._preview_seen = serial
        name = load_preview(state.preview)
        if name:
            _set(settings, "preview_image", name)


def _set(settings, name: str, value) -> None:
    try:
        if getattr(settings, name) != value:
            setattr(settings, name, value)
    except (AttributeError, TypeError, ValueError):
        pass


def load_preview(path: Path) -> str | None:
    """Load (or reload) the preview PNG into the image "INS Preview"; returns its name."""
    import bpy

    if not Path(path).is_file():
        return None
    image = bpy.data.images.get(PREVIEW_IMAGE)
    try:
        if image is None:
            image = bpy.data.images.load(str(path), check_existing=False)
            image.name = PREVIEW_IMAGE
        else:
            if bpy.path.abspath(image.filepath) != str(path):
                image.filepath = str(path)
            image.reload()
        try:
            image.preview_ensure()
            image.preview.reload()
        except (AttributeError, RuntimeError):
            pass
    except RuntimeError as error:  # a half-written file: the next preview replaces it
        print(f"INS: cannot load the preview '{path}': {error}", file=sys.stderr)
        return None
    return image.name


def _redraw_ui() -> None:
    import bpy

    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "PROPERTIES", "IMAGE_EDITOR"}:
                area.tag_redraw()


def reset_stale_status(scene) -> None:
    """After a file load: a job shown as running has no worker any more; say how to go on."""
    settings = getattr(scene, "ins", None)
    if settings is None or scene.name in _RUNS:
        return
    if settings.status in {"RUNNING", "CAPTURING", "CANCELLING"}:
        settings.status = "CANCELLED"
        settings.eta_text = ""
        settings.message = "The worker is not running (the file was reopened); press Resume to continue the job."


def _load_pre(*_args) -> None:
    # The scenes these runs write into go away; cancelled jobs keep their checkpoints.
    for run in list(_RUNS.values()):
        run.request_cancel()
    for run in list(_RUNS.values()):
        if run.current is not None and run.current.alive:
            run.current.cancel(timeout=5.0)
    _RUNS.clear()


def _load_post(*_args) -> None:
    import bpy

    for scene in bpy.data.scenes:
        reset_stale_status(scene)


def register() -> None:
    import bpy

    handlers = bpy.app.handlers
    for name, fn in (("load_pre", _load_pre), ("load_post", _load_post)):
        fn = _persistent(fn)
        lst = getattr(handlers, name)
        if all(getattr(h, "__name__", "") != fn.__name__ or getattr(h, "__module__", "") != __name__ for h in lst):
            lst.append(fn)


def unregister() -> None:
    import bpy

    for name in ("load_pre", "load_post"):
        lst = getattr(bpy.app.handlers, name)
        for h in list(lst):
            if getattr(h, "__module__", "") == __name__:
                lst.remove(h)
    stop_timer()
    shutdown_all(timeout=5.0)


_PERSISTENT: dict[str, Callable] = {}


def _persistent(fn):
    import bpy

    if fn.__name__ not in _PERSISTENT:
        _PERSISTENT[fn.__name__] = bpy.app.handlers.persistent(fn)
    return _PERSISTENT[fn.__name__]
