"""Multi-view consistency while stylizing: a view should show what a neighbouring view shows there.

The content geometry is frozen, so where a surface point of one view lands in another is known
exactly. The term is the mean squared difference between a view's colours and its neighbour's at
the same surface points (only those both views see; see render/reprojection.py). The neighbour's
render is a fixed target (no gradient): the caller passes the one it kept from when that view last
trained, so the term costs no extra render. Why: fine strokes on a soft (100 px) NeRF are averaged along
each ray over a short stretch of depth, and two views average over different stretches, so a
stroke pattern can disagree between views although nothing in it depends on the view; this term
makes the style modules paint patterns that survive that averaging.
"""

from __future__ import annotations

import torch

from ..render.reprojection import Reprojection


def reprojection_difference(image: torch.Tensor, landing: Reprojection, neighbour_image: torch.Tensor) -> torch.Tensor:
    """Mean squared colour difference between an [H, W, 3] view and its neighbour's [H, W, 3] render
    at the view's surface points the neighbour sees (`landing`); 0 where it sees none of them."""
    if not bool(landing.visible.any()):
        return image.sum() * 0
    target = landing.sample(neighbour_image.detach())
    return (image.reshape(-1, 3)[landing.visible] - target).pow(2).mean()
