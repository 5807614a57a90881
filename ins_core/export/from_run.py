"""Glue between a trained run (content or stylized, NeRF or SDF) and the field-agnostic exporter."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..fields.activations import density_activation
from ..train.loading import TrainedRun
from .pipeline import ExportResult, export_mesh


def _content_kind(trained: TrainedRun) -> str:
    return trained.config["model"]["content_kind"] if trained.kind == "stylized" else trained.kind


def field_functions(trained: TrainedRun):
    """(scalar_fn, color_fn, occupied_fn, mode) for the run's field at its current style mix."""
    model = trained.model
    field = model.field
    if _content_kind(trained) == "nerf":
        @torch.no_grad()
        def scalar_fn(points: torch.Tensor) -> torch.Tensor:
            return density_activation(field.density(points)[0])

        @torch.no_grad()
        def color_fn(points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
            return field.color(field.density(points)[1], view_dirs)

        return scalar_fn, color_fn, model.grid.occupied_at, "density"

    @torch.no_grad()
    def sdf_fn(points: torch.Tensor) -> torch.Tensor:
        return field.sdf(points)

    def sdf_color_fn(points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
        _, feature, gradient = field.sdf_with_gradient(points, create_graph=False)
        normals = torch.nn.functional.normalize(gradient, dim=-1)
        with torch.no_grad():
            return field.color(points, normals, view_dirs, feature)

    return sdf_fn, sdf_color_fn, None, "sdf"


def density_level(trained: TrainedRun) -> float:
    """A NeRF threshold that matches how the field was trained: the density at which one sample of
    the renderer's step is half opaque (alpha = 0.5). A field only learns densities high enough to
    be opaque at its own step, so a fixed or scene-size threshold can sit above a lightly trained
    field's surfaces and cut holes in them. Also kept below half the largest density seen by the
    occupancy grid, so a barely trained field still gives a surface."""
    aabb = trained.model.field.aabb.cpu()
    step = float((aabb[1] - aabb[0]).norm()) / trained.model.n_samples
    level = math.log(2.0) / step
    densest = float(trained.model.grid.density.max())
    return min(level, 0.5 * densest) if densest > 0 else level


def export_run(trained: TrainedRun, out_dir: Path, resolution: int = 256, texture_size: int = 1024, level: float | None = None,
               target_faces: int | None = None, vertex_colors_only: bool = False, progress=None,
               keep_components: int = 1, n_directions: int = 1) -> ExportResult:
    """A textured mesh of the run (its current style mix) in out_dir, in the scene's world frame."""
    scalar_fn, color_fn, occupied_fn, mode = field_functions(trained)
    trained.model.eval()
    if level is None and mode == "density":
        level = density_level(trained)
    return export_mesh(scalar_fn, color_fn, trained.model.field.aabb.cpu(), out_dir, mode, resolution=resolution, texture_size=texture_size,
                       level=level, occupied_fn=occupied_fn, target_faces=target_faces, vertex_colors_only=vertex_colors_only,
                       progress=progress, device=trained.device, keep_components=keep_components, n_directions=n_directions)
