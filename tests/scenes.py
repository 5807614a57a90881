"""Small analytic scenes the tests render themselves (exact geometry, known answers)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ins_core.data.cameras import Intrinsics, image_pixels, look_at, rays_from_pixels


def sharp_sdf_sphere():
    """An SDF model at its initial sphere (radius about half its box), made sharp: edges a ray
    either hits or misses."""
    from ins_core.train.scene_models import SdfModel

    torch.manual_seed(0)
    aabb = torch.tensor([[-0.6, -0.6, -0.6], [0.6, 0.6, 0.6]])
    model = SdfModel(aabb, {"n_levels": 4, "log2_table_size": 10, "max_resolution": 32, "hidden_dim": 32}, n_samples=64).eval()
    with torch.no_grad():
        model.field.variance.fill_(0.6)
    return model


def sphere_views(n_views: int, resolution: int, centre=(0.1, 0.0, 0.05), radius: float = 0.35, distance: float = 2.2, seed: int = 0):
    """RGBA views of a shaded sphere from cameras spread around it (golden-angle spiral)."""
    intr = Intrinsics.from_fov(math.radians(45), resolution, resolution)
    centre_t = torch.tensor(centre)
    views = []
    for k in range(n_views):
        azimuth = k * math.pi * (3 - math.sqrt(5)) + seed
        elevation = math.asin(-0.8 + 1.6 * (k + 0.5) / n_views)
        eye = torch.tensor([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)]) * distance
        c2w = look_at(eye, torch.zeros(3))
        origins, dirs = rays_from_pixels(image_pixels(resolution, resolution), c2w, intr.as_tensor())
        oc = origins - centre_t
        b = (oc * dirs).sum(-1)
        disc = b * b - (oc * oc).sum(-1) + radius**2
        hit = disc > 0
        t = -b - torch.sqrt(disc.clamp_min(0))
        normal = torch.nn.functional.normalize(origins + t[:, None] * dirs - centre_t, dim=-1)
        shade = 0.35 + 0.65 * (normal @ torch.nn.functional.normalize(torch.tensor([0.4, -0.3, 0.9]), dim=0)).clamp_min(0)
        albedo = torch.stack([0.9 * torch.ones_like(shade), 0.5 + 0.4 * normal[:, 2], 0.2 + 0.2 * normal[:, 0]], -1)
        rgb = (albedo * shade[:, None]).clamp(0, 1) * hit[:, None]
        rgba = torch.cat([rgb, hit[:, None].float()], -1).view(resolution, resolution, 4)
        views.append((c2w, rgba))
    return intr, views


def write_dataset(root: Path, intr: Intrinsics, views, split_every: int = 0, aabb=None) -> Path:
    """NeRF-synthetic layout: train/ (and test/ when split_every > 0) with transforms files."""
    root.mkdir(parents=True, exist_ok=True)
    splits = {"train": [], "test": []}
    for index, (c2w, rgba) in enumerate(views):
        split = "test" if split_every and index % split_every == 0 else "train"
        folder = root / split
        folder.mkdir(exist_ok=True)
        name = f"r_{index}"
        Image.fromarray((rgba.numpy() * 255).round().astype(np.uint8)).save(folder / f"{name}.png")
        splits[split].append({"file_path": f"./{split}/{name}", "transform_matrix": c2w.tolist()})
    for split, frames in splits.items():
        if frames:
            data = {"camera_angle_x": 2 * math.atan(intr.width / (2 * intr.fx)), "frames": frames}
            if aabb is not None:
                data["aabb"] = aabb
            (root / f"transforms_{split}.json").write_text(json.dumps(data))
    return root
