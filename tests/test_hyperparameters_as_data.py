"""Hyperparameters are data: a new number in a param group reaches the kernel as a coefficient.

The chain and its traced program depend on the structure only (which parts, which flags); a
scheduler or a hand that writes ``lr``, ``betas``, ``eps``, ``momentum`` or ``weight_decay``
between steps rebuilds and retraces nothing, is checked before it is used, and gives what
torch.optim gives with the same writes.
"""

from __future__ import annotations

import pytest
import torch

import adaptlr
from adaptlr import core, kernels


def _counting(opt: adaptlr.Optimizer) -> list[dict]:
    """Record every call of ``opt``'s chain factory."""
    built: list[dict] = []
    factory = opt._factory

    def counting(**hyper):
        built.append(hyper)
        return factory(**hyper)

    opt._factory = counting
    return built


@pytest.mark.parametrize("fused", [None, False])
def test_one_cycle_cycling_betas_matches_torch_and_builds_once(fused):
    """OneCycleLR writes lr and betas[0] every step: one chain, torch.optim.Adam's numbers."""
    wa = torch.nn.Parameter(torch.linspace(-1, 1, 40, dtype=torch.float64))
    wb = torch.nn.Parameter(wa.detach().clone())
    ours = adaptlr.Adam([wa], lr=0.05, weight_decay=0.01, fused=fused)
    theirs = torch.optim.Adam([wb], lr=0.05, weight_decay=0.01, foreach=False)
    built = _counting(ours)
    scheds = [
        torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=15, cycle_momentum=True)
        for o in (ours, theirs)
    ]
    betas_seen = set()
    for t in range(15):
        for w, o, s in zip((wa, wb), (ours, theirs), scheds):
            w.grad = torch.cos(w.detach() * (t + 2))
            o.step()
            s.step()
        betas_seen.add(ours.param_groups[0]["betas"][0])
    assert len(betas_seen) > 10  # the scheduler really moved β1
    assert len(built) == 1, built
    torch.testing.assert_close(wa, wb, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("fused", [None, False])
def test_hand_written_numbers_take_effect_without_a_rebuild(fused):
    """eps, β2, momentum and weight_decay written by hand, as torch.optim takes them."""
    for ours_cls, theirs_cls, kw, changes in [
        (adaptlr.Adam, torch.optim.Adam, {"lr": 0.01}, {"eps": 1e-3, "betas": (0.8, 0.9)}),
        (adaptlr.SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}, {"momentum": 0.5}),
        (adaptlr.RMSprop, torch.optim.RMSprop, {"lr": 0.01}, {"alpha": 0.5, "eps": 0.1}),
        (adaptlr.Adagrad, torch.optim.Adagrad, {"lr": 0.1, "lr_decay": 0.1}, {"lr_decay": 0.5}),
        (adaptlr.NAdam, torch.optim.NAdam, {"lr": 0.01}, {"momentum_decay": 0.1}),
        (adaptlr.RAdam, torch.optim.RAdam, {"lr": 0.01}, {"betas": (0.5, 0.9)}),
        (adaptlr.AdamW, torch.optim.AdamW, {"lr": 0.01}, {"weight_decay": 0.3}),
    ]:
        wa = torch.nn.Parameter(torch.linspace(-1, 1, 30, dtype=torch.float64))
        wb = torch.nn.Parameter(wa.detach().clone())
        ours = ours_cls([wa], fused=fused, **kw)
        theirs = theirs_cls([wb], foreach=False, **kw)
        built = _counting(ours)
        for t in range(8):
            if t == 4:
                for o in (ours, theirs):
                    o.param_groups[0].update(changes)
            for w, o in ((wa, ours), (wb, theirs)):
                w.grad = torch.sin(w.detach() * (t + 1))
                o.step()
        assert len(built) == 1, (ours_cls.__name__, built)
        torch.testing.assert_close(wa, wb, rtol=1e-12, atol=1e-14, msg=ours_cls.__name__)


def test_a_zero_that_drops_a_part_rebuilds_and_matches_torch():
    """weight_decay 0 -> 0.1 adds a part: the one change of structure a number can make."""
    wa = torch.nn.Parameter(torch.linspace(-1, 1, 30, dtype=torch.float64))
    wb = torch.nn.Parameter(wa.detach().clone())
    ours = adaptlr.SGD([wa], lr=0.1, momentum=0.9)
    theirs = torch.optim.SGD([wb], lr=0.1, momentum=0.9, foreach=False)
    built = _counting(ours)
    for t in range(6):
        if t == 3:
            for o in (ours, theirs):
                o.param_groups[0]["weight_decay"] = 0.1
        for w, o in ((wa, ours), (wb, theirs)):
            w.grad = torch.sin(w.detach() * (t + 1))
            o.step()
    assert len(built) == 2
    torch.testing.assert_close(wa, wb, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("betas", (1.5, 0.999), ValueError),
        ("eps", -1.0, ValueError),
        ("weight_decay", float("nan"), ValueError),
        ("lr", -0.1, ValueError),
        ("amsgrad", "yes", TypeError),
    ],
)
def test_a_bad_number_written_between_steps_is_refused_before_anything_changes(key, value, error):
    w = torch.nn.Parameter(torch.ones(3))
    opt = adaptlr.Adam([w], lr=0.1)
    w.grad = torch.ones(3)
    opt.step()
    before = w.detach().clone()
    state = {k: v.clone() for k, v in opt.state[w].items()}
    opt.param_groups[0][key] = value
    with pytest.raises(error, match=rf"param group 0.*{key}"):
        opt.step()
    assert torch.equal(w.detach(), before)
    assert all(torch.equal(opt.state[w][k], v) for k, v in state.items())


def test_chains_that_differ_only_in_numbers_share_one_program():
    """The traced program (and so every compiled kernel) is the structure's, not the numbers'."""
    a = adaptlr.Adam.transform(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    b = adaptlr.Adam.transform(lr=0.3, betas=(0.5, 0.9), eps=1e-3, weight_decay=0.7)
    assert repr(a) != repr(b)
    assert kernels.program_for(a) is kernels.program_for(b)
    ema, rect, nema, ema_sq = core.ema, core.rectified, core.nesterov_ema, core.ema_sq
    parts = [
        (core.momentum(0.9, 0.1, nesterov=True), core.momentum(0.5, 0.0, nesterov=True)),
        (core.sum_sq(eps=1e-10), core.sum_sq(eps=0.1)),
        (core.mean_sq(eps=1e-8), core.mean_sq(eps=1.0)),
        (core.clip_by_value(1.0), core.clip_by_value(3.0)),
        (core.scale(2.0), core.scale(-1.0)),
        (core.rule(ema(0.9), rect(0.999)), core.rule(ema(0.1), rect(0.9))),
        (core.rule(nema(0.9), ema_sq(0.99)), core.rule(nema(0.8, 0.1), ema_sq(0.5, eps=1.0))),
    ]
    for x, y in parts:
        px = kernels.program_for(core.chain(x, core.scale_by_learning_rate(0.1)))
        py = kernels.program_for(core.chain(y, core.scale_by_learning_rate(0.2)))
        assert px is py, (x, y)
        assert not px.graph.consts or set(px.graph.consts) <= {0.0, 1.0, 0.5}, (x, px.graph.consts)


def test_parts_take_schedules_for_any_number():
    """Every number of a part may be a schedule: β1 as a function of the count, by hand."""

    def sched_b1(count: int) -> float:
        return 0.5 + (0.9 - 0.5) * min(count, 4) / 4

    t = core.chain(core.ema(sched_b1, debias=False), core.scale_by_learning_rate(1.0))
    p = [torch.zeros(1, dtype=torch.float64)]
    state = t.init(p)
    m = 0.0
    for count in range(5):
        g = float(count + 1)
        b1 = (0.5, 0.6, 0.7, 0.8, 0.9)[count]
        m = b1 * m + (1 - b1) * g
        u, state = t.update([torch.tensor([g], dtype=torch.float64)], state, p, count=count)
        assert float(u[0]) == pytest.approx(-m, rel=1e-15)
