"""Hash grids made fast for rendering: each level unrolled into a dense lattice read by grid_sample.

A hash-grid level of resolution r is a function on the (r+1)^D lattice of cell corners: the value at a
corner is its table row (indexed densely or through the spatial hash) and between corners it is
multilinear. Writing that lattice out once turns the level into a regular volume, and
`grid_sample`'s fused trilinear kernel reads it several times faster than the gather-and-blend
of the training code. Levels whose lattice would not fit the memory budget keep their table and are
read corner by corner. The results equal `HashGridEncoding.forward` up to float rounding.

`with_lattice_encodings(module)` gives a view of a model whose hash grids are swapped for these;
it shares the parameters and is rebuilt only when a table changes (its version counter moves).
"""

from __future__ import annotations

import copy
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from ..fields.encodings import HashGridEncoding

# Lattice corners written out per encoding (float32 x features): 2^25 corners of 2 floats = 256 MiB.
DEFAULT_BUDGET = 1 << 25


def _corner_index(encoding: HashGridEncoding, level: int, corners: torch.Tensor) -> torch.Tensor:
    """Table rows [N] of integer lattice corners [N, D] at one level, exactly as the encoding indexes them."""
    multiplier, combine = encoding.level_multiplier(level)
    terms = corners.to(multiplier.dtype) * multiplier
    index = terms[:, 0]
    for d in range(1, encoding.in_dim):
        index = combine(index, terms[:, d])
    return (index & encoding.hash_mask) + encoding.level_offsets[level]


def _lattice_volume(encoding: HashGridEncoding, level: int) -> torch.Tensor:
    """The level as a volume [1, F, r+1, ...] with the first coordinate varying fastest (grid_sample's x)."""
    size = encoding.resolutions[level] + 1
    device = encoding.table.device
    axes = [torch.arange(size, device=device)] * encoding.in_dim
    # meshgrid "ij" makes the last axis fastest; reversing puts coordinate 0 there.
    grids = torch.meshgrid(*axes, indexing="ij")
    corners = torch.stack(list(reversed(grids)), dim=-1).reshape(-1, encoding.in_dim)
    values = encoding.table.detach()[_corner_index(encoding, level, corners)]  # [size^D, F]
    return values.T.reshape(1, encoding.features_per_level, *([size] * encoding.in_dim)).contiguous()


class LatticeEncoding(nn.Module):
    """Inference-only stand-in for a HashGridEncoding (no gradients flow through it)."""

    def __init__(self, encoding: HashGridEncoding, budget: int = DEFAULT_BUDGET):
        super().__init__()
        if encoding.in_dim not in (2, 3):
            raise ValueError(f"lattice encodings need 2 or 3 input dims, got {encoding.in_dim}")
        self.source = encoding
        self.output_dim = encoding.output_dim
        self.volumes: dict[int, torch.Tensor] = {}
        spent = 0
        with torch.no_grad():
            for level, res in enumerate(encoding.resolutions):  # coarse first: they are the cheapest
                corners = (res + 1) ** encoding.in_dim
                if spent + corners <= budget:
                    self.volumes[level] = _lattice_volume(encoding, level)
                    spent += corners
        self.corners_written = spent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().clamp(0.0, 1.0 - 1e-6)  # as the hash grid does
        n = x.shape[0]
        grid = (2 * x - 1).view(1, *([1] * (self.source.in_dim - 1)), n, self.source.in_dim)
        f = self.source.features_per_level
        # grid_sample gives features-first rows; gathering them so and transposing once is cheaper
        # than concatenating transposed views.
        out = torch.empty(self.output_dim, n, device=x.device)
        for level in range(self.source.n_levels):
            volume = self.volumes.get(level)
            rows = out[level * f:(level + 1) * f]
            if volume is None:
                rows.copy_(self.source.read_level(x, level).T)
            else:
                rows.copy_(F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True).view(f, n))
        return out.T.contiguous()


def _table_versions(module: nn.Module) -> tuple:
    return tuple((m.table.data_ptr(), m.table._version) for m in module.modules() if isinstance(m, HashGridEncoding))


def _swap(module: nn.Module, budget: int) -> nn.Module:
    if isinstance(module, HashGridEncoding):
        return LatticeEncoding(module, budget)
    clone = copy.copy(module)  # shares parameters and buffers; only the submodule dict is new
    clone._modules = {name: (_swap(child, budget) if child is not None else None) for name, child in module._modules.items()}
    return clone


_cache: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module]]" = weakref.WeakKeyDictionary()


def with_lattice_encodings(module: nn.Module, budget: int = DEFAULT_BUDGET) -> nn.Module:
    """`module` with every hash grid read through a LatticeEncoding; cached until a table changes."""
    key = (_table_versions(module), budget)
    cached = _cache.get(module)
    if cached is not None and cached[0] == key:
        return cached[1]
    swapped = _swap(module, budget)
    _cache[module] = (key, swapped)
    return swapped
