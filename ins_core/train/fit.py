"""Reconstruction (pre-training): fit a NeRF, SDF or image field and keep it in a run directory.

`start_fit` creates or resumes a run and returns a `FitSession`; `FitSession.run` trains until the
step count or time budget is reached, or `should_stop()` says so, writing checkpoints atomically.
The CLI wraps it in a tqdm bar; the worker turns its callbacks into protocol events.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.dataset import PosedViews, load_dataset
from ..data.images import load_rgb, load_rgb_and_alpha
from ..device import resolve_device
from ..errors import InputError
from ..json_files import write_json_atomic
from .batches import PixelBatcher, RayBatcher
from .checkpoint import load_checkpoint, save_checkpoint
from .runs import RunDir
from .scene_models import build_model
from .settings import FIELD_KINDS, default_settings
from .trainer import StepResult, Trainer

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class FitRequest:
    data: Path
    kind: str
    out: Path
    device: str = "auto"
    resolution: int | None = None
    steps: int | None = None
    batch_rays: int | None = None
    holdout_every: int = 10
    holdout_names: list[str] | None = None
    seed: int = 0
    force: bool = False
    image_backbone: str = "hashgrid"
    depth_weight: float | None = None  # the depth term's weight (NeRF, SDF); None: the default
    # For benchmarks that compare settings: replaces the device's defaults (`TUNABLE` keys only).
    tuning: dict | None = None


# What `FitRequest.tuning` may replace: the optimiser's keys, and the field's grid.
TUNABLE = {"lr": (), "final_lr_fraction": (), "n_levels": ("model", "field"), "log2_table_size": ("model", "field"), "depth_weight": ("model",)}


@dataclass
class LoadedData:
    """What a run trains on: posed views (NeRF, SDF) or one image (image field)."""

    train: PosedViews | None = None
    test: PosedViews | None = None
    image: torch.Tensor | None = None  # [H, W, 3]
    image_alpha: torch.Tensor | None = None  # [H, W, 1]: where the image is opaque (all ones for a photograph)

    def aabb(self) -> torch.Tensor | None:
        return None if self.train is None else self.train.aabb


def data_path(data: dict, run_root: Path | None) -> Path:
    """Where the run's data is: relative to the run first (a job folder that was moved), else absolute."""
    if run_root is not None and data.get("relative"):
        candidate = (run_root / data["relative"]).resolve()
        if candidate.exists():
            return candidate
    return Path(data["path"])


def load_run_data(config: dict, device: torch.device, run_root: Path | None = None, with_depth: bool = False) -> LoadedData:
    """The data a run was (or will be) trained on, as recorded in its run.json; the views' depth
    only `with_depth` (a fit that weighs it; stylization and evaluation never read it)."""
    data = dict(config["data"])
    data["path"] = str(data_path(data, run_root))
    if config["kind"] in ("image", "stylized_image"):
        pixels, alpha = load_rgb_and_alpha(Path(data["path"]), "image to fit")
        if data.get("width"):
            pixels, alpha = (_resized(channels, data["width"], data["height"]) for channels in (pixels, alpha))
        return LoadedData(image=torch.from_numpy(np.ascontiguousarray(pixels)).to(device),
                          image_alpha=torch.from_numpy(np.ascontiguousarray(alpha)).to(device))
    names = set(data["holdout_names"]) if data.get("holdout_names") else None
    train, test = load_dataset(data["path"], data.get("resolution"), data.get("holdout_every", 10), names, with_depth)
    if config.get("aabb"):
        train.aabb = torch.tensor(config["aabb"], dtype=torch.float32).view(2, 3)
    return LoadedData(train=train.to(device), test=None if test is None else test.to(device))


def _resized(channels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Float channels [H, W, C] in [0, 1] resized as 8-bit images with area averaging (as fitted)."""
    from PIL import Image

    as_bytes = (channels * 255).round().astype(np.uint8)
    planes = [np.asarray(Image.fromarray(as_bytes[..., c]).resize((width, height), Image.Resampling.BOX)) for c in range(channels.shape[-1])]
    return np.stack(planes, axis=-1).astype(np.float32) / 255.0


def check_image_file(path: Path, option: str) -> None:
    """Refuse, naming the command-line `option` that gave it, a path that is not one image file."""
    if path.is_dir():
        raise InputError(f"'{path}' is a folder; {option} takes one image file (PNG or JPEG).")
    if not path.is_file():
        raise InputError(f"Image file '{path}' does not exist; check the path given to {option}.")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"'{path}' is not an image file ({', '.join(IMAGE_SUFFIXES)}); pass a PNG or JPEG with {option}.")


def _image_data_record(request: FitRequest) -> dict:
    path = request.data
    check_image_file(path, "--data")
    size = load_rgb(path, "image to fit").shape
    width = request.resolution or size[1]
    return {"path": str(path.resolve()), "width": width, "height": max(1, round(size[0] * width / size[1]))}


def _new_config(request: FitRequest, device: torch.device) -> dict:
    if request.kind not in FIELD_KINDS:
        raise InputError(f"Field '{request.kind}' is not known; use one of {', '.join(FIELD_KINDS)}.")
    if request.kind == "image":
        data = _image_data_record(request)
        width = data["width"]
    else:
        data = {"path": str(request.data.resolve()), "resolution": request.resolution, "holdout_every": request.holdout_every, "holdout_names": request.holdout_names}
        width = request.resolution or 800
    settings = default_settings(request.kind, device, width)
    if request.kind == "image":
        settings["model"]["field"]["backbone"] = request.image_backbone
        if request.image_backbone == "siren":
            settings["lr"] = 3e-4  # sine networks diverge at hash-grid learning rates
    for key, value in (request.tuning or {}).items():
        if key not in TUNABLE:
            raise ValueError(f"tuning key {key!r} is not one of {', '.join(TUNABLE)}")
        target = settings
        for part in TUNABLE[key]:
            target = target[part]
        target[key] = value
    if request.depth_weight is not None and request.kind != "image":
        if not (request.depth_weight >= 0 and math.isfinite(request.depth_weight)):
            raise InputError(f"--depth-weight must be 0 (ignore the views' depth) or a positive number, got {request.depth_weight}.")
        settings["model"]["depth_weight"] = float(request.depth_weight)
    for key in ("steps", "batch_rays"):
        value = getattr(request, key)
        if value is not None:
            if value <= 0:
                raise InputError(f"--{key.replace('_', '-')} must be a positive integer, got {value}.")
            settings[key] = value
    return {"kind": request.kind, "data": data, "device": request.device, "seed": request.seed, **settings, "aabb": None, "step": 0, "status": "new"}


def _fingerprint(path: Path) -> str:
    """SHA-256 of the file that defines the data (the transforms file, or the image itself), so a
    run recognises its data wherever the folders are moved."""
    from ..data.dataset import find_transforms

    source = path if path.is_file() else find_transforms(path)[0]
    return hashlib.sha256(source.read_bytes()).hexdigest()


def _signature(config: dict) -> dict:
    """What makes two fits the same run: the kind, the data's fingerprint and how it is used."""
    data = {key: value for key, value in config["data"].items() if key not in ("path", "relative")}
    return {"kind": config["kind"], "data": data}


class RunSession:
    """A run being trained: a trainer stepping a model, with checkpoints and a loss history.

    Subclasses build `self.model`, `self.trainer` and `self.data`, then call `_resume()`.
    """

    checkpoint_every = 500
    history_every = 10

    def __init__(self, run: RunDir, config: dict, device: torch.device):
        self.run = run
        self.config = config
        self.device = device
        self.history: list[dict] = []
        # Seconds the last run_loop spent after its last step (a stylization's palette match), which
        # a rate of steps per second must leave out.
        self.finishing_s = 0.0

    def _resume(self) -> None:
        if self.run.checkpoint_path.is_file():
            state = load_checkpoint(self.run.checkpoint_path, self.device)
            self.trainer.load_state_dict(state["trainer"])
            self.history = list(state.get("history", []))

    @property
    def step(self) -> int:
        return self.trainer.step_index

    def finished(self) -> bool:
        """Whether the run is done (saved as status "done"): trained to its step count."""
        return self.step >= self.config["steps"]

    def save(self, status: str) -> None:
        save_checkpoint(self.run.checkpoint_path, {"trainer": self.trainer.state_dict(), "history": self.history})
        self.config.update(step=self.step, status=status)
        self.run.write_config(self.config)
        write_json_atomic(self.run.history_path, self.history)

    def run_loop(self, time_budget: float | None = None, on_step: Callable[[StepResult, float], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> str:
        """Train to the configured step count; returns 'done', 'stopped' or 'time_budget'."""
        start = time.perf_counter()
        elapsed_before = self.history[-1]["time"] if self.history else 0.0
        outcome = "done"
        while self.step < self.config["steps"]:
            if should_stop is not None and should_stop():
                outcome = "stopped"
                break
            elapsed = time.perf_counter() - start
            if time_budget is not None and elapsed >= time_budget:
                outcome = "time_budget"
                break
            result = self.trainer.step()
            if result.step % self.history_every == 0:
                self.history.append({"step": result.step, "time": elapsed_before + time.perf_counter() - start, "loss": result.loss, "psnr": result.psnr, **result.extra})
            if on_step is not None:
                on_step(result, time.perf_counter() - start)
            if result.step % self.checkpoint_every == 0:
                self.save("training")
        self.save("done" if self.finished() else "training")
        return outcome


class FitSession(RunSession):
    """Reconstruction of a NeRF, SDF or image field."""

    def __init__(self, run: RunDir, config: dict, device: torch.device):
        super().__init__(run, config, device)
        torch.manual_seed(config["seed"])
        self.data = load_run_data(config, device, run.root, with_depth=config["model"].get("depth_weight", 0.0) > 0)
        aabb = self.data.aabb()
        if aabb is not None:
            config["aabb"] = aabb.flatten().tolist()
        self.model = build_model(config["kind"], aabb, config["model"]).to(device)
        if config["kind"] == "image":
            batches = PixelBatcher(self.data.image, config["batch_rays"])
        else:
            batches = RayBatcher(self.data.train, config["batch_rays"])
            if config["kind"] == "nerf":
                self._seed_occupancy()
        # Runs from before the setting decayed to a tenth.
        self.trainer = Trainer(self.model, batches, config["lr"], config["steps"], final_lr_fraction=config.get("final_lr_fraction", 0.1))
        self._resume()

    def _seed_occupancy(self) -> None:
        """Start the occupancy grid from the visual hull of the training masks."""
        from ..data.bounds import foreground_votes

        views = self.data.train
        alpha = views.images[..., 3].float().cpu() / 255.0
        c2w, intrinsics = views.c2w.cpu(), views.intrinsics.cpu()
        grid = self.model.grid
        cell = float(((grid.aabb[1] - grid.aabb[0]) / grid.resolution).max())
        pixels_per_cell = float(intrinsics[:, 0].max()) * cell / float(c2w[:, :3, 3].norm(dim=-1).min())
        dilation = max(1, int(np.ceil(pixels_per_cell)))
        grid.seed(lambda points: foreground_votes(points.cpu(), alpha, c2w, intrinsics, dilation=dilation) >= 0)


def start_fit(request: FitRequest) -> FitSession:
    """Create a new run, or resume the unfinished run with the same data in the same folder."""
    device = resolve_device(request.device)
    run = RunDir(request.out)
    config = _new_config(request, device)
    config["data"]["relative"] = os.path.relpath(config["data"]["path"], Path(request.out).resolve())
    config["data"]["fingerprint"] = _fingerprint(Path(config["data"]["path"]))
    config["signature"] = _signature(config)
    resume = run.prepare_new(config["signature"], request.force)
    if resume:
        previous = run.read_config()
        if request.steps is not None:
            previous["steps"] = max(request.steps, previous.get("step", 0))
        config = previous
    session = FitSession(run, config, device)
    if not resume:
        session.save("training")
    return session
