"""VGG-16 weights files: read and checked (hash-named files, every tensor's shape, finite
values, the input convention), trimmed to the layers the losses use in fp16 and cached atomically,
or downloaded once where online access is allowed. Checkpoints are read with
`torch.load(weights_only=True)`: nothing is unpickled or executed.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import torch

from ins_core.errors import InputError

from .vgg import DEFAULT_LAST_INDEX, TORCHVISION_PREPROCESSING, Preprocessing, vgg16_parameter_shapes

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
