"""Where the stylized field stands in the scene: the transform of the object that places it.

A field keeps the frame it was captured in. In Blender the INS engine places it by an object's
`matrix_world` (the imported mesh's, identity at import, so the field and the mesh start where the
scene was): moved, turned, mirrored or scaled by one factor, the field goes with it. Rather than
moving the field, the camera is taken into the field's frame (its pose there, with unit axes
again); a perspective picture is the same at any scale, so only what is measured in world units
changes: an orthographic camera's pixels per unit, the lens's focus distance and aperture, the
mist's start and depth going in; the Z pass coming out. Normals come out turned by the rotation.
An uneven scale or a shear would bend the field's rays (its distances differ by direction), so
such a placement is refused with one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..errors import InputError
from .lens import ThinLens

# How far the axes' lengths may differ, relative to their mean, and how far from square they may
# lie, and still count as one scale: Blender's own float32 matrices of an evenly scaled object
# differ in the 7th digit.
TOLERANCE = 1e-4


def scale_of(matrix: torch.Tensor) -> float | None:
    """The one scale factor of a [4, 4] rotation + translation + uniform scale (mirrors allowed);
    None when it is not one (uneven scale, shear, projection, zero or non-finite entries)."""
    if not bool(torch.isfinite(matrix).all()):
        return None
    axes = matrix[:3, :3]
    lengths = axes.norm(dim=0)
    scale = float(lengths.mean())
    last_row = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=matrix.dtype)
    if scale <= 1e-8 or float((matrix[3] - last_row).abs().max()) > TOLERANCE:  # (Blender's float32 products)
        return None
    if float((lengths - scale).abs().max()) > TOLERANCE * scale:
        return None
    gram = (axes.T @ axes) / scale ** 2
    if float((gram - torch.eye(3, dtype=matrix.dtype)).abs().max()) > TOLERANCE:
        return None
    return scale


@dataclass(frozen=True)
class Placement:
    """Field-to-world [4, 4] (float64): a rotation, a translation and one scale."""

    matrix: torch.Tensor
    scale: float

    @classmethod
    def from_matrix(cls, matrix) -> "Placement":
        m = torch.as_tensor(matrix, dtype=torch.float64).reshape(4, 4)
        scale = scale_of(m)
        if scale is None:
            raise InputError("The field's placement must be a move, a turn and one scale for all three axes; "
                             "give the object that places it three equal Scale values and no sheared parent.")
        return cls(m, scale)

    @property
    def rotation(self) -> torch.Tensor:
        """[3, 3] the placement's turn (a mirror when its determinant is negative)."""
        return self.matrix[:3, :3] / self.scale

    def pose_in_field(self, c2w: torch.Tensor) -> torch.Tensor:
        """Camera-to-world poses [..., 4, 4] (unit axes) as camera-to-field poses, unit axes again."""
        affine = self.matrix.clone()
        affine[3] = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=affine.dtype)  # (the last row's float32 noise dropped)
        pose = (torch.linalg.inv(affine).to(c2w) @ c2w).clone()
        pose[..., :3, :3] *= self.scale  # the inverse shrank the axes by the scale
        return pose

    def intrinsics_in_field(self, intrinsics: torch.Tensor, orthographic: bool) -> torch.Tensor:
        """[fx, fy, cx, cy]: a perspective camera's are the same; an orthographic one's pixels per
        world unit are `scale` times as many per field unit."""
        if not orthographic:
            return intrinsics
        return torch.cat([intrinsics[:2] * self.scale, intrinsics[2:]])

    def lens_in_field(self, lens: ThinLens | None) -> ThinLens | None:
        if lens is None:
            return None
        return replace(lens, focus_distance=lens.focus_distance / self.scale, aperture_radius=lens.aperture_radius / self.scale)

    def mist_in_field(self, mist: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        """(start, depth, exponent) of the world's mist, its distances in field units."""
        if mist is None:
            return None
        start, depth, exponent = mist
        return start / self.scale, depth / self.scale, exponent

    def depth_to_world(self, depth: torch.Tensor, no_depth: float) -> torch.Tensor:
        """A Z pass in field units -> world units (`no_depth` where nothing is stays as it is)."""
        return torch.where(depth == no_depth, depth, depth * self.scale)

    def normals_to_world(self, normals: torch.Tensor) -> torch.Tensor:
        """[..., 3] field-frame normals (their lengths kept: partly covered pixels' are shorter)."""
        return normals @ self.rotation.to(normals).T

