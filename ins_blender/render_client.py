"""The render server as the INS engine sees it: which finished job a scene renders, one long-lived
`python -m ins_core.worker JOB --serve` per job (restarted when the job is re-run, not retried on
every redraw after a failure), render requests and their answers, and the PNG and Z pass they come
back as. Blender's data is read, never written.
"""

from __future__ import annotations

import array
import shutil
import struct
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import bpy

from ins_core.errors import InputError
from ins_core.job import JobPaths, JobSpec
from ins_core.protocol import RenderCommand

from . import worker_launch, worker_process

READY_TIMEOUT_S = 600.0  # loading torch and the model
RENDER_TIMEOUT_S = 3600.0


class EngineError(Exception):
    """One sentence for the user (no finished job, no camera, server failure)."""


def render_job(scene) -> JobPaths:
    """The finished job the engine renders for `scene`; EngineError when there is none."""
    settings = getattr(scene, "ins", None)
    text = ""
    if settings is not None:
        text = settings.render_job_dir.strip() or settings.job_dir.strip()
    if not text:
        raise EngineError(f"Scene '{scene.name}' has no finished INS job to render; run Stylize Scene with the 'Neural Render' output, or choose a finished job folder as Render Job in the INS panel.")
    return rendered_job(JobPaths(Path(bpy.path.abspath(text))))


@dataclass(frozen=True)
class _JobFiles:
    """What a job's job.json and result.json say to the engine: why it renders no field (None: it
    does) and how many styles it was stylized with (0 when job.json cannot be read)."""

    lacks: str | None
    styles: int


# By the job's folder, with its two files' stamps: the engine asks at every frame, the viewport at
# every redraw for every stylized mesh shown, the panel at every redraw; the answers change only
# with those files (a job run again replaces its entry).
_JOB_FILES: dict[str, tuple[tuple, _JobFiles]] = {}


def _job_files(job: JobPaths) -> _JobFiles:
    stamps = tuple(path.stat().st_mtime_ns if path.is_file() else 0 for path in (job.job_json, job.result_json))
    known = _JOB_FILES.get(str(job.root))
    if known is None or known[0] != stamps:
        try:
            spec, lacks = JobSpec.load(job.job_json), None
        except InputError as error:
            spec, lacks = None, str(error)
        if not job.result_json.is_file():
            lacks = (f"The INS job '{job.root}' is not finished (no result/result.json); wait for it to finish, or choose a "
                     "finished job folder as Render Job in the INS panel.")
        elif spec is not None and "render_engine" not in spec.outputs:
            lacks = (f"The INS job '{job.root.name}' was made without the 'Neural Render' output; run Stylize Scene with "
                     "'Neural Render' or 'Both'.")
        known = stamps, _JobFiles(lacks, 0 if spec is None else len(spec.styles))
        _JOB_FILES[str(job.root)] = known
    return known[1]


def rendered_job(job: JobPaths) -> JobPaths:
    """`job` when it is finished and has a neural render; EngineError saying what it lacks."""
    lacks = _job_files(job).lacks
    if lacks is not None:
        raise EngineError(lacks)
    return job


def renders_a_field(job: JobPaths) -> bool:
    """Whether `job` is finished with a neural render (a stylized mesh of it brings its field)."""
    return _job_files(job).lacks is None


def job_style_count(job: JobPaths) -> int:
    """How many styles `job` was stylized with (0 when its job.json cannot be read)."""
    return _job_files(job).styles


def style_weights_note(scene) -> str | None:
    """What the panel says under the Style Weights when they do not reach the render: the Render
    Job was stylized with other styles than the scene's list (None when they fit, or no job)."""
    settings = getattr(scene, "ins", None)
    try:
        job = render_job(scene)
    except EngineError:
        return None
    listed, count = len(settings.styles), job_style_count(job)
    if listed < 2 or listed == count:
        return None
    kept = "that style" if count == 1 else "the mix it was stylized with"
    return f"The Render Job was stylized with {count} style{'s' if count != 1 else ''}, not these {listed}: it shows {kept}."


def mix_for_job(scene, job: JobPaths) -> list[float] | None:
    """The scene's (animated) style weights, when they fit the job's styles."""
    from .properties import style_mix

    settings = getattr(scene, "ins", None)
    if settings is None:
        return None
    mix = style_mix(settings)
    if mix is not None and len(mix) != job_style_count(job):
        return None  # the scene's style list changed since the job: use the job's own mix
    return mix


class RenderServer:
    """One `python -m ins_core.worker JOB --serve` process and its requests (thread-safe)."""

    def __init__(self, job: JobPaths, python: str, bundled: bool) -> None:
        self.job = job
        self.python = python
        self.stamp = _result_stamp(job)
        self.worker = worker_process.WorkerProcess(
            worker_launch.worker_argv(python, job.root, serve=True, bundled=bundled), job.root, env=worker_launch.worker_env(bundled),
            stderr_path=job.root / worker_process.SERVER_STDERR_NAME, label="render server", python=python, kind="server",
        )
        self.folder = Path(tempfile.mkdtemp(prefix="ins_render_"))
        self.lock = threading.Lock()

    def start(self) -> "RenderServer":
        try:
            self.worker.start()
        except worker_launch.WorkerError as error:
            raise EngineError(str(error)) from None
        return self

    @property
    def ready(self) -> bool:
        with self.lock:
            self.worker.poll()
        return self.worker.state.ready

    def check_alive(self) -> None:
        state = self.worker.state
        if state.done or not self.worker.alive:
            with self.lock:
                self.worker.poll()
            if state.error is not None or state.done:
                message = state.message or self.worker.crash_report(state.returncode)
            else:
                message = self.worker.crash_report(self.worker._proc.poll())
            _FAILED[str(self.job.root.resolve())] = (time.monotonic(), (self.stamp, self.python), message)
            raise EngineError(message)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S, should_stop=None, on_wait=None) -> bool:
        """True when ready; False when `should_stop()` said stop; EngineError on failure."""
        late = f"The INS render server did not get ready within {timeout:g} s"
        return self._wait(lambda: True if self.ready else None, timeout, late, should_stop, on_wait, 0.05) is not None

    def _wait(self, answer, timeout: float, late: str, should_stop, on_wait, interval: float):
        """Poll `answer()` until it gives something; None when `should_stop()` said stop;
        EngineError when the server died or `timeout` seconds passed (`late` says what took long)."""
        deadline = time.monotonic() + timeout
        while True:
            value = answer()
            if value is not None:
                return value
            self.check_alive()
            if should_stop is not None and should_stop():
                return None
            if time.monotonic() > deadline:
                raise EngineError(f"{late}; see the log '{self.worker.stderr_path}'.")
            if on_wait is not None:
                on_wait()
            time.sleep(interval)

    def submit(self, c2w, fx, fy, cx, cy, width, height, *, style_mix=None, background=None, depth=False,
               mist=None, normal=False, orthographic=False, samples=1, lens=None, motion=None,
               placement=None, others=None) -> tuple[str, Path]:
        """Send one render request; its PNG will be the returned path (its Z pass, with `depth`, at
        `pass_path(path, "depth")`; its Mist pass, with `mist` = (start, depth, falloff exponent), at
        `pass_path(path, "mist")`; its Normal pass, with `normal`, at `pass_path(path, "normal")`).
        With `orthographic`, fx and fy are pixels per world unit and the rays parallel; `samples`
        rays a pixel (a square number) anti-alias it and, with a `lens` (depth_of_field.py's
        dict), blur what lies off the plane in focus, with `motion` (motion_blur.py's poses) what
        moves across the frame during the shutter; with `placement` (placement.py's rows) the
        field stands where that object puts it; `others` (shown_fields.py's) are more jobs' fields
        in the same frame."""
        request_id = uuid.uuid4().hex[:12]
        out = self.folder / f"{request_id}.png"
        mist_request = None
        if mist is not None:
            start, mist_depth, exponent = mist
            mist_request = {"start": float(start), "depth": float(mist_depth), "exponent": float(exponent),
                            "out": str(pass_path(out, "mist"))}
        command = RenderCommand(request_id=request_id, c2w=c2w, fx=float(fx), fy=float(fy), cx=float(cx),
                                cy=float(cy), width=int(width), height=int(height), out=str(out),
                                style_mix=style_mix, background=background,
                                depth_out=str(pass_path(out, "depth")) if depth else None, mist=mist_request,
                                normal_out=str(pass_path(out, "normal")) if normal else None, orthographic=bool(orthographic),
                                samples=int(samples), lens=lens, motion=motion, placement=placement, others=others or None)
        try:
            self.worker.send(command)
        except worker_launch.WorkerError as error:
            raise EngineError(str(error)) from None
        return request_id, out

    def result(self, request_id: str) -> Path | None:
        """The request's image once rendered, else None; EngineError when the server refused it
        (an error event while it is alive: it answers in order, so the refusal is the pending
        request's, and it keeps serving)."""
        with self.lock:
            self.worker.poll()
            state = self.worker.state
            path = state.rendered.pop(request_id, None)
            refusal = None
            if path is None and state.error is not None and not state.done:  # taken: the next request starts clean
                refusal, state.error = state.error, None
        if refusal is not None:
            raise EngineError(f"The INS render server refused the frame: {refusal.message.strip()}")
        return path

    def render(self, c2w, fx, fy, cx, cy, width, height, *, should_stop=None, on_wait=None,
               timeout: float = RENDER_TIMEOUT_S, **options) -> Path | None:
        """Blocking render of one view (`options` as `submit` takes them); None when `should_stop()` said stop."""
        request_id, _ = self.submit(c2w, fx, fy, cx, cy, width, height, **options)
        late = f"The INS render server took longer than {timeout:g} s for one frame"
        return self._wait(lambda: self.result(request_id), timeout, late, should_stop, on_wait, 0.02)

    def close(self) -> None:
        self.worker.close(timeout=3.0)
        shutil.rmtree(self.folder, ignore_errors=True)


def _result_stamp(job: JobPaths) -> float:
    try:
        return job.result_json.stat().st_mtime
    except OSError:
        return 0.0


_SERVERS: dict[str, RenderServer] = {}
_SERVERS_LOCK = threading.Lock()
# A server that just failed is not restarted on every viewport redraw: the same job with the
# same Python gets the same answer for RETRY_AFTER_S seconds.
_FAILED: dict[str, tuple[float, tuple, str]] = {}
RETRY_AFTER_S = 10.0


def get_server(job: JobPaths) -> RenderServer:
    """The running server for `job` (started when missing, dead or the job was re-run)."""
    from . import preferences

    try:
        python, bundled = preferences.worker_python()
    except worker_launch.WorkerError as error:
        raise EngineError(str(error)) from None
    key = str(job.root.resolve())
    with _SERVERS_LOCK:
        server = _SERVERS.get(key)
        if server is not None and (not server.worker.alive or server.stamp != _result_stamp(job) or server.python != python):
            _SERVERS.pop(key, None)
            server.close()
            server = None
        if server is None:
            failed = _FAILED.get(key)
            if failed is not None and failed[1] == (_result_stamp(job), python) and time.monotonic() - failed[0] < RETRY_AFTER_S:
                raise EngineError(failed[2])
            _FAILED.pop(key, None)
            server = RenderServer(job, python, bundled).start()
            _SERVERS[key] = server
        return server


def stop_servers() -> None:
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
        _FAILED.clear()
    for server in servers:
        try:
            server.close()
        except Exception:  # noqa: BLE001 - stopping one must not keep the others running
            pass


def pass_path(image: Path, name: str) -> Path:
    """Where the server writes the `name` pass ("depth", "mist" or "normal") of the render whose image is `image`."""
    return image.with_suffix(f".{name}")


def read_pass(path: Path, width: int, height: int, channels: int = 1) -> array.array:
    """A pass the server wrote (`channels` float32 little-endian a pixel, top row first) as
    Blender's pass wants it: bottom row first. No numpy (some Blender builds have none)."""
    values = array.array("f")
    row_length = width * channels
    try:
        with open(path, "rb") as f:
            values.fromfile(f, row_length * height)
    except (OSError, EOFError) as error:
        raise EngineError(f"The INS render server's {path.suffix.lstrip('.')} pass '{path}' cannot be read ({getattr(error, 'strerror', None) or error}).") from None
    if sys.byteorder == "big":
        values.byteswap()
    rows = array.array("f")
    for row in range(height - 1, -1, -1):
        rows.extend(values[row * row_length:(row + 1) * row_length])
    return rows


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG header; EngineError when it is not a PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as error:
        raise EngineError(f"The INS render server's image '{path}' cannot be read ({error.strerror or error}).") from None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise EngineError(f"The INS render server wrote '{path}', which is not a PNG image.")
    return struct.unpack(">II", head[16:24])
