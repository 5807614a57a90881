"""Image quality metrics on float images in [0, 1], channels last ([H, W, C] or [N, H, W, C]).

All functions return plain Python floats so that results can go straight into JSON reports.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ins_core.errors import require

# Standard SSIM constants (Wang et al. 2004), for a data range of 1.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

ImageLike = torch.Tensor | np.ndarray


def _pair(pred: ImageLike, target: ImageLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images as float tensors of the same shape, on the prediction's device."""
    pred_t = torch.as_tensor(pred)
    target_t = torch.as_tensor(target, device=pred_t.device)
    require(
        pred_t.shape == target_t.shape,
        f"The prediction has shape {tuple(pred_t.shape)} but the target has shape "
        f"{tuple(target_t.shape)}; render at the target's resolution before comparing.",
    )
    # Half precision loses too much in the squared sums, so compute in at least float32.
    dtype = torch.promote_types(pred_t.dtype, torch.float32)
    return pred_t.to(dtype), target_t.to(dtype)


def mse(pred: ImageLike, target: ImageLike) -> float:
    """Mean squared error over every pixel and channel."""
    pred_t, target_t = _pair(pred, target)
    return float(torch.mean((pred_t - target_t) ** 2))


def psnr(pred: ImageLike, target: ImageLike) -> float:
    """Peak signal-to-noise ratio in dB for a data range of 1, from the MSE over everything.

    For a batch this is the PSNR of the pooled MSE; average per-image values yourself if the
    per-image mean is wanted. Identical images give `inf`.
    """
    error = mse(pred, target)
    return math.inf if error == 0.0 else -10.0 * math.log10(error)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 2D Gaussian window of shape [size, size], float64."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def _to_nchw(image: torch.Tensor) -> torch.Tensor:
    require(
        image.dim() in (3, 4),
        f"SSIM needs an image of shape [H, W, C] or [N, H, W, C], not {tuple(image.shape)}; "
        "reshape the input to one of those.",
    )
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    return batch.permute(0, 3, 1, 2)


def ssim(pred: ImageLike, target: ImageLike) -> float:
    """Structural similarity, averaged over all valid window positions, channels and images.

    Standard definition: 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, data
    range 1, each channel on its own, and 'valid' convolution (no padding) like the common
    reference implementations, so images must be at least 11 pixels on each side.
    """
    pred_t, target_t = _pair(pred, target)
    x, y = _to_nchw(pred_t), _to_nchw(target_t)
    height, width = x.shape[-2:]
    require(
        height >= SSIM_WINDOW and width >= SSIM_WINDOW,
        f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, not {height}x{width}; "
        "compare larger images.",
    )
    channels = x.shape[1]
    # One grouped convolution computes all five local statistics for every channel at once.
    stats = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    window = gaussian_window().to(device=x.device, dtype=x.dtype)
    kernel = window.expand(stats.shape[1], 1, SSIM_WINDOW, SSIM_WINDOW)
    mu_x, mu_y, e_xx, e_yy, e_xy = F.conv2d(stats, kernel, groups=stats.shape[1]).split(channels, dim=1)

    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y
    c1 = SSIM_K1**2
    c2 = SSIM_K2**2
    numerator = (2.0 * mu_x * mu_y + c1) * (2.0 * cov_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return float(torch.mean(numerator / denominator))
