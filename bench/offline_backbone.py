"""Bench: how far the offline (no pretrained weights) VGG backbone moves an image towards a style.

Optimises the pixels of a 128x128 image (start: grey plus noise) for 200 Adam steps on the INS
Gram style loss with the offline backbone, towards a style image (default: the shared
starry_night.jpg; the project does not depend on it). Prints JSON lines: hardware, the
style-statistics distance before and after, two reference distances (a crop of the style image
itself, a flat grey image) and timing; writes the result to /tmp/offline_style.png.

    .venv/bin/python bench/offline_backbone.py [--style PATH] [--steps 200] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ins_core.data.images import load_rgb
from ins_core.losses.style import GRAM_LAYERS, StyleTarget, gram_matrix, style_loss, style_statistics_distance
from ins_core.losses.backbone import resolve_backbone
from ins_core.losses.vgg import FeatureExtractor, features_from_weights, vgg16_parameter_shapes
from ins_core.losses.vgg_offline import OFFLINE_SEED

DEFAULT_STYLE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "styles" / "starry_night.jpg"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def plain_kaiming_extractor(seed: int = OFFLINE_SEED) -> FeatureExtractor:
    """Ablation: the same seeded Kaiming-normal weights with zero biases and no per-channel calibration."""
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for key, shape in vgg16_parameter_shapes().items():
        name = key.removeprefix("features.")
        if name.endswith("weight"):
            std = (2.0 / (shape[1] * 9)) ** 0.5
            weights[name] = (torch.randn(shape, generator=gen, dtype=torch.float64) * std).float()
        else:
            weights[name] = torch.zeros(shape)
    return FeatureExtractor(features_from_weights(weights))


@torch.no_grad()
def gram_spectrum(extractor: FeatureExtractor, image: torch.Tensor) -> dict[str, dict[str, float]]:
    """Per Gram layer: RMS activation and the Gram's effective rank (sum(ev)^2 / sum(ev^2)).

    An effective rank near 1 means the Gram is dominated by one direction (the mean
    activation), i.e. it carries little style information beyond average colour/brightness.
    """
    feats = extractor(image, GRAM_LAYERS)
    out = {}
    for name in GRAM_LAYERS:
        ev = torch.linalg.eigvalsh(gram_matrix(feats[name])[0].double()).clamp_min(0)
        out[name] = {"rms": round(float(feats[name].pow(2).mean().sqrt()), 3),
                     "effective_rank": round(float(ev.sum() ** 2 / (ev**2).sum()), 2)}
    return out


def emit(**record) -> None:
    print(json.dumps(record), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", type=Path, default=DEFAULT_STYLE)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--style-side", type=int, default=256, help="long side of the style image")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--out", type=Path, default=Path("/tmp/offline_style.png"))
    args = parser.parse_args()

    emit(figure="hardware", cpu=cpu_model(), cores=os.cpu_count(), torch_threads=torch.get_num_threads(),
         torch=torch.__version__, python=platform.python_version())

    t0 = time.perf_counter()
    backbone = resolve_backbone(None, None, False, log=lambda m: None, bundled=None)  # the offline backbone on purpose
    emit(figure="backbone", name=backbone.name, pretrained=backbone.pretrained,
         build_s=round(time.perf_counter() - t0, 3))
    extractor = backbone.extractor

    style_np = load_rgb(args.style.resolve(), "style image")
    style = torch.from_numpy(style_np).permute(2, 0, 1)[None]
    h, w = style.shape[-2:]
    scale = args.style_side / max(h, w)
    style = F.interpolate(style, size=(round(h * scale), round(w * scale)), mode="area").clamp(0, 1)
    style_hwc = style[0].permute(1, 2, 0)

    gen = torch.Generator().manual_seed(0)
    start = (0.5 + 0.1 * torch.randn(1, 3, args.size, args.size, generator=gen)).clamp(0, 1)
    crop = style_hwc[: args.size, : args.size]
    grey = torch.full((args.size, args.size, 3), 0.5)
    emit(figure="gram_spectrum_on_style", calibrated_offline=gram_spectrum(extractor, style),
         plain_kaiming_ablation=gram_spectrum(plain_kaiming_extractor(), style))
    target = StyleTarget.compute(style, extractor, GRAM_LAYERS, None)

    def distance(image_nchw: torch.Tensor) -> float:
        return style_statistics_distance(image_nchw[0].permute(1, 2, 0), style_hwc, extractor)

    before = distance(start)
    emit(figure="reference_distances", style_crop=style_statistics_distance(crop, style_hwc, extractor),
         flat_grey=style_statistics_distance(grey, style_hwc, extractor), start_noise=before)

    image = start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([image], lr=args.lr)
    scale_loss = None
    t1 = time.perf_counter()
    for step in range(args.steps):
        loss = style_loss(extractor(image, GRAM_LAYERS), target.grams)
        scale_loss = scale_loss or float(loss.detach())  # Adam on a loss of order 1, whatever the backbone
        optimiser.zero_grad()
        (loss / scale_loss).backward()
        optimiser.step()
        with torch.no_grad():
            image.clamp_(0.0, 1.0)
    seconds = time.perf_counter() - t1
    after = distance(image.detach())
    emit(figure="style_statistics_distance", before=before, after=after, ratio=after / before,
         steps=args.steps, size=args.size, seconds=round(seconds, 2), s_per_step=round(seconds / args.steps, 4))

    result = (image.detach()[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    Image.fromarray(result).save(args.out)
    emit(figure="image", path=str(args.out))


if __name__ == "__main__":
    main()
