"""Random training batches: rays from posed views, pixels from one image."""

from __future__ import annotations

import torch

from ..data.cameras import rays_from_pixels
from ..data.dataset import PosedViews


class RayBatcher:
    """Rays through random pixels of random training views, with a random background per ray
    (and each ray's known distance to the surface where the views have depths).

    The background colour changes every step so that the field cannot explain transparent pixels
    with colour and must learn empty space.
    """

    def __init__(self, views: PosedViews, batch_size: int, generator: torch.Generator | None = None):
        self.views = views
        self.batch_size = batch_size
        self.generator = generator

    def __call__(self) -> dict:
        views, n, device = self.views, self.batch_size, self.views.images.device
        g = self.generator
        view = torch.randint(0, len(views), (n,), device=device, generator=g)
        col = torch.randint(0, views.width, (n,), device=device, generator=g)
        row = torch.randint(0, views.height, (n,), device=device, generator=g)
        pixels = torch.stack([col, row], dim=-1).float() + 0.5
        origins, directions = rays_from_pixels(pixels, views.c2w[view], views.intrinsics[view])
        rgba = views.images[view, row, col].float() / 255.0
        background = torch.rand((n, 3), device=device, generator=g)
        batch = {"origins": origins, "directions": directions, "rgba": rgba, "background": background}
        if views.depth is not None:
            batch["depth"] = views.depth[view, row, col]
        return batch


class PixelBatcher:
    """Random pixel centres of one image [H, W, 3] with their colours."""

    def __init__(self, image: torch.Tensor, batch_size: int, generator: torch.Generator | None = None):
        self.image = image
        self.batch_size = batch_size
        self.generator = generator

    def __call__(self) -> dict:
        height, width = self.image.shape[:2]
        device = self.image.device
        row = torch.randint(0, height, (self.batch_size,), device=device, generator=self.generator)
        col = torch.randint(0, width, (self.batch_size,), device=device, generator=self.generator)
        uv = torch.stack([(col.float() + 0.5) / width, (row.float() + 0.5) / height], dim=-1)
        return {"uv": uv, "rgb": self.image[row, col]}
