"""Image fields: (x, y) in [0, 1]^2 -> RGB, as a SIREN or a 2D hash grid + small MLP.

Being continuous, a fitted image field renders at any resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .activations import color_activation
from .encodings import HashGridConfig
from .mlp import Siren, mlp

IMAGE_BACKBONES = ("siren", "hashgrid")


@dataclass
class ImageFieldConfig(HashGridConfig):
    log2_table_size: int = 18  # a 2D grid needs a smaller table and coarser levels than a 3D one
    base_resolution: int = 8
    max_resolution: int = 1024
    backbone: str = "hashgrid"
    hidden_dim: int = 64
    n_hidden: int = 2
    siren_hidden_dim: int = 256
    siren_layers: int = 4


class ImageField(nn.Module):
    def __init__(self, config: ImageFieldConfig | None = None):
        super().__init__()
        self.config = config or ImageFieldConfig()
        c = self.config
        if c.backbone not in IMAGE_BACKBONES:
            raise ValueError(f"image backbone must be one of {IMAGE_BACKBONES}, got {c.backbone!r}")
        if c.backbone == "siren":
            self.encoding = None
            self.net = Siren(2, c.siren_hidden_dim, c.siren_layers, 3)
        else:
            self.encoding = c.hash_grid(2)
            self.net = mlp(self.encoding.output_dim, c.hidden_dim, c.n_hidden, 3)

    def features_and_logits(self, uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The scene feature h (the encoded position, or the SIREN's last hidden layer) and the RGB
        logits; what the INS modules build on when the image field is the content module."""
        if self.encoding is None:
            h = self.net.body(uv * 2.0 - 1.0)
            return h, self.net.head(h)
        h = self.encoding(uv)
        return h, self.net(h)

    @property
    def feature_dim(self) -> int:
        return self.encoding.output_dim if self.encoding is not None else self.config.siren_hidden_dim

    def forward(self, uv: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] at image positions [N, 2] ((0, 0) top-left, (1, 1) bottom-right)."""
        return color_activation(self.features_and_logits(uv)[1])
