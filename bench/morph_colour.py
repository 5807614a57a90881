"""How colourful a two-style model stays along its morph, with the styles' colour maps mixed as the
field mixes them (through rotation and stretch apart) and as matrices averaged (as before).

    python bench/morph_colour.py --run runs/lego100_morph [--picture FILE.png]

For each run, mix and style weight (the second style's share), the object's pixels in a few
turntable views: the colourfulness (Hasler and Suesstrunk's: the spread and mean of the
red-green and yellow-blue opponent channels) and the spread of luminance. One JSON line each,
hardware first. With --picture, one turntable view per weight, a row per run and mix.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware  # noqa: E402
from ins_core.eval.pictures import image_grid, save_png  # noqa: E402
from ins_core.render.products import turntable_cameras  # noqa: E402
from ins_core.render.views import render_view  # noqa: E402
from ins_core.train.loading import open_run  # noqa: E402

LUMINANCE = torch.tensor([0.2126, 0.7152, 0.0722])


def colourfulness(rgb: torch.Tensor) -> float:
    """Hasler and Suesstrunk's colourfulness of colours [N, 3] in 0-1 (0 for greys)."""
    red_green = rgb[:, 0] - rgb[:, 1]
    yellow_blue = 0.5 * (rgb[:, 0] + rgb[:, 1]) - rgb[:, 2]
    spread = (red_green.var() + yellow_blue.var()).sqrt()
    mean = (red_green.mean() ** 2 + yellow_blue.mean() ** 2).sqrt()
    return float(spread + 0.3 * mean)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, nargs="+", required=True, help="finished stylized runs of two styles")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0], help="the second style's shares")
    parser.add_argument("--views", type=int, default=6, help="turntable views measured")
    parser.add_argument("--picture", type=Path, help="a grid: one view per weight, a row per run and mix")
    args = parser.parse_args()
    emit_hardware(torch.device("cpu"))
    tiles, labels = [], []
    for path in args.run:
        run = open_run(path, device="cpu")
        field, views = run.model.field, run.data.train
        cameras = turntable_cameras(run, 8 * args.views)[::8]
        for mix in ("turned", "averaged"):
            for share in args.weights:
                run.model.set_style(torch.tensor([1 - share, share]))
                if mix == "averaged":
                    field.mixing_styles.fill_(False)  # the matrices' weighted sum, as before
                pixels = []
                for c2w in cameras:
                    render = render_view(run.model, c2w, views.intrinsics[0], views.width, views.height, torch.ones(3))
                    pixels.append(render.rgb.reshape(-1, 3)[render.opacity.reshape(-1) > 0.5].clamp(0, 1))
                pixels = torch.cat(pixels)
                emit("morph_colour", run=path.name, mix=mix, share=share, colourfulness=round(colourfulness(pixels), 4),
                     luminance_spread=round(float((pixels @ LUMINANCE).std()), 4), views=len(cameras), resolution=views.width)
                if args.picture:
                    big = render_view(run.model, cameras[1], views.intrinsics[0] * 2, views.width * 2, views.height * 2, torch.ones(3))
                    tiles.append(big.rgb.clamp(0, 1).numpy())
                    labels.append(f"{path.name}: {mix}, {share:g}")
    if args.picture:
        save_png(args.picture, image_grid(tiles, labels, columns=len(args.weights)))


if __name__ == "__main__":
    main()
