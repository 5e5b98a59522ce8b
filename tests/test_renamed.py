"""Names that explain themselves, and the old public names kept for one release."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

import adaptlr
from adaptlr import core


def test_magnitudes_are_named_for_what_they_average():
    """sum_sq (Adagrad's sum) and mean_sq (the lecture's mean); rss and rms still resolve."""
    with pytest.warns(DeprecationWarning, match="renamed adaptlr.core.sum_sq"):
        assert core.rss is core.sum_sq
    with pytest.warns(DeprecationWarning, match="renamed adaptlr.core.mean_sq"):
        assert core.rms is core.mean_sq
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        core.nope  # noqa: B018


def test_sum_and_mean_of_squares_by_hand():
    """After gradients 3 then 4: σ = sqrt(9 + 16) for the sum, sqrt((9 + 16) / 2) for the mean."""
    for part, sigma in ((core.sum_sq(eps=0.0), 5.0), (core.mean_sq(eps=0.0), (12.5) ** 0.5)):
        t = core.chain(part)
        p = [torch.zeros(1, dtype=torch.float64)]
        state = t.init(p)
        for g in (3.0, 4.0):
            u, state = t.update([torch.tensor([g], dtype=torch.float64)], state, p)
        assert float(u[0]) == pytest.approx(4.0 / sigma, rel=1e-15)


def test_the_scaling_module_is_not_shadowed_by_the_scale_part():
    module = importlib.import_module("adaptlr.core.scaling")
    assert module.scale is core.scale
    assert isinstance(core.scale(2.0), core.Part)


def test_root_mean_square_has_its_own_module_and_the_old_one_warns():
    from adaptlr.optimizers.root_mean_square import RootMeanSquare

    assert RootMeanSquare is adaptlr.RootMeanSquare
    sys.modules.pop("adaptlr.optimizers.lecture", None)
    with pytest.warns(DeprecationWarning, match="optimizers.root_mean_square"):
        lecture = importlib.import_module("adaptlr.optimizers.lecture")
    assert lecture.RootMeanSquare is RootMeanSquare


def test_effective_lr_takes_a_list_as_init_and_update_do():
    """η/σ after one step of the mean rule is η/(|g| + eps), per tensor, a list in and out."""
    t = core.chain(core.mean_sq(eps=1e-3), core.scale_by_learning_rate(0.1))
    p = [torch.zeros(2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)]
    state = t.init(p)
    g = [torch.tensor([2.0, -0.5], dtype=torch.float64), torch.tensor([4.0], dtype=torch.float64)]
    assert t.effective_lr(state, 0) == [None, None]  # not updated yet
    _, state = t.update(g, state, p, count=0)
    eff = t.effective_lr(state, 1)
    for e, gi in zip(eff, g):
        torch.testing.assert_close(e, 0.1 / (gi.abs() + 1e-3), rtol=1e-14, atol=0)
    with pytest.warns(DeprecationWarning, match="a list in and a list out"):
        one = t.effective_lr(state[0], 1)
    torch.testing.assert_close(one, eff[0], rtol=0, atol=0)
