"""A param group without any gradient in a step, against the reference packages.

prodigyopt, dadaptation and schedulefree count such a step for the group: its step count
(``k``) advances, and so do its scalars (Schedule-Free's ``weight_sum``; the estimate ``d``,
which Prodigy and D-Adaptation share among groups). adaptlr must do the same on both paths.
DoG and LDoG are not here: dog-optimizer 1.0.3 fails on a group without gradients.
"""

from __future__ import annotations

import pytest
import torch

import adaptlr

prodigyopt = pytest.importorskip("prodigyopt")
dadaptation = pytest.importorskip("dadaptation")
schedulefree = pytest.importorskip("schedulefree")

STEPS = 12
EMPTY = (3, 7)  # the steps in which one group has no gradient
RTOL = 1e-10

PAIRS = {
    "Prodigy": (adaptlr.Prodigy, prodigyopt.Prodigy, {}, ("d", "d_numerator")),
    "DAdaptAdam": (adaptlr.DAdaptAdam, dadaptation.DAdaptAdam, {}, ("d",)),
    "DAdaptSGD": (adaptlr.DAdaptSGD, dadaptation.DAdaptSGD, {"momentum": 0.9}, ("d",)),
    "DAdaptAdaGrad": (adaptlr.DAdaptAdaGrad, dadaptation.DAdaptAdaGrad, {}, ("d",)),
    "AdamWScheduleFree": (adaptlr.AdamWScheduleFree, schedulefree.AdamWScheduleFree,
                          {"warmup_steps": 3}, ("weight_sum", "lr_max")),
    "SGDScheduleFree": (adaptlr.SGDScheduleFree, schedulefree.SGDScheduleFree,
                        {"lr": 0.1, "warmup_steps": 3}, ("weight_sum", "lr_max")),
    "RAdamScheduleFree": (adaptlr.RAdamScheduleFree, schedulefree.RAdamScheduleFree, {},
                          ("weight_sum", "lr_max")),
}  # fmt: skip


def _params() -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 3, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.randn(4, generator=g, dtype=torch.float64).requires_grad_()
    return [[a], [b]]


def _train(opt: torch.optim.Optimizer, groups: list[list[torch.Tensor]], empty: int) -> None:
    if hasattr(opt, "train"):
        opt.train()
    flat = [p for g in groups for p in g]
    for step in range(STEPS):
        opt.zero_grad()
        loss = sum(((p - 0.7) ** 2 * (i + 1)).sum() + 0.1 * torch.sin(3 * p).sum()
                   for i, p in enumerate(flat))  # fmt: skip
        loss.backward()
        if step in EMPTY:
            for p in groups[empty]:
                p.grad = None
        opt.step()
    if hasattr(opt, "eval"):
        opt.eval()  # the point the packages report (Schedule-Free's x)


# (the fused path takes the same branch for the empty group: one case of it each)
@pytest.mark.parametrize(
    "empty, fused", [(0, False), (1, None)], ids=["first-group-empty", "second-group-empty-fused"]
)
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_a_group_without_gradients_counts_its_step_as_the_package_does(name, empty, fused):
    ours_cls, ref_cls, kw, keys = PAIRS[name]
    mine, ref = _params(), _params()
    opt = ours_cls([{"params": g} for g in mine], fused=fused, **kw)
    ref_opt = ref_cls([{"params": g} for g in ref], **kw)
    _train(opt, mine, empty)
    _train(ref_opt, ref, empty)
    for gi, (got, want) in enumerate(zip(opt.param_groups, ref_opt.param_groups)):
        assert got["applied_steps"] == want["k"] == STEPS, gi
        for key in keys:
            assert abs(got[key] - want[key]) <= RTOL * abs(want[key]), (gi, key)
        for p, q in zip(got["params"], want["params"]):
            err = float((p - q).detach().abs().max())
            assert err <= RTOL * float(q.detach().abs().max()), (gi, err)
