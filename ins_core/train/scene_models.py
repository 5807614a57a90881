"""Trainable scene models: a field plus what it takes to render and supervise it.

All models share one interface so the trainer, the renderer of views and the CLI treat them alike:
`render(origins, directions, background, jitter)`, `training_loss(batch)`, `maintain(step)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..fields.image import ImageField, ImageFieldConfig
from ..fields.nerf import NerfField, NerfFieldConfig
from ..fields.sdf import SdfField, SdfFieldConfig
from ..render.nerf_renderer import render_nerf_rays
from ..render.occupancy import OccupancyGrid
from ..render.sdf_renderer import render_sdf_rays

if TYPE_CHECKING:
    from ..fields.stylization import StylizationConfig
    from ..render.surface_samples import SurfaceSamples


@dataclass
class LossTerms:
    total: torch.Tensor
    rgb_mse: torch.Tensor
    extra: dict = dataclass_field(default_factory=dict)
    backpropagated: bool = False  # the loss already put its gradients in .grad (deferred back-propagation)


def composite_target(rgba: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """The photograph laid over the step's background colour (straight alpha)."""
    return rgba[:, :3] * rgba[:, 3:] + background * (1.0 - rgba[:, 3:])


# A pixel's alpha from which its depth supervises: a silhouette's edge pixels mix the surface
# with what lies behind it, and their depth belongs to neither.
DEPTH_SOLID_ALPHA = 0.99
# A ray at least this opaque is taught its depth; one less opaque is a hole the colours must fill.
DEPTH_MIN_OPACITY = 0.1


def depth_error(rendered: torch.Tensor, opacity: torch.Tensor, target: torch.Tensor | None, rgba: torch.Tensor) -> torch.Tensor | None:
    """Mean relative error |d - d*| / d* of the rendered distance over the rays with a known
    surface in a solid pixel; None without depths. The distance is the weights' mean (weights
    renormalised), so the term moves matter along the ray and leaves how opaque it is to the
    colours: the plain sum reads short while a ray is not yet opaque, and pulling it out drew
    matter behind the surface. A ray under `DEPTH_MIN_OPACITY` is left to the colours: the
    renormalisation's 1 / opacity multiplies its gradient, and rays through a hole at opacity
    0.001, pulling a thousand times harder than opaque ones, took a demo fit's cube apart in its
    last hundred steps. Relative, so that a scene's size does not change the weight."""
    if target is None:
        return None
    solid = (target > 0) & (rgba[:, 3] >= DEPTH_SOLID_ALPHA) & (opacity.detach() >= DEPTH_MIN_OPACITY)
    if not bool(solid.any()):
        return rendered.sum() * 0.0
    mean_distance = rendered[solid] / opacity[solid]
    return ((mean_distance - target[solid]).abs() / target[solid]).mean()


def with_depth(total: torch.Tensor, extra: dict, error: torch.Tensor | None, weight: float) -> torch.Tensor:
    """The loss with the depth term added (and logged) where the batch has depths and the weight is on."""
    if error is None or weight <= 0:
        return total
    extra["depth_error"] = error.detach()
    return total + weight * error


class NerfModel(nn.Module):
    kind = "nerf"

    def __init__(self, aabb: torch.Tensor, field_config: dict, n_samples: int, grid_resolution: int, grid_update_every: int = 16,
                 depth_weight: float = 0.0):
        super().__init__()
        self.depth_weight = depth_weight
        self.field = NerfField(aabb, NerfFieldConfig(**field_config))
        self.grid = OccupancyGrid(aabb, grid_resolution)
        self.n_samples = n_samples
        self.grid_update_every = grid_update_every
        diagonal = float((aabb[1] - aabb[0]).norm())
        self.step_size = diagonal / n_samples

    def render(self, origins, directions, background=None, jitter=False):
        return render_nerf_rays(self.field, origins, directions, self.n_samples, self.grid, background, jitter)

    def training_loss(self, origins, directions, rgba, background, depth=None) -> LossTerms:
        out = self.render(origins, directions, background, jitter=True)
        mse = F.mse_loss(out.rgb, composite_target(rgba, background))
        extra = {"samples_per_ray": out.n_evaluated / origins.shape[0]}
        total = with_depth(mse, extra, depth_error(out.depth, out.opacity, depth, rgba), self.depth_weight)
        return LossTerms(total, mse, extra)

    @torch.no_grad()
    def maintain(self, step: int) -> None:
        """Refresh the occupancy grid every few steps (on a CPU a quarter of the cells at a time)."""
        if step > 0 and step % self.grid_update_every == 0:
            fraction = 1.0 if self.grid.density.device.type != "cpu" else 0.25
            self.grid.update(self.field.sigma, self.step_size, fraction=fraction)


# A ray's samples that estimate the eikonal term (of the 65 the CPU's SDF takes per ray).
EIKONAL_SAMPLES_PER_RAY = 16


def eikonal_sample_rows(inside_box: torch.Tensor, per_ray: int) -> torch.Tensor:
    """Rows of the flattened [R * (S+1)] samples that estimate the eikonal term over every sample in
    the box: `per_ray` of each ray's, drawn with replacement, those outside the box dropped."""
    rays, columns = inside_box.shape
    picked = torch.randint(0, columns, (rays, per_ray), device=inside_box.device)
    rows = picked + columns * torch.arange(rays, device=inside_box.device)[:, None]
    return rows[inside_box.gather(1, picked)]


class SdfModel(nn.Module):
    kind = "sdf"

    def __init__(self, aabb: torch.Tensor, field_config: dict, n_samples: int, eikonal_weight: float = 0.1, mask_weight: float = 0.1,
                 depth_weight: float = 0.0):
        super().__init__()
        self.depth_weight = depth_weight
        self.field = SdfField(aabb, SdfFieldConfig(**field_config))
        self.n_samples = n_samples
        self.eikonal_weight = eikonal_weight
        self.mask_weight = mask_weight

    def render(self, origins, directions, background=None, jitter=False):
        return render_sdf_rays(self.field, origins, directions, self.n_samples, background, jitter)

    def training_loss(self, origins, directions, rgba, background, depth=None) -> LossTerms:
        # Pruned where it was measured (a CPU step 2.6-2.7x faster); a GPU keeps the reference render.
        prune = origins.device.type == "cpu"
        out = render_sdf_rays(self.field, origins, directions, self.n_samples, background, jitter=True, prune=prune)
        mse = F.mse_loss(out.rgb, composite_target(rgba, background))
        if not prune:
            gradients = out.gradients[out.inside_box]
        else:
            # The eikonal term over all of the rays' samples in the box, as the reference has it,
            # estimated from a few random ones per ray (the pruned render has gradients near surfaces only).
            # It costs 0.4-1 dB at equal steps, but at equal time it beats the whole term
            # (docs/performance.md, "Where the pruned fit's 0.4-1.0 dB at equal steps goes").
            rows = eikonal_sample_rows(out.inside_box, EIKONAL_SAMPLES_PER_RAY)
            gradients = self.field.sdf_with_gradient(out.points.reshape(-1, 3)[rows], create_graph=True)[2]
        grad_norm = gradients.norm(dim=-1)
        eikonal = ((grad_norm - 1.0) ** 2).mean() if grad_norm.numel() else grad_norm.sum()  # no sample in the box: none
        opacity = out.opacity.clamp(1e-4, 1 - 1e-4)
        mask = F.binary_cross_entropy(opacity, rgba[:, 3].clamp(0, 1))
        total = mse + self.eikonal_weight * eikonal + self.mask_weight * mask
        extra = {"eikonal": eikonal.detach(), "inv_s": self.field.inv_s().detach()}
        total = with_depth(total, extra, depth_error(out.depth, out.opacity, depth, rgba), self.depth_weight)
        return LossTerms(total, mse, extra)

    def maintain(self, step: int) -> None:
        return None


class ImageModel(nn.Module):
    kind = "image"

    def __init__(self, field_config: dict):
        super().__init__()
        self.field = ImageField(ImageFieldConfig(**field_config))

    def training_loss(self, uv, rgb) -> LossTerms:
        mse = F.mse_loss(self.field(uv), rgb)
        return LossTerms(mse, mse)

    def maintain(self, step: int) -> None:
        return None


def build_model(kind: str, aabb: torch.Tensor | None, settings: dict) -> nn.Module:
    """A fresh model from its saved settings (the `model` part of a run's config)."""
    if kind in ("stylized", "stylized_image"):
        from ..fields.stylization import StylizationConfig

        content = build_model(settings["content_kind"], aabb, settings["content"])
        wrapper = StylizedModel if kind == "stylized" else StylizedImageModel
        return wrapper(content, StylizationConfig(**settings["stylization"]))
    if kind == "nerf":
        return NerfModel(aabb, settings["field"], settings["n_samples"], settings["grid_resolution"],
                         depth_weight=settings.get("depth_weight", 0.0))
    if kind == "sdf":
        return SdfModel(aabb, settings["field"], settings["n_samples"], settings.get("eikonal_weight", 0.1), settings.get("mask_weight", 0.1),
                        depth_weight=settings.get("depth_weight", 0.0))
    if kind == "image":
        return ImageModel(settings["field"])
    raise ValueError(f"unknown model kind {kind!r}")


class StylizedModel(nn.Module):
    """A content model (NeRF or SDF) with the SIM and AM on top; renders like its content model."""

    kind = "stylized"

    def __init__(self, content: NerfModel | SdfModel, config: "StylizationConfig"):
        super().__init__()
        from ..fields.stylization import StylizedNerfField, StylizedSdfField

        self.content_kind = content.kind
        self.n_samples = content.n_samples
        if content.kind == "nerf":
            self.field = StylizedNerfField(content.field, config)
            self.grid = content.grid  # geometry stays close to the content, so its empty space does too
        else:
            self.field = StylizedSdfField(content.field, config)
            self.grid = None

    def set_style(self, weights) -> None:
        self.field.set_style(weights)

    def render(self, origins, directions, background=None, jitter=False):
        if self.content_kind == "nerf":
            return render_nerf_rays(self.field, origins, directions, self.n_samples, self.grid, background, jitter)
        return render_sdf_rays(self.field, origins, directions, self.n_samples, background, jitter)

    def surface_samples(self, origins: torch.Tensor, directions: torch.Tensor, chunk: int | None = None) -> "SurfaceSamples":
        """The content geometry's visible samples along rays (see render/surface_samples.py), `chunk`
        rays at a time (None: 8192 on a CPU, 65536 on a GPU, where fewer, larger calls launch fewer kernels)."""
        from ..render.lattice import with_lattice_encodings
        from ..render.surface_samples import concatenate, nerf_surface_samples, sdf_surface_samples

        chunk = chunk or (8192 if origins.device.type == "cpu" else 1 << 16)

        # The content field is frozen, so its hash grids can be read as lattices, written once: the
        # first march of a lego view 1.4x faster at 400 px, 1.7x at 100 px.
        content = with_lattice_encodings(self.field.content)
        parts = []
        for start in range(0, origins.shape[0], chunk):
            o, d = origins[start:start + chunk], directions[start:start + chunk]
            if self.content_kind == "nerf":
                parts.append(nerf_surface_samples(content, o, d, self.n_samples, self.grid))
            else:
                parts.append(sdf_surface_samples(content, o, d, self.n_samples))
        return concatenate(parts)

    def maintain(self, step: int) -> None:
        return None


class StylizedImageModel(nn.Module):
    """An image field with the INS modules on top (see StylizedImageField)."""

    kind = "stylized_image"

    def __init__(self, content: ImageModel, config: "StylizationConfig"):
        super().__init__()
        from ..fields.stylization import StylizedImageField

        self.field = StylizedImageField(content.field, config)

    def set_style(self, weights) -> None:
        self.field.set_style(weights)

    def maintain(self, step: int) -> None:
        return None
