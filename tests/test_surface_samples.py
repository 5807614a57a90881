"""The kept surface samples of a view, less each ray's faintest (`SurfaceSamples.without_faint`)."""

from __future__ import annotations

import torch

from ins_core.render.surface_samples import SurfaceSamples


def _samples(weights_per_ray: list[list[float]]) -> SurfaceSamples:
    """Samples of rays with these weights, in ray order, each at a position that tells it apart."""
    ray = torch.tensor([r for r, weights in enumerate(weights_per_ray) for _ in weights])
    weight = torch.tensor([w for weights in weights_per_ray for w in weights])
    count = len(weight)
    position = torch.arange(count, dtype=torch.float32)[:, None].repeat(1, 3)
    opacity = torch.tensor([sum(weights) for weights in weights_per_ray])
    return SurfaceSamples(ray, weight, position, torch.rand(count, 4), torch.zeros(count, 3), None, opacity)


def test_each_ray_drops_its_faintest_samples_up_to_the_budget():
    samples = _samples([[0.001, 0.5, 0.002, 0.3, 0.0005], [0.9], [0.0019, 0.002], [], [0.0035, 0.001, 0.6]])
    kept = samples.without_faint(0.004)
    by_ray = [[round(w, 6) for w in kept.weight[kept.ray == r].tolist()] for r in range(samples.n_rays)]
    # the faintest first, while their sum stays within the budget; a ray with nothing but faint ones goes empty
    assert by_ray == [[0.5, 0.3], [0.9], [], [], [0.0035, 0.6]]
    assert torch.equal(kept.opacity, samples.opacity)  # the background's share stays the ray's
    assert torch.all(kept.ray[1:] >= kept.ray[:-1])  # still in ray order, as rays_slice needs
    assert torch.equal(kept.position[:, 0], torch.tensor([1.0, 3.0, 5.0, 8.0, 10.0]))  # each sample keeps its own fields
    dropped = torch.zeros(samples.n_rays).index_add(0, samples.ray, samples.weight) - torch.zeros(samples.n_rays).index_add(0, kept.ray, kept.weight)
    assert float(dropped.max()) <= 0.004 + 1e-7


def test_pixels_stay_within_the_budget_of_the_full_sum():
    torch.manual_seed(0)
    rays, per_ray = 300, 40
    raw = torch.rand(rays, per_ray) ** 8  # many faint samples, a few strong ones
    weights = (raw / raw.sum(1, keepdim=True) * torch.rand(rays, 1)).tolist()
    samples = _samples(weights)
    colours = torch.rand(len(samples.weight), 3)
    kept = samples.without_faint(1 / 255)
    kept_colours = colours[torch.isin(samples.position[:, 0], kept.position[:, 0])]
    background = torch.tensor([1.0, 1.0, 1.0])
    difference = (samples.composite(colours, background) - kept.composite(kept_colours, background)).abs()
    assert float(difference.max()) <= 1 / 255
    assert len(kept.weight) < 0.6 * len(samples.weight)  # and most of the faint ones are gone
    # the surface point is the mean over the weights kept, so dropping faint samples does not pull it to the origin
    lone = _samples([[0.001, 0.9, 0.002]]).without_faint(1 / 255)
    assert torch.allclose(lone.surface_points(), torch.tensor([[1.0, 1.0, 1.0]]))


def test_no_budget_keeps_every_sample():
    samples = _samples([[0.001, 0.5], [0.0001]])
    assert samples.without_faint(0.0) is samples
