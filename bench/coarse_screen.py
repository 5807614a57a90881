"""The palette match's screen with the loss network at half its size first, against the full screen, on finished stylized runs.

    python bench/coarse_screen.py --stylized-run runs/demo/job/checkpoints/stylized runs/lego100_styles/*_default

Prints JSON lines (hardware first). Per run: `screen` each way (the 48 signed permutations scored
with the loss network at its size; scored at half of it, then the best `COARSE_SCREEN_KEPT` of each
handedness scored again at its size): seconds and the best start with its score; `order` (where the
full screen's best of each handedness stands in the coarse screen's order, 0 first, and whether
both ways pick the same start); then `match` (the whole palette match after training, as `stylize`
runs it, each way in turn from the identity map: seconds, the spread chosen, the map). The runs on
disk are left as they were.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, first_style_searches  # noqa: E402
from ins_core.train.palette_match import of_handedness  # noqa: E402


def _key(q: torch.Tensor) -> tuple:
    return tuple(q.flatten().tolist())


def main() -> None:
    for path, session, identity, search in first_style_searches(__doc__):
        objective, field = session.objective, session.model.field
        s = objective.settings
        coarse_loss, screened = search.coarse_loss, {}
        for way, loss in (("full", None), ("coarse_first", coarse_loss)):
            search.coarse_loss = loss
            start = time.perf_counter()
            screened[way] = search.screen()
            emit("screen", run=str(path), way=way, seconds=round(time.perf_counter() - start, 1), best=round(screened[way][0][0], 6),
                 best_start=[round(v) for v in screened[way][0][1].flatten().tolist()])
        with torch.no_grad():  # the coarse order itself, for where the full screen's best stand in it
            coarse = sorted(((float(search.objective(search.match.matrix(q.to(search.device)), coarse_loss)), q) for _, q in screened["full"]),
                            key=lambda item: item[0])
        emit("order", run=str(path), vgg_size=s.vgg_size, coarse_size=s.vgg_size // 2,
             full_best_in_coarse_order={sign: [_key(q) for _, q in of_handedness(coarse, sign)].index(_key(of_handedness(screened["full"], sign)[0][1]))
                                        for sign in (1, -1)},
             same_best=_key(screened["full"][0][1]) == _key(screened["coarse_first"][0][1]))

        for way, loss in (("full", None), ("coarse_first", coarse_loss)):
            with torch.no_grad():
                field.color_maps.copy_(identity)
            objective.coarse_screen = loss is not None
            start = time.perf_counter()
            objective.match_palettes()
            emit("match", run=str(path), way=way, seconds=round(time.perf_counter() - start, 1), spread=objective.chosen_spreads[0],
                 map=[round(v, 4) for v in field.color_maps[0].detach().flatten().tolist()])


if __name__ == "__main__":
    main()
