"""Chamfer distance and surface sampling on spheres whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ins_core.eval.mesh_fidelity import chamfer_distance, sample_surface
from test_export_marching_cubes import CENTRE, RADIUS, radii, sphere_mesh


@pytest.fixture(scope="module")
def sphere():
    vertices, faces = sphere_mesh(48)
    return torch.from_numpy(vertices).double(), torch.from_numpy(faces).long()


def test_surface_samples_lie_on_the_mesh_and_spread_over_it(sphere):
    vertices, faces = sphere
    points = sample_surface(vertices, faces, 20000, torch.Generator().manual_seed(1)).numpy()
    assert np.abs(radii(points) - RADIUS).max() < 0.01
    # Uniform by area: each hemisphere (above / below the centre) gets half of the points.
    above = (points[:, 2] > CENTRE[2].item()).mean()
    assert abs(above - 0.5) < 0.02


def test_chamfer_distance_measures_how_far_apart_two_spheres_are(sphere):
    vertices, faces = sphere
    grown = CENTRE.double() + (vertices - CENTRE.double()) * 1.05  # every point 0.03 further out
    apart = chamfer_distance(vertices, faces, grown, faces, samples=5000)
    assert apart["chamfer"] == pytest.approx(0.05 * RADIUS, rel=0.1)
    assert apart["a_to_b"] == pytest.approx(apart["b_to_a"], rel=0.1)
    same = chamfer_distance(vertices, faces, vertices, faces, samples=5000)
    assert same["chamfer"] < 0.2 * apart["chamfer"]  # only the sampling's own spacing
