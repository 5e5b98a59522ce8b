"""adaptlr optimizers under timm's ``CosineLRScheduler``, in a plain training loop (issue 16).

What timm does, which the assertions follow (timm 1.0): the scheduler reads each group's
``lr`` once, in its constructor (as ``initial_lr``), writes ``warmup_lr_init`` there at once
when it has a warm-up, and ``step_update(n)`` writes ``lr = f(n)`` after update n. timm logs
nothing itself: what its users log is ``param_groups[i]["lr"]``, so that is the "logged" value
checked here, read just before each step. With an adaptlr schedule as ``lr`` timm's writes
compete: adaptlr warns once and applies its schedule; the group's lr read before a step is then
timm's value, overridden by the step (asserted as such below).
"""

from __future__ import annotations

import math
import warnings

import pytest

pytest.importorskip("timm")

import _tiny
import torch
from timm.scheduler import CosineLRScheduler

import adaptlr
from adaptlr.schedules import cosine, warmup_cosine

BATCH, N, STEPS, SAVE_AT = 8, 48, 10, 4
LR, WARMUP, WARMUP_LR, LR_MIN = 0.05, 3, 0.005, 0.001
WD = _tiny.COUNTERPARTS["AdamW"][1]["weight_decay"]


def _timm(opt, **kw):
    kw = {"t_in_epochs": False, **kw}
    return CosineLRScheduler(
        opt, t_initial=STEPS, lr_min=LR_MIN, warmup_t=WARMUP, warmup_lr_init=WARMUP_LR, **kw
    )


def _timm_lr(t: int) -> float:
    """timm's CosineLRScheduler at update t (warm-up, then one cosine cycle), written out."""
    if t < WARMUP:
        return WARMUP_LR + t * (LR - WARMUP_LR) / WARMUP
    return LR_MIN + 0.5 * (LR - LR_MIN) * (1 + math.cos(math.pi * t / STEPS))


def _batch(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _tiny.data(N)
    i = (k * BATCH) % N
    return x[i : i + BATCH], y[i : i + BATCH]


def _run(model, opt, sched=None, start: int = 0, stop: int = STEPS, save=None):
    """Updates start..stop-1; ``save(k)`` is called after update k-1 (k updates done)."""
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        for k in range(start, stop):
            x, y = _batch(k)
            opt.zero_grad()
            model(x, y)["loss"].backward()
            opt.step()
            if sched is not None:
                sched.step_update(k + 1)
            if save is not None and k + 1 == SAVE_AT:
                save()
    return records


@pytest.mark.parametrize("name", sorted(_tiny.COUNTERPARTS))
def test_float_lr_under_timm_cosine_equals_torch_optim(name):
    runs = []
    for lib in (adaptlr, torch.optim):
        model = _tiny.MLP()
        opt = _tiny.counterpart(lib, name, LR)(model.parameters())
        probe = _tiny.EtaProbe(opt, model.fc1.weight, **_tiny.COUNTERPARTS[name][1])
        records = _run(model, opt, _timm(opt))
        runs.append((model, probe, records))
    (model, probe, records), (ref, ref_probe, _) = runs

    _tiny.assert_trained(model)
    _tiny.assert_params_close(model, ref)
    expected = [_timm_lr(k) for k in range(STEPS)]
    _tiny.assert_etas(ref_probe.etas, expected, f"torch.optim.{name} eta")  # the probe is right
    _tiny.assert_etas(probe.etas, expected)
    _tiny.assert_float_values(probe.lr_before, "group lr")
    _tiny.assert_etas(probe.lr_before, probe.etas, "group lr before the step")
    assert _tiny.adaptlr_warnings(records) == []


def test_schedule_in_one_group_float_in_the_other():
    s = warmup_cosine(LR, WARMUP, STEPS)
    model = _tiny.MLP()
    groups = [{"params": model.fc1.parameters(), "lr": s}, {"params": model.fc2.parameters()}]
    opt = adaptlr.SGD(groups, lr=0.01)
    probes = [_tiny.EtaProbe(opt, model.fc1.weight), _tiny.EtaProbe(opt, model.fc2.weight)]
    records = _run(model, opt)

    _tiny.assert_trained(model)
    _tiny.assert_etas(probes[0].etas, [s(k) for k in range(STEPS)], "scheduled group's eta")
    _tiny.assert_etas(probes[1].etas, [0.01] * STEPS, "float group's eta")
    for probe in probes:
        _tiny.assert_float_values(probe.lr_before, "group lr")
        _tiny.assert_etas(probe.lr_before, probe.etas, "group lr before the step")
    assert _tiny.adaptlr_warnings(records) == []


def test_schedule_lr_against_timm_scheduler_warns_once_and_the_schedule_wins():
    warning = _tiny.schedule_override_warning()
    s = cosine(LR, STEPS, min_lr=LR / 10)
    model = _tiny.MLP()
    opt = adaptlr.SGD(model.parameters(), lr=s)
    sched = _timm(opt)
    assert sched.base_values == [s(0)]  # timm read a float as the group's initial lr
    probe = _tiny.EtaProbe(opt, model.fc1.weight)
    records = _run(model, opt, sched)

    _tiny.assert_trained(model)
    ours = _tiny.adaptlr_warnings(records)
    assert [w.category for w in ours] == [warning], [str(w.message) for w in ours]
    _tiny.assert_etas(probe.etas, [s(k) for k in range(STEPS)])
    # before each step the group holds what timm wrote (its cosine of base lr s(0) = LR)
    _tiny.assert_float_values(probe.lr_before, "group lr")
    _tiny.assert_etas(probe.lr_before, [_timm_lr(k) for k in range(STEPS)], "timm's lr")


def test_timm_write_before_the_first_step_warns():
    # timm's default t_in_epochs=True steps once an epoch: in a run of one epoch its only write
    # is warmup_lr_init, in its constructor, before any step. That write competes too.
    warning = _tiny.schedule_override_warning()
    s = cosine(LR, STEPS)
    model = _tiny.MLP()
    opt = adaptlr.SGD(model.parameters(), lr=s)
    _timm(opt, t_in_epochs=True)
    assert opt.param_groups[0]["lr"] == WARMUP_LR
    probe = _tiny.EtaProbe(opt, model.fc1.weight)
    records = _run(model, opt)

    _tiny.assert_etas(probe.etas, [s(k) for k in range(STEPS)])
    ours = _tiny.adaptlr_warnings(records)
    assert [w.category for w in ours] == [warning], [str(w.message) for w in ours]


@pytest.mark.parametrize("lr", ["float", "schedule"])
def test_resume_from_a_saved_loop_is_bit_for_bit(tmp_path, lr):
    path = tmp_path / "ckpt.pt"

    def build():
        model = _tiny.MLP()
        if lr == "float":
            opt = adaptlr.AdamW(model.parameters(), lr=LR, weight_decay=WD)
            return model, opt, _timm(opt)
        s = warmup_cosine(LR, WARMUP, STEPS)
        return model, adaptlr.AdamW(model.parameters(), lr=s, weight_decay=WD), None

    full, opt, sched = build()

    def save():
        state = {"model": full.state_dict(), "optimizer": opt.state_dict()}
        if sched is not None:
            state["scheduler"] = sched.state_dict()
        torch.save(state, path)

    records = _run(full, opt, sched, save=save)

    resumed, opt2, sched2 = build()
    state = torch.load(path, weights_only=True)  # what HF and Lightning use
    resumed.load_state_dict(state["model"])
    opt2.load_state_dict(state["optimizer"])
    if sched2 is not None:
        sched2.load_state_dict(state["scheduler"])
    _tiny.assert_saved_groups(
        state["optimizer"]["param_groups"],
        None if lr == "float" else warmup_cosine(LR, WARMUP, STEPS),
    )
    records += _run(resumed, opt2, sched2, start=SAVE_AT)

    _tiny.assert_trained(full)
    _tiny.assert_params_equal(resumed, full)
    assert _tiny.adaptlr_warnings(records) == []
