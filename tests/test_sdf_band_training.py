"""SDF training draws the reference picture with gradients and colour only in the surface band."""

from __future__ import annotations

import math

import torch

from ins_core.data.cameras import Intrinsics, image_pixels, look_at, rays_from_pixels
from ins_core.render.sdf_renderer import render_sdf_rays, render_sdf_rays_in_band
from ins_core.train.scene_models import SdfModel


def _sharp_sphere() -> SdfModel:
    torch.manual_seed(0)
    model = SdfModel(torch.tensor([[-0.6] * 3, [0.6] * 3]), {"n_levels": 4, "log2_table_size": 10, "max_resolution": 32}, n_samples=48)
    with torch.no_grad():
        model.field.variance.fill_(0.45)  # s = e^4.5, about 90: the end of a training run
    return model.train()


def _rays(size: int = 16):
    c2w = look_at(torch.tensor([1.6, 0.4, 0.7]), torch.zeros(3))
    return rays_from_pixels(image_pixels(size, size), c2w, Intrinsics.from_fov(math.radians(45), size, size).as_tensor())


def test_the_band_draws_the_reference_picture_from_a_fraction_of_the_full_passes(monkeypatch):
    model = _sharp_sphere()
    origins, directions = _rays()
    background = torch.ones(origins.shape[0], 3)
    reference = render_sdf_rays(model.field, origins, directions, model.n_samples, background, jitter=False)
    full_rows = []
    own = model.field.sdf_with_gradient
    monkeypatch.setattr(model.field, "sdf_with_gradient", lambda x, **k: full_rows.append(x.shape[0]) or own(x, **k))
    band = render_sdf_rays_in_band(model.field, origins, directions, model.n_samples, background, jitter=False)
    assert reference.opacity.max() > 0.9  # the sphere is in view
    mse = float(((band.rgb - reference.rgb) ** 2).mean().detach())
    assert mse < 1e-6 and float((band.opacity - reference.opacity).abs().max().detach()) < 1e-3
    samples = origins.shape[0] * (model.n_samples + 1)
    assert 0 < sum(full_rows) < 0.4 * samples  # the band, its neighbours and a tenth of the rest
    assert 0 < int(band.inside_box.sum()) <= sum(full_rows)  # the eikonal term sees evaluated points only


def test_training_through_the_band_reaches_the_fields_parameters():
    model = _sharp_sphere()
    origins, directions = _rays(8)
    rgba = torch.cat([torch.full((origins.shape[0], 3), 0.3), torch.ones(origins.shape[0], 1)], dim=-1)
    loss = model.training_loss(origins, directions, rgba, torch.ones(origins.shape[0], 3))
    loss.total.backward()
    # (The hash-grid part of the SDF MLP's first layer starts at zero, so the table has no gradient yet.)
    for name in ("sdf_mlp.0.weight", "sdf_mlp.2.weight", "color_mlp.0.weight", "variance"):
        grad = dict(model.field.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
