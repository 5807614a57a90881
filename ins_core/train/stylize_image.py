"""INS on an image field: `python -m ins_core stylize-image --content img.png --style a.jpg --out DIR`.

The content image is fitted by an image field (the CIM), then the style modules are trained on
whole-image renders with the Gram style loss and the relu2_2 content loss, then the painting's
palette is matched as `stylize` matches it; an image with transparency has its object stylized and
its background kept. The result is a field: `render --run DIR/stylized --width 2048` draws it at
any resolution.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.cameras import image_pixels
from ..data.styles import keep_style_copies, kept_style, load_style_image
from ..device import resolve_device
from ..errors import InputError
from ..fields.stylization import StylizationConfig, one_style
from ..losses.style import CONTENT_LAYER, GRAM_LAYERS, StyleTargets, gram_matrix, masked_gram_matrix, relative_content_loss
from ..losses.backbone import resolve_backbone
from ..losses.object_window import on_object_window
from ..losses.loss_precision import emulated_bfloat16_note, loss_network_dtype, resolved_loss_precision
from .checkpoint import load_checkpoint
from .fit import FitRequest, RunSession, check_image_file, load_run_data, start_fit
from .palette_match import MatchedPalette, PaletteSettings, SearchView, StylePalette, match_style_palettes
from .runs import RunDir
from .scene_models import LossTerms, build_model
from .trainer import Trainer


PAINTING_SIZE = 256  # the painting's longer side at stroke scale 1, against the losses' 192 px


@dataclass
class ImageStylizeSettings:
    steps: int = 300
    size: int = 192  # the longer side of the image the losses see
    # How big strokes are: the painting is read at PAINTING_SIZE * stroke_scale on its longer side,
    # and its features are the same size in pixels as the image's, so 2 paints strokes twice as big.
    stroke_scale: float = 1.0
    lr: float = 5e-3
    # The SIM's grid learns at this many times `lr`: on lego with starry night the style loss ended
    # at 0.154 instead of 0.165 and the Gram fall over the object at 83 % instead of 78 %
    # (docs/stylization.md). 1: runs from before.
    grid_lr_scale: float = 10.0
    style_weight: float = 1.0
    content_weight: float = 0.5
    # A content image with transparency (an object cut out): the style is matched over the object
    # alone (alpha-weighted Grams; the field changes each colour only as far as it is the object's),
    # and the pixels the object partly covers at the losses' size are held to the photograph's with
    # this weight, so no style is spent on the empty background or fringes the object.
    # 0: the whole image is stylized as one, transparency or not (runs from before).
    background_weight: float = 10.0
    # Each step sees every pixel at a random point of its cell, so the field learns the picture between
    # the points too and renders larger without noise; False: the pixel centres alone (runs from before).
    jitter_pixels: bool = True
    # After training, the palette match that `stylize` makes: the object's colours mapped to the
    # painting's mean and covariance, the map's turn and stretch chosen by the Gram loss
    # (`palette_match.py`, its defaults); False: none (runs from before).
    palette_match: bool = True
    # What the loss network computes in: "auto" (bfloat16 where the hardware has it, as in `stylize`),
    # "float32", "bfloat16"; recorded as what it resolved to.
    loss_precision: str = "auto"


class ImageStyleObjective:
    def __init__(self, model, extractor, styles: list[np.ndarray], content: torch.Tensor, settings: ImageStylizeSettings, device,
                 alpha: torch.Tensor | None = None):
        self.model, self.extractor, self.settings = model, extractor.to(device), settings
        self.loss_dtype = loss_network_dtype(settings.loss_precision, device)
        height, width = content.shape[:2]
        scale = settings.size / max(height, width)
        self.height, self.width = max(8, round(height * scale)), max(8, round(width * scale))
        self.pixel_size = 1.0 / torch.tensor([self.width, self.height], device=device, dtype=torch.float32)
        self.uv = image_pixels(self.width, self.height, device) * self.pixel_size
        self.generator = torch.Generator(device=device).manual_seed(0)
        photo = F.interpolate(content.permute(2, 0, 1)[None], size=(self.height, self.width), mode="area")
        with torch.no_grad():
            self.photo_features = self.extractor(photo, [CONTENT_LAYER], self.loss_dtype)[CONTENT_LAYER]
        self.targets = StyleTargets(self.extractor, [torch.from_numpy(s).permute(2, 0, 1).to(device) for s in styles], GRAM_LAYERS)
        self.n_styles, self.next_style, self.photo = len(styles), 0, photo
        self.style_pixels = styles
        # [1, 1, h, w]: the photograph's opacity at the losses' size (all ones for an opaque one)
        self.alpha_small = torch.ones(1, 1, self.height, self.width, device=device)
        cut_out = alpha is not None and bool((alpha < 1.0).any())
        if cut_out:
            self.alpha_small = F.interpolate(alpha.permute(2, 0, 1)[None], size=(self.height, self.width), mode="area")
        self.mask = self.alpha_small if cut_out and settings.background_weight > 0 else None  # what the style is matched over

    @torch.no_grad()
    def match_palettes(self, should_stop=None) -> list[MatchedPalette] | None:
        """Each style's palette map (`match_style_palettes`), seen through the image at the losses'
        size and its object; None when `should_stop()` turned true."""
        white = torch.ones(3, device=self.uv.device)
        opacity = self.alpha_small[0, 0]
        styles = []
        for index in range(self.n_styles):
            self._use_style(index)
            image = self.model.field(self.uv).view(self.height, self.width, 3)
            view = SearchView.from_render(image, opacity, white)
            styles.append(StylePalette(image.reshape(-1, 3), opacity.reshape(-1) > 0.5, torch.from_numpy(self.style_pixels[index]), [view],
                                       functools.partial(self.gram_loss, style_index=index)))
        with torch.enable_grad():  # the search's steps
            return match_style_palettes(styles, PaletteSettings(), should_stop)

    def gram_loss(self, image: torch.Tensor, opacity: torch.Tensor, style_index: int) -> torch.Tensor:
        """The relative Gram loss of an image [H, W, 3] over its object (`opacity` [H, W]), the loss
        network run on the object's window alone (`on_object_window`)."""
        image, opacity = on_object_window(image.permute(2, 0, 1)[None], opacity)
        feats = self.extractor(image, list(GRAM_LAYERS), self.loss_dtype)
        return self.targets[style_index].relative_gram_loss({layer: masked_gram_matrix(feats[layer], opacity[None, None]) for layer in GRAM_LAYERS})

    def _use_style(self, style_index: int) -> None:
        self.model.set_style(one_style(style_index, self.n_styles))

    def batch(self) -> dict:
        index, self.next_style = self.next_style, (self.next_style + 1) % self.n_styles
        return {"style_index": index}

    def loss(self, style_index: int) -> LossTerms:
        self._use_style(style_index)
        uv = self.uv
        if self.settings.jitter_pixels:  # a random point of each pixel's cell
            uv = uv + (torch.rand(uv.shape, generator=self.generator, device=uv.device) - 0.5) * self.pixel_size
        with torch.no_grad():  # the content field is frozen
            content_features = self.model.field.content.features_and_logits(uv)
        image = self.model.field(uv, content_features).view(self.height, self.width, 3).permute(2, 0, 1)[None]
        feats = self.extractor(image, list(GRAM_LAYERS), self.loss_dtype)
        if self.mask is None:
            grams = {layer: gram_matrix(feats[layer]) for layer in GRAM_LAYERS}
        else:
            grams = {layer: masked_gram_matrix(feats[layer], self.mask) for layer in GRAM_LAYERS}
        style = self.targets[style_index].relative_gram_loss(grams)
        content = relative_content_loss(feats[CONTENT_LAYER], self.photo_features)
        s = self.settings
        total = s.style_weight * style + s.content_weight * content
        terms = {"style": style.detach(), "content": content.detach()}
        if self.mask is not None:
            background = 1.0 - self.mask
            held = (background * (image - self.photo) ** 2).sum() / (3.0 * background.sum()).clamp_min(1.0)
            total = total + s.background_weight * held
            terms["background"] = held.detach()
        return LossTerms(total, F.mse_loss(image, self.photo), terms)


class ImageStylizeSession(RunSession):
    def __init__(self, run: RunDir, config: dict, device, backbone, styles: list[np.ndarray], content_state: dict | None):
        super().__init__(run, config, device)
        config["stylize"].setdefault("loss_precision", "float32")  # runs from before the setting computed in float32
        config["stylize"].setdefault("background_weight", 0.0)  # stylized the whole image
        config["stylize"].setdefault("jitter_pixels", False)  # at the pixel centres
        config["stylize"].setdefault("palette_match", False)  # and kept the colours as trained
        config["stylize"].setdefault("grid_lr_scale", 1.0)  # with one learning rate
        self.data = load_run_data(config, device, run.root)
        if content_state is not None:
            content = build_model("image", None, config["model"]["content"])
            content.load_state_dict(content_state)
            from .scene_models import StylizedImageModel

            self.model = StylizedImageModel(content, StylizationConfig(**config["model"]["stylization"])).to(device)
            if bool((self.data.image_alpha < 1.0).any()):
                self.model.field.set_object_alpha(self.data.image_alpha[..., 0])
        else:
            self.model = build_model("stylized_image", None, config["model"]).to(device)
        settings = ImageStylizeSettings(**config["stylize"])
        self.objective = ImageStyleObjective(self.model, backbone.extractor, styles, self.data.image, settings, device, self.data.image_alpha)
        self.trainer = Trainer(self.model, self.objective.batch, settings.lr, config["steps"], loss_fn=self.objective.loss,
                               lr_scales={"field.position_encoding.": settings.grid_lr_scale})
        self.note: Callable[[str], None] = lambda message: None  # told what happens after the last step
        self._resume()

    def finished(self) -> bool:
        """Trained, and the palette matched where asked (a run stopped during the match does it when resumed)."""
        return super().finished() and (self.config.get("recolored", False) or not self.objective.settings.palette_match)

    def run_loop(self, time_budget=None, on_step=None, should_stop=None) -> str:
        outcome = super().run_loop(time_budget, on_step, should_stop)
        if self.step >= self.config["steps"] and self.objective.settings.palette_match and not self.config.get("recolored"):
            self.note("Matching each painting's palette")
            matched = self.objective.match_palettes(should_stop)
            if matched is None:
                return "stopped"
            field = self.model.field
            for index, palette in enumerate(matched):
                field.compose_color_map(index, palette.affine.to(field.color_maps), palette.centre.to(field.color_maps))
            self.config["recolored"] = True
            self.config["palette_spreads"] = [palette.spread for palette in matched]
            self.save("done")
        return outcome


def start_image_stylize(content: Path, styles: list[Path], out: Path, device: str = "auto", steps: int | None = None,
                        fit_steps: int | None = None, vgg_weights: str | None = None, log=None, loss_precision: str = "auto",
                        stroke_scale: float | None = None):
    """(content fit session, a function that makes the stylization session once the fit is done),
    both resumable, under out/content and out/stylized. A run that resumes keeps its own stroke scale."""
    if not styles:
        raise InputError("No style image given; pass --style PATH (one or more).")
    check_image_file(Path(content), "--content")
    if stroke_scale is not None and not stroke_scale > 0:
        raise InputError(f"The stroke scale must be a positive number (1: the painting's strokes as they are against the "
                         f"{ImageStylizeSettings.size} px image the losses see; 2: twice as big), got {stroke_scale:g}.")
    torch_device = resolve_device(device)
    precision = resolved_loss_precision(loss_precision, torch_device)  # a wrong value is refused before anything is written
    settings = ImageStylizeSettings(steps=steps or (1000 if torch_device.type != "cpu" else 300), loss_precision=precision,
                                    stroke_scale=stroke_scale or 1.0)
    run = RunDir(out / "stylized")
    signature = {"kind": "stylized_image", "styles": [Path(p).name for p in styles]}
    resume = run.prepare_new(signature, force=False)
    recorded = run.read_config() if resume else None
    kept = resume and all("file" in record for record in recorded["styles"])  # runs from before read the paintings again
    scale = recorded["stylize"].get("stroke_scale", 1.0) if resume else settings.stroke_scale
    style_images = [] if kept else [load_style_image(path, max(16, round(PAINTING_SIZE * scale)), enlarge=True) for path in styles]
    fit = start_fit(FitRequest(data=content, kind="image", out=out / "content", device=device, steps=fit_steps))
    backbone = resolve_backbone(vgg_weights, None, False, log)
    if log is not None and (note := emulated_bfloat16_note(recorded["stylize"].get("loss_precision", "float32") if resume else precision, torch_device)):
        log(note)

    def make_session():
        if resume:
            config = run.read_config()
            paintings = [kept_style(run.root, record) for record in config["styles"]] if kept else [s.pixels for s in style_images]
            return ImageStylizeSession(run, config, torch_device, backbone, paintings, None)
        base = fit.config
        config = {
            "kind": "stylized_image", "signature": signature, "base_run": str((out / "content").resolve()),
            "data": {**base["data"], "relative": os.path.relpath(base["data"]["path"], run.root.resolve())},
            "model": {"content_kind": "image", "content": base["model"], "stylization": StylizationConfig(n_styles=len(styles), grid_color_path=True).to_dict()},
            "styles": keep_style_copies(style_images, styles, run.root), "stylize": asdict(settings),
            "backbone": {"name": backbone.name, "pretrained": backbone.pretrained, "note": backbone.note}, "vgg_weights": vgg_weights,
            "steps": settings.steps, "step": 0, "status": "new", "seed": 0, "aabb": None, "device": device,
        }
        state = load_checkpoint(fit.run.checkpoint_path, torch_device)["trainer"]["model"]
        return ImageStylizeSession(run, config, torch_device, backbone, [s.pixels for s in style_images], state)

    return fit, make_session
