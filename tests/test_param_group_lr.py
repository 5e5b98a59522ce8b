"""``param_group["lr"]`` is always a number: the η the next step applies.

A schedule given as ``lr`` lives in ``group["lr_schedule"]``; every tool that reads or writes
``lr`` (loggers, torch/HF/timm schedulers, the monitor) sees a float. The applied η is observed
independently: plain SGD moves a parameter by exactly -η·g.
"""

from __future__ import annotations

import io
import math
import subprocess
import sys
import warnings

import pytest
import torch

import adaptlr
from adaptlr import schedules
from adaptlr.monitor import Monitor


def warmup_linear_by_hand(t: int, lr: float = 0.1, warmup: int = 3, total: int = 10) -> float:
    """torch/HF's linear warm-up then linear decay, written out for the test."""
    if t < warmup:
        return lr * t / warmup
    return lr * max(0.0, (total - t) / (total - warmup))


def applied_etas(opt: torch.optim.Optimizer, w: torch.Tensor, steps: int) -> list[float]:
    """η of each step, read off the parameter: SGD without momentum moves it by -η·g."""
    etas = []
    for _ in range(steps):
        before = w.detach().clone()
        w.grad = torch.full_like(w, 2.0)
        opt.step()
        etas.append(float((before - w.detach())[0] / 2.0))
    return etas


@pytest.fixture
def sched():
    return schedules.warmup_linear(0.1, warmup=3, total_steps=10)


def _check_schedule_matches_hand(sched):
    hand = [warmup_linear_by_hand(t) for t in range(14)]
    assert [sched(t) for t in range(14)] == pytest.approx(hand, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("fused", [None, False])
def test_lr_is_the_number_the_next_step_applies(sched, fused):
    _check_schedule_matches_hand(sched)
    w = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = adaptlr.SGD([w], lr=sched, fused=fused)
    group = opt.param_groups[0]
    assert group["lr_schedule"] is sched
    seen, etas = [], []
    for t in range(12):
        assert type(group["lr"]) is float
        seen.append(group["lr"])
        etas += applied_etas(opt, w, 1)
        assert group["applied_steps"] == t + 1
    hand = [warmup_linear_by_hand(t) for t in range(12)]
    assert seen == pytest.approx(hand, rel=1e-12, abs=1e-15)
    assert etas == pytest.approx(hand, rel=1e-9, abs=1e-15)
    assert opt.current_lr() == [pytest.approx(warmup_linear_by_hand(12), abs=1e-15)]


def test_another_writer_gets_one_warning_and_the_schedule_wins(sched):
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = adaptlr.SGD([w], lr=sched)
    applied_etas(opt, w, 2)
    other = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    with pytest.warns(adaptlr.ScheduleOverrideWarning, match="param group 0 has a schedule"):
        etas = []
        for _ in range(4):
            etas += applied_etas(opt, w, 1)
            other.step()
    assert etas == pytest.approx([warmup_linear_by_hand(t) for t in range(2, 6)], rel=1e-9)
    # once per group: later overrides are applied the same way, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        other.step()
        assert applied_etas(opt, w, 1) == pytest.approx([warmup_linear_by_hand(6)], rel=1e-9)


@pytest.mark.parametrize("fused", [None, False])
def test_a_write_before_the_first_step_is_seen_too(sched, fused):
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = adaptlr.SGD([w], lr=sched, fused=fused)
    opt.param_groups[0]["lr"] = 0.5  # as timm's warm-up scheduler does in its constructor
    with pytest.warns(adaptlr.ScheduleOverrideWarning, match="set to 0.5"):
        etas = applied_etas(opt, w, 2)
    assert etas == pytest.approx([warmup_linear_by_hand(0), warmup_linear_by_hand(1)], abs=1e-15)


def test_a_number_written_after_removing_the_schedule_is_applied(sched):
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = adaptlr.SGD([w], lr=sched)
    applied_etas(opt, w, 2)
    opt.param_groups[0]["lr_schedule"] = None
    opt.param_groups[0]["lr"] = 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert applied_etas(opt, w, 2) == pytest.approx([0.25, 0.25], rel=1e-12)


def test_a_new_schedule_set_by_hand_takes_over_without_a_warning(sched):
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = adaptlr.SGD([w], lr=0.3)
    applied_etas(opt, w, 2)
    opt.param_groups[0]["lr"] = sched  # assigned as torch users assign lr
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        etas = applied_etas(opt, w, 3)
    assert etas == pytest.approx([warmup_linear_by_hand(t) for t in (2, 3, 4)], rel=1e-9)
    assert opt.param_groups[0]["lr_schedule"] is sched
    assert type(opt.param_groups[0]["lr"]) is float


def test_groups_with_their_own_number_do_not_inherit_the_default_schedule(sched):
    a = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    c = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = adaptlr.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=sched)
    opt.add_param_group({"params": [c], "lr": 0.2})
    assert opt.param_groups[0]["lr_schedule"] is sched
    assert opt.param_groups[1].get("lr_schedule") is None
    assert opt.param_groups[2].get("lr_schedule") is None
    for p in (a, b, c):
        p.grad = torch.ones(2, dtype=torch.float64)
    opt.step()
    opt.step()
    # steps at t = 0 and 1 of the schedule, and the groups' own numbers
    torch.testing.assert_close(a.detach(), torch.full((2,), -(0.0 + 0.1 / 3), dtype=a.dtype))
    torch.testing.assert_close(b.detach(), torch.full((2,), -1.0, dtype=b.dtype))
    torch.testing.assert_close(c.detach(), torch.full((2,), -0.4, dtype=c.dtype))


@pytest.mark.parametrize(
    "bad",
    [lambda t: 0.1, math.cos, schedules.Schedule.value],
    ids=["lambda", "builtin", "function"],
)
def test_an_lr_that_cannot_be_saved_is_refused_when_built(bad):
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=r"lr must be .*Schedule.*subclassing"):
        adaptlr.Adam([w], lr=bad)
    opt = adaptlr.Adam([w], lr=0.1)
    v = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="cannot be saved"):
        opt.add_param_group({"params": [v], "lr": bad})
    assert len(opt.param_groups) == 1  # nothing half-added
    with pytest.raises(ValueError, match="lr must be"):
        adaptlr.Optimizer([w], lambda lr: adaptlr.SGD.transform(lr=0.1), lr=bad)


def test_weights_only_round_trip_resumes_exactly(sched):
    def run(opt, w, n):
        return applied_etas(opt, w, n)

    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = adaptlr.SGD([w], lr=sched, momentum=0.9)
    run(opt, w, 4)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    v = torch.nn.Parameter(w.detach().clone())
    resumed = adaptlr.SGD([v], lr=0.7, momentum=0.9)  # the schedule comes from the checkpoint
    resumed.load_state_dict(sd)
    assert resumed.param_groups[0]["lr_schedule"] == sched
    assert resumed.param_groups[0]["lr"] == pytest.approx(warmup_linear_by_hand(4), rel=1e-12)
    run(opt, w, 5)
    run(resumed, v, 5)
    assert torch.equal(w, v)


def test_a_state_dict_of_the_previous_format_still_loads(sched):
    """adaptlr 0.1 kept the schedule itself in ``lr``."""
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = adaptlr.SGD([w], lr=sched)
    applied_etas(opt, w, 4)
    sd = opt.state_dict()
    old = {**sd, "param_groups": [dict(g) for g in sd["param_groups"]]}
    for g in old["param_groups"]:
        g["lr"] = g.pop("lr_schedule")
    for target_lr in (0.7, sched):
        v = torch.nn.Parameter(w.detach().clone())
        resumed = adaptlr.SGD([v], lr=target_lr)
        resumed.load_state_dict(old)
        group = resumed.param_groups[0]
        assert group["lr_schedule"] == sched and type(group["lr"]) is float
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            etas = applied_etas(resumed, v, 3)
        assert etas == pytest.approx([warmup_linear_by_hand(t) for t in (4, 5, 6)], rel=1e-9)


def test_a_float_state_dict_loaded_into_a_scheduled_optimizer_keeps_its_number(sched):
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = adaptlr.SGD([w], lr=0.3)
    applied_etas(opt, w, 2)
    v = torch.nn.Parameter(w.detach().clone())
    resumed = adaptlr.SGD([v], lr=sched)
    resumed.load_state_dict(opt.state_dict())
    assert resumed.param_groups[0].get("lr_schedule") is None
    assert applied_etas(resumed, v, 2) == pytest.approx([0.3, 0.3], rel=1e-12)


def test_schedule_lr_without_a_schedule_follows_the_optimizer(sched):
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = adaptlr.SGD([w], lr=sched)
    follower = schedules.ScheduleLR(opt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for t in range(8):
            assert follower.get_last_lr() == pytest.approx([warmup_linear_by_hand(t)], abs=1e-15)
            assert applied_etas(opt, w, 1) == pytest.approx(
                [warmup_linear_by_hand(t)], rel=1e-9, abs=1e-15
            )
            follower.step()


@pytest.mark.parametrize("fused", [None, False])
def test_the_monitor_logs_the_eta_each_step_applied(sched, fused):
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = adaptlr.SGD([w], lr=sched, fused=fused)
    mon = Monitor(opt, every=1)
    etas = []
    for _ in range(6):
        etas += applied_etas(opt, w, 1)
        mon.record(torch.tensor(1.0))
    logged = [r["lr"][0] for r in mon.records]
    assert all(type(x) is float for x in logged)
    assert logged == pytest.approx(etas, rel=1e-9, abs=1e-15)


def test_the_optimizer_with_a_schedule_pickles_in_a_fresh_process(tmp_path, sched):
    """The state dict's schedule loads where adaptlr is imported fresh, weights_only."""
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = adaptlr.AdamW([w], lr=sched)
    w.grad = torch.ones(3, dtype=torch.float64)
    opt.step()
    path = tmp_path / "opt.pt"
    torch.save(opt.state_dict(), path)
    code = (
        "import torch, adaptlr\n"
        f"sd = torch.load({str(path)!r}, weights_only=True)\n"
        "g = sd['param_groups'][0]\n"
        "print(type(g['lr']).__name__, g['lr_schedule'](5))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["float", repr(warmup_linear_by_hand(5))]


@pytest.mark.parametrize("fused", [None, False])
def test_a_scheduler_writing_lr_every_step_builds_the_chain_once(fused):
    """lr is data: a new value each step reaches the chain as a coefficient, nothing rebuilt."""
    wa = torch.nn.Parameter(torch.linspace(-1, 1, 6, dtype=torch.float64))
    wb = torch.nn.Parameter(wa.detach().clone())
    ours = adaptlr.AdamW([wa], lr=0.1, weight_decay=0.1, fused=fused)
    theirs = torch.optim.AdamW([wb], lr=0.1, weight_decay=0.1, foreach=False)
    built = []
    factory = ours._factory

    def counting(**hyper):
        built.append(hyper["lr"])
        return factory(**hyper)

    ours._factory = counting
    scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7) for o in (ours, theirs)]
    for t in range(12):
        for w, o, s in zip((wa, wb), (ours, theirs), scheds):
            w.grad = torch.sin(w.detach() * (t + 1))
            o.step()
            s.step()
    assert len(built) == 1, built  # once, for the first step
    torch.testing.assert_close(wa, wb, rtol=1e-12, atol=1e-14)
    # the functional form still shows the number itself
    assert "lr=0.01" in repr(adaptlr.AdamW.transform(lr=0.01))


@pytest.mark.parametrize("fused", [None, False])
@pytest.mark.parametrize(
    "bad", ["0.1", math.nan, -0.5, None], ids=["str", "nan", "negative", "none"]
)
def test_a_bad_lr_written_between_steps_is_refused_before_anything_changes(fused, bad):
    """The chain reads lr at each step, so a value written after the build is checked too."""
    a = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    b = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = adaptlr.Adam([{"params": [a]}, {"params": [b]}], lr=0.1, fused=fused)
    a.grad, b.grad = torch.ones(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    opt.step()
    before = [a.detach().clone(), b.detach().clone()]
    opt.param_groups[1]["lr"] = bad
    with pytest.raises(ValueError, match=r"param group 1.*lr must be"):
        opt.step()
    assert torch.equal(a, before[0]) and torch.equal(b, before[1])  # group 0 not stepped either
