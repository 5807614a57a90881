"""Image metrics: PSNR by hand, SSIM identities, and SSIM against a plain numpy version."""

import math

import numpy as np
import pytest
import torch

from ins_core.errors import InputError
from ins_core.eval.metrics import mse, psnr, ssim


def _random_image(seed: int, shape=(24, 20, 3)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_psnr_matches_hand_computed_value():
    target = torch.zeros(4, 4, 3)
    pred = torch.full((4, 4, 3), 0.1)
    # MSE = 0.01 everywhere, so PSNR = -10 log10(0.01) = 20 dB.
    assert mse(pred, target) == pytest.approx(0.01)
    assert psnr(pred, target) == pytest.approx(20.0, abs=1e-5)


def test_psnr_of_half_error_image():
    target = torch.zeros(2, 2, 2, 3)
    pred = target.clone()
    pred[0] = 0.5  # half the pixels off by 0.5: MSE = 0.125
    assert psnr(pred, target) == pytest.approx(-10.0 * math.log10(0.125), abs=1e-5)


def test_psnr_of_identical_images_is_infinite():
    image = _random_image(0)
    assert psnr(image, image) == math.inf


def test_ssim_of_identical_images_is_one():
    image = _random_image(1)
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-6)
    assert ssim(image[None].repeat(2, 1, 1, 1), image[None].repeat(2, 1, 1, 1)) == pytest.approx(1.0, abs=1e-6)


def test_ssim_decreases_with_noise():
    image = _random_image(2, (32, 32, 3))
    generator = torch.Generator().manual_seed(3)
    scores = []
    for level in (0.02, 0.1, 0.3):
        noisy = (image + level * torch.randn(image.shape, generator=generator)).clamp(0, 1)
        scores.append(ssim(noisy, image))
    assert 1.0 > scores[0] > scores[1] > scores[2]


def _numpy_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM written out window by window, independently of the convolution in the library."""
    coords = np.arange(11) - 5.0
    g = np.exp(-(coords**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    height, width, channels = x.shape
    for c in range(channels):
        for i in range(height - 10):
            for j in range(width - 10):
                a = x[i : i + 11, j : j + 11, c]
                b = y[i : i + 11, j : j + 11, c]
                mu_a, mu_b = (window * a).sum(), (window * b).sum()
                var_a = (window * (a - mu_a) ** 2).sum()
                var_b = (window * (b - mu_b) ** 2).sum()
                cov = (window * (a - mu_a) * (b - mu_b)).sum()
                values.append(
                    ((2 * mu_a * mu_b + c1) * (2 * cov + c2))
                    / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
                )
    return float(np.mean(values))


def test_ssim_matches_numpy_reference():
    rng = np.random.default_rng(4)
    x = rng.random((15, 14, 3))
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)
    expected = _numpy_ssim(x, y)
    assert ssim(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(expected, abs=1e-10)
    # float32 inputs agree to float32 precision.
    assert ssim(torch.from_numpy(x).float(), torch.from_numpy(y).float()) == pytest.approx(expected, abs=1e-5)


def test_mismatched_shapes_are_input_errors():
    with pytest.raises(InputError, match="shape"):
        psnr(torch.zeros(4, 4, 3), torch.zeros(4, 5, 3))
    with pytest.raises(InputError, match="at least 11x11"):
        ssim(torch.zeros(8, 8, 3), torch.zeros(8, 8, 3))
