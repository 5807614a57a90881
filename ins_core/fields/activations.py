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


# How far past [0, 1] the colour activation reaches, as in mip-NeRF's widened sigmoid.
COLOR_MARGIN = 1e-3
# The least slope the colour activation's gradient keeps: the sigmoid's at logit 10.
_COLOR_MIN_SLOPE = 4.5e-5


class _WidenedSigmoid(torch.autograd.Function):
    """sigmoid(x) * (1 + 2m) - m held to [0, 1]; its gradient is the widened sigmoid's, the clamp
    passed straight through, and never falls below the sigmoid's slope at |x| = 10."""

    @staticmethod
    def forward(ctx, logits):
        sigmoid = torch.sigmoid(logits)
        ctx.save_for_backward(sigmoid)
        return (sigmoid * (1.0 + 2.0 * COLOR_MARGIN) - COLOR_MARGIN).clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad):
        (sigmoid,) = ctx.saved_tensors
        return grad * (1.0 + 2.0 * COLOR_MARGIN) * (sigmoid * (1.0 - sigmoid)).clamp_min(_COLOR_MIN_SLOPE)


def color_activation(logits: torch.Tensor) -> torch.Tensor:
    """Logits -> RGB in [0, 1]: a sigmoid widened as in mip-NeRF (to [-0.001, 1.001], then held to
    [0, 1]), so that pure white and black are reached at finite logits (about +-6.9) and a colour
    there has no error left to chase, whose gradient keeps a least slope, so that a saturated
    colour can come back.

    Why: in a fit's first steps, while nothing is opaque yet, Adam's steps (which do not shrink with
    the gradient) pushed the colour logits of the demo scene into the tens and hundreds; with a
    plain sigmoid their gradient was then zero, every colour stayed white and the fit stalled at
    21 dB, for one seed in five. A plain sigmoid also only approaches a white target, its gradient
    pointing further out for ever.
    """
    return _WidenedSigmoid.apply(logits)
