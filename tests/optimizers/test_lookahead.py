"""Lookahead against torch_optimizer.Lookahead (torch-optimizer 0.3.0) and hand computations."""

from __future__ import annotations

import copy
import io
import math
import pathlib
import subprocess
import sys
import warnings

import pytest
import torch
import torch_optimizer

import adaptlr
from adaptlr.optimizers import Lookahead

DT = torch.float64
STEPS = 50

INNERS = {
    "torch_sgd_momentum": lambda groups: torch.optim.SGD(groups, lr=0.05, momentum=0.9),
    "torch_adam": lambda groups: torch.optim.Adam(groups, lr=0.01),
    "adaptlr_adam_fused": lambda groups: adaptlr.Adam(groups, lr=0.01),
    "adaptlr_adam_unfused": lambda groups: adaptlr.Adam(groups, lr=0.01, fused=False),
}


def make_params() -> list[torch.nn.Parameter]:
    """Two groups' worth: a matrix, a vector, a parameter never given a gradient, a 0-size one."""
    g = torch.Generator().manual_seed(7)
    shapes = [(4, 3), (5,), (3,), (0,)]
    return [torch.nn.Parameter(torch.randn(s, dtype=DT, generator=g)) for s in shapes]


def groups_of(ps: list[torch.nn.Parameter]) -> list[dict]:
    return [{"params": [ps[0], ps[2]]}, {"params": [ps[1], ps[3]], "lr": 0.02}]


def set_grads(ps: list[torch.nn.Parameter], t: int) -> None:
    """A deterministic gradient of the parameters; ps[2] never has one (``None``)."""
    for i, p in enumerate(ps):
        if i == 2:
            p.grad = None
        else:
            x = p.detach()
            p.grad = torch.sin(3.0 * x + 0.1 * (t + 1)) + 0.2 * x


def run(ps, opt, steps: int, start: int = 0, sched=None) -> None:
    for t in range(start, start + steps):
        set_grads(ps, t)
        opt.step()
        if sched is not None:
            sched.step()


@pytest.mark.parametrize("inner", sorted(INNERS))
@pytest.mark.parametrize("k, alpha", [(5, 0.5), (3, 0.8), (1, 0.3), (2, 1.0), (4, 0.0)])
def test_matches_torch_optimizer(inner: str, k: int, alpha: float) -> None:
    ref_ps, ps = make_params(), make_params()
    ref = torch_optimizer.Lookahead(INNERS[inner](groups_of(ref_ps)), k=k, alpha=alpha)
    opt = Lookahead(INNERS[inner](groups_of(ps)), k=k, alpha=alpha)
    run(ref_ps, ref, STEPS)
    run(ps, opt, STEPS)
    for r, p in zip(ref_ps, ps):
        assert torch.equal(r, p)
        assert torch.equal(ref.state[r]["slow_param"], opt.state[p]["slow_buffer"])
    assert ps[3].shape == (0,) and ps[2].grad is None


@pytest.mark.parametrize("fused", [True, False])
def test_adaptlr_inner_follows_torch_inner(fused: bool) -> None:
    """adaptlr.Adam inside sees the parameters the outer step rewrote (fast path included)."""
    ref_ps, ps = make_params(), make_params()
    ref = torch_optimizer.Lookahead(torch.optim.Adam(groups_of(ref_ps), lr=0.01), k=3)
    opt = Lookahead(adaptlr.Adam(groups_of(ps), lr=0.01, fused=fused), k=3)
    run(ref_ps, ref, STEPS)
    run(ps, opt, STEPS)
    for r, p in zip(ref_ps, ps):
        torch.testing.assert_close(p, r, rtol=1e-12, atol=1e-14)


def test_is_a_torch_optimizer_sharing_the_groups() -> None:
    ps = make_params()
    inner = torch.optim.SGD(groups_of(ps), lr=0.1)
    opt = Lookahead(inner)
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups is inner.param_groups
    assert opt.defaults["k"] == 5 and opt.defaults["alpha"] == 0.5
    assert "k=5" in repr(opt) and "SGD" in repr(opt)


def test_lr_scheduler_steps_the_wrapper() -> None:
    ref_ps, ps = make_params(), make_params()
    ref = torch_optimizer.Lookahead(INNERS["torch_sgd_momentum"](groups_of(ref_ps)), k=4)
    opt = Lookahead(INNERS["torch_sgd_momentum"](groups_of(ps)), k=4)
    ref_sched = torch.optim.lr_scheduler.StepLR(ref, step_size=7, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)
        run(ps, opt, STEPS, sched=sched)
    run(ref_ps, ref, STEPS, sched=ref_sched)
    assert opt.optimizer.param_groups[0]["lr"] == 0.05 * 0.5 ** (STEPS // 7)
    for r, p in zip(ref_ps, ps):
        assert torch.equal(r, p)


def test_closure_zero_grad() -> None:
    ref_ps, ps = make_params(), make_params()
    ref = torch_optimizer.Lookahead(torch.optim.SGD(groups_of(ref_ps), lr=0.1), k=2)
    opt = Lookahead(torch.optim.SGD(groups_of(ps), lr=0.1), k=2)
    for o, qs in ((ref, ref_ps), (opt, ps)):
        for _ in range(5):

            def closure(qs=qs, o=o) -> torch.Tensor:
                o.zero_grad()
                loss = sum((q**4).sum() for i, q in enumerate(qs) if i != 2)
                loss.backward()
                return loss

            loss = o.step(closure)
            assert isinstance(loss, torch.Tensor)
    for r, p in zip(ref_ps, ps):
        assert torch.equal(r, p)
    opt.zero_grad()
    assert all(p.grad is None for p in ps)
    set_grads(ps, 0)
    opt.zero_grad(set_to_none=False)
    assert ps[0].grad is not None and not ps[0].grad.any()


def test_add_param_group_starts_its_own_cycle() -> None:
    """A group added later behaves as a Lookahead started then (the package has no counter
    for it, so the reference is two of its wrappers)."""
    a, b = make_params()[:2]
    ra, rb = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    opt = Lookahead(torch.optim.SGD([a], lr=0.1, momentum=0.5), k=3, alpha=0.6)
    ref_a = torch_optimizer.Lookahead(torch.optim.SGD([ra], lr=0.1, momentum=0.5), k=3, alpha=0.6)
    ref_b = torch_optimizer.Lookahead(torch.optim.SGD([rb], lr=0.1, momentum=0.5), k=3, alpha=0.6)
    for t in range(25):
        if t == 7:
            opt.add_param_group({"params": [b]})
        for p, q in ((a, ra), (b, rb)):
            p.grad = torch.cos(p.detach() + t)
            q.grad = torch.cos(q.detach() + t)
        opt.step()
        ref_a.step()
        if t >= 7:
            ref_b.step()
    assert torch.equal(a, ra) and torch.equal(b, rb)


# -- the paper's options, against a hand computation --------------------------------------------
def hand_lookahead(theta0, k, alpha, slow_start, inner_state, steps, lr=0.05, mom=0.9):
    """Lookahead with SGD+momentum (torch's form: b = μb + g, θ -= ηb), written out."""
    theta, buf, phi = theta0.clone(), None, None
    if slow_start == "initial":
        phi = theta.clone()
    for t in range(steps):
        g = torch.sin(3.0 * theta + 0.1 * (t + 1)) + 0.2 * theta
        buf = g.clone() if buf is None else mom * buf + g
        theta = theta - lr * buf
        if slow_start == "initial":
            sync = (t + 1) % k == 0  # after steps k, 2k, ... (Algorithm 1)
        else:
            sync = t % k == 0  # the package: after steps 1, k+1, 2k+1, ...
            if phi is None:
                phi = theta.clone()
        if sync:
            phi = phi + alpha * (theta - phi)
            theta = phi.clone()
            if inner_state == "reset":
                buf = None
    return theta, phi


@pytest.mark.parametrize("slow_start", ["after_first_step", "initial"])
@pytest.mark.parametrize("inner_state", ["keep", "reset"])
def test_options_against_hand_computation(slow_start: str, inner_state: str) -> None:
    theta0 = torch.randn(6, dtype=DT, generator=torch.Generator().manual_seed(3))
    w = torch.nn.Parameter(theta0.clone())
    opt = Lookahead(
        torch.optim.SGD([w], lr=0.05, momentum=0.9),
        k=4,
        alpha=0.3,
        slow_start=slow_start,
        inner_state=inner_state,
    )
    for t in range(STEPS - 1):  # 49: mid-cycle for both schedules
        x = w.detach()
        w.grad = torch.sin(3.0 * x + 0.1 * (t + 1)) + 0.2 * x
        opt.step()
    theta, phi = hand_lookahead(theta0, 4, 0.3, slow_start, inner_state, STEPS - 1)
    torch.testing.assert_close(w.detach(), theta, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(opt.state[w]["slow_buffer"], phi, rtol=1e-13, atol=1e-13)
    # the options change the result (the hand computation tells them apart)
    other = hand_lookahead(theta0, 4, 0.3, "initial", "keep", STEPS - 1)[0]
    assert (slow_start, inner_state) == ("initial", "keep") or not torch.allclose(theta, other)


@pytest.mark.parametrize("fused", [True, False])
def test_reset_clears_adaptlr_state_like_torch(fused: bool) -> None:
    """A reset Adam restarts (moments and step count) the way a fresh torch.optim.Adam does."""
    ref_ps, ps = make_params(), make_params()
    ref = Lookahead(torch.optim.Adam(groups_of(ref_ps), lr=0.01), k=3, inner_state="reset")
    opt = Lookahead(adaptlr.Adam(groups_of(ps), lr=0.01, fused=fused), k=3, inner_state="reset")
    run(ref_ps, ref, 20)
    run(ps, opt, 20)
    for r, p in zip(ref_ps, ps):
        torch.testing.assert_close(p, r, rtol=1e-12, atol=1e-14)
    # the package's schedule syncs after steps 1, 4, ..., 19: step 20 is the first after a reset
    assert float(ref.optimizer.state[ref_ps[0]]["step"]) == 1.0
    assert float(opt.optimizer.state[ps[0]]["step"]) == 1.0


# -- resume --------------------------------------------------------------------------------------
RESUME_AT = 23  # mid-cycle for k = 5 and k = 3


def build(inner: str, ps, **kw) -> Lookahead:
    return Lookahead(INNERS[inner](groups_of(ps)), k=kw.pop("k", 5), **kw)


def checkpoint_bytes(ps, opt) -> bytes:
    f = io.BytesIO()
    torch.save({"params": [p.detach() for p in ps], "opt": opt.state_dict()}, f)
    return f.getvalue()


def resume(inner: str, blob: bytes, steps: int, **kw):
    ck = torch.load(io.BytesIO(blob), weights_only=True)
    ps = [torch.nn.Parameter(t.clone()) for t in ck["params"]]
    opt = build(inner, ps, **kw)
    opt.load_state_dict(ck["opt"])
    run(ps, opt, steps, start=RESUME_AT)
    return ps, opt


@pytest.mark.parametrize(
    "inner", ["torch_sgd_momentum", "adaptlr_adam_fused", "adaptlr_adam_unfused"]
)
@pytest.mark.parametrize("slow_start", ["after_first_step", "initial"])
def test_resume_mid_cycle_bit_identical(inner: str, slow_start: str) -> None:
    full_ps = make_params()
    full = build(inner, full_ps, k=3, slow_start=slow_start)
    run(full_ps, full, STEPS)

    ps = make_params()
    opt = build(inner, ps, k=3, slow_start=slow_start)
    run(ps, opt, RESUME_AT)
    assert all(c != 0 for c in opt.state_dict()["counter"])  # mid-cycle
    # built with other arguments: the saved ones win, as torch's saved hyperparameters do
    new_ps, new = resume(inner, checkpoint_bytes(ps, opt), STEPS - RESUME_AT, alpha=0.9)
    assert new.alpha == 0.5 and new.slow_start == slow_start
    assert new.param_groups is new.optimizer.param_groups
    for r, p in zip(full_ps, new_ps):
        assert torch.equal(r, p)
        assert torch.equal(full.state[r]["slow_buffer"], new.state[p]["slow_buffer"])


CHILD = """
import sys, io, torch
sys.path.insert(0, {here!r})
import test_lookahead as t
blob = open({src!r}, "rb").read()
ps, opt = t.resume({inner!r}, blob, t.STEPS - t.RESUME_AT)
torch.save([p.detach() for p in ps], {dst!r})
"""


@pytest.mark.parametrize("inner", ["torch_sgd_momentum", "adaptlr_adam_fused"])
def test_resume_in_a_fresh_process_bit_identical(inner: str, tmp_path: pathlib.Path) -> None:
    full_ps = make_params()
    run(full_ps, build(inner, full_ps), STEPS)
    ps = make_params()
    opt = build(inner, ps)
    run(ps, opt, RESUME_AT)
    src, dst = tmp_path / "ck.pt", tmp_path / "out.pt"
    src.write_bytes(checkpoint_bytes(ps, opt))
    here = str(pathlib.Path(__file__).parent)
    code = CHILD.format(here=here, src=str(src), dst=str(dst), inner=inner)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    out = torch.load(dst, weights_only=True)
    for r, p in zip(full_ps, out):
        assert torch.equal(r.detach(), p)


def test_state_dict_contents_and_package_state_dict() -> None:
    ps = make_params()
    opt = build("torch_sgd_momentum", ps, k=5)
    run(ps, opt, 7)
    sd = opt.state_dict()
    assert set(sd) == {"inner", "state", "counter", "k", "alpha", "slow_start", "inner_state"}
    assert sd["counter"] == [2, 2] and sorted(sd["state"]) == [0, 1, 2, 3]
    assert torch.equal(sd["state"][1]["slow_buffer"], opt.state[ps[2]]["slow_buffer"])
    assert "momentum_buffer" in sd["inner"]["state"][0]

    # a torch_optimizer.Lookahead state dict loads too, and continues its run exactly
    full_ps, ref_ps, ps = make_params(), make_params(), make_params()
    full = torch_optimizer.Lookahead(INNERS["torch_sgd_momentum"](groups_of(full_ps)))
    ref = torch_optimizer.Lookahead(INNERS["torch_sgd_momentum"](groups_of(ref_ps)))
    run(full_ps, full, STEPS)
    run(ref_ps, ref, RESUME_AT)
    opt = build("torch_sgd_momentum", ps)
    with torch.no_grad():
        for p, r in zip(ps, ref_ps):
            p.copy_(r)
    # the package skips torch.optim.Optimizer.__init__, and torch 2.x's state_dict needs its
    # hook dicts: __setstate__ makes them
    torch.optim.Optimizer.__setstate__(ref, {})
    opt.load_state_dict(ref.state_dict())
    assert "counter" not in opt.param_groups[0]
    run(ps, opt, STEPS - RESUME_AT, start=RESUME_AT)
    for r, p in zip(full_ps, ps):
        assert torch.equal(r, p)


# -- bad arguments -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, err, match",
    [
        ({"k": 0}, ValueError, "k must be a positive int"),
        ({"k": -2}, ValueError, "k must be a positive int"),
        ({"k": 2.0}, TypeError, "k must be a positive int"),
        ({"k": True}, TypeError, "k must be a positive int"),
        ({"k": "5"}, TypeError, "k must be a positive int"),
        ({"alpha": -0.1}, ValueError, r"alpha must be in \[0, 1\]"),
        ({"alpha": 1.5}, ValueError, r"alpha must be in \[0, 1\]"),
        ({"alpha": math.nan}, ValueError, r"alpha must be in \[0, 1\]"),
        ({"alpha": "0.5"}, TypeError, "alpha must be a float"),
        ({"alpha": None}, TypeError, "alpha must be a float"),
        ({"slow_start": "paper"}, ValueError, "slow_start must be one of"),
        ({"inner_state": 1}, TypeError, "inner_state must be one of"),
    ],
)
def test_bad_arguments(kw: dict, err: type, match: str) -> None:
    ps = make_params()
    inner = torch.optim.SGD(groups_of(ps), lr=0.1)
    before = [dict(g) for g in inner.param_groups]
    with pytest.raises(err, match=match):
        Lookahead(inner, **kw)
    assert [dict(g) for g in inner.param_groups] == before


@pytest.mark.parametrize("bad", [make_params(), None, torch_optimizer.Lookahead])
def test_inner_must_be_an_optimizer(bad) -> None:
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        Lookahead(bad)


def test_bad_state_dict_changes_nothing() -> None:
    ps = make_params()
    opt = build("torch_sgd_momentum", ps, k=3)
    run(ps, opt, 5)
    good = opt.state_dict()
    snap = checkpoint_bytes(ps, opt)
    bad_counter = {**good, "counter": [0, 3]}
    bad_shape = {**good, "state": {**good["state"], 0: {"slow_buffer": torch.zeros(2, dtype=DT)}}}
    bad_alpha = {**good, "alpha": 2.0}
    bad_inner = {
        **good,
        "inner": {**good["inner"], "param_groups": good["inner"]["param_groups"][:1]},
    }
    for bad, err in ((bad_counter, ValueError), (bad_shape, ValueError), (bad_alpha, ValueError)):
        with pytest.raises(err):
            opt.load_state_dict(bad)
    with pytest.raises(ValueError):
        opt.load_state_dict(bad_inner)
    with pytest.raises(TypeError, match="expected a dict"):
        opt.load_state_dict([1, 2])
    assert checkpoint_bytes(ps, opt) == snap


def test_deepcopy_and_step_hooks() -> None:
    """A deep copy (pickling, Lightning) continues like the original; torch's hooks run."""
    ps = make_params()
    opt = build("adaptlr_adam_fused", ps, k=3)
    calls = []
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append(o))
    run(ps, opt, 5)
    assert len(calls) == 5 and calls[0] is opt
    twin = copy.deepcopy(opt)
    twin_ps = [p for g in twin.param_groups for p in g["params"]]
    assert twin.param_groups is twin.optimizer.param_groups
    assert all(p in twin.state for p in twin_ps) and not any(p in twin.state for p in ps)
    run(ps, opt, 10, start=5)
    order = [0, 2, 1, 3]  # the groups list the parameters in this order
    run([twin_ps[order.index(i)] for i in range(4)], twin, 10, start=5)
    for i, p in zip(order, twin_ps):
        assert torch.equal(ps[i], p)
