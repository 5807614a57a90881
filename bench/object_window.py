"""The palette match's loss network on the object's window against whole views, on finished stylized runs.

    python bench/object_window.py --stylized-run runs/demo/job/checkpoints/stylized runs/lego100_styles/*_default

Prints JSON lines (hardware first). Per run: `window` (the search views' windows at the loss
network's size), `screen` (the 48 signed permutations scored with whole views and with the window:
seconds each, the largest relative difference of a score, whether the ranking's first five agree)
and `match` (the whole palette match after training, as `stylize` runs it, each way in turn from
the identity map: seconds, the spread chosen, the map, and the search's objective of the map found,
scored with whole views). The runs on disk are left as they were.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, first_style_searches  # noqa: E402
from ins_core.losses.object_window import MARGIN, on_object_window  # noqa: E402
from ins_core.train.palette_match import palette_objective  # noqa: E402

WAYS = {"whole": None, "window": MARGIN}


def main() -> None:
    for path, session, identity, search in first_style_searches(__doc__):
        objective, field = session.objective, session.model.field
        s = objective.settings
        windows = []
        for view in search.views:
            mask = F.interpolate(view.opacity[None, None], scale_factor=s.vgg_size / max(view.opacity.shape), mode="bilinear")[0, 0]
            windows.append([*on_object_window(mask, mask)[1].shape, *mask.shape])
        emit("window", run=str(path), margin=MARGIN, windows_and_views=windows)

        screened = {}
        for way, margin in WAYS.items():
            objective.object_margin = margin
            start = time.perf_counter()
            screened[way] = search.screen()
            emit("screen", run=str(path), way=way, seconds=round(time.perf_counter() - start, 1), best=round(screened[way][0][0], 6))
        by_start = [{tuple(q.flatten().tolist()): score for score, q in screened[way]} for way in WAYS]
        first_five = [[tuple(q.flatten().tolist()) for _, q in screened[way][:5]] for way in WAYS]
        emit("screen_agreement", run=str(path), largest_relative_difference=round(max(abs(by_start[1][k] / by_start[0][k] - 1) for k in by_start[0]), 6),
             same_first_five=first_five[0] == first_five[1])

        for way, margin in WAYS.items():
            with torch.no_grad():
                field.color_maps.copy_(identity)
            objective.object_margin = margin
            start = time.perf_counter()
            objective.match_palettes()
            seconds = time.perf_counter() - start
            affine = field.color_maps[0].detach().clone()
            objective.object_margin = None
            with torch.no_grad():
                score = float(palette_objective(affine, search.views, search.style_loss, search.colours, search.differences))
            emit("match", run=str(path), way=way, seconds=round(seconds, 1), spread=objective.chosen_spreads[0],
                 map=[round(v, 4) for v in affine.flatten().tolist()], objective_whole_views=round(score, 6))


if __name__ == "__main__":
    main()
