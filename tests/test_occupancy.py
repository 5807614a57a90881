"""The occupancy grid's partial refresh (what a CPU fit does every few steps)."""

import torch

from ins_core.render.occupancy import OccupancyGrid


def test_a_partial_update_measures_that_share_of_distinct_cells_once_each():
    # Cells drawn twice in one refresh got two writes in one scatter, and which one landed was up to
    # the threads: a fit with the same seed came out different from run to run.
    grid = OccupancyGrid(torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]), resolution=16)
    grid.seed(lambda points: points.norm(dim=-1) < 0.8)  # the cells of a ball, of 4096
    allowed = int(grid.allowed.sum())
    torch.manual_seed(0)
    calls = []

    def sigma(points: torch.Tensor) -> torch.Tensor:
        calls.append(points)
        return torch.full((points.shape[0],), 5.0)

    grid.update(sigma, step_size=0.05, fraction=0.25)
    measured = grid.density >= 0
    assert int(measured.sum()) == sum(p.shape[0] for p in calls) == int(allowed * 0.25)
    assert not (measured & ~grid.allowed).any()
    # A second refresh draws another quarter, which may overlap the first.
    grid.update(sigma, step_size=0.05, fraction=0.25)
    assert int(allowed * 0.25) < int((grid.density >= 0).sum()) <= 2 * int(allowed * 0.25)
