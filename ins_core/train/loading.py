"""Open a trained run for rendering, evaluation or export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..device import resolve_device
from .checkpoint import load_checkpoint
from .fit import LoadedData, load_run_data
from .runs import RunDir
from .scene_models import build_model


@dataclass
class TrainedRun:
    run: RunDir
    config: dict
    model: torch.nn.Module
    data: LoadedData
    device: torch.device

    @property
    def kind(self) -> str:
        return self.config["kind"]


def open_run(path: str | Path, device: str = "auto", load_data: bool = True) -> TrainedRun:
    run = RunDir(path)
    config = run.require_trained()
    torch_device = resolve_device(device)
    aabb = torch.tensor(config["aabb"], dtype=torch.float32).view(2, 3) if config.get("aabb") else None
    model = build_model(config["kind"], aabb, config["model"]).to(torch_device)
    state = load_checkpoint(run.checkpoint_path, torch_device)
    model.load_state_dict(state["trainer"]["model"])
    model.eval()
    data = load_run_data(config, torch_device, run.root) if load_data else LoadedData()
    return TrainedRun(run, config, model, data, torch_device)
