"""The fast inference renderer draws the reference renderer's picture (issue 12, goal 4)."""

from __future__ import annotations

import math

import pytest
import torch

from ins_core.data.cameras import Intrinsics, look_at
from ins_core.fields.encodings import HashGridEncoding
from ins_core.fields.stylization import StylizationConfig
from ins_core.render.fast import fast_renderer
from ins_core.render.lattice import LatticeEncoding, with_lattice_encodings
from ins_core.render.views import render_view
from ins_core.train.scene_models import NerfModel, SdfModel, StylizedModel

SIZE = 24
FIELD = {"n_levels": 6, "log2_table_size": 12, "base_resolution": 4, "max_resolution": 48}
AABB = torch.tensor([[-0.6, -0.5, -0.4], [0.6, 0.5, 0.4]])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10.0 * math.log10(max(float(((a - b) ** 2).mean()), 1e-12))


def _camera(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    eye = torch.tensor([math.cos(1.3 * k), math.sin(1.3 * k), 0.6]) * 2.0
    return look_at(eye, torch.zeros(3)), Intrinsics.from_fov(math.radians(40), SIZE, SIZE).as_tensor()


def _busy(model: torch.nn.Module) -> torch.nn.Module:
    """A small untrained model with structure: large random hash tables (features vary in space)
    and a density that swings from empty to opaque, so about half the rays saturate (early
    termination) and the occupancy grid empties some cells."""
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, HashGridEncoding):
                module.table.uniform_(-1.0, 1.0)
        for name, parameter in model.named_parameters():
            if name.endswith(("feature_head.2.weight", "feature_head.2.bias", "grid_color.weight")):
                parameter.normal_(0.0, 0.3)  # a style that changes the colours, through the MLPs and the grid's own path
        if isinstance(model, NerfModel):
            model.field.density_mlp[-1].weight[0] *= 40.0
            model.grid.update(model.field.sigma, model.step_size)
    return model.eval()


def _nerf() -> NerfModel:
    return _busy(NerfModel(AABB, FIELD, n_samples=48, grid_resolution=16))


def _stylized(density_blend: float) -> StylizedModel:
    content = _nerf()
    model = StylizedModel(content, StylizationConfig(n_levels=4, log2_table_size=12, max_resolution=64, hidden_dim=32, grid_color_path=True))
    model = _busy(model)
    with torch.no_grad():
        model.field.am.density_blend.fill_(density_blend)
    return model


def _sdf() -> SdfModel:
    return _busy(SdfModel(AABB, FIELD, n_samples=48))


def _stylized_sdf(density_blend: float = 1.0) -> StylizedModel:
    model = _busy(StylizedModel(_sdf(), StylizationConfig(n_levels=4, log2_table_size=12, max_resolution=64, hidden_dim=32)))
    with torch.no_grad():
        model.field.am.density_blend.fill_(density_blend)
    return model


def test_lattice_encoding_equals_the_hash_grid():
    torch.manual_seed(1)
    encoding = HashGridEncoding(3, 6, 2, 10, 4, 64)  # coarse levels dense, fine ones hashed
    with torch.no_grad():
        encoding.table.uniform_(-1.0, 1.0)
    x = torch.rand(500, 3)
    for budget in (0, 1 << 12, 1 << 20):  # all read from the table, some written out, all written out
        assert torch.allclose(LatticeEncoding(encoding, budget)(x), encoding(x), atol=1e-5)
        # No points at all (a block of rays that sees nothing): no rows, as wide as the encoding.
        assert LatticeEncoding(encoding, budget)(torch.empty(0, 3)).shape == (0, encoding.output_dim)


def test_lattice_view_shares_the_parameters_and_follows_a_changed_table():
    model = _nerf()
    first = with_lattice_encodings(model.field)
    assert with_lattice_encodings(model.field) is first
    with torch.no_grad():
        model.field.position_encoding.table.mul_(0.5)  # as an optimiser step would
    assert with_lattice_encodings(model.field) is not first


@pytest.mark.parametrize("make", [_nerf, lambda: _stylized(1.0), lambda: _stylized(0.7), _sdf, _stylized_sdf, lambda: _stylized_sdf(0.7)],
                         ids=["nerf", "stylized-kept-geometry", "stylized-own-density", "sdf", "stylized-sdf", "stylized-sdf-own-geometry"])
def test_fast_frame_is_the_reference_frame(make):
    model = make()
    assert fast_renderer(model) is not None
    background = torch.tensor([1.0, 1.0, 1.0])
    for k in range(2):
        c2w, intrinsics = _camera(k)
        reference = render_view(model, c2w, intrinsics, SIZE, SIZE, background, fast=False)
        fast = render_view(model, c2w, intrinsics, SIZE, SIZE, background)
        assert reference.opacity.max() > 0.5  # the frame shows something
        # Issue 12 asks for 0.5 dB against the reference; the same samples give far more than that.
        assert psnr(fast.rgb, reference.rgb) > 40.0
        assert (fast.opacity - reference.opacity).abs().max() < 1e-3


@pytest.mark.parametrize("make", [_nerf, lambda: _stylized(1.0)], ids=["nerf", "stylized-kept-geometry"])
def test_a_fast_frame_that_sees_nothing_is_the_background(make):
    """A camera looking away from the scene box: no ray finds a visible sample (as in a render
    server's chunk of sky), and the frame is the background."""
    model = make()
    eye = torch.tensor([2.0, 0.0, 1.2])
    c2w = look_at(eye, eye * 2.0)  # facing away from the box
    intrinsics = Intrinsics.from_fov(math.radians(40), SIZE, SIZE).as_tensor()
    background = torch.tensor([0.2, 0.4, 0.6])
    frame = render_view(model, c2w, intrinsics, SIZE, SIZE, background)
    assert torch.equal(frame.opacity, torch.zeros_like(frame.opacity))
    assert torch.equal(frame.rgb, background.expand_as(frame.rgb))


def test_training_models_keep_the_reference_renderer():
    model = _nerf().train()
    assert fast_renderer(model) is None


@pytest.mark.parametrize("make", [lambda: _stylized(1.0), _stylized_sdf], ids=["stylized-nerf", "stylized-sdf"])
def test_worker_threads_draw_the_same_frame(make):
    """Bit for bit what one thread draws in the same chunks of rays; to rounding what it draws in one
    piece (a matrix product's last bits may change with its number of rows)."""
    model = make()
    c2w, intrinsics = _camera(0)
    chunk = SIZE * SIZE // 2  # what two workers take for a frame this small
    serial = render_view(model, c2w, intrinsics, SIZE, SIZE, chunk=chunk)
    whole = render_view(model, c2w, intrinsics, SIZE, SIZE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the render server runs them
    try:
        parallel = render_view(model, c2w, intrinsics, SIZE, SIZE, workers=2)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(parallel.rgb, serial.rgb) and torch.equal(parallel.opacity, serial.opacity)
    torch.testing.assert_close(parallel.rgb, whole.rgb, atol=1e-6, rtol=0)


def test_a_foggy_stylized_nerf_is_coloured_at_a_few_samples_per_ray(monkeypatch):
    """Where a ray's weight spreads over many samples, the style modules run at no more than
    COLOUR_SAMPLES of them, which carry the ray's weight between them; the frame stays the reference's."""
    from ins_core.render.nerf_march import COLOUR_SAMPLES

    content = _nerf()
    model = _stylized(1.0)
    with torch.no_grad():  # a fog: every sample takes about 3 % of what reaches it
        model.field.content.density_mlp[-1].weight[0].zero_()
        model.field.content.density_mlp[-1].bias[0].fill_(1.4)
        model.grid.update(model.field.content.sigma, content.step_size)  # the content's grid, shared
    styled = {"reference": 0, "fast": 0}
    for name, field in (("reference", model.field), ("fast", with_lattice_encodings(model.field))):
        own = field.sim.feature_and_encoding
        monkeypatch.setattr(field.sim, "feature_and_encoding", lambda x, *rest, _own=own, _name=name: styled.__setitem__(_name, styled[_name] + x.shape[0]) or _own(x, *rest))
    c2w, intrinsics = _camera(0)
    reference = render_view(model, c2w, intrinsics, SIZE, SIZE, torch.ones(3), fast=False)
    fast = render_view(model, c2w, intrinsics, SIZE, SIZE, torch.ones(3))
    hit_rays = int((reference.opacity > 0).sum())
    assert styled["reference"] > 1.5 * COLOUR_SAMPLES * hit_rays  # the reference colours far more
    assert 0 < styled["fast"] <= COLOUR_SAMPLES * hit_rays
    assert psnr(fast.rgb, reference.rgb) > 40.0
    assert (fast.opacity - reference.opacity).abs().max() < 1e-3


def test_a_sharp_sdf_is_drawn_from_its_surface_band_alone(monkeypatch):
    """A trained SDF is sharp (large s): the fast path evaluates the field only in a thin band
    around the surface and colours only the intervals carrying weight, and still draws the
    reference frame."""
    from ins_core.data.cameras import image_pixels, rays_from_pixels
    from ins_core.render import sdf_fast

    model = _sdf()
    with torch.no_grad():
        model.field.variance.fill_(0.6)  # s = e^6, about 400: a surface a few hundredths thick
    field = with_lattice_encodings(model.field)
    bounds = sdf_fast.sdf_bounds(field)
    evaluated = []
    own_sdf = field.sdf
    monkeypatch.setattr(field, "sdf", lambda x: evaluated.append(x.shape[0]) or own_sdf(x))  # count, same code
    c2w, intrinsics = _camera(0)
    origins, directions = rays_from_pixels(image_pixels(SIZE, SIZE), c2w, intrinsics)
    fast = sdf_fast.render_sdf_rays_fast(field, bounds, origins, directions, model.n_samples, torch.ones(origins.shape[0], 3))
    reference = render_view(model, c2w, intrinsics, SIZE, SIZE, torch.ones(3), fast=False)
    assert reference.opacity.max() > 0.5
    assert psnr(fast.rgb.view(SIZE, SIZE, 3), reference.rgb) > 40.0
    assert 0 < sum(evaluated) < 0.25 * origins.shape[0] * (model.n_samples + 1)  # most samples skipped


def test_a_stylized_sdf_that_keeps_its_geometry_runs_the_style_only_where_colour_is_needed(monkeypatch):
    """The AM's blend at 1 makes the stylized SDF the content's: its band and normals come from the
    content field, and the style modules run only at the ends of the intervals that get colour."""
    model = _stylized_sdf()
    with torch.no_grad():
        model.field.content.variance.fill_(0.6)  # sharp: a thin band, few coloured intervals
    field = with_lattice_encodings(model.field)
    styled, gradients = [], []
    own_forward, own_gradient = field.sim.feature_and_encoding, field.content.sdf_with_gradient
    monkeypatch.setattr(field.sim, "feature_and_encoding", lambda x, *rest: styled.append(x.shape[0]) or own_forward(x, *rest))
    monkeypatch.setattr(field.content, "sdf_with_gradient", lambda x, **k: gradients.append(x.shape[0]) or own_gradient(x, **k))
    c2w, intrinsics = _camera(0)
    reference = render_view(model, c2w, intrinsics, SIZE, SIZE, torch.ones(3), fast=False)
    styled.clear(), gradients.clear()
    fast = render_view(model, c2w, intrinsics, SIZE, SIZE, torch.ones(3))
    assert psnr(fast.rgb, reference.rgb) > 40.0
    assert 0 < sum(styled) == sum(gradients) < 0.1 * SIZE * SIZE * (model.n_samples + 1)


def test_a_stylized_sdf_with_its_own_geometry_follows_the_style_mix():
    """Where the AM blends in a geometry of its own, the SDF moves with the style mix: the fast
    path's coarse grid must follow it, frame after frame."""
    model = _busy(StylizedModel(_sdf(), StylizationConfig(n_styles=2, n_levels=4, log2_table_size=12, max_resolution=64, hidden_dim=32)))
    with torch.no_grad():
        model.field.am.density_blend.fill_(0.8)
        model.field.am.density_head[-1].weight.normal_(0.0, 0.1)  # an own geometry unlike the content's
        model.field.sim.net[0].weight[:, :2].normal_(0.0, 20.0)  # ... that each style moves a long way
        model.field.content.variance.fill_(0.6)  # sharp, so a stale grid would show
    c2w, intrinsics = _camera(1)
    for mix in ([1.0, 0.0], [0.0, 1.0]):
        model.set_style(mix)
        reference = render_view(model, c2w, intrinsics, SIZE, SIZE, torch.ones(3), fast=False)
        fast = render_view(model, c2w, intrinsics, SIZE, SIZE, torch.ones(3))
        assert psnr(fast.rgb, reference.rgb) > 40.0, mix


def test_a_march_in_small_field_calls_draws_the_frame_of_one_call(monkeypatch):
    """A GPU calls the field on far larger chunks than a CPU (`field_chunk`); the chunk size must
    not change the picture, only how many calls draw it."""
    from ins_core.render import nerf_march

    assert nerf_march.field_chunk(torch.device("cpu")) == nerf_march.FIELD_CHUNK
    assert nerf_march.field_chunk(torch.device("cuda")) > nerf_march.FIELD_CHUNK
    model = _stylized(1.0)
    c2w, intrinsics = _camera(0)
    background = torch.tensor([1.0, 1.0, 1.0])
    whole = render_view(model, c2w, intrinsics, SIZE, SIZE, background)
    calls = []
    in_chunks = nerf_march._in_chunks

    def counted(fn, *inputs):
        return in_chunks(lambda *rows: calls.append(len(rows[0])) or fn(*rows), *inputs)

    monkeypatch.setattr(nerf_march, "FIELD_CHUNK", 37)
    monkeypatch.setattr(nerf_march, "_in_chunks", counted)
    pieces = render_view(model, c2w, intrinsics, SIZE, SIZE, background)
    assert max(calls) <= 37 and len(calls) > 10  # the march did run in small calls
    torch.testing.assert_close(pieces.rgb, whole.rgb, atol=1e-6, rtol=0)
    torch.testing.assert_close(pieces.opacity, whole.opacity, atol=1e-6, rtol=0)
