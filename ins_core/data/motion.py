"""A moving camera during the shutter: motion blur as Blender's Motion Blur sets it up and Cycles
renders it, for a scene that holds still (the stylized field) seen by a camera that does not.

The camera's poses at evenly spaced times from the shutter's opening to its closing (its motion
steps) are given; each ray is cast at its own time, the pose there blended from the two nearest
steps (positions linearly, orientations along the shortest turn), so what moves across the frame
during the shutter smears along its path.
"""

from __future__ import annotations

import math

import torch

from ..errors import require


def _quaternions(rotations: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (w, x, y, z) [S, 4] of rotation matrices [S, 3, 3]."""
    out = []
    for m in rotations.double():
        trace = float(m[0, 0] + m[1, 1] + m[2, 2])
        if trace > 0:
            s = 2.0 * math.sqrt(trace + 1.0)
            q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
        else:
            i = int(torch.argmax(torch.diagonal(m)))
            j, k = (i + 1) % 3, (i + 2) % 3
            s = 2.0 * math.sqrt(max(1.0 + float(m[i, i] - m[j, j] - m[k, k]), 1e-12))
            q = [0.0] * 4
            q[0] = (m[k, j] - m[j, k]) / s
            q[1 + i] = 0.25 * s
            q[1 + j] = (m[j, i] + m[i, j]) / s
            q[1 + k] = (m[k, i] + m[i, k]) / s
        out.append(torch.tensor([float(v) for v in q], dtype=torch.float64))
    quaternions = torch.nn.functional.normalize(torch.stack(out), dim=-1)
    for index in range(1, len(quaternions)):  # each step on the same side as the last: the short way round
        if float((quaternions[index] * quaternions[index - 1]).sum()) < 0:
            quaternions[index] = -quaternions[index]
    return quaternions


def _rotation_matrices(q: torch.Tensor) -> torch.Tensor:
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def poses_at(steps: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Camera-to-world matrices [N, 4, 4] at `times` [N] in [0, 1] (0 the shutter's opening, 1 its
    closing) of a camera whose poses at evenly spaced times are `steps` [S, 4, 4] (S >= 2)."""
    require(steps.dim() == 3 and steps.shape[0] >= 2 and steps.shape[1:] == (4, 4),
            f"A camera's motion needs two or more 4x4 poses, not a tensor of shape {tuple(steps.shape)}.")
    spans = steps.shape[0] - 1
    where = times.clamp(0.0, 1.0).double() * spans
    segment = where.floor().clamp(max=spans - 1).long()
    share = (where - segment)[:, None]
    quaternions = _quaternions(steps[:, :3, :3]).to(times.device)
    a, b = quaternions[segment], quaternions[segment + 1]
    cosine = (a * b).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    angle = torch.acos(cosine)
    sine = torch.sin(angle)
    near = sine.abs() < 1e-6  # (almost) no turn: a straight blend is the same and stays finite
    weight_a = torch.where(near, 1.0 - share, torch.sin((1.0 - share) * angle) / torch.where(near, 1.0, sine))
    weight_b = torch.where(near, share, torch.sin(share * angle) / torch.where(near, 1.0, sine))
    rotations = _rotation_matrices(torch.nn.functional.normalize(weight_a * a + weight_b * b, dim=-1))
    positions = steps[:, :3, 3].double().to(times.device)
    out = torch.zeros(times.shape[0], 4, 4, dtype=torch.float64, device=times.device)
    out[:, :3, :3] = rotations
    out[:, :3, 3] = (1.0 - share) * positions[segment] + share * positions[segment + 1]
    out[:, 3, 3] = 1.0
    return out.to(steps.dtype)


def shutter_samples(samples: int, pixels: int, device: torch.device | str | None = None, seed: int = 1) -> list[torch.Tensor]:
    """For each of a pixel's `samples` rays, its time in the shutter in every pixel ([pixels] each,
    in [0, 1]): ray i of every pixel lies in its own slice of the shutter (the slices shuffled
    against the pixel's grid of positions), at a random place in it that differs from pixel to
    pixel, so the blur is noise that samples smooth rather than `samples` sharp copies."""
    generator = torch.Generator().manual_seed(seed)
    slices = torch.randperm(samples, generator=generator)
    return [((cell + torch.rand(pixels, generator=generator)) / samples).to(device) for cell in slices.tolist()]
