"""The part of a view that a loss over its object needs: the object's box widened by a margin.

A Gram loss over a view's object (`masked_gram_matrix`) reads the loss network's features at the
object's pixels alone, and those see only as far as their receptive field. The rest of the view is
background the network is run over for nothing: on make demo's search views the window (the box
and its margin) is half to two thirds of the frame. Running the network on the window instead gives the same features at the
object wherever the margin holds their receptive field (docs/performance.md).
"""

from __future__ import annotations

import torch

# relu4_3's cells are 8 pixels wide: a window whose edges lie on multiples of 8 keeps every layer's
# cells (and max-pooling windows) where the whole view's were.
GRAIN = 8
# Pixels around the object's box, at the loss network's size: relu3_3's receptive field (40 px)
# whole, relu4_3's (92 px) largely. On make demo's views the palette match's 48 screened starts
# scored within 0.011 % of the whole view's, the same first five, in 32.5 s instead of 53.3
# (`bench/object_window.py`; 16 px: 24 s, but 0.4 % off on a textured disc against 0.02 %).
MARGIN = 32
# A NeRF's haze covers every pixel a little: the box holds the pixels the object covers more than
# one 8-bit level of (the rest weighed 0.01-0.02 % of the demo views' masks).
COVERED = 1.0 / 255.0


def object_window(covered: torch.Tensor, margin: int, grain: int = GRAIN) -> tuple[slice, slice]:
    """The rows and columns of an image [H, W] that hold `covered`'s pixels (bool) and `margin`
    more on each side, their ends on multiples of `grain` where the image allows; the whole image
    where nothing is covered."""
    height, width = covered.shape
    rows, cols = covered.any(dim=1).nonzero(), covered.any(dim=0).nonzero()
    if rows.numel() == 0:
        return slice(0, height), slice(0, width)

    def span(first: int, last: int, size: int) -> slice:
        start = max(0, (first - margin) // grain * grain)
        end = min(size, -(-(last + 1 + margin) // grain) * grain)
        return slice(start, end)

    return span(int(rows[0]), int(rows[-1]), height), span(int(cols[0]), int(cols[-1]), width)


def on_object_window(image: torch.Tensor, mask: torch.Tensor, margin: int | None = MARGIN) -> tuple[torch.Tensor, torch.Tensor]:
    """An image [..., H, W] and its object's mask [H, W] cut to the object's window (`object_window`
    of the pixels covered more than `COVERED`); both whole with `margin` None."""
    if margin is None:
        return image, mask
    rows, cols = object_window(mask > COVERED, margin)
    return image[..., rows, cols], mask[rows, cols]
