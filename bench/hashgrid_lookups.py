"""Choose how every hash grid in this process finds its table rows and blends its corners, to time
the ways against each other.

`HashGridEncoding.lookups`: "levels" (each level in its own few operations, the CPU's way), "all"
(every level in one pass, a GPU's way) or "auto" (the product's: "all" on a GPU, "levels" on a CPU):

    python bench/hashgrid_speed.py --lookups levels --lookups all --no-compile
    python bench/fit_lego.py --resolution 400 --time-budget 30 --lookups all

`HashGridEncoding.blend`: "matmul" (batched matrix products, the CPU's way), "sum" (multiply and
sum, a GPU's way) or "auto" (`ins_core.fields.encodings.blend_corners`):

    python bench/hashgrid_speed.py --blend matmul --blend sum --no-compile
"""

from __future__ import annotations

from ins_core.fields.encodings import BLENDS, HashGridEncoding

LOOKUPS = ("auto", "levels", "all")


def use_lookups(kind: str) -> None:
    """Make every HashGridEncoding in this process look up its rows the given way."""
    if kind not in LOOKUPS:
        raise ValueError(f"lookups must be one of {LOOKUPS}, got {kind!r}")
    HashGridEncoding.lookups = kind


def use_blend(way: str) -> None:
    """Make every HashGridEncoding in this process blend its corners the given way."""
    if way not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {way!r}")
    HashGridEncoding.blend = way
