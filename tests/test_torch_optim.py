"""The torch.optim adapter: groups, closures, hooks, schedulers, GradScaler, functional API."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

import adaptlr
from adaptlr import core, schedules
from adaptlr.optimizers.registry import REGISTRY

ALL = sorted(REGISTRY)


def param(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()


@pytest.mark.parametrize("name", ALL)
def test_step_with_closure_returns_loss_and_matches_manual(name):
    info = REGISTRY[name]
    cfg = info.all_configs[0]
    a, b = param(3), param(3)
    oa, ob = info.cls([a], **cfg), info.cls([b], **cfg)

    def closure():
        oa.zero_grad()
        loss = (a**2).sum()
        loss.backward()
        return loss

    for _ in range(3):
        loss = oa.step(closure)
        ob.zero_grad()
        (b**2).sum().backward()
        ob.step()
        assert isinstance(loss, torch.Tensor)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ALL)
def test_functional_api_equals_the_optimizer(name):
    info = REGISTRY[name]
    cfg = info.all_configs[-1]
    w = param(4, 2)
    p = [w.detach().clone()]
    opt = info.cls([w], **cfg)
    t = info.cls.transform(**cfg)
    state = t.init(p)
    gen = torch.Generator().manual_seed(5)
    for step in range(10):
        g = torch.randn(4, 2, generator=gen, dtype=torch.float64)
        w.grad = g.clone()
        opt.step()
        u, state = t.update([g], state, p, count=step)
        p = [p[0] + u[0]]
    torch.testing.assert_close(w.detach(), p[0], rtol=1e-14, atol=1e-15)


def test_generic_optimizer_from_a_user_chain_and_a_factory():
    chain = core.chain(
        core.clip_by_value(1.0),
        core.rule(core.momentum(0.9), core.mean_sq()),
        core.scale_by_learning_rate(0.05),
    )
    w1, w2 = param(3), param(3)
    fixed = adaptlr.Optimizer([w1], chain)
    from_factory = adaptlr.Optimizer(
        [w2],
        lambda lr: core.chain(
            core.clip_by_value(1.0),
            core.rule(core.momentum(0.9), core.mean_sq()),
            core.scale_by_learning_rate(lr),
        ),
        lr=0.05,
    )
    for _ in range(5):
        for w, o in [(w1, fixed), (w2, from_factory)]:
            o.zero_grad()
            (w**3).sum().backward()
            o.step()
    assert torch.equal(w1, w2)
    assert from_factory.current_lr() == [0.05]
    assert set(fixed.state[w1]) == {"step", "momentum_buffer", "mean_square"}


def test_schedule_as_lr_is_evaluated_at_applied_steps_and_resumes():
    sched = schedules.exponential(0.1, gamma=0.5)
    w = param(2)
    opt = adaptlr.SGD([w], lr=sched)
    seen = []
    for _ in range(4):
        seen.append(opt.current_lr()[0])
        before = w.detach().clone()
        w.grad = torch.ones(2, dtype=torch.float64)
        opt.step()
        torch.testing.assert_close(before - w.detach(), torch.full((2,), seen[-1], dtype=w.dtype))
    assert seen == [0.1, 0.05, 0.025, 0.0125]
    sd = opt.state_dict()
    fresh = adaptlr.SGD([param(2)], lr=sched)
    fresh.load_state_dict(sd)
    assert fresh.current_lr() == [0.1 * 0.5**4]


@dataclasses.dataclass(frozen=True)
class LinearRamp(schedules.Schedule):
    """0.1·(t + 1): a user's own schedule."""

    def value(self, t: int) -> float:
        return 0.1 * (t + 1)


def test_grad_scaler_skipped_step_does_not_advance_the_schedule():
    w = torch.nn.Parameter(torch.ones(3))
    opt = adaptlr.Adam([w], lr=LinearRamp())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    # a finite step, then an inf gradient that GradScaler must skip
    for bad in (False, True, False):
        opt.zero_grad()
        loss = (w * (float("inf") if bad else 1.0)).sum()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    assert opt.param_groups[0]["applied_steps"] == 2
    assert opt.current_lr() == [pytest.approx(0.3)]
    assert torch.isfinite(w).all()
    assert int(opt.state[w]["step"]) == 2


def test_grad_scaler_unscales_like_torch():
    wa, wb = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    oa, ob = adaptlr.Adam([wa], lr=0.1), torch.optim.Adam([wb], lr=0.1, foreach=False)
    for w, o in [(wa, oa), (wb, ob)]:
        s = torch.amp.GradScaler("cpu", init_scale=1024.0)
        for _ in range(3):
            o.zero_grad()
            s.scale((w**2).sum()).backward()
            s.step(o)
            s.update()
    torch.testing.assert_close(wa, wb)


def test_every_torch_lr_scheduler_drives_adaptlr_like_torch():
    makers = {
        "StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5),
        "CosineAnnealingLR": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10),
        "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 1.0, total_steps=20),
        "CyclicLR": lambda o: torch.optim.lr_scheduler.CyclicLR(o, 0.01, 0.1, 4),
        "ReduceLROnPlateau": lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=1),
        "LinearLR": lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.1, total_iters=5),
    }
    for name, make in makers.items():
        lrs = []
        for cls in (adaptlr.SGD, torch.optim.SGD):
            w = param(2)
            o = cls([w], lr=0.1, momentum=0.9)
            s = make(o)
            seen = []
            for _ in range(15):
                o.zero_grad()
                loss = (w**2).sum()
                loss.backward()
                o.step()
                s.step(loss.item()) if name == "ReduceLROnPlateau" else s.step()
                seen.append(o.param_groups[0]["lr"])
            lrs.append((seen, w.detach().clone()))
        assert lrs[0][0] == lrs[1][0], name
        torch.testing.assert_close(lrs[0][1], lrs[1][1], rtol=1e-12, atol=0)


def test_add_param_group_and_hooks():
    a, b = param(2), param(3, seed=1)
    opt = adaptlr.Adam([a], lr=0.1)
    opt.add_param_group({"params": [b], "lr": 0.01, "betas": (0.5, 0.9)})
    calls = []
    opt.register_step_pre_hook(lambda o, args, kw: calls.append("pre"))
    opt.register_step_post_hook(lambda o, args, kw: calls.append("post"))
    (a.sum() + b.sum()).backward()
    opt.step()
    assert calls == ["pre", "post"]
    assert opt.param_groups[1]["betas"] == (0.5, 0.9)
    # first Adam step moves each element by its group's lr
    torch.testing.assert_close(param(3, seed=1).detach() - b.detach(), torch.full((3,), 0.01,
                               dtype=torch.float64))  # fmt: skip


def test_zero_grad_and_params_without_grad_are_untouched():
    a, b = param(2), param(2, seed=1)
    opt = adaptlr.Adam([a, b], lr=0.1)
    a.sum().backward()
    opt.step()
    assert len(opt.state[b]) == 0
    assert torch.equal(b, param(2, seed=1))
    opt.zero_grad()
    assert a.grad is None


def test_effective_lr_is_eta_over_sigma():
    w = param(3)
    opt = adaptlr.RootMeanSquare([w], lr=0.2, eps=0.0)
    assert opt.effective_lr() == [[None]]
    grads = [torch.tensor([1.0, 2.0, 4.0]), torch.tensor([3.0, 2.0, 0.0])]
    for g in grads:
        w.grad = g.double()
        opt.step()
    sigma = torch.sqrt((grads[0] ** 2 + grads[1] ** 2) / 2).double()
    torch.testing.assert_close(opt.effective_lr()[0][0], 0.2 / sigma)
    assert adaptlr.SGD([w], lr=0.1).effective_lr() == [[None]]


def test_load_state_dict_then_torch_optim_loads_ours():
    """adaptlr's state dict uses torch's keys: torch.optim.Adam resumes from it exactly."""
    wa, wb = param(3), param(3)
    ours = adaptlr.Adam([wa], lr=0.1, amsgrad=True)
    for _ in range(3):
        ours.zero_grad()
        (wa**2).sum().backward()
        ours.step()
    wb.data.copy_(wa.detach())
    theirs = torch.optim.Adam([wb], lr=0.1, amsgrad=True, foreach=False)
    # as through torch.save/torch.load: torch's load keeps the tensors it is given
    theirs.load_state_dict(copy.deepcopy(ours.state_dict()))
    for w, o in [(wa, ours), (wb, theirs)]:
        for _ in range(3):
            o.zero_grad()
            (w**2).sum().backward()
            o.step()
    torch.testing.assert_close(wa, wb, rtol=1e-12, atol=0)


# -- bad input ---------------------------------------------------------------------------------
BAD = [
    (adaptlr.Adam, {"lr": -1.0}, ValueError, "lr"),
    (adaptlr.Adam, {"lr": math.nan}, ValueError, "lr"),
    (adaptlr.Adam, {"lr": "fast"}, ValueError, "lr"),
    (adaptlr.Adam, {"betas": (1.0, 0.999)}, ValueError, "betas[0]"),
    (adaptlr.Adam, {"betas": (0.9, -0.1)}, ValueError, "betas[1]"),
    (adaptlr.Adam, {"betas": 0.9}, ValueError, "betas"),
    (adaptlr.AdamW, {"eps": -1e-8}, ValueError, "eps"),
    (adaptlr.NAdam, {"weight_decay": -0.1}, ValueError, "weight_decay"),
    (adaptlr.NAdam, {"momentum_decay": -1.0}, ValueError, "momentum_decay"),
    (adaptlr.RAdam, {"eps": math.inf}, ValueError, "eps"),
    (adaptlr.RMSprop, {"alpha": 1.5}, ValueError, "alpha"),
    (adaptlr.RMSprop, {"momentum": -0.5}, ValueError, "momentum"),
    (adaptlr.RMSprop, {"init": "ones"}, ValueError, "init"),
    (adaptlr.RMSprop, {"centered": True, "init": "first_gradient"}, ValueError, "centered"),
    (adaptlr.SGD, {"momentum": -0.9}, ValueError, "momentum"),
    (adaptlr.SGD, {"dampening": 2.0}, ValueError, "dampening"),
    (adaptlr.SGD, {"nesterov": True}, ValueError, "nesterov"),
    (adaptlr.Adagrad, {"lr_decay": -0.1}, ValueError, "lr_decay"),
    (adaptlr.Adagrad, {"initial_accumulator_value": -1.0}, ValueError, "initial_accumulator"),
    (adaptlr.RootMeanSquare, {"eps": -1.0}, ValueError, "eps"),
    (adaptlr.Adam, {"amsgrad": "yes"}, TypeError, "amsgrad"),
    (adaptlr.Adam, {"differentiable": True}, ValueError, "differentiable"),
]


@pytest.mark.parametrize(
    "cls, kw, exc, needle", BAD, ids=[f"{c.__name__}-{n}" for c, _, _, n in BAD]
)
def test_bad_hyperparameters_raise_naming_the_argument(cls, kw, exc, needle):
    with pytest.raises(exc, match=needle.replace("[", r"\[").replace("]", r"\]")):
        cls([param(2)], **kw)


def test_bad_group_is_not_half_applied():
    a, b = param(2), param(2, seed=1)
    opt = adaptlr.Adam([a])
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [b], "lr": -1.0})
    assert len(opt.param_groups) == 1


def test_bad_params():
    with pytest.raises(ValueError, match="empty parameter list"):
        adaptlr.Adam([])
    a = param(2)
    with pytest.raises(ValueError, match="more than one parameter group"):
        adaptlr.Adam([{"params": [a]}, {"params": [a]}])
    with pytest.raises(TypeError, match="transform"):
        adaptlr.Optimizer([a], transform=3)


def test_sparse_gradients_are_refused_before_any_change():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    dense = param(2)
    opt = adaptlr.Adam([dense, *emb.parameters()], lr=0.1)
    dense.grad = torch.ones(2, dtype=torch.float64)
    emb(torch.tensor([1, 2])).sum().backward()
    before = dense.detach().clone()
    with pytest.raises(TypeError, match="sparse"):
        opt.step()
    assert torch.equal(dense.detach(), before)
    assert len(opt.state) == 0
    # in a second group, after a dense one that would step first
    opt2 = adaptlr.SGD([{"params": [dense]}, {"params": list(emb.parameters())}], lr=0.1)
    with pytest.raises(TypeError, match=r"sparse gradients \(param group 1\)"):
        opt2.step()
    assert torch.equal(dense.detach(), before)


# -- adaptlr.schedules as lr ------------------------------------------------------------------
def test_schedules_drive_every_step_and_resume_through_torch_save(tmp_path):
    from adaptlr import schedules

    sched = schedules.join(
        [schedules.linear_warmup(0.1, warmup=5), schedules.cosine(0.1, total_steps=20)], [5]
    )

    def grads(step):
        return torch.full((3,), 1.0 + step, dtype=torch.float64)

    def train(opt, w, steps, start=0):
        moved = []
        for step in range(start, start + steps):
            w.grad = grads(step)
            before = w.detach().clone()
            opt.step()
            moved.append(((before - w.detach()) / grads(step))[0].item())
        return moved

    w = param(3)
    straight = adaptlr.SGD([w], lr=sched)
    moved = train(straight, w, 12)
    # each step used the schedule at the number of steps applied before it; the boundary
    # (t = 5) starts the cosine at its own step 0, no step repeated or skipped
    assert moved == pytest.approx([sched(t) for t in range(12)], rel=1e-12)
    assert moved[4] == pytest.approx(0.1 * 4 / 5) and moved[5] == pytest.approx(0.1)

    w2 = param(3)
    half = adaptlr.SGD([w2], lr=sched)
    train(half, w2, 6)
    torch.save({"opt": half.state_dict(), "w": w2.detach()}, tmp_path / "ckpt.pt")
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    w3 = ckpt["w"].clone().requires_grad_()
    resumed = adaptlr.SGD([w3], lr=0.5)  # the schedule comes back from the checkpoint
    resumed.load_state_dict(ckpt["opt"])
    assert resumed.current_lr() == [sched(6)]
    train(resumed, w3, 6, start=6)
    assert torch.equal(w3.detach(), w.detach())


@pytest.mark.parametrize("name", ALL)
def test_every_optimizer_takes_a_schedule_as_lr(name):
    from adaptlr import schedules

    info = REGISTRY[name]
    cfg = dict(info.all_configs[0])
    sched = schedules.exponential(cfg.pop("lr"), gamma=0.9)
    # against the same optimizer with a constant lr that a torch scheduler changes each step
    a, b = param(4), param(4)
    oa = info.cls([a], lr=sched, **cfg)
    ob = info.cls([b], lr=sched(0), **cfg)
    torch_sched = torch.optim.lr_scheduler.ExponentialLR(ob, gamma=0.9)
    for _ in range(8):
        for w, o in [(a, oa), (b, ob)]:
            o.zero_grad()
            (w**2).sum().backward()
            o.step()
        torch_sched.step()
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert oa.current_lr()[0] == pytest.approx(ob.param_groups[0]["lr"], rel=1e-12)


# -- non-finite gradients ----------------------------------------------------------------------
def _snapshot(opt, params):
    return [p.detach().clone() for p in params], [
        {k: v.clone() for k, v in opt.state[p].items()} for p in params
    ]


@pytest.mark.parametrize("fused", [None, False], ids=["fused", "reference"])
@pytest.mark.parametrize("name", ALL)
def test_nonfinite_skip_leaves_everything_untouched(name, fused):
    info = REGISTRY[name]
    cfg = info.all_configs[-1]
    a, b = param(3), param(2, 2, seed=1)
    c, d = param(3), param(2, 2, seed=1)
    opt = info.cls([{"params": [a]}, {"params": [b]}], nonfinite="skip", fused=fused, **cfg)
    clean = info.cls([{"params": [c]}, {"params": [d]}], fused=fused, **cfg)
    gen = torch.Generator().manual_seed(2)
    for step in range(6):
        ga, gb = torch.randn(3, generator=gen).double(), torch.randn(2, 2, generator=gen).double()
        bad = step in (2, 4)
        a.grad = ga.clone()
        b.grad = gb.clone()
        if bad:
            b.grad[1, 0] = float("nan") if step == 2 else float("inf")
            before = _snapshot(opt, [a, b])
        opt.step()
        if bad:
            after = _snapshot(opt, [a, b])
            for x, y in zip(before[0], after[0]):
                assert torch.equal(x, y)
            for sx, sy in zip(before[1], after[1]):
                assert sx.keys() == sy.keys()
                for k in sx:
                    assert torch.equal(sx[k], sy[k]), k
        else:
            c.grad, d.grad = ga.clone(), gb.clone()
            clean.step()
    assert [g["skipped_steps"] for g in opt.param_groups] == [2, 2]
    assert [g["applied_steps"] for g in opt.param_groups] == [4, 4]
    # the skipped steps left no trace: the same as never having seen them
    torch.testing.assert_close(a, c, rtol=1e-12, atol=0)
    torch.testing.assert_close(b, d, rtol=1e-12, atol=0)


@pytest.mark.parametrize("fused", [None, False], ids=["fused", "reference"])
def test_nonfinite_raise_raises_before_any_change(fused):
    a, b = param(3), param(2, seed=1)
    opt = adaptlr.Adam([a, b], lr=0.1, nonfinite="raise", fused=fused)
    a.grad, b.grad = torch.ones(3, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    opt.step()
    before = _snapshot(opt, [a, b])
    b.grad = torch.tensor([1.0, -math.inf], dtype=torch.float64)
    with pytest.raises(FloatingPointError, match="parameter 1"):
        opt.step()
    after = _snapshot(opt, [a, b])
    assert all(torch.equal(x, y) for x, y in zip(before[0], after[0]))
    assert opt.param_groups[0]["applied_steps"] == 1


def test_nonfinite_ignore_is_torch_behaviour_and_the_default():
    a, b = param(2), param(2)
    ours, theirs = adaptlr.SGD([a], lr=0.1), torch.optim.SGD([b], lr=0.1)
    for w, o in [(a, ours), (b, theirs)]:
        w.grad = torch.tensor([math.nan, 1.0], dtype=torch.float64)
        o.step()
    assert torch.isnan(a[0]) and torch.isnan(b[0]) and a[1] == b[1]
    with pytest.raises(ValueError, match="nonfinite"):
        adaptlr.Adam([param(2)], nonfinite="maybe")


def test_a_group_that_can_never_train_is_refused_frozen_tensors_among_others_accepted():
    with pytest.raises(ValueError, match="none of the 1 tensors .* requires grad"):
        adaptlr.Adam([torch.zeros(3)])
    head, body = param(2), torch.zeros(3)
    opt = adaptlr.SGD([head], lr=0.1)
    with pytest.raises(ValueError, match="allow_frozen=True"):
        opt.add_param_group({"params": [body]})
    assert len(opt.param_groups) == 1 and opt.state == {}  # nothing half-applied
    with pytest.raises(TypeError, match="allow_frozen must be True or False"):
        opt.add_param_group({"params": [body], "allow_frozen": "yes"})
    # progressive unfreezing: a group frozen on purpose, trained once unfrozen
    opt.add_param_group({"params": [body], "allow_frozen": True})
    body.requires_grad_(True)
    body.grad = torch.ones(3)
    opt.step()
    assert torch.equal(body.detach(), torch.full((3,), -0.1))
    model = torch.nn.Linear(2, 2)
    model.weight.requires_grad_(False)  # fine-tuning: accepted silently, as torch.optim does
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adaptlr.Adam(model.parameters())
