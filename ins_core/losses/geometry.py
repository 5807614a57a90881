"""Self-distilled geometry consistency: keep the stylized geometry close to the pre-trained one."""

from __future__ import annotations

import torch


def geometry_consistency(
    student_raw: torch.Tensor, teacher_raw: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean L1 between the student's and the frozen teacher's raw (pre-activation) density or SDF.

    Both tensors must come from the SAME sample points (same shape, element for element): the
    Amalgamate Module's stylized output is the student, the frozen Content Implicit Module the
    teacher (detached here, so no gradient reaches it). This is the project's improvement over
    the published INS code, which drew separately jittered samples for teacher and student, so
    its distillation compared nearby but different points and was only approximate.

    `mask` (bool or float weights, broadcastable to the inputs) restricts or weights the mean,
    e.g. to samples inside the scene box or on rays that hit something; an all-zero mask gives 0.
    """
    if student_raw.shape != teacher_raw.shape:
        raise ValueError(
            f"student {tuple(student_raw.shape)} and teacher {tuple(teacher_raw.shape)} must be evaluated at the same "
            "sample points (same shape)"
        )
    diff = (student_raw - teacher_raw.detach()).abs()
    if mask is None:
        return diff.mean()
    weights = torch.broadcast_to(mask.to(diff.dtype), diff.shape)
    return (diff * weights).sum() / weights.sum().clamp_min(1e-12)
