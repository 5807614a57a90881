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


class TwoWeights(nn.Module):
    """Two weights pulled towards 1; `fast.w` is the one a learning-rate scale names."""

    def __init__(self):
        super().__init__()
        self.fast = nn.Module()
        self.fast.w = nn.Parameter(torch.tensor([3.0]))
        self.slow = nn.Parameter(torch.tensor([3.0]))

    def training_loss(self):
        loss = (self.fast.w - 1).pow(2).sum() + (self.slow - 1).pow(2).sum()
        return LossTerms(loss, loss.detach())

    def maintain(self, step):
        return None


def _moved(model: TwoWeights) -> tuple[float, float]:
    return 3.0 - model.fast.w.item(), 3.0 - model.slow.item()


def test_parameters_named_in_lr_scales_learn_that_many_times_faster_and_resume_so():
    model = TwoWeights()
    trainer = Trainer(model, dict, lr=0.01, total_steps=100, lr_scales={"fast.": 10.0})
    trainer.step()
    fast, slow = _moved(model)  # Adam's first step moves each weight by its learning rate
    assert fast == pytest.approx(0.1, rel=1e-3) and slow == pytest.approx(0.01, rel=1e-3)
    resumed = Trainer(TwoWeights(), dict, lr=0.01, total_steps=100, lr_scales={"fast.": 10.0})
    resumed.load_state_dict(trainer.state_dict())
    before = _moved(resumed.model)
    resumed.step()
    after = _moved(resumed.model)
    assert after[0] - before[0] > 5 * (after[1] - before[1]) > 0


def test_a_checkpoint_from_before_the_learning_rate_scales_resumes_at_one_rate():
    trainer = Trainer(TwoWeights(), dict, lr=0.01, total_steps=100)
    state = trainer.state_dict()
    assert [len(group["params"]) for group in state["optimizer"]["param_groups"]] == [2]  # no scales: one group, as before
    del state["optimizer"]["param_groups"][0]["lr_scale"]  # what such a checkpoint holds
    resumed = Trainer(TwoWeights(), dict, lr=0.01, total_steps=100)
    resumed.load_state_dict(state)
    resumed.step()
    fast, slow = _moved(resumed.model)
    assert fast == pytest.approx(0.01, rel=1e-3) and slow == pytest.approx(0.01, rel=1e-3)
