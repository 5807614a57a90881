"""The fast inference path for whole frames: which renderer draws a model, with its hash grids unrolled.

`fast_renderer(model)` returns `render(origins, directions, background) -> Composite` for the models
it knows (NeRF and SDF, content or stylized) in eval mode, or None; `render_view` uses it and falls
back to the model's own `render` otherwise. The picture is the reference renderer's, to about 50 dB
(colour is estimated from fewer samples; see nerf_march.py, sdf_fast.py and tests/test_fast_render.py);
depth and opacity are the same, and only the work to get them differs.
"""

from __future__ import annotations

import weakref
from typing import Callable

import torch
from torch import nn

from .compositing import Composite
from .lattice import with_lattice_encodings
from .nerf_march import march_nerf_rays
from .sdf_fast import render_sdf_rays_fast, sdf_bounds
from .surface_samples import SurfaceSamples

RayRenderer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Composite]


def geometry_kind(model: nn.Module) -> str | None:
    """'nerf' or 'sdf' for scene models (a stylized model renders as its content), else None."""
    kind = getattr(model, "kind", None)
    return getattr(model, "content_kind", None) if kind == "stylized" else kind


def keeps_content_density(field: nn.Module) -> bool:
    """Whether a stylized field's density (or SDF) is exactly its content's (the AM's blend scalar is 1)."""
    return float(field.am.density_blend.detach()) == 1.0


class KeptGeometryField:
    """A stylized NeRF field whose density is the content's: the density comes from the content field
    alone, and the style modules run only for the samples that get a colour (the visible ones)."""

    def __init__(self, stylized: nn.Module):
        self.stylized = stylized
        self.aabb = stylized.aabb

    def density(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw, scene_feature = self.stylized.content.density(x)
        return raw, torch.cat([scene_feature, x], dim=-1)  # the style needs the position too

    def color(self, features: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        # surface_color reads only the positions, features and directions of the samples.
        samples = SurfaceSamples(ray=None, weight=None, position=features[:, -3:], feature=features[:, :-3],
                                 direction=directions, normal=None, opacity=None)
        return self.stylized.surface_color(samples)


class KeptGeometrySdfField:
    """A stylized SDF field whose geometry is the content's: the SDF and its gradient (the normals)
    come from the content field alone, half the work of the stylized field's (whose AM computes
    1 * content + 0 * its own head, the same numbers); the style runs only where colour is needed."""

    def __init__(self, stylized: nn.Module):
        self.stylized = stylized
        self.content = stylized.content
        self.aabb = stylized.aabb
        self.inv_s = stylized.inv_s
        self.sdf = stylized.content.sdf
        self.color = stylized.color
        # The coarse SDF grid is the content's, whatever the style mix.
        self.parameters = stylized.content.parameters

    def sdf_with_gradient(self, x: torch.Tensor, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sdf, scene_feature, gradient = self.content.sdf_with_gradient(x, create_graph=create_graph)
        with torch.no_grad():
            feature = self.stylized.am.fuse_feature(scene_feature, self.stylized._style_feature(x, scene_feature))
        return sdf, feature, gradient


_KEPT_SDF: "weakref.WeakKeyDictionary[nn.Module, KeptGeometrySdfField]" = weakref.WeakKeyDictionary()


def _kept_geometry_sdf(field: nn.Module) -> KeptGeometrySdfField:
    """One view per (lattice) field, so the coarse SDF grid cached for it lives as long as the field."""
    view = _KEPT_SDF.get(field)
    if view is None:
        view = _KEPT_SDF[field] = KeptGeometrySdfField(field)
    return view


def geometry_field(model: nn.Module):
    """An eval-mode NeRF or SDF scene model's field as the fast path reads it: hash grids unrolled
    into lattices and, for a stylized model that keeps its content's geometry, the density (or SDF)
    from the content field alone. It renders and gives the surface as `model.field` does."""
    field = with_lattice_encodings(model.field)
    if model.kind == "stylized" and keeps_content_density(model.field):
        return KeptGeometryField(field) if geometry_kind(model) == "nerf" else _kept_geometry_sdf(field)
    return field


def fast_renderer(model: nn.Module) -> RayRenderer | None:
    """The inference renderer for an eval-mode scene model, or None where only `model.render` applies."""
    if model.training:
        return None
    kind = geometry_kind(model)
    if kind == "nerf":
        field = geometry_field(model)
        return lambda origins, directions, background: march_nerf_rays(field, origins, directions, model.n_samples, model.grid, background)
    if kind == "sdf":
        # Normals need the SDF's gradient; the lattices give it too (grid_sample is differentiable
        # in its sample positions). The coarse SDF grid is built here, before any worker thread.
        field = geometry_field(model)
        bounds = sdf_bounds(field)
        return lambda origins, directions, background: _in_ray_chunks(
            lambda o, d, b: render_sdf_rays_fast(field, bounds, o, d, model.n_samples, b), origins, directions, background)
    return None


# Rays per SDF call: the kept samples' normals need an autograd graph, so pieces stay small.
SDF_RAY_CHUNK = 4096


def _in_ray_chunks(render: RayRenderer, origins: torch.Tensor, directions: torch.Tensor, background: torch.Tensor) -> Composite:
    parts = [render(origins[s:s + SDF_RAY_CHUNK], directions[s:s + SDF_RAY_CHUNK], background[s:s + SDF_RAY_CHUNK])
             for s in range(0, origins.shape[0], SDF_RAY_CHUNK)]
    return Composite(*(torch.cat([getattr(p, name).detach() for p in parts]) for name in ("rgb", "depth", "opacity", "weights")))
