"""INS stylization: train the SIM and AM on top of a frozen content run.

Each step renders a sampling-stride patch for one style (round robin over the K styles, one-hot
embedding), and minimises

    style_weight * Gram loss (relu1_2, relu2_2, relu3_3, relu4_3)
  + content_weight * content loss (relu2_2, against the photograph)
  + geometry_weight * L1(student raw density, teacher raw density) at the same samples
  [+ nnfm_weight * NNFM (relu3_x)] [+ tv_weight * total variation]

Gram and content losses are divided by the size of their targets (relative errors), so the same
weights work with the pretrained VGG and with the offline backbone, whose feature scales differ.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field as dataclass_field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.styles import load_style_image
from ..device import resolve_device
from ..errors import InputError
from ..fields.stylization import StylizationConfig
from ..losses.geometry import geometry_consistency
from ..losses.style import CONTENT_LAYER, GRAM_LAYERS, NNFM_LAYERS, StyleTargets, color_transfer_matrix, gram_matrix, nnfm_loss, total_variation
from ..losses.vgg import Backbone, resolve_backbone
from .checkpoint import load_checkpoint
from .fit import RunSession, data_path, load_run_data
from .patches import Patch, sample_patch
from .runs import RunDir
from .scene_models import LossTerms, StylizedModel, build_model
from .trainer import Trainer


@dataclass
class StylizeSettings:
    steps: int = 300
    patch: int = 32
    stride: int = 2
    lr: float = 5e-3
    style_weight: float = 1.0
    content_weight: float = 0.5
    geometry_weight: float = 0.1
    nnfm_weight: float = 0.0
    tv_weight: float = 0.0
    color_transfer: bool = False
    style_size: int = 256

    @classmethod
    def for_device(cls, device: torch.device, **overrides) -> "StylizeSettings":
        gpu = device.type != "cpu"
        base = cls(steps=1000, patch=128, style_size=512) if gpu else cls()
        for key, value in overrides.items():
            if value is not None:
                setattr(base, key, value)
        return base


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


def over_white(rgba: torch.Tensor) -> torch.Tensor:
    return rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])


def _chw(image: torch.Tensor) -> torch.Tensor:
    """[H, W, 3] -> [1, 3, H, W]"""
    return image.permute(2, 0, 1)[None]


class StyleObjective:
    """Patches to render and the losses that pull them towards the styles."""

    def __init__(self, model: StylizedModel, backbone: Backbone, styles: list[np.ndarray], views, settings: StylizeSettings, device: torch.device):
        self.model = model
        self.extractor = backbone.extractor.to(device)
        self.views = views
        self.settings = settings
        self.device = device
        style_tensors = [_chw(torch.from_numpy(s).to(device)) for s in styles]
        nnfm_layers = NNFM_LAYERS if settings.nnfm_weight > 0 else None
        self.targets = StyleTargets(self.extractor, style_tensors, GRAM_LAYERS, nnfm_layers)
        # Divide each layer's Gram error by the size of the style's Gram (relative error).
        self.gram_scale = [{layer: float(self.targets[k].grams[layer].pow(2).mean()) + 1e-12 for layer in GRAM_LAYERS} for k in range(len(styles))]
        self.color_maps = None
        if settings.color_transfer:
            photos = over_white(views.images.float() / 255.0)
            mask = views.images[..., 3] > 127
            self.color_maps = [color_transfer_matrix(photos.cpu(), torch.from_numpy(s), mask.cpu()).to(device).float() for s in styles]
        self.n_styles = len(styles)
        self.next_style = 0
        self.white = torch.ones(3, device=device)

    def batch(self) -> dict:
        style_index = self.next_style
        self.next_style = (self.next_style + 1) % self.n_styles
        return {"patch": sample_patch(self.views, self.settings.patch, self.settings.stride), "style_index": style_index}

    def content_target(self, patch: Patch, style_index: int) -> torch.Tensor:
        photo = over_white(patch.rgba)
        if self.color_maps is not None:
            matrix = self.color_maps[style_index]
            photo = (photo @ matrix[:, :3].T + matrix[:, 3]).clamp(0, 1)
        return photo

    def loss(self, patch: Patch, style_index: int) -> LossTerms:
        s = self.settings
        weights = torch.zeros(self.n_styles)
        weights[style_index] = 1.0
        self.model.set_style(weights)
        out = self.model.render(patch.origins, patch.directions, self.white.expand(patch.origins.shape[0], 3), jitter=True)
        render = out.rgb.view(patch.size, patch.size, 3)
        photo = self.content_target(patch, style_index)
        target = self.targets[style_index]
        layers = list(GRAM_LAYERS) + ([CONTENT_LAYER] if CONTENT_LAYER not in GRAM_LAYERS else []) + (list(NNFM_LAYERS) if s.nnfm_weight > 0 else [])
        feats = self.extractor(_chw(render), layers)
        with torch.no_grad():
            photo_feats = self.extractor(_chw(photo), [CONTENT_LAYER])[CONTENT_LAYER]
        style = sum(F.mse_loss(gram_matrix(feats[layer]), target.grams[layer].expand_as(gram_matrix(feats[layer]))) / self.gram_scale[style_index][layer] for layer in GRAM_LAYERS) / len(GRAM_LAYERS)
        content = F.mse_loss(feats[CONTENT_LAYER], photo_feats) / (photo_feats.pow(2).mean() + 1e-12)
        student = out.raw_density if self.model.content_kind == "nerf" else out.sdf.flatten()
        geometry = geometry_consistency(student, self.model.field.content_raw) if student.numel() else render.sum() * 0
        total = s.style_weight * style + s.content_weight * content + s.geometry_weight * geometry
        extra = {"style": style.detach(), "content": content.detach(), "geometry": geometry.detach()}
        if s.nnfm_weight > 0:
            nnfm = nnfm_loss(feats, target.nnfm_features)
            total = total + s.nnfm_weight * nnfm
            extra["nnfm"] = nnfm.detach()
        if s.tv_weight > 0:
            total = total + s.tv_weight * total_variation(_chw(render))
        return LossTerms(total, F.mse_loss(render, photo), extra)


def _copy_styles(styles: list[Path], out: Path, working_size: int) -> tuple[list[dict], list[np.ndarray]]:
    """Load and check each style, keep a copy in RUN/styles so the run does not need the user's files."""
    records, pixels = [], []
    (out / "styles").mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(styles):
        style = load_style_image(path, working_size)
        name = f"{index:02d}_{style.name}.png"
        Image.fromarray((style.pixels * 255).round().astype(np.uint8)).save(out / "styles" / name)
        records.append({"name": style.name, "file": f"styles/{name}", "source": str(Path(path).resolve()), "notes": style.notes})
        pixels.append(style.pixels)
    return records, pixels


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
        settings = StylizeSettings(**config["stylize"])
        self.objective = StyleObjective(self.model, backbone, style_pixels, self.data.train, settings, device)
        self.trainer = Trainer(self.model, self.objective.batch, settings.lr, config["steps"], loss_fn=self.objective.loss)
        self._resume()


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
    settings = StylizeSettings.for_device(device, **request.settings)
    out = RunDir(request.out)
    # Relative locations, so that a job folder moved as a whole still resumes.
    signature = {"kind": "stylized", "base_run": os.path.relpath(base.root.resolve(), out.root.resolve()), "styles": [Path(p).name for p in request.styles]}
    resume = out.prepare_new(signature, request.force)
    backbone = resolve_backbone(request.vgg_weights, request.cache_dir, request.allow_download, log)
    if resume:
        config = out.read_config()
        style_pixels = [np.asarray(Image.open(out.root / record["file"]).convert("RGB"), dtype=np.float32) / 255.0 for record in config["styles"]]
        return StylizeSession(out, config, device, backbone, style_pixels, None)
    try:
        records, style_pixels = _copy_styles(request.styles, out.root, settings.style_size)
    except InputError:
        shutil.rmtree(out.root, ignore_errors=True)
        raise
    content_state = load_checkpoint(base.checkpoint_path, device)["trainer"]["model"]
    config = {
        "kind": "stylized",
        "signature": signature,
        "base_run": str(base.root.resolve()),
        "content_kind": base_config["kind"],
        "data": {**base_config["data"], "relative": os.path.relpath(data_path(base_config["data"], base.root), out.root.resolve())},
        "aabb": base_config["aabb"],
        "device": request.device,
        "seed": request.seed,
        "model": {"content_kind": base_config["kind"], "content": base_config["model"], "stylization": StylizationConfig(n_styles=len(records)).to_dict()},
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
