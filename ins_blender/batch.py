"""Headless INS: capture -> worker -> import, from the command line or from plain Python.

Command line, with the extension installed (Blender 4.2+ registers the command)::

    blender -b scene.blend --command ins_stylize --style a.jpg [--style b.jpg ...] \\
        --mode nerf --preset preview --views 24 --out DIR [--save DIR/result.blend]

Without the command (a development checkout, or a script), the same through `--python-expr`;
arguments after `--` belong to INS, and `--python-exit-code 1` makes a failure end Blender with a
non-zero status. The module is `bl_ext.user_default.ins_stylize.batch` in an installed extension
(the manifest's id is `ins_stylize`; `user_default` is the repository it was installed into)::

    blender -b scene.blend --python-exit-code 1 --python-expr \\
        "import bl_ext.user_default.ins_stylize.batch as b; b.main()" -- --style a.jpg --out DIR

    (from a checkout: "import sys; sys.path.insert(0, '/path/to/repo'); import ins_blender.batch
    as b; b.main()")

`--out DIR` is the job folder (created; it must not hold another job unless `--resume`).
Other options: --source cameras|animation|auto_rig (default: the scene's cameras when it has some,
else the automatic rig), --collection NAME, --hemisphere/--full-sphere, --resolution N, --samples
N, --device auto|cpu|gpu, --outputs mesh|render_engine|both, --python PATH (worker Python; default
the add-on's Worker Python preference, else Blender's own), --seed N, --steps PRETRAIN,STYLIZE
(instead of the preset's), --vgg-weights FILE, --allow-download, --no-import, --shading
lit|captured (the imported mesh's material), --save FILE.blend
(save a copy of the file with the imported result; the scene's INS settings point at the job, so
`blender -b FILE.blend -E INS -f 1` renders it), --resume (continue the job in --out; a finished
job is only imported, not exported again), --timeout SECONDS.
The arguments are parsed and checked in batch_args.py. Progress goes to stdout, one line per update. Exit status: 0 done, 1 the worker failed or was
cancelled, 2 bad input (one sentence on stderr, the scene untouched), 130 Ctrl-C, 143 SIGTERM
(the worker is asked to checkpoint and waited for first, so --resume continues the job).

From Python with the `bpy` module::

    from ins_blender.batch import run_batch
    result = run_batch(bpy.context.scene, ["a.jpg"], "nerf", "preview", "/tmp/job")

raises `InputError` (bad input) or `BatchError` (worker failure), returns a `BatchResult`.

The other entry point, the background Blender that renders the training views for the Stylize
Scene operator, is `background_capture.py`.
"""

from __future__ import annotations

import signal
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bpy

from ins_core import throughput
from ins_core.errors import InputError
from ins_core.job import JobPaths, JobSpec, ResultManifest
from ins_core.protocol import ProgressEvent, StageEvent

from . import job_run, preferences, presets, worker_launch, worker_process, worker_state
from .batch_args import COMMAND, DEVICE_NAMES, OUTPUT_NAMES, parse_args
from .job_request import Request, StyleSource, capture_in_process, check_writable, create_job, validate

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
class BatchError(Exception):
    """The worker failed, crashed or was cancelled; the message names the log."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM reached the batch (`signum` says which)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass
class BatchResult:
    job_dir: Path
    status: str
    manifest: ResultManifest | None
    object_name: str | None
    seconds: float


def _scene_has_cameras(scene) -> bool:
    return any(o.type == "CAMERA" for o in scene.objects)


def run_batch(scene, styles, mode: str = "nerf", preset: str = "preview", out_dir=None, *,
              source: str | None = None, collection: str | None = None, objects=None,
              n_views: int | None = None, hemisphere: bool = True, resolution: int | None = None,
              samples: int | None = None, device: str = "auto", outputs=("mesh", "render_engine"),
              python: str | None = None, overrides: dict | None = None, seed: int = 0,
              style_mix: list[float] | None = None, vgg_weights: str | None = None,
              allow_download: bool = False, cache_dir: str | None = None, import_result: bool = True, shading: str | None = None,
              resume: bool = False, timeout: float | None = None, silence_s: float | None = None,
              log=print) -> BatchResult:
    """Capture `scene`, run the worker on it (blocking, printing progress), import the mesh.

    Raises InputError for bad input (before anything is written or rendered) and BatchError when
    the worker fails, crashes or is cancelled, runs past `timeout` seconds, or sends nothing for
    `silence_s` seconds (a hang guard that a slow, busy machine does not trip).
    """
    started = time.monotonic()
    if out_dir is None or not str(out_dir).strip():
        raise InputError("No output folder was given; pass --out DIR (the job folder to create).")
    job = JobPaths(Path(bpy.path.abspath(str(out_dir))).resolve())
    if isinstance(styles, (str, Path)):
        styles = [styles]
    try:
        preset_obj = presets.get(preset)
    except ValueError as error:
        raise InputError(str(error)) from None
    if mode not in ("nerf", "sdf"):
        raise InputError(f"Mode {mode!r} is unknown; use 'nerf' or 'sdf'.")
    if device not in DEVICE_NAMES:
        raise InputError(f"Device {device!r} is unknown; use one of {', '.join(DEVICE_NAMES)}.")
    outputs = OUTPUT_NAMES[outputs] if isinstance(outputs, str) and outputs in OUTPUT_NAMES else list(outputs)
    # --python, else the Worker Python preference (empty: Blender's own Python).
    python_path, bundled = worker_launch.resolve_python(python) if python else preferences.worker_python()
    if source is None:
        source = "cameras" if _scene_has_cameras(scene) else "auto_rig"
    size = presets.scene_view_size(preset_obj, scene.render, resolution or 0)
    job_overrides = {**presets.job_overrides(size), **(overrides or {})}
    request = Request(
        scene=scene, styles=[StyleSource(path=Path(bpy.path.abspath(str(s)))) for s in styles],
        mode=mode, preset=preset_obj, device=DEVICE_NAMES[device], outputs=outputs, source=source,
        collection_name=collection, objects=list(objects) if objects is not None else None,
        n_views=n_views or preset_obj.capture_views, hemisphere=hemisphere, resolution=size,
        samples=samples or preset_obj.capture_samples, seed=seed, style_mix=style_mix, job_dir=job.root,
        python=python_path, bundled=bundled, overrides=job_overrides, vgg_weights=vgg_weights,
        allow_download=bool(allow_download) and bool(getattr(bpy.app, "online_access", False)),
        cache_dir=cache_dir,
    )

    finished = None
    if resume:
        if not job.job_json.is_file() or not (job.dataset_dir / "transforms_train.json").is_file():
            raise InputError(f"The folder '{job.root}' holds no captured INS job to resume; run without --resume to start one.")
        spec = JobSpec.load(job.job_json)
        outputs = list(spec.outputs)
        check_writable(job.root)
        finished = finished_result(job)
        if finished is not None:
            log(f"INS: the job in {job.root} is finished; importing its result without running it again")
        else:
            log(f"INS: resuming the job in {job.root}")
    else:
        if job.job_json.exists():
            raise InputError(f"The output folder '{job.root}' already holds an INS job; pass --resume to continue it or choose another folder.")
        taken = [path.name for path in (job.dataset_dir, job.styles_dir, job.checkpoints_dir, job.result_dir) if path.exists()]
        if taken:  # the job would write into them, and remove them again if the capture failed
            raise InputError(f"The output folder '{job.root}' already holds a '{taken[0]}' folder that is not an INS job's; choose a new or empty folder.")
        existed = job.root.exists()

        def progress(done, total):
            log(f"INS:   view {done}/{total}")

        try:
            validate(request)  # it makes the folder to test that it can write there
        except BaseException:
            if not existed:
                _remove_empty_folder(job.root)
            raise
        try:  # job.json may still refuse an override: nothing written is left behind then either
            job = create_job(request)
            log(f"INS: job folder {job.root}")
            log(f"INS: capturing {request.source.replace('_', ' ')} views at {size[0]}x{size[1]}, {request.samples} samples")
            capture = capture_in_process(request, job, progress=progress)
        except BaseException:
            _remove_job_files(job, existed)
            raise
        log(f"INS: captured {capture.n_train} training and {capture.n_test} test views in {capture.seconds:.1f} s")
        throughput.record_capture(job.job_json, capture.seconds)  # part of the panel's estimate

    status = "finished"
    if finished is None:  # a finished job is not exported again
        status = _run_worker(job, python_path, bundled, timeout, log, silence_s)
    manifest = ResultManifest.load(job.result_json)
    object_name = None
    record_on_scene(scene, job, outputs)  # first: the imported mesh then places the field it renders
    if import_result and "mesh_npz" in manifest.files:
        from .importer import import_result as do_import

        obj = do_import(scene, job.root, shading=shading)
        object_name = obj.name
        log(f"INS: added '{obj.name}' to the 'INS Results' collection")
    seconds = time.monotonic() - started
    log(f"INS: done in {seconds:.1f} s; result in {job.result_dir}")
    return BatchResult(job.root, status, manifest, object_name, seconds)


def finished_result(job: JobPaths) -> ResultManifest | None:
    """The job's result manifest when the job is finished (every file it names exists), else None."""
    if not job.result_json.is_file():
        return None
    try:
        manifest = ResultManifest.load(job.result_json)
        files = [job.resolve(relative) for relative in manifest.files.values()]
    except InputError:
        return None
    return manifest if all(path.exists() for path in files) else None


def _run_worker(job: JobPaths, python_path: str, bundled: bool, timeout: float | None, log,
                silence_s: float | None = None) -> str:
    """Run the worker to the end (blocking, printing progress); BatchError unless it finished."""
    run = job_run.JobRun(job.root, python_path, bundled=bundled).start()
    log(f"INS: worker started ({python_path})")
    started = time.monotonic()
    try:
        status = run.wait(timeout=timeout, on_events=_printer(log), silence_s=silence_s)
    except BaseException:  # Ctrl-C / SIGTERM: the worker is in its own process group and heard neither
        stop_worker(run.current)
        raise
    if not run.done:  # timeout, or silence
        stop_worker(run.current)
        run.update()
        why = (f"did not finish within {timeout:g} s" if timeout is not None and time.monotonic() - started >= timeout
               else f"sent nothing for {silence_s:g} s")
        raise BatchError(f"The worker {why} and was cancelled (resumable with --resume); see the log '{job.log_path}'.")
    if status != "finished":
        raise BatchError(run.message)
    return status


def stop_worker(worker: "worker_process.WorkerProcess | None") -> None:
    """Ask the worker to checkpoint and stop, and wait until it has exited (killed after the
    grace time). Another Ctrl-C / SIGTERM meanwhile kills it at once instead of leaving it running."""
    if worker is None or not worker.alive:
        return
    with _signals_call(lambda signum: worker.kill_now()):
        worker.cancel()


def record_on_scene(scene, job: JobPaths, outputs) -> None:
    """Point the scene's INS settings at the finished job, so that a saved .blend renders with
    the INS engine (`blender -b file.blend -E INS -f 1`) and shows the job (and its styles, when
    the scene has none) in the panel."""
    settings = getattr(scene, "ins", None)
    if settings is None:  # the add-on's properties are not registered
        return
    settings.job_dir = str(job.root)
    if "render_engine" in outputs:
        settings.render_job_dir = str(job.root)
    settings.status = "FINISHED"
    settings.stage = ""
    settings.progress = 1.0
    settings.eta_text = ""
    settings.message = f"Finished: {job.root.name}."
    if not len(settings.styles):  # a file without styles (a batch): the panel shows, and mixes, the job's
        spec = JobSpec.load(job.job_json)
        for index, relative in enumerate(spec.styles):
            item = settings.styles.add()
            item.filepath = str(job.resolve(relative))
            item.weight = spec.style_mix[index] if spec.style_mix else 1.0


@contextmanager
def _signals_call(action):
    """While inside, SIGINT and SIGTERM call `action(signum)`. Only in the main thread (where
    Python handles signals); elsewhere the signals are left as they are."""
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: action(signum))
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            # None: a handler Python did not install (Blender's own); the default is the nearest.
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _raise_interrupted(signum: int):
    raise Interrupted(signum)


def _remove_empty_folder(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty, or gone: leave it
        pass


def _remove_job_files(job: JobPaths, folder_existed: bool) -> None:
    """Undo create_job after a failed capture: only what it wrote, and the folder if it made it."""
    import shutil

    for path in (job.dataset_dir, job.styles_dir, job.checkpoints_dir, job.result_dir):
        shutil.rmtree(path, ignore_errors=True)
    try:
        job.job_json.unlink(missing_ok=True)
    except OSError:
        pass
    if not folder_existed:
        _remove_empty_folder(job.root)


def _printer(log):
    last = {"stage": None, "shown": 0.0}

    def show(events):
        for event in events:
            if isinstance(event, StageEvent):
                log(f"INS: {worker_state.STAGE_LABELS.get(event.stage, event.stage)} ({event.total_steps} steps)")
                last["stage"] = event.stage
            elif isinstance(event, ProgressEvent):
                now = time.monotonic()
                if event.step == event.total_steps or now - last["shown"] >= 2.0:
                    last["shown"] = now
                    parts = [f"{event.step}/{event.total_steps}"]
                    if event.loss is not None:
                        parts.append(f"loss {event.loss:.4g}")
                    if event.psnr is not None:
                        parts.append(f"PSNR {event.psnr:.2f} dB")
                    eta = worker_state.format_eta(event.eta_s)
                    if eta:
                        parts.append(eta)
                    log("INS:   " + ", ".join(parts))
            elif type(event).__name__ == "LogEvent" and event.level in ("warning", "error"):
                log(f"INS: {event.level}: {event.message}")
            elif type(event).__name__ == "LogEvent" and event.message:  # threads, priority, measured steps/s
                log(f"INS:   {event.message}")
            elif type(event).__name__ == "PreviewEvent":
                log(f"INS:   preview {event.path}")

    return show


def main(argv: list[str] | None = None, exit: bool | None = None) -> int:
    """Command-line entry point; returns the exit status (and exits Blender with it when run
    inside a Blender executable through --python-expr, unless exit=False)."""
    if exit is None:
        exit = bool(bpy.app.binary_path)  # a real Blender process, not the bpy module
    # Blender's own Ctrl-C handler only sets a flag, and the worker (its own process group) hears
    # neither signal: while the batch runs, both raise Interrupted here, which cancels the worker.
    with _signals_call(_raise_interrupted):
        status = _main(argv)
    sys.stdout.flush()
    if exit and status != EXIT_OK:
        sys.exit(status)
    return status


def _main(argv: list[str] | None) -> int:
    try:
        args = parse_args(argv)
        run_batch(
            bpy.context.scene, args.style, args.mode, args.preset, args.out, source=args.source,
            collection=args.collection, n_views=args.views, hemisphere=args.hemisphere,
            resolution=args.resolution, samples=args.samples, device=args.device, outputs=args.outputs,
            python=args.python, seed=args.seed, vgg_weights=args.vgg_weights,
            allow_download=args.allow_download, import_result=not args.no_import, resume=args.resume,
            shading=args.shading.upper() if args.shading else None,
            timeout=args.timeout, overrides=args.overrides or None,
            log=log_line,
        )
        if args.save:
            save_blend(args.save)
        return EXIT_OK
    except (InputError, worker_launch.WorkerError) as error:
        print(f"INS: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BatchError as error:
        print(f"INS: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as error:
        print("INS: interrupted; the job keeps its checkpoint (continue it with --resume).", file=sys.stderr)
        return 128 + error.signum if isinstance(error, Interrupted) else EXIT_INTERRUPTED
    except SystemExit as error:  # --help
        return error.code if isinstance(error.code, int) else EXIT_OK
    except Exception as error:  # noqa: BLE001 - the status must say it failed; the traceback helps
        traceback.print_exc()
        print(f"INS: the batch stopped on an unexpected error ({type(error).__name__}: {error}).", file=sys.stderr)
        return EXIT_FAILED


def log_line(text: str) -> None:
    """One progress line, flushed: Blender's stdout is block-buffered when it goes to a pipe or a
    file (a CI log, `| tee`), which would hold every line back until Blender exits."""
    print(text, flush=True)


def save_blend(path: str) -> None:
    """Save a copy of the open file (the imported result and the INS settings included)."""
    target = bpy.path.abspath(path)
    try:
        bpy.ops.wm.save_as_mainfile(filepath=target, copy=True, check_existing=False)
    except RuntimeError as error:
        raise BatchError(f"Cannot save '{target}' ({' '.join(str(error).split())}); choose a folder you can write to.") from None
    log_line(f"INS: saved {target}")


def cli_command(argv: list[str]) -> int:
    """`blender --command ins_stylize ARGS`: Blender passes ARGS and exits with the returned status."""
    return main(list(argv), exit=False)


_CLI_HANDLE = None


def register() -> None:
    global _CLI_HANDLE
    register_cli = getattr(bpy.utils, "register_cli_command", None)  # Blender 4.2+
    if _CLI_HANDLE is None and register_cli is not None:
        _CLI_HANDLE = register_cli(COMMAND, cli_command)


def unregister() -> None:
    global _CLI_HANDLE
    if _CLI_HANDLE is not None:
        bpy.utils.unregister_cli_command(_CLI_HANDLE)
        _CLI_HANDLE = None
