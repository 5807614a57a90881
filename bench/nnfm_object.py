"""NNFM over the object's pixels against over the whole view: the term's time on real photographs.

    python bench/nnfm_object.py --style ../shared/data/styles/starry_night.jpg \
        --image ../shared/data/nerf_synthetic_lego/train/r_*.png

Each photograph (RGBA; its alpha is the object) is taken at `--view-size` pixels and scaled to the
loss network's 256 px, as view-mode stylization does; the nearest-neighbour term against the
painting (256 px) is timed with its gradient down to the features, once over every location and
once with the alpha as its mask (locations the object does not touch are not searched), the two
interleaved round by round. Prints JSON lines (hardware first): per photograph set, the share of
relu3 locations the object touches and the median seconds of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware  # noqa: E402
from bench.loss_precision import interleaved_seconds  # noqa: E402
from ins_core.data.styles import load_style_image  # noqa: E402
from ins_core.device import resolve_device  # noqa: E402
from ins_core.losses.style import NNFM_LAYERS, nnfm_loss  # noqa: E402
from ins_core.losses.vgg import loss_network_dtype, resolve_backbone  # noqa: E402

LOSS_NETWORK_SIZE = 256


def photograph(path: Path, view_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The photograph over white [1, 3, 256, 256] and its alpha [1, 1, 256, 256], as a view of `view_size` px."""
    rgba = np.asarray(Image.open(path).convert("RGBA").resize((view_size, view_size), Image.BILINEAR), dtype=np.float32) / 255
    chw = torch.from_numpy(rgba).permute(2, 0, 1)[None].to(device)
    chw = F.interpolate(chw, size=(LOSS_NETWORK_SIZE, LOSS_NETWORK_SIZE), mode="bilinear", align_corners=False)
    alpha = chw[:, 3:]
    return chw[:, :3] * alpha + (1 - alpha), alpha


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--style", type=Path, required=True)
    parser.add_argument("--image", type=Path, nargs="+", required=True, help="RGBA photographs (the first --views are used)")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--view-size", type=int, default=100, help="the training views' size, before the loss network's scaling")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    emit_hardware(device)
    dtype = loss_network_dtype("auto", device)
    extractor = resolve_backbone(log=lambda message: None).extractor.to(device)
    painting = torch.from_numpy(load_style_image(args.style, LOSS_NETWORK_SIZE).pixels).permute(2, 0, 1)[None].float().to(device)
    painting_features = extractor(painting, NNFM_LAYERS, dtype)

    views = []
    for path in sorted(args.image)[: args.views]:
        image, alpha = photograph(path, args.view_size, device)
        features = {layer: f.detach() for layer, f in extractor(image, NNFM_LAYERS, dtype).items()}
        views.append((features, alpha))

    def term(mask_it: bool) -> None:
        for features, alpha in views:
            leaves = {layer: f.clone().requires_grad_(True) for layer, f in features.items()}
            nnfm_loss(leaves, painting_features, search_dtype=dtype, mask=alpha if mask_it else None).backward()

    h, w = views[0][0][NNFM_LAYERS[0]].shape[-2:]
    touched = [float((F.adaptive_avg_pool2d(alpha, (h, w)) > 0).float().mean()) for _, alpha in views]
    term(True), term(False)  # the bfloat16 copies and caches made before timing
    times = interleaved_seconds({"whole_view": lambda: term(False), "object": lambda: term(True)}, args.rounds, device)
    emit("nnfm_object", style=args.style.name, views=len(views), view_size=args.view_size, loss_network_size=LOSS_NETWORK_SIZE,
         share_of_locations_touched=round(statistics.mean(touched), 3),
         **{f"seconds_per_view_{name}": round(statistics.median(values) / len(views), 4) for name, values in times.items()})


if __name__ == "__main__":
    main()
