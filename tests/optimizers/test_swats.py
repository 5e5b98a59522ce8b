"""SWATS against ``torch_optimizer.SWATS`` (torch-optimizer 0.3.0) itself in float64 on both
paths, the paper's form against a hand computation of its Algorithm 1, and resume across
processes before and after the switch."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import pytest
import torch
import torch_optimizer

import adaptlr
from adaptlr import checkpoint

STEPS = 50
PATHS = [pytest.param({}, id="fused"), pytest.param({"fused": False}, id="reference")]
SHAPES = [(3, 4), (5,), (0,), (2, 3)]


def _grads(params, step, *, constant_from=None, none_at=None, decay=0.0, seed=1):
    """Gradients that depend on the parameters plus noise; with ``constant_from=(i, k)``,
    parameter i has no gradient before step index k and a constant one from then on (with
    eps = 0 its Adam step is ±lr, so its projected step size is the same at every step and the
    estimate settles at its second step: the group's count at the switch is k + 2; ``decay``
    is subtracted as λθ, so that with weight_decay λ the update the optimizer forms is
    constant)."""
    gen = torch.Generator().manual_seed(seed + step)
    for i, p in enumerate(params):
        noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        p.grad = 0.5 * p.detach() + noise
        if constant_from is not None and constant_from[0] == i:
            signs = torch.arange(p.numel()) % 2 * 2 - 1  # no element 0 (eps = 0: 0/0)
            constant = (signs * torch.linspace(1, 3, p.numel())).view(p.shape).to(p.dtype)
            p.grad = None if step < constant_from[1] else constant - decay * p.detach()
        if none_at is not None and none_at.get(step) == i:
            p.grad = None


def _params(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_() for s in SHAPES]


def _run(opt, params, steps=STEPS, **grad_kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the package's deprecated torch calls
        for step in range(steps):
            _grads(params, step, **grad_kw)
            opt.step()


CASES = [
    # (constructor arguments, gradient options, the step at which the package switches)
    ({"lr": 0.05}, {"none_at": {7: 1, 20: 3}}, None),
    ({"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}, {}, None),
    ({"lr": 0.05, "amsgrad": True}, {}, None),
    # the first parameter settles: the group switches at step 7 before the others' steps
    ({"lr": 0.05, "eps": 0.0}, {"constant_from": (0, 5)}, 7),
    # the last one settles: the others took that step as Adam; with Nesterov and L2
    ({"lr": 0.05, "eps": 0.0, "nesterov": True, "weight_decay": 0.01},
     {"constant_from": (3, 12), "decay": 0.01}, 14),
    ({"lr": 0.1, "eps": 0.0, "amsgrad": True, "betas": (0.5, 0.9)},
     {"constant_from": (1, 30)}, 32),
]  # fmt: skip


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kw, grad_kw, switch", CASES)
def test_equals_torch_optimizer_swats(kw, grad_kw, switch, path):
    ref_params, params = _params(), _params()
    ref = torch_optimizer.SWATS(ref_params, **kw)
    opt = adaptlr.SWATS(params, **kw, **path)
    phases = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for step in range(STEPS):
            _grads(ref_params, step, **grad_kw)
            _grads(params, step, **grad_kw)
            ref.step()
            opt.step()
            phases.append(ref.param_groups[0]["phase"])
    seen = next((i + 1 for i, ph in enumerate(phases) if ph == "SGD"), None)
    assert seen == switch  # the case exercises what it says
    group = opt.param_groups[0]
    assert group["switch_step"] == (switch or 0)
    if switch:
        assert group["sgd_lr"] == pytest.approx(ref.param_groups[0]["lr"], rel=1e-12)
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
        mine, theirs = opt.state[p], ref.state[q]
        if not theirs:
            continue
        assert int(mine["step"]) == theirs["step"]
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer"):
            if key in theirs:
                torch.testing.assert_close(mine[key], theirs[key], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(
            mine["exp_avg2"], theirs["exp_avg2"][0].to(torch.float64), rtol=1e-10, atol=0
        )


@pytest.mark.parametrize("path", PATHS)
def test_two_groups_switch_on_their_own(path):
    """The phase is a group's: one group switches, the other stays Adam."""
    ref_params, params = _params(), _params()

    def groups(ps):
        return [{"params": ps[:2], "eps": 0.0}, {"params": ps[2:], "lr": 0.02}]

    ref = torch_optimizer.SWATS(groups(ref_params), lr=0.05)
    opt = adaptlr.SWATS(groups(params), lr=0.05, **path)
    for step in range(30):
        for ps, o in ((ref_params, ref), (params, opt)):
            _grads(ps, step, constant_from=(0, 3))
            o.step()
    assert [g["phase"] for g in ref.param_groups] == ["SGD", "ADAM"]
    assert [g["switch_step"] for g in opt.param_groups] == [5.0, 0.0]
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def _paper(params, grads_at, steps, lr, b1, b2, eps, tol):
    """Algorithm 1 of Keskar & Socher (2017) in float64, written out: one projection over all
    parameters, the switch from the next step, SGD b = β1 b + g, θ -= (1 - β1) Λ b."""
    theta = [p.detach().clone() for p in params]
    m = [torch.zeros_like(t) for t in theta]
    v = [torch.zeros_like(t) for t in theta]
    b = [torch.zeros_like(t) for t in theta]
    lam, big_lam, phase, switch = 0.0, 0.0, "adam", 0
    for k in range(1, steps + 1):
        g = grads_at(theta, k - 1)
        if phase == "sgd":
            for i in range(len(theta)):
                b[i] = b1 * b[i] + g[i]
                theta[i] = theta[i] - (1 - b1) * big_lam * b[i]
            continue
        xs = []
        for i in range(len(theta)):
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            xs.append(lr * math.sqrt(1 - b2**k) / (1 - b1**k) * m[i] / (v[i].sqrt() + eps))
            theta[i] = theta[i] - xs[i]
        xg = sum(float((x * gi).sum()) for x, gi in zip(xs, g))
        xx = sum(float((x * x).sum()) for x in xs)
        if xg != 0:
            gamma = xx / xg
            lam = b2 * lam + (1 - b2) * gamma
            corrected = lam / (1 - b2**k)
            if k > 1 and abs(corrected - gamma) < tol and corrected > 0:
                phase, big_lam, switch = "sgd", corrected, k
    return theta, switch


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("tol, switched", [(1e-9, False), (2e-3, True)])
def test_paper_form_equals_algorithm_1_by_hand(tol, switched, path):
    lr, betas, eps = 0.05, (0.9, 0.99), 1e-8

    def grads_at(theta, step):
        gen = torch.Generator().manual_seed(100 + step)
        return [0.3 * t + torch.randn(t.shape, generator=gen, dtype=t.dtype) + 2.0 for t in theta]

    params = _params()
    want, switch = _paper(params, grads_at, STEPS, lr, *betas, eps, tol)
    assert bool(switch) == switched
    opt = adaptlr.SWATS(params, lr=lr, betas=betas, eps=eps, form="paper", tol=tol, **path)
    for step in range(STEPS):
        for p, g in zip(params, grads_at([p.detach() for p in params], step)):
            p.grad = g
        opt.step()
    assert opt.param_groups[0]["switch_step"] == switch
    for p, w in zip(params, want):
        torch.testing.assert_close(p.detach(), w, rtol=1e-10, atol=1e-12)


def test_bad_arguments_name_what_is_allowed():
    w = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match="form must be one of"):
        adaptlr.SWATS(w, form="keskar")
    with pytest.raises(ValueError, match="nesterov=True requires form='package'"):
        adaptlr.SWATS(w, nesterov=True, form="paper")
    with pytest.raises(ValueError, match="tol"):
        adaptlr.SWATS(w, form="paper", tol=-1.0)


RESUME = r"""
import sys, torch, adaptlr
from adaptlr import checkpoint
sys.path.insert(0, {here!r})
from test_swats import _grads, _params

path, k, fused = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
params = _params()
opt = adaptlr.SWATS(params, lr=0.05, eps=0.0, fused=fused)
ck = checkpoint.load(path)
with torch.no_grad():
    for p, q in zip(params, ck["params"]):
        p.copy_(q)
opt.load_state_dict(ck["opt"])
for step in range(10, 40):
    _grads(params, step, constant_from=(0, k))
    opt.step()
out = {{"params": [p.detach() for p in params], "switch_step": opt.param_groups[0]["switch_step"]}}
checkpoint.save(out, path + ".out")
"""


@pytest.mark.parametrize(
    "k, switch, fused",
    [(5, 7.0, True), (20, 22.0, False)],
    ids=["switched-fused", "not_yet-reference"],
)
def test_resume_in_a_new_process_is_bit_identical(tmp_path, k, switch, fused):
    """40 steps straight equal 10 steps, a checkpoint, and 30 more in a fresh process, with
    the switch before the checkpoint (step 7) or after it (step 22)."""
    from pathlib import Path

    straight, params = _params(), _params()
    opt = adaptlr.SWATS(straight, lr=0.05, eps=0.0, fused=fused)
    half = adaptlr.SWATS(params, lr=0.05, eps=0.0, fused=fused)
    for step in range(40):
        _grads(straight, step, constant_from=(0, k))
        opt.step()
        if step < 10:
            _grads(params, step, constant_from=(0, k))
            half.step()
    assert (half.param_groups[0]["switch_step"] > 0) == (switch < 10)
    path = str(tmp_path / "ck.pt")
    checkpoint.save({"params": [p.detach() for p in params], "opt": half.state_dict()}, path)
    code = RESUME.format(here=str(Path(__file__).parent))
    subprocess.run(
        [sys.executable, "-c", code, path, str(k), "1" if fused else "0"], check=True, timeout=120
    )
    out = checkpoint.load(path + ".out")
    assert out["switch_step"] == switch == opt.param_groups[0]["switch_step"]
    for p, q in zip(straight, out["params"]):
        assert torch.equal(p.detach(), q)


def test_after_the_switch_no_pass_computes_the_projection(monkeypatch):
    """Before the switch a step runs the projection's reduction and the update; after it,
    the update only (the projection is never read again)."""
    from adaptlr.kernels import launch

    names = []
    run_kernel = launch.run_kernel

    def spy(*args, **kwargs):
        names.append(args[6])
        return run_kernel(*args, **kwargs)

    monkeypatch.setattr(launch, "run_kernel", spy)
    params = _params()
    opt = adaptlr.SWATS(params, lr=0.05, eps=0.0)
    for step in range(12):
        names.clear()
        _grads(params, step, constant_from=(0, 5))
        opt.step()
        switched_before = step + 1 > 7  # the switch fires in step 7
        assert ("reduce0" in names) != switched_before, (step, names)
        assert "step" in names


def test_the_monitor_records_the_phase_and_the_step_size():
    """Each record carries the group's switch step and Λ as the optimizer keeps them."""
    from adaptlr.monitor import Monitor

    params = _params()
    opt = adaptlr.SWATS(params, lr=0.05, eps=0.0)
    ref = torch_optimizer.SWATS(_params(), lr=0.05, eps=0.0)
    mon = Monitor(opt)
    for step in range(10):
        _grads(params, step, constant_from=(0, 5))
        _grads(ref.param_groups[0]["params"], step, constant_from=(0, 5))
        opt.step()
        ref.step()
        mon.record(0.0)
    states = [r["group_state"][0] for r in mon.records]
    assert [s["switch_step"] for s in states] == [0.0] * 6 + [7.0] * 4
    assert states[-1]["sgd_lr"] == pytest.approx(ref.param_groups[0]["lr"], rel=1e-12)


def test_an_lr_scheduler_after_the_switch_scales_the_sgd_step():
    """After the switch the step is Λ·η_t/η_switch: a scheduler halving η halves each SGD
    step (the momentum buffer does not depend on η), where the package would replace Λ."""
    runs = []
    for halve in (False, True):
        params = _params()
        opt = adaptlr.SWATS(params, lr=0.05, eps=0.0)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5 if halve else 1.0)
        deltas = []
        for step in range(11):
            _grads(params, step, constant_from=(0, 5))
            before = [p.detach().clone() for p in params]
            opt.step()
            sched.step()
            deltas.append([p.detach() - b for p, b in zip(params, before)])
        assert opt.param_groups[0]["switch_step"] == 7.0
        runs.append(deltas)
    # (from step 11 on the gradients, which depend on θ, differ too)
    for step in range(11):
        ratio = 0.5 if step == 10 else 1.0
        for a, b in zip(runs[0][step], runs[1][step]):
            torch.testing.assert_close(b, ratio * a, rtol=1e-12, atol=0)
