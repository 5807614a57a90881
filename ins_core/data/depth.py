"""Training views' depth: a Blender Z pass (OpenEXR) turned into distance along each pixel's ray.

Blender's Z pass holds, per pixel, the depth along the camera's viewing axis, and 1e10 where no
surface is; the renderers here measure distance along the ray from the camera centre, so the
loader converts once. 0 marks a pixel without a known surface (nothing to supervise there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .exr import read_exr_channels

# Blender writes 1e10 (Cycles, EEVEE) where a pixel sees no surface; anything this far is none.
NO_SURFACE = 1e9


def depth_channel(channels: dict[str, np.ndarray], path: Path) -> np.ndarray:
    """The Z pass among an EXR's channels ("<view layer>.Depth.Z" in a multilayer file, "Z" or
    "Depth.Z" in others); the first view layer's when there are several."""
    for name in channels:
        if name == "Z" or name.endswith("Depth.Z"):
            return channels[name]
    raise InputError(f"'{path}' has no depth channel (Depth.Z); render it with the Z pass on (View Layer > Passes > Data > Z).")


def planar_to_distance(planar: np.ndarray, intrinsics: tuple[float, float, float, float]) -> np.ndarray:
    """Depth along the viewing axis [H, W] -> distance from the camera along each pixel-centre
    ray [H, W] (float32); pixels with no surface (or not finite) become 0."""
    fx, fy, cx, cy = intrinsics
    height, width = planar.shape
    x = (np.arange(width, dtype=np.float64) + 0.5 - cx) / fx
    y = (np.arange(height, dtype=np.float64) + 0.5 - cy) / fy
    stretch = np.sqrt(1.0 + x[None, :] ** 2 + y[:, None] ** 2)
    valid = np.isfinite(planar) & (planar > 0) & (planar < NO_SURFACE)
    return np.where(valid, planar * stretch, 0.0).astype(np.float32)


def resize_nearest(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """The depth at each target pixel's centre from the source pixel holding it: depths are not
    averaged, since a mean across a silhouette is a distance where nothing is."""
    if depth.shape == (height, width):
        return depth
    rows = np.minimum(((np.arange(height) + 0.5) * depth.shape[0] / height).astype(np.int64), depth.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * depth.shape[1] / width).astype(np.int64), depth.shape[1] - 1)
    return depth[rows[:, None], cols[None, :]]


def load_depth(path: Path, intrinsics: tuple[float, float, float, float], image_size: tuple[int, int],
               target_size: tuple[int, int], where: str) -> np.ndarray:
    """A view's ray distances [H, W] at `target_size` (width, height) from its Z pass, which must
    match the view's image (`image_size`, for which `intrinsics` hold)."""
    if not path.is_file():
        raise InputError(f"{where}: depth file '{path}' does not exist; check the frame's 'depth_file_path', "
                         "leave it out, or fit with --depth-weight 0.")
    planar = depth_channel(read_exr_channels(path), path)
    if (planar.shape[1], planar.shape[0]) != tuple(image_size):
        raise InputError(f"{where}: the depth file '{path.name}' is {planar.shape[1]}x{planar.shape[0]} but the image is "
                         f"{image_size[0]}x{image_size[1]}; render both at one resolution.")
    return resize_nearest(planar_to_distance(planar, intrinsics), *target_size)
