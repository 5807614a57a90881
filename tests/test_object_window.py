"""The object's window: the part of a view a Gram loss over its object needs the loss network for."""

import torch

from ins_core.data.demo_scene import style_pixels
from ins_core.losses.backbone import resolve_backbone
from ins_core.losses.object_window import GRAIN, object_window, on_object_window
from ins_core.losses.style import GRAM_LAYERS, StyleTarget, masked_gram_matrix


def test_the_window_holds_the_object_and_its_margin_on_the_grain_and_inside_the_image():
    covered = torch.zeros(256, 200, dtype=torch.bool)
    covered[40:60, 100:120] = True
    rows, cols = object_window(covered, margin=32)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (8, 96, 64, 152)
    assert all(end % GRAIN == 0 for end in (rows.start, rows.stop, cols.start, cols.stop))
    covered[:, :] = False
    covered[250:, 190:] = True  # by the corner: the window stops at the image's edges
    rows, cols = object_window(covered, margin=32)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (216, 256, 152, 200)
    assert object_window(torch.zeros(30, 20, dtype=torch.bool), margin=32) == (slice(0, 30), slice(0, 20))


def test_the_gram_loss_over_the_object_is_the_whole_views_on_its_window():
    """A textured disc on white, through the real VGG-16: the loss over the disc from the window
    (under half the view) is the whole view's within 0.1 % (0.02 % here; a 16 px margin: 0.4 %,
    a window off the 8 px grain: 0.2-6 %)."""
    extractor = resolve_backbone(log=lambda m: None).extractor
    generator = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    mask = (((y - 150) ** 2 + (x - 110) ** 2) < 55**2).float()
    texture = torch.rand(3, 64, 64, generator=generator)
    texture = torch.nn.functional.interpolate(texture[None], size=(256, 256), mode="bilinear", align_corners=False)[0]
    image = (texture * mask + (1 - mask))[None]
    target = StyleTarget.compute(torch.from_numpy(style_pixels(128)).permute(2, 0, 1)[None].float(), extractor, GRAM_LAYERS, None)

    def loss(picture, covered):
        features = extractor(picture, list(GRAM_LAYERS))
        return float(target.relative_gram_loss({layer: masked_gram_matrix(features[layer], covered[None, None]) for layer in GRAM_LAYERS}))

    window, window_mask = on_object_window(image, mask)
    assert window.shape[-2] * window.shape[-1] < 0.5 * 256 * 256
    whole = loss(image, mask)
    assert abs(loss(window, window_mask) - whole) < 0.001 * whole
    assert on_object_window(image, mask, margin=None)[0] is image
