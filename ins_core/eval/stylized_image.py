"""How a stylized image run (`stylize-image`) matches its paintings, measured as it was trained:
over the object (the photograph's opacity; all of an opaque photograph) with the image at the
losses' size, the Gram distance and the colour distance to each painting against the photograph's,
and how much of the transparent background changed. `eval` writes these and one picture.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..fields.stylization import one_style
from ..losses.style import object_style_distance, painting_grams
from ..render.views import render_image_field
from .pictures import image_grid, with_caption
from .stylization import color_statistics_distance


def area_resized(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Channels-last [H, W, C] resized by area averaging."""
    return F.interpolate(image.permute(2, 0, 1)[None], size=(height, width), mode="area")[0].permute(1, 2, 0)


def style_match(image: torch.Tensor, photo: torch.Tensor, opacity: torch.Tensor, painting: torch.Tensor, extractor) -> dict:
    """The Gram distance over the object (`opacity` [H, W]) and the colour distance of the object's
    pixels (opacity over 1/2) to `painting`, for the stylized `image` and the `photo` (both [H, W, 3],
    the losses' size), and how far each fell."""
    targets = painting_grams(painting, extractor)
    on_object = opacity > 0.5
    gram = [object_style_distance(x, opacity, targets, extractor) for x in (photo, image)]
    colour = [color_statistics_distance([x], [on_object], painting) for x in (photo, image)]
    return {"style_distance_before": gram[0], "style_distance_after": gram[1], "gram_fall": 1.0 - gram[1] / gram[0],
            "color_distance_before": colour[0], "color_distance_after": colour[1], "color_fall": 1.0 - colour[1] / colour[0]}


def background_change(image: torch.Tensor, before: torch.Tensor, opacity: torch.Tensor) -> float | None:
    """The mean absolute change from `before` where the photograph is transparent (None where it has
    no such place)."""
    background = opacity < 0.01
    if not bool(background.any()):
        return None
    return float((image - before).abs().mean(-1)[background].mean())


@torch.no_grad()
def evaluate_stylized_image(trained, paintings: list[torch.Tensor], extractor) -> tuple[dict, np.ndarray]:
    """Per style, `style_match` at the losses' size and `background_change` at the photograph's size
    from the content field's picture (what the stylization changed, not the fit's own error); and a
    picture: the photograph and each style's result, the paintings above, the figures below."""
    photo, opacity = trained.data.image, trained.data.image_alpha[..., 0]
    height, width = photo.shape[:2]
    size = trained.config["stylize"].get("size", 192)
    scale = size / max(height, width)
    small_width, small_height = max(8, round(width * scale)), max(8, round(height * scale))
    small_photo = area_resized(photo, small_width, small_height)
    small_opacity = area_resized(opacity[..., None], small_width, small_height)[..., 0]
    names = [style["name"] for style in trained.config["styles"]]
    fitted = render_image_field(trained.model.field.content, width, height).clamp(0, 1)
    results, images = [], []
    for index, painting in enumerate(paintings):
        trained.model.set_style(one_style(index, len(paintings)))
        field = trained.model.field
        match = style_match(render_image_field(field, small_width, small_height).clamp(0, 1), small_photo, small_opacity, painting, extractor)
        image = render_image_field(field, width, height).clamp(0, 1)
        results.append({"style": index, "name": names[index], **match, "background_change": background_change(image, fitted, opacity)})
        images.append(image)
    picture = _picture(photo, images, paintings, names, results)
    return {"split": "image", "size": size, "styles": results}, picture


PICTURE_HEIGHT = 320  # each tile's height in the picture, so the figures written under it stay legible


def _tile(image: torch.Tensor) -> np.ndarray:
    """An image [H, W, 3] in [0, 1] as uint8, `PICTURE_HEIGHT` high."""
    from PIL import Image

    h, w = image.shape[:2]
    pixels = Image.fromarray((image.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8))
    return np.asarray(pixels.resize((max(1, round(w * PICTURE_HEIGHT / h)), PICTURE_HEIGHT), Image.Resampling.LANCZOS))


def _picture(photo: torch.Tensor, images: list[torch.Tensor], paintings: list[torch.Tensor], names: list[str], results: list[dict]) -> np.ndarray:
    photo_tile = _tile(photo)
    tiles = [np.full_like(photo_tile, 255), *map(_tile, paintings), photo_tile, *map(_tile, images)]
    labels = ["", *names, "the photograph", *(f"{name}, stylized" for name in names)]
    grid = image_grid(tiles, labels, columns=1 + len(images))
    lines = []
    for m in results:
        kept = "" if m["background_change"] is None else f", background changed {m['background_change']:.4f}"
        lines.append(f"{m['name']}: over the object, Gram fall {m['gram_fall']:.0%}, "
                     f"colour distance {m['color_distance_before']:.3g} -> {m['color_distance_after']:.3g}{kept}")
    return with_caption(grid, lines)
