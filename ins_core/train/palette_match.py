"""The palette match after training: which of the maps that give the object the painting's colour
mean and covariance to keep.

Every A = C_s^(1/2) Q C_c^(-1/2) with Q orthogonal gives the painting's colour statistics
(`MomentMatch`); ARF's colour transfer takes Q = I, which pairs the field's colour directions with
the painting's in no particular way. Q decides which of the field's colours become the painting's
oranges, blues or yellows, and so how its strokes read under the loss network. So Q is searched: a
few Adam steps over its three rotation angles, from Q = I and from its mirror image (det Q = -1),
for the lowest Gram loss of a few views seen through the map; the better of the two is kept. The
colour statistics stay exactly the painting's whatever Q is found, and the map is still one affine
function of colour for every view: it adds no disagreement between views of its own, though it can
stretch the disagreement there is (below).

On lego at 100 px, on the same stylized runs, this took the Scream's Gram fall at the view's detail
from 53-70 % to 62-71 % over five seeds and gave starry night's body the painting's yellows, in
19 s on a 2-core CPU (docs/stylization.md).

Then how far the map stretches colour differences (`choose_spread`): the same loss decides among a
few spreads, the shrinks always kept, so a painting whose full stretch makes the field's strokes
harsher than the painting's (the Scream's orange against its blues) gets less of it, and one whose
full stretch suits (Matisse's many colours) keeps it.

Where the views of a 3D scene are given, the search also weighs how much a map stretches the
colour differences between neighbouring views at the same surface points (`ViewDifferences`): maps
with the same colour statistics can still stretch the directions in which the views disagree, and
make the strokes flicker.

The styles of one model share the maps' handedness (all rotations of ARF's map, or all mirror
images): a mix of styles turns one style's map into the other's (`fields/color_mix.py`), which no
continuous turn can do across a mirror. `shared_handedness` picks the one that costs the styles
least by the search's own scores.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..losses.style import MomentMatch, cap_gain, moment_match, partial_spread
from ..stylize_options import AUTO_SPREADS, PALETTE_SPREAD_AUTO

# How much the colour distance counts against the Gram loss: the search minimises the Gram loss times
# the distance to this power. At 0.5 (a fifth nearer the painting's mix is worth a tenth more Gram
# loss) the demo's sphere took the painting's gold in both runs tried, as at 1, and lego's Gram
# figures moved less than at 1 (docs/stylization.md).
COLOUR_EXPONENT = 0.5

# How much the map's stretch of the differences between neighbouring views counts: the search
# minimises its objective times that stretch to this power. At 1, a map that makes views 20 % more
# different must buy it with 20 % less loss (docs/stylization.md).
DIFFERENCE_EXPONENT = 1.0

# A mirror image (det Q = -1): no rotation reaches it from the identity, so it is a start of its own.
MIRROR = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
# With a coarse style loss (the loss network at half its size), the 48 signed permutations are
# screened with it and only the best few of each handedness scored again with the search's own loss.
# On five finished runs (make demo's, lego 100 px with each of four paintings; the loss network at
# 128 px instead of 256) the full screen's best of each handedness stood at most third in the coarse
# screen's order, and every match found the same map in 14-35 s less: `bench/coarse_screen.py`,
# docs/performance.md.
COARSE_SCREEN_KEPT = 4


@dataclass
class SearchView:
    """A view the search looks through: the object's colour premultiplied by its opacity (the
    render minus the background's share) [H, W, 3], its opacity [H, W], the background [3]."""

    premultiplied: torch.Tensor
    opacity: torch.Tensor
    background: torch.Tensor

    @classmethod
    def from_render(cls, rgb: torch.Tensor, opacity: torch.Tensor, background: torch.Tensor) -> "SearchView":
        return cls(rgb - (1 - opacity[..., None]) * background, opacity, background)

    def through(self, affine: torch.Tensor) -> torch.Tensor:
        """The view [H, W, 3] as it renders with the colour map `affine` [3, 4] on the object."""
        alpha = self.opacity[..., None]
        return (self.premultiplied @ affine[:, :3].T + alpha * affine[:, 3] + (1 - alpha) * self.background).clamp(0.0, 1.0)


def rotation(angles: torch.Tensor) -> torch.Tensor:
    """The rotation [3, 3] exp(K(angles)), K skew-symmetric."""
    a, b, c = angles
    zero = angles.new_zeros(())
    skew = torch.stack([torch.stack([zero, a, b]), torch.stack([-a, zero, c]), torch.stack([-b, -c, zero])])
    return torch.linalg.matrix_exp(skew)


def signed_permutations() -> list[torch.Tensor]:
    """The 48 orthogonal matrices with one +-1 per row and column (the cube's rotations and their
    mirror images): a coarse, even cover of the maps' choices, each pairing colour directions whole."""
    out = []
    for order in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            q = torch.zeros(3, 3, dtype=torch.float64)
            q[range(3), list(order)] = torch.tensor(signs, dtype=torch.float64)
            out.append(q)
    return out


class ColourDistribution:
    """How far colours lie from the painting's distribution of colours: the sliced Wasserstein-1
    distance, the mean gap between matching quantiles of the two sets' projections on fixed
    directions. Every map of the search already gives the painting's colour mean and covariance; this
    sees what those leave open (a few bright yellows on much dark blue against an even mid-blue), and
    the Gram loss alone does not tell such maps apart (docs/stylization.md)."""

    def __init__(self, style_pixels: torch.Tensor, n_directions: int = 32, n_quantiles: int = 64, max_pixels: int = 20_000):
        generator = torch.Generator().manual_seed(0)  # fixed: the search never depends on the global random state
        self.directions = torch.nn.functional.normalize(torch.randn(n_directions, 3, generator=generator), dim=1)
        self.levels = torch.linspace(0.5 / n_quantiles, 1 - 0.5 / n_quantiles, n_quantiles)
        self.max_pixels = max_pixels
        self.reference = self.quantiles(self._sample(style_pixels.reshape(-1, 3).float().cpu()))

    def _sample(self, colors: torch.Tensor) -> torch.Tensor:
        if colors.shape[0] <= self.max_pixels:
            return colors
        keep = torch.randperm(colors.shape[0], generator=torch.Generator().manual_seed(1))[: self.max_pixels]
        return colors[keep]

    def quantiles(self, colors: torch.Tensor) -> torch.Tensor:
        """The quantiles [Q, D] of colours [N, 3] projected on the fixed directions."""
        projected = colors @ self.directions.to(colors).T  # [N, D]
        return torch.quantile(projected, self.levels.to(colors), dim=0)  # [Q, D]

    def of(self, colors: torch.Tensor) -> "ObjectColours":
        """The object's colours [N, 3] (before the map), kept as a fixed sample for the search."""
        return ObjectColours(self, self._sample(colors.reshape(-1, 3).float().cpu()))


@dataclass
class ObjectColours:
    distribution: ColourDistribution
    colors: torch.Tensor  # [N, 3]

    def distance(self, affine: torch.Tensor) -> torch.Tensor:
        """The distance of these colours seen through `affine` [3, 4] from the painting's."""
        mapped = (self.colors.to(affine) @ affine[:, :3].T + affine[:, 3]).clamp(0.0, 1.0)
        d = self.distribution
        return (d.quantiles(mapped) - d.reference.to(mapped)).abs().mean()


class ViewDifferences:
    """How much a colour map stretches the differences between neighbouring views. Where two views
    see the same surface point their colours differ by d; through a map with linear part L they
    differ by L d (the offset cancels), so over all such points the warp error's square through the
    map is tr(L S L^T) / 3, S the second moment of d. The maps the search chooses among give the
    object the same colour covariance, but one that stretches the directions in which the field's
    views disagree (a low-contrast flicker across its main colours) makes the views flicker more:
    `amplification` is that stretch against the identity's (docs/stylization.md)."""

    def __init__(self, differences: torch.Tensor):
        d = differences.reshape(-1, 3).double().cpu()
        self.second_moment = d.T @ d / max(1, d.shape[0])

    def amplification(self, affine: torch.Tensor) -> torch.Tensor:
        """sqrt(tr(L S L^T) / tr(S)) for the map `affine` [3, 4] (1 for the identity)."""
        linear = affine[:, :3]
        moment = self.second_moment.to(linear)
        return (torch.trace(linear @ moment @ linear.T) / torch.trace(moment).clamp_min(1e-12)).clamp_min(0.0).sqrt()


Scored = list[tuple[float, torch.Tensor]]  # (objective, signed permutation or start), best first


@dataclass
class PaletteSearch:
    """One style's search among `match`'s maps: the lowest `style_loss(image [H, W, 3], opacity
    [H, W])` of the `views` seen through the map (averaged), times the object `colours`' distance
    from the painting's and the map's stretch of the `differences` between neighbouring views when
    given. With neither it starts from Q = I and from its mirror; with either, from the best of the
    48 signed permutations, each scored with one pass of the loss network: the product's landscape
    has more than two valleys. With a `coarse_loss` that pass is at half the network's size, and
    only the best of each handedness are scored again at its size (`screen`)."""

    match: MomentMatch
    views: list[SearchView]
    style_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    colours: ObjectColours | None = None
    differences: ViewDifferences | None = None
    coarse_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # screens the 48 first (`screen`)

    @property
    def device(self) -> torch.device:
        return self.views[0].premultiplied.device

    @property
    def many_valleys(self) -> bool:
        """Whether the objective weighs more than the Gram loss: then its landscape has more valleys
        than Q = I's and its mirror's, and the 48 signed permutations are screened first."""
        return self.colours is not None or self.differences is not None

    def objective(self, affine: torch.Tensor, style_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        return palette_objective(affine, self.views, style_loss or self.style_loss, self.colours, self.differences)

    def screen(self, should_stop: Callable[[], bool] | None = None, kept: int = COARSE_SCREEN_KEPT) -> Scored | None:
        """The starts scored, best first. None when `should_stop()` turned true. With a `coarse_loss`
        the 48 are scored with it first, and only the best `kept` of each handedness come back,
        scored with the search's own loss (ask for at least as many as will be refined)."""
        if not self.many_valleys:
            return self._scored([torch.eye(3, dtype=torch.float64), MIRROR], self.style_loss, should_stop)
        if self.coarse_loss is None:
            return self._scored(signed_permutations(), self.style_loss, should_stop)
        coarse = self._scored(signed_permutations(), self.coarse_loss, should_stop)
        if coarse is None:
            return None
        best = [q for sign in (1, -1) for _, q in of_handedness(coarse, sign)[:kept]]
        return self._scored(best, self.style_loss, should_stop)

    def _scored(self, starts: list[torch.Tensor], style_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                should_stop: Callable[[], bool] | None) -> Scored | None:
        scored = []
        for q in starts:
            if should_stop is not None and should_stop():
                return None
            with torch.no_grad():
                scored.append((float(self.objective(self.match.matrix(q.to(self.device)), style_loss)), q))  # the map where the views are (a GPU's)
        return sorted(scored, key=lambda item: item[0])

    def starts(self, scored: Scored, sign: int | None = None, count: int | None = None) -> list[torch.Tensor]:
        """The screened starts to refine, of handedness `sign` when given: `count` of them, by
        default both without `colours` (Q = I and its mirror: a few steps decide) and the best one
        with them (the 48 screened already chose the valley: refining the second best too changed
        the map on two fields of five, within a point of Gram fall either way, for 8 s more a style
        at 100 px on 2 cores; docs/stylization.md)."""
        count = count if count is not None else (1 if self.many_valleys else 2)
        return [q for _, q in of_handedness(scored, sign)[:count]]

    def refine(self, starts: list[torch.Tensor], steps: int, lr: float = 0.1,
               should_stop: Callable[[], bool] | None = None, coarse: bool = False) -> torch.Tensor | None:
        """The map [3, 4] of the best of `steps` Adam steps over a rotation after each start, `coarse`
        with the `coarse_loss` where there is one. None when `should_stop()` turned true."""
        style_loss = self.coarse_loss if coarse and self.coarse_loss is not None else None
        best_loss, best = None, None
        for start in starts:
            start_on_device = start.to(self.device)
            angles = torch.zeros(3, device=self.device, requires_grad=True)
            optimizer = torch.optim.Adam([angles], lr=lr)

            def loss() -> torch.Tensor:
                return self.objective(self.match.matrix(rotation(angles) @ start_on_device.float()), style_loss)

            for _ in range(steps):
                if should_stop is not None and should_stop():
                    return None
                optimizer.zero_grad()
                loss().backward()
                optimizer.step()
            with torch.no_grad():
                final = float(loss())
            if best_loss is None or final < best_loss:
                best_loss, best = final, self.match.matrix(rotation(angles.detach().double().cpu()) @ start)
        return best


def handedness(q: torch.Tensor) -> int:
    """+1 for a rotation, -1 for a mirror image (det Q; so det A too, the roots being positive)."""
    return 1 if float(torch.linalg.det(q)) > 0 else -1


def of_handedness(scored: Scored, sign: int | None) -> Scored:
    return [item for item in scored if sign is None or handedness(item[1]) == sign]


def shared_handedness(screenings: list[Scored]) -> int:
    """The handedness all styles of one model take: the one whose best start costs the styles
    least, in ratio to their best of either (so no style's scale outweighs another's). One style
    keeps its own best."""
    def cost(sign: int) -> float:
        total = 0.0
        for scored in screenings:
            best, best_of_sign = scored[0][0], of_handedness(scored, sign)[0][0]
            total += math.log(max(best_of_sign, 1e-12) / max(best, 1e-12))
        return total
    return min((1, -1), key=cost)


def search_palette_map(match: MomentMatch, views: list[SearchView], style_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                       steps: int, lr: float = 0.1, should_stop: Callable[[], bool] | None = None,
                       colours: ObjectColours | None = None, refined: int | None = None, sign: int | None = None,
                       differences: ViewDifferences | None = None) -> torch.Tensor | None:
    """One style's map (`PaletteSearch`): its best `refined` starts (`PaletteSearch.starts`), of
    handedness `sign` when given (+1 rotations, -1 mirror images), refined by `steps` Adam steps.
    None when `should_stop()` turned true on the way."""
    search = PaletteSearch(match, views, style_loss, colours, differences)
    scored = search.screen(should_stop)
    if scored is None:
        return None
    return search.refine(search.starts(scored, sign, refined), steps, lr, should_stop)


def palette_objective(affine: torch.Tensor, views: list[SearchView], style_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      colours: ObjectColours | None = None, differences: ViewDifferences | None = None) -> torch.Tensor:
    """What the search minimises for the map `affine` [3, 4]: `views_loss`, times the object
    `colours`' distance from the painting's to the power `COLOUR_EXPONENT` when given, times the
    map's stretch of the `differences` between neighbouring views to `DIFFERENCE_EXPONENT` when given."""
    loss = views_loss(affine.float(), views, style_loss)
    if colours is not None:
        loss = loss * colours.distance(affine.float()).to(loss) ** COLOUR_EXPONENT
    if differences is not None:
        loss = loss * differences.amplification(affine.float()).to(loss) ** DIFFERENCE_EXPONENT
    return loss


def views_loss(affine: torch.Tensor, views: list[SearchView], style_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`style_loss` of the views seen through the colour map `affine`, averaged."""
    return sum(style_loss(view.through(affine), view.opacity) for view in views) / len(views)


def choose_spread(affine: torch.Tensor, content_mean: torch.Tensor, views: list[SearchView],
                  style_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], spreads: tuple[float, ...],
                  colours: ObjectColours | None = None) -> float:
    """The spread among `spreads` (`partial_spread` of the map `affine` [3, 4]) whose views score the
    lowest `style_loss`, times the object `colours`' distance from the painting's to the search's
    power when given (tried, not the default: docs/stylization.md); the first of equals. One pass of
    the loss network per view and spread."""
    device = views[0].premultiplied.device
    with torch.no_grad():
        losses = [float(palette_objective(partial_spread(affine, spread, content_mean).float().to(device), views, style_loss, colours))
                  for spread in spreads]
    return spreads[min(range(len(spreads)), key=losses.__getitem__)]


@dataclass
class StylePalette:
    """What the palette match needs of one style: the colours [N, 3] rendered with it (over the
    background) and which of them are the object's [N], the painting's pixels [H, W, 3], the views
    the search looks through and its style loss over a view's object."""

    colors: torch.Tensor
    on_object: torch.Tensor
    painting: torch.Tensor
    views: list[SearchView]
    style_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    view_differences: torch.Tensor | None = None  # [N, 3] colour differences of neighbouring views at shared surface points
    coarse_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # the style loss, cheaper: screens the 48 starts first


@dataclass
class PaletteSettings:
    """How the palette match after training chooses its maps: the defaults of `stylize` (its
    settings of the same names take theirs from here) and of `stylize-image`."""

    search_steps: int = 15
    distribution: bool = True
    consistency: bool = True  # weigh how much a map stretches the differences between neighbouring views (where given)
    spread: float | str = PALETTE_SPREAD_AUTO
    max_gain: float | None = None
    refined_starts: int | None = None
    spread_weighs_colours: bool = False
    coarse_refine: bool = False  # the refine's steps with the style loss at half the network's size too (where the styles have one)


@dataclass
class MatchedPalette:
    """One style's map [3, 4], the colour it was matched about [3], and the spread it took."""

    affine: torch.Tensor
    centre: torch.Tensor
    spread: float


def style_search(style: StylePalette, settings: PaletteSettings) -> PaletteSearch:
    """One style's search among the maps that give the object the painting's colour mean and
    covariance, weighing what `settings` ask for."""
    colours = ColourDistribution(style.painting).of(style.colors[style.on_object]) if settings.distribution else None
    differences = ViewDifferences(style.view_differences) if settings.consistency and style.view_differences is not None \
        and len(style.view_differences) else None
    return PaletteSearch(moment_match(style.colors.cpu(), style.painting, style.on_object.cpu()), style.views, style.style_loss,
                         colours, differences, style.coarse_loss)


def match_style_palettes(styles: list[StylePalette], settings: PaletteSettings,
                         should_stop: Callable[[], bool] | None = None) -> list[MatchedPalette] | None:
    """Per style, the map that gives the object the painting's colour mean and covariance, with its
    free rotation searched for the painting's Gram statistics (`PaletteSearch`; every style of one
    model of the same handedness, `shared_handedness`), then its stretch taken only `spread` of the
    way ("auto": `choose_spread`) and capped at `max_gain`. None when `should_stop()` turned true."""
    searches, screenings = [], []
    for style in styles:
        search = style_search(style, settings)
        searches.append(search)
        if settings.search_steps > 0:
            screenings.append(search.screen(should_stop, max(COARSE_SCREEN_KEPT, settings.refined_starts or 0)))
            if screenings[-1] is None:
                return None
    sign = shared_handedness(screenings) if len(screenings) > 1 else None
    matched = []
    for index, search in enumerate(searches):
        match, matrix = search.match, search.match.matrix()
        if settings.search_steps > 0:
            matrix = search.refine(search.starts(screenings[index], sign, settings.refined_starts), settings.search_steps, should_stop=should_stop,
                                   coarse=settings.coarse_refine)
            if matrix is None:
                return None
        spread = choose_spread(matrix, match.content_mean, search.views, search.style_loss, AUTO_SPREADS,
                               search.colours if settings.spread_weighs_colours else None) \
            if settings.spread == PALETTE_SPREAD_AUTO else float(settings.spread)
        if spread != 1.0:
            matrix = partial_spread(matrix, spread, match.content_mean)
        if settings.max_gain is not None:
            matrix = cap_gain(matrix, settings.max_gain, match.content_mean)
        matched.append(MatchedPalette(matrix, match.content_mean, spread))
    return matched
