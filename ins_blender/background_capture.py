"""The background Blender that renders a job's training views for the Stylize Scene operator, so
the interface stays responsive: it opens the copy of the file the operator saved into the job,
captures the views (`capture.capture_views`) and speaks the worker protocol on stdout (stage,
progress, result, cancelled on the job's cancel file, one-sentence errors).

    blender -b --factory-startup JOB/capture_scene.blend --python-exit-code 1 --python-expr \\
        "import ...background_capture as b; sys.exit(b.capture_main())" -- --capture-job JOB ...
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import bpy

from ins_core.errors import InputError
from ins_core.job import JobPaths
from ins_core.protocol import CancelledEvent, ErrorEvent, ProgressEvent, ResultEvent, StageEvent, write_message

from .batch_args import args_after_dashes


def _capture_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ins capture")
    p.add_argument("--capture-job", required=True)
    p.add_argument("--scene", default="")
    p.add_argument("--source", default="auto_rig")
    p.add_argument("--collection", default=None)
    p.add_argument("--object", action="append", default=None)
    p.add_argument("--views", type=int, default=24)
    p.add_argument("--full-sphere", action="store_true")
    p.add_argument("--resolution", type=int, nargs=2, default=(64, 64))
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--delete-blend", action="store_true")
    return p


def capture_main(argv: list[str] | None = None, out=None) -> int:
    """Render a job's training views in this (background) Blender, speaking the protocol."""
    from .capture import CaptureCancelled, capture_views

    out = out or sys.stdout
    args = _capture_parser().parse_args(args_after_dashes(argv))
    job = JobPaths(Path(args.capture_job))
    blend = bpy.data.filepath
    started = time.monotonic()
    status = 0
    try:
        scene = bpy.data.scenes.get(args.scene) if args.scene else bpy.context.scene
        if scene is None:
            raise InputError(f"The scene '{args.scene}' is not in the saved copy; save the file and try again.")
        objects = None
        if args.object:
            objects = [bpy.data.objects[n] for n in args.object if n in bpy.data.objects]
        write_message(StageEvent(stage="capture", total_steps=0), out)

        def progress(done, total):
            if done == 1:
                write_message(StageEvent(stage="capture", total_steps=total), out)
            elapsed = time.monotonic() - started
            eta = elapsed / done * (total - done) if done else None
            write_message(ProgressEvent(step=done, total_steps=total, eta_s=eta), out)

        capture_views(scene, job.root, source=args.source, collection_name=args.collection, objects=objects,
                      n_views=args.views, hemisphere=not args.full_sphere, resolution=tuple(args.resolution),
                      samples=args.samples, seed=args.seed, progress=progress,
                      cancel=lambda: job.cancel_path.exists())
        write_message(ResultEvent(path="dataset/transforms_train.json"), out)
    except InputError as error:
        write_message(ErrorEvent(kind="bad_input", message=str(error), log="capture_stderr.txt"), out)
        status = 2
    except CaptureCancelled:
        write_message(CancelledEvent(), out)
    except Exception as error:  # noqa: BLE001 - reported as one line, traceback in the log
        traceback.print_exc()
        write_message(ErrorEvent(kind="internal", message=f"The capture failed ({type(error).__name__}: {error})",
                                 log="capture_stderr.txt"), out)
        status = 1
    finally:
        # Only the copy the operator saved into this job is ever deleted.
        if args.delete_blend and blend and Path(blend).resolve().parent == job.root.resolve():
            for path in (Path(blend), Path(blend + "1")):
                try:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass
    return status
