"""Stylization after pre-training, per painting: time, collapse checks, style match, geometry, consistency.

    python bench/fit_lego.py --resolution 100 --time-budget 120 --out runs/lego100
    python bench/stylize_lego.py --content-run runs/lego100 --style ../shared/data/styles/*.jpg \
        --variant default --variant gram --pictures docs/figures --out runs/lego100_styles

Prints JSON lines (hardware first), one per painting and variant, with what the acceptance bar
asks: silhouette IoU and saturated pixels (no collapse), colour-statistics and object Gram distance
before -> after (style match), depth change and 15/60 degree warp RMSE against the content field's
(geometry and consistency), seconds, and the Gram fall of the painting itself pasted into lego's
silhouette at the render's size (what a perfect stylization of those pixels would score); and the
same two falls against the painting as a view of the render's size can show it (`gram_fall_seen`,
`gram_fall_seen_painting_pasted`). Variants:
  default     the chosen defaults (view mode: Gram + NNFM + content + total variation, the palette
              term while training, the painting's detail by the views' size (auto), the SIM's grid
              reaching the colour through a path of its own, colour transfer and the palette match
              with its stretch chosen per painting)
  gram        INS's Gram + content losses alone on whole views against the painting at its own
              detail (no NNFM, no palette, no colour transfer), through INS's own modules (no grid
              colour path)
  no_palette  the defaults without the palette term while training (--palette-weight 0)
  patch       INS's sampling-stride patches (32 px, stride 2) with the geometry term
  gpu512      the defaults with a GPU's loss-network size (512 px) and all training views, to see on
              a CPU what a GPU run gives (at its own step count: pass --steps 400 for the GPU's)
  gpu512_full gpu512 with the painting's full detail as the target (style_detail "full") instead of
              what a view of the render's size can show
`--set KEY=VALUE` changes one more setting over every variant (e.g. `--set tv_weight=25`; the run's
directory and picture label name it). With --pictures, `lego_styles.png` (or --picture-name) shows
the content and each painting for two views and each variant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware, peak_memory_mb, sync  # noqa: E402
from ins_core.data.styles import kept_style, load_style_image  # noqa: E402
from ins_core.eval.evaluate import gram_fall  # noqa: E402
from ins_core.eval.pictures import image_grid, save_png  # noqa: E402
from ins_core.eval.stylization import evaluate_stylized  # noqa: E402
from ins_core.losses.backbone import resolve_backbone  # noqa: E402
from ins_core.render.views import render_view  # noqa: E402
from ins_core.train.loading import open_run  # noqa: E402
from ins_core.train.stylize import StylizeRequest, start_stylize  # noqa: E402
from ins_core.train.stylize_settings import StylizeSettings  # noqa: E402

VARIANTS = {
    "default": {},
    "gram": {"nnfm_weight": 0.0, "color_transfer": False, "content_weight": 0.5, "tv_weight": 0.0, "palette_weight": 0.0,
             "style_detail": "full", "grid_color_path": False},
    "no_palette": {"palette_weight": 0.0},
    "patch": {"mode": "patch", "nnfm_weight": 0.0, "color_transfer": False, "content_weight": 0.5, "steps": 300},
    "gpu512": {"vgg_size": 512, "max_views": 0},
    "gpu512_full": {"vgg_size": 512, "max_views": 0, "style_detail": "full"},
}


def setting(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    if key not in StylizeSettings.__dataclass_fields__ or not value:
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=VALUE with KEY a stylization setting")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def metrics_record(metrics: dict) -> dict:
    """`evaluate_stylized`'s figures for a one-painting run as a bench line's fields, with the Gram
    falls the acceptance bar reads."""
    style = metrics["styles"][0]
    return {**{k: round(v, 4) if isinstance(v, float) else v for k, v in style.items() if k != "style"},
            "content_short_range_rmse": round(metrics["content"]["short_range_rmse"], 4),
            "content_long_range_rmse": round(metrics["content"]["long_range_rmse"], 4),
            "gram_fall": round(gram_fall(style, "style_distance_after"), 3),
            "gram_fall_painting_pasted": round(gram_fall(style, "style_distance_painting"), 3),
            "gram_fall_seen": round(gram_fall(style, "style_distance_seen_after"), 3),
            "gram_fall_seen_painting_pasted": round(gram_fall(style, "style_distance_seen_painting"), 3)}


def timed_marches(session) -> dict[str, float]:
    """Time the content geometry's marches (a view's visible samples, built when its cache misses)
    apart from the steps: the session's `view_samples` is wrapped, synchronised on a GPU. Marches
    during the palette match are left to the match's own time."""
    spent = {"march": 0.0}
    objective, view_samples, match_palettes = session.objective, session.objective.view_samples, session.objective.match_palettes

    def timed(view: int):
        if view in objective.sample_cache:
            return view_samples(view)
        sync(session.device)
        start = time.perf_counter()
        found = view_samples(view)
        sync(session.device)
        spent["march"] += time.perf_counter() - start
        return found

    def match(*args, **kwargs):
        march = spent["march"]
        try:
            return match_palettes(*args, **kwargs)
        finally:
            spent["march"] = march

    objective.view_samples, objective.match_palettes = timed, match
    return spent


def stylize(content_run: Path, style: Path, out: Path, device: str, settings: dict, seed: int) -> tuple[float, int, dict]:
    """Seconds, steps, and how the seconds divide: marching the views, the palette match after the
    last step, and the rest (the steps themselves)."""
    session = start_stylize(StylizeRequest(run=content_run, styles=[style], out=out, device=device, settings=settings, force=True,
                                           seed=seed))
    spent = timed_marches(session)
    sync(session.device)
    start = time.perf_counter()
    session.run_loop()
    sync(session.device)
    seconds = time.perf_counter() - start
    # The first session of a process outlives this function until the cycle collector runs (torch's
    # lazy import during the first optimizer's creation leaves frames in a reference cycle, and their
    # calling frames hold the session): drop its kept samples now, so that the next painting does not
    # share the device's memory with them.
    session.objective.sample_cache.clear()
    split = {"march": round(spent["march"], 1), "palette_match": round(session.finishing_s, 1)}
    split["steps"] = round(seconds - spent["march"] - session.finishing_s, 1)
    return seconds, session.step, split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--content-run", type=Path, required=True)
    parser.add_argument("--style", type=Path, nargs="+", required=True)
    parser.add_argument("--variant", action="append", choices=tuple(VARIANTS), help="default: only `default`")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--set", dest="overrides", type=setting, action="append", default=[], metavar="KEY=VALUE",
                        help="one more stylization setting over the variant's, e.g. tv_weight=25 (kept in the run's name)")
    parser.add_argument("--seed", type=int, default=0, help="the style modules' initialisation (runs of seed k > 0 are kept as NAME_VARIANT_seedk)")
    parser.add_argument("--no-eval", action="store_true", help="pictures and time only")
    parser.add_argument("--eval-size", type=int, help="measure the Gram distances with views at this size for the loss network and the painting "
                        "read at it (times the stroke scale) from its file (default: each run's own vgg_size and "
                        "copy of the painting; give one size to compare runs that differ in it)")
    parser.add_argument("--reuse", action="store_true", help="draw (and evaluate) finished runs already in --out instead of training them again")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, required=True, help="where the stylized runs are kept")
    parser.add_argument("--pictures", type=Path)
    parser.add_argument("--picture-name", default="lego_styles.png", help="file name of the grid in --pictures")
    parser.add_argument("--views", type=int, nargs="+", default=[0, 5], help="held-out views shown in the picture")
    parser.add_argument("--picture-scale", type=int, default=2, help="pictures at this many times the training resolution")
    args = parser.parse_args()

    content = open_run(args.content_run, args.device)
    emit_hardware(content.device)
    views = content.data.test
    extractor = resolve_backbone(log=lambda m: None).extractor.to(content.device)
    white = torch.ones(3, device=content.device)

    scale = args.picture_scale

    def draw(model, k):  # the fields are continuous: pictures may be finer than the training views
        return render_view(model, views.c2w[k], views.intrinsics[k] * scale, views.width * scale, views.height * scale,
                           white).rgb.clamp(0, 1).cpu().numpy()

    columns = len(args.views) * len(args.variant or ["default"])
    tiles, labels = [draw(content.model, k) for k in args.views], [f"content, view {k}" for k in args.views]
    tiles += [tiles[0] * 0 + 1] * (columns - len(tiles))
    labels += [""] * (columns - len(labels))
    for style in args.style:
        for variant in args.variant or ["default"]:
            settings = {**VARIANTS[variant], **({"steps": args.steps} if args.steps else {}), **dict(args.overrides)}
            name = "".join([variant, *(f"_{key}{value}" for key, value in args.overrides)])
            out = args.out / (f"{style.stem}_{name}" + (f"_seed{args.seed}" if args.seed else ""))
            reused = args.reuse and (out / "run.json").is_file() and open_run(out, args.device, load_data=False).config.get("status") == "done"
            seconds, steps, split = (None, None, None) if reused else stylize(args.content_run, style, out, args.device, settings, args.seed)
            stylized = open_run(out, args.device)
            record = {"style": style.stem, "variant": variant, **({"settings": dict(args.overrides)} if args.overrides else {}), "seed": args.seed, "seconds": None if reused else round(seconds, 1), "steps": steps,
                      "seconds_split": split, "resolution": views.width,
                      **({"eval_size": args.eval_size} if args.eval_size else {})}
            if not args.no_eval:
                # The run's copy of the painting is at its own network's size; measured at another,
                # the painting is read from its file at that size, as a run at that size reads it.
                size = args.eval_size and StylizeSettings.for_device(content.device, vgg_size=args.eval_size,
                                                                     stroke_scale=stylized.config["stylize"]["stroke_scale"]).style_size
                # The run's copy through kept_style: it may be under the smallest painting a user may
                # give (64 px on the shorter side), as a fitted network of views under 40 px keeps it.
                painting = load_style_image(style, size, enlarge=True).pixels if size else kept_style(out, stylized.config["styles"][0])
                pixels = torch.from_numpy(painting).to(content.device)
                metrics = evaluate_stylized(stylized, content, views, [pixels], extractor,
                                            working_size=args.eval_size or stylized.config["stylize"].get("vgg_size"))
                record.update(metrics_record(metrics))
            emit("stylize", **record)
            tiles += [draw(stylized.model, k) for k in args.views]
            labels += [f"{style.stem} {name}, view {k}" for k in args.views]
            if args.pictures:  # after each run, so a run cut short by a time limit still leaves its picture
                save_png(args.pictures / args.picture_name, image_grid(tiles, labels, columns=columns))
    emit("memory", **peak_memory_mb(content.device))


if __name__ == "__main__":
    main()
