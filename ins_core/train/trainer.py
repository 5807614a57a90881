"""The optimisation loop shared by every model: Adam, learning-rate decay, NaN recovery.

One call of `step()` is one optimiser step; the CLI, the worker and the benchmarks drive the loop
themselves so that each can show progress, check for cancellation or pause the clock to evaluate.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import InputError


class TrainingDiverged(RuntimeError):
    """The loss stayed non-finite after stepping back and lowering the learning rate several times."""


@dataclass
class StepResult:
    step: int
    loss: float
    psnr: float
    extra: dict


def psnr_from_mse(mse: float) -> float:
    return -10.0 * math.log10(max(mse, 1e-10))


class Trainer:
    """Adam over a model, with exponential learning-rate decay to `final_lr_fraction` at `total_steps`."""

    max_recoveries = 4
    snapshot_every = 100

    def __init__(self, model: nn.Module, batches: Callable[[], dict], lr: float, total_steps: int, final_lr_fraction: float = 0.1,
                 loss_fn: Callable[..., "object"] | None = None, lr_scales: dict[str, float] | None = None):
        """`loss_fn(**batch)` defaults to `model.training_loss`; only parameters that need gradients are
        optimised. `lr_scales`: the parameters whose names start with a key learn at that many times
        the learning rate (one group per scale; none: one group, as runs have always had)."""
        self.model = model
        self.batches = batches
        self.loss_fn = loss_fn or model.training_loss
        self.total_steps = total_steps
        self.base_lr = lr
        self.lr_scale = 1.0  # lowered by NaN recovery
        self.final_lr_fraction = final_lr_fraction
        # eps as in instant-ngp: hash table entries that are rarely touched still move.
        self.optimizer = torch.optim.Adam(_scaled_groups(model, lr_scales or {}), lr=lr, betas=(0.9, 0.99), eps=1e-15)
        self.step_index = 0
        self.recoveries = 0
        self._snapshot = None

    def current_lr(self) -> float:
        progress = min(self.step_index / max(self.total_steps, 1), 1.0)
        return self.base_lr * self.lr_scale * self.final_lr_fraction**progress

    def step(self) -> StepResult:
        if self._snapshot is None or self.step_index % self.snapshot_every == 0:
            self._take_snapshot()
        self.model.train()
        self.model.maintain(self.step_index)
        for group in self.optimizer.param_groups:
            group["lr"] = self.current_lr() * group.get("lr_scale", 1.0)  # checkpoints from before the scales: none
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.loss_fn(**self.batches())
        if not torch.isfinite(terms.total):
            self._recover()
            return StepResult(self.step_index, float("nan"), float("nan"), {"recovered": True})
        if not terms.backpropagated:
            terms.total.backward()
        self.optimizer.step()
        self.step_index += 1
        mse = float(terms.rgb_mse.detach())
        extra = {key: float(value) for key, value in terms.extra.items()}
        return StepResult(self.step_index, float(terms.total.detach()), psnr_from_mse(mse), extra)

    def _take_snapshot(self) -> None:
        self._snapshot = (copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.optimizer.state_dict()), self.step_index)

    def _recover(self) -> None:
        """Step back to the last good state and halve the learning rate."""
        self.recoveries += 1
        if self.recoveries > self.max_recoveries:
            raise TrainingDiverged(f"the loss became NaN/inf {self.recoveries} times even after lowering the learning rate to {self.current_lr():.2e}")
        model_state, optimizer_state, step = self._snapshot
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optimizer_state)
        self.step_index = step
        self.lr_scale *= 0.5

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step_index,
            "lr_scale": self.lr_scale,
            "recoveries": self.recoveries,
        }

    def load_state_dict(self, state: dict) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as error:
            raise InputError(f"The checkpoint does not match this run's model ({str(error).splitlines()[0]}); train again with --force.") from None
        self.step_index = int(state["step"])
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.recoveries = int(state.get("recoveries", 0))


def _scaled_groups(model: nn.Module, lr_scales: dict[str, float]) -> list[dict]:
    """The trainable parameters in one Adam group per learning-rate scale (`Trainer`'s `lr_scales`)."""
    groups: dict[float, list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            scale = next((value for prefix, value in lr_scales.items() if name.startswith(prefix)), 1.0)
            groups.setdefault(scale, []).append(parameter)
    return [{"params": params, "lr_scale": scale} for scale, params in groups.items()]
