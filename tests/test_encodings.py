"""Hash-grid interpolation and gradients, Fourier features, spherical harmonics."""

import itertools
import math

import pytest
import torch

from ins_core.fields.encodings import FourierEncoding, HashGridEncoding, SphericalHarmonicsEncoding, blend_corners


def _single_level(in_dim: int, resolution: int, log2_table: int = 18) -> HashGridEncoding:
    return HashGridEncoding(in_dim, n_levels=1, features_per_level=1, log2_table_size=log2_table, base_resolution=resolution, max_resolution=resolution)


def test_dense_level_interpolates_a_linear_function_exactly():
    grid = _single_level(3, 8)
    # Table entry of corner (i, j, k) (dense index i + 9 j + 81 k) holds 2i - j + 0.5k.
    ijk = torch.stack(torch.meshgrid(*[torch.arange(9)] * 3, indexing="ij"), -1).reshape(-1, 3)
    index = ijk[:, 0] + 9 * ijk[:, 1] + 81 * ijk[:, 2]
    values = (2 * ijk[:, 0] - ijk[:, 1] + 0.5 * ijk[:, 2]).float()
    with torch.no_grad():
        grid.table[index, 0] = values
    x = torch.rand(200, 3, requires_grad=True)
    out = grid(x)[:, 0]
    expected = 8 * (2 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2])
    assert torch.allclose(out, expected, atol=1e-4)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.allclose(grad, torch.tensor([16.0, -8.0, 4.0]).expand(200, 3), atol=1e-3)


def test_output_matches_corner_values_at_grid_vertices():
    grid = _single_level(2, 4)
    with torch.no_grad():
        grid.table.normal_()
    vertex = torch.tensor([[1 / 4, 3 / 4]])  # corner (1, 3): dense index 1 + 5 * 3
    assert torch.allclose(grid(vertex)[0, 0], grid.table[16, 0], atol=1e-5)


def test_hashed_levels_stay_inside_their_table_and_collide_deterministically():
    grid = HashGridEncoding(3, n_levels=4, features_per_level=2, log2_table_size=10, base_resolution=16, max_resolution=128)
    assert not grid.dense_levels[-1]  # 129^3 corners cannot fit 2^10 slots
    x = torch.rand(5000, 3)
    out1, out2 = grid(x), grid(x)
    assert torch.equal(out1, out2)
    assert grid.table.shape[0] <= 4 * 2**10


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    grid = HashGridEncoding(3, n_levels=6, features_per_level=2, log2_table_size=12, base_resolution=4, max_resolution=64)
    with torch.no_grad():
        grid.table.normal_()
    weights = torch.randn(grid.output_dim)
    x = torch.rand(30, 3, dtype=torch.float32) * 0.9 + 0.05
    x.requires_grad_(True)
    (analytic,) = torch.autograd.grad((grid(x) * weights).sum(), x)
    eps = 1e-3
    resolutions = grid.level_resolution
    for d in range(3):
        step = torch.zeros(3)
        step[d] = eps
        with torch.no_grad():
            numeric = ((grid(x + step) * weights).sum(-1) - (grid(x - step) * weights).sum(-1)) / (2 * eps)
            # The encoding is multilinear inside a cell: compare only where no level crosses a cell wall.
            same_cell = (((x + step)[:, None, :] * resolutions[:, None]).floor() == ((x - step)[:, None, :] * resolutions[:, None]).floor()).all(-1).all(-1)
        assert same_cell.sum() >= 10
        assert torch.allclose(analytic[same_cell, d], numeric[same_cell], rtol=1e-2, atol=1e-2)
    # Table gradients exist exactly for the rows the points touched.
    grid.zero_grad()
    grid(x).sum().backward()
    assert (grid.table.grad.abs().sum(-1) > 0).sum() > 0


def test_fourier_encoding_values():
    enc = FourierEncoding(1, 2, include_input=True)
    out = enc(torch.tensor([[0.5]]))
    expected = torch.tensor([[0.5, math.sin(0.5), math.sin(1.0), math.cos(0.5), math.cos(1.0)]])
    assert enc.output_dim == 5
    assert torch.allclose(out, expected, atol=1e-6)


def test_spherical_harmonics_are_orthonormal_on_the_sphere():
    torch.manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(200000, 3), dim=-1)
    basis = SphericalHarmonicsEncoding(4)(d)
    gram = basis.T @ basis * (4 * math.pi / d.shape[0])
    assert torch.allclose(gram, torch.eye(16), atol=0.03)


def _spatial_hash_rows(grid: HashGridEncoding, level: int, cells: list[tuple[int, ...]]) -> list[list[int]]:
    """Each cell's corner rows from the published hash in Python integers (no overflow, no tricks)."""
    size = grid.hash_mask + 1
    rows = []
    for cell in cells:
        corner_rows = []
        for corner in itertools.product((0, 1), repeat=grid.in_dim):
            coords = [c + o for c, o in zip(cell, corner)]
            index = 0
            for coordinate, prime in zip(coords, (1, 2654435761, 805459861, 3674653429)):
                index ^= coordinate * prime
            corner_rows.append((index % size) + grid.level_offsets[level])
        rows.append(sorted(corner_rows))
    return rows


@pytest.mark.parametrize("log2_table", [19, 22], ids=["int32-products", "int64-products"])
def test_hashed_rows_are_the_spatial_hash_even_at_the_finest_cells(log2_table):
    grid = HashGridEncoding(3, n_levels=2, features_per_level=2, log2_table_size=log2_table, base_resolution=1024, max_resolution=2048)
    level = 1
    assert not grid.dense_levels[level]
    cells = [(0, 0, 0), (2047, 2047, 2047), (1, 1500, 2047), (1234, 5, 999)]
    rows = grid.level_rows(torch.tensor(cells, dtype=torch.float32), level)
    assert sorted(map(sorted, rows.tolist())) == sorted(_spatial_hash_rows(grid, level, cells))


def test_all_levels_at_once_equal_each_level_read_alone_with_the_same_gradients():
    torch.manual_seed(0)
    grid = HashGridEncoding(3, n_levels=5, features_per_level=2, log2_table_size=11, base_resolution=4, max_resolution=96)
    assert grid.dense_levels[0] and not grid.dense_levels[-1]  # both kinds of level
    with torch.no_grad():
        grid.table.normal_()
    x = torch.rand(300, 3, requires_grad=True)
    together = grid(x)
    alone = torch.cat([grid.read_level(x, level) for level in range(grid.n_levels)], dim=1)
    assert torch.allclose(together, alone, atol=1e-6)
    weights = torch.randn(grid.output_dim)
    (together_grad,) = torch.autograd.grad((together * weights).sum(), x)
    (alone_grad,) = torch.autograd.grad((alone * weights).sum(), x)
    assert torch.allclose(together_grad, alone_grad, atol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_the_grids_two_ways_of_finding_rows_give_the_same_features_and_gradients(dims):
    """A GPU finds every level's rows in one pass, a CPU level by level: they must compute the same thing."""
    torch.manual_seed(0)
    grid = HashGridEncoding(dims, n_levels=8, features_per_level=2, log2_table_size=12 if dims == 3 else 9,
                            base_resolution=4, max_resolution=256)
    assert any(grid.dense_levels) and not all(grid.dense_levels)  # both kinds of level are compared
    with torch.no_grad():
        grid.table.normal_()
    x = torch.rand(500, dims, requires_grad=True)
    cells = (x.detach()[:, None] * grid.level_resolution[None, :, None]).floor()
    assert torch.equal(grid.rows_all_levels(cells), grid.rows_level_by_level(cells))
    _assert_both_ways_agree(grid, x, "lookups", ("levels", "all"))


def _assert_both_ways_agree(grid: HashGridEncoding, x: torch.Tensor, choice: str, ways: tuple[str, str]) -> None:
    """The grid's features, and their gradients for the positions and the table, are the same whichever
    of the two `ways` its attribute `choice` is set to (then set back to the class's)."""
    outputs, gradients = [], []
    try:
        for way in ways:
            setattr(grid, choice, way)
            out = grid(x)
            weights = torch.linspace(-1, 1, out.numel()).view_as(out)
            gradients.append(torch.autograd.grad((out * weights).sum(), [x, grid.table]))
            outputs.append(out.detach())
    finally:
        delattr(grid, choice)
    assert outputs[0].abs().max() > 0.1  # the table is not near zero, so the comparison means something
    torch.testing.assert_close(outputs[1], outputs[0])
    for second, first in zip(gradients[1], gradients[0]):
        torch.testing.assert_close(second, first)


@pytest.mark.parametrize("dims", [2, 3])
def test_the_grids_two_ways_of_blending_corners_give_the_same_features_and_gradients(dims):
    """A CPU blends with batched matrix products, a GPU multiplies and sums: the same features and gradients."""
    torch.manual_seed(0)
    grid = HashGridEncoding(dims, n_levels=6, features_per_level=2, log2_table_size=10, base_resolution=4, max_resolution=128)
    with torch.no_grad():
        grid.table.normal_()
    x = torch.rand(400, dims, requires_grad=True)
    _assert_both_ways_agree(grid, x, "blend", ("matmul", "sum"))


def test_an_unknown_blend_is_refused_by_name():
    with pytest.raises(ValueError, match="blend must be one of"):
        blend_corners(torch.ones(2, 8), torch.ones(2, 8, 2), "fast")
