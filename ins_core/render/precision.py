"""Colours in bfloat16 where the hardware multiplies it natively (the fast renderer's colour MLPs).

The colour MLPs of a stylized NeRF (style module, amalgamate head, three colour-MLP passes) are
most of a frame's arithmetic. Under bf16 autocast they run about 3x faster on CPUs with AMX or
AVX512-BF16 (and on CUDA), and the pixels move by ~1e-3 (frames stay > 60 dB from float32).
Densities stay float32: a transmittance error would compound along the ray. CPUs without native
bf16 would emulate it slower than float32, so they keep float32.
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=None)
def native_bf16(device_type: str) -> bool:
    """Whether bf16 matrix products are faster than float32 on this kind of device."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        # Private probes (present in torch >= 2.1); without them, stay with float32.
        probes = (getattr(torch.cpu, "_is_amx_tile_supported", None), getattr(torch.cpu, "_is_avx512_bf16_supported", None))
        return any(probe is not None and probe() for probe in probes)
    return False


class BF16Color:
    """A radiance field whose `color` runs under bf16 autocast (float32 out); `density` unchanged."""

    def __init__(self, field):
        self.field = field
        self.aabb = field.aabb

    def density(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.field.density(x)

    def color(self, features: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        with torch.autocast(features.device.type, dtype=torch.bfloat16):
            return self.field.color(features, directions).float()


def with_bf16_color(field, device: torch.device):
    """`field` with bf16 colours where the device has native bf16, else `field` itself."""
    return BF16Color(field) if native_bf16(device.type) else field

