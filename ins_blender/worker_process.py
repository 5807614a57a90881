"""One subprocess that speaks the worker protocol (`ins_core.protocol`), watched without blocking.

`subprocess.Popen([python, "-m", "ins_core.worker", JOB], stdin=PIPE, stdout=PIPE,
stderr=JOB/worker_stderr.txt)`, no shell; a daemon thread decodes stdout lines into a queue;
`poll()` drains the queue and never waits. `request_cancel()` writes JOB/cancel and sends SIGTERM
(the worker checkpoints and exits), `cancel()` also waits and kills after a timeout. A worker that
cannot start, crashes, or exits without a result ends in status "failed" with one sentence naming
the log file (and what to do when torch is missing: worker_crash.py). What the events say is kept
in a `WorkerState` (worker_state.py). The same class runs the render server and the background
Blender that captures the views. No bpy, no torch: testable anywhere.
"""

from __future__ import annotations

import atexit
import collections
import os
import queue
import signal
import subprocess
import threading
import time
import weakref
from pathlib import Path
from typing import Callable

from ins_core.errors import InputError
from ins_core.job import JobPaths
from ins_core.protocol import LogEvent, ProtocolError, decode_event, encode

from .worker_crash import crash_report
from .worker_launch import PREFERENCES_HINT, WorkerError
from .worker_state import WorkerState, apply_event

STDERR_NAME = "worker_stderr.txt"
SERVER_STDERR_NAME = "render_server_stderr.txt"
CANCEL_GRACE_S = 30.0  # after a cancel request, how long the worker may take to checkpoint
EXIT_WITHOUT_EOF_S = 2.0  # a dead worker whose stdout stays open (a grandchild holds it)

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
        apply_event(self.state, event, self._job_file)

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
        """One sentence for a worker that stopped without a result (worker_crash.py)."""
        return crash_report(self.python, self.label, self.stderr_path, list(self._stray), returncode)

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



atexit.register(shutdown_all)  # quitting Blender (or a batch run) leaves no worker behind
