"""A mix of styles mixes their colour maps through rotation and stretch apart, so the middle of a
morph keeps its contrast."""

import math

import pytest
import torch

from ins_core.fields.color_mix import mean_rotation, mix_color_maps, polar_parts, quaternion_to_rotation, rotation_to_quaternion
from ins_core.train.palette_match import rotation, signed_permutations


def _angle_between(a: torch.Tensor, b: torch.Tensor) -> float:
    return math.acos(max(-1.0, min(1.0, (float((a.T @ b).trace()) - 1) / 2)))


def _about_axis(axis, angle: float) -> torch.Tensor:
    axis = torch.nn.functional.normalize(torch.tensor(axis, dtype=torch.float64), dim=0)
    skew = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=torch.float64)
    return torch.linalg.matrix_exp(angle * skew)


def test_quaternions_give_back_their_rotations_even_half_turns():
    generator = torch.Generator().manual_seed(0)
    random = [rotation(torch.randn(3, generator=generator, dtype=torch.float64) * 2) for _ in range(50)]
    cube = [q for q in signed_permutations() if float(torch.linalg.det(q)) > 0]  # half turns among them
    half_turns = [_about_axis(axis, math.pi) for axis in ([1, 0, 0], [1, 1, 0], [0.3, -0.5, 0.8])]
    rotations = torch.stack(random + cube + half_turns)
    quaternions = rotation_to_quaternion(rotations)
    torch.testing.assert_close(quaternions.norm(dim=-1), torch.ones(len(rotations), dtype=torch.float64))
    torch.testing.assert_close(quaternion_to_rotation(quaternions), rotations, atol=1e-9, rtol=0)


def test_polar_parts_are_orthogonal_times_symmetric_positive():
    matrices = torch.randn(6, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    orthogonal, stretch = polar_parts(matrices)
    torch.testing.assert_close(orthogonal @ stretch, matrices)
    torch.testing.assert_close(orthogonal @ orthogonal.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(6, 3, 3))
    torch.testing.assert_close(stretch, stretch.transpose(-1, -2))
    assert float(torch.linalg.eigvalsh(stretch).min()) >= 0


@pytest.mark.parametrize("angle", [0.3, 2.0, 3.0])
def test_the_mean_of_two_rotations_lies_on_the_shortest_arc_between_them(angle):
    start = rotation(torch.tensor([0.4, -0.2, 0.9], dtype=torch.float64))
    end = start @ _about_axis([0.2, 1.0, -0.4], angle)
    for t in (0.0, 0.25, 0.5, 0.8, 1.0):
        middle = mean_rotation(torch.stack([start, end]), torch.tensor([1 - t, t], dtype=torch.float64))
        to_start, to_end = _angle_between(start, middle), _angle_between(middle, end)
        assert to_start + to_end == pytest.approx(angle, abs=1e-6)  # on the arc
        assert (to_start < to_end) == (t < 0.5) or t == 0.5
    halfway = mean_rotation(torch.stack([start, end]), torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert _angle_between(start, halfway) == pytest.approx(angle / 2, abs=1e-6)


def _maps_half_a_turn_apart():
    """Two maps that stretch colour differences alike but turn them half a turn apart (a blue in one
    is an orange in the other), each matched about its own centre."""
    gains = torch.diag(torch.tensor([1.6, 0.9, 0.4], dtype=torch.float64))
    first = rotation(torch.tensor([0.3, 0.1, -0.2], dtype=torch.float64))
    second = first @ _about_axis([0.0, 0.3, 1.0], math.pi)
    centres = torch.tensor([[0.5, 0.45, 0.4], [0.6, 0.5, 0.3]], dtype=torch.float64)
    landing = torch.tensor([[0.2, 0.3, 0.6], [0.8, 0.5, 0.2]], dtype=torch.float64)  # the paintings' means
    maps = []
    for turn, centre, mean in zip((first, second), centres, landing):
        matrix = turn @ gains
        maps.append(torch.cat([matrix, (mean - matrix @ centre)[:, None]], dim=1))
    return torch.stack(maps), centres, landing


def test_a_single_style_keeps_its_own_map():
    maps, centres, _ = _maps_half_a_turn_apart()
    for k in range(2):
        weights = torch.zeros(2, dtype=torch.float64)
        weights[k] = 1.0
        torch.testing.assert_close(mix_color_maps(maps, centres, weights), maps[k], atol=1e-9, rtol=0)


def test_the_middle_of_two_maps_keeps_their_contrast_where_averaging_them_loses_it():
    maps, centres, landing = _maps_half_a_turn_apart()
    weights = torch.tensor([0.5, 0.5], dtype=torch.float64)
    mixed = mix_color_maps(maps, centres, weights)
    averaged = (weights[:, None, None] * maps).sum(0)
    # averaging the matrices flattens the colour differences (half a turn cancels two directions)
    assert float(torch.linalg.svdvals(averaged[:, :3])[1]) < 0.05
    torch.testing.assert_close(torch.linalg.svdvals(mixed[:, :3]), torch.tensor([1.6, 0.9, 0.4], dtype=torch.float64))
    # the mix's mean colour lies halfway between the paintings'
    torch.testing.assert_close(mixed[:, :3] @ centres.mean(0) + mixed[:, 3], landing.mean(0))
    # and its turn lies halfway along the arc
    turns = polar_parts(torch.stack([maps[0, :, :3], maps[1, :, :3], mixed[:, :3]]))[0]
    assert _angle_between(turns[0], turns[2]) == pytest.approx(math.pi / 2, abs=1e-6)
    assert _angle_between(turns[2], turns[1]) == pytest.approx(math.pi / 2, abs=1e-6)


def test_maps_of_opposite_handedness_mix_as_matrices():
    """A rotation cannot turn into a mirror image without passing a flat map; those mix as before."""
    maps, centres, _ = _maps_half_a_turn_apart()
    maps[1, :, :3] = maps[1, :, :3] * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    weights = torch.tensor([0.3, 0.7], dtype=torch.float64)
    mixed = mix_color_maps(maps, centres, weights)
    torch.testing.assert_close(mixed[:, :3], (weights[:, None, None] * maps[:, :, :3]).sum(0))
    torch.testing.assert_close(mixed[:, :3] @ (weights @ centres) + mixed[:, 3],
                               (weights[:, None] * ((maps[:, :, :3] @ centres[:, :, None]).squeeze(-1) + maps[:, :, 3])).sum(0))


def test_the_mix_comes_back_in_the_maps_dtype():
    maps, centres, _ = _maps_half_a_turn_apart()
    assert mix_color_maps(maps.float(), centres.float(), torch.tensor([0.4, 0.6])).dtype == torch.float32
