"""The long-lived render server behind the "INS" render engine: load the model once, render many.

    python -m ins_core.worker JOB --serve

Emits `ready`, then answers each `render` command on stdin (camera, intrinsics, size, style mix)
with an RGBA PNG written atomically to the command's `out` path (over the command's background
colour, and its Z, Mist and Normal passes, when it asks) and a `rendered` event. Other finished
jobs a command names (`others`: every stylized object a scene shows) are loaded once and rendered
into the same frame. `quit` or the end of stdin stops it. A bad request gets an `error` event and
the server keeps serving.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .job import JobPaths, JobSpec, ResultManifest
from .protocol import NO_DEPTH, ErrorEvent, QuitCommand, ReadyEvent, RenderCommand, RenderedEvent, decode_command, write_message


# Where the engine sends the server's stderr (ins_blender/worker_process.py SERVER_STDERR_NAME); error events
# must name a log.
SERVER_LOG = "render_server_stderr.txt"


@dataclass
class ServedJob:
    """A finished job's trained run, and the style mix its mesh and renders were made with
    (job.json's; None: the first style), which a frame that asks for no mix of its own shows."""

    run: Any  # train.loading.TrainedRun
    mix: list[float] | None

    def style_weights(self, asked: list[float] | None) -> list[float] | None:
        """The style weights a frame shows it in: those `asked`, else its job's mix, else the first
        style (None for a run that is not stylized: it has one look)."""
        from .fields.stylization import one_style

        if self.run.kind != "stylized":
            return None
        return asked or self.mix or one_style(0, len(self.run.config["styles"]))


def served_job(paths: JobPaths, device: str) -> ServedJob:
    """The finished job at `paths`, loaded for rendering (InputError when it has no result)."""
    run = _trained_run(paths, device)
    return ServedJob(run, JobSpec.load(paths.job_json).style_mix if paths.job_json.is_file() else None)


def _trained_run(paths: JobPaths, device: str):
    from .train.loading import open_run

    if not paths.result_json.is_file():
        raise InputError(f"Job '{paths.root}' has no result yet; run Stylize Scene (or python -m ins_core run-job) to the end first.")
    manifest = ResultManifest.load(paths.result_json)
    run = manifest.files.get("run")
    if not run:
        raise InputError(f"{paths.result_json} names no stylized run; run the job again.")
    return open_run(paths.resolve(run), device, load_data=False)


def render_request(served: ServedJob, command: RenderCommand, fast: bool = True,
                   other_job: Callable[[str], ServedJob] | None = None) -> Path:
    """Render the command's frame of `served` (and of its `others`, each job from `other_job`, laid
    together), each in the mix asked for, else its job's own; write the PNG and the passes asked
    for; the PNG's path."""
    import numpy as np
    import torch

    from .data.lens import ThinLens
    from .data.placement import Placement
    from .eval.pictures import save_png
    from .export.writers import write_bytes
    from .render.frame import FieldLayer, render_fields
    from .render.parallel import frame_workers

    device = served.run.device
    mist = command.mist
    background = None if command.background is None else torch.tensor(command.background, dtype=torch.float32, device=device)

    def layer_of(job: ServedJob, style_mix, placement, motion) -> FieldLayer:
        return FieldLayer(job.run.model, None if placement is None else Placement.from_matrix(placement),
                          None if motion is None else torch.tensor(motion, dtype=torch.float32, device=device),
                          job.style_weights(style_mix))

    if command.others and other_job is None:
        raise InputError("This render server renders its own job only; send the request without 'others'.")
    layers = [layer_of(served, command.style_mix, command.placement, command.motion)]
    layers += [layer_of(other_job(other["job"]), other["style_mix"], other["placement"], other["motion"]) for other in command.others or []]
    frame = render_fields(
        layers, torch.tensor(command.c2w, dtype=torch.float32, device=device),
        torch.tensor([command.fx, command.fy, command.cx, command.cy], dtype=torch.float32, device=device),
        command.width, command.height, samples=command.samples, background=background,
        no_depth=NO_DEPTH if command.depth_out else None,
        mist=None if mist is None else (mist["start"], mist["depth"], mist["exponent"]),
        normals=bool(command.normal_out), orthographic=command.orthographic,
        lens=None if command.lens is None else ThinLens(**command.lens), fast=fast, workers=frame_workers() if fast else 1)
    for path, values in ((command.depth_out, frame.depth), (mist and mist["out"], frame.mist), (command.normal_out, frame.normal)):
        if path:
            write_bytes(path, _float32_bytes(values))
    out = Path(command.out)
    save_png(out, (frame.rgba.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8))
    return out


def _float32_bytes(image) -> bytes:
    """A [H, W] or [H, W, C] pass as the engine reads it: float32 little-endian, top row first."""
    return image.cpu().numpy().astype("<f4").tobytes()


def _prepare(trained) -> None:
    """Build the fast renderer's lattices now, so the first frame after `ready` does not pay for
    them, and leave torch one thread: frames are split over worker threads instead (one per core),
    which a core lost to Blender or other work slows by its share only (render/parallel.py)."""
    import torch

    from .render.fast import fast_renderer

    torch.set_num_threads(1)
    fast_renderer(trained.model)


def serve(job: str | Path, stdin=None, stdout=None, device: str = "auto", fast: bool = True) -> int:
    """Answer render requests for a finished job; `fast=False` keeps the reference renderer (benchmarks)."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    paths = JobPaths(Path(job).resolve())
    try:
        own = served_job(paths, device)
    except InputError as error:
        write_message(ErrorEvent(kind="bad_input", message=str(error), log=SERVER_LOG), stdout)
        return 2
    if fast:
        _prepare(own.run)
    loaded: dict[str, tuple[int, ServedJob]] = {}  # a job's folder: its result's stamp, the job loaded

    def other_job(job: str) -> ServedJob:
        """Another finished job (loaded once; again, in place of the old, when its result is newer)."""
        other = JobPaths(Path(job).resolve())
        if other.root == paths.root:
            return own
        stamp = other.result_json.stat().st_mtime_ns if other.result_json.is_file() else 0
        if loaded.get(str(other.root), (None,))[0] != stamp:
            try:
                served = served_job(other, device)
            except (OSError, RuntimeError, KeyError) as error:  # a folder half deleted, a checkpoint cut short
                raise InputError(f"The INS job '{other.root}' shown in the scene cannot be loaded ({error}); run it again, "
                                 "or hide its stylized mesh.") from None
            if fast:
                _prepare(served.run)
            loaded[str(other.root)] = (stamp, served)
        return loaded[str(other.root)][1]

    write_message(ReadyEvent(), stdout)
    for line in stdin:
        try:
            command = decode_command(line)
        except ValueError as error:
            write_message(ErrorEvent(kind="bad_input", message=f"bad render request: {error}", log=SERVER_LOG), stdout)
            continue
        if command is None:
            continue
        if isinstance(command, QuitCommand):
            break
        try:
            out = render_request(own, command, fast, other_job)
        except (InputError, ValueError) as error:
            write_message(ErrorEvent(kind="bad_input", message=str(error), log=SERVER_LOG), stdout)
            continue
        write_message(RenderedEvent(request_id=command.request_id, path=str(out)), stdout)
    return 0
