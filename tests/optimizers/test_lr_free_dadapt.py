"""Prodigy and D-Adaptation against their reference packages (prodigyopt 1.1.2, dadaptation
3.2), in float64: parameters, every state buffer and the group's estimate after 50 steps."""

from __future__ import annotations

import io
import math

import pytest
import torch

import adaptlr
from adaptlr import core

prodigyopt = pytest.importorskip("prodigyopt")
dadaptation = pytest.importorskip("dadaptation")

STEPS = 50
RTOL = 1e-10
NONE_STEP = 7  # the step where one parameter has no gradient

# name: (adaptlr class, reference class, group keys of the estimate, whether groups may
# differ in weight_decay)
CASES = {
    "prodigy": (adaptlr.Prodigy, prodigyopt.Prodigy, ("d", "d_max", "d_numerator", "d_denom",
                                                      "d_hat"), True),
    "dadapt_adam": (adaptlr.DAdaptAdam, dadaptation.DAdaptAdam, ("d", "numerator_weighted"),
                    True),
    "dadapt_sgd": (adaptlr.DAdaptSGD, dadaptation.DAdaptSGD, ("d", "numerator_weighted",
                                                              "g0_norm"), False),
    "dadapt_adagrad": (adaptlr.DAdaptAdaGrad, dadaptation.DAdaptAdaGrad, ("d", "gsq_weighted",
                       "sksq_weighted", "skl1"), True),
}  # fmt: skip

# every argument the packages document, each switched on in at least one set
CONFIGS = {
    "prodigy": [
        {},
        {"weight_decay": 0.1},
        {"weight_decay": 0.1, "decouple": False, "safeguard_warmup": True},
        {"use_bias_correction": True, "betas": (0.8, 0.99), "growth_rate": 1.02},
        {"d0": 1e-3, "d_coef": 0.5, "beta3": 0.9, "eps": 1e-6, "lr": 0.5},
        {"betas": (0.0, 0.999), "weight_decay": 0.05, "safeguard_warmup": True,
         "use_bias_correction": True},
    ],
    "dadapt_adam": [
        {},
        {"weight_decay": 0.1},
        {"weight_decay": 0.1, "decouple": True, "use_bias_correction": True,
         "betas": (0.8, 0.99)},
        {"growth_rate": 1.02, "eps": 1e-6, "d0": 1e-3, "lr": 0.5, "log_every": 0},
    ],
    "dadapt_sgd": [
        {},
        {"momentum": 0.9},
        {"momentum": 0.5, "weight_decay": 0.1, "growth_rate": 1.02},
        {"d0": 1e-3, "lr": 0.5},
    ],
    "dadapt_adagrad": [
        {},
        {"momentum": 0.9, "weight_decay": 0.1, "eps": 1e-4},
        {"growth_rate": 1.02, "d0": 1e-3, "lr": 0.5},
    ],
}  # fmt: skip


def _tensors(seed: int) -> list[list[torch.Tensor]]:
    """Two groups: a matrix, a vector, a zero-size tensor; a vector and an all-zero bias."""
    g = torch.Generator().manual_seed(seed)
    a = [torch.randn(5, 3, generator=g, dtype=torch.float64),
         torch.randn(4, generator=g, dtype=torch.float64),
         torch.zeros(0, dtype=torch.float64)]  # fmt: skip
    b = [torch.randn(3, generator=g, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)]
    return [a, b]


def _loss(params: list[torch.Tensor]) -> torch.Tensor:
    total = torch.zeros((), dtype=torch.float64)
    for i, p in enumerate(params):
        w = torch.arange(1, p.numel() + 1, dtype=p.dtype).reshape(p.shape) / (i + 1)
        total = total + (w * (p - 0.7) ** 2).sum() + (torch.sin(3 * p) * w).sum() * 0.1
    return total


def _groups(params: list[list[torch.Tensor]], second: dict) -> list[dict]:
    return [{"params": params[0]}, {"params": params[1], **second}]


def _run(opt: torch.optim.Optimizer, flat: list[torch.Tensor], steps: range) -> None:
    for step in steps:
        opt.zero_grad()
        _loss(flat).backward()
        if step == NONE_STEP:
            flat[1].grad = None
        opt.step()


def _close(mine, ref, what: str) -> None:
    if isinstance(ref, torch.Tensor):
        mine = mine if isinstance(mine, torch.Tensor) else torch.tensor(mine)
        ref = ref.to(torch.float64)
        if ref.dim() == 0 and mine.numel() != 1:
            ref = ref.expand(mine.shape)  # prodigyopt's p0 of an all-zero parameter
        mine = mine.reshape(ref.shape)  # prodigyopt keeps s and p0 flat
        scale = float(ref.abs().max()) if ref.numel() else 0.0
        err = float((mine - ref).abs().max()) if ref.numel() else 0.0
    else:
        scale, err = abs(float(ref)), abs(float(mine) - float(ref))
    assert err <= RTOL * scale, f"{what}: off by {err:.3g} (scale {scale:.3g})"


def _pair(name: str, config: dict, second: dict | None = None, seed: int = 0):
    ours_cls, ref_cls, keys, per_group_decay = CASES[name]
    if second is None:
        second = {"weight_decay": 0.05} if per_group_decay else {}
    mine, ref = _tensors(seed), _tensors(seed)
    for p in [*mine[0], *mine[1], *ref[0], *ref[1]]:
        p.requires_grad_()
    # the reference path (the fused kernels are compared with it elsewhere)
    opt = ours_cls(_groups(mine, second), fused=False, **config)
    ref_opt = ref_cls(_groups(ref, second), **config)
    return opt, ref_opt, mine, ref, keys


def _compare(opt, ref_opt, mine, ref, keys) -> None:
    for gi, (g, rg) in enumerate(zip(opt.param_groups, ref_opt.param_groups)):
        for k in keys:
            _close(g[k], rg[k], f"group {gi} {k}")
    for gi, (ps, rs) in enumerate(zip(mine, ref)):
        for i, (p, r) in enumerate(zip(ps, rs)):
            _close(p.detach(), r.detach(), f"param {gi}.{i}")
            rst = ref_opt.state[r]
            for key, value in rst.items():
                if isinstance(value, torch.Tensor):
                    _close(opt.state[p][key], value, f"state {gi}.{i} {key}")
                else:
                    _close(opt.state[p][key].item(), value, f"state {gi}.{i} {key}")


@pytest.mark.parametrize("name,config", [(n, c) for n, cs in CONFIGS.items() for c in cs], ids=str)
def test_equals_reference(name: str, config: dict) -> None:
    opt, ref_opt, mine, ref, keys = _pair(name, config)
    _run(opt, [*mine[0], *mine[1]], range(STEPS))
    _run(ref_opt, [*ref[0], *ref[1]], range(STEPS))
    assert opt.param_groups[0]["d"] > 2 * opt.param_groups[0]["d0"]  # it did estimate
    _compare(opt, ref_opt, mine, ref, keys)


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adam", "dadapt_sgd"])
def test_frozen_group_equals_reference(name: str) -> None:
    """A group with lr 0 (from the start) contributes nothing and does not move."""
    opt, ref_opt, mine, ref, keys = _pair(name, {}, second={"lr": 0.0})
    before = [p.detach().clone() for p in mine[1]]
    _run(opt, [*mine[0], *mine[1]], range(STEPS))
    _run(ref_opt, [*ref[0], *ref[1]], range(STEPS))
    _compare(opt, ref_opt, mine, ref, keys)
    assert all(torch.equal(p, b) for p, b in zip(mine[1], before))


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adam"])
def test_group_frozen_mid_run_stays_put(name: str) -> None:
    """lr 0 after 20 steps: the group neither moves nor changes its state, and the other
    group's estimate goes on (the packages would still move it by its last exp_avg)."""
    opt, _, mine, _, _ = _pair(name, {"weight_decay": 0.1, "decouple": True})
    flat = [*mine[0], *mine[1]]
    _run(opt, flat, range(20))
    opt.param_groups[1]["lr"] = 0.0
    before = [p.detach().clone() for p in mine[1]]
    state = [{k: v.clone() for k, v in opt.state[p].items() if k != "step"} for p in mine[1]]
    d = opt.param_groups[0]["d"]
    _run(opt, flat, range(20, 30))
    assert all(torch.equal(p, b) for p, b in zip(mine[1], before))
    for p, st in zip(mine[1], state):
        assert all(torch.equal(opt.state[p][k], v) for k, v in st.items())
    assert opt.param_groups[1]["d"] == opt.param_groups[0]["d"] >= d


@pytest.mark.parametrize("name", list(CASES))
def test_group_added_later_joins_the_estimate(name: str) -> None:
    """add_param_group after 20 steps: the new group steps with the optimizer's d (the
    packages read the first group's and write it to all)."""
    opt, ref_opt, mine, ref, keys = _pair(name, {}, second={})
    late, late_ref = mine.pop(), ref.pop()
    opt.param_groups.pop()
    ref_opt.param_groups.pop()
    _run(opt, [*mine[0], *late], range(20))  # (the late tensors have no grad: the None step
    _run(ref_opt, [*ref[0], *late_ref], range(20))  # comes from the first group's list)
    for o, ps in ((opt, late), (ref_opt, late_ref)):
        for p in ps:
            p.grad = None
        o.add_param_group({"params": ps})
    mine.append(late)
    ref.append(late_ref)
    _run(opt, [*mine[0], *late], range(20, STEPS))
    _run(ref_opt, [*ref[0], *late_ref], range(20, STEPS))
    _compare(opt, ref_opt, mine, ref, keys)


@pytest.mark.parametrize("name", list(CASES))
def test_effective_lr_from_reference_state(name: str) -> None:
    config = {"use_bias_correction": True} if name in ("prodigy", "dadapt_adam") else {}
    second = {"layer_scale": 0.5} if name == "dadapt_adam" else None
    opt, ref_opt, mine, ref, _ = _pair(name, config, second=second)
    _run(opt, [*mine[0], *mine[1]], range(20))
    _run(ref_opt, [*ref[0], *ref[1]], range(20))
    eff = opt.effective_lr()
    d, lr, k = ref_opt.param_groups[0]["d"], 1.0, 19
    bc = math.sqrt(1 - 0.999 ** (k + 1)) / (1 - 0.9 ** (k + 1))
    for gi, (rg, ps) in enumerate(zip(ref_opt.param_groups, ref)):
        for i, r in enumerate(ps):
            st = ref_opt.state[r]
            if name == "prodigy":
                want = d * lr * bc / (st["exp_avg_sq"].sqrt() + d * rg["eps"])
            elif name == "dadapt_adam":
                want = rg["layer_scale"] * d * lr * bc / (st["exp_avg_sq"].sqrt() + rg["eps"])
            elif name == "dadapt_sgd":
                want = torch.full_like(r, d * lr / rg["g0_norm"])
            else:
                want = d * lr / (st["alphak"].sqrt() + rg["eps"])
            _close(eff[gi][i], want.detach(), f"effective lr {gi}.{i}")


@pytest.mark.parametrize(
    "name,config",
    [("prodigy", {"weight_decay": 0.1, "use_bias_correction": True}),
     ("dadapt_adam", {"weight_decay": 0.1, "decouple": True}),
     ("dadapt_sgd", {"momentum": 0.9, "weight_decay": 0.01}),
     ("dadapt_adagrad", {"momentum": 0.5, "weight_decay": 0.1})],
    ids=str,
)  # fmt: skip
def test_state_dict_resume_is_bit_identical(name: str, config: dict) -> None:
    straight, _, sp, _, _ = _pair(name, config)
    _run(straight, [*sp[0], *sp[1]], range(STEPS))
    first, _, fp, _, _ = _pair(name, config)
    _run(first, [*fp[0], *fp[1]], range(STEPS // 2))
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    saved = torch.load(buf)
    resumed_params = [[p.detach().clone().requires_grad_() for p in ps] for ps in fp]
    second = {"weight_decay": 0.05} if CASES[name][3] else {}
    resumed = CASES[name][0](_groups(resumed_params, second), fused=False, **config)
    resumed.load_state_dict(saved)
    _run(resumed, [*resumed_params[0], *resumed_params[1]], range(STEPS // 2, STEPS))
    for a, b in zip([*sp[0], *sp[1]], [*resumed_params[0], *resumed_params[1]]):
        assert torch.equal(a, b)
        for k, v in straight.state[a].items():
            assert torch.equal(v, resumed.state[b][k]), k
    for g, h in zip(straight.param_groups, resumed.param_groups):
        for k in CASES[name][2]:
            assert g[k] == h[k], k


def _paper_prodigy(params: list[torch.Tensor], steps: int, b1: float) -> tuple[list, float]:
    """The paper's Algorithm 3 in float64 (the step's ε and, for β1 = 0, its factor d use
    d_k), written from the paper, one group, η = 1, no decay or bias correction, ε = 0.01
    (large, so that the form of the ε term shows)."""
    b2, eps, d0 = 0.999, 1e-2, 1e-6
    b3 = math.sqrt(b2)
    x0 = [p.detach().clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    s = [torch.zeros_like(p) for p in params]
    d, d_max, r = d0, d0, 0.0
    for _ in range(steps):
        for p in params:
            p.grad = None
        _loss(params).backward()
        gs = [p.grad.detach() for p in params]
        r = b3 * r + sum(float((d / d0) * d * (g * (x - p.detach())).sum()) for g, x, p in
                         zip(gs, x0, params))  # fmt: skip
        for i, g in enumerate(gs):
            m[i] = b1 * m[i] + d * (1 - b1) * g
            v[i] = b2 * v[i] + d * d * (1 - b2) * g * g
            s[i] = b3 * s[i] + (d / d0) * d * g
        d_hat = r / sum(float(x.abs().sum()) for x in s)
        d_max = max(d_max, d_hat)
        d_new = d_max
        with torch.no_grad():
            for i, p in enumerate(params):
                direction = m[i] if b1 > 0 else d * gs[i]
                p -= d * direction / (v[i].sqrt() + d * eps)
        d = d_new
    return [p.detach() for p in params], d


@pytest.mark.parametrize("b1", [0.9, 0.0])
def test_prodigy_paper_form(b1: float) -> None:
    start = _tensors(1)[0][:2]
    mine = [p.clone().requires_grad_() for p in start]
    want, d = _paper_prodigy([p.clone().requires_grad_() for p in start], STEPS, b1)
    opt = adaptlr.Prodigy(mine, betas=(b1, 0.999), eps=1e-2, paper=True, fused=False)
    for _ in range(STEPS):
        opt.zero_grad()
        _loss(mine).backward()
        opt.step()
    _close(opt.param_groups[0]["d"], d, "d")
    for p, w in zip(mine, want):
        _close(p.detach(), w, "param")


def test_prodigy_paper_form_differs_from_package() -> None:
    """paper=True moves ε with d_k, not d_{k+1}: the results differ (with ε large enough)."""
    outs = []
    for paper in (False, True):
        ps = [p.clone().requires_grad_() for p in _tensors(2)[0][:2]]
        opt = adaptlr.Prodigy(ps, eps=1e-2, paper=paper, fused=False)
        _run(opt, ps, range(10))
        outs.append(torch.cat([p.detach().flatten() for p in ps]))
    assert not torch.equal(outs[0], outs[1])


def test_prodigy_scaled_rms_rule_grows_d() -> None:
    """The estimate around another rule: the lecture's RMS rule with a Prodigy step size."""
    w = torch.tensor([3.0, -2.0, 1.0], dtype=torch.float64, requires_grad=True)
    rule = core.chain(core.mean_sq(), core.scale_by_distance())
    opt = adaptlr.Optimizer([w], rule, fused=False)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = ((w - 0.5) ** 2 * torch.tensor([1.0, 4.0, 9.0], dtype=w.dtype)).sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    d = opt.param_groups[0]["d"]
    assert d > 1e3 * 1e-6 and losses[-1] < 1e-2 * losses[0]
    # effective lr: d·η/σ with σ the lecture's root mean square (+ eps)
    sigma = opt.state[w]["mean_square"].sqrt() + 1e-8
    _close(opt.effective_lr()[0][0], d / sigma, "effective lr")


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls,kwargs,name",
    [
        (adaptlr.Prodigy, {"slice_p": 11}, "slice_p"),
        (adaptlr.Prodigy, {"process_group": "all"}, "process_group"),
        (adaptlr.Prodigy, {"d0": 0.0}, "d0"),
        (adaptlr.Prodigy, {"d_coef": -1.0}, "d_coef"),
        (adaptlr.Prodigy, {"growth_rate": 0.0}, "growth_rate"),
        (adaptlr.Prodigy, {"betas": (1.0, 0.9)}, "betas"),
        (adaptlr.Prodigy, {"beta3": 1.5}, "beta3"),
        (adaptlr.Prodigy, {"eps": 0.0}, "eps"),
        (adaptlr.DAdaptAdam, {"process_group": 3}, "process_group"),
        (adaptlr.DAdaptAdam, {"log_every": -1}, "log_every"),
        (adaptlr.DAdaptAdam, {"lr": -1.0}, "lr"),
        (adaptlr.DAdaptSGD, {"momentum": -0.5}, "momentum"),
        (adaptlr.DAdaptSGD, {"growth_rate": float("nan")}, "growth_rate"),
        (adaptlr.DAdaptAdaGrad, {"eps": -1.0}, "eps"),
        (adaptlr.DAdaptAdaGrad, {"d0": -1e-6}, "d0"),
    ],
)
def test_bad_arguments_are_refused(cls, kwargs, name) -> None:
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match=name):
        cls([w], **kwargs)


@pytest.mark.parametrize(
    "cls,second,name",
    [
        (adaptlr.Prodigy, {"betas": (0.8, 0.999)}, "betas"),
        (adaptlr.Prodigy, {"d_coef": 2.0}, "d_coef"),
        (adaptlr.DAdaptAdam, {"decouple": True}, "decouple"),
        (adaptlr.DAdaptAdam, {"layer_scale": -1.0}, "layer_scale"),
        (adaptlr.DAdaptSGD, {"weight_decay": 0.1}, "weight_decay"),
        (adaptlr.DAdaptAdaGrad, {"momentum": 0.5}, "momentum"),
    ],
)
def test_groups_that_cannot_share_one_estimate_are_refused(cls, second, name) -> None:
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match=name):
        cls([{"params": [a]}, {"params": [b], **second}])


@pytest.mark.parametrize("cls,lr", [(adaptlr.Prodigy, 0.5), (adaptlr.DAdaptAdaGrad, 0.0)])
def test_groups_with_other_lrs_are_refused_at_the_step(cls, lr) -> None:
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = cls([{"params": [a]}, {"params": [b], "lr": lr}])
    (a.sum() + b.sum()).backward()
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    assert torch.equal(a.detach(), torch.ones(2))  # nothing half-applied


def test_signatures_match_the_packages() -> None:
    import inspect

    for ours, ref, _, _ in CASES.values():
        mine = inspect.signature(ours).parameters
        theirs = inspect.signature(ref).parameters
        names = [n for n in theirs]
        assert list(mine)[: len(names)] == names
        for n in names[1:]:
            want = theirs[n].default
            assert mine[n].default == want or (want is None and mine[n].default is None), n
