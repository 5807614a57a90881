"""Reading images with errors a user can act on (no torch here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError


def open_image(path: Path, what: str, pixels: bool = True) -> Image.Image:
    """Open an image file (its pixels too, unless only its header is wanted), or raise InputError
    naming `what` and the path."""
    if not path.is_file():
        raise InputError(f"{what}: image file '{path}' does not exist; check the path or re-export the views.")
    try:
        image = Image.open(path)
        if pixels:
            image.load()
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InputError(f"{what}: '{path}' is not a readable image ({error}); re-export it as PNG.") from None
    return image


def image_size(path: Path, what: str) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding its pixels."""
    with open_image(path, what, pixels=False) as image:
        return image.size


def to_rgba8(image: Image.Image, path: Path, what: str) -> np.ndarray:
    """An 8-bit straight-alpha RGBA array; images without an alpha channel are refused."""
    has_alpha = image.mode in ("RGBA", "LA", "RGBa", "La", "PA") or (image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        raise InputError(
            f"{what}: '{path}' has no alpha channel (mode {image.mode}); render the views with a transparent "
            "film (Blender: Render Properties > Film > Transparent) so the background can be told apart."
        )
    if image.mode.startswith("I;16") or image.mode == "I":
        image = image.point(lambda v: v / 257)
    return np.asarray(image.convert("RGBA"), dtype=np.uint8)


def resize_rgba(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize uint8 RGBA (or RGB) with area averaging when shrinking (Pillow premultiplies alpha for RGBA)."""
    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    image = Image.fromarray(pixels)
    shrinking = width < pixels.shape[1]
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
    return np.asarray(image.resize((width, height), resample=resample), dtype=np.uint8)


def load_rgb_and_alpha(path: Path, what: str, background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Any readable image as float32 RGB [H, W, 3] in [0, 1], transparent pixels laid over
    `background`, and its alpha [H, W, 1] (all ones for an image without transparency)."""
    image = open_image(path, what)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda v: v / 257).convert("L")
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
    alpha = rgba[..., 3:4]
    return rgba[..., :3] * alpha + np.asarray(background, dtype=np.float32) * (1.0 - alpha), alpha


def load_rgb(path: Path, what: str, background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Any readable image as float32 RGB in [0, 1]; transparent pixels are laid over `background`."""
    return load_rgb_and_alpha(path, what, background)[0]
