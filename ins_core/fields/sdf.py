"""A signed distance field with a colour branch, rendered NeuS-style.

position -> [centred position, hash grid] -> SDF MLP (softplus) -> (sdf, feature h)
(position, normal, direction, h) -> colour MLP -> RGB

The SDF MLP starts as a sphere (geometric initialisation), the hash-grid part of its first layer
starts at zero, and the SDF is in world units. `inv_s` is NeuS's learned sharpness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .activations import color_activation
from .encodings import HashGridConfig, SphericalHarmonicsEncoding
from .mlp import mlp


@dataclass
class SdfFieldConfig(HashGridConfig):
    hidden_dim: int = 64
    feature_dim: int = 15
    init_radius: float = 0.5  # of the initial sphere, as a fraction of the box's largest half-extent
    init_variance: float = 0.3


def _geometric_init(net: nn.Sequential, n_coords: int, radius: float) -> None:
    """Initialise so that net(p) ~ |p| - radius (Atzmon & Lipman's SAL initialisation)."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for layer in linears[:-1]:
        nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0) / math.sqrt(layer.out_features))
        nn.init.zeros_(layer.bias)
    nn.init.zeros_(linears[0].weight[:, n_coords:])  # encoding features start switched off
    last = linears[-1]
    nn.init.normal_(last.weight, math.sqrt(math.pi) / math.sqrt(last.in_features), 1e-4)
    nn.init.constant_(last.bias, -radius)


class SoftplusSharp(nn.Softplus):
    def __init__(self):
        super().__init__(beta=100.0)


class SdfField(nn.Module):
    def __init__(self, aabb: torch.Tensor, config: SdfFieldConfig | None = None):
        super().__init__()
        self.config = config or SdfFieldConfig()
        c = self.config
        self.register_buffer("aabb", aabb.clone().float())
        self.register_buffer("centre", (aabb[0] + aabb[1]).float() / 2)
        self.scale = float((aabb[1] - aabb[0]).max() / 2)
        self.position_encoding = c.hash_grid(3)
        self.sdf_mlp = mlp(3 + self.position_encoding.output_dim, c.hidden_dim, 2, 1 + c.feature_dim, activation=SoftplusSharp)
        _geometric_init(self.sdf_mlp, 3, c.init_radius)
        self.direction_encoding = SphericalHarmonicsEncoding(4)
        self.color_mlp = mlp(3 + 3 + self.direction_encoding.output_dim + c.feature_dim, c.hidden_dim, 2, 3)
        self.variance = nn.Parameter(torch.tensor(c.init_variance))

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def inv_s(self) -> torch.Tensor:
        return torch.exp(10.0 * self.variance).clamp(1e-6, 1e6)

    def sdf_and_feature(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SDF in world units [N] and feature h [N, F] at world positions [N, 3]."""
        local = (x - self.centre) / self.scale
        unit = (x - self.aabb[0]) / (self.aabb[1] - self.aabb[0])
        out = self.sdf_mlp(torch.cat([local, self.position_encoding(unit)], dim=-1))
        return out[:, 0] * self.scale, out[:, 1:]

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        return self.sdf_and_feature(x)[0]

    def sdf_with_gradient(self, x: torch.Tensor, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sdf [N], feature [N, F], gradient [N, 3]); the gradient is kept differentiable when training."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            sdf, feature = self.sdf_and_feature(x)
            (gradient,) = torch.autograd.grad(sdf, x, torch.ones_like(sdf), create_graph=create_graph)
        return sdf, feature, gradient

    def color(self, x: torch.Tensor, normals: torch.Tensor, directions: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        local = (x - self.centre) / self.scale
        inputs = torch.cat([local, normals, self.direction_encoding(directions), h], dim=-1)
        return color_activation(self.color_mlp(inputs))
