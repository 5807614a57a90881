"""The VGG-16 loss network's architecture: VGG-16's `features` stack built by hand with
torchvision's layer indices, so a torchvision state dict (`features.{i}.weight` /
`features.{i}.bias`) loads into it once the `features.` prefix is stripped; torchvision itself is
not needed. `FeatureExtractor` takes the named taps (relu1_2 ... relu4_3) of an RGB image in [0, 1].

Each weights source carries its own input convention (`Preprocessing`): torchvision's file wants
RGB in [0, 1] normalised with the ImageNet mean/std; the original Caffe/Keras weights want BGR in
0-255 minus the Caffe mean. Where the weights come from: `backbone.py`; their files:
`vgg_weights.py`; the offline stand-in: `vgg_offline.py`; the precision it computes in:
`loss_precision.py`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterable, Mapping

import torch
import torch.nn as nn

# torchvision's VGG-16 configuration "D": channel counts, "M" for a 2x2 max-pool.
VGG16_CONFIG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG16_LAST_INDEX = 30  # the final max-pool of `features`
DEFAULT_LAST_INDEX = 22  # relu4_3, the deepest tap the losses use

# Feature taps: name -> index in `features` whose output is taken.
TAPS: dict[str, int] = {"relu1_2": 3, "relu2_2": 8, "relu3_1": 11, "relu3_2": 13, "relu3_3": 15, "relu4_3": 22}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image in [0, 1] becomes the network's input: reorder, scale, subtract, divide."""

    channel_order: str  # "RGB" or "BGR"
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {"channel_order": self.channel_order, "scale": self.scale, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Preprocessing":
        order = str(data["channel_order"]).upper()
        mean, std = tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])
        if order not in ("RGB", "BGR") or len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"bad preprocessing record {dict(data)}")
        return cls(order, float(data["scale"]), mean, std)  # type: ignore[arg-type]


TORCHVISION_PREPROCESSING = Preprocessing("RGB", 1.0, IMAGENET_MEAN, IMAGENET_STD)
CAFFE_PREPROCESSING = Preprocessing("BGR", 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))


def layer_plan() -> list[tuple[str, int, int]]:
    """The full `features` stack as (kind, in_channels, out_channels) per index; kind is conv, relu or pool."""
    plan: list[tuple[str, int, int]] = []
    channels = 3
    for entry in VGG16_CONFIG:
        if entry == "M":
            plan.append(("pool", channels, channels))
        else:
            plan.append(("conv", channels, int(entry)))
            plan.append(("relu", int(entry), int(entry)))
            channels = int(entry)
    return plan


def check_last_index(last_index: int) -> None:
    if not 0 <= last_index <= VGG16_LAST_INDEX:
        raise ValueError(f"last_index must be in 0..{VGG16_LAST_INDEX}, got {last_index}")


def build_vgg16_features(last_index: int = DEFAULT_LAST_INDEX, device: torch.device | str | None = None) -> nn.Sequential:
    """VGG-16 `features` with torchvision's indices, truncated after `last_index` (inclusive).

    Convolutions are 3x3 with padding 1, ReLUs are out-of-place (so a tapped activation is never
    overwritten by the next layer), max-pools are 2x2 with stride 2 (indices 4, 9, 16, 23, 30).
    Weights are PyTorch's default initialisation; load real ones with `load_state_dict`
    (`device="meta"` skips the initialisation, for `load_state_dict(..., assign=True)`).
    """
    check_last_index(last_index)
    layers: list[nn.Module] = []
    for kind, c_in, c_out in layer_plan()[: last_index + 1]:
        if kind == "conv":
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, device=device))
        elif kind == "relu":
            layers.append(nn.ReLU(inplace=False))
        else:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def vgg16_parameter_shapes(last_index: int = DEFAULT_LAST_INDEX) -> dict[str, tuple[int, ...]]:
    """torchvision state-dict keys (with the `features.` prefix) and shapes for indices 0..last_index."""
    check_last_index(last_index)
    shapes: dict[str, tuple[int, ...]] = {}
    for index, (kind, c_in, c_out) in enumerate(layer_plan()[: last_index + 1]):
        if kind == "conv":
            shapes[f"features.{index}.weight"] = (c_out, c_in, 3, 3)
            shapes[f"features.{index}.bias"] = (c_out,)
    return shapes


class FeatureExtractor(nn.Module):
    """Frozen VGG feature taps for images in [0, 1].

    `forward(image [B, 3, H, W], layers)` applies the weights' preprocessing, runs the stack
    once (stopping at the deepest requested tap) and returns {tap name: activation}. Gradients
    flow to the image, never to the weights. The stack has no mode-dependent layers, but the
    module stays in eval mode regardless of `train()` calls so that it reads as frozen.
    """

    def __init__(self, features: nn.Sequential, taps: Mapping[str, int] = TAPS, preprocessing: Preprocessing = TORCHVISION_PREPROCESSING):
        super().__init__()
        self.features = features
        self.taps = {name: index for name, index in taps.items() if index < len(features)}
        self.preprocessing = preprocessing
        self.channel_order = [2, 1, 0] if preprocessing.channel_order == "BGR" else [0, 1, 2]
        # In the image's own [0, 1] RGB units, so `mean` stays the reference for device and dtype.
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, 3, 1, 1) / preprocessing.scale, persistent=False)
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, 3, 1, 1) / preprocessing.scale, persistent=False)
        self.requires_grad_(False)
        super().train(False)
        # Low-precision copies of the stack (`_stack_in`), kept out of the module's state.
        self._low_precision: dict[torch.dtype, tuple[torch.device, nn.Sequential]] = {}

    def train(self, mode: bool = True) -> "FeatureExtractor":  # noqa: ARG002 - frozen on purpose
        return super().train(False)

    @property
    def available_layers(self) -> tuple[str, ...]:
        return tuple(self.taps)

    def forward(self, image: torch.Tensor, layers: Iterable[str] | None = None, compute_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """Features of `image` at the given taps. `compute_dtype=torch.bfloat16` runs the stack in
        bfloat16 and returns float32 features (stylization does, where the hardware has bfloat16)."""
        names = tuple(self.taps) if layers is None else tuple(layers)
        unknown = [name for name in names if name not in self.taps]
        if unknown:
            raise ValueError(f"unknown or truncated VGG taps {unknown}; available: {sorted(self.taps)}")
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an image batch [B, 3, H, W], got shape {tuple(image.shape)}")
        wanted = {self.taps[name]: name for name in names}
        out: dict[str, torch.Tensor] = {}
        if not wanted:
            return out
        last = max(wanted)
        if self.channel_order != [0, 1, 2]:
            image = image[:, self.channel_order]
        x = (image - self.mean.to(image.dtype)) / self.std.to(image.dtype)
        stack = self.features
        if compute_dtype is not None and compute_dtype != x.dtype:
            stack, x = self._stack_in(compute_dtype), x.to(compute_dtype).contiguous(memory_format=torch.channels_last)
        for index, module in enumerate(stack):
            x = module(x)
            if index in wanted:
                out[wanted[index]] = x if compute_dtype is None else x.float()
            if index == last:
                break
        return out

    def _stack_in(self, dtype: torch.dtype) -> nn.Sequential:
        """A frozen copy of the stack in `dtype` and channels-last, made once per dtype and device
        instead of casting the weights on every call (a VGG pass at 256 px with its gradient on
        the 2-core Xeon: autocast 0.385 s, this copy 0.20-0.32 s, float32 0.56-0.72 s)."""
        device = self.mean.device
        cached = self._low_precision.get(dtype)
        if cached is None or cached[0] != device:
            stack = copy.deepcopy(self.features).to(device=device, dtype=dtype, memory_format=torch.channels_last)
            cached = (device, stack.requires_grad_(False).eval())
            self._low_precision[dtype] = cached
        return cached[1]



def features_from_weights(weights: Mapping[str, torch.Tensor], last_index: int = DEFAULT_LAST_INDEX) -> nn.Sequential:
    """The stack with `weights` (as returned by `load_vgg_weights`) loaded, strictly.

    The stack adopts the given tensors (no copy, no throw-away initialisation).
    """
    stack = build_vgg16_features(last_index, device="meta")
    stack.load_state_dict(dict(weights), strict=True, assign=True)
    return stack
