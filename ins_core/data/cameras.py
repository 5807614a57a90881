"""Pinhole cameras and rays in the Blender / OpenGL convention.

Camera space: +X right, +Y up, looking down -Z. `c2w` is the camera-to-world matrix, the same as a
Blender camera's `matrix_world` and transforms.json's `transform_matrix`. Pixel (col, row) has its
centre at (col + 0.5, row + 0.5); rows grow downwards in the image, so they map to -Y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .lens import ThinLens, thin_lens_rays


@dataclass(frozen=True)
class Intrinsics:
    """Focal lengths and principal point in pixels, and the image size."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_fov(cls, camera_angle_x: float, width: int, height: int, camera_angle_y: float | None = None) -> "Intrinsics":
        fx = 0.5 * width / math.tan(0.5 * camera_angle_x)
        fy = fx if camera_angle_y is None else 0.5 * height / math.tan(0.5 * camera_angle_y)
        return cls(fx, fy, width / 2.0, height / 2.0, width, height)

    def as_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.tensor([self.fx, self.fy, self.cx, self.cy], dtype=torch.float32, device=device)


@dataclass
class Cameras:
    """Pinhole cameras: c2w [N, 4, 4], intrinsics [N, 4] (fx, fy, cx, cy) for images of width x height."""

    c2w: torch.Tensor
    intrinsics: torch.Tensor
    width: int
    height: int

    def __len__(self) -> int:
        return self.c2w.shape[0]


def camera_directions(pixels: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Camera-space ray directions (z = -1) through pixel coordinates.

    pixels: [..., 2] continuous (col, row) positions, e.g. integer index + 0.5 for the centre.
    intrinsics: [..., 4] (fx, fy, cx, cy), broadcastable to pixels.
    """
    fx, fy, cx, cy = intrinsics.unbind(-1)
    x = (pixels[..., 0] - cx) / fx
    y = -(pixels[..., 1] - cy) / fy
    return torch.stack([x, y, -torch.ones_like(x)], dim=-1)


def rays_from_pixels(pixels: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor,
                     orthographic: bool = False, lens: ThinLens | None = None,
                     lens_points: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space origins and unit directions for pixels seen by cameras.

    pixels [N, 2], c2w [N, 4, 4] (or [4, 4]), intrinsics [N, 4] (or [4]). Depth along these rays is the
    Euclidean distance from the camera centre. An `orthographic` camera's intrinsics are pixels per
    world unit and its principal point: every ray runs along the camera's -z, from the point of the
    camera's plane (z = 0) that the pixel covers, so depth along it is the distance from that plane.
    With a `lens` (depth of field), each ray starts at its aperture point `lens_points` [N, 2] instead
    and runs to where the pinhole ray meets the plane in focus (lens.py).
    """
    if c2w.dim() == 2:
        c2w = c2w.expand(pixels.shape[0], 4, 4)
    directions = camera_directions(pixels, intrinsics)
    if lens is not None:
        origins, directions = thin_lens_rays(directions, orthographic, lens, lens_points)
        world = torch.einsum("nij,nj->ni", c2w[:, :3, :3], directions)
        return torch.einsum("nij,nj->ni", c2w[:, :3, :3], origins) + c2w[:, :3, 3], world / world.norm(dim=-1, keepdim=True)
    if orthographic:
        plane = directions.clone()
        plane[..., 2] = 0.0
        origins = torch.einsum("nij,nj->ni", c2w[:, :3, :3], plane) + c2w[:, :3, 3]
        return origins, -c2w[:, :3, 2] / c2w[:, :3, 2].norm(dim=-1, keepdim=True)
    world = torch.einsum("nij,nj->ni", c2w[:, :3, :3], directions)
    world = world / world.norm(dim=-1, keepdim=True)
    origins = c2w[:, :3, 3]
    return origins, world


def image_pixels(width: int, height: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Pixel centres of a whole image, row-major: [H*W, 2] (col + 0.5, row + 0.5)."""
    rows, cols = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([cols, rows], dim=-1).reshape(-1, 2) + 0.5


def project_points(points: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project world points into a camera: returns pixel positions [N, 2] and depth in front [N].

    Depth here is the distance along the viewing axis (-Z); points behind the camera have depth <= 0.
    """
    w2c = torch.linalg.inv(c2w)
    local = points @ w2c[:3, :3].T + w2c[:3, 3]
    depth = -local[:, 2]
    fx, fy, cx, cy = intrinsics.unbind(-1)
    safe = depth.clamp_min(1e-8)
    col = fx * local[:, 0] / safe + cx
    row = -fy * local[:, 1] / safe + cy
    return torch.stack([col, row], dim=-1), depth


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """Camera-to-world matrix of a camera at `eye` looking at `target` (world up is +Z, as in Blender)."""
    up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype, device=eye.device) if up is None else up
    forward = target - eye
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, up)
    if right.norm() < 1e-6:  # looking straight up or down: any perpendicular right vector will do
        right = torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device))
    right = right / right.norm()
    true_up = torch.linalg.cross(right, forward)
    c2w = torch.eye(4, dtype=eye.dtype, device=eye.device)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, true_up, -forward, eye
    return c2w


def intersect_aabb(origins: torch.Tensor, directions: torch.Tensor, aabb: torch.Tensor, near_min: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slab test of rays against an axis-aligned box [2, 3]: (near [N], far [N], hit mask [N])."""
    safe = torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0 = (aabb[0] - origins) / safe
    t1 = (aabb[1] - origins) / safe
    near = torch.minimum(t0, t1).amax(-1).clamp_min(near_min)
    far = torch.maximum(t0, t1).amin(-1)
    hit = far > near
    return near, torch.where(hit, far, near), hit
