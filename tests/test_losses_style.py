"""Style / content / NNFM / TV losses, colour transfer, style targets and geometry consistency."""

import math

import numpy as np
import pytest
import torch

from ins_core.losses.geometry import geometry_consistency
from ins_core.losses.style import (
    GRAM_LAYERS,
    NNFM_LAYERS,
    StyleTarget,
    StyleTargets,
    color_statistics,
    color_transfer,
    color_transfer_matrix,
    content_loss,
    gram_matrix,
    moment_match,
    partial_spread,
    nearest_neighbours,
    nnfm_loss,
    object_style_distance,
    object_style_distances,
    painting_grams,
    palette_shortfall,
    principal_colours,
    relative_content_loss,
    style_grams,
    style_loss,
    style_statistics_distance,
    total_variation,
)
from ins_core.losses.vgg import FeatureExtractor, features_from_weights
from ins_core.losses.vgg_offline import build_offline_vgg16
from ins_core.losses.vgg_weights import BUNDLED_WEIGHTS, load_vgg_file


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return FeatureExtractor(build_offline_vgg16())


def _grid(size: int):
    coords = torch.linspace(0.0, 1.0, size)
    return torch.meshgrid(coords, coords, indexing="ij")


def _stripes_style(size: int = 64) -> torch.Tensor:
    """A procedural style image [1, 3, H, W]: colourful diagonal stripes with a slow colour wave."""
    y, x = _grid(size)
    return torch.stack([
        0.5 + 0.5 * torch.sin(40 * (x + y)),
        0.5 + 0.5 * torch.sin(40 * (x + y) + 2.0),
        0.2 + 0.3 * torch.cos(25 * x),
    ])[None].clamp(0, 1)  # fmt: skip


def _blobs_image(size: int = 64) -> torch.Tensor:
    y, x = _grid(size)
    blob = torch.exp(-((x - 0.4) ** 2 + (y - 0.6) ** 2) / 0.05)
    return torch.stack([0.3 + 0.5 * blob, 0.6 - 0.3 * blob, 0.4 + 0.1 * x])[None]


def test_gram_matrix_by_hand():
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # C=2, H=1, W=2
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4.0  # F F^T / (C H W)
    torch.testing.assert_close(gram_matrix(features), expected[None])
    batch = torch.randn(3, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    grams = gram_matrix(batch)
    assert grams.shape == (3, 4, 4)
    torch.testing.assert_close(grams[1], batch[1].reshape(4, 30) @ batch[1].reshape(4, 30).T / 120)


def test_style_loss_zero_for_identical_and_positive_otherwise(extractor):
    style = _stripes_style(32)
    target = style_grams(extractor(style, GRAM_LAYERS))
    assert float(style_loss(extractor(style, GRAM_LAYERS), target)) == pytest.approx(0.0, abs=1e-12)
    other = _blobs_image(32)
    assert float(style_loss(extractor(other, GRAM_LAYERS), target)) > 1e-8
    assert style_statistics_distance(style[0].permute(1, 2, 0).numpy(), style[0].permute(1, 2, 0), extractor) == pytest.approx(0.0, abs=1e-12)
    assert style_statistics_distance(other[0].permute(1, 2, 0), style[0].permute(1, 2, 0), extractor) > 1e-8


def test_the_object_style_distance_is_the_sum_of_its_layers_and_ignores_what_the_mask_leaves_out(extractor):
    style = _stripes_style(64)[0].permute(1, 2, 0)
    targets = painting_grams(style, extractor)
    everywhere = torch.ones(64, 64)
    same = object_style_distances(style, everywhere, targets, extractor)
    assert list(same) == list(GRAM_LAYERS) and max(same.values()) == pytest.approx(0.0, abs=1e-9)
    blobs = _blobs_image(64)[0].permute(1, 2, 0)
    layers = object_style_distances(blobs, everywhere, targets, extractor, size=48)
    assert min(layers.values()) > 0
    assert object_style_distance(blobs, everywhere, targets, extractor, size=48) == pytest.approx(sum(layers.values()), rel=1e-6)
    # the stripes on the left half, white on the right: over the left half only, the Grams are
    # nearly the stripes' own; over the whole image the white pulls them far off
    half = torch.zeros(64, 64)
    half[:, :32] = 1
    pasted = torch.where(half[..., None] > 0, style, torch.ones_like(style))
    assert object_style_distance(pasted, half, targets, extractor) < 0.2 * object_style_distance(pasted, everywhere, targets, extractor)


def test_content_loss_and_total_variation_by_hand():
    a = {"relu2_2": torch.zeros(1, 2, 3, 3)}
    b = {"relu2_2": torch.full((1, 2, 3, 3), 0.5)}
    assert float(content_loss(a, a)) == 0.0
    assert float(content_loss(a, b)) == pytest.approx(0.25)
    assert float(total_variation(torch.full((1, 3, 4, 4), 0.3))) == pytest.approx(0.0)
    step = torch.zeros(1, 3, 4, 4)
    step[..., 2:] = 1.0  # one vertical edge: 1 of the 3 horizontal neighbour pairs per row differs by 1
    assert float(total_variation(step)) == pytest.approx(1.0 / 3.0)


def test_relative_losses_count_every_layer_alike_whatever_its_size_by_hand():
    # Two layers whose Grams differ 10^4 in size, each rendered at twice the style's Gram: the
    # relative error is 1 in each (MSE(2t, t) / mean(t^2)), so the mean over layers is 1.
    target = StyleTarget({"small": torch.full((1, 2, 2), 0.01), "large": torch.full((1, 2, 2), 100.0)})
    doubled = {name: 2 * gram.expand(3, 2, 2) for name, gram in target.grams.items()}
    assert float(target.relative_gram_loss(doubled)) == pytest.approx(1.0, rel=1e-5)
    assert float(target.relative_gram_loss({name: gram.clone() for name, gram in target.grams.items()})) == 0.0
    # Only the small layer wrong: it still counts half of the loss.
    one_wrong = {"small": 2 * target.grams["small"], "large": target.grams["large"].clone()}
    assert float(target.relative_gram_loss(one_wrong)) == pytest.approx(0.5, rel=1e-5)
    photo = torch.full((1, 2, 3, 3), 2.0)
    assert float(relative_content_loss(photo * 1.5, photo)) == pytest.approx(0.25)  # (3 - 2)^2 / 2^2


def test_optimising_an_image_lowers_the_style_loss_with_the_offline_backbone(extractor):
    style = _stripes_style(64)
    target = StyleTarget.compute(style, extractor, GRAM_LAYERS, None)
    image = (0.5 + 0.1 * torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    image.requires_grad_(True)
    optimiser = torch.optim.Adam([image], lr=0.03)
    with torch.no_grad():
        start = float(style_loss(extractor(image, GRAM_LAYERS), target.grams))
    for _ in range(40):
        loss = style_loss(extractor(image, GRAM_LAYERS), target.grams)
        optimiser.zero_grad()
        (loss / start).backward()
        optimiser.step()
        with torch.no_grad():
            image.clamp_(0, 1)
    with torch.no_grad():
        end = float(style_loss(extractor(image, GRAM_LAYERS), target.grams))
    assert end < 0.5 * start, (start, end)


def test_nnfm_is_zero_for_the_style_itself_and_chunking_changes_nothing(extractor):
    style = _stripes_style(32)
    style_feats = extractor(style, NNFM_LAYERS)
    assert float(nnfm_loss(style_feats, style_feats)) == pytest.approx(0.0, abs=1e-5)
    render = _blobs_image(32).requires_grad_(True)
    render_feats = extractor(render, NNFM_LAYERS)
    whole = nnfm_loss(render_feats, style_feats)
    chunked = nnfm_loss(render_feats, style_feats, chunk_elements=100)
    assert 0.0 < float(whole.detach()) <= 2.0
    torch.testing.assert_close(whole, chunked)
    whole.backward()
    assert float(render.grad.abs().sum()) > 0


def test_nnfm_searched_in_bfloat16_takes_nearly_the_best_neighbours_and_gives_nearly_the_same_gradient():
    """Stylization searches NNFM's neighbours in bfloat16 when the loss network runs in it: on the
    real ImageNet features each location's pick must be within rounding of its best match."""
    assert BUNDLED_WEIGHTS.is_file(), "run `python -m ins_core weights` (the set-up does) first"
    weights, preprocessing = load_vgg_file(BUNDLED_WEIGHTS)
    extractor = FeatureExtractor(features_from_weights(weights), preprocessing=preprocessing)
    style_feats = extractor(_stripes_style(64), NNFM_LAYERS, torch.bfloat16)
    results = {}
    for dtype in (None, torch.bfloat16):
        render = _blobs_image(64).requires_grad_(True)
        render_feats = extractor(render, NNFM_LAYERS, torch.bfloat16)
        loss = nnfm_loss(render_feats, style_feats, search_dtype=dtype)
        loss.backward()
        results[dtype] = (float(loss.detach()), render.grad.flatten())
    (full, full_grad), (half, half_grad) = results[None], results[torch.bfloat16]
    assert full <= half <= full + 1e-3, (full, half)
    assert float(torch.nn.functional.cosine_similarity(full_grad, half_grad, dim=0)) > 0.99
    render_unit, style_unit = _unit_rows(render_feats), _unit_rows(style_feats)
    similarity = render_unit @ style_unit.T
    for dtype in (None, torch.bfloat16):  # the search nnfm_loss makes, chunked as in stylization
        picks = nearest_neighbours(render_unit, style_unit, chunk_elements=1 << 12, search_dtype=dtype)
        gap = similarity.max(dim=1).values - similarity.gather(1, picks[:, None])[:, 0]
        assert float(gap.max()) < (1e-6 if dtype is None else 0.01), dtype


def _unit_rows(features: dict) -> torch.Tensor:
    """[locations, channels] of NNFM's layers side by side, each row of unit length."""
    rows = torch.cat([features[layer].detach()[0].flatten(1) for layer in NNFM_LAYERS]).T
    return torch.nn.functional.normalize(rows, dim=1)


def test_nnfm_by_hand_on_tiny_features():
    # One render vector (1, 0) against style vectors (0, 1) and (1, 1): best cosine 1/sqrt(2).
    render = {"a": torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)}
    style = {"a": torch.tensor([[0.0, 1.0], [1.0, 1.0]]).T.reshape(1, 2, 1, 2)}
    assert float(nnfm_loss(render, style, layers=("a",))) == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)


def _stats(pixels: np.ndarray):
    flat = pixels.reshape(-1, 3).astype(np.float64)
    return flat.mean(0), np.cov(flat.T, bias=True)


def test_color_transfer_matches_mean_and_covariance():
    rng = np.random.default_rng(0)
    images = np.clip(0.5 + 0.08 * rng.standard_normal((2, 24, 24, 3)), 0, 1).astype(np.float32)
    mix = np.array([[1.0, 0.6, 0.2], [0.0, 0.8, 0.3], [0.0, 0.0, 0.5]])
    style = np.clip(np.array([0.35, 0.45, 0.6]) + 0.07 * rng.standard_normal((40, 40, 3)) @ mix, 0, 1)
    out = color_transfer(images, style)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == images.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    mean_out, cov_out = _stats(out)
    mean_style, cov_style = _stats(style)
    mean_in, cov_in = _stats(images)
    assert np.abs(mean_out - mean_style).max() < 5e-3
    assert np.abs(cov_out - cov_style).max() < 0.03 * np.abs(cov_style).max()
    assert np.abs(cov_in - cov_style).max() > 0.3 * np.abs(cov_style).max()  # there was something to fix
    torch_out = color_transfer(torch.from_numpy(images), torch.from_numpy(style))
    assert isinstance(torch_out, torch.Tensor) and torch_out.dtype == torch.float32
    np.testing.assert_allclose(torch_out.numpy(), out, atol=1e-5)


def test_color_transfer_statistics_ignore_masked_out_pixels():
    rng = np.random.default_rng(1)
    images = np.clip(0.4 + 0.1 * rng.standard_normal((1, 16, 16, 3)), 0, 1)
    mask = np.ones((1, 16, 16), dtype=bool)
    mask[:, :, :8] = False
    with_bg = images.copy()
    with_bg[~mask] = 1.0  # white background must not skew the statistics
    style = np.clip(0.6 + 0.05 * rng.standard_normal((16, 16, 3)), 0, 1)
    np.testing.assert_allclose(
        color_transfer_matrix(with_bg, style, mask).numpy(), color_transfer_matrix(images, style, mask).numpy(), atol=1e-12
    )


@pytest.mark.parametrize("angles, mirror", [((0.0, 0.0, 0.0), 1.0), ((0.9, -0.4, 1.7), 1.0), ((0.3, 0.2, -0.5), -1.0)])
def test_every_map_of_the_moment_match_gives_the_paintings_colour_mean_and_covariance(angles, mirror):
    rng = np.random.default_rng(3)
    images = np.clip(0.5 + 0.1 * rng.standard_normal((2, 16, 16, 3)) * [1.0, 0.5, 0.2], 0, 1)
    style = np.clip(0.4 + 0.2 * rng.standard_normal((16, 16, 3)) * [0.3, 1.0, 0.6], 0, 1)
    match = moment_match(images, style)
    a, b, c = angles
    skew = torch.tensor([[0.0, a, b], [-a, 0.0, c], [-b, -c, 0.0]], dtype=torch.float64)
    q = torch.linalg.matrix_exp(skew) @ torch.diag(torch.tensor([1.0, 1.0, mirror], dtype=torch.float64))
    affine = match.matrix(q)
    mapped = torch.from_numpy(images.reshape(-1, 3)) @ affine[:, :3].T + affine[:, 3]
    for got, expected in zip(color_statistics(mapped), color_statistics(torch.from_numpy(style.reshape(-1, 3)))):
        torch.testing.assert_close(got, expected, atol=1e-9, rtol=0)
    if angles == (0.0, 0.0, 0.0):  # no rotation: ARF's colour transfer
        torch.testing.assert_close(affine, color_transfer_matrix(images, style), atol=1e-12, rtol=0)


def test_a_capped_palette_map_stretches_colours_at_most_that_much_and_keeps_the_mean():
    rng = np.random.default_rng(2)
    images = np.clip(0.5 + 0.03 * rng.standard_normal((1, 16, 16, 3)), 0, 1)  # nearly flat: the full map stretches a lot
    style = np.clip(0.4 + 0.25 * rng.standard_normal((16, 16, 3)), 0, 1)
    full = color_transfer_matrix(images, style)
    capped = color_transfer_matrix(images, style, max_gain=1.25)
    assert torch.linalg.svdvals(full[:, :3]).max() > 4
    assert torch.linalg.svdvals(capped[:, :3]).max() == pytest.approx(1.25)
    mean_in = torch.from_numpy(images.reshape(-1, 3).mean(0))
    np.testing.assert_allclose((capped[:, :3] @ mean_in + capped[:, 3]).numpy(), style.reshape(-1, 3).mean(0), atol=1e-9)


@pytest.mark.parametrize("angles", [(0.0, 0.0, 0.0), (0.9, -0.4, 1.7)])
def test_a_partial_palette_spread_gives_the_paintings_mean_and_part_of_its_stretch_keeping_its_shrinks(angles):
    """Spread 0: colour differences turned as the map turns them, none stretched, the shrinks
    kept, the mean moved to the painting's; 1: the map itself; between, stretched part of the way
    (in log scale) and the colour covariance between the two."""
    rng = np.random.default_rng(4)
    # The field's red spread is wider than the painting's (the map shrinks it), the rest narrower.
    images = np.clip(0.5 + 0.05 * rng.standard_normal((1, 16, 16, 3)) * [4.0, 0.6, 0.3], 0, 1)
    style = np.clip(0.4 + 0.2 * rng.standard_normal((16, 16, 3)) * [0.4, 1.0, 0.7], 0, 1)
    match = moment_match(images, style)
    a, b, c = angles
    q = torch.linalg.matrix_exp(torch.tensor([[0.0, a, b], [-a, 0.0, c], [-b, -c, 0.0]], dtype=torch.float64))
    full = match.matrix(q)
    pixels = torch.from_numpy(images.reshape(-1, 3))
    style_mean, style_cov = color_statistics(torch.from_numpy(style.reshape(-1, 3)))
    gap = {}
    for spread in (0.0, 0.5, 1.0):
        affine = partial_spread(full, spread, match.content_mean)
        mean, cov = color_statistics(pixels @ affine[:, :3].T + affine[:, 3])
        torch.testing.assert_close(mean, style_mean, atol=1e-9, rtol=0)
        gap[spread] = float((cov - style_cov).norm())
    torch.testing.assert_close(partial_spread(full, 1.0, match.content_mean), full, atol=1e-12, rtol=0)
    gains = torch.linalg.svdvals(full[:, :3])
    assert gains.max() > 2 and gains.min() < 0.8  # the map stretches and shrinks, so the spreads differ
    u, _, vh = torch.linalg.svd(full[:, :3])
    for spread, expected in ((0.0, gains.clamp(max=1.0)), (0.5, torch.where(gains > 1, gains.sqrt(), gains))):
        # each of the map's colour axes goes where the map sends it, scaled by the new gain
        matrix = partial_spread(full, spread, match.content_mean)[:, :3]
        torch.testing.assert_close(matrix @ vh.T, u * expected, atol=1e-12, rtol=0)
    assert gap[1.0] < 1e-9 < 0.1 * gap[0.0] and gap[1.0] < gap[0.5] < gap[0.0]


def test_the_palette_shortfall_by_hand_and_trained_on_it_reaches_the_paintings_range_without_moving_the_mean():
    torch.manual_seed(0)
    painting = torch.rand(500, 3) * torch.tensor([0.2, 0.6, 0.9])
    variances, axes = principal_colours(painting)
    _, cov = color_statistics(painting)
    assert torch.allclose(cov, torch.cov(painting.T, correction=0), atol=1e-6)
    assert torch.allclose(axes @ torch.diag(variances) @ axes.T, cov, atol=1e-6)
    assert float(palette_shortfall(painting, variances, axes)) == pytest.approx(0.0, abs=1e-10)
    # one flat colour: every axis misses all of its variance
    flat = painting.mean(0).expand(10, 3)
    expected = float((variances / variances.sum()).pow(2).sum())
    assert float(palette_shortfall(flat, variances, axes)) == pytest.approx(expected, rel=1e-5)
    # the painting at half its contrast misses 3/4 of each variance; at twice its contrast nothing
    centre = painting.mean(0)
    assert float(palette_shortfall(centre + 0.5 * (painting - centre), variances, axes)) == pytest.approx(0.75**2 * expected, rel=1e-4)
    assert float(palette_shortfall(centre + 2.0 * (painting - centre), variances, axes)) == 0.0
    pixels = (0.5 + 0.01 * torch.rand(300, 3)).requires_grad_()
    start_mean = pixels.detach().mean(0)
    before = float(palette_shortfall(pixels.detach(), variances, axes))
    optimizer = torch.optim.Adam([pixels], lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        palette_shortfall(pixels, variances, axes).backward()
        optimizer.step()
    reached = (color_statistics(pixels.detach())[1] @ axes * axes).sum(0)
    assert float(palette_shortfall(pixels.detach(), variances, axes)) < 1e-3 * before
    assert (reached > 0.95 * variances).all()
    assert torch.allclose(pixels.detach().mean(0), start_mean, atol=0.02)  # the mean is left to the match after training
    # a view that misses the object: no pixels, no term (and no NaN reaching the optimiser)
    empty = torch.zeros(0, 3, requires_grad=True)
    missed = palette_shortfall(empty, variances, axes)
    missed.backward()
    assert float(missed.detach()) == 0.0 and torch.isfinite(empty.grad).all()
    # a painting of one flat colour has no range to reach: zero, not NaN
    assert float(palette_shortfall(painting, *principal_colours(torch.full((50, 3), 0.5)))) == 0.0


def test_style_targets_are_computed_once_per_style(extractor):
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = extractor
            self.mean = extractor.mean

        def forward(self, image, layers=None):
            calls.append(image.shape)
            return self.inner(image, layers)

    targets = StyleTargets(Counting(), [_stripes_style(32)[0], _blobs_image(32)], nnfm_layers=NNFM_LAYERS)
    first = targets[0]
    assert targets[0] is first and len(calls) == 1
    assert set(first.grams) == set(GRAM_LAYERS) and first.grams["relu4_3"].shape == (1, 512, 512)
    assert set(first.nnfm_features) == set(NNFM_LAYERS)
    targets[1]
    targets[1]
    assert len(calls) == 2 and len(targets) == 2
    with pytest.raises(IndexError):
        targets[2]


def test_geometry_consistency_by_hand():
    teacher = torch.tensor([[0.0, 1.0, -2.0], [3.0, 0.5, 0.0]])
    assert float(geometry_consistency(teacher.clone(), teacher)) == 0.0
    student = teacher + torch.tensor([[1.0, -1.0, 0.5], [0.0, 2.0, -0.5]])
    assert float(geometry_consistency(student, teacher)) == pytest.approx((1 + 1 + 0.5 + 0 + 2 + 0.5) / 6)
    mask = torch.tensor([[True, False, False], [False, True, False]])
    assert float(geometry_consistency(student, teacher, mask)) == pytest.approx((1 + 2) / 2)
    assert float(geometry_consistency(student, teacher, torch.zeros(2, 3))) == 0.0
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    geometry_consistency(student, teacher).backward()
    assert student.grad is not None and teacher.grad is None  # the teacher is frozen
    with pytest.raises(ValueError, match="same sample points"):
        geometry_consistency(student, teacher[:, :2])
