"""The hash grid's look-ups computed for all levels at once, to time against the default on a GPU.

The default (`HashGridEncoding.forward`) computes each level's corner indices in its own few
operations (dense levels without the hash, hashed ones without strides, int32 where it fits): on
the 2-core CPU 2-2.6x faster than indexing every level both ways at once, which is how the grid
worked when an H100 fitted lego at 400 px in 5393 steps a minute (2026-11-26). In 2026-12-04's
H200 run a fit made 2808 steps a minute, and the default runs about five times as many operations
in a 16-level forward and backward. Whether those launches are the difference is for a GPU to say:

    python bench/hashgrid_speed.py --lookups levels --lookups all --no-compile
    python bench/fit_lego.py --resolution 400 --time-budget 30 --lookups all

`use_lookups("all")` swaps the encoding's forward in this process only (the same features,
checked in tests/test_encodings.py); the product keeps the default until a GPU has measured both.
"""

from __future__ import annotations

import torch

from ins_core.fields.encodings import HashGridEncoding

LOOKUPS = ("levels", "all")


def all_levels_forward(self: HashGridEncoding, x: torch.Tensor) -> torch.Tensor:
    """HashGridEncoding.forward with every level's dense and hashed indices in one pass each [N, L, C]."""
    n, levels = x.shape[0], self.n_levels
    x = x.float().clamp(0.0, 1.0 - 1e-6)
    position = x[:, None, :] * self.level_resolution[None, :, None]  # [N, L, D]
    cell = position.detach().floor()
    frac = position - cell
    low_high = torch.stack([cell.long(), cell.long() + 1], dim=-1)  # [N, L, D, 2]
    dense_index = self._per_corner(low_high * self.dense_stride[None, :, :, None], torch.add)
    hash_index = self._per_corner(low_high * self.primes[None, None, :, None], torch.bitwise_xor)
    dense = torch.tensor(self.dense_levels, device=x.device)[None, :, None]
    offsets = torch.tensor(self.level_offsets, device=x.device)[None, :, None]
    rows = (torch.where(dense, dense_index, hash_index) & self.hash_mask) + offsets
    weights = self._per_corner(torch.stack([1 - frac, frac], dim=-1), torch.mul)  # [N, L, C]
    features = self.table.index_select(0, rows.reshape(-1)).view(n * levels, -1, self.features_per_level)
    return torch.bmm(weights.reshape(n * levels, 1, -1), features).view(n, self.output_dim)


def use_lookups(kind: str) -> None:
    """Make every HashGridEncoding in this process look up "levels" (the default) or "all" at once."""
    if kind not in LOOKUPS:
        raise ValueError(f"lookups must be one of {LOOKUPS}, got {kind!r}")
    HashGridEncoding.forward = _DEFAULT_FORWARD if kind == "levels" else all_levels_forward


_DEFAULT_FORWARD = HashGridEncoding.forward
