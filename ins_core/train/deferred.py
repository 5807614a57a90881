"""Deferred back-propagation: a loss on a whole rendered view at the memory cost of one chunk of rays.

1. Render every ray of the view without autograd.
2. Take the image loss (the loss network sees the whole view at one stroke scale) and its gradient
   with respect to the image.
3. Render the rays again chunk by chunk with autograd and back-propagate the cached pixel
   gradients into the model.

Both renders must be deterministic (no jitter) so that the gradient is exact. A view that fits in
one chunk is rendered once, with autograd, and back-propagated directly. Gradients accumulate in
the parameters' `.grad`; the caller zeroes them before and steps the optimiser after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

RenderChunk = Callable[[int, int], torch.Tensor]  # (first ray, end ray) -> colours [end - first, 3]
ImageLoss = Callable[[torch.Tensor], tuple[torch.Tensor, dict]]  # image [H, W, 3] -> (loss, terms)


@dataclass
class DeferredStep:
    loss: torch.Tensor  # detached
    image: torch.Tensor  # [H, W, 3] detached
    terms: dict


def deferred_backward(render: RenderChunk, height: int, width: int, image_loss: ImageLoss, chunk: int = 1 << 18) -> DeferredStep:
    """Back-propagate `image_loss` of the H x W view that `render` draws, `chunk` rays at a time."""
    rays = height * width
    if rays <= chunk:
        image = render(0, rays).view(height, width, 3)
        loss, terms = image_loss(image)
        if loss.requires_grad:
            loss.backward()
        return DeferredStep(loss.detach(), image.detach(), terms)
    bounds = [(start, min(start + chunk, rays)) for start in range(0, rays, chunk)]
    with torch.no_grad():
        image = torch.cat([render(a, b) for a, b in bounds]).view(height, width, 3)
    image.requires_grad_(True)
    loss, terms = image_loss(image)
    (pixel_grad,) = torch.autograd.grad(loss, image)
    pixel_grad = pixel_grad.reshape(rays, 3)
    for a, b in bounds:
        colors = render(a, b)
        if colors.requires_grad:
            (colors * pixel_grad[a:b]).sum().backward()
    return DeferredStep(loss.detach(), image.detach(), terms)
