"""Small multilayer perceptrons: ReLU MLPs and SIREN (sine activations)."""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(in_dim: int, hidden_dim: int, n_hidden: int, out_dim: int, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """in -> (hidden, activation) x n_hidden -> out, with no activation on the output."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(n_hidden):
        layers += [nn.Linear(width, hidden_dim), activation()]
        width = hidden_dim
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class SineLayer(nn.Module):
    """sin(omega * (W x + b)) with the SIREN initialisation (Sitzmann et al. 2020)."""

    def __init__(self, in_dim: int, out_dim: int, omega: float, first: bool):
        super().__init__()
        self.omega = omega
        self.linear = nn.Linear(in_dim, out_dim)
        bound = 1.0 / in_dim if first else math.sqrt(6.0 / in_dim) / omega
        nn.init.uniform_(self.linear.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega * self.linear(x))


class Siren(nn.Module):
    """A SIREN: sine layers then a linear output layer."""

    def __init__(self, in_dim: int, hidden_dim: int, n_hidden: int, out_dim: int, omega_first: float = 30.0, omega_hidden: float = 30.0):
        super().__init__()
        layers = [SineLayer(in_dim, hidden_dim, omega_first, first=True)]
        layers += [SineLayer(hidden_dim, hidden_dim, omega_hidden, first=False) for _ in range(n_hidden - 1)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(hidden_dim, out_dim)
        bound = math.sqrt(6.0 / hidden_dim) / omega_hidden
        nn.init.uniform_(self.head.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
