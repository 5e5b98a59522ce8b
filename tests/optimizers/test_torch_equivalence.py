"""Every named optimizer against torch.optim, data-driven from the registry, in float64."""

from __future__ import annotations

import pytest
import torch

from adaptlr.optimizers.registry import REGISTRY

SHAPES = [(3, 4), (5,), (0,), (2, 3, 2), ()]
STEPS = 35
NONE_AT = {7: 1, 20: 3}  # step -> index of the parameter whose gradient is None that step

CASES = [
    pytest.param(info, cfg, id=f"{name}-{i}")
    for name, info in REGISTRY.items()
    if info.torch_cls is not None
    for i, cfg in enumerate(info.configs)
]


def make_params(dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in SHAPES]


def set_grads(params, step, seed=1):
    """Gradients that depend on the parameters (so trajectories matter) plus fixed noise."""
    gen = torch.Generator().manual_seed(seed + step)
    for i, p in enumerate(params):
        noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        p.grad = None if NONE_AT.get(step) == i else (0.5 * p.detach() + noise)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    if a.numel() == 0:
        return 0.0
    scale = b.abs().max().clamp_min(1e-300)
    return float((a - b).abs().max() / scale)


def run(opt_cls, params, cfg, groups=None):
    opt = opt_cls(groups(params) if groups else params, **cfg)
    for step in range(STEPS):
        set_grads(params, step)
        opt.step()
    return opt


def assert_same(ours, theirs, params_a, params_b, tol=1e-10):
    for a, b in zip(params_a, params_b):
        assert a.shape == b.shape
        assert rel_err(a.detach(), b.detach()) <= tol
    for pa, pb in zip(params_a, params_b):
        sa, sb = ours.state[pa], theirs.state[pb]
        for key, vb in sb.items():
            if vb is None:
                continue
            assert key in sa, f"state {key!r} missing"
            va = sa[key]
            assert rel_err(va, vb) <= tol, key


@pytest.mark.parametrize("info, cfg", CASES)
def test_matches_torch(info, cfg):
    pa, pb = make_params(), make_params()
    ours = run(info.cls, pa, cfg)
    theirs = run(info.torch_cls, pb, {**cfg, "foreach": False})
    assert_same(ours, theirs, pa, pb)
    # the parameters really moved, so equality is not trivial
    assert rel_err(pa[0].detach(), make_params()[0].detach()) > 1e-3


@pytest.mark.parametrize("name", [n for n, i in REGISTRY.items() if i.torch_cls is not None])
def test_two_groups_with_different_hyperparameters(name):
    info = REGISTRY[name]
    cfg = info.configs[-1]

    def groups(params):
        return [{"params": params[:2]}, {"params": params[2:], "lr": cfg["lr"] * 3}]

    pa, pb = make_params(), make_params()
    ours = run(info.cls, pa, cfg, groups)
    theirs = run(info.torch_cls, pb, {**cfg, "foreach": False}, groups)
    assert_same(ours, theirs, pa, pb)


@pytest.mark.parametrize("name", [n for n, i in REGISTRY.items() if i.torch_cls is not None])
def test_complex_parameters(name):
    info = REGISTRY[name]
    gen = torch.Generator().manual_seed(3)

    def params():
        return [torch.randn(4, 3, dtype=torch.complex128, generator=gen).requires_grad_()]

    pa = params()
    pb = [p.detach().clone().requires_grad_() for p in pa]
    ours, theirs = info.cls(pa, **info.configs[0]), info.torch_cls(pb, **info.configs[0])
    for _ in range(20):
        g = torch.randn(4, 3, dtype=torch.complex128, generator=gen)
        pa[0].grad, pb[0].grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    assert_same(ours, theirs, pa, pb)


@pytest.mark.parametrize("name", [n for n, i in REGISTRY.items() if i.torch_cls is not None])
def test_lr_scheduler_and_state_dict_round_trip(name):
    """A torch lr_scheduler drives our optimizers as torch's; state dicts resume exactly."""
    info = REGISTRY[name]
    cfg = info.configs[-1]

    def train(cls, params, steps, start=0, sd=None):
        opt = cls(params, **cfg)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
        if sd is not None:
            opt.load_state_dict(sd[0])
            sched.load_state_dict(sd[1])
        for step in range(start, start + steps):
            set_grads(params, step)
            opt.step()
            sched.step()
        return opt, sched

    pa, pb = make_params(), make_params()
    ours, _ = train(info.cls, pa, 30)
    theirs, _ = train(info.torch_cls, pb, 30)
    assert_same(ours, theirs, pa, pb)

    # 15 steps, save, build everything anew, load, 15 more: the same as 30 straight
    pc = make_params()
    half, sched = train(info.cls, pc, 15)
    saved = (half.state_dict(), sched.state_dict())
    pd = [p.detach().clone().requires_grad_() for p in pc]
    resumed, _ = train(info.cls, pd, 15, start=15, sd=saved)
    for a, b in zip(pd, pa):
        assert torch.equal(a.detach(), b.detach())
