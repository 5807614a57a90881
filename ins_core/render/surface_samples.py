"""The samples that colour a view, with their weights, taken once from a frozen geometry.

When stylization keeps the content geometry (the AM's density left at the content's), each pixel
is a fixed weighted sum of colours at fixed points: sum_i w_i c(h_i, x_i, d) + (1 - opacity) bg.
So a view needs the content field only once: the visible samples (weight above a small epsilon),
their weights, positions, scene features and directions are kept, and every later render of that
view evaluates only the style and colour heads there. This is what makes whole-view style losses
affordable on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from .compositing import alpha_to_weights, neus_alpha
from .nerf_march import march_visible_samples
from .nerf_renderer import COLOR_WEIGHT_EPS
from .samplers import stratified_samples


@dataclass
class SurfaceSamples:
    ray: torch.Tensor  # [M] long, sorted: the pixel (ray) each sample belongs to
    weight: torch.Tensor  # [M]
    position: torch.Tensor  # [M, 3] world position
    feature: torch.Tensor  # [M, F] the content field's scene feature h
    direction: torch.Tensor  # [M, 3] the ray's direction
    normal: torch.Tensor | None  # [M, 3] SDF surface normals (None for NeRF)
    opacity: torch.Tensor  # [R]

    @property
    def n_rays(self) -> int:
        return int(self.opacity.shape[0])

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for f in fields(self) if (t := getattr(self, f.name)) is not None)

    def rays_slice(self, start: int, stop: int) -> "SurfaceSamples":
        """The samples of rays start..stop-1 (renumbered from 0)."""
        lo, hi = torch.searchsorted(self.ray, torch.tensor([start, stop], device=self.ray.device)).tolist()
        part = {f.name: (t[lo:hi] if (t := getattr(self, f.name)) is not None else None) for f in fields(self) if f.name != "opacity"}
        part["ray"] = part["ray"] - start
        return SurfaceSamples(**part, opacity=self.opacity[start:stop])

    def composite(self, colors: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        """Pixel colours [R, 3] from per-sample colours [M, 3] over a background colour [3]."""
        rgb = torch.zeros(self.n_rays, 3, device=colors.device, dtype=colors.dtype)
        rgb = rgb.index_add(0, self.ray, self.weight[:, None] * colors)
        return rgb + (1.0 - self.opacity)[:, None] * background

    def without_faint(self, budget: float) -> "SurfaceSamples":
        """The samples left when each ray drops its faintest ones, as many as together weigh at most
        `budget` (the ray's opacity, so its background's share, stays as it was). A pixel then differs
        from the full sum by at most `budget` in each channel (colours lie in [0, 1]). A NeRF's haze
        spreads many faint samples along its rays: on the demo's views about half of them weigh
        under 1e-3, a few tenths of a percent of the pixel together."""
        if budget <= 0 or not self.weight.numel():
            return self
        faintest_first = torch.argsort(self.weight, stable=True)
        order = faintest_first[torch.argsort(self.ray[faintest_first], stable=True)]  # by ray, faintest first
        # float64: the running sum spans every ray's weights (MPS has none, so there on the CPU).
        work = torch.device("cpu") if self.weight.device.type == "mps" else self.weight.device
        weight, ray = self.weight[order].to(work, torch.float64), self.ray[order].to(work)
        running = weight.cumsum(0)
        counts = torch.bincount(ray, minlength=self.n_rays)
        first_of_ray = (counts.cumsum(0) - counts)[ray]
        within_ray = running - (running - weight)[first_of_ray]
        keep = torch.empty_like(self.ray, dtype=torch.bool)
        keep[order] = (within_ray > budget).to(keep.device)
        return SurfaceSamples(**{f.name: (t[keep] if (t := getattr(self, f.name)) is not None and f.name != "opacity" else t)
                                 for f in fields(self)})

    def surface_points(self) -> torch.Tensor:
        """Each ray's expected surface point [R, 3] (the weighted mean of its samples; 0 where nothing is hit).
        The mean is over the weights kept, which fall short of the opacity once faint samples are dropped."""
        total = torch.zeros(self.n_rays, 3, device=self.position.device, dtype=self.position.dtype)
        total = total.index_add(0, self.ray, self.weight[:, None] * self.position)
        kept = torch.zeros(self.n_rays, device=self.weight.device, dtype=self.weight.dtype).index_add(0, self.ray, self.weight)
        return total / kept.clamp_min(1e-6)[:, None]


def concatenate(parts: list[SurfaceSamples]) -> SurfaceSamples:
    """Samples of consecutive groups of rays as one set (ray numbers offset accordingly)."""
    if len(parts) == 1:
        return parts[0]
    offsets = [0]
    for part in parts[:-1]:
        offsets.append(offsets[-1] + part.n_rays)
    joined = {}
    for f in fields(SurfaceSamples):
        values = [getattr(p, f.name) for p in parts]
        if f.name == "ray":
            values = [v + o for v, o in zip(values, offsets)]
        joined[f.name] = None if values[0] is None else torch.cat(values)
    return SurfaceSamples(**joined)


@torch.no_grad()
def nerf_surface_samples(field, origins: torch.Tensor, directions: torch.Tensor, n_samples: int, grid=None) -> SurfaceSamples:
    """Visible samples of a NeRF (CIM) along rays, at the renderer's un-jittered sample positions,
    marched front to back (nothing behind an opaque surface is evaluated)."""
    samples = stratified_samples(origins, directions, field.aabb, n_samples, jitter=False)
    found = march_visible_samples(field, samples, grid)
    order = torch.argsort(found.ray * n_samples + found.slot)  # by ray, then along it
    ray = found.ray[order]
    return SurfaceSamples(ray, found.weight[order], found.points[order], found.features[order], directions[ray], None, found.opacity)


def sdf_surface_samples(field, origins: torch.Tensor, directions: torch.Tensor, n_samples: int,
                        eps: float = COLOR_WEIGHT_EPS) -> SurfaceSamples:
    """Visible interval midpoints of an SDF (NeuS rendering, un-jittered), with their normals."""
    from ..data.cameras import intersect_aabb

    near, far, hit = intersect_aabb(origins, directions, field.aabb)
    step = (far - near) / n_samples
    ticks = torch.arange(n_samples + 1, device=origins.device, dtype=origins.dtype)
    t = near[:, None] + ticks[None, :] * step[:, None]
    points = origins[:, None, :] + t[..., None] * directions[:, None, :]
    with torch.enable_grad():
        sdf, features, gradients = field.sdf_with_gradient(points.reshape(-1, 3), create_graph=False)
    n_rays = origins.shape[0]
    sdf, features = sdf.detach().view(n_rays, n_samples + 1), features.detach().view(n_rays, n_samples + 1, -1)
    gradients = gradients.detach().view(n_rays, n_samples + 1, 3)
    with torch.no_grad():
        weights = alpha_to_weights(neus_alpha(sdf, field.inv_s()) * hit[:, None])
        rays, slots = (weights > eps).nonzero(as_tuple=True)
        middle = 0.5 * (points[rays, slots] + points[rays, slots + 1])
        normal = torch.nn.functional.normalize(0.5 * (gradients[rays, slots] + gradients[rays, slots + 1]), dim=-1)
        feature = 0.5 * (features[rays, slots] + features[rays, slots + 1])
        return SurfaceSamples(rays, weights[rays, slots], middle, feature, directions[rays], normal, weights.sum(-1))
