"""The palette match after training run again on finished stylized runs, with other settings.

    python bench/palette_rematch.py --stylized-run runs/lego100_styles/*_default --spread 1 auto [--distribution both]
        [--consistency both] [--coarse-refine both] [--picture FILE.png]

The strokes a run learnt do not depend on the match (it runs after the last step), so the match's
settings can be compared on the very same fields: for each run and each `--spread` (and the
search's steps), the run's colour map is set back to the identity, the match runs as `stylize`
runs it, and the run is measured as `bench/stylize_lego.py` measures it (one JSON line each,
hardware first; the run on disk is left as it was). With --picture, one grid of held-out views:
a row per run, the settings side by side.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware  # noqa: E402
from bench.stylize_lego import metrics_record  # noqa: E402
from ins_core.data.styles import kept_style  # noqa: E402
from ins_core.eval.evaluate import content_run_of  # noqa: E402
from ins_core.eval.pictures import image_grid, save_png  # noqa: E402
from ins_core.eval.stylization import evaluate_stylized  # noqa: E402
from ins_core.losses.backbone import resolve_backbone  # noqa: E402
from ins_core.render.views import render_view  # noqa: E402
from ins_core.stylize_options import palette_spread_arg  # noqa: E402
from ins_core.train.loading import open_run  # noqa: E402
from ins_core.train.stylize import StylizeRequest, start_stylize  # noqa: E402

WAYS = {"on": [True], "off": [False], "both": [False, True]}  # an on/off/both argument: the ways to run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stylized-run", type=Path, nargs="+", required=True, help="finished single-style stylized runs")
    parser.add_argument("--spread", type=palette_spread_arg, nargs="+", default=[1.0], help="palette spreads to compare (numbers or auto)")
    parser.add_argument("--search-steps", type=int, help="the search's steps (default: each run's own)")
    parser.add_argument("--refined-starts", type=int, help="how many screened starts the search refines (default: the match's own)")
    parser.add_argument("--spread-weighs-colours", action="store_true", help="with --spread auto, weigh the colour distance too, as the search does")
    parser.add_argument("--distribution", choices=("on", "off", "both"), default="on",
                        help="the search also weighs the colours' distance from the painting's distribution (both: one line each)")
    parser.add_argument("--consistency", choices=("on", "off", "both"), default="on",
                        help="the search also weighs how much a map stretches the differences between neighbouring views (both: one line each)")
    parser.add_argument("--coarse-refine", choices=("on", "off", "both"), default="off",
                        help="the search's refine steps with the loss network at half its size too (both: one line each)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--picture", type=Path, help="a PNG of the held-out views, a row per run (the runs of one resolution)")
    parser.add_argument("--no-eval", action="store_true", help="pictures and the match's time only")
    parser.add_argument("--views", type=int, nargs="+", default=[0, 5], help="held-out views shown in the pictures")
    args = parser.parse_args()

    extractor, tiles, labels = None, [], []
    for path in args.stylized_run:
        finished = open_run(path, args.device, load_data=False)  # its config and device; the session below loads the rest
        config = finished.config
        if extractor is None:
            emit_hardware(finished.device)
            extractor = resolve_backbone(log=lambda m: None).extractor.to(finished.device)
        content = content_run_of(finished)
        views = content.data.test
        white = torch.ones(3, device=finished.device)
        # Opening the run as a stylization session resumes it: the same field, views and loss network.
        session = start_stylize(StylizeRequest(run=content.run.root, styles=config["signature"]["styles"], out=path,
                                               device=args.device, settings={}, force=False))
        objective, field = session.objective, session.model.field
        style = torch.from_numpy(kept_style(path, config["styles"][0])).to(finished.device)
        distributions, consistencies, refines = (WAYS[choice] for choice in (args.distribution, args.consistency, args.coarse_refine))
        for spread, distribution, consistent, coarse_refine in ((s, d, c, r) for s in args.spread for d in distributions
                                                                for c in consistencies for r in refines):
            objective.settings.palette_spread = spread
            objective.settings.palette_distribution = distribution
            objective.settings.palette_consistency = consistent
            if args.search_steps is not None:
                objective.settings.palette_search_steps = args.search_steps
            with torch.no_grad():
                field.color_maps.copy_(torch.eye(3, 4, device=field.color_maps.device).expand_as(field.color_maps))
            start = time.perf_counter()
            objective.match_palettes(refined_starts=args.refined_starts, spread_weighs_colours=args.spread_weighs_colours,
                                     coarse_refine=coarse_refine)
            seconds = time.perf_counter() - start
            measured = {} if args.no_eval else metrics_record(evaluate_stylized(SimpleNamespace(model=session.model), content, views, [style],
                                                                                extractor, working_size=objective.settings.vgg_size))
            emit("palette_rematch", run=path.name, spread=spread, distribution=distribution, consistency=consistent, chosen_spread=objective.chosen_spreads[0],
                 search_steps=objective.settings.palette_search_steps, refined_starts=args.refined_starts, spread_weighs_colours=args.spread_weighs_colours,
                 coarse_refine=coarse_refine, map=[round(v, 4) for v in field.color_maps[0].detach().flatten().tolist()], match_seconds=round(seconds, 1), resolution=views.width, **measured)
            session.model.set_style([1.0])
            for k in args.views:
                tiles.append(render_view(session.model, views.c2w[k], views.intrinsics[k] * 2, views.width * 2, views.height * 2,
                                         white).rgb.clamp(0, 1).cpu().numpy())
                labels.append(f"{path.name}, spread {spread}{', distribution' if distribution else ''}{', consistency' if consistent else ''}{', coarse refine' if coarse_refine else ''}, view {k}")
        if args.picture:  # after each run, so that a run cut short still leaves the rows before it
            save_png(args.picture, image_grid(tiles, labels, columns=len(args.views) * len(args.spread) * len(distributions) * len(consistencies) * len(refines)))


if __name__ == "__main__":
    main()
