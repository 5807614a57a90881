"""What `stylize-image` runs look like, in numbers: the style over the object, noise between the
points the losses saw, and how much of the background changed.

    python bench/stylize_image_quality.py --content r_0.png --style starry_night.jpg \
        --run before=/tmp/a/stylized now=/tmp/b/stylized [--size 192] [--width 800]

Per run (label=path of a finished `stylize-image` run's `stylized` folder), one JSON line:
- `gram_fall_pct`: how far the Gram distance to the painting, over the object (alpha-weighted), fell
  from the photograph's, with the image at the losses' size (`--size`);
- `fine_detail_rms`: on the object, the RMS of the render at `--width` minus that render shrunk to
  the losses' size and blown back up: detail finer than the losses ever saw (the photograph's own is
  reported as `photo_fine_detail_rms`);
- `background_change`: the mean absolute change from the photograph where it is transparent;
- `color_distance`: the object's colour mean and covariance against the painting's (as `eval`
  measures it; the photograph's as `photo_color_distance`).
Hardware first. With --picture, a column per run: its render at `--width` (shown at half size), and
under it the middle of that render, a quarter of its width across, each pixel drawn 2x2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware  # noqa: E402
from ins_core.eval.pictures import image_grid, save_png  # noqa: E402
from ins_core.data.images import load_rgb_and_alpha  # noqa: E402
from ins_core.data.styles import load_style_image  # noqa: E402
from ins_core.eval.stylized_image import area_resized, background_change, style_match  # noqa: E402
from ins_core.losses.backbone import resolve_backbone  # noqa: E402
from ins_core.render.views import render_image_field  # noqa: E402
from ins_core.train.loading import open_run  # noqa: E402


def fine_detail_rms(image: torch.Tensor, mask: torch.Tensor, size: int) -> float:
    """RMS over `mask` of what is finer than `size` pixels across in `image` [H, W, 3]."""
    height, width = image.shape[:2]
    small = area_resized(image, size, round(size * height / width))
    back = F.interpolate(small.permute(2, 0, 1)[None], size=(height, width), mode="bicubic", align_corners=False)[0].permute(1, 2, 0)
    residual = ((image - back) ** 2).sum(-1)
    return float((residual * mask).sum() / (3 * mask.sum()).clamp_min(1)) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--content", type=Path, required=True, help="the photograph the runs stylized (with transparency)")
    parser.add_argument("--style", type=Path, required=True)
    parser.add_argument("--run", nargs="+", required=True, help="label=path of a stylize-image run's stylized folder")
    parser.add_argument("--size", type=int, default=192, help="the losses' image size (the longer side)")
    parser.add_argument("--width", type=int, default=800, help="the render measured for fine detail")
    parser.add_argument("--picture", type=Path, help="the renders side by side, each with a crop at its own pixels")
    args = parser.parse_args()
    emit_hardware(torch.device("cpu"))
    extractor = resolve_backbone().extractor
    painting = load_style_image(args.style, 256).pixels
    rgb, alpha = (torch.from_numpy(np.ascontiguousarray(a)) for a in load_rgb_and_alpha(args.content, "photograph"))
    height = round(args.width * rgb.shape[0] / rgb.shape[1])
    photo, photo_alpha = area_resized(rgb, args.width, height), area_resized(alpha, args.width, height)[..., 0]
    small_height = round(args.size * height / args.width)
    small_mask = area_resized(photo_alpha[..., None], args.size, small_height)[..., 0]
    small_photo = area_resized(photo, args.size, small_height)
    painting_pixels = torch.from_numpy(painting)
    common = {"content": args.content.name, "style": args.style.name, "size": args.size, "width": args.width,
              "photo_fine_detail_rms": round(fine_detail_rms(photo, photo_alpha, args.size), 4)}
    renders, middles = [], []
    for item in args.run:
        label, path = item.split("=", 1)
        run = open_run(path, device="cpu", load_data=False)
        with torch.no_grad():
            large = render_image_field(run.model.field, args.width, height).clamp(0, 1)
            small = render_image_field(run.model.field, args.size, small_height).clamp(0, 1)
        match = style_match(small, small_photo, small_mask, painting_pixels, extractor)
        emit("stylize_image_quality", run=label, **common, photo_color_distance=round(match["color_distance_before"], 4),
             gram_fall_pct=round(100 * match["gram_fall"], 1),
             fine_detail_rms=round(fine_detail_rms(large, photo_alpha, args.size), 4),
             background_change=round(background_change(large, photo, photo_alpha), 4),
             color_distance=round(match["color_distance_after"], 4))
        side = args.width // 4
        top, left = (height - side) // 2, (args.width - side) // 2
        renders.append((area_resized(large, args.width // 2, height // 2).numpy(), f"{label}, {args.width} px"))
        middles.append((large[top:top + side, left:left + side].numpy().repeat(2, axis=0).repeat(2, axis=1), f"{label}, its middle"))
    if args.picture:
        tiles, labels = zip(*renders, *middles)
        save_png(args.picture, image_grid(list(tiles), list(labels), columns=len(renders)))


if __name__ == "__main__":
    main()
