"""Inference-only NeRF rendering: the reference sampling, marched front to back in blocks.

The samples are the reference renderer's (`stratified_samples` without jitter, the same occupancy
skipping and the same colour cut-off), so depth and opacity are the same; what changes is the work:
- rays are marched a block of samples at a time and dropped once their transmittance is below
  `TRANSMITTANCE_EPS` (early ray termination: nothing behind can change the pixel visibly);
- colour, the costly part of a stylized field (the style modules run there), is computed at no more
  than `COLOUR_SAMPLES` samples per ray, which carry the ray's weight between them
  (`gather_at_quantiles`); a trained stylized NeRF spreads a ray's weight over 20-30 samples;
- the field runs under `torch.inference_mode` (no autograd bookkeeping) in bounded chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..fields.activations import density_activation
from .compositing import Composite, density_to_alpha, gather_at_quantiles
from .nerf_renderer import COLOR_WEIGHT_EPS, RadianceField
from .occupancy import OccupancyGrid
from .samplers import RaySamples, stratified_samples

# A ray whose transmittance falls below this is finished: what lies behind adds less than 1e-4.
TRANSMITTANCE_EPS = 1e-4
# Samples per field call on a CPU: the MLP activations of 8192 samples stay near the L2 cache of
# the 2-core Xeon; 65536 ran an MLP at half the speed there.
FIELD_CHUNK = 1 << 13
# On a GPU a field call costs its kernel launches, not its size: with 8192, lego at 400 px on an
# H200 spent 48 s of 63 in marches (about 0.06 s a call of 8192 rays), mostly the hash grid's small
# kernels; with this, 65536 rays a call and every view's samples kept (train/style_objective.py), a
# painting's 400 steps took 41 s in all.
GPU_FIELD_CHUNK = 1 << 18


def field_chunk(device: torch.device) -> int:
    """Samples per field call on `device`."""
    return FIELD_CHUNK if device.type == "cpu" else GPU_FIELD_CHUNK


# Coloured samples per ray (measured on the make-demo job, 256x256: 640 k samples carry weight; 24 per
# ray colour 199 k of them: frames 1.55x faster in the render-server benchmark, 49-50 dB from the
# reference; 16: 46 dB, 32: 52 dB).
COLOUR_SAMPLES = 24


def _in_chunks(fn, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """fn over the rows of inputs, `field_chunk` of their device at a time; its outputs concatenated."""
    n, chunk = inputs[0].shape[0], field_chunk(inputs[0].device)
    if n <= chunk:
        out = fn(*inputs)
        return out if isinstance(out, tuple) else (out,)
    parts = [fn(*(x[s:s + chunk] for x in inputs)) for s in range(0, n, chunk)]
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(p) for p in zip(*parts))
    return (torch.cat(parts),)


@dataclass
class VisibleSamples:
    """What a front-to-back march found: the samples that carry weight, and each ray's totals."""
    ray: torch.Tensor  # [M] (grouped by block, not sorted)
    slot: torch.Tensor  # [M] the sample's index along its ray
    weight: torch.Tensor  # [M]
    points: torch.Tensor  # [M, 3]
    features: torch.Tensor  # [M, F] the field's scene feature
    depth: torch.Tensor  # [R]
    opacity: torch.Tensor  # [R]


def march_visible_samples(field: RadianceField, samples: RaySamples, grid: OccupancyGrid | None = None, block: int = 16) -> VisibleSamples:
    """The reference renderer's samples with weight above COLOR_WEIGHT_EPS, found front to back a
    block at a time; a ray is dropped once its transmittance is below TRANSMITTANCE_EPS (<= the
    weight cut-off, so nothing it would have kept lies behind). Runs under the caller's grad mode."""
    origins, directions = samples.origins, samples.directions
    n_rays, n_samples = samples.t.shape
    device = origins.device
    transmittance = torch.ones(n_rays, device=device)
    depth = torch.zeros(n_rays, device=device)
    opacity = torch.zeros(n_rays, device=device)
    alive = samples.hit.nonzero(as_tuple=True)[0]
    visible = []  # (ray, slot, weight, point, features) of the samples the reference would colour
    for start in range(0, n_samples, block):
        if alive.numel() == 0:
            break
        t = samples.t[alive, start:start + block]
        points = origins[alive, None, :] + t[..., None] * directions[alive, None, :]
        active = grid.occupied_at(points) if grid is not None else torch.ones_like(t, dtype=torch.bool)
        rays, slots = active.nonzero(as_tuple=True)
        sigma = torch.zeros_like(t)
        if rays.numel():
            raw, features = _in_chunks(field.density, points[rays, slots])
            sigma[rays, slots] = density_activation(raw)
        alpha = density_to_alpha(sigma, samples.deltas[alive, start:start + block])
        # The reference's exclusive cumulative product (with its 1e-10), continued from earlier blocks.
        through = torch.cumprod(1.0 - alpha + 1e-10, dim=1)
        before = torch.cat([transmittance[alive, None], transmittance[alive, None] * through[:, :-1]], dim=1)
        weights = alpha * before
        if rays.numel():
            seen = weights[rays, slots] > COLOR_WEIGHT_EPS
            r, s = rays[seen], slots[seen]
            visible.append((alive[r], start + s, weights[r, s], points[r, s], features[seen]))
        depth[alive] += (weights * t).sum(-1)
        opacity[alive] += weights.sum(-1)
        transmittance[alive] = before[:, -1] * (1.0 - alpha[:, -1] + 1e-10)
        alive = alive[transmittance[alive] > TRANSMITTANCE_EPS]
    if not visible:  # nothing seen: empty columns, the features as wide as the field makes them
        empty, no_points = torch.empty(0, dtype=torch.long, device=device), torch.empty(0, 3, device=device)
        return VisibleSamples(empty, empty, torch.empty(0, device=device), no_points, field.density(no_points)[1], depth, opacity)
    return VisibleSamples(*(torch.cat(column) for column in zip(*visible)), depth, opacity)


@torch.inference_mode()
def march_nerf_rays(field: RadianceField, origins: torch.Tensor, directions: torch.Tensor, n_samples: int,
                    grid: OccupancyGrid | None = None, background: torch.Tensor | None = None, block: int = 16) -> Composite:
    """What `render_nerf_rays(..., jitter=False)` gives for rays [R, 3] (colour to about 50 dB), front to back.

    The returned `weights` are empty: nothing downstream of a whole frame needs them.
    """
    samples = stratified_samples(origins, directions, field.aabb, n_samples, jitter=False)
    found = march_visible_samples(field, samples, grid, block)
    rgb = torch.zeros(origins.shape[0], 3, device=origins.device)
    if found.ray.numel():
        rgb = _colour(field, directions, n_samples, found.ray, found.slot, found.weight, found.features)
    if background is not None:
        rgb = rgb + (1.0 - found.opacity)[:, None] * background
    return Composite(rgb, found.depth, found.opacity, torch.empty(origins.shape[0], 0, device=origins.device))


def _colour(field: RadianceField, directions: torch.Tensor, n_samples: int, ray: torch.Tensor, slot: torch.Tensor,
            weight: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Composited colour [R, 3] of the visible samples, coloured at COLOUR_SAMPLES of them per ray."""
    dense = torch.zeros(directions.shape[0], n_samples, device=directions.device)
    dense[ray, slot] = weight
    carried = gather_at_quantiles(dense, COLOUR_SAMPLES)[ray, slot]
    chosen = carried > 0
    (colour,) = _in_chunks(field.color, features[chosen], directions[ray[chosen]])
    return torch.zeros(directions.shape[0], 3, device=directions.device).index_add_(0, ray[chosen], carried[chosen, None] * colour)
