"""Schedule-Free AdamW, SGD and RAdam against schedulefree 1.4.1 itself, in float64; the
paper's form against the package's ``AdamWScheduleFreePaper``; train/eval, resume and the
BatchNorm helper against independent recomputations."""

from __future__ import annotations

import copy
import io
import math
import warnings

import pytest
import schedulefree
import torch

import adaptlr
from adaptlr import core
from adaptlr.optimizers import AdamWScheduleFree, RAdamScheduleFree, SGDScheduleFree

SHAPES = [(3, 4), (5,), (0,), (2, 3, 2), ()]
STEPS = 50
NONE_AT = {7: 1, 20: 3, 33: 0}  # step -> index of the parameter whose gradient is None
RTOL = 1e-10
PATHS = [pytest.param({}, id="default"), pytest.param({"fused": False}, id="reference")]

ADAMW_CONFIGS = [
    {},
    {"lr": 0.01},
    {"lr": 0.02, "warmup_steps": 10},
    {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-3, "weight_decay": 0.1},
    {"lr": 0.01, "r": 1.0, "weight_lr_power": 0.0, "warmup_steps": 5},
    {"lr": 0.05, "r": 0.5, "weight_lr_power": 1.0, "weight_decay": 0.01, "foreach": False},
]
SGD_CONFIGS = [
    {},
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.1},
    {"lr": 0.2, "warmup_steps": 20, "r": 1.0},
    {"lr": 0.05, "momentum": 0.95, "weight_lr_power": 0, "foreach": False},
]
RADAM_CONFIGS = [
    {},
    {"lr": 0.01, "silent_sgd_phase": False},
    {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.1},
    {"lr": 0.02, "r": 1.0, "weight_lr_power": 1.0, "eps": 1e-3},
    {"lr": 0.02, "betas": (0.5, 0.9), "silent_sgd_phase": False, "weight_decay": 0.05},
]
CASES = (
    [pytest.param(AdamWScheduleFree, schedulefree.AdamWScheduleFree, c, id=f"adamw-{i}")
     for i, c in enumerate(ADAMW_CONFIGS)]
    + [pytest.param(SGDScheduleFree, schedulefree.SGDScheduleFree, c, id=f"sgd-{i}")
       for i, c in enumerate(SGD_CONFIGS)]
    + [pytest.param(RAdamScheduleFree, schedulefree.RAdamScheduleFree, c, id=f"radam-{i}")
       for i, c in enumerate(RADAM_CONFIGS)]
)  # fmt: skip
# the paper's Algorithm 1: the bias correction of v in the step size, not in σ
PAPER_CONFIGS = [{}, {"lr": 0.01, "warmup_steps": 10, "weight_decay": 0.1, "betas": (0.9, 0.99)}]


def make_params(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_() for s in SHAPES]


def set_grads(params: list[torch.Tensor], step: int, seed: int = 1) -> None:
    """Gradients that depend on the parameters (so trajectories matter) plus fixed noise;
    new tensors each step (schedulefree divides its gradients in place)."""
    gen = torch.Generator().manual_seed(seed + step)
    for i, p in enumerate(params):
        noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        p.grad = None if NONE_AT.get(step) == i else (0.5 * p.detach() + noise)


def run(opt, params, steps=range(STEPS)) -> None:
    for step in steps:
        set_grads(params, step)
        opt.step()


def groups_of(params, two_groups: bool):
    if not two_groups:
        return params
    return [{"params": params[:2]}, {"params": params[2:], "lr": 0.003, "weight_decay": 0.2}]


def close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype, what
    if b.numel():
        err = float((a - b).abs().max())
        assert err <= RTOL * max(float(b.abs().max()), 1e-300), f"{what}: {err:.3g}"


def compare(mine, theirs, pa, pb, where: str) -> None:
    for i, (a, b) in enumerate(zip(pa, pb)):
        close(a.detach(), b.detach(), f"{where}: parameter {i}")
        sa, sb = mine.state.get(a, {}), theirs.state.get(b, {})
        assert ("z" in sa) == ("z" in sb), f"{where}: parameter {i} state {sorted(sa)}"
        for key in ("z", "exp_avg_sq"):
            if key in sb:
                close(sa[key], sb[key], f"{where}: parameter {i} {key}")
    for gi, (ga, gb) in enumerate(zip(mine.param_groups, theirs.param_groups)):
        assert ga["applied_steps"] == gb["k"], f"{where}: group {gi} k"
        assert ga["train_mode"] == gb["train_mode"], f"{where}: group {gi} train_mode"
        for key in ("lr_max", "weight_sum", "scheduled_lr"):
            assert math.isclose(ga[key], gb[key], rel_tol=RTOL), f"{where}: group {gi} {key}"


def against(mine_cls, ref_cls, config, path, two_groups=False, ref_config=None) -> None:
    pa, pb = make_params(), make_params()
    mine = mine_cls(groups_of(pa, two_groups), **config, **path)
    ref_args = config if ref_config is None else ref_config
    theirs = ref_cls(groups_of(pb, two_groups), **ref_args)
    mine.train()
    theirs.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        run(mine, pa)
        run(theirs, pb)
    compare(mine, theirs, pa, pb, "train mode")
    mine.eval()
    theirs.eval()
    compare(mine, theirs, pa, pb, "after eval()")
    mine.train()
    theirs.train()
    compare(mine, theirs, pa, pb, "after train()")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("mine_cls", "ref_cls", "config"), CASES)
def test_equals_schedulefree(mine_cls, ref_cls, config, path):
    against(mine_cls, ref_cls, config, path)


@pytest.mark.parametrize(
    ("mine_cls", "ref_cls"),
    [
        (AdamWScheduleFree, schedulefree.AdamWScheduleFree),
        (SGDScheduleFree, schedulefree.SGDScheduleFree),
        (RAdamScheduleFree, schedulefree.RAdamScheduleFree),
    ],
)
def test_two_groups(mine_cls, ref_cls):
    against(mine_cls, ref_cls, {"lr": 0.01}, {}, two_groups=True)


@pytest.mark.parametrize("config", PAPER_CONFIGS)
def test_paper_form_equals_adamw_schedulefree_paper(config):
    against(
        AdamWScheduleFree,
        schedulefree.AdamWScheduleFreePaper,
        {**config, "bias_correction": "lr"},
        {},
        ref_config=config,
    )


def test_paper_form_differs_from_the_default():
    """The option changes the result (so the test above could fail)."""
    pa, pb = make_params(), make_params()
    a = AdamWScheduleFree(pa, lr=0.01)
    b = AdamWScheduleFree(pb, lr=0.01, bias_correction="lr")
    for opt, ps in ((a, pa), (b, pb)):
        opt.train()
        run(opt, ps, range(5))
    assert float((pa[0] - pb[0]).detach().abs().max()) > 1e-4


def test_the_signatures_are_the_packages():
    import inspect

    for mine, ref in (
        (AdamWScheduleFree, schedulefree.AdamWScheduleFree),
        (SGDScheduleFree, schedulefree.SGDScheduleFree),
        (RAdamScheduleFree, schedulefree.RAdamScheduleFree),
    ):
        theirs = list(inspect.signature(ref.__init__).parameters.values())
        ours = list(inspect.signature(mine.__init__).parameters.values())[: len(theirs)]
        assert [p.name for p in ours] == [p.name for p in theirs], mine.__name__
        for p, q in zip(ours[2:], theirs[2:]):
            assert p.default == q.default, (mine.__name__, p.name, p.default, q.default)


def test_core_part_by_hand():
    """One tensor, three steps of core.schedule_free after the raw gradient, in float64,
    against the update written out from the paper's three sequences (x kept explicitly)."""
    lr, beta, wlp, warm = 0.3, 0.8, 2.0, 2
    y = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    t = core.chain(core.schedule_free(lr, beta, warmup_steps=warm, weight_lr_power=wlp))
    state = t.init([y])
    x, z, lr_max, wsum = y.clone(), y.clone(), -1.0, 0.0
    for k in range(3):
        g = torch.sin(3 * y) + 0.1 * k
        (u,), state = t.update([g], state, [y], k)
        gamma = lr * min(1.0, (k + 1) / warm)
        lr_max = max(lr_max, gamma)
        w = lr_max**wlp
        wsum += w
        z = z - gamma * g
        x = (1 - w / wsum) * x + (w / wsum) * z
        y = y + u
        torch.testing.assert_close(y, (1 - beta) * z + beta * x, rtol=1e-14, atol=1e-15)
        torch.testing.assert_close(state[0]["z"], z, rtol=1e-14, atol=1e-15)
    assert state.shared["scheduled_lr"] == lr and state.shared["weight_sum"] == wsum


# -- train() and eval() -------------------------------------------------------------------------
def trained(cls=AdamWScheduleFree, steps=12, **kw):
    params = make_params()
    opt = cls(params, lr=0.05, **kw)
    opt.train()
    run(opt, params, range(steps))
    return opt, params


@pytest.mark.parametrize("cls", [AdamWScheduleFree, SGDScheduleFree, RAdamScheduleFree])
def test_eval_moves_to_the_average_and_train_back(cls):
    opt, params = trained(cls)
    beta = opt.param_groups[0]["momentum" if cls is SGDScheduleFree else "betas"]
    beta = beta if cls is SGDScheduleFree else beta[0]
    ys = [p.detach().clone() for p in params]
    zs = [opt.state[p]["z"].clone() for p in params]
    opt.eval()
    assert opt.param_groups[0]["train_mode"] is False
    for p, y, z in zip(params, ys, zs):  # x from y = (1-β)z + βx, solved independently
        torch.testing.assert_close(p.detach(), (y - (1 - beta) * z) / beta, rtol=1e-13, atol=0)
    opt.eval()  # twice: nothing moves
    for p, y, z in zip(params, ys, zs):
        torch.testing.assert_close(p.detach(), (y - (1 - beta) * z) / beta, rtol=1e-13, atol=0)
    opt.train()
    opt.train()
    for p, y in zip(params, ys):
        torch.testing.assert_close(p.detach(), y, rtol=1e-13, atol=0)


def test_step_in_eval_mode_is_an_error_and_changes_nothing():
    params = make_params()
    opt = AdamWScheduleFree(params, lr=0.1)
    # a new optimizer is in train mode (schedulefree's starts in eval mode and refuses a step;
    # y = x = z until the first step, so the point is the same)
    assert opt.param_groups[0]["train_mode"] is True
    fresh = AdamWScheduleFree(make_params(), lr=0.1)
    fresh.eval()
    set_grads(fresh.param_groups[0]["params"], 0)
    with pytest.raises(RuntimeError, match=r"optimizer\.train\(\)"):
        fresh.step()
    assert not any(fresh.state.get(p) for p in fresh.param_groups[0]["params"])
    run(opt, params, range(3))
    opt.eval()
    before = [p.detach().clone() for p in params]
    state = copy.deepcopy(opt.state_dict())
    set_grads(params, 3)
    with pytest.raises(RuntimeError, match=r"eval mode.*optimizer\.train\(\)"):
        opt.step()
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before))
    assert opt.state_dict()["param_groups"] == state["param_groups"]


def test_a_group_added_later_takes_the_mode():
    params = make_params()
    opt = SGDScheduleFree(params[:3], lr=0.1)
    opt.train()
    opt.add_param_group({"params": params[3:]})
    assert opt.param_groups[1]["train_mode"] is True
    run(opt, params, range(2))  # steps: every group is in train mode


# -- resume -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("cls", [AdamWScheduleFree, SGDScheduleFree, RAdamScheduleFree])
def test_resume_is_bit_identical(cls, mode):
    """25 steps, a checkpoint (model and optimizer, through torch.save/torch.load), 25 more:
    the same bits as 50 straight with the same mode switches, in a fresh optimizer."""
    kw = {"lr": 0.05, "weight_decay": 0.01}
    if cls is not RAdamScheduleFree:
        kw["warmup_steps"] = 10
    straight = make_params()
    opt = cls(straight, **kw)
    opt.train()
    run(opt, straight, range(25))
    if mode == "eval":
        opt.eval()
    buf = io.BytesIO()
    torch.save({"params": [p.detach() for p in straight], "opt": opt.state_dict()}, buf)
    opt.train()
    run(opt, straight, range(25, STEPS))
    opt.eval()

    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    resumed = [p.clone().requires_grad_() for p in saved["params"]]
    fresh = cls(resumed, **kw)
    fresh.load_state_dict(saved["opt"])
    assert fresh.param_groups[0]["train_mode"] is (mode == "train")
    fresh.train()
    run(fresh, resumed, range(25, STEPS))
    fresh.eval()
    for a, b in zip(resumed, straight):
        assert torch.equal(a.detach(), b.detach())
        assert torch.equal(fresh.state[a]["z"], opt.state[b]["z"])
    for key in ("lr_max", "weight_sum", "scheduled_lr", "applied_steps"):
        assert fresh.param_groups[0][key] == opt.param_groups[0][key]


# -- BatchNorm at x -----------------------------------------------------------------------------
@pytest.fixture
def one_thread():
    """BatchNorm's forward on two contended threads takes ~0.1 s a call here; on one, 0.1 ms."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_update_bn_recomputes_the_statistics_at_the_average():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(), torch.nn.Linear(4, 1)
    ).double()
    opt = AdamWScheduleFree(model.parameters(), lr=0.05)
    opt.train()
    data = [(torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 1)) for _ in range(5)]
    for _ in range(4):
        for x, t in data:
            opt.zero_grad()
            (model(x).squeeze(1) - t.squeeze(1).double()).square().mean().backward()
            opt.step()
    lin, bn = model[0], model[1]
    # x of the first layer, from y and z by y = (1-β1)z + β1x, independently of eval()
    beta = opt.param_groups[0]["betas"][0]
    w_x, b_x = (
        (p.detach() - (1 - beta) * opt.state[p]["z"]) / beta for p in (lin.weight, lin.bias)
    )
    hs = [x @ w_x.T + b_x for x, _ in data]
    want_mean = torch.stack([h.mean(0) for h in hs]).mean(0)
    want_var = torch.stack([h.var(0, unbiased=True) for h in hs]).mean(0)
    ys = [p.detach().clone() for p in model.parameters()]

    adaptlr.schedule_free.update_bn(data, model, opt)
    torch.testing.assert_close(bn.running_mean, want_mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(bn.running_var, want_var, rtol=1e-12, atol=1e-14)
    assert int(bn.num_batches_tracked) == len(data) and bn.momentum == 0.1
    # back as it was: train mode, the parameters at y, the model training
    assert opt.param_groups[0]["train_mode"] is True and model.training
    for p, y in zip(model.parameters(), ys):
        torch.testing.assert_close(p.detach(), y, rtol=1e-13, atol=1e-15)
    opt.eval()
    model.eval()
    adaptlr.schedule_free.update_bn(data, model, opt, max_batches=2)
    torch.testing.assert_close(bn.running_mean, torch.stack([h.mean(0) for h in hs[:2]]).mean(0))
    assert opt.param_groups[0]["train_mode"] is False and not model.training


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "name"),
    [
        (AdamWScheduleFree, {"lr": -1.0}, ValueError, "lr"),
        (AdamWScheduleFree, {"betas": (0.0, 0.999)}, ValueError, r"betas\[0\]"),
        (AdamWScheduleFree, {"betas": (0.9, 1.0)}, ValueError, r"betas\[1\]"),
        (AdamWScheduleFree, {"eps": -1e-8}, ValueError, "eps"),
        (AdamWScheduleFree, {"warmup_steps": -1}, ValueError, "warmup_steps"),
        (AdamWScheduleFree, {"r": math.nan}, ValueError, "r"),
        (AdamWScheduleFree, {"weight_lr_power": -2.0}, ValueError, "weight_lr_power"),
        (AdamWScheduleFree, {"weight_decay": -0.1}, ValueError, "weight_decay"),
        (AdamWScheduleFree, {"bias_correction": "paper"}, ValueError, "bias_correction"),
        (AdamWScheduleFree, {"foreach": "yes"}, TypeError, "foreach"),
        (SGDScheduleFree, {"momentum": 0.0}, ValueError, "momentum"),
        (SGDScheduleFree, {"momentum": 1.0}, ValueError, "momentum"),
        (SGDScheduleFree, {"lr": "0.1"}, TypeError, "lr"),
        (RAdamScheduleFree, {"silent_sgd_phase": 1}, TypeError, "silent_sgd_phase"),
        (RAdamScheduleFree, {"betas": (0.9,)}, ValueError, "betas"),
    ],
)
def test_bad_arguments_are_named(cls, kwargs, error, name):
    with pytest.raises(error, match=name):
        cls(make_params(), **kwargs)


def test_update_bn_needs_a_schedule_free_optimizer():
    model = torch.nn.BatchNorm1d(2)
    with pytest.raises(TypeError, match="optimizer"):
        adaptlr.schedule_free.update_bn([], model, torch.optim.SGD(model.parameters()))
    opt = SGDScheduleFree(model.parameters())
    with pytest.raises(ValueError, match="max_batches"):
        adaptlr.schedule_free.update_bn([], model, opt, max_batches=0)


def test_core_parts_check_their_fields():
    with pytest.raises(ValueError, match="b1"):
        core.schedule_free(0.1, b1=0.0)
    with pytest.raises(TypeError, match="magnitude"):
        core.group_clock(core.schedule_free(0.1))


@pytest.mark.usefixtures("one_thread")
def test_the_documentation_example_runs(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "schedule_free.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", text, re.S | re.M)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block.replace("/tmp/", f"{tmp_path}/"), "schedule_free.md", "exec"), {})


def test_a_schedule_free_adagrad_composes():
    """core.sum_sq then core.schedule_free, in the plain adapter, against schedulefree's
    ScheduleFreeWrapper around torch.optim.Adagrad (which steps z with Adagrad; its byte swap
    cannot take a 0-d tensor)."""
    from adaptlr.core.schedule_free import move_to_x_

    pa, pb = make_params()[:-1], make_params()[:-1]
    mine = adaptlr.Optimizer(
        pa, core.chain(core.sum_sq(eps=1e-10), core.schedule_free(0.1, 0.8, r=1.0))
    )
    theirs = schedulefree.ScheduleFreeWrapper(
        torch.optim.Adagrad(pb, lr=0.1, eps=1e-10), momentum=0.8, r=1.0
    )
    theirs.train()
    run(mine, pa)
    run(theirs, pb)
    for a, b in zip(pa, pb):
        close(a.detach(), b.detach(), "y")
        if mine.state.get(a):
            close(mine.state[a]["z"], theirs.state[b]["z"], "z")
            move_to_x_(a, mine.state[a]["z"], 0.8)
    theirs.eval()
    for a, b in zip(pa, pb):
        close(a.detach(), b.detach(), "x")
