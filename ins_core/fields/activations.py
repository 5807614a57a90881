"""Activations shared by the fields."""

from __future__ import annotations

import torch


class _TruncExp(torch.autograd.Function):
    """exp(x) whose gradient is clamped, so a large raw density cannot blow up the update."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return _TruncExp.apply(x)


def density_activation(raw: torch.Tensor) -> torch.Tensor:
    """Raw (pre-activation) density -> sigma >= 0. The raw value is what geometry distillation matches."""
    return trunc_exp(raw.clamp(max=15.0) - 1.0)
