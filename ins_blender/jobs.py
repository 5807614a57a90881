"""The jobs Blender is watching: a registry of running jobs per scene, a `bpy.app.timers` poller
that copies their state into the scene's INS settings and the preview image, file-load handlers,
and `shutdown_all()` so disabling the add-on stops every worker (quitting Blender does too: the
processes, `worker_process.WorkerProcess` under `job_run.JobRun`, are stopped at exit). Imports bpy
lazily.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from . import worker_process
from .job_run import JobRun
from .worker_state import format_eta

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


def shutdown_all(timeout: float = 5.0) -> None:
    """Stop every live subprocess (jobs cancelled, resumable; servers closed) and forget the runs."""
    worker_process.shutdown_all(timeout)
    _RUNS.clear()

