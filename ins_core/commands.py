"""What each CLI command does, with tqdm progress bars."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from .train.fit import FitRequest, FitSession, start_fit
from .train.trainer import TrainingDiverged

EXIT_FAILED = 1


def _train_with_bar(session: FitSession, time_budget: float | None = None) -> str:
    bar = tqdm(total=session.config["steps"], initial=session.step, desc=f"fit {session.config['kind']}", unit="step", dynamic_ncols=True)

    def on_step(result, elapsed):
        bar.update(result.step - bar.n)
        if result.step % 10 == 0:
            bar.set_postfix(loss=f"{result.loss:.4f}", psnr=f"{result.psnr:.2f}")

    try:
        return session.run_loop(time_budget, on_step)
    except KeyboardInterrupt:
        session.save("training")
        raise
    finally:
        bar.close()


def run_fit(args: argparse.Namespace) -> int:
    request = FitRequest(
        data=args.data, kind=args.field, out=args.out, device=args.device, resolution=args.resolution,
        steps=args.steps, batch_rays=args.batch_rays, holdout_every=args.holdout_every, seed=args.seed,
        force=args.force, image_backbone=args.image_backbone,
    )
    session = start_fit(request)
    if session.step >= session.config["steps"]:
        print(f"{args.out}: already trained ({session.step} steps); pass --steps N for more, or --force to start again.")
        return 0
    try:
        outcome = _train_with_bar(session, args.time_budget)
    except TrainingDiverged as error:
        print(f"error: training diverged: {error}; try a smaller --batch-rays or fewer --steps.", file=sys.stderr)
        return EXIT_FAILED
    from .render.products import plot_history

    plot_history(session.history, session.run.root / "loss.png")
    print(f"{args.out}: {outcome} at step {session.step}; checkpoint {session.run.checkpoint_path}")
    return 0


def _progress_bar(desc: str):
    bar = tqdm(desc=desc, unit="view", dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return update


def run_render(args: argparse.Namespace) -> int:
    from .render.products import render_image_run, render_test_views, render_turntable
    from .train.loading import open_run

    trained = open_run(args.run, args.device)
    renders = trained.run.renders_dir
    if trained.kind == "image":
        print(render_image_run(trained, renders, args.width))
        return 0
    render_test_views(trained, renders / "test", _progress_bar("test views"))
    print(f"held-out views and depth maps: {renders / 'test'}")
    if not args.no_turntable:
        path = render_turntable(trained, renders / f"turntable.{args.format}", args.turntable_frames, progress=_progress_bar("turntable"))
        print(f"turntable: {path}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from .eval.evaluate import evaluate_run
    from .train.loading import open_run

    trained = open_run(args.run, args.device)
    metrics = evaluate_run(trained, _progress_bar("evaluate"))
    print(f"{args.run}: {metrics['split']} PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f} (written to {trained.run.metrics_path})")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """Generate the demo scene, train a NeRF on it, evaluate and render."""
    from .data.demo_scene import write_demo_dataset, write_demo_style

    out: Path = args.out
    dataset = out / "dataset"
    if not (dataset / "transforms_train.json").is_file():
        write_demo_dataset(dataset, n_train=40, n_test=8, resolution=64)
        write_demo_style(out / "demo_style.png")
    run_args = argparse.Namespace(data=dataset, field="nerf", out=out / "nerf", device=args.device, resolution=None, steps=args.steps,
                                  batch_rays=None, holdout_every=10, seed=0, force=args.force, image_backbone="hashgrid", time_budget=None)
    status = run_fit(run_args)
    if status != 0:
        return status
    render_args = argparse.Namespace(run=out / "nerf", device=args.device, turntable_frames=36, format="gif", no_turntable=False, width=None)
    run_eval(render_args)
    return run_render(render_args)
