"""AdaBound, AMSBound (the authors' ``adabound`` 0.0.5) and SGDW (``torch_optimizer`` 0.3.0)
against the packages themselves, in float64, on both paths, and the papers' forms by hand."""

from __future__ import annotations

import copy
import math
import warnings

import adabound
import pytest
import torch
import torch_optimizer

from adaptlr.optimizers import SGDW, AdaBound, AMSBound

SHAPES = [(3, 4), (5,), (0,), (2, 3, 2), ()]
STEPS = 50
NONE_AT = {7: 1, 20: 3, 33: 0}  # step -> index of the parameter whose gradient is None
RTOL = 1e-12
PATHS = [pytest.param({}, id="fused"), pytest.param({"fused": False}, id="reference")]

ADABOUND_CONFIGS = [
    {},
    {"lr": 0.01},
    {"lr": 0.01, "betas": (0.8, 0.99), "final_lr": 0.05, "gamma": 0.01},
    {"lr": 0.02, "eps": 1e-3, "weight_decay": 0.1},
    {"lr": 0.01, "final_lr": 0.5, "gamma": 0.5},  # the bounds bind within 50 steps
    {"lr": 0.02, "amsbound": True, "gamma": 0.1},
    {"lr": 0.01, "amsbound": True, "weight_decay": 0.05, "betas": (0.5, 0.9), "final_lr": 0.02},
]
SGDW_CONFIGS = [
    {},
    {"lr": 0.1},
    {"lr": 0.05, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01},
    {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
    {"lr": 0.1, "weight_decay": 0.2},
]


def make_params(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_() for s in SHAPES]


def set_grads(params: list[torch.Tensor], step: int, seed: int = 1) -> None:
    """Gradients that depend on the parameters (so trajectories matter) plus fixed noise."""
    gen = torch.Generator().manual_seed(seed + step)
    for i, p in enumerate(params):
        noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        p.grad = None if NONE_AT.get(step) == i else (0.5 * p.detach() + noise)


def run(opt, params, steps=range(STEPS), scheduler=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the packages' deprecated torch calls
        for step in steps:
            set_grads(params, step)
            opt.step()
            if scheduler is not None:
                scheduler.step()
    return opt


def assert_close(ours, theirs, pa, pb, rtol=RTOL):
    for a, b in zip(pa, pb):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=rtol, atol=rtol)
    for a, b in zip(pa, pb):
        for key, value in theirs.state[b].items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(ours.state[a][key], value, rtol=rtol, atol=rtol)
            else:  # the package's int step
                assert float(ours.state[a][key]) == value


def moved(params):
    assert (params[0] - make_params()[0]).abs().max() > 1e-3


# -- against the packages ------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cfg", ADABOUND_CONFIGS, ids=lambda c: str(c)[:60])
def test_adabound_matches_package(cfg, path):
    pa, pb = make_params(), make_params()
    ours = run(AdaBound(pa, **cfg, **path), pa)
    theirs = run(adabound.AdaBound(pb, **cfg), pb)
    assert_close(ours, theirs, pa, pb)
    moved(pa)


@pytest.mark.parametrize("path", PATHS)
def test_amsbound_is_adabound_amsbound(path):
    cfg = {"lr": 0.02, "gamma": 0.1, "weight_decay": 0.01}
    pa, pb = make_params(), make_params()
    ours = run(AMSBound(pa, **cfg, **path), pa)
    theirs = run(adabound.AdaBound(pb, **cfg, amsbound=True), pb)
    assert_close(ours, theirs, pa, pb)
    assert "max_exp_avg_sq" in ours.state[pa[0]]
    with pytest.raises(TypeError):
        AMSBound(pa, amsbound=False)  # fixed, not an argument


def test_adabound_bounds_bind():
    """The config meant to clip does clip: η/σ of the package's formula leaves [lo, hi]."""
    cfg = ADABOUND_CONFIGS[4]
    p = make_params()
    opt = run(AdaBound(p, **cfg, fused=False), p)
    st, t = opt.state[p[0]], int(opt.state[p[0]]["step"])
    eta = cfg["lr"] * math.sqrt(1 - 0.999**t) / (1 - 0.9**t)
    raw = eta / (st["exp_avg_sq"].sqrt() + 1e-8)
    lo = cfg["final_lr"] * (1 - 1 / (cfg["gamma"] * t + 1))
    assert bool((raw < lo).any())
    # the monitor's η/σ is the clipped step size
    eff = opt.transform_for(opt.param_groups[0]).effective_lr([st], STEPS)[0]
    torch.testing.assert_close(eff, raw.clamp(lo, cfg["final_lr"] * (1 + 1 / (cfg["gamma"] * t))))


@pytest.mark.parametrize("path", PATHS)
def test_adabound_two_groups(path):
    def groups(p):
        return [
            {"params": p[:2], "lr": 0.01, "final_lr": 0.05},
            {"params": p[2:], "gamma": 0.1, "amsbound": True, "weight_decay": 0.1},
        ]

    pa, pb = make_params(), make_params()
    ours = run(AdaBound(groups(pa), lr=0.02, **path), pa)
    theirs = run(adabound.AdaBound(groups(pb), lr=0.02), pb)
    assert_close(ours, theirs, pa, pb)


@pytest.mark.parametrize("path", PATHS)
def test_adabound_scheduler_scales_bounds(path):
    """StepLR moves final_lr with lr (final_lr·lr/base_lr), as the package's workaround."""
    cfg = {"lr": 0.01, "final_lr": 0.2, "gamma": 0.3}
    pa, pb = make_params(), make_params()
    ours = AdaBound(pa, **cfg, **path)
    theirs = adabound.AdaBound(pb, **cfg)
    sa = torch.optim.lr_scheduler.StepLR(ours, step_size=10, gamma=0.5)
    sb = torch.optim.lr_scheduler.StepLR(theirs, step_size=10, gamma=0.5)
    run(ours, pa, scheduler=sa)
    run(theirs, pb, scheduler=sb)
    assert_close(ours, theirs, pa, pb)
    assert ours.param_groups[0]["base_lr"] == 0.01


@pytest.mark.parametrize("path", PATHS)
def test_adabound_schedule_as_lr_scales_bounds(path):
    """An adaptlr schedule as lr moves the bounds as the package's lr scheduler does."""
    from adaptlr import schedules

    cfg = {"final_lr": 0.2, "gamma": 0.3}
    pa, pb = make_params(), make_params()
    ours = AdaBound(pa, lr=schedules.step_decay(0.01, step_size=10, gamma=0.5), **cfg, **path)
    theirs = adabound.AdaBound(pb, lr=0.01, **cfg)
    run(ours, pa)
    run(theirs, pb, scheduler=torch.optim.lr_scheduler.StepLR(theirs, step_size=10, gamma=0.5))
    assert_close(ours, theirs, pa, pb)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cfg", SGDW_CONFIGS, ids=lambda c: str(c)[:60])
def test_sgdw_matches_package(cfg, path):
    pa, pb = make_params(), make_params()
    # the package's weight decay is decay="constant" (see SGDW's docstring)
    ours = run(SGDW(pa, **cfg, decay="constant", **path), pa)
    theirs = run(torch_optimizer.SGDW(pb, **cfg), pb)
    assert_close(ours, theirs, pa, pb)
    moved(pa)


@pytest.mark.parametrize("path", PATHS)
def test_sgdw_two_groups(path):
    def groups(p):
        return [
            {"params": p[:2], "momentum": 0.9, "nesterov": True},
            {"params": p[2:], "lr": 0.02, "momentum": 0.5, "dampening": 0.2},
        ]

    pa, pb = make_params(), make_params()
    ours = run(SGDW(groups(pa), lr=0.05, weight_decay=0.1, decay="constant", **path), pa)
    theirs = run(torch_optimizer.SGDW(groups(pb), lr=0.05, weight_decay=0.1), pb)
    assert_close(ours, theirs, pa, pb)


# -- fused against reference, and resuming ---------------------------------------------------------
@pytest.mark.parametrize(
    "cls, cfg",
    [(AdaBound, c) for c in ADABOUND_CONFIGS]
    + [(AdaBound, {"bias_correction": False, "sqrt_t": True, "gamma": 0.0})]
    + [(SGDW, c) for c in SGDW_CONFIGS]
    + [(SGDW, {"momentum": 0.9, "weight_decay": 0.1, "decay": d}) for d in ("lr", "paper")],
    ids=lambda x: x.__name__ if isinstance(x, type) else str(x)[:50],
)
def test_fused_matches_reference(cls, cfg):
    pa, pb = make_params(), make_params()
    fused, ref = run(cls(pa, **cfg), pa), run(cls(pb, **cfg, fused=False), pb)
    assert_close(fused, ref, pa, pb, rtol=1e-13)
    # the fast path really ran: a plan per group, no fallback to the reference path
    assert fused._fast_path.plans and not fused._fast_path.warned


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "cls, cfg",
    [
        (AdaBound, {"lr": 0.01, "final_lr": 0.5, "gamma": 0.5, "weight_decay": 0.1}),
        (AMSBound, {"lr": 0.02, "gamma": 0.1}),
        (SGDW, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ],
    ids=["adabound", "amsbound", "sgdw"],
)
def test_state_dict_resume(cls, cfg, path):
    pa = make_params()
    whole = cls(pa, **cfg, **path)
    sched = torch.optim.lr_scheduler.StepLR(whole, step_size=10, gamma=0.5)
    run(whole, pa, range(20), sched)
    saved_opt, saved_sched = copy.deepcopy(whole.state_dict()), sched.state_dict()
    pb = [p.detach().clone().requires_grad_() for p in pa]
    run(whole, pa, range(20, STEPS), sched)

    resumed = cls(pb, lr=123.0, **{k: v for k, v in cfg.items() if k != "lr"}, **path)
    resumed.load_state_dict(saved_opt)
    sched_b = torch.optim.lr_scheduler.StepLR(resumed, step_size=10, gamma=0.5)
    sched_b.load_state_dict(saved_sched)
    run(resumed, pb, range(20, STEPS), sched_b)
    for a, b in zip(pa, pb):
        assert torch.equal(a, b)


# -- the papers' forms, by hand --------------------------------------------------------------------
def test_adabound_paper_form_by_hand():
    """Luo et al. Algorithm 2: no bias correction, no ε, bounds at speed 1 - β2, step / √t."""
    b1, b2, lr = 0.9, 0.999, 0.003
    cfg = {"lr": lr, "betas": (b1, b2), "eps": 0.0, "gamma": 1 - b2, "final_lr": 0.1}
    paper = {"bias_correction": False, "sqrt_t": True}
    for path in ({}, {"fused": False}):
        p = make_params()
        run(AdaBound(p, **cfg, **paper, **path), p)
        q = make_params()
        ms = [torch.zeros_like(x) for x in q]
        vs = [torch.zeros_like(x) for x in q]
        ts = [0] * len(q)
        for step in range(STEPS):
            set_grads(q, step)
            with torch.no_grad():
                for i, x in enumerate(q):
                    if x.grad is None:
                        continue
                    ts[i] += 1
                    t, g = ts[i], x.grad
                    ms[i] = b1 * ms[i] + (1 - b1) * g
                    vs[i] = b2 * vs[i] + (1 - b2) * g * g
                    lo, hi = 0.1 - 0.1 / ((1 - b2) * t + 1), 0.1 + 0.1 / ((1 - b2) * t)
                    eta = (lr / vs[i].sqrt()).clamp(lo, hi) / math.sqrt(t)
                    x -= eta * ms[i]
        for a, b in zip(p, q):
            torch.testing.assert_close(a.detach(), b.detach(), rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("decay", ["constant", "lr", "paper"])
def test_sgdw_decay_forms_by_hand(decay, path):
    lr, mu, wd, tau = 0.05, 0.9, 0.1, 0.2
    p = make_params()
    run(SGDW(p, lr=lr, momentum=mu, dampening=tau, weight_decay=wd, decay=decay, **path), p)
    q = make_params()
    bufs: list[torch.Tensor | None] = [None] * len(q)
    for step in range(STEPS):
        set_grads(q, step)
        with torch.no_grad():
            for i, x in enumerate(q):
                if x.grad is None:
                    continue
                g = x.grad
                bufs[i] = g.clone() if bufs[i] is None else mu * bufs[i] + (1 - tau) * g
                shrink = {"constant": lr * wd, "lr": lr * wd * x, "paper": wd * x}[decay]
                x -= lr * bufs[i] + shrink
    for a, b in zip(p, q):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=RTOL, atol=RTOL)


def test_sgdw_constant_decay_is_the_package_code():
    """torch_optimizer 0.3.0 subtracts lr·λ from every element, whatever θ is."""
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch_optimizer.SGDW([w], lr=0.1, weight_decay=0.5)
    w.grad = torch.zeros_like(w)
    opt.step()
    assert torch.equal(w.detach(), torch.full((3,), -0.05, dtype=torch.float64))


# -- bad arguments -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, kwargs, error, name",
    [
        (AdaBound, {"lr": -1.0}, ValueError, "lr"),
        (AdaBound, {"lr": "0.1"}, TypeError, "lr"),
        (AdaBound, {"betas": (1.0, 0.9)}, ValueError, "betas[0]"),
        (AdaBound, {"betas": (0.9, -0.1)}, ValueError, "betas[1]"),
        (AdaBound, {"betas": 0.9}, TypeError, "betas"),
        (AdaBound, {"final_lr": -0.1}, ValueError, "final_lr"),
        (AdaBound, {"final_lr": None}, TypeError, "final_lr"),
        (AdaBound, {"gamma": 1.0}, ValueError, "gamma"),
        (AdaBound, {"gamma": -1e-3}, ValueError, "gamma"),
        (AdaBound, {"eps": -1e-8}, ValueError, "eps"),
        (AdaBound, {"weight_decay": math.nan}, ValueError, "weight_decay"),
        (AdaBound, {"amsbound": 1}, TypeError, "amsbound"),
        (AdaBound, {"bias_correction": "no"}, TypeError, "bias_correction"),
        (AdaBound, {"sqrt_t": None}, TypeError, "sqrt_t"),
        (AdaBound, {"base_lr": -1.0}, ValueError, "base_lr"),
        (AdaBound, {"base_lr": "x"}, TypeError, "base_lr"),
        (AMSBound, {"gamma": 2.0}, ValueError, "gamma"),
        (SGDW, {"lr": -0.1}, ValueError, "lr"),
        (SGDW, {"momentum": -0.9}, ValueError, "momentum"),
        (SGDW, {"dampening": 1.5}, ValueError, "dampening"),
        (SGDW, {"weight_decay": -1.0}, ValueError, "weight_decay"),
        (SGDW, {"weight_decay": "1"}, TypeError, "weight_decay"),
        (SGDW, {"nesterov": 1}, TypeError, "nesterov"),
        (SGDW, {"nesterov": True}, ValueError, "nesterov"),
        (SGDW, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, ValueError, "nesterov"),
        (SGDW, {"decay": "l2"}, ValueError, "decay"),
        (SGDW, {"decay": 1}, TypeError, "decay"),
    ],
)
def test_bad_arguments(cls, kwargs, error, name):
    with pytest.raises(error, match=f"{cls.__name__}: {name}".replace("[", r"\[")):
        cls(make_params(), **kwargs)


def test_bad_group_is_not_added():
    p = make_params()
    opt = AdaBound(p[:2])
    with pytest.raises(ValueError, match="gamma"):
        opt.add_param_group({"params": p[2:], "gamma": 1.5})
    assert len(opt.param_groups) == 1


def test_bound_part_checks_its_fields():
    from adaptlr import core

    ok = (core.ema(0.9, debias=False), core.ema_sq(0.999))
    with pytest.raises(ValueError, match="bound: gamma"):
        core.bound(*ok, gamma=1.0)
    with pytest.raises(ValueError, match="bound: b1"):
        core.bound(*ok, b1=1.0)
    with pytest.raises(TypeError, match="bound: sqrt_t"):
        core.bound(*ok, sqrt_t=1)
    with pytest.raises(ValueError, match="add_constant: value"):
        core.add_constant(-1.0)


# -- the Triton kernels (run on the CPU by Triton's interpreter) ---------------------------------
@pytest.mark.parametrize(
    "cls, cfg",
    [
        (AdaBound, {"lr": 0.01, "final_lr": 0.5, "gamma": 0.5, "weight_decay": 0.1}),
        (AMSBound, {"lr": 0.02, "bias_correction": False, "sqrt_t": True}),
        (AdaBound, {"gamma": 0.0}),  # no upper bound: an infinite coefficient
        (SGDW, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
        (SGDW, {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.1, "decay": "paper"}),
    ],
    ids=["adabound", "amsbound-paper", "adabound-gamma0", "sgdw", "sgdw-paper"],
)
def test_triton_matches_reference(cls, cfg, monkeypatch):
    import os

    from adaptlr import kernels
    from adaptlr.kernels import plan

    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("TRITON_INTERPRET is not 1 in this process")
    monkeypatch.setattr(plan, "TRITON_BLOCK", 16)  # several programs per tensor, masked tails
    steps = range(12)
    pa, pb = make_params(), make_params()
    with kernels.use_triton_on_cpu():
        fused = run(cls(pa, **cfg), pa, steps)
    ref = run(cls(pb, **cfg, fused=False), pb, steps)
    assert_close(fused, ref, pa, pb, rtol=1e-13)
    assert fused._fast_path.plans and not fused._fast_path.warned


@pytest.mark.parametrize(
    "ours, theirs",
    [(AdaBound, adabound.AdaBound), (SGDW, torch_optimizer.SGDW)],
    ids=["adabound", "sgdw"],
)
def test_signature_is_the_packages(ours, theirs):
    """The package's arguments, in its order and with its defaults; ours follow, keyword-only."""
    import inspect

    mine = list(inspect.signature(ours).parameters.values())
    package = list(inspect.signature(theirs).parameters.values())
    assert [(p.name, p.default) for p in mine[: len(package)]] == [
        (p.name, p.default) for p in package
    ]
    assert all(p.kind is p.KEYWORD_ONLY for p in mine[len(package) :])
