"""Volume compositing against closed forms."""

import math

import pytest
import torch

from ins_core.render.compositing import alpha_to_weights, composite, density_to_alpha, neus_alpha


def test_constant_density_slab_matches_beer_lambert():
    # Density sigma on [a, b] along the ray, nothing elsewhere; fine midpoint samples.
    sigma, a, b, n = 1.7, 1.0, 2.0, 4000
    edges = torch.linspace(0.0, 3.0, n + 1)
    t = (0.5 * (edges[1:] + edges[:-1]))[None]
    deltas = (edges[1:] - edges[:-1])[None]
    density = torch.where((t >= a) & (t <= b), torch.full_like(t, sigma), torch.zeros_like(t))
    alpha = density_to_alpha(density, deltas)
    rgb = torch.tensor([0.2, 0.4, 0.6]).expand(1, n, 3)
    out = composite(alpha, rgb, t, background=torch.tensor([[1.0, 1.0, 1.0]]))
    opacity = 1 - math.exp(-sigma * (b - a))
    # Expected depth: integral of t * sigma * exp(-sigma (t - a)) over [a, b].
    expected_depth = (a + 1 / sigma) - (b + 1 / sigma) * math.exp(-sigma * (b - a))
    assert out.opacity.item() == pytest.approx(opacity, abs=1e-3)
    assert out.depth.item() == pytest.approx(expected_depth, abs=1e-3)
    expected_rgb = torch.tensor([0.2, 0.4, 0.6]) * opacity + (1 - opacity)
    assert torch.allclose(out.rgb[0], expected_rgb, atol=1e-3)


def test_single_opaque_sample_takes_everything():
    alpha = torch.tensor([[0.0, 0.0, 1.0, 0.3, 0.9]])
    rgb = torch.rand(1, 5, 3)
    t = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    out = composite(alpha, rgb, t, background=torch.tensor([[0.5, 0.5, 0.5]]))
    assert torch.allclose(out.weights, torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]]), atol=1e-6)
    assert torch.allclose(out.rgb, rgb[:, 2], atol=1e-6)
    assert out.depth.item() == pytest.approx(3.0, abs=1e-5)
    assert out.opacity.item() == pytest.approx(1.0, abs=1e-6)


def test_weights_are_transmittance_times_alpha():
    alpha = torch.tensor([[0.5, 0.5, 0.5]])
    assert torch.allclose(alpha_to_weights(alpha), torch.tensor([[0.5, 0.25, 0.125]]), atol=1e-6)


def test_empty_ray_shows_the_background():
    out = composite(torch.zeros(2, 4), torch.rand(2, 4, 3), torch.rand(2, 4), background=torch.tensor([[0.1, 0.2, 0.3]]))
    assert torch.allclose(out.rgb, torch.tensor([[0.1, 0.2, 0.3]]).expand(2, 3))
    assert torch.allclose(out.opacity, torch.zeros(2))


def test_neus_alpha_is_opaque_where_the_ray_enters_a_sharp_surface():
    sdf = torch.tensor([[0.3, 0.1, -0.1, -0.3]])
    alpha = neus_alpha(sdf, torch.tensor(1000.0))
    assert alpha[0, 1].item() == pytest.approx(1.0, abs=1e-3)  # the crossing interval
    assert alpha[0, 0].item() < 1e-3  # in front of the surface
    exit_alpha = neus_alpha(torch.tensor([[-0.3, 0.3]]), torch.tensor(1000.0))
    assert exit_alpha.item() == 0.0  # leaving a surface adds nothing
