"""Our closed forms against torch.optim.lr_scheduler, driving a real SGD for >= 1,000 steps."""

import math

import pytest
import torch
from torch.optim import lr_scheduler as tls

from adaptlr.schedules import (
    cosine,
    cosine_restarts,
    cyclic,
    exponential,
    multi_step,
    one_cycle,
    polynomial,
    step_decay,
)

STEPS = 1000


def torch_lrs(make_scheduler, steps=STEPS, lr=0.5):
    """The lr that each of ``steps`` updates of SGD uses under a torch scheduler."""
    p = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
    return lrs


def ours(schedule, steps=STEPS):
    return [schedule(t) for t in range(steps)]


def assert_close(got, want, rel, abs=0.0):
    assert len(got) == len(want)
    for t, (a, b) in enumerate(zip(got, want)):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=abs), f"t={t}: ours {a!r} torch {b!r}"


def test_step_lr():
    want = torch_lrs(lambda o: tls.StepLR(o, step_size=7, gamma=0.9))
    assert_close(ours(step_decay(0.5, step_size=7, gamma=0.9)), want, rel=1e-12)


def test_multi_step_lr():
    ms = [100, 300, 300, 701]
    want = torch_lrs(lambda o: tls.MultiStepLR(o, milestones=ms, gamma=0.5))
    assert_close(ours(multi_step(0.5, milestones=ms, gamma=0.5)), want, rel=1e-12)


def test_exponential_lr():
    want = torch_lrs(lambda o: tls.ExponentialLR(o, gamma=0.995))
    # torch multiplies 1,000 times; ours is one power
    assert_close(ours(exponential(0.5, gamma=0.995)), want, rel=1e-11)


@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
def test_polynomial_lr(power):
    want = torch_lrs(lambda o: tls.PolynomialLR(o, total_iters=800, power=power))
    assert_close(ours(polynomial(0.5, total_steps=800, power=power)), want, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("eta_min", [0.0, 0.01])
def test_cosine_annealing_lr(eta_min):
    n = STEPS + 1
    want = torch_lrs(lambda o: tls.CosineAnnealingLR(o, T_max=STEPS, eta_min=eta_min), steps=n)
    # torch's recursive form drifts slightly from its own closed form
    assert_close(ours(cosine(0.5, total_steps=STEPS, min_lr=eta_min), n), want, rel=1e-9, abs=1e-14)
    assert want[-1] == pytest.approx(eta_min, abs=1e-12)


@pytest.mark.parametrize(
    "mode,gamma,down",
    [("triangular", 1.0, None), ("triangular2", 1.0, 30), ("exp_range", 0.997, 17)],
)
def test_cyclic_lr(mode, gamma, down):
    kw = dict(
        base_lr=0.01, max_lr=0.1, step_size_up=20, step_size_down=down, mode=mode, gamma=gamma
    )
    want = torch_lrs(lambda o: tls.CyclicLR(o, cycle_momentum=False, **kw))
    assert_close(ours(cyclic(**kw)), want, rel=1e-14, abs=1e-300)


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("pct_start", [0.3, 0.25, 0.4567])
def test_one_cycle_lr(strategy, three_phase, pct_start):
    kw = dict(
        max_lr=0.1,
        total_steps=STEPS,
        pct_start=pct_start,
        anneal_strategy=strategy,
        div_factor=25.0,
        final_div_factor=1e4,
        three_phase=three_phase,
    )
    want = torch_lrs(lambda o: tls.OneCycleLR(o, cycle_momentum=False, **kw))
    assert_close(ours(one_cycle(**kw)), want, rel=1e-14, abs=1e-300)


@pytest.mark.parametrize("T_0,T_mult", [(10, 1), (7, 1), (3, 2), (5, 2), (2, 3)])
def test_cosine_annealing_warm_restarts(T_0, T_mult):
    want = torch_lrs(
        lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=T_0, T_mult=T_mult, eta_min=0.001),
        steps=2 * STEPS,
    )
    got = ours(cosine_restarts(0.5, T_0=T_0, T_mult=T_mult, min_lr=0.001), 2 * STEPS)
    assert_close(got, want, rel=1e-13)
