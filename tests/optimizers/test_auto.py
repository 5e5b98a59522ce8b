"""adaptlr.Auto against a float64 recomputation written here from its update rule (Schedule-
Free AdamW whose step size is Prodigy's estimate taken along z), on both paths; train/eval,
resume in a new process, the monitor's record of the estimate, bad arguments."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import adaptlr
from adaptlr import checkpoint, core

SHAPES = [(3, 4), (5,), (0,), (2, 3, 2), ()]
STEPS = 50
NONE_AT = {7: 1, 20: 3, 33: 0}  # step -> index of the parameter whose gradient is None
RTOL = 1e-10
PATHS = [pytest.param({}, id="fused"), pytest.param({"fused": False}, id="reference")]
CONFIGS = [
    {},
    {"weight_decay": 0.1, "betas": (0.8, 0.99), "eps": 1e-3},
    {"d0": 1e-4, "d_coef": 2.0, "growth_rate": 1.1},
    {"lr": 0.5, "beta3": 0.9, "r": 1.0, "weight_lr_power": 1.0},
]


def make_params(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_() for s in SHAPES]


def grads_at(params: list[torch.Tensor], step: int) -> list[torch.Tensor | None]:
    """Gradients that depend on the parameters (the trajectory matters) plus fixed noise."""
    gen = torch.Generator().manual_seed(1 + step)
    out: list[torch.Tensor | None] = []
    for i, p in enumerate(params):
        noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        out.append(None if NONE_AT.get(step) == i else 0.5 * p.detach() + noise)
    return out


class Recomputed:
    """Auto's rule in float64, one tensor at a time, from the docstring's equations."""

    def __init__(self, groups: list[list[torch.Tensor]], **kw: float) -> None:
        b1, b2 = kw.get("betas", (0.9, 0.999))
        self.b1, self.b2 = b1, b2
        self.lr = kw.get("lr", 1.0)
        self.eps = kw.get("eps", 1e-8)
        self.wd = kw.get("weight_decay", 0.0)
        self.d0 = kw.get("d0", 1e-3)
        self.coef = kw.get("d_coef", 1.0)
        self.b3 = kw.get("beta3") or math.sqrt(b2)
        self.growth = kw.get("growth_rate", math.inf)
        self.r = kw.get("r", 0.0)
        self.power = kw.get("weight_lr_power", 2.0)
        self.y = [[p.detach().clone() for p in g] for g in groups]
        self.z = [[p.clone() for p in g] for g in self.y]
        self.x0 = [[p.clone() for p in g] for g in self.y]
        self.v = [[torch.zeros_like(p) for p in g] for g in self.y]
        self.s = [[torch.zeros_like(p) for p in g] for g in self.y]
        self.d = self.d_max = self.d0
        self.num = 0.0
        self.k = [0 for _ in groups]
        self.lr_max = [-1.0 for _ in groups]
        self.weight_sum = [0.0 for _ in groups]

    def step(self, grads: list[list[torch.Tensor | None]]) -> None:
        d, gamma = self.d, self.d * self.lr
        weight = (d / self.d0) * gamma
        new_num, den, us = 0.0, 0.0, []
        for gi, group in enumerate(grads):
            us.append([])
            for i, g in enumerate(group):
                if g is None:
                    us[gi].append(None)
                    continue
                v = self.v[gi][i] = self.b2 * self.v[gi][i] + (1 - self.b2) * g * g
                sigma = torch.sqrt(v / (1 - self.b2 ** (self.k[gi] + 1))) + self.eps
                u = g / sigma + self.wd * self.y[gi][i]
                new_num += weight * float((u * (self.x0[gi][i] - self.z[gi][i])).sum())
                self.s[gi][i] = self.b3 * self.s[gi][i] + weight * u
                den += float(self.s[gi][i].abs().sum())
                us[gi].append(u)
        for gi, group in enumerate(us):
            k = self.k[gi]
            self.lr_max[gi] = lr_max = max(self.lr_max[gi], gamma)
            w = (k + 1) ** self.r * lr_max**self.power
            self.weight_sum[gi] += w
            c = w / self.weight_sum[gi]
            for i, u in enumerate(group):
                if u is None:
                    continue
                y, z = self.y[gi][i], self.z[gi][i]
                self.y[gi][i] = y + c * (z - y) + gamma * (self.b1 * (1 - c) - 1) * u
                self.z[gi][i] = z - gamma * u
            self.k[gi] += 1
        if den > 0:  # Prodigy's estimate: d never falls, grows by at most Γ
            self.num = self.b3 * self.num + new_num
            d_hat = self.coef * self.num / den
            if d == self.d0:
                d = max(d, d_hat)
            self.d_max = max(self.d_max, d_hat)
            self.d = min(self.d_max, d * self.growth)


def run_both(config: dict, path: dict, two_groups: bool, steps: int = STEPS):
    params = make_params()
    groups = [params[:2], params[2:]] if two_groups else [params]
    opt = adaptlr.Auto([{"params": g} for g in groups], **config, **path)
    ref = Recomputed(groups, **config)
    for step in range(steps):
        grads = grads_at(params, step)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        split = [grads[:2], grads[2:]] if two_groups else [grads]
        ref.step(split)
    return opt, groups, ref


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("config", CONFIGS)
def test_equals_the_recomputation(config, path):
    opt, groups, ref = run_both(config, path, two_groups=False)
    assert ref.d > 10 * ref.d0  # the estimate grew: a test of more than the first step
    for gi, group in enumerate(groups):
        for i, p in enumerate(group):
            torch.testing.assert_close(p.detach(), ref.y[gi][i], rtol=RTOL, atol=0)
            torch.testing.assert_close(opt.state[p]["z"], ref.z[gi][i], rtol=RTOL, atol=0)
            torch.testing.assert_close(opt.state[p]["s"], ref.s[gi][i], rtol=RTOL, atol=0)
    group = opt.param_groups[0]
    assert group["d"] == pytest.approx(ref.d, rel=RTOL)
    assert group["d_numerator"] == pytest.approx(ref.num, rel=RTOL)
    assert group["lr_max"] == pytest.approx(ref.lr_max[0], rel=RTOL)
    assert group["weight_sum"] == pytest.approx(ref.weight_sum[0], rel=RTOL)


@pytest.mark.parametrize("path", PATHS)
def test_two_groups_share_one_estimate(path):
    """The sums run over both groups; each group averages with its own weights."""
    opt, groups, ref = run_both({"weight_decay": 0.01}, path, two_groups=True)
    for gi, group in enumerate(groups):
        for i, p in enumerate(group):
            torch.testing.assert_close(p.detach(), ref.y[gi][i], rtol=RTOL, atol=0)
        assert opt.param_groups[gi]["d"] == pytest.approx(ref.d, rel=RTOL)
        assert opt.param_groups[gi]["weight_sum"] == pytest.approx(ref.weight_sum[gi], rel=RTOL)


def test_the_estimate_is_taken_along_z():
    """Measured at y instead of z (what scale_by_distance before schedule_free would do),
    the estimate comes out smaller: the recomputation above is not satisfied by it."""
    params = make_params()
    chain = core.chain(
        core.group_clock(core.ema_sq(0.999, eps=1e-8, debias=True)),
        core.scale_by_distance(d0=1e-3),
        core.negate(),
        core.schedule_free(lr=1.0),
    )
    at_y = adaptlr.Optimizer(params, chain)
    ref = Recomputed([make_params()])
    for step in range(STEPS):
        grads = grads_at(params, step)
        for p, g in zip(params, grads):
            p.grad = g
        at_y.step()
        ref.step([grads])
    assert at_y.param_groups[0]["d"] < 0.8 * ref.d


def test_train_and_eval_move_between_y_and_the_average():
    params = make_params()
    opt = adaptlr.Auto(params)
    for step in range(10):
        for p, g in zip(params, grads_at(params, step)):
            p.grad = g
        opt.step()
    y = [p.detach().clone() for p in params]
    z = [opt.state[p]["z"].clone() for p in params]
    opt.eval()
    for p, yy, zz in zip(params, y, z):  # x = y + (1 - 1/β1)(z - y)
        torch.testing.assert_close(
            p.detach(), yy + (1 - 1 / 0.9) * (zz - yy), rtol=1e-12, atol=1e-15
        )
    with pytest.raises(RuntimeError, match=r"Auto.step\(\) called in eval mode"):
        opt.step()
    opt.train()
    for p, yy in zip(params, y):
        torch.testing.assert_close(p.detach(), yy, rtol=1e-12, atol=1e-15)


RESUME = """
import sys
import torch
sys.path.insert(0, {here!r})
import adaptlr
from adaptlr import checkpoint
from test_auto import grads_at
path, fused = sys.argv[1], sys.argv[2] == "1"
ck = checkpoint.load(path)
params = [p.clone().requires_grad_() for p in ck["params"]]
opt = adaptlr.Auto(params, weight_decay=0.01, fused=fused)
opt.load_state_dict(ck["opt"])
opt.train()
for step in range(20, 40):
    for p, g in zip(params, grads_at(params, step)):
        p.grad = g
    opt.step()
opt.eval()
checkpoint.save({{"params": [p.detach() for p in params], "d": opt.param_groups[0]["d"]}},
                path + ".out")
"""


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_resume_in_a_new_process_is_bit_identical(tmp_path, fused):
    """40 steps straight equal 20, a checkpoint saved in eval mode, and 20 more in a fresh
    process, to the bit."""
    straight, params = make_params(), make_params()
    opt = adaptlr.Auto(straight, weight_decay=0.01, fused=fused)
    half = adaptlr.Auto(params, weight_decay=0.01, fused=fused)
    for step in range(40):
        for p, g in zip(straight, grads_at(straight, step)):
            p.grad = g
        opt.step()
        if step < 20:
            for p, g in zip(params, grads_at(params, step)):
                p.grad = g
            half.step()
    opt.eval()
    half.eval()
    path = str(tmp_path / "ck.pt")
    checkpoint.save({"params": [p.detach() for p in params], "opt": half.state_dict()}, path)
    code = RESUME.format(here=str(Path(__file__).parent))
    subprocess.run(
        [sys.executable, "-c", code, path, "1" if fused else "0"], check=True, timeout=120
    )
    out = checkpoint.load(path + ".out")
    assert out["d"] == opt.param_groups[0]["d"]
    for p, q in zip(straight, out["params"]):
        assert torch.equal(p.detach(), q)


def test_the_monitor_records_the_estimate():
    from adaptlr.monitor import Monitor

    params = make_params()
    opt = adaptlr.Auto(params)
    ref = Recomputed([make_params()])
    mon = Monitor(opt)
    for step in range(15):
        grads = grads_at(params, step)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        ref.step([grads])
        mon.record(0.0)
        assert mon.records[-1]["group_state"][0]["d"] == pytest.approx(ref.d, rel=RTOL)
    assert mon.records[-1]["group_state"][0]["d"] > mon.records[0]["group_state"][0]["d"]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"d0": 0.0}, "d0"),
        ({"d_coef": -1.0}, "d_coef"),
        ({"betas": (1.0, 0.999)}, "betas"),
        ({"growth_rate": 0.0}, "growth_rate"),
        ({"beta3": 1.5}, "beta3"),
        ({"weight_lr_power": -1.0}, "weight_lr_power"),
    ],
)
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=rf"Auto: {name}"):
        adaptlr.Auto(make_params(), **kwargs)


def test_one_estimate_needs_one_d0():
    a, b = make_params()[:2]
    with pytest.raises(ValueError, match="d0 must be the same in every param group"):
        adaptlr.Auto([{"params": [a]}, {"params": [b], "d0": 1e-4}])


def test_the_part_composes_with_another_magnitude():
    """A schedule-free Adagrad with the estimate: chain(sum_sq, schedule_free_distance), its
    first step d0·g/|g| (Adagrad's σ = |g| at the first step), then the estimate grows."""
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = adaptlr.Optimizer([w], core.chain(core.sum_sq(eps=0.0), core.schedule_free_distance()))
    w.grad = torch.tensor([3.0, -4.0], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(
        w.detach(), torch.tensor([1.0 - 1e-3, -2.0 + 1e-3], dtype=torch.float64)
    )
    for _ in range(30):
        w.grad = 2 * w.detach()
        opt.step()
    assert opt.param_groups[0]["d"] > 1e-2
