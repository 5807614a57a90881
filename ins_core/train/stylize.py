"""INS stylization: train the SIM and AM on top of a frozen content run.

Two ways to show the loss network the scene (`StylizeSettings.mode`):

- "view" (the default): each step takes one whole training view for one style (round robin over
  the K styles, one-hot embedding). The content geometry is kept exactly (the AM's density stays
  the content's), so a view is a fixed blend of surface samples that are found once and kept
  (`render/surface_samples.py`); only the style and colour heads run per step. The image loss
  sees the whole view at one stroke scale; views larger than a chunk of rays are back-propagated
  with deferred back-propagation (`deferred.py`), so memory stays that of one chunk.
- "patch": INS's sampling-stride patches, rendered with autograd, with the self-distilled
  geometry term keeping the stylized density near the teacher's.

Both minimise

    style_weight * Gram loss (relu1_2, relu2_2, relu3_3, relu4_3; over the object's pixels in view mode)
  + nnfm_weight * NNFM (relu3_x, ARF's nearest-neighbour feature matching: sharper strokes)
  + content_weight * content loss (relu2_2, against the photograph, recoloured to the style)
  [+ geometry_weight * L1(student raw density, teacher raw density) at the same samples, patch mode]
  + tv_weight * total variation of the view as the loss network sees it (view mode; without it the
    style loss paints pixel-sized speckle, which no two views agree on)
  [+ palette_weight * the painting's colour range the object lacks, view mode]
  [+ consistency_weight * squared difference from a neighbouring training view's last render at
    the same surface points (`losses/consistency.py`), view mode]

With colour transfer (on by default), the photographs' colours are mapped to each painting's mean
and covariance, and the field's output carries the same affine map per style, so stylization
starts in the painting's palette and the strokes are learned on top (ARF's pre-transfer).
Gram and content losses are divided by the size of their targets (relative errors), so the same
weights work with any backbone. Defaults were chosen by measurement on lego (see the README).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, field as dataclass_field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.dataset import load_cameras
from ..data.styles import keep_style_copies, kept_style, load_style_image
from ..device import resolve_device
from ..errors import InputError
from ..fields.stylization import StylizationConfig
from ..losses.backbone import Backbone, resolve_backbone
from ..losses.loss_precision import emulated_bfloat16_note
from .checkpoint import load_checkpoint
from .fit import RunSession, data_path, load_run_data
from .runs import RunDir
from .scene_models import StylizedModel, build_model
from .style_objective import StyleObjective
from .stylize_settings import StylizeSettings
from .trainer import Trainer


@dataclass
class StylizeRequest:
    run: Path
    styles: list[Path]
    out: Path
    device: str = "auto"
    settings: dict = dataclass_field(default_factory=dict)
    vgg_weights: str | None = None
    cache_dir: str | None = None
    allow_download: bool = False
    force: bool = False
    seed: int = 0


def _copy_styles(styles: list[Path], out: Path, working_size: int) -> tuple[list[dict], list[np.ndarray]]:
    """Load and check each style, keep a copy in RUN/styles so the run does not need the user's files."""
    images = [load_style_image(path, working_size, enlarge=True) for path in styles]  # a small painting too: its strokes at the size asked for
    return keep_style_copies(images, styles, out), [style.pixels for style in images]


class StylizeSession(RunSession):
    def __init__(self, run: RunDir, config: dict, device: torch.device, backbone: Backbone, style_pixels: list[np.ndarray], content_state: dict | None):
        super().__init__(run, config, device)
        torch.manual_seed(config["seed"])
        self.data = load_run_data(config, device, run.root)
        aabb = torch.tensor(config["aabb"], dtype=torch.float32).view(2, 3)
        model_settings = config["model"]
        if content_state is not None:  # a new run: start from the trained content model
            content = build_model(model_settings["content_kind"], aabb, model_settings["content"])
            content.load_state_dict(content_state)
            self.model = StylizedModel(content, StylizationConfig(**model_settings["stylization"])).to(device)
        else:
            self.model = build_model("stylized", aabb, model_settings).to(device)
        config["stylize"].setdefault("loss_precision", "float32")  # runs from before the setting computed in float32
        config["stylize"].setdefault("style_detail", "full")  # and matched the painting at its own detail
        config["stylize"].setdefault("palette_search_steps", 0)  # and took ARF's palette map as it was
        config["stylize"].setdefault("palette_spread", 1.0)  # in full
        config["stylize"].setdefault("palette_distribution", False)  # and searched the map by the Gram loss alone
        config["stylize"].setdefault("palette_consistency", False)  # not weighing how much it made views differ
        config["stylize"].setdefault("grid_color_path", False)  # with no grid colour path
        config["stylize"].setdefault("grid_lr_scale", 1.0)  # and one learning rate
        settings = StylizeSettings(**config["stylize"])
        if not settings.tune_color_mlp:
            self.model.field.color_mlp.requires_grad_(False)
        self.objective = StyleObjective(self.model, backbone, style_pixels, self.data.train, settings, device)
        config["stylize"]["style_detail"] = settings.style_detail  # "auto" as it resolved for these views
        self.trainer = Trainer(self.model, self.objective.batch, settings.lr, config["steps"], loss_fn=self.objective.loss,
                               lr_scales={"field.sim.position_encoding.": settings.grid_lr_scale})
        # Told what happens after the last step (the palette match takes a while without steps to count).
        self.note: Callable[[str], None] = lambda message: None
        self._resume()

    def finished(self) -> bool:
        """Trained, and the palette matched after training where colour transfer is on (until then a
        stopped or killed job is not done: the match runs when it resumes)."""
        return super().finished() and (self.config.get("recolored", False) or not self.objective.settings.color_transfer)

    def run_loop(self, time_budget=None, on_step=None, should_stop=None) -> str:
        self.finishing_s = 0.0
        outcome = super().run_loop(time_budget, on_step, should_stop)
        settings = self.objective.settings
        if self.step >= self.config["steps"] and settings.color_transfer and not self.config.get("recolored"):
            weighed = " and mix of colours" if settings.palette_distribution else ""
            weighed += ", steady from view to view" if settings.palette_consistency else ""
            searched = f", searching its map for the painting's strokes{weighed} ({settings.palette_search_steps} steps)" if settings.palette_search_steps else ""
            self.note(f"Matching each painting's palette{searched}")
            start = time.perf_counter()
            matched = self.objective.match_palettes(should_stop=should_stop)
            self.finishing_s = time.perf_counter() - start
            if not matched:
                return "stopped"
            self.config["recolored"] = True
            self.config["palette_spreads"] = self.objective.chosen_spreads  # what "auto" chose, per style
            self.save("done")
        return outcome


def start_stylize(request: StylizeRequest, log=None) -> StylizeSession:
    """Create (or resume) a stylized run from a trained NeRF or SDF run."""
    device = resolve_device(request.device)
    base = RunDir(request.run)
    base_config = base.require_trained()
    if base_config["kind"] not in ("nerf", "sdf"):
        raise InputError(f"Run '{request.run}' is a {base_config['kind']} run; stylize a trained NeRF or SDF run (python -m ins_core fit --field nerf ...).")
    if base_config.get("status") != "done":
        raise InputError(f"Run '{request.run}' has not finished training (step {base_config.get('step')} of {base_config.get('steps')}); run the same fit command again to finish it.")
    if not request.styles:
        raise InputError("No style image given; pass --style PATH (one or more).")
    cameras = load_cameras(data_path(base_config["data"], base.root), base_config["data"].get("resolution"))
    settings = StylizeSettings.for_device(device, view_side=max(cameras.width, cameras.height), **request.settings)
    out = RunDir(request.out)
    # Relative locations, so that a job folder moved as a whole still resumes.
    signature = {"kind": "stylized", "base_run": os.path.relpath(base.root.resolve(), out.root.resolve()), "styles": [Path(p).name for p in request.styles]}
    resume = out.prepare_new(signature, request.force)
    backbone = resolve_backbone(request.vgg_weights, request.cache_dir, request.allow_download, log)
    config = out.read_config() if resume else None
    precision = config["stylize"].get("loss_precision", "float32") if resume else settings.loss_precision
    if log is not None and (note := emulated_bfloat16_note(precision, device)):
        log(note)
    if resume:
        style_pixels = [kept_style(out.root, record) for record in config["styles"]]
        return StylizeSession(out, config, device, backbone, style_pixels, None)
    try:
        records, style_pixels = _copy_styles(request.styles, out.root, settings.style_size)
    except InputError:
        shutil.rmtree(out.root, ignore_errors=True)
        raise
    content_state = load_checkpoint(base.checkpoint_path, device)["trainer"]["model"]
    settings.grid_color_path = settings.grid_color_path and base_config["kind"] == "nerf"  # SDF fields have none: recorded as such
    config = {
        "kind": "stylized",
        "signature": signature,
        "base_run": str(base.root.resolve()),
        "content_kind": base_config["kind"],
        "data": {**base_config["data"], "relative": os.path.relpath(data_path(base_config["data"], base.root), out.root.resolve())},
        "aabb": base_config["aabb"],
        "device": request.device,
        "seed": request.seed,
        "model": {"content_kind": base_config["kind"], "content": base_config["model"], "stylization": StylizationConfig(
            n_styles=len(records), grid_color_path=settings.grid_color_path).to_dict()},
        "styles": records,
        "stylize": asdict(settings),
        "backbone": {"name": backbone.name, "pretrained": backbone.pretrained, "note": backbone.note},
        "vgg_weights": request.vgg_weights,
        "cache_dir": request.cache_dir,
        "steps": settings.steps,
        "step": 0,
        "status": "new",
    }
    session = StylizeSession(out, config, device, backbone, style_pixels, content_state)
    session.save("training")
    return session
