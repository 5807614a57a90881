"""Default training settings per field kind and device, and how a model is rebuilt from them."""

from __future__ import annotations

import torch

FIELD_KINDS = ("nerf", "sdf", "image")


def default_settings(kind: str, device: torch.device, width: int) -> dict:
    """Model and optimisation settings that fit the device: small and quick on a CPU."""
    gpu = device.type != "cpu"
    # The finest grid level needs about two cells per pixel across the object to resolve detail.
    max_resolution = int(min(2048, max(128, 2.5 * width)))
    if kind == "nerf":
        field = {"n_levels": 16 if gpu else 12, "log2_table_size": 19 if gpu else 17, "max_resolution": max_resolution}
        return {
            "model": {"field": field, "n_samples": 256 if gpu else 96, "grid_resolution": 128 if gpu else 64},
            "steps": 5000 if gpu else 2000,
            "batch_rays": 8192 if gpu else 1024,
            "lr": 1e-2,
        }
    if kind == "sdf":
        field = {"n_levels": 16 if gpu else 12, "log2_table_size": 19 if gpu else 16, "max_resolution": max_resolution}
        return {
            "model": {"field": field, "n_samples": 128 if gpu else 64, "eikonal_weight": 0.1, "mask_weight": 0.1},
            "steps": 5000 if gpu else 1500,
            "batch_rays": 4096 if gpu else 512,
            "lr": 5e-3,
        }
    if kind == "image":
        return {"model": {"field": {"backbone": "hashgrid"}}, "steps": 2000 if gpu else 600, "batch_rays": 65536 if gpu else 8192, "lr": 1e-2}
    raise ValueError(f"unknown field kind {kind!r}")
