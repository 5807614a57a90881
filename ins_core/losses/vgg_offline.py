"""The offline backbone: VGG-16's architecture with a fixed seeded initialisation, calibrated so
that every channel's pre-activation has zero mean and unit variance on a fixed set of procedural
images (data-dependent initialisation in the spirit of LSUV, Mishkin & Matas 2016). Random-weight
conv nets still give usable Gram texture statistics (Ustyuzhaninov et al. 2017, He et al. 2016) as
long as activations neither vanish nor explode through depth; the per-channel calibration is what
guarantees that here. Far weaker than ImageNet weights: for fast unit tests, and at run time only
with a loud warning (`backbone.py`).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .vgg import (
    DEFAULT_LAST_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_last_index,
    features_from_weights,
    layer_plan,
)

OFFLINE_SEED = 1234
CALIBRATION_SIZE = 64
CALIBRATION_COUNT = 8


def calibration_images(size: int = CALIBRATION_SIZE, count: int = CALIBRATION_COUNT, seed: int = OFFLINE_SEED) -> torch.Tensor:
    """A fixed batch [count, 3, size, size] of procedural RGB images in [0, 1], float64.

    A mix that spans natural-image statistics cheaply: oriented colour gratings at several
    frequencies, a checkerboard, smooth and multi-octave noise, colour blobs and white noise.
    """
    gen = torch.Generator().manual_seed(seed)
    coords = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    y, x = torch.meshgrid(coords, coords, indexing="ij")

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, dtype=torch.float64)

    def smooth_noise(cells: int) -> torch.Tensor:
        return F.interpolate(rand(1, 3, cells, cells), size=(size, size), mode="bicubic", align_corners=False)[0]

    images: list[torch.Tensor] = []
    for i in range(count):
        kind = i % 6
        if kind == 0:  # oriented colour grating
            theta = math.pi * float(rand(1))
            freq = 2.0 + 14.0 * float(rand(1))
            phase = 2 * math.pi * rand(3, 1, 1)
            wave = torch.sin(2 * math.pi * freq * (x * math.cos(theta) + y * math.sin(theta)) + phase)
            image = 0.5 + 0.45 * wave * rand(3, 1, 1)
        elif kind == 1:  # checkerboard in two colours
            cells = 4 + int(12 * float(rand(1)))
            board = ((torch.floor(x * cells) + torch.floor(y * cells)) % 2).expand(3, size, size)
            a, b = rand(3, 1, 1), rand(3, 1, 1)
            image = a * board + b * (1 - board)
        elif kind == 2:  # smooth noise
            image = smooth_noise(4 + 4 * (i // 6))
        elif kind == 3:  # multi-octave (pinkish) noise
            image = sum(smooth_noise(2**k) * 0.5 ** (k - 1) for k in range(1, 6))
            image = (image - image.amin()) / (image.amax() - image.amin())
        elif kind == 4:  # colour blobs over a background
            image = rand(3, 1, 1).expand(3, size, size).clone()
            for _ in range(6):
                cx, cy, radius = rand(1), rand(1), 0.05 + 0.2 * rand(1)
                blob = torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2))
                image = image * (1 - blob) + rand(3, 1, 1) * blob
        else:  # white noise
            image = rand(3, size, size)
        images.append(image.clamp(0.0, 1.0))
    return torch.stack(images)


@functools.lru_cache(maxsize=4)
def _offline_state(seed: int, last_index: int) -> dict[str, torch.Tensor]:
    """Seeded Kaiming-normal weights, then per-channel calibration of every conv (float64)."""
    gen = torch.Generator().manual_seed(seed)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    x = (calibration_images(seed=seed) - mean) / std
    state: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for index, (kind, c_in, c_out) in enumerate(layer_plan()[: last_index + 1]):
            if kind == "conv":
                fan_in = c_in * 9
                weight = torch.randn(c_out, c_in, 3, 3, generator=gen, dtype=torch.float64) * math.sqrt(2.0 / fan_in)
                z = F.conv2d(x, weight, padding=1)
                mu = z.mean(dim=(0, 2, 3))
                sigma = z.std(dim=(0, 2, 3)).clamp_min(1e-6)
                # Zero mean, unit variance per channel on the calibration set: half of each
                # channel's responses survive the ReLU and the scale holds through depth.
                weight = weight / sigma.view(-1, 1, 1, 1)
                bias = -mu / sigma
                x = (z - mu.view(1, -1, 1, 1)) / sigma.view(1, -1, 1, 1)
                state[f"{index}.weight"] = weight.to(torch.float32)
                state[f"{index}.bias"] = bias.to(torch.float32)
            elif kind == "relu":
                x = F.relu(x)
            else:
                x = F.max_pool2d(x, 2, 2)
    return state


def build_offline_vgg16(seed: int = OFFLINE_SEED, last_index: int = DEFAULT_LAST_INDEX) -> nn.Sequential:
    """VGG-16 `features` with a fixed seeded, calibrated random initialisation (no download needed).

    Deterministic for a given seed and torch version; calibrated once per process and
    then reused (float64 on the CPU: about 1.6 s on one core of the 2-core test machine).
    """
    check_last_index(last_index)
    state = _offline_state(seed, last_index)
    return features_from_weights({k: v.clone() for k, v in state.items()}, last_index)
