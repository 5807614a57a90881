"""The palette match's search: among the colour maps that give the painting's colour statistics,
the one whose views a style loss likes best."""

import math

import pytest
import torch

from ins_core.losses.style import color_statistics, moment_match, partial_spread
from ins_core.stylize_options import AUTO_SPREADS
from ins_core.train.palette_match import (COARSE_SCREEN_KEPT, MIRROR, ColourDistribution, PaletteSearch, SearchView, ViewDifferences, choose_spread,
                                          handedness, of_handedness, rotation, search_palette_map, shared_handedness, signed_permutations)


def _views_and_painting():
    generator = torch.Generator().manual_seed(0)
    white = torch.ones(3)
    views = []
    for _ in range(2):
        colours = 0.3 + 0.2 * torch.rand(12, 12, 3, generator=generator) * torch.tensor([1.0, 0.6, 0.3])
        opacity = torch.ones(12, 12)
        opacity[:, :3] = 0.0  # background, which no map may touch
        views.append(SearchView.from_render(colours * opacity[..., None] + (1 - opacity[..., None]) * white, opacity, white))
    painting = torch.rand(16, 16, 3, generator=generator) * torch.tensor([0.5, 0.9, 0.7]) + 0.05
    object_pixels = torch.cat([v.premultiplied[v.opacity > 0.5] for v in views])
    return views, painting, moment_match(object_pixels, painting)


@pytest.mark.parametrize("mirrored", [False, True])
def test_rotations_are_orthogonal_and_mirrored_ones_flip_handedness(mirrored):
    q = rotation(torch.tensor([0.7, -1.2, 0.4], dtype=torch.float64))
    q = q @ MIRROR if mirrored else q
    torch.testing.assert_close(q @ q.T, torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)
    assert float(torch.linalg.det(q)) == pytest.approx(-1.0 if mirrored else 1.0, abs=1e-5)


@pytest.mark.parametrize("mirrored", [False, True])
def test_the_search_finds_the_map_a_loss_asks_for_and_keeps_the_paintings_colour_statistics(mirrored):
    """The loss asks for the views as one particular map (not ARF's) would show them; when that map
    is a mirror image, no rotation from ARF's reaches it and only the mirrored start can."""
    views, painting, match = _views_and_painting()
    turn = rotation(torch.tensor([0.5, -0.4, 0.3], dtype=torch.float64))
    wanted = match.matrix(turn @ MIRROR if mirrored else turn).float()
    targets = [view.through(wanted) for view in views]

    def style_loss(image, opacity):
        target = next(t for v, t in zip(views, targets) if v.opacity is opacity)
        return (image - target).pow(2).mean()

    def mean_loss(affine):
        return float(sum(style_loss(v.through(affine.float()), v.opacity) for v in views) / len(views))

    found = search_palette_map(match, views, style_loss, steps=150, lr=0.05)
    assert mean_loss(found) < 0.001 * mean_loss(match.matrix())
    torch.testing.assert_close(found, wanted.double(), atol=0.01, rtol=0)
    # whatever map was found, the object's colours get the painting's mean and covariance
    pixels = torch.cat([v.premultiplied[v.opacity > 0.5] for v in views]).double()
    mapped = pixels @ found[:, :3].T + found[:, 3]
    for got, expected in zip(color_statistics(mapped), color_statistics(painting.reshape(-1, 3).double())):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    # the background stays as it was
    assert torch.equal(views[0].through(found.float())[:, :3], torch.ones(12, 3, 3))


def test_the_search_stops_when_asked():
    views, _, match = _views_and_painting()
    calls = iter(range(100))
    assert search_palette_map(match, views, lambda image, opacity: image.mean(), steps=10, should_stop=lambda: next(calls) >= 3) is None


@pytest.mark.parametrize("wanted_spread", [1.0, 0.7, 0.5])
def test_the_spread_chosen_is_the_one_a_loss_asks_for(wanted_spread):
    """The loss asks for the views as the map stretched `wanted_spread` of the way would show them;
    of the candidates, that spread scores lowest and is chosen."""
    views, painting, match = _views_and_painting()
    affine = match.matrix()
    assert float(torch.linalg.svdvals(affine[:, :3]).max()) > 1.5  # the painting's colours spread wider: the spreads differ
    targets = [view.through(partial_spread(affine, wanted_spread, match.content_mean).float()) for view in views]

    def loss(image, opacity):
        index = next(i for i, view in enumerate(views) if view.opacity is opacity)
        return ((image - targets[index]) ** 2).mean()

    assert choose_spread(affine, match.content_mean, views, loss, AUTO_SPREADS) == wanted_spread


def test_the_signed_permutations_are_the_48_orthogonal_matrices_of_ones_half_of_them_mirrored():
    found = signed_permutations()
    assert len({tuple(q.flatten().tolist()) for q in found}) == 48
    for q in found:
        torch.testing.assert_close(q @ q.T, torch.eye(3, dtype=torch.float64))
    assert sorted(round(float(torch.linalg.det(q))) for q in found) == [-1] * 24 + [1] * 24


def _two_clusters(n: int, share: float, low: torch.Tensor, high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """n colours, `share` of them near `high` and the rest near `low`."""
    count = round(n * share)
    centres = torch.cat([low.expand(n - count, 3), high.expand(count, 3)])
    return (centres + 0.02 * torch.randn(n, 3, generator=generator)).clamp(0, 1)


def test_the_colour_distance_is_nought_for_the_paintings_own_colours_and_grows_as_they_move_away():
    generator = torch.Generator().manual_seed(0)
    painting = _two_clusters(900, 0.1, torch.tensor([0.1, 0.15, 0.45]), torch.tensor([0.9, 0.8, 0.2]), generator)
    distribution = ColourDistribution(painting)
    identity = torch.eye(3, 4)
    assert float(distribution.of(painting).distance(identity)) == pytest.approx(0.0, abs=1e-6)
    shifted = identity.clone()
    shifted[:, 3] = 0.05
    nearer, further = (float(distribution.of(painting).distance(m)) for m in (shifted, shifted * torch.tensor([1, 1, 1, 2.0])))
    assert 0.01 < nearer < further


def test_with_the_colour_distribution_the_search_gives_the_object_the_paintings_mix_of_colours():
    """A painting of much dark blue with a little yellow, and an object of much pale colour with a
    little dark: every map gives the painting's mean and covariance, but only some pair the object's
    large pale share with the painting's large dark blue share. With a style loss that cannot tell
    maps apart, the colour distribution decides: the search lands on the best of the 48 pairings (or
    refines it), far nearer the painting's mix than ARF's map."""
    generator = torch.Generator().manual_seed(0)
    painting = _two_clusters(2000, 0.12, torch.tensor([0.08, 0.12, 0.4]), torch.tensor([0.95, 0.8, 0.15]), generator)
    colours = _two_clusters(144, 0.12, torch.tensor([0.85, 0.8, 0.75]), torch.tensor([0.3, 0.15, 0.1]), generator)
    white = torch.ones(3)
    view = SearchView.from_render(colours.reshape(12, 12, 3), torch.ones(12, 12), white)
    match = moment_match(colours, painting)
    target = ColourDistribution(painting).of(colours)
    flat = lambda image, opacity: image.sum() * 0 + 1.0  # noqa: E731: no style preference at all

    found = search_palette_map(match, [view], flat, steps=15, colours=target)
    candidates = [float(target.distance(match.matrix(q))) for q in signed_permutations()]
    assert float(target.distance(found)) <= min(candidates) + 1e-4
    assert float(target.distance(found)) < 0.5 * float(target.distance(match.matrix()))
    # the large share of the object is now dark blue, as the painting's is
    mapped = (colours.double() @ found[:, :3].T + found[:, 3]).clamp(0, 1)
    assert float(mapped[:100].mean(0)[2]) > float(mapped[:100].mean(0)[0]) + 0.2
    # without the distribution the search keeps to its two starts and this flat loss moves nothing
    torch.testing.assert_close(search_palette_map(match, [view], flat, steps=5), match.matrix(), atol=1e-9, rtol=0)


def test_a_search_held_to_one_handedness_keeps_to_it_and_unheld_takes_the_better():
    views, painting, match = _views_and_painting()
    wanted = match.matrix(rotation(torch.tensor([0.5, -0.3, 0.8], dtype=torch.float64)))  # a rotation's map
    targets = [view.through(wanted.float()) for view in views]

    def style_loss(image, opacity):
        target = next(t for v, t in zip(views, targets) if v.opacity is opacity)
        return (image - target).pow(2).mean()

    def sign_of(affine):
        return math.copysign(1, float(torch.linalg.det(affine[:, :3])))

    assert sign_of(search_palette_map(match, views, style_loss, steps=20)) == 1
    assert sign_of(search_palette_map(match, views, style_loss, steps=20, sign=-1)) == -1
    target = ColourDistribution(painting).of(torch.cat([v.premultiplied[v.opacity > 0.5] for v in views]))
    assert sign_of(search_palette_map(match, views, style_loss, steps=5, colours=target, sign=-1)) == -1


def test_the_styles_share_the_handedness_that_costs_them_least():
    rotations = [q for q in signed_permutations() if float(torch.linalg.det(q)) > 0]
    mirrors = [q for q in signed_permutations() if float(torch.linalg.det(q)) < 0]

    def screening(best_rotation, best_mirror):
        worse = 9 * max(best_rotation, best_mirror)
        scored = [(best_rotation, rotations[0]), (best_mirror, mirrors[0]), (worse, rotations[1]), (worse, mirrors[1])]
        return sorted(scored, key=lambda item: item[0])

    # the first style slightly prefers a rotation, the second much prefers a mirror: both mirror
    assert shared_handedness([screening(1.0, 1.05), screening(2.0, 1.0)]) == -1
    # scores of another scale weigh as ratios: 10 % worse on a large loss counts as 10 % on a small one
    assert shared_handedness([screening(100.0, 120.0), screening(0.011, 0.01)]) == 1
    assert of_handedness(screening(1.0, 2.0), -1)[0][0] == 2.0 and len(of_handedness(screening(1.0, 2.0), None)) == 4


def test_the_spread_can_weigh_the_colour_distance_as_the_search_does():
    """With a loss that cannot tell spreads apart, the first candidate wins; weighing the colour
    distance too, the spread that leaves the object's colours nearest the painting's does."""
    views, painting, match = _views_and_painting()
    affine = match.matrix()
    object_colours = torch.cat([v.premultiplied[v.opacity > 0.5] for v in views])
    target = ColourDistribution(painting).of(object_colours)
    flat = lambda image, opacity: image.sum() * 0 + 1.0  # noqa: E731
    spreads = (0.3, 0.6, 1.0)
    assert choose_spread(affine, match.content_mean, views, flat, spreads) == 0.3
    distances = [float(target.distance(partial_spread(affine, s, match.content_mean))) for s in spreads]
    nearest = spreads[distances.index(min(distances))]
    assert nearest != 0.3 and choose_spread(affine, match.content_mean, views, flat, spreads, colours=target) == nearest


def test_a_maps_stretch_of_view_differences_is_the_ratio_of_warp_errors_through_it():
    generator = torch.Generator().manual_seed(0)
    differences = torch.randn(5000, 3, generator=generator) * torch.tensor([0.05, 0.01, 0.002])  # views disagree mostly in red
    through = lambda affine: differences @ affine[:, :3].T  # noqa: E731: the offset cancels in a difference
    rms = lambda d: float(d.pow(2).mean().sqrt())  # noqa: E731
    stretch = ViewDifferences(differences)
    assert float(stretch.amplification(torch.eye(3, 4))) == pytest.approx(1.0)
    for _ in range(3):
        affine = torch.randn(3, 4, generator=generator)
        assert float(stretch.amplification(affine)) == pytest.approx(rms(through(affine)) / rms(differences), rel=1e-5)
    # Stretching the direction the views disagree in matters; stretching another hardly does.
    assert float(stretch.amplification(torch.diag(torch.tensor([3.0, 1.0, 1.0, 0.0]))[:3])) > 2.9
    assert float(stretch.amplification(torch.diag(torch.tensor([1.0, 1.0, 3.0, 0.0]))[:3])) < 1.01


def test_weighing_view_differences_the_search_keeps_them_out_of_the_paintings_widest_colour_direction():
    """The painting's colours spread widely along one direction, the views of the object disagree
    along one of its colour directions: every map gives the painting's colour statistics, and with a
    style loss that cannot tell them apart the search takes one that sends the disagreement to the
    painting's narrowest direction, not its widest, where it would flicker the most."""
    generator = torch.Generator().manual_seed(1)
    colours = 0.5 + 0.1 * torch.randn(144, 3, generator=generator)
    painting = 0.5 + torch.randn(4000, 3, generator=generator) @ torch.diag(torch.tensor([0.02, 0.2, 0.05]))
    view = SearchView.from_render(colours.reshape(12, 12, 3), torch.ones(12, 12), torch.ones(3))
    match = moment_match(colours, painting)
    disagreement = ViewDifferences(torch.randn(2000, 3, generator=generator) * torch.tensor([0.03, 0.001, 0.001]))
    flat = lambda image, opacity: image.sum() * 0 + 1.0  # noqa: E731: no style preference at all

    found = search_palette_map(match, [view], flat, steps=5, differences=disagreement)
    stretches = [float(disagreement.amplification(match.matrix(q))) for q in signed_permutations()]
    assert float(disagreement.amplification(found)) <= min(stretches) + 1e-4
    assert float(disagreement.amplification(found)) < 0.3 * max(stretches)
    torch.testing.assert_close(color_statistics(colours.double() @ found[:, :3].T + found[:, 3])[1],
                               color_statistics(painting.double())[1], atol=1e-6, rtol=1e-4)  # the painting's covariance still


def test_with_a_coarse_loss_the_screen_scores_the_48_with_it_and_only_the_best_of_each_handedness_with_its_own():
    """The coarse loss (the loss network at half its size) screens all 48 signed permutations; the
    best few of each handedness in its order are scored again with the search's own loss, which
    alone orders what the screen returns."""
    views, painting, match = _views_and_painting()
    colours = ColourDistribution(painting).of(torch.cat([v.premultiplied[v.opacity > 0.5] for v in views]))
    wanted = match.matrix(rotation(torch.tensor([0.5, -0.3, 0.8], dtype=torch.float64))).float()
    targets = {id(v.opacity): v.through(wanted) for v in views}
    calls = {"own": 0, "coarse": 0}

    def own_loss(image, opacity):
        calls["own"] += 1
        return (image - targets[id(opacity)]).pow(2).mean()

    def coarse_loss(image, opacity):  # the same preference, seen at half the size
        calls["coarse"] += 1
        pooled = [torch.nn.functional.avg_pool2d(x.permute(2, 0, 1)[None], 2) for x in (image, targets[id(opacity)])]
        return (pooled[0] - pooled[1]).pow(2).mean()

    full = PaletteSearch(match, views, own_loss, colours).screen()
    assert calls == {"own": 48 * len(views), "coarse": 0}
    calls["own"] = 0
    screened = PaletteSearch(match, views, own_loss, colours, coarse_loss=coarse_loss).screen()
    assert calls == {"own": 2 * COARSE_SCREEN_KEPT * len(views), "coarse": 48 * len(views)}
    assert [handedness(q) for _, q in screened].count(1) == COARSE_SCREEN_KEPT == [handedness(q) for _, q in screened].count(-1)
    scores = [score for score, _ in screened]
    assert scores == sorted(scores)
    own_scores = {tuple(q.flatten().tolist()): score for score, q in full}
    assert all(score == pytest.approx(own_scores[tuple(q.flatten().tolist())], rel=1e-6) for score, q in screened)
    # here the coarse order keeps the full screen's best of each handedness, so both ways refine the same starts
    for sign in (1, -1):
        assert torch.equal(of_handedness(screened, sign)[0][1], of_handedness(full, sign)[0][1])

    # what the coarse loss ranks last is never scored again, whatever the search's own loss thinks of it
    backwards = PaletteSearch(match, views, own_loss, colours, coarse_loss=lambda image, opacity: -coarse_loss(image, opacity)).screen()
    kept = {tuple(q.flatten().tolist()) for _, q in backwards}
    assert tuple(of_handedness(full, 1)[0][1].flatten().tolist()) not in kept
    # asked for more (a search that refines six starts), it keeps six of each
    calls["own"] = 0
    six = PaletteSearch(match, views, own_loss, colours, coarse_loss=coarse_loss).screen(kept=6)
    assert len(six) == 12 and calls["own"] == 12 * len(views) and [handedness(q) for _, q in six].count(1) == 6


def test_a_coarse_refine_steps_with_the_coarse_loss_and_without_one_with_its_own():
    """`refine(coarse=True)` (tried, not the default: docs/performance.md) takes its steps and its
    final score with the coarse loss alone; a search without a coarse loss refines with its own."""
    views, _, match = _views_and_painting()
    calls = {"own": 0, "coarse": 0}

    def counted(name):
        def loss(image, opacity):
            calls[name] += 1
            return (image - 0.5).pow(2).mean()
        return loss

    start = [torch.eye(3, dtype=torch.float64)]
    steps = 3
    coarse = PaletteSearch(match, views, counted("own"), coarse_loss=counted("coarse")).refine(start, steps, coarse=True)
    assert calls == {"own": 0, "coarse": (steps + 1) * len(views)}
    calls["coarse"] = 0
    own = PaletteSearch(match, views, counted("own")).refine(start, steps, coarse=True)
    assert calls == {"own": (steps + 1) * len(views), "coarse": 0}
    # the same preference either way here, so the same map
    torch.testing.assert_close(coarse, own)
