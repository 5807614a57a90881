"""The NeRF content field, shaped as the INS Content Implicit Module (CIM).

position -> hash grid -> density MLP -> (raw density, scene feature h)
(h, direction) -> colour MLP -> RGB

`density()` and `color()` are separate so that the renderer can skip the colour of empty samples and
so that stylization can fuse h with a style feature (the Amalgamate Module) without changing this
module: the frozen CIM stays the teacher for geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .activations import color_activation, density_activation
from .encodings import HashGridConfig, SphericalHarmonicsEncoding
from .mlp import mlp


@dataclass
class NerfFieldConfig(HashGridConfig):
    hidden_dim: int = 64
    feature_dim: int = 15
    color_hidden_layers: int = 2


class NerfField(nn.Module):
    """Density and view-dependent colour inside a scene box."""

    def __init__(self, aabb: torch.Tensor, config: NerfFieldConfig | None = None):
        super().__init__()
        self.config = config or NerfFieldConfig()
        c = self.config
        self.register_buffer("aabb", aabb.clone().float())
        self.position_encoding = c.hash_grid(3)
        self.density_mlp = mlp(self.position_encoding.output_dim, c.hidden_dim, 1, 1 + c.feature_dim)
        self.direction_encoding = SphericalHarmonicsEncoding(4)
        self.color_mlp = mlp(c.feature_dim + self.direction_encoding.output_dim, c.hidden_dim, c.color_hidden_layers, 3)

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """World positions -> [0, 1]^3 inside the scene box."""
        return (x - self.aabb[0]) / (self.aabb[1] - self.aabb[0])

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        return ((x >= self.aabb[0]) & (x <= self.aabb[1])).all(-1)

    def density(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw (pre-activation) density [N] and scene feature h [N, F] at world positions [N, 3]."""
        out = self.density_mlp(self.position_encoding(self.normalize(x)))
        raw = out[:, 0]
        # Nothing exists outside the box: a very negative raw density gives sigma ~ 0.
        raw = torch.where(self.inside(x), raw, torch.full_like(raw, -20.0))
        return raw, out[:, 1:]

    def sigma(self, x: torch.Tensor) -> torch.Tensor:
        return density_activation(self.density(x)[0])

    def color(self, h: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] from scene features [N, F] and unit view directions [N, 3]."""
        return color_activation(self.color_mlp(torch.cat([h, self.direction_encoding(directions)], dim=-1)))
