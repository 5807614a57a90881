"""The INS stylization modules on top of a pre-trained content field (the CIM).

- SIM (Style Implicit Module): style weights s (one-hot over K styles, or any convex mix) plus
  encoded coordinates and the scene feature h -> a per-point style feature.
- AM (Amalgamate Module): fuses [h, style feature] into a stylized raw density (or SDF), blended
  with the content's by a learnable scalar that starts at 1 (as published), and a stylized feature,
  the scene feature plus a zero-initialised residual; so stylization starts exactly at the content
  field's output.

`StylizedNerfField` and `StylizedSdfField` expose the same interface as the content fields, so the
same renderers draw them. The content field is frozen: it is the teacher for geometry, and the
raw density / SDF it gives at the points of the last query is kept in `content_raw` so that the
geometry-consistency loss compares teacher and student at the very same samples.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from .activations import color_activation
from .color_mix import mix_color_maps
from .encodings import HashGridEncoding
from .mlp import mlp
from .nerf import NerfField
from .sdf import SdfField

if TYPE_CHECKING:
    from ..render.surface_samples import SurfaceSamples


@dataclass
class StylizationConfig:
    n_styles: int = 1
    style_feature_dim: int = 32
    hidden_dim: int = 64
    # The SIM's own small hash grid lets strokes be finer than the content features.
    n_levels: int = 8
    log2_table_size: int = 15
    base_resolution: int = 16
    max_resolution: int = 512
    # A linear path per style from the SIM's grid straight to the colour's residual, beside the MLPs
    # (image and NeRF fields). Through the MLPs alone, whose weights every pixel shares, training
    # ended in a pale wash with faint strokes where optimising the pixels with the same losses did
    # not; each grid cell's own path lets strokes form locally (docs/stylization.md). False: runs
    # from before; SDF fields have none.
    grid_color_path: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class StyleImplicitModule(nn.Module):
    def __init__(self, config: StylizationConfig, scene_feature_dim: int):
        super().__init__()
        c = config
        self.n_styles = c.n_styles
        self.position_encoding = HashGridEncoding(3, c.n_levels, 2, c.log2_table_size, c.base_resolution, c.max_resolution)
        self.net = mlp(c.n_styles + self.position_encoding.output_dim + scene_feature_dim, c.hidden_dim, 2, c.style_feature_dim)

    def forward(self, unit_positions: torch.Tensor, scene_feature: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        return self.feature_and_encoding(unit_positions, scene_feature, style_weights)[0]

    def feature_and_encoding(self, unit_positions: torch.Tensor, scene_feature: torch.Tensor,
                             style_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The style feature and the grid's encoding of the positions it came from (for a grid colour path)."""
        weights = style_weights.expand(unit_positions.shape[0], self.n_styles)
        encoded = self.position_encoding(unit_positions)
        return self.net(torch.cat([weights, encoded, scene_feature], dim=-1)), encoded


class GridColorPath(nn.Linear):
    """One linear map per style from the SIM's grid encoding to a colour-logit residual [N, 3], mixed
    by the style weights; zero at the start, so stylization still starts at the content."""

    def __init__(self, encoding_dim: int, n_styles: int):
        super().__init__(encoding_dim, 3 * n_styles)
        self.n_styles = n_styles
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, encoded: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        per_style = super().forward(encoded).view(-1, self.n_styles, 3)
        return (per_style * style_weights.reshape(-1, self.n_styles, 1)).sum(1)


class AmalgamateModule(nn.Module):
    def __init__(self, config: StylizationConfig, scene_feature_dim: int):
        super().__init__()
        fused = scene_feature_dim + config.style_feature_dim
        self.density_head = mlp(fused, config.hidden_dim, 1, 1)
        self.density_blend = nn.Parameter(torch.tensor(1.0))
        # Ours: the feature is the scene feature plus a residual whose last layer starts at zero. It
        # also starts exactly at the content output, but unlike a blend scalar at 1 (which multiplies
        # the head's gradient by 1 - 1 = 0) it lets the style reach the colour from the first step.
        self.feature_head = mlp(fused, config.hidden_dim, 1, scene_feature_dim)
        nn.init.zeros_(self.feature_head[-1].weight)
        nn.init.zeros_(self.feature_head[-1].bias)

    def forward(self, content_raw: torch.Tensor, scene_feature: torch.Tensor, style_feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fused = torch.cat([scene_feature, style_feature], dim=-1)
        raw = self.density_blend * content_raw + (1 - self.density_blend) * self.density_head(fused)[:, 0]
        return raw, self._blend_feature(scene_feature, fused)

    def fuse_feature(self, scene_feature: torch.Tensor, style_feature: torch.Tensor) -> torch.Tensor:
        """Only the stylized feature (when the geometry is kept as the content's)."""
        return self._blend_feature(scene_feature, torch.cat([scene_feature, style_feature], dim=-1))

    def _blend_feature(self, scene_feature: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        return scene_feature + self.feature_head(fused)


def frozen_copy(module: nn.Module) -> nn.Module:
    teacher = copy.deepcopy(module)
    teacher.requires_grad_(False)
    return teacher


def one_style(index: int, n_styles: int) -> list[float]:
    """The style weights of style `index` alone (one-hot over `n_styles`)."""
    weights = [0.0] * n_styles
    weights[index] = 1.0
    return weights


def check_style_weights(weights: torch.Tensor, n_styles: int) -> torch.Tensor:
    """A convex mix of the K styles: K non-negative weights summing to 1."""
    weights = torch.as_tensor(weights, dtype=torch.float32).flatten()
    if weights.numel() != n_styles or (weights < 0).any() or abs(float(weights.sum()) - 1.0) > 1e-4:
        raise ValueError(f"style weights must be {n_styles} non-negative numbers summing to 1, got {weights.tolist()}")
    return weights


class _StyleMix(nn.Module):
    """The style weights of a stylized field and each style's colour map after them."""

    def __init__(self, config: StylizationConfig):
        super().__init__()
        self.config = config
        self.register_buffer("style_weights", torch.zeros(config.n_styles))
        self.style_weights[0] = 1.0
        # Per style, an affine colour map [3, 4] on the output (ARF's colour transfer, view-independent
        # so it cannot break consistency); the identity unless stylization sets one.
        self.register_buffer("color_maps", torch.eye(3, 4).repeat(config.n_styles, 1, 1))
        # The colour each map was matched about (where a mix of styles mixes what the maps give;
        # `color_mix.py`). Mid-grey until a match sets it.
        self.register_buffer("color_centres", torch.full((config.n_styles, 3), 0.5))
        # Whether the weights mix several styles: a CPU flag set with them, so a render reads it with
        # no device sync; changed in place, so the renderer's shallow copies of the field see it too.
        self.mixing_styles = torch.zeros((), dtype=torch.bool)

    def set_style(self, weights) -> None:
        weights = check_style_weights(weights, self.config.n_styles)
        self.style_weights.copy_(weights.to(self.style_weights.device))
        self.mixing_styles.fill_(int((weights > 0).sum()) > 1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Runs stylized before the maps had centres load with mid-grey ones (their one-style
        # renders are unchanged; a mix of their styles comes close to what it was); image runs from
        # before they had maps, with the identity.
        state_dict.setdefault(prefix + "color_maps", self.color_maps.clone())
        state_dict.setdefault(prefix + "color_centres", self.color_centres.clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.mixing_styles.fill_(int((self.style_weights > 0).sum()) > 1)

    def compose_color_map(self, style_index: int, affine: torch.Tensor, centre: torch.Tensor) -> None:
        """Apply the colour map `affine` [3, 4], matched about the colour `centre` [3], after the
        style's current map; the centre is kept as the field's colour that the current map sends there."""
        current = self.color_maps[style_index].clone()
        self.color_maps[style_index, :, :3] = affine[:, :3] @ current[:, :3]
        self.color_maps[style_index, :, 3] = affine[:, :3] @ current[:, 3] + affine[:, 3]
        solved = torch.linalg.lstsq(current[:, :3].double().cpu(), (centre - current[:, 3]).double().cpu()[:, None]).solution[:, 0]
        self.color_centres[style_index] = solved.to(self.color_centres)

    def color_map(self) -> torch.Tensor:
        """The style mix's colour map [3, 4]."""
        if self.mixing_styles:
            return mix_color_maps(self.color_maps, self.color_centres, self.style_weights)
        return (self.style_weights[:, None, None] * self.color_maps).sum(0)

    def recolor(self, rgb: torch.Tensor) -> torch.Tensor:
        """The style mix's colour map applied to colours [N, 3] (the identity map changes nothing)."""
        matrix = self.color_map()
        # No check for the identity (a device sync per call): x*1 + y*0 + z*0 + 0 is x exactly in floating point.
        return (rgb @ matrix[:, :3].T + matrix[:, 3]).clamp(0.0, 1.0)


class _StylizedBase(_StyleMix):
    """Shared state: the frozen content field, the SIM and AM, and the style mix."""

    def __init__(self, content: nn.Module, config: StylizationConfig):
        super().__init__(config)
        self.content = frozen_copy(content)
        self.register_buffer("aabb", content.aabb.clone())
        self.sim = StyleImplicitModule(config, content.feature_dim)
        self.am = AmalgamateModule(config, content.feature_dim)
        self.content_raw: torch.Tensor | None = None

    @property
    def feature_dim(self) -> int:
        return self.content.feature_dim

    def _style_feature_and_encoding(self, x: torch.Tensor, scene_feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        unit = ((x - self.aabb[0]) / (self.aabb[1] - self.aabb[0])).clamp(0, 1)
        return self.sim.feature_and_encoding(unit, scene_feature, self.style_weights[None])

    def _style_feature(self, x: torch.Tensor, scene_feature: torch.Tensor) -> torch.Tensor:
        return self._style_feature_and_encoding(x, scene_feature)[0]

    def _stylize(self, x: torch.Tensor, content_raw: torch.Tensor, scene_feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The stylized raw density (or SDF) and feature, and the SIM grid's encoding of `x`."""
        self.content_raw = content_raw.detach()
        style_feature, encoded = self._style_feature_and_encoding(x, scene_feature)
        return *self.am(content_raw, scene_feature, style_feature), encoded

    def surface_feature(self, samples: "SurfaceSamples") -> torch.Tensor:
        """The stylized feature at kept surface samples (the geometry stays the content's)."""
        return self.am.fuse_feature(samples.feature, self._style_feature(samples.position, samples.feature))


class StylizedNerfField(_StylizedBase):
    def __init__(self, content: NerfField, config: StylizationConfig):
        super().__init__(content, config)
        self.color_mlp = copy.deepcopy(content.color_mlp).requires_grad_(True)
        self.direction_encoding = content.direction_encoding
        self.register_buffer("canonical_direction", torch.tensor([[0.0, 0.0, -1.0]]), persistent=False)
        self.grid_color = GridColorPath(self.sim.position_encoding.output_dim, config.n_styles) if config.grid_color_path else None

    def density(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw density and the feature the colour needs: [stylized feature, scene feature] side by side,
        then the grid colour path's logits where the field has one."""
        # The content field is frozen, so its features need no graph at all.
        with torch.no_grad():
            content_raw, scene_feature = self.content.density(x)
        raw, feature, encoded = self._stylize(x, content_raw, scene_feature)
        outside = ~self.content.inside(x)
        features = torch.cat([feature, scene_feature, self._grid_logits(encoded)], dim=-1)
        return torch.where(outside, torch.full_like(raw, -20.0), raw), features

    def _grid_logits(self, encoded: torch.Tensor) -> torch.Tensor:
        """The grid colour path's logits [N, 3], or [N, 0] for a field without one."""
        return encoded[:, :0] if self.grid_color is None else self.grid_color(encoded, self.style_weights)

    def _logits(self, h: torch.Tensor, encoded_directions: torch.Tensor) -> torch.Tensor:
        return self.color_mlp(torch.cat([h, encoded_directions], dim=-1))

    def _stylized_color(self, stylized: torch.Tensor, scene: torch.Tensor, directions: torch.Tensor, grid_logits: torch.Tensor) -> torch.Tensor:
        """The content's colour (view-dependent as it was) plus what the style changes, seen from one
        fixed direction: a painting's strokes do not shift with the viewpoint, so the views agree.
        `grid_logits` [N, 3] or [N, 0]: the grid colour path's part of that change."""
        canonical = self.direction_encoding(self.canonical_direction.expand(scene.shape[0], 3))
        logits = self._logits(scene, self.direction_encoding(directions)) + self._logits(stylized, canonical) - self._logits(scene, canonical)
        if grid_logits.shape[-1]:
            logits = logits + grid_logits
        return self.recolor(color_activation(logits))

    def color(self, h: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        dim = self.content.feature_dim
        return self._stylized_color(h[:, :dim], h[:, dim:2 * dim], directions, h[:, 2 * dim:])

    def surface_color(self, samples: "SurfaceSamples") -> torch.Tensor:
        """Stylized colours [M, 3] at kept surface samples: exactly what the renderer would give there."""
        style_feature, encoded = self._style_feature_and_encoding(samples.position, samples.feature)
        stylized = self.am.fuse_feature(samples.feature, style_feature)
        return self._stylized_color(stylized, samples.feature, samples.direction, self._grid_logits(encoded))


class StylizedImageField(_StyleMix):
    """INS for an image field: the frozen content image field (CIM) gives h and its RGB; the SIM
    (a 2D hash grid + the style weights) and the AM add a residual to its colour logits, starting
    exactly at the content image, and the style's colour map (the palette match) is applied last.
    Continuous, so the stylized image renders at any resolution."""

    def __init__(self, content: nn.Module, config: StylizationConfig):
        super().__init__(config)
        self.content = frozen_copy(content)
        self.position_encoding = HashGridEncoding(2, config.n_levels, 2, config.log2_table_size, config.base_resolution, config.max_resolution)
        fused = content.feature_dim + self.position_encoding.output_dim + config.n_styles
        self.style_net = mlp(fused, config.hidden_dim, 2, config.style_feature_dim)
        self.color_head = mlp(content.feature_dim + config.style_feature_dim, config.hidden_dim, 1, 3)
        nn.init.zeros_(self.color_head[-1].weight)  # a residual on the content's colour, starting at zero
        nn.init.zeros_(self.color_head[-1].bias)
        self.grid_color = GridColorPath(self.position_encoding.output_dim, config.n_styles) if config.grid_color_path else None
        # Where the photograph is opaque [1, 1, H, W] (a cut-out object; 1x1 of one: all of it): the
        # style's change and the colour map act on each colour as far as it is the object's, so the
        # background stays as it was, to its very edge.
        self.register_buffer("object_alpha", torch.ones(1, 1, 1, 1))

    def set_object_alpha(self, alpha: torch.Tensor) -> None:
        """The photograph's opacity [H, W] (sampled bilinearly wherever the field is drawn)."""
        self.object_alpha = alpha.to(self.object_alpha)[None, None].clone()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "object_alpha"
        state_dict.setdefault(key, torch.ones(1, 1, 1, 1))  # runs from before: no map, nothing to keep apart
        self.object_alpha = torch.empty_like(state_dict[key], device=self.object_alpha.device)  # the photograph's size
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def object_share(self, uv: torch.Tensor) -> torch.Tensor:
        """How far the colour at image positions [N, 2] is the object's: the photograph's opacity [N, 1]."""
        if self.object_alpha.numel() == 1:
            return self.object_alpha.reshape(1, 1).expand(uv.shape[0], 1)
        grid = (uv * 2.0 - 1.0).reshape(1, 1, -1, 2)
        return nn.functional.grid_sample(self.object_alpha, grid, mode="bilinear", padding_mode="border", align_corners=False).reshape(-1, 1)

    def _recolor_object(self, alpha: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """The colour map on colours [N, 3] as far as they are the object's (`alpha` [N, 1]):
        rgb + alpha ((A - I) rgb + b); the identity map changes nothing exactly."""
        matrix = self.color_map()
        change = rgb @ (matrix[:, :3] - torch.eye(3, device=matrix.device, dtype=matrix.dtype)).T + matrix[:, 3]
        return (rgb + alpha * change).clamp(0.0, 1.0)

    def forward(self, uv: torch.Tensor, content: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """RGB at image positions [N, 2]. `content`: the frozen content field's (h, logits) at `uv`
        when the caller keeps them (training renders the same pixels every step)."""
        if content is None:
            with torch.no_grad():
                content = self.content.features_and_logits(uv)
        h, content_logits = content
        weights = self.style_weights[None].expand(uv.shape[0], -1)
        encoded = self.position_encoding(uv)
        style_feature = self.style_net(torch.cat([h, encoded, weights], dim=-1))
        fused = self.color_head(torch.cat([h, style_feature], dim=-1))
        if self.grid_color is not None:
            fused = fused + self.grid_color(encoded, weights)
        alpha = self.object_share(uv)
        return self._recolor_object(alpha, color_activation(content_logits + alpha * fused))


class StylizedSdfField(_StylizedBase):
    def __init__(self, content: SdfField, config: StylizationConfig):
        super().__init__(content, config)
        self.color_mlp = copy.deepcopy(content.color_mlp).requires_grad_(True)

    def inv_s(self) -> torch.Tensor:
        return self.content.inv_s()

    def sdf_and_feature(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        content_sdf, scene_feature = self.content.sdf_and_feature(x)  # differentiable in x for normals
        return self._stylize(x, content_sdf, scene_feature)[:2]

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        return self.sdf_and_feature(x)[0]

    sdf_with_gradient = SdfField.sdf_with_gradient

    def color(self, x: torch.Tensor, normals: torch.Tensor, directions: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        local = (x - self.content.centre) / self.content.scale
        inputs = torch.cat([local, normals, self.content.direction_encoding(directions), h], dim=-1)
        return self.recolor(color_activation(self.color_mlp(inputs)))

    def surface_color(self, samples: "SurfaceSamples") -> torch.Tensor:
        """Stylized colours [M, 3] at kept interval midpoints. The renderer blends the stylized
        features of an interval's two ends; here the style is taken at the midpoint, a close match."""
        return self.color(samples.position, samples.normal, samples.direction, self.surface_feature(samples))
