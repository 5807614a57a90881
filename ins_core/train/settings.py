"""Default training settings per field kind and device, and how a model is rebuilt from them."""

from __future__ import annotations

import torch

FIELD_KINDS = ("nerf", "sdf", "image")
SMALL_VIEWS = 128  # pixels on the longer side: up to this, a CPU NeRF takes the small, fast hash grid


# How strongly a view's known depth (Blender captures write it) teaches where surfaces are: the
# depth term's weight against the colour's squared error (docs/results.md, "Depth from Blender").
DEFAULT_DEPTH_WEIGHT = 0.1


def default_settings(kind: str, device: torch.device, width: int) -> dict:
    """Model and optimisation settings that fit the device: small and quick on a CPU."""
    gpu = device.type != "cpu"
    # The finest grid level needs about two cells per pixel across the object to resolve detail.
    max_resolution = int(min(2048, max(128, 2.5 * width)))
    if kind == "nerf":
        if gpu:
            levels, table = 16, 19
        elif width <= SMALL_VIEWS:
            # On a CPU a step writes the whole table's gradient and Adam update, so a small table is a
            # fast step: lego at 100 px reached 30.1-30.4 dB in 60 s with 8 levels of 2^15 against
            # 25.7-26.2 dB with 12 of 2^17 (23-24 steps/s against 9-10), the demo scene at 128 px 36.0 dB against 35.5
            # in 1500 steps (49 s against 136 s). At 256 px the larger table keeps 0.8 dB more.
            levels, table = 8, 15
        else:
            levels, table = 12, 17
        field = {"n_levels": levels, "log2_table_size": table, "max_resolution": max_resolution}
        return {
            "model": {"field": field, "n_samples": 256 if gpu else 96, "grid_resolution": 128 if gpu else 64,
                      "depth_weight": DEFAULT_DEPTH_WEIGHT},
            "steps": 5000 if gpu else 2000,
            "batch_rays": 8192 if gpu else 1024,
            # A CPU run is a few thousand steps: a higher rate that decays less learns more in them
            # (lego 100 px, 60 s: 29.7 dB against 26.2 with 1e-2 decaying to a tenth; 256 px,
            # 2000 steps: the same 27.9 dB).
            "lr": 1e-2 if gpu else 3e-2,
            "final_lr_fraction": 0.1 if gpu else 0.3,
        }
    if kind == "sdf":
        field = {"n_levels": 16 if gpu else 12, "log2_table_size": 19 if gpu else 16, "max_resolution": max_resolution}
        return {
            "model": {"field": field, "n_samples": 128 if gpu else 64, "eikonal_weight": 0.1, "mask_weight": 0.1,
                      "depth_weight": DEFAULT_DEPTH_WEIGHT},
            # A CPU step takes the SDF's gradient graph only where it moves the picture (2.6-2.7x faster,
            # render/sdf_renderer.py), so a CPU run takes more of them: the demo scene at 128 px
            # reached 30.1-30.6 dB held out in 2500 steps (460-538 s) against 29.9-30.3 dB in 1500 before (790-810 s).
            "steps": 5000 if gpu else 2500,
            "batch_rays": 4096 if gpu else 512,
            "lr": 5e-3,
        }
    if kind == "image":
        return {"model": {"field": {"backbone": "hashgrid"}}, "steps": 2000 if gpu else 600, "batch_rays": 65536 if gpu else 8192, "lr": 1e-2}
    raise ValueError(f"unknown field kind {kind!r}")
