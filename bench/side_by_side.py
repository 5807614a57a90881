"""Finished stylized runs drawn side by side through the same held-out cameras: one row per painting,
each run's views in turn (two ways of stylizing compared by eye).

    python bench/side_by_side.py --content-run runs/lego100 --picture docs/figures/lego100_fitted_network.png \
        --way "256 px" runs/lego100_styles/{painting}_default --way "160 px" runs/lego100_fitted/{painting}_default \
        --painting starry_night the_scream shipwreck woman-with-hat-matisse

`{painting}` in each way's path is replaced by each `--painting` in turn. The views are drawn at
`--picture-scale` times the training views' size (the fields are continuous).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ins_core.eval.pictures import image_grid, save_png  # noqa: E402
from ins_core.render.views import render_view  # noqa: E402
from ins_core.train.loading import open_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--content-run", type=Path, required=True, help="the content run whose held-out cameras are drawn")
    parser.add_argument("--way", nargs=2, action="append", required=True, metavar=("LABEL", "PATH"),
                        help="a way of stylizing: its label and its runs' path, with {painting} where the painting's name goes")
    parser.add_argument("--painting", nargs="+", required=True)
    parser.add_argument("--views", type=int, nargs="+", default=[0, 5])
    parser.add_argument("--picture-scale", type=int, default=3)
    parser.add_argument("--picture", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    content = open_run(args.content_run, args.device)
    views, scale = content.data.test, args.picture_scale
    white = torch.ones(3, device=content.device)
    tiles, labels = [], []
    for painting in args.painting:
        for label, path in args.way:
            run = open_run(Path(path.format(painting=painting)), args.device, load_data=False)
            for k in args.views:
                tiles.append(render_view(run.model, views.c2w[k], views.intrinsics[k] * scale, views.width * scale, views.height * scale,
                                         white).rgb.clamp(0, 1).cpu().numpy())
                labels.append(f"{painting}, {label}, view {k}")
    save_png(args.picture, image_grid(tiles, labels, columns=len(args.way) * len(args.views)))


if __name__ == "__main__":
    main()
