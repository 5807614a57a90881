"""Stylization after pre-training: time, style match, content kept, geometry kept, consistency.

    python bench/fit_lego.py --resolution 100 --time-budget 300 --out runs/lego100
    python bench/stylize_lego.py --content-run runs/lego100 --style ../shared/data/styles/starry_night.jpg \
        --compare-geometry --pictures runs/lego100_pictures

Prints JSON lines (hardware first). With --compare-geometry the same stylization runs again without
the geometry-consistency term, and the depth maps of both are saved side by side.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware, peak_memory_mb, sync  # noqa: E402
from ins_core.data.styles import load_style_image  # noqa: E402
from ins_core.eval.pictures import colorize_depth, image_grid, save_png  # noqa: E402
from ins_core.eval.stylization import evaluate_stylized  # noqa: E402
from ins_core.losses.vgg import resolve_backbone  # noqa: E402
from ins_core.render.views import render_view  # noqa: E402
from ins_core.train.loading import open_run  # noqa: E402
from ins_core.train.stylize import StylizeRequest, over_white, start_stylize  # noqa: E402


def test_renders(trained, views):
    white = torch.ones(3, device=trained.device)
    return [render_view(trained.model, views.c2w[k], views.intrinsics[k], views.width, views.height, white) for k in range(len(views))]


def stylize(args, geometry_weight: float, out: Path) -> tuple[float, int]:
    settings = {"steps": args.steps, "geometry_weight": geometry_weight, "patch": args.patch, "stride": args.stride}
    session = start_stylize(StylizeRequest(run=args.content_run, styles=[args.style], out=out, device=args.device, settings=settings, force=True))
    sync(session.device)
    start = time.perf_counter()
    session.run_loop(args.time_budget)
    sync(session.device)
    return time.perf_counter() - start, session.step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--content-run", type=Path, required=True)
    parser.add_argument("--style", type=Path, required=True)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--patch", type=int)
    parser.add_argument("--stride", type=int)
    parser.add_argument("--time-budget", type=float, help="stop stylizing after this many seconds")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compare-geometry", action="store_true")
    parser.add_argument("--pictures", type=Path)
    args = parser.parse_args()

    content = open_run(args.content_run, args.device)
    emit_hardware(content.device)
    views = content.data.test
    style = torch.from_numpy(load_style_image(args.style, 512).pixels).to(content.device)
    backbone = resolve_backbone(log=lambda m: None)
    extractor = backbone.extractor.to(content.device)
    work = Path(tempfile.mkdtemp(prefix="stylize_lego_"))
    variants = [("with_geometry", 0.1)] + ([("without_geometry", 0.0)] if args.compare_geometry else [])
    results = {}
    for name, weight in variants:
        seconds, steps = stylize(args, weight, work / name)
        stylized = open_run(work / name, args.device)
        metrics = evaluate_stylized(stylized, content, views, [style], extractor)
        if not results:
            emit("content", **{k: round(v, 4) for k, v in metrics["content"].items()})
        emit("stylize", variant=name, seconds=round(seconds, 1), steps=steps, backbone=backbone.name, pretrained=backbone.pretrained, **metrics["styles"][0])
        results[name] = test_renders(stylized, views)
    emit("memory", **peak_memory_mb(content.device))
    if args.pictures:
        save_pictures(args.pictures, views, test_renders(content, views), results)


def save_pictures(folder: Path, views, content_renders, results: dict) -> None:
    """Photograph, content and each stylized variant side by side, and their depth maps."""
    to_np = lambda t: t.clamp(0, 1).cpu().numpy()  # noqa: E731
    for k in range(min(2, len(views))):
        photo = over_white(views.rgba(k))
        images = [to_np(photo), to_np(content_renders[k].rgb)] + [to_np(results[n][k].rgb) for n in results]
        depths = [colorize_depth(r.depth.cpu().numpy(), r.opacity.cpu().numpy()) for r in [content_renders[k]] + [results[n][k] for n in results]]
        labels = ["photograph", "content"] + [f"stylized {n.replace('_', ' ')}" for n in results]
        save_png(folder / f"view_{k}.png", image_grid(images, labels))
        save_png(folder / f"depth_{k}.png", image_grid(depths, ["content depth"] + [f"depth {n.replace('_', ' ')}" for n in results]))


if __name__ == "__main__":
    main()
