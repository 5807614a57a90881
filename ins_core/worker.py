"""The worker: runs one job directory end to end, speaking the JSON-lines protocol on stdout.

    python -m ins_core.worker JOB           # capture is done by the add-on; pretrain, stylize, export
    python -m ins_core.worker JOB --serve   # the render server behind the "INS" render engine

Stdout carries only protocol events (ins_core.protocol); everything else goes to JOB/log.txt.
Cancelling (SIGTERM, a JOB/cancel file, or the parent going away) finishes the current step,
writes a checkpoint, emits `cancelled` and exits 0; running the same job again resumes.
Exit status: 0 done or cancelled, 2 bad input, 1 any other failure.
A job shares the machine with Blender (ins_core.sharing: lowered priority, all cores but one unless
the rest of the machine is idle), logs its steps/s, and records them for the panel's time estimate
(ins_core.throughput).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import stat
import sys
import threading
import time
import traceback
from pathlib import Path

from . import sharing, throughput
from .errors import InputError
from .job import JobPaths, JobSpec, ResultManifest
from .presets import MESH_SMOOTH_ITERATIONS
from .protocol import CancelledEvent, ErrorEvent, LogEvent, PreviewEvent, ProgressEvent, ResultEvent, StageEvent, write_message

log = logging.getLogger("ins_core.worker")


class Events:
    """Protocol events on stdout; progress is throttled so the add-on's pipe stays quiet."""

    def __init__(self, stream=None, min_interval_s: float = 0.25):
        self.stream = stream or sys.stdout
        self.min_interval_s = min_interval_s
        self._last_progress = 0.0

    def send(self, message) -> None:
        write_message(message, self.stream)

    def progress(self, step: int, total: int, loss=None, psnr=None, eta_s=None) -> None:
        now = time.monotonic()
        if step < total and now - self._last_progress < self.min_interval_s:
            return
        self._last_progress = now
        self.send(ProgressEvent(step=step, total_steps=total, loss=loss, psnr=psnr, eta_s=eta_s))


class CancelWatch:
    """Set when the user cancels: SIGTERM, a `cancel` file, or the parent (the add-on) going away."""

    def __init__(self, paths: JobPaths):
        self.paths = paths
        self.reason: str | None = None
        self._parent = os.getppid()
        signal.signal(signal.SIGTERM, lambda *_: self.set("SIGTERM"))
        # A pipe on stdin means a parent that talks to us: its end closing means it is gone.
        if stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
            threading.Thread(target=self._watch_stdin, daemon=True).start()

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def _watch_stdin(self) -> None:
        # Raw reads on the descriptor: a thread blocked in the buffered reader would hold its lock
        # and abort the interpreter at exit.
        fd = sys.stdin.fileno()
        while os.read(fd, 4096):
            pass
        self.set("parent closed stdin")

    def __call__(self) -> bool:
        if self.reason is None and self.paths.cancel_path.exists():
            self.set("cancel file")
        if self.reason is None and os.getppid() != self._parent:
            self.set("parent exited")
        return self.reason is not None


def _setup_logging(paths: JobPaths) -> None:
    handler = logging.FileHandler(paths.log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


class JobRunner:
    """Pretrain -> stylize -> export -> result.json, resumable at each stage."""

    preview_every_s = 15.0
    speed_every_s = 30.0  # how often the measured steps/s goes to the log

    def __init__(self, root: Path, events: Events):
        self.paths = JobPaths(root)
        self.events = events
        self.spec = JobSpec.load(self.paths.job_json)
        self.cancel = CancelWatch(self.paths)
        self.timings: dict[str, float] = {}
        self.started = time.monotonic()
        self.share: sharing.Share | None = None
        self.adaptive: sharing.Adaptive | None = None
        self.throughput_key = throughput.key(self.spec.device, self.spec.mode, self.spec.preset)
        self.device_kind = "cpu"

    def _share_machine(self, device) -> None:
        """Thread count and priority for sharing the machine with Blender (ins_core.sharing)."""
        self.share = sharing.apply(sharing.choose())
        if self.share.note:
            self._log("warning", self.share.note)
        self.adaptive = sharing.Adaptive(enabled=device.type == "cpu" and not self.share.fixed)
        more = f"; all {self.adaptive.cores} cores while the rest of the machine is idle" if self.adaptive.enabled else ""
        self._log("info", f"Worker: {self.share.describe()}{more}.")

    def _adapt_threads(self) -> None:
        """All cores while nothing else runs, one fewer while something does (ins_core.sharing.Adaptive)."""
        threads = self.adaptive.step() if self.adaptive is not None else None
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
            self.share = sharing.Share(threads, self.share.nice, fixed=False)
            log.info("now %d torch threads: the rest of the machine used %.1f cores", threads, self.adaptive.others)

    def should_stop(self) -> bool:
        """Asked between training steps and through the palette match after them (a minute on a
        CPU, with no step to report): the thread count follows the machine, then whether the user
        cancelled. So a render the artist starts during the match gets its core back."""
        self._adapt_threads()
        return self.cancel()

    def _log(self, level: str, message: str) -> None:
        log.log(logging.getLevelName(level.upper()), message)
        self.events.send(LogEvent(level=level, message=message))

    # -- helpers ---------------------------------------------------------------------------
    def _train(self, stage: str, session) -> bool:
        """Step a session with progress and previews; False when cancelled."""
        total = session.config["steps"]
        self.events.send(StageEvent(stage=stage, total_steps=total))
        first_step, started, last_preview = session.step, time.monotonic(), time.monotonic()
        preview_s, last_speed = 0.0, time.monotonic()

        def on_step(result, _elapsed):
            nonlocal last_preview, preview_s, last_speed
            done = result.step - first_step
            rate = (time.monotonic() - started) / max(done, 1)
            # No time left at the last step: what follows it (the palette match, up to a minute on a
            # CPU) is no step, and "about 1 s left" would stand in the panel through it.
            self.events.progress(result.step, total, result.loss, result.psnr, rate * (total - result.step) if result.step < total else None)
            if time.monotonic() - last_speed > self.speed_every_s:
                self._speed(stage, done / max(1e-9, time.monotonic() - started - preview_s), result.step, total)
                last_speed = time.monotonic()
            if time.monotonic() - last_preview > self.preview_every_s:
                begin = time.monotonic()
                self._preview(session, stage)
                last_preview = time.monotonic()
                preview_s += last_preview - begin

        start = time.perf_counter()
        outcome = session.run_loop(on_step=on_step, should_stop=self.should_stop)
        # The stylization's palette match after its last step is timed apart: it is no step's cost.
        seconds = time.perf_counter() - start - session.finishing_s
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds
        if session.finishing_s:
            self.timings["palette_match"] = self.timings.get("palette_match", 0.0) + session.finishing_s
        train = session.data.train
        size = {"stylize_view_pixels": train.width * train.height} if stage == "stylize" and train is not None else {}
        self._record_rate(stage, session.step - first_step, seconds - preview_s, size)
        return outcome != "stopped"

    def _speed(self, stage: str, rate: float, step: int, total: int) -> None:
        """The measured speed: in the log file, and as a debug event (the panel shows the ETA instead)."""
        threads = self.share.threads if self.share else 0
        message = f"{stage}: {rate:.2f} steps/s with {threads} thread{'' if threads == 1 else 's'}, step {step}/{total}"
        log.info(message)
        self.events.send(LogEvent(level="debug", message=message))

    def _record_rate(self, stage: str, steps: int, seconds: float, size: dict) -> None:
        """Steps/s of this stage (with the view size it ran at, `size`) into the throughput file the
        panel's estimate reads."""
        rate = throughput.stage_rate(steps, seconds)
        if rate is None:
            return
        log.info("%s: %d steps in %.1f s, %.2f steps/s (%s)", stage, steps, seconds, rate,
                 self.share.describe() if self.share else "default threads")
        values = {f"{stage}_steps_per_s": round(rate, 4), "threads": self.share.threads if self.share else 0,
                  "device_kind": self.device_kind, **size}
        if not throughput.record(self.throughput_key, values):
            log.warning("could not write the throughput file %s", throughput.default_path())

    def _preview(self, session, stage: str) -> None:
        from .eval.pictures import save_png
        from .render.views import render_view

        views = session.data.test if session.data.test is not None else session.data.train
        scale = min(1.0, 160 / views.width)
        width, height = max(8, int(views.width * scale)), max(8, int(views.height * scale))
        intrinsics = views.intrinsics[0] * scale
        session.model.eval()
        render = render_view(session.model, views.c2w[0], intrinsics, width, height)
        previews = self.paths.result_dir / "previews"
        path = previews / f"preview_{stage}_{session.step:06d}.png"
        save_png(path, (render.rgba().clamp(0, 1).cpu().numpy() * 255).round().astype("uint8"))
        for old in previews.glob("preview_*.png"):
            if old != path:
                old.unlink(missing_ok=True)
        self.events.send(PreviewEvent(path=self.paths.relative(path)))

    # -- stages ------------------------------------------------------------------------------
    def run(self) -> int:
        import torch

        from .device import resolve_device
        from .presets import device_kind, job_settings
        from .train.fit import FitRequest, start_fit
        from .train.stylize import StylizeRequest, start_stylize

        spec, paths = self.spec, self.paths
        paths.make_dirs()
        device = resolve_device(spec.device)
        self._share_machine(device)
        settings = job_settings(spec.preset, device.type, spec.overrides)
        self.device_kind = device_kind(device.type)  # which of the preset's budgets an "auto" job's record measured
        log.info("job %s: mode %s, preset %s, device %s, settings %s", paths.root, spec.mode, spec.preset, device, settings)
        torch.manual_seed(spec.seed)

        # Refuse bad style images now rather than after minutes of pre-training.
        from .data.styles import load_style_image

        styles = [paths.resolve(style) for style in spec.styles]
        for style in styles:
            load_style_image(style, 64)

        content_dir = paths.checkpoints_dir / "content"
        fit = start_fit(FitRequest(data=paths.dataset_dir, kind=spec.mode, out=content_dir, device=spec.device,
                                   resolution=settings.get("train_resolution"), steps=settings["pretrain_steps"],
                                   batch_rays=settings.get("batch_rays"), seed=spec.seed))
        if not self._train("pretrain", fit):
            return self._cancelled()

        stylize_settings = {key: settings.get(name) for key, name in (
            ("steps", "stylize_steps"), ("patch", "patch_size"), ("stride", "stride"), ("style_weight", "style_weight"),
            ("content_weight", "content_weight"), ("geometry_weight", "geometry_weight"), ("tv_weight", "tv_weight"),
            ("color_transfer", "color_transfer"), ("lr", "lr"), ("stroke_scale", "stroke_scale"), ("mode", "stylize_mode"),
            ("vgg_size", "vgg_size"), ("palette_weight", "palette_weight"), ("palette_spread", "palette_spread"),
            ("consistency_weight", "consistency_weight"), ("style_detail", "style_detail"))}
        if "nnfm" in settings:
            stylize_settings["nnfm_weight"] = 1.0 if settings["nnfm"] else 0.0

        def backbone_log(message: str) -> None:
            log.warning(message)
            self.events.send(LogEvent(level="warning", message=message))

        stylized_dir = paths.checkpoints_dir / "stylized"
        stylize = start_stylize(StylizeRequest(run=content_dir, styles=styles, out=stylized_dir, device=spec.device, settings=stylize_settings,
                                               vgg_weights=spec.vgg_weights, cache_dir=spec.cache_dir, allow_download=spec.allow_download, seed=spec.seed),
                                log=backbone_log)
        stylize.note = lambda message: self._log("info", message)
        if not self._train("stylize", stylize):
            return self._cancelled()
        return self._finish(fit, stylize, settings)

    def _finish(self, fit, stylize, settings: dict) -> int:
        from .eval.evaluate import evaluate_views
        from .export.from_run import export_run
        from .export.pipeline import overall_fraction
        from .train.loading import TrainedRun

        spec, paths = self.spec, self.paths
        # The trained sessions already hold the models and the views: no second load from disk.
        trained = TrainedRun(stylize.run, stylize.config, stylize.model.eval(), stylize.data, stylize.device)
        content = TrainedRun(fit.run, fit.config, fit.model.eval(), fit.data, fit.device)
        n_styles = len(trained.config["styles"])
        trained.model.set_style(spec.style_mix or [1.0] + [0.0] * (n_styles - 1))
        files = {"checkpoint": paths.relative(trained.run.checkpoint_path), "run": paths.relative(stylize.run.root),
                 "content_run": paths.relative(fit.run.root)}
        metrics = {}
        if content.data.test is not None and len(content.data.test):
            metrics["pretrain_test_psnr"] = evaluate_views(content, content.data.test)["psnr"]
        if "mesh" in spec.outputs:
            self.events.send(StageEvent(stage="export", total_steps=100))
            start = time.perf_counter()
            result = export_run(trained, paths.result_dir, settings["mesh_resolution"], settings["texture_size"],
                                target_faces=settings["mesh_faces"] or None, keep_unseen=settings.get("mesh_keep_unseen", False),
                                smooth_iterations=settings.get("mesh_smooth", MESH_SMOOTH_ITERATIONS),
                                progress=lambda stage, fraction: self.events.progress(int(100 * overall_fraction(stage, fraction)), 100))
            self.timings["export"] = time.perf_counter() - start
            files.update({"mesh_glb": paths.relative(result.glb), "mesh_obj": paths.relative(result.obj), "mesh_npz": paths.relative(result.npz)})
            if result.texture is not None:
                files["texture"] = paths.relative(result.texture)
            metrics["mesh_faces"] = float(result.n_faces)
            metrics["mesh_unseen_faces"] = float(result.unseen_faces)
        self._renders(trained, files)
        backbone = trained.config["backbone"]
        manifest = ResultManifest(mode=spec.mode, styles=[s["name"] for s in trained.config["styles"]], backbone=backbone, files=files,
                                  metrics=metrics, timings_s=self.timings, aabb=[float(v) for v in trained.config["aabb"]])
        manifest.save(paths.result_json)
        # Start-up, export and renders: what the estimate adds to the training steps.
        other_s = time.monotonic() - self.started - self.timings.get("pretrain", 0.0) - self.timings.get("stylize", 0.0)
        throughput.record(self.throughput_key, {"other_s": round(max(0.0, other_s), 1)})
        self.events.send(ResultEvent(path=paths.relative(paths.result_json)))
        return 0

    def _renders(self, trained, files: dict) -> None:
        from .render.products import render_test_views

        views = trained.data.test if trained.data.test is not None else trained.data.train
        if views is not None:
            render_test_views(trained, self.paths.renders_dir)
            files["renders"] = self.paths.relative(self.paths.renders_dir)

    def _cancelled(self) -> int:
        log.info("cancelled (%s); checkpoint written, run the job again to resume", self.cancel.reason)
        self.events.send(CancelledEvent())
        return 0


def run_job(root: str | Path, events: Events | None = None) -> int:
    """Run a job directory; returns the exit status. Every failure is reported as an event."""
    events = events or Events()
    root = Path(root).resolve()
    paths = JobPaths(root)
    if not root.is_dir():
        events.send(ErrorEvent(kind="bad_input", message=f"Job folder '{root}' does not exist; write the job first (the add-on's Stylize Scene does).", log=""))
        return 2
    _setup_logging(paths)
    try:
        return JobRunner(root, events).run()
    except InputError as error:
        log.error("bad input: %s", error)
        events.send(ErrorEvent(kind="bad_input", message=str(error), log=paths.relative(paths.log_path)))
        return 2
    except Exception as error:  # noqa: BLE001 - everything else is reported, with the traceback in the log
        log.error("failed:\n%s", traceback.format_exc())
        kind = "out_of_memory" if "out of memory" in str(error).lower() or type(error).__name__ == "OutOfMemoryError" else "internal"
        message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".strip()
        if kind == "out_of_memory":
            message = "The device ran out of memory; choose a lower preset or the CPU."
        events.send(ErrorEvent(kind=kind, message=message, log=paths.relative(paths.log_path)))
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ins_core.worker", description=__doc__.splitlines()[0])
    parser.add_argument("job", type=Path)
    parser.add_argument("--serve", action="store_true", help="answer render requests on stdin (the INS render engine)")
    args = parser.parse_args(argv)
    if args.serve:
        from .render_server import serve

        return serve(args.job)
    return run_job(args.job)


if __name__ == "__main__":
    sys.exit(main())
