"""The fields' colour activation: white and black within reach, and no colour stuck saturated."""

from __future__ import annotations

import math

import pytest
import torch

from ins_core.fields.activations import color_activation


def test_the_colour_activation_reaches_white_at_a_finite_logit_and_a_saturated_colour_comes_back():
    """The failure it prevents: Adam (steps that do not shrink with the gradient, eps 1e-15 as
    the trainer has it) chasing a white target through a plain sigmoid runs the logit away, and
    once it is saturated a colour that should darken gets no gradient at all."""

    def chase(activation, target: float, start: float, steps: int = 3000) -> float:
        logit = torch.tensor([start], requires_grad=True)
        optimizer = torch.optim.Adam([logit], lr=0.1, betas=(0.9, 0.99), eps=1e-15)
        for _ in range(steps):
            optimizer.zero_grad()
            ((activation(logit) - target) ** 2).sum().backward()
            optimizer.step()
        return float(logit.detach())

    assert chase(torch.sigmoid, 1.0, 0.0) > 10  # still climbing: white lies at infinity
    assert 6.0 < chase(color_activation, 1.0, 0.0) < 8.0  # white at about 6.9, and it stays there
    assert chase(torch.sigmoid, 0.2, 120.0, steps=200) == 120.0  # dead: no gradient at all
    assert abs(chase(color_activation, 0.2, 120.0) - math.log(0.2 / 0.8)) < 0.05  # comes back to the target
    values = color_activation(torch.tensor([-50.0, 0.0, 50.0]))
    assert values.tolist() == [0.0, pytest.approx(0.5), 1.0]  # held to [0, 1]: what every colour is
