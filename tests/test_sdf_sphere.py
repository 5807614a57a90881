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
