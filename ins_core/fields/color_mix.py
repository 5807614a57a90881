"""How a mix of styles mixes their colour maps.

Each style of a stylized field has an affine colour map x -> A x + b (its palette match) and the
colour it was matched about, its centre c (the mean of that style's colours on the object, which
the map sends to the painting's mean colour). A mix of styles mixes the maps' parts apart:

- where the centres land, linearly (the mix's mean colour lies between the paintings' means);
- A's polar parts, A = U P (U orthogonal, which colour direction becomes which; P symmetric
  positive, how far each stretches): the stretches linearly, the rotations along the shortest arc
  between them (a normalised weighted sum of their unit quaternions).

Mixing the matrices themselves averages maps that send a colour to a blue in one painting and an
orange in the other down to a map that sends every colour near grey: the middle of a two-style
morph lost its contrast (docs/stylization.md). Through the polar parts the mixed map stretches
colour differences as much as the maps it mixes, and turns them part of the way from one painting's
directions to the other's.

A rotation cannot turn into a mirror image (det U = -1) without passing through a flat map, so maps
of opposite handedness are mixed as matrices, as before; the palette match gives every style of a
model the same handedness (`palette_match.py`).
"""

from __future__ import annotations

import torch


def polar_parts(matrices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The polar decomposition A = U P of matrices [..., 3, 3]: U orthogonal, P symmetric positive
    semi-definite."""
    left, gains, right_t = torch.linalg.svd(matrices)
    orthogonal = left @ right_t
    stretch = right_t.transpose(-1, -2) @ (gains[..., :, None] * right_t)
    return orthogonal, stretch


def rotation_to_quaternion(rotations: torch.Tensor) -> torch.Tensor:
    """Unit quaternions [..., 4] (w, x, y, z) of rotation matrices [..., 3, 3] (Shepperd's method:
    from whichever component is largest, so no division by one near zero)."""
    m = rotations
    diagonal_terms = torch.stack([
        1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2],
        1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
        1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
        1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2],
    ], dim=-1)  # 4 q_i^2
    skew = [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]]  # 4 w (x, y, z)
    xy, xz, yz = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]  # 4 xy, 4 xz, 4 yz
    # Row i is 4 q_i q: proportional to q, by a positive factor when q_i is taken positive.
    rows = torch.stack([
        torch.stack([diagonal_terms[..., 0], *skew], dim=-1),
        torch.stack([skew[0], diagonal_terms[..., 1], xy, xz], dim=-1),
        torch.stack([skew[1], xy, diagonal_terms[..., 2], yz], dim=-1),
        torch.stack([skew[2], xz, yz, diagonal_terms[..., 3]], dim=-1),
    ], dim=-2)
    largest = diagonal_terms.argmax(dim=-1)
    chosen = torch.gather(rows, -2, largest[..., None, None].expand(*largest.shape, 1, 4)).squeeze(-2)
    return torch.nn.functional.normalize(chosen, dim=-1)


def quaternion_to_rotation(quaternions: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] of unit quaternions [..., 4] (w, x, y, z)."""
    w, x, y, z = quaternions.unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], dim=-1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], dim=-1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], dim=-1),
    ], dim=-2)


def mean_rotation(rotations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The weighted mean [3, 3] of rotations [K, 3, 3] along the shortest arcs: for two, the
    rotation part of the way from one to the other (the normalised weighted sum of quaternions, each
    signed to agree with the most weighted one)."""
    q = rotation_to_quaternion(rotations)
    reference = q[weights.argmax()]
    q = q * torch.where((q @ reference) < 0, -1.0, 1.0).to(q)[:, None]
    return quaternion_to_rotation(torch.nn.functional.normalize((weights[:, None] * q).sum(0), dim=0))


def mix_color_maps(maps: torch.Tensor, centres: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The colour map [3, 4] of a mix of styles: their maps [K, 3, 4] (A | b), the centres [K, 3]
    they were matched about, the mix's convex weights [K]. Computed in float64; returned in the
    maps' dtype."""
    dtype = maps.dtype
    maps, centres, weights = maps.double(), centres.double(), weights.double()
    matrices, offsets = maps[:, :, :3], maps[:, :, 3]
    landing = (matrices @ centres[:, :, None]).squeeze(-1) + offsets  # [K, 3] where each centre goes
    orthogonal, stretch = polar_parts(matrices)
    handedness = torch.linalg.det(orthogonal).sign()
    if bool((handedness == handedness[0]).all()):
        turned = mean_rotation(orthogonal * handedness[:, None, None], weights) * handedness[0]
        matrix = turned @ (weights[:, None, None] * stretch).sum(0)
    else:
        matrix = (weights[:, None, None] * matrices).sum(0)
    centre = (weights[:, None] * centres).sum(0)
    offset = (weights[:, None] * landing).sum(0) - matrix @ centre
    return torch.cat([matrix, offset[:, None]], dim=1).to(dtype)
