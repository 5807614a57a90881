"""The training loop steps back and lowers the learning rate when the loss goes NaN."""

import pytest
import torch
from torch import nn

from ins_core.train.scene_models import LossTerms
from ins_core.train.trainer import Trainer, TrainingDiverged


class Quadratic(nn.Module):
    """A tiny model whose loss becomes NaN on the steps listed in `poisoned`."""

    def __init__(self, poisoned):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([3.0]))
        self.poisoned = set(poisoned)
        self.calls = 0

    def training_loss(self, target):
        self.calls += 1
        loss = (self.w - target).pow(2).sum()
        if self.calls in self.poisoned:
            loss = loss * float("nan")
        return LossTerms(loss, loss.detach())

    def maintain(self, step):
        return None


def test_nan_loss_steps_back_and_halves_the_learning_rate():
    model = Quadratic(poisoned={30})
    trainer = Trainer(model, lambda: {"target": torch.tensor([1.0])}, lr=0.2, total_steps=100)
    results = [trainer.step() for _ in range(60)]
    recovered = [r for r in results if r.extra.get("recovered")]
    assert len(recovered) == 1
    assert trainer.lr_scale == 0.5 and trainer.recoveries == 1
    assert trainer.step_index < 60  # the poisoned step was taken back to the last snapshot
    assert torch.isfinite(model.w).all() and abs(model.w.item() - 1.0) < 0.5


def test_a_loss_that_stays_nan_is_reported():
    model = Quadratic(poisoned=range(1, 1000))
    trainer = Trainer(model, lambda: {"target": torch.tensor([1.0])}, lr=0.05, total_steps=100)
    with pytest.raises(TrainingDiverged, match="NaN"):
        for _ in range(20):
            trainer.step()
