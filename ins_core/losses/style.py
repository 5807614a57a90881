"""Style, content and regularisation losses on VGG features (INS and ARF flavours).

Tensors are channels-first batches ([B, 3, H, W] images, [B, C, H, W] features) except where a
docstring says otherwise: `color_transfer` and `style_statistics_distance` take channels-last
images like the rest of the evaluation code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ins_core.losses.vgg import FeatureExtractor

GRAM_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CONTENT_LAYER = "relu2_2"
NNFM_LAYERS: tuple[str, ...] = ("relu3_1", "relu3_2", "relu3_3")
# Elements of one chunk of the [render vectors x style vectors] similarity matrix in NNFM.
NNFM_CHUNK_ELEMENTS = 1 << 24

Features = Mapping[str, torch.Tensor]


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error with broadcasting (a [1, ...] target against a [B, ...] batch)."""
    return ((a - b) ** 2).mean()


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices [B, C, C] = F F^T / (C H W) of features [B, C, H, W], in at least float32."""
    if features.dim() != 4:
        raise ValueError(f"expected features [B, C, H, W], got shape {tuple(features.shape)}")
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    flat = flat.to(torch.promote_types(flat.dtype, torch.float32))
    return torch.bmm(flat, flat.transpose(1, 2)) / float(c * h * w)


def masked_gram_matrix(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Gram matrices [B, C, C] over the locations a mask [B, 1, h, w] (any size, in [0, 1]) covers.

    sum_p m_p f_p f_p^T / (C sum_p m_p): the same units as `gram_matrix`, so the style of an object
    is compared with the painting's without the empty background diluting it.
    """
    b, c, h, w = features.shape
    weights = torch.nn.functional.adaptive_avg_pool2d(mask.to(features.dtype), (h, w)).reshape(b, 1, h * w)
    flat = features.reshape(b, c, h * w)
    flat = flat.to(torch.promote_types(flat.dtype, torch.float32))
    return torch.bmm(flat * weights, flat.transpose(1, 2)) / (c * weights.sum(dim=2, keepdim=True).clamp_min(1e-6))


def style_grams(features: Features, layers: Iterable[str] = GRAM_LAYERS) -> dict[str, torch.Tensor]:
    """Gram matrices of the given layers, detached (targets)."""
    return {name: gram_matrix(features[name]).detach() for name in layers}


def style_loss(render_feats: Features, style_grams: Mapping[str, torch.Tensor], layers: Iterable[str] = GRAM_LAYERS) -> torch.Tensor:
    """INS style loss: sum over `layers` of MSE(G(render), G(style)).

    `style_grams[name]` is [1, C, C] (broadcast over the render batch) or [B, C, C].
    """
    terms = [_mse(gram_matrix(render_feats[name]), style_grams[name]) for name in layers]
    return torch.stack(terms).sum()


def content_loss(render_feats: Features, content_feats: Features, layer: str = CONTENT_LAYER) -> torch.Tensor:
    """INS content loss: MSE of one layer's features (relu2_2) between render and photograph."""
    return _mse(render_feats[layer], content_feats[layer].detach())


def relative_content_loss(render_feats: torch.Tensor, photo_feats: torch.Tensor, photo_mean_square: torch.Tensor | None = None) -> torch.Tensor:
    """MSE of the content layer's features relative to the photograph's mean square (given: over
    more of the photograph than `photo_feats`), so the content weight means the same whatever the
    image's size and brightness."""
    if photo_mean_square is None:
        photo_mean_square = photo_feats.pow(2).mean()
    return F.mse_loss(render_feats, photo_feats) / (photo_mean_square + 1e-12)


def _concat_layers(feats: Features, layers: Sequence[str]) -> torch.Tensor:
    """Features of same-resolution layers concatenated along channels, as vectors [B * H * W, D]."""
    stacked = torch.cat([feats[name] for name in layers], dim=1)
    b, d, h, w = stacked.shape
    return stacked.permute(0, 2, 3, 1).reshape(b * h * w, d)


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-8)


def nearest_neighbours(queries: torch.Tensor, keys: torch.Tensor, chunk_elements: int = NNFM_CHUNK_ELEMENTS,
                       search_dtype: torch.dtype | None = None) -> torch.Tensor:
    """For each unit vector in `queries` [N, D], the index of the most similar (largest dot product)
    of the unit vectors `keys` [M, D]; in chunks of at most `chunk_elements` similarity entries,
    computed in `search_dtype` when given (see `nnfm_loss`)."""
    if search_dtype is not None:
        keys = keys.to(search_dtype)
    rows = max(1, chunk_elements // max(1, keys.shape[0]))
    with torch.no_grad():
        return torch.cat([(queries[start : start + rows].to(keys.dtype) @ keys.T).argmax(dim=1) for start in range(0, queries.shape[0], rows)])


def nnfm_loss(
    render_feats: Features,
    style_feats: Features,
    layers: Sequence[str] = NNFM_LAYERS,
    chunk_elements: int = NNFM_CHUNK_ELEMENTS,
    search_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """ARF's nearest-neighbour feature matching: mean over rendered locations of 1 - max cosine similarity.

    The features of `layers` (same resolution: relu3_1..relu3_3) are concatenated per location.
    Nearest neighbours are searched without gradient in chunks of at most `chunk_elements`
    similarity entries; the loss is then the cosine distance to the chosen neighbour, which has
    the same gradient as the max (as in ARF's code) at a fraction of the memory.

    `search_dtype` (bfloat16 when the loss network computes in it, so its features carry no more
    precision) does only the search in that type; the distance itself stays in the features' type.
    A near tie may then pick a neighbour a rounding step less similar. The search is most of the
    term's cost: 768 channels for every pair of 4096 view and 4096 painting locations at 256 px.
    """
    render = _concat_layers(render_feats, layers)
    style = _unit(_concat_layers(style_feats, layers).detach().to(render.dtype))
    render_unit = _unit(render)
    nearest = nearest_neighbours(render_unit.detach(), style, chunk_elements, search_dtype)
    cosine = (render_unit * style[nearest]).sum(dim=1)
    return (1.0 - cosine).mean()


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Squared total variation of [B, 3, H, W]: mean squared vertical plus horizontal neighbour differences."""
    dy = image[:, :, 1:, :] - image[:, :, :-1, :]
    dx = image[:, :, :, 1:] - image[:, :, :, :-1]
    return (dy**2).mean() + (dx**2).mean()


# --- colour pre-transfer ------------------------------------------------------------------


def color_statistics(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The colour mean [3] and covariance [3, 3] of pixels [N, 3]."""
    mean = pixels.mean(dim=0)
    centred = pixels - mean
    return mean, centred.T @ centred / max(1, pixels.shape[0])


def _sym_power(cov: torch.Tensor, power: float, floor: float = 1e-8) -> torch.Tensor:
    """cov^power for a symmetric positive semi-definite 3x3 matrix via its eigendecomposition."""
    values, vectors = torch.linalg.eigh(cov)
    return vectors @ torch.diag(values.clamp_min(floor) ** power) @ vectors.T


def _cpu64(array: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A float64 CPU tensor (colour statistics are tiny; float64 is not available on every device)."""
    tensor = torch.from_numpy(np.asarray(array)) if isinstance(array, np.ndarray) else array.detach()
    return tensor.to(device="cpu", dtype=torch.float64)


@dataclass(frozen=True)
class MomentMatch:
    """The affine colour maps x -> A x + b that give colours of mean mu_c and covariance C_c the
    style's mu_s and C_s: A = C_s^(1/2) Q C_c^(-1/2) for any orthogonal Q, b = mu_s - A mu_c.
    ARF's colour transfer takes Q = I; Q only decides which of the content's colour directions
    becomes which of the painting's (float64 factors on the CPU)."""

    style_root: torch.Tensor  # C_s^(1/2) [3, 3]
    content_inverse_root: torch.Tensor  # C_c^(-1/2) [3, 3]
    content_mean: torch.Tensor  # [3]
    style_mean: torch.Tensor  # [3]

    def matrix(self, q: torch.Tensor | None = None) -> torch.Tensor:
        """The map [3, 4] (A | b) for the orthogonal `q` [3, 3] (None: the identity), in `q`'s dtype
        and device and differentiable in it."""
        like = q if q is not None else self.style_root
        left, right = self.style_root.to(like), self.content_inverse_root.to(like)
        matrix = left @ right if q is None else left @ q @ right
        offset = self.style_mean.to(like) - matrix @ self.content_mean.to(like)
        return torch.cat([matrix, offset[:, None]], dim=1)


def moment_match(
    images: torch.Tensor | np.ndarray, style: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None
) -> MomentMatch:
    """The maps that give the images' colours the style's mean and covariance (`MomentMatch`).
    `mask` ([N, H, W], optional) selects the image pixels the statistics are taken from (say, the
    foreground of RGBA views)."""
    pixels = _cpu64(images).reshape(-1, 3)
    if mask is not None:
        pixels = pixels[_cpu64(mask).reshape(-1) > 0.5]
    style_px = _cpu64(style).reshape(-1, 3)
    if pixels.shape[0] == 0 or style_px.shape[0] == 0:
        raise ValueError("colour transfer needs at least one content pixel and one style pixel")
    mu_c, cov_c = color_statistics(pixels)
    mu_s, cov_s = color_statistics(style_px)
    return MomentMatch(_sym_power(cov_s, 0.5), _sym_power(cov_c, -0.5), mu_c, mu_s)


def _with_matrix(affine: torch.Tensor, matrix: torch.Tensor, content_mean: torch.Tensor) -> torch.Tensor:
    """The map [3, 4] with `matrix` [3, 3] in place of `affine`'s, re-offset so that `content_mean`
    still lands where `affine` sent it."""
    target = affine[:, :3] @ content_mean + affine[:, 3]
    return torch.cat([matrix, (target - matrix @ content_mean)[:, None]], dim=1)


def cap_gain(affine: torch.Tensor, max_gain: float, content_mean: torch.Tensor) -> torch.Tensor:
    """The map [3, 4] with its matrix's singular values (how much it stretches any colour
    difference) capped at `max_gain`, re-offset so that `content_mean` still lands where it did."""
    u, gains, vh = torch.linalg.svd(affine[:, :3])
    return _with_matrix(affine, u @ torch.diag(gains.clamp(max=max_gain)) @ vh, content_mean)


def partial_spread(affine: torch.Tensor, spread: float, content_mean: torch.Tensor) -> torch.Tensor:
    """The map [3, 4] that still sends `content_mean` where `affine` does (the painting's mean, for a
    moment match) and turns colour differences the way `affine` does, but stretches them only
    `spread` of the way (in log scale), its shrinks kept: with A = U diag(g) V^T, the matrix
    U diag(g') V^T with g' = g^spread where g > 1, else g. At 0 no colour difference grows; at 1 the
    map is `affine`.

    The shrinks stay because undoing them brings back colours of the field's own that the painting
    does not have (taking every gain part of the way turned the demo's gold sphere olive; blending
    A with the identity turned it salmon)."""
    u, gains, vh = torch.linalg.svd(affine[:, :3])
    gains = torch.where(gains > 1, gains ** spread, gains)
    return _with_matrix(affine, u @ torch.diag(gains) @ vh, content_mean)


def color_transfer_matrix(
    images: torch.Tensor | np.ndarray, style: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None,
    max_gain: float | None = None,
) -> torch.Tensor:
    """The affine colour map [3, 4] (A | b) that gives the images' colours the style's mean and covariance.

    A = C_s^(1/2) C_c^(-1/2) with symmetric square roots from eigendecompositions (ARF's choice),
    b = mu_s - A mu_c. `mask` ([N, H, W], optional) selects the image pixels the statistics are
    taken from (say, the foreground of RGBA views). `max_gain` caps A's singular values (how much
    any colour difference may be stretched; the mean still goes to the style's). Computed in float64
    on the CPU.
    """
    match = moment_match(images, style, mask)
    affine = match.matrix()
    return affine if max_gain is None else cap_gain(affine, max_gain, match.content_mean)


def principal_colours(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A painting's colour spread: the variances [3] along its principal colour axes [3, 3] (columns)."""
    _, cov = color_statistics(pixels)
    return torch.linalg.eigh(cov)


def palette_shortfall(pixels: torch.Tensor, variances: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """How much of a painting's colour range the pixels [N, 3] lack: along each of the painting's
    principal colour axes, the part of its variance the pixels do not reach, over the painting's
    total variance, squared and summed. One flat colour scores sum(v^2) / (sum v)^2 (1/3 to 1).

    One-sided on purpose: a wider spread than the painting's costs nothing (strokes may overshoot;
    the palette match after training narrows them, which calms fine detail too), and neither does
    the mean (that match moves it without stretching anything). Pulling the mean as well made the
    Scream's strokes fade on lego. Fewer than two pixels (a view that misses the object), or a
    painting of one flat colour: zero."""
    if pixels.shape[0] < 2:
        return pixels.sum() * 0.0
    _, cov = color_statistics(pixels)
    reached = ((cov @ axes) * axes).sum(dim=0)  # a^T C a for each axis a
    # A one-colour painting has no range to reach: zero, not 0 / 0.
    return ((variances - reached).clamp_min(0.0) / variances.sum().clamp_min(1e-8)).pow(2).sum()


def color_transfer(
    images: torch.Tensor | np.ndarray, style: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None
) -> torch.Tensor | np.ndarray:
    """ARF colour pre-transfer: images [N, H, W, 3] in [0, 1] recoloured to the style's [H, W, 3] colour statistics.

    One affine map for the whole set (so the views stay consistent with each other), then a
    clip to [0, 1]. Returns the same type (numpy or torch), dtype and device as `images`.
    """
    affine = color_transfer_matrix(images, style, mask)
    if isinstance(images, np.ndarray):
        pixels = _cpu64(images).reshape(-1, 3)
        out = (pixels @ affine[:, :3].T + affine[:, 3]).clamp(0.0, 1.0)
        return out.reshape(images.shape).numpy().astype(images.dtype, copy=False)
    affine = affine.to(device=images.device, dtype=torch.promote_types(images.dtype, torch.float32))
    pixels = images.reshape(-1, 3).to(affine.dtype)
    out = (pixels @ affine[:, :3].T + affine[:, 3]).clamp(0.0, 1.0)
    return out.reshape(images.shape).to(images.dtype)


def band_limited(image: torch.Tensor, fraction: float) -> torch.Tensor:
    """What of `image` [N, C, H, W] survives being seen at `fraction` of its size: resized down
    (antialiased) and back up (bilinear), as a view rendered smaller than the loss network's
    working size is enlarged for it. fraction >= 1 returns the image itself."""
    if fraction >= 1.0:
        return image
    h, w = image.shape[-2:]
    small = F.interpolate(image, size=(max(1, round(h * fraction)), max(1, round(w * fraction))), mode="bilinear",
                          antialias=True, align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


# --- reporting and per-style targets ------------------------------------------------------


def _to_batch(image: torch.Tensor | np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """Channels-last [H, W, 3] or [N, H, W, 3] image -> [N, 3, H, W] on `like`'s device and dtype."""
    tensor = torch.as_tensor(np.asarray(image) if isinstance(image, np.ndarray) else image)
    if tensor.dim() == 3:
        tensor = tensor[None]
    if tensor.dim() != 4 or tensor.shape[-1] != 3:
        raise ValueError(f"expected a channels-last RGB image [H, W, 3] or [N, H, W, 3], got {tuple(tensor.shape)}")
    return tensor.permute(0, 3, 1, 2).to(device=like.device, dtype=like.dtype)


@torch.no_grad()
def style_statistics_distance(
    image: torch.Tensor | np.ndarray,
    style: torch.Tensor | np.ndarray,
    extractor: FeatureExtractor,
    layers: Sequence[str] = GRAM_LAYERS,
) -> float:
    """Sum over the Gram layers of MSE(G(image), G(style)) for reports; channels-last images in [0, 1].

    `image` may be a batch [N, H, W, 3] (the Grams are compared per image, then averaged); the
    two images need not have the same size. Values depend on the backbone, so only compare
    numbers computed with the same one.
    """
    like = extractor.mean
    image_feats = extractor(_to_batch(image, like), layers)
    style_feats = extractor(_to_batch(style, like), layers)
    return float(style_loss(image_feats, style_grams(style_feats, layers), layers))


@torch.no_grad()
def painting_grams(style: torch.Tensor | np.ndarray, extractor: FeatureExtractor, layers: Sequence[str] = GRAM_LAYERS) -> dict[str, torch.Tensor]:
    """The Gram matrices [1, C, C] of a style image [H, W, 3], per layer: what `object_style_distance`
    compares with (computed once per painting, not once per view)."""
    return style_grams(extractor(_to_batch(style, extractor.mean), layers), layers)


@torch.no_grad()
def object_style_distances(
    image: torch.Tensor,
    mask: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    extractor: FeatureExtractor,
    size: int | None = None,
) -> dict[str, float]:
    """MSE between the Gram matrices of `image` [H, W, 3], taken over the object (`mask` [H, W])
    only, and the painting's (`targets`, per layer: `painting_grams`), per layer; the image is
    resized to `size` on its longer side first. The statistics a stylization optimises, without the
    empty background that it never paints."""
    layers = list(targets)
    batch = _to_batch(image, extractor.mean)
    weights = mask.to(batch)[None, None]
    if size is not None:
        scale = size / max(batch.shape[-2:])
        shape = (max(1, round(batch.shape[-2] * scale)), max(1, round(batch.shape[-1] * scale)))
        batch = torch.nn.functional.interpolate(batch, size=shape, mode="bilinear", align_corners=False)
    image_feats = extractor(batch, layers)
    return {name: float(_mse(masked_gram_matrix(image_feats[name], weights), targets[name])) for name in layers}


def object_style_distance(
    image: torch.Tensor,
    mask: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    extractor: FeatureExtractor,
    size: int | None = None,
) -> float:
    """Like `style_statistics_distance`, but over the object only: the sum over layers of
    `object_style_distances` (raw MSEs, so the layers with the largest Grams, relu1_2 and relu2_2,
    weigh most)."""
    return sum(object_style_distances(image, mask, targets, extractor, size).values())


@dataclass
class StyleTarget:
    """One style image's precomputed targets: Grams [1, C, C] and, optionally, NNFM features."""

    grams: dict[str, torch.Tensor]
    nnfm_features: dict[str, torch.Tensor] | None = None

    @classmethod
    @torch.no_grad()
    def compute(
        cls,
        style: torch.Tensor,
        extractor: FeatureExtractor,
        gram_layers: Sequence[str] = GRAM_LAYERS,
        nnfm_layers: Sequence[str] | None = NNFM_LAYERS,
    ) -> "StyleTarget":
        """Targets for `style` [1, 3, H, W] in [0, 1] (channels-first, on the extractor's device)."""
        wanted = tuple(dict.fromkeys([*gram_layers, *(nnfm_layers or ())]))
        feats = extractor(style, wanted)
        nnfm = {name: feats[name].detach() for name in nnfm_layers} if nnfm_layers else None
        return cls(style_grams(feats, gram_layers), nnfm)

    def __post_init__(self) -> None:
        # Each layer's mean squared Gram entry: the layers' activations differ in size by orders of
        # magnitude (relu4_3's Grams are 10^4 times smaller than relu2_2's), so each error is taken
        # relative to it and every layer counts alike.
        self.gram_sizes = {name: float(gram.pow(2).mean()) + 1e-12 for name, gram in self.grams.items()}

    def relative_gram_loss(self, grams: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mean over this target's layers of MSE(`grams[layer]`, the style's), each relative to the
        style Gram's size; `grams[layer]` is [B, C, C]."""
        terms = [F.mse_loss(grams[name], target.expand_as(grams[name])) / self.gram_sizes[name] for name, target in self.grams.items()]
        return sum(terms) / len(terms)


@dataclass
class StyleTargets:
    """Per-style targets, computed on first use and kept: `targets[k]` for style index k."""

    extractor: FeatureExtractor
    styles: Sequence[torch.Tensor]
    gram_layers: Sequence[str] = GRAM_LAYERS
    nnfm_layers: Sequence[str] | None = None
    _cache: dict[int, StyleTarget] = field(default_factory=dict, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.styles)

    def __getitem__(self, index: int) -> StyleTarget:
        if not 0 <= index < len(self.styles):
            raise IndexError(f"style index {index} out of range for {len(self.styles)} styles")
        if index not in self._cache:
            style = self.styles[index]
            if style.dim() == 3:
                style = style[None]
            style = style.to(device=self.extractor.mean.device, dtype=self.extractor.mean.dtype)
            self._cache[index] = StyleTarget.compute(style, self.extractor, self.gram_layers, self.nnfm_layers)
        return self._cache[index]
