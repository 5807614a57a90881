"""Input encodings: Fourier features, a multiresolution hash grid, spherical harmonics.

Each encoding is an `nn.Module` with an `output_dim` attribute and maps [N, D] -> [N, output_dim].
Positions given to the hash grid must already be normalised to [0, 1]^D.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

# Large primes from the instant-ngp paper's spatial hash (first dimension left unscaled).
_HASH_PRIMES = (1, 2654435761, 805459861, 3674653429)



class FourierEncoding(nn.Module):
    """gamma(p) = [p, sin(2^k p), cos(2^k p)] for k < n_frequencies (the NeRF positional encoding).

    `include_pi=False` follows the published INS code (no pi factor in the frequencies).
    """

    def __init__(self, in_dim: int, n_frequencies: int, include_input: bool = True, include_pi: bool = False):
        super().__init__()
        scale = math.pi if include_pi else 1.0
        self.register_buffer("frequencies", scale * 2.0 ** torch.arange(n_frequencies, dtype=torch.float32), persistent=False)
        self.include_input = include_input
        self.in_dim = in_dim
        self.output_dim = in_dim * (2 * n_frequencies + int(include_input))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scaled = (x[..., None] * self.frequencies).flatten(-2)
        parts = [torch.sin(scaled), torch.cos(scaled)]
        if self.include_input:
            parts.insert(0, x)
        return torch.cat(parts, dim=-1)


class HashGridEncoding(nn.Module):
    """Multiresolution hash encoding (Mueller et al. 2022) in plain PyTorch.

    Level l has resolution floor(base * growth^l). Coarse levels whose (res+1)^D corners fit in the
    table are indexed densely (no collisions); finer ones are hashed into 2^log2_table_size slots.
    Features of the 2^D cell corners are blended with multilinear weights, so the output is
    differentiable with respect to both the table and the input positions (needed for SDF normals).
    """

    # How the corners' table rows are found. "levels": each level in its own few operations (a dense
    # level needs no hash, a hashed one no strides, int32 where it fits), 2-2.6x faster on the 2-core
    # CPU. "all": every level both ways in one pass, fewer and larger kernel launches: 17 % more
    # steps in a 30 s lego fit on an H200 (bench/results/gpu-h200-fit-lookups-2026-12-04.jsonl).
    # "auto" takes "all" on a GPU and "levels" elsewhere. Both give the same rows.
    lookups: str = "auto"
    # How each point's corner features are blended (`blend_corners`): "matmul" or "sum"; "auto" takes
    # "matmul" on a CPU and "sum" elsewhere. Both give the same features and gradients.
    blend: str = "auto"

    def __init__(
        self,
        in_dim: int = 3,
        n_levels: int = 16,
        features_per_level: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int = 2048,
        init_scale: float = 1e-4,
    ):
        super().__init__()
        if not 1 <= in_dim <= len(_HASH_PRIMES):
            raise ValueError(f"hash grid supports 1..{len(_HASH_PRIMES)} input dims, got {in_dim}")
        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(n_levels - 1, 1))
        resolutions = [int(math.floor(base_resolution * growth**level)) for level in range(n_levels)]
        table_cap = 2**log2_table_size
        sizes, dense = [], []
        for res in resolutions:
            dense_size = (res + 1) ** in_dim
            dense.append(dense_size <= table_cap)
            sizes.append(min(dense_size, table_cap))
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)

        self.in_dim = in_dim
        self.n_levels = n_levels
        self.features_per_level = features_per_level
        self.output_dim = n_levels * features_per_level
        self.resolutions = resolutions
        # Plain Python, not buffers: what each level's indexing branches on costs no device sync.
        self.dense_levels = dense
        self.level_offsets = offsets[:-1]
        # The same on the device, for finding every level's rows at once (`rows_all_levels`).
        self.register_buffer("dense_level_mask", torch.tensor(dense)[None, :, None], persistent=False)  # [1, L, 1]
        self.register_buffer("level_offset", torch.tensor(offsets[:-1])[None, :, None], persistent=False)
        self.register_buffer("level_resolution", torch.tensor(resolutions, dtype=torch.float32), persistent=False)
        # Hashed levels never use the dense index (and their strides would overflow), so they get 0.
        strides = torch.tensor([[(res + 1) ** d if dense[i] else 0 for d in range(in_dim)] for i, res in enumerate(resolutions)], dtype=torch.int64)
        self.register_buffer("dense_stride", strides, persistent=False)
        self.hash_mask = table_cap - 1
        self.register_buffer("primes", torch.tensor(list(_HASH_PRIMES[:in_dim]), dtype=torch.int64), persistent=False)
        self.table = nn.Parameter(torch.empty(offsets[-1], features_per_level).uniform_(-init_scale, init_scale))

    def _per_corner(self, per_dim: torch.Tensor, combine) -> torch.Tensor:
        """Expand per-dimension values [N, L, D, 2] (low / high corner) to the 2^D corners [N, L, C].

        Combining dimension by dimension with broadcasting touches N*L*2^D elements once, instead of
        materialising [N, L, C, D] corner coordinates (the dominant cost on the CPU).
        """
        n, levels = per_dim.shape[:2]
        out = per_dim[:, :, 0]
        # Sizes spelt out, not -1: a block of rays that sees nothing brings no points (n = 0).
        for d in range(1, self.in_dim):
            out = combine(out.unsqueeze(-1), per_dim[:, :, d].view(n, levels, *([1] * d), 2))
        return out.reshape(n, levels, 2**self.in_dim)

    def level_multiplier(self, level: int) -> tuple[torch.Tensor, Callable]:
        """How a level turns integer corner coordinates into an index before the mask: per-dimension
        multipliers [D] and the way their products combine (dense: strides and +, hashed: primes
        and xor). Only the index bits under the mask matter, so the primes are reduced modulo the
        table size; the products then fit in int32 for every resolution a table of this size is used at."""
        dense = self.dense_levels[level]
        multiplier = self.dense_stride[level] if dense else self.primes & self.hash_mask
        if (self.resolutions[level] + 1) * (self.hash_mask + 1) < 2**31:
            multiplier = multiplier.int()
        return multiplier, torch.add if dense else torch.bitwise_xor

    @torch.no_grad()
    def level_rows(self, cell: torch.Tensor, level: int) -> torch.Tensor:
        """Table rows [N, 2^D] of the corners of integer cells [N, D] (float or int) at one level.
        Each corner's index combines one term per dimension (D x 2 products, not 2^D x D)."""
        multiplier, combine = self.level_multiplier(level)
        low = cell.to(multiplier.dtype) * multiplier
        terms = torch.stack([low, low + multiplier], dim=-1)  # [N, D, 2]
        return (self._per_corner(terms[:, None], combine)[:, 0] & self.hash_mask) + self.level_offsets[level]

    def read_level(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """One level alone at positions [N, D] already in [0, 1): its features [N, F]."""
        n, dims = x.shape
        position = x * self.resolutions[level]
        cell = position.floor()
        frac = position - cell
        weight = self._per_corner(torch.stack([1 - frac, frac], dim=-1)[:, None], torch.mul)[:, 0]  # [N, 2^D]
        features = self.table.index_select(0, self.level_rows(cell, level).reshape(-1)).view(n, 2**dims, self.features_per_level)
        return blend_corners(weight, features, self.blend)

    @torch.no_grad()
    def rows_level_by_level(self, cell: torch.Tensor) -> torch.Tensor:
        """Table rows [N, L, 2^D] of the corners of every level's cells [N, L, D], a level at a time."""
        rows = torch.empty(cell.shape[0], self.n_levels, 2**self.in_dim, dtype=torch.long, device=cell.device)
        for level in range(self.n_levels):
            rows[:, level] = self.level_rows(cell[:, level], level)
        return rows

    @torch.no_grad()
    def rows_all_levels(self, cell: torch.Tensor) -> torch.Tensor:
        """The same rows with every level's dense and hashed index computed in one pass each."""
        low_high = torch.stack([cell.long(), cell.long() + 1], dim=-1)  # [N, L, D, 2]
        dense_index = self._per_corner(low_high * self.dense_stride[None, :, :, None], torch.add)
        hash_index = self._per_corner(low_high * self.primes[None, None, :, None], torch.bitwise_xor)
        return (torch.where(self.dense_level_mask, dense_index, hash_index) & self.hash_mask) + self.level_offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        corners = 2**self.in_dim
        # Keep the high corner inside the grid for points on the upper boundary.
        x = x.float().clamp(0.0, 1.0 - 1e-6)
        position = x[:, None, :] * self.level_resolution[None, :, None]  # [N, L, D]
        cell = position.detach().floor()
        frac = position - cell
        all_at_once = self.lookups == "all" or (self.lookups == "auto" and x.device.type != "cpu")
        rows = self.rows_all_levels(cell) if all_at_once else self.rows_level_by_level(cell)
        # One gather and one blend for all levels.
        weights = self._per_corner(torch.stack([1 - frac, frac], dim=-1), torch.mul)  # [N, L, C]
        features = self.table.index_select(0, rows.view(-1)).view(n * self.n_levels, corners, self.features_per_level)
        return blend_corners(weights.reshape(n * self.n_levels, corners), features, self.blend).view(n, self.output_dim)


BLENDS = ("auto", "matmul", "sum")


def blend_corners(weights: torch.Tensor, features: torch.Tensor, way: str = "auto") -> torch.Tensor:
    """Each point's corner features [M, C, F] weighted by its corner weights [M, C] and summed: [M, F].

    "matmul" takes M batched 1 x C by C x F matrix products, part of the change that made the grid's
    forward pass 2.5x faster on the 2-core CPU (2026-12-03); a whole training step there is about
    as fast either way (within 7 %, 2026-12-04). "sum" broadcasts and sums, as the grid did when an
    H100 trained 40 M points/s (2026-11-26). On a GPU the products are a batched GEMM's slow case
    (millions of tiny ones): on an H200 a training step made 14.7 M points/s with them and 50.0 M
    with the sum at 1 M points, and a lego fit step took 22.6 ms against 10.8 ms (2026-12-04,
    `bench/gpu_session.sh` PART=7). So "auto" keeps "matmul" for the CPU and takes "sum" on a GPU.
    """
    if way not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {way!r}")
    if way == "matmul" or (way == "auto" and weights.device.type == "cpu"):
        return torch.bmm(weights[:, None, :], features)[:, 0]
    return (features * weights[..., None]).sum(1)


@dataclass
class HashGridConfig:
    """A hash grid's shape; field configs extend it, so its fields stay flat in run.json."""

    n_levels: int = 16
    features_per_level: int = 2
    log2_table_size: int = 19
    base_resolution: int = 16
    max_resolution: int = 2048

    def hash_grid(self, in_dim: int) -> HashGridEncoding:
        return HashGridEncoding(in_dim, self.n_levels, self.features_per_level, self.log2_table_size,
                                self.base_resolution, self.max_resolution)

    def to_dict(self) -> dict:
        return asdict(self)


class SphericalHarmonicsEncoding(nn.Module):
    """Real spherical harmonics of unit directions up to degree 4 (16 outputs), as in instant-ngp."""

    def __init__(self, degree: int = 4):
        super().__init__()
        if not 1 <= degree <= 4:
            raise ValueError(f"spherical harmonics degree must be 1..4, got {degree}")
        self.degree = degree
        self.output_dim = degree**2

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        x, y, z = d.unbind(-1)
        terms = [torch.full_like(x, 0.28209479177387814)]
        if self.degree > 1:
            terms += [-0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x]
        if self.degree > 2:
            xx, yy, zz = x * x, y * y, z * z
            terms += [
                1.0925484305920792 * x * y,
                -1.0925484305920792 * y * z,
                0.94617469575755997 * zz - 0.31539156525251999,
                -1.0925484305920792 * x * z,
                0.54627421529603959 * (xx - yy),
            ]
        if self.degree > 3:
            terms += [
                0.59004358992664352 * y * (-3.0 * xx + yy),
                2.8906114426405538 * x * y * z,
                0.45704579946446572 * y * (1.0 - 5.0 * zz),
                0.3731763325901154 * z * (5.0 * zz - 3.0),
                0.45704579946446572 * x * (1.0 - 5.0 * zz),
                1.4453057213202769 * z * (xx - yy),
                0.59004358992664352 * x * (-xx + 3.0 * yy),
            ]
        return torch.stack(terms, dim=-1)
