"""An SDF field trained through the NeuS renderer learns a sphere from its views."""

import torch

from ins_core.data.dataset import load_dataset
from ins_core.train.batches import RayBatcher
from ins_core.train.scene_models import SdfModel
from ins_core.train.trainer import Trainer

from scenes import sphere_views, write_dataset

CENTRE, RADIUS = (0.1, 0.0, 0.05), 0.35


def test_sdf_zero_level_lands_on_the_sphere(tmp_path):
    torch.manual_seed(0)
    intr, views = sphere_views(24, 32, CENTRE, RADIUS)
    data = write_dataset(tmp_path / "sphere", intr, views, aabb=[[-0.6, -0.6, -0.6], [0.6, 0.6, 0.6]])
    train, _ = load_dataset(data)
    field = {"n_levels": 6, "log2_table_size": 12, "max_resolution": 64, "hidden_dim": 32}
    model = SdfModel(train.aabb, field, n_samples=48)
    # The initial sphere (radius 0.3, centred in the box) is deliberately not the target one.
    trainer = Trainer(model, RayBatcher(train, 256), lr=1e-2, total_steps=350)
    for _ in range(350):
        trainer.step()
    model.eval()
    directions = torch.nn.functional.normalize(torch.randn(500, 3), dim=-1)
    centre = torch.tensor(CENTRE)
    with torch.no_grad():
        on_surface = model.field.sdf(centre + RADIUS * directions)
        inside = model.field.sdf(centre + 0.5 * RADIUS * directions)
        outside = model.field.sdf(centre + 1.4 * RADIUS * directions)
    # Zero level within 10% of the radius, and the right sign on both sides.
    assert on_surface.abs().median() < 0.1 * RADIUS
    assert (inside < 0).float().mean() > 0.95
    assert (outside > 0).float().mean() > 0.95


def _parameter_gradient(model: SdfModel, loss: torch.Tensor) -> torch.Tensor:
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, model.parameters())])


def _bumpy_sphere_and_rays():
    """A sharp SDF like a trained one (a bumpy sphere with varied colour) and one view's rays."""
    from ins_core.data.cameras import Intrinsics, image_pixels, look_at, rays_from_pixels

    torch.manual_seed(0)
    aabb = torch.tensor([[-0.6, -0.6, -0.6], [0.6, 0.6, 0.6]])
    model = SdfModel(aabb, {"n_levels": 6, "log2_table_size": 12, "max_resolution": 64, "hidden_dim": 32}, n_samples=48)
    with torch.no_grad():
        model.field.position_encoding.table.uniform_(-0.5, 0.5)  # a bumpy sphere with varied colour
        model.field.variance.fill_(0.5)  # s = e^5, about 150: a trained surface's sharpness
    size = 24
    c2w = look_at(torch.tensor([1.2, -1.5, 0.8]), torch.zeros(3))
    origins, directions = rays_from_pixels(image_pixels(size, size), c2w, Intrinsics.from_fov(0.8, size, size).as_tensor())
    return model, origins, directions


def test_the_pruned_training_render_matches_the_reference_with_a_fraction_of_the_gradients():
    """Training renders take the SDF's (second-order) gradient only where NeuS's opacity is not
    saturated or an interval carries colour: on a sharp surface the same picture and the same
    parameter gradient as the reference, from a minority of the samples."""
    from ins_core.render.sdf_renderer import render_sdf_rays

    model, origins, directions = _bumpy_sphere_and_rays()
    target = torch.rand(origins.shape[0], 4)
    renders, gradients = [], []
    for prune in (False, True):
        torch.manual_seed(1)  # the same jitter
        out = render_sdf_rays(model.field, origins, directions, model.n_samples, torch.ones(3), jitter=True, prune=prune)
        loss = (out.rgb - target[:, :3]).pow(2).mean() + (out.opacity - target[:, 3]).pow(2).mean()
        renders.append(out)
        gradients.append(_parameter_gradient(model, loss))
    reference, pruned = renders
    assert reference.opacity.max() > 0.9 and reference.opacity.min() < 0.1  # rays that hit and rays that miss
    assert (pruned.rgb - reference.rgb).abs().max() < 2e-3
    assert (pruned.opacity - reference.opacity).abs().max() < 1e-5
    # Without the unsaturated band (only the coloured intervals' ends) the cosine is 0.99995 and the
    # largest difference 1.4 % of the largest gradient; with it 1.0 and 0.16 %.
    assert torch.nn.functional.cosine_similarity(gradients[0], gradients[1], dim=0) > 0.99999
    assert (gradients[0] - gradients[1]).abs().max() < 0.005 * gradients[0].abs().max()
    assert 0 < pruned.has_gradient.float().mean() < 0.3


def test_the_eikonal_estimate_from_a_few_samples_a_ray_has_the_whole_terms_mean():
    """A CPU step estimates the eikonal term over every in-box sample from 16 random ones a ray:
    over many draws the estimate must come to the whole term (not, say, favour the near samples)."""
    from ins_core.render.sdf_renderer import render_sdf_rays
    from ins_core.train.scene_models import EIKONAL_SAMPLES_PER_RAY, eikonal_sample_rows

    model, origins, directions = _bumpy_sphere_and_rays()
    out = render_sdf_rays(model.field, origins, directions, model.n_samples, torch.ones(3), jitter=True, prune=True)
    points = out.points.reshape(-1, 3)
    term = (model.field.sdf_with_gradient(points, create_graph=False)[2].norm(dim=-1).detach() - 1.0) ** 2  # per sample
    whole = term[out.inside_box.reshape(-1)].mean()
    assert 0.2 < out.inside_box.float().mean() < 0.9  # samples on both sides of the box's walls
    torch.manual_seed(2)
    draws = [eikonal_sample_rows(out.inside_box, EIKONAL_SAMPLES_PER_RAY) for _ in range(200)]
    assert all(out.inside_box.reshape(-1)[rows].all() for rows in draws)
    estimates = torch.stack([term[rows].mean() for rows in draws])
    # The draws' mean is within 0.04 % (a draw's spread 0.6 %); a ray's first or middle 16 samples
    # alone are 4.6 % and 5.0 % off.
    assert (estimates.mean() - whole).abs() < 0.005 * whole
