"""transforms.json parsing and validation (NeRF-synthetic, instant-ngp and nerfstudio flavours).

Pure JSON and numpy: every problem becomes an InputError that names the file, the field and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..json_files import read_json

INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
IMAGE_SUFFIXES = ("", ".png", ".PNG")


@dataclass
class FrameRecord:
    """One view as declared in a transforms file (before its image is read)."""

    index: int  # position in the file's 'frames' list, for error messages
    name: str
    image_path: Path
    c2w: np.ndarray  # [4, 4] float64
    camera: dict  # the intrinsic keys that apply to this frame (camera_angle_x/y, fl_x, ...)
    depth_path: Path | None = None  # 'depth_file_path': the view's depth (a Blender Z pass, OpenEXR)


@dataclass
class TransformsFile:
    path: Path
    frames: list[FrameRecord]
    aabb: np.ndarray | None  # [2, 3]


def read_json_file(path: Path, what: str) -> dict:
    """A JSON object from a file; errors name the file (and the line of a syntax error)."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise InputError(f"{path}: the top level must be a JSON object with 'frames'; re-export the file.")
    return data


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where} must be a finite number, got {value!r}; fix the file.")
    return float(value)


def parse_matrix(value, where: str) -> np.ndarray:
    """A finite, invertible 4x4 camera-to-world matrix."""
    if not (isinstance(value, list) and len(value) == 4 and all(isinstance(row, list) and len(row) == 4 for row in value)):
        raise InputError(f"{where} must be a 4x4 list of numbers; fix the file.")
    matrix = np.array([[_number(v, where) for v in row] for row in value], dtype=np.float64)
    rotation = matrix[:3, :3]
    if abs(np.linalg.det(rotation)) < 1e-8 or not np.allclose(matrix[3], [0, 0, 0, 1], atol=1e-6):
        raise InputError(f"{where} is not an invertible camera matrix (its rotation part is singular or its last row is not 0 0 0 1); re-export the camera.")
    return matrix


def parse_aabb(value, where: str) -> np.ndarray:
    """A scene box [[min x, y, z], [max x, y, z]] with positive extent on every axis."""
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(c, list) and len(c) == 3 for c in value)):
        raise InputError(f"{where} must be [[min x, y, z], [max x, y, z]]; fix the file.")
    box = np.array([[_number(v, where) for v in corner] for corner in value], dtype=np.float64)
    if np.any(box[1] <= box[0]):
        raise InputError(f"{where} is an empty scene box (max {box[1].tolist()} is not above min {box[0].tolist()} on every axis); give the box around the objects or leave 'aabb' out to compute it.")
    return box


def _camera_keys(source: dict, where: str) -> dict:
    keys = {}
    for key in ("camera_angle_x", "camera_angle_y") + INTRINSIC_KEYS:
        if key in source:
            keys[key] = _number(source[key], f"{where} field '{key}'")
    return keys


def _resolve_image(base: Path, file_path: str, where: str) -> Path:
    candidate = (base / file_path).resolve()
    for suffix in IMAGE_SUFFIXES:
        path = candidate.with_name(candidate.name + suffix)
        if path.is_file():
            return path
    raise InputError(f"{where}: image '{file_path}' does not exist next to the transforms file; check 'file_path' or copy the image.")


def _resolve_depth(base: Path, frame: dict, where: str) -> Path | None:
    """The frame's depth file ('depth_file_path', as nerfstudio names it), if it declares one."""
    if "depth_file_path" not in frame:
        return None
    value = frame["depth_file_path"]
    if not isinstance(value, str) or not value:
        raise InputError(f"{where} field 'depth_file_path' must be a non-empty string; fix it or leave it out.")
    # Whether it exists is asked when it is read: only a fit that weighs depth needs it.
    return (base / value).resolve()


def read_transforms(path: Path) -> TransformsFile:
    """Read one transforms file: frames with their cameras, and the optional scene box."""
    data = read_json_file(path, "transforms file")
    top = _camera_keys(data, f"{path}:")
    frames_value = data.get("frames")
    if not isinstance(frames_value, list) or not frames_value:
        raise InputError(f"{path}: field 'frames' must be a non-empty list of views; re-export the dataset.")
    frames = []
    for index, frame in enumerate(frames_value):
        where = f"{path}: frames[{index}]"
        if not isinstance(frame, dict):
            raise InputError(f"{where} must be an object with 'file_path' and 'transform_matrix'.")
        for key in ("file_path", "transform_matrix"):
            if key not in frame:
                raise InputError(f"{where} has no '{key}'; every frame needs 'file_path' and 'transform_matrix'.")
        if not isinstance(frame["file_path"], str) or not frame["file_path"]:
            raise InputError(f"{where} field 'file_path' must be a non-empty string.")
        camera = {**top, **_camera_keys(frame, where)}
        if "camera_angle_x" not in camera and "fl_x" not in camera:
            raise InputError(f"{path}: no focal length for frames[{index}]; add 'camera_angle_x' (radians) or 'fl_x' (pixels).")
        frames.append(
            FrameRecord(
                index=index,
                name=Path(frame["file_path"]).stem,
                image_path=_resolve_image(path.parent, frame["file_path"], where),
                c2w=parse_matrix(frame["transform_matrix"], f"{where} field 'transform_matrix'"),
                camera=camera,
                depth_path=_resolve_depth(path.parent, frame, where),
            )
        )
    aabb = parse_aabb(data["aabb"], f"{path}: field 'aabb'") if "aabb" in data else None
    return TransformsFile(path=path, frames=frames, aabb=aabb)


def frame_intrinsics(camera: dict, width: int, height: int, where: str) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels of an image of width x height."""
    if "w" in camera and "h" in camera and (int(camera["w"]) != width or int(camera["h"]) != height):
        raise InputError(f"{where}: the image is {width}x{height} but the file declares w={int(camera['w'])}, h={int(camera['h'])}; re-export the images or fix 'w'/'h'.")
    if "fl_x" in camera:
        fx = camera["fl_x"]
        fy = camera.get("fl_y", fx)
    else:
        fx = 0.5 * width / math.tan(0.5 * camera["camera_angle_x"])
        fy = 0.5 * height / math.tan(0.5 * camera["camera_angle_y"]) if "camera_angle_y" in camera else fx
    if fx <= 0 or fy <= 0:
        raise InputError(f"{where}: the focal length must be positive; fix 'fl_x'/'camera_angle_x'.")
    return fx, fy, camera.get("cx", width / 2.0), camera.get("cy", height / 2.0)
