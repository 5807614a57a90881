"""Volume compositing, exactly as the method states it.

For samples t_1..t_N on a ray: alpha_i = 1 - exp(-sigma_i delta_i), T_i = prod_{j<i} (1 - alpha_j),
w_i = T_i alpha_i; colour = sum w_i c_i, depth = sum w_i t_i, opacity = sum w_i, and the background
shows through with weight 1 - opacity. The SDF renderer supplies its own alphas (NeuS).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Composite:
    rgb: torch.Tensor  # [R, 3]
    depth: torch.Tensor  # [R] expected distance along the ray (weights not renormalised)
    opacity: torch.Tensor  # [R]
    weights: torch.Tensor  # [R, S]


def density_to_alpha(sigma: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """alpha_i = 1 - exp(-sigma_i * delta_i); both [R, S]."""
    return 1.0 - torch.exp(-sigma * deltas)


def alpha_to_weights(alpha: torch.Tensor) -> torch.Tensor:
    """w_i = alpha_i * prod_{j<i} (1 - alpha_j), computed with an exclusive cumulative product."""
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1] + 1e-10], dim=1), dim=1)
    return alpha * transmittance


def composite(alpha: torch.Tensor, rgb: torch.Tensor, t: torch.Tensor, background: torch.Tensor | None = None) -> Composite:
    """Blend per-sample colours [R, S, 3] at distances t [R, S] along each ray."""
    weights = alpha_to_weights(alpha)
    opacity = weights.sum(-1)
    color = (weights[..., None] * rgb).sum(-2)
    if background is not None:
        color = color + (1.0 - opacity)[:, None] * background
    depth = (weights * t).sum(-1)
    return Composite(color, depth, opacity, weights)


def neus_alpha(sdf: torch.Tensor, inv_s: torch.Tensor) -> torch.Tensor:
    """NeuS discrete opacity between consecutive samples: sdf [R, S+1] -> alpha [R, S].

    alpha_i = max((Phi_s(f_i) - Phi_s(f_{i+1})) / Phi_s(f_i), 0) with Phi_s the logistic CDF of
    sharpness s; it is large only where the ray enters a surface (f goes from + to -).
    """
    cdf = torch.sigmoid(sdf * inv_s)
    prev, nxt = cdf[:, :-1], cdf[:, 1:]
    return ((prev - nxt + 1e-5) / (prev + 1e-5)).clamp(0.0, 1.0)


def gather_at_quantiles(weights: torch.Tensor, k: int) -> torch.Tensor:
    """Each ray's weights [R, S] moved onto at most k of its samples: [R, S], the same sum per ray.

    The ray's weight is cut into k equal parts along the ray (its cumulative sum); each part goes to
    the sample that holds the part's middle. Colouring only those samples and blending with these
    weights is a k-point stratified estimate of the composited colour: exact where the colour is
    constant along the ray, and off by the colour's variation within one part elsewhere.
    """
    total = weights.sum(-1, keepdim=True)
    cumulative = weights.cumsum(-1)
    part = ((cumulative - 0.5 * weights) / total.clamp_min(1e-30) * k).long().clamp(0, k - 1)  # [R, S]
    middles = (torch.arange(k, device=weights.device, dtype=weights.dtype) + 0.5) / k * total  # [R, k]
    # The first sample whose cumulative weight reaches a part's middle holds it (and has weight > 0).
    holder = torch.searchsorted(cumulative, middles).clamp(max=weights.shape[1] - 1)
    part_weight = torch.zeros(weights.shape[0], k, device=weights.device, dtype=weights.dtype).scatter_add_(1, part, weights)
    return torch.zeros_like(weights).scatter_add_(1, holder, part_weight)
