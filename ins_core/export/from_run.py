"""Glue between a trained run (content or stylized, NeRF or SDF) and the field-agnostic exporter."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..data.cameras import Cameras
from ..data.dataset import load_cameras
from ..errors import require
from ..fields.activations import density_activation
from ..presets import MESH_SMOOTH_ITERATIONS
from ..render.nerf_renderer import render_nerf_samples
from ..render.samplers import render_step, segment_samples
from ..train.fit import data_path
from ..train.loading import TrainedRun
from .pipeline import ExportResult, export_mesh


def _content_kind(trained: TrainedRun) -> str:
    return trained.config["model"]["content_kind"] if trained.kind == "stylized" else trained.kind


# Probe rays start this many renderer steps outside the surface and end as far inside it. One
# step is enough to see the soft shell a NeRF puts around its level set; more reach across to
# neighbouring surfaces (lego, 128^3: 28.45 dB against the field's renders at 1 step, 28.27 at 2,
# 27.64 at 4).
PROBE_BACK_OFF_STEPS = 1
# A probe ray at least this opaque gives the texel its colour; fainter ones blend in the point colour.
PROBE_SOLID_OPACITY = 0.5
CALIBRATION_RAYS_PER_SIDE = 32
CALIBRATION_MIN_OPACITY = 0.95
CALIBRATION_QUANTILE = 0.25


COLOR_LOOKUPS = ("ray", "point")


def field_functions(trained: TrainedRun, color_lookup: str = "ray"):
    """(scalar_fn, color_fn, occupied_fn, mode) for the run's field at its current style mix.

    A NeRF's colour comes from what a short ray shows ("ray", the default): it starts a renderer
    step outside the surface and looks at it, volume rendered like the training views. A NeRF's
    point colour ("point") is only trained where rays stop, which need not be on the mesh's level
    set. Measured against the field's own renders (bench/mesh_quality.py): +0.2 dB on lego,
    +1.4 dB on the demo job's stylized field, +1.8 dB on a briefly trained one, for three to
    four times the bake time. An SDF's colour is trained at its zero level: it always uses the point.
    """
    require(color_lookup in COLOR_LOOKUPS, f"The colour look-up must be one of {', '.join(COLOR_LOOKUPS)}, not {color_lookup!r}.")
    model = trained.model
    field = model.field
    if _content_kind(trained) == "nerf":
        @torch.no_grad()
        def scalar_fn(points: torch.Tensor) -> torch.Tensor:
            return density_activation(field.density(points)[0])

        @torch.no_grad()
        def point_color_fn(points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
            return field.color(field.density(points)[1], view_dirs)

        back_off = PROBE_BACK_OFF_STEPS * render_step(trained.model)

        @torch.no_grad()
        def probe_color_fn(points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
            # The ray spans back_off on each side of the surface point, at half the renderer's step.
            samples = segment_samples(points - back_off * view_dirs, view_dirs, 2.0 * back_off, 4 * PROBE_BACK_OFF_STEPS)
            out = render_nerf_samples(field, samples, model.grid, torch.zeros_like(points))
            seen = out.rgb / out.opacity.clamp_min(1e-4).unsqueeze(-1)
            solid = (out.opacity / PROBE_SOLID_OPACITY).clamp(0.0, 1.0).unsqueeze(-1)
            return solid * seen + (1.0 - solid) * point_color_fn(points, view_dirs)

        return scalar_fn, probe_color_fn if color_lookup == "ray" else point_color_fn, model.grid.occupied_at, "density"

    @torch.no_grad()
    def sdf_fn(points: torch.Tensor) -> torch.Tensor:
        return field.sdf(points)

    def sdf_color_fn(points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
        _, feature, gradient = field.sdf_with_gradient(points, create_graph=False)
        normals = torch.nn.functional.normalize(gradient, dim=-1)
        with torch.no_grad():
            return field.color(points, normals, view_dirs, feature)

    return sdf_fn, sdf_color_fn, None, "sdf"


def probe_rays(aabb: torch.Tensor, per_side: int = CALIBRATION_RAYS_PER_SIDE) -> tuple[torch.Tensor, torch.Tensor]:
    """Parallel rays into the box from its 6 faces and 8 corners: a per_side x per_side sheet per
    direction, covering the box's cross-section, starting outside it. No camera or dataset needed."""
    centre, radius = 0.5 * (aabb[0] + aabb[1]), 0.5 * float((aabb[1] - aabb[0]).norm())
    axes = torch.eye(3, device=aabb.device)
    corners = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)], device=aabb.device)
    directions = torch.cat([axes, -axes, torch.nn.functional.normalize(corners, dim=-1)])
    offsets = torch.linspace(-radius, radius, per_side, device=aabb.device)
    u, v = torch.meshgrid(offsets, offsets, indexing="ij")
    origins, rays = [], []
    for direction in directions:
        helper = axes[0] if abs(float(direction[0])) < 0.9 else axes[1]
        side = torch.nn.functional.normalize(torch.linalg.cross(direction, helper), dim=0)
        up = torch.linalg.cross(direction, side)
        sheet = centre - 1.5 * radius * direction + u.reshape(-1, 1) * side + v.reshape(-1, 1) * up
        origins.append(sheet)
        rays.append(direction.expand_as(sheet))
    return torch.cat(origins), torch.cat(rays)


@torch.no_grad()
def density_level(trained: TrainedRun) -> float:
    """A NeRF threshold calibrated on the field's own renders: the lower quartile of the density
    at the points where opaque rays stop (their expected depth), for rays shot into the scene
    box from all round. The level set then runs where renders put the surface, whether the field
    is sharp (well trained: high densities) or still soft (briefly trained: a fixed threshold sat
    above its surfaces and cut holes in them). The quartile rather than the median keeps thin and
    dark parts, whose density is lower: measured on lego at 128^3 with the point colour look-up,
    28.2 dB against the field's renders and silhouette IoU 0.98, against 25.0 dB and 0.94 at the
    median.
    Falls back to the density at which one renderer step is half opaque when no ray is opaque."""
    scalar_fn = field_functions(trained)[0]
    origins, directions = probe_rays(trained.model.field.aabb.to(trained.device))
    out = trained.model.render(origins, directions, torch.zeros_like(origins))
    opaque = out.opacity > CALIBRATION_MIN_OPACITY
    if not bool(opaque.any()):
        return math.log(2.0) / render_step(trained.model)
    depth = out.depth[opaque] / out.opacity[opaque]
    densities = scalar_fn(origins[opaque] + directions[opaque] * depth.unsqueeze(-1))
    return float(torch.quantile(densities.float(), CALIBRATION_QUANTILE))


def run_cameras(trained: TrainedRun) -> Cameras:
    """The cameras the run was taught from (training and test views): from its loaded views, else
    read from its dataset's transforms and image headers (InputError where the views have moved)."""
    views = [v for v in (trained.data.train, trained.data.test) if v is not None and len(v)]
    if views:
        return Cameras(torch.cat([v.c2w for v in views]).cpu(), torch.cat([v.intrinsics for v in views]).cpu(), views[0].width, views[0].height)
    data = trained.config["data"]
    return load_cameras(data_path(data, trained.run.root), data.get("resolution"))


def export_run(trained: TrainedRun, out_dir: Path, resolution: int = 256, texture_size: int = 1024, level: float | None = None,
               target_faces: int | None = None, vertex_colors_only: bool = False, progress=None,
               keep_components: int = 1, n_directions: int = 1, color_lookup: str = "ray", keep_unseen: bool = False,
               cameras: Cameras | None = None, smooth_iterations: int = MESH_SMOOTH_ITERATIONS) -> ExportResult:
    """A textured mesh of the run (its current style mix) in out_dir, in the scene's world frame.

    Unless `keep_unseen`, faces none of the run's cameras (or `cameras`, where given) saw are left out."""
    scalar_fn, color_fn, occupied_fn, mode = field_functions(trained, color_lookup)
    trained.model.eval()
    if level is None and mode == "density":
        level = density_level(trained)
    return export_mesh(scalar_fn, color_fn, trained.model.field.aabb.cpu(), out_dir, mode, resolution=resolution, texture_size=texture_size,
                       level=level, occupied_fn=occupied_fn, target_faces=target_faces, vertex_colors_only=vertex_colors_only,
                       progress=progress, device=trained.device, keep_components=keep_components, n_directions=n_directions,
                       seen_by=None if keep_unseen else cameras or run_cameras(trained), smooth_iterations=smooth_iterations)
