"""Posed RGBA views loaded from a NeRF-synthetic style folder into tensors.

Layouts understood: `transforms_train.json` (+ `transforms_test.json`) as in NeRF-synthetic, or a
single `transforms.json` (instant-ngp / nerfstudio). Without a test file, every `holdout_every`-th
view is held out for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .bounds import carve_aabb
from .depth import load_depth
from .cameras import Cameras
from .images import image_size, open_image, resize_rgba, to_rgba8
from .transforms import FrameRecord, TransformsFile, frame_intrinsics, read_transforms

TRAIN_NAMES = ("transforms_train.json", "transforms.json")
TEST_NAME = "transforms_test.json"


@dataclass
class PosedViews:
    """Views of one split: images [N, H, W, 4] uint8 (straight alpha), cameras, and the scene box."""

    names: list[str]
    images: torch.Tensor
    c2w: torch.Tensor  # [N, 4, 4] float32
    intrinsics: torch.Tensor  # [N, 4] (fx, fy, cx, cy) in pixels of these images
    aabb: torch.Tensor  # [2, 3]
    depth: torch.Tensor | None = None  # [N, H, W] distance along each pixel's ray, 0 where unknown

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return len(self.names)

    def rgba(self, index: int) -> torch.Tensor:
        """One view as float RGBA in [0, 1]."""
        return self.images[index].float() / 255.0

    def to(self, device: torch.device | str) -> "PosedViews":
        depth = None if self.depth is None else self.depth.to(device)
        return PosedViews(self.names, self.images.to(device), self.c2w.to(device), self.intrinsics.to(device), self.aabb.to(device), depth)


def _scaled_size(width: int, height: int, target_width: int | None) -> tuple[int, int]:
    if target_width is None:
        return width, height
    if target_width <= 0:
        raise InputError(f"The resolution must be a positive width in pixels, got {target_width}.")
    return target_width, max(1, round(height * target_width / width))


def _scaled_intrinsics(intrinsics: tuple[float, float, float, float], size: tuple[int, int],
                       target_width: int | None) -> tuple[int, int, list[float]]:
    """The view's size once scaled to `target_width`, and its (fx, fy, cx, cy) in those pixels."""
    fx, fy, cx, cy = intrinsics
    width, height = _scaled_size(size[0], size[1], target_width)
    sx, sy = width / size[0], height / size[1]
    return width, height, [fx * sx, fy * sy, cx * sx, cy * sy]


def _load_frames(frames: list[FrameRecord], source: Path, target_width: int | None,
                 with_depth: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Images, cameras, intrinsics and, with `with_depth` where any frame has a depth file, depths
    (0 for a frame without)."""
    images, c2ws, intrinsics, depths = [], [], [], []
    first_size = None
    for frame in frames:
        where = f"{source}: frames[{frame.index}] ('{frame.name}')"
        pixels = to_rgba8(open_image(frame.image_path, where), frame.image_path, where)
        size = (pixels.shape[1], pixels.shape[0])
        if first_size is None:
            first_size = size
        elif size != first_size:
            raise InputError(f"{where}: the image is {size[0]}x{size[1]} but the first view is {first_size[0]}x{first_size[1]}; render all views at one resolution.")
        own = frame_intrinsics(frame.camera, size[0], size[1], where)
        width, height, scaled = _scaled_intrinsics(own, size, target_width)
        images.append(torch.from_numpy(resize_rgba(pixels, width, height).copy()))
        intrinsics.append(scaled)
        c2ws.append(frame.c2w)
        depths.append(None if frame.depth_path is None or not with_depth else load_depth(frame.depth_path, own, size, (width, height), where))
    depth = None
    if any(d is not None for d in depths):
        depth = torch.stack([torch.zeros(images[i].shape[:2]) if d is None else torch.from_numpy(d) for i, d in enumerate(depths)])
    return torch.stack(images), torch.tensor(np.stack(c2ws), dtype=torch.float32), torch.tensor(intrinsics, dtype=torch.float32), depth


def find_transforms(data_dir: Path) -> tuple[Path, Path | None]:
    """The training transforms file of a dataset folder and its test file, if any."""
    if not data_dir.is_dir():
        raise InputError(f"Dataset folder '{data_dir}' does not exist; pass --data a folder that holds transforms_train.json or transforms.json.")
    for name in TRAIN_NAMES:
        if (data_dir / name).is_file():
            test = data_dir / TEST_NAME
            return data_dir / name, (test if test.is_file() else None)
    raise InputError(f"Dataset folder '{data_dir}' has no transforms_train.json or transforms.json; export the views as a NeRF dataset first.")


def split_holdout(frames: list[FrameRecord], holdout_every: int, holdout_names: set[str] | None) -> tuple[list[FrameRecord], list[FrameRecord]]:
    """Hold out named views, or every n-th view by position, for testing."""
    if holdout_names:
        test = [f for f in frames if f.name in holdout_names]
    else:
        test = frames[::holdout_every] if holdout_every > 0 else []
    test_ids = {id(f) for f in test}
    train = [f for f in frames if id(f) not in test_ids]
    if not train:
        raise InputError("Holding out test views left no training views; hold out fewer views.")
    return train, test


def load_dataset(
    data_dir: str | Path,
    resolution: int | None = None,
    holdout_every: int = 10,
    holdout_names: set[str] | None = None,
    with_depth: bool = True,
) -> tuple[PosedViews, PosedViews | None]:
    """Training and test views of a dataset folder, resized to `resolution` pixels wide.

    The scene box comes from the file's `aabb`, or is carved from the training masks. With
    `with_depth`, the training views carry the depth files the frames name; test views never do
    (nothing measures against their depth, and each multilayer EXR costs more than its image).
    """
    data_dir = Path(data_dir)
    train_path, test_path = find_transforms(data_dir)
    train_file: TransformsFile = read_transforms(train_path)
    if test_path is not None and not holdout_names:
        train_frames, test_frames = train_file.frames, read_transforms(test_path).frames
    else:
        train_frames, test_frames = split_holdout(train_file.frames, holdout_every, holdout_names)
    images, c2w, intrinsics, depth = _load_frames(train_frames, train_path, resolution, with_depth)
    if train_file.aabb is not None:
        aabb = torch.tensor(train_file.aabb, dtype=torch.float32)
    else:
        aabb = carve_aabb(images[..., 3].float() / 255.0, c2w, intrinsics)
    train = PosedViews([f.name for f in train_frames], images, c2w, intrinsics, aabb, depth)
    test = None
    if test_frames:
        test_images, test_c2w, test_intrinsics, test_depth = _load_frames(test_frames, test_path or train_path, resolution, with_depth=False)
        if test_images.shape[1:3] != images.shape[1:3]:
            raise InputError(f"{test_path}: test views are {test_images.shape[2]}x{test_images.shape[1]} but training views are {images.shape[2]}x{images.shape[1]}; render both at one resolution.")
        test = PosedViews([f.name for f in test_frames], test_images, test_c2w, test_intrinsics, aabb, test_depth)
    return train, test


def load_cameras(data_dir: str | Path, resolution: int | None = None) -> Cameras:
    """Every view's camera (training and test) as `load_dataset` would scale it, from the
    transforms files and the images' headers alone: what an export needs to know what the views
    saw, without decoding their pixels."""
    train_path, test_path = find_transforms(Path(data_dir))
    c2ws, intrinsics, sizes = [], [], set()
    for source in (train_path, test_path):
        if source is None:
            continue
        for frame in read_transforms(source).frames:
            where = f"{source}: frames[{frame.index}] ('{frame.name}')"
            size = image_size(frame.image_path, where)
            width, height, scaled = _scaled_intrinsics(frame_intrinsics(frame.camera, *size, where), size, resolution)
            sizes.add((width, height))
            c2ws.append(frame.c2w)
            intrinsics.append(scaled)
    if len(sizes) > 1:
        raise InputError(f"{data_dir}: the views come in {len(sizes)} sizes; render all views at one resolution.")
    (width, height), = sizes
    return Cameras(torch.tensor(np.stack(c2ws), dtype=torch.float32), torch.tensor(intrinsics, dtype=torch.float32), width, height)
