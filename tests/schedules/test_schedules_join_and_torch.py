"""join at its boundaries, and ScheduleLR driving torch.optim.SGD (values and resume)."""

import io
import math

import pytest
import torch

from adaptlr.schedules import (
    ScheduleLR,
    constant,
    cosine,
    cyclic,
    exponential,
    join,
    linear_warmup,
    multi_step,
    sample,
    to_torch,
    warmup_cosine,
)

# --- join -------------------------------------------------------------------------------


def test_join_warmup_then_cosine_no_off_by_one():
    lr, w, decay = 1.0, 10, 90
    s = join([linear_warmup(lr, warmup=w), cosine(lr, total_steps=decay)], boundaries=[w])
    assert s(w - 1) == pytest.approx(lr * (w - 1) / w)  # last warm-up step, still rising
    assert s(w) == lr  # cosine's step 0
    assert s(w + 1) == pytest.approx((1 + math.cos(math.pi / decay)) / 2)  # cosine's step 1
    assert s(w + decay) == pytest.approx(0.0, abs=1e-15)
    # the joined pair is the same curve as warmup_cosine (which counts from the same t)
    ref = warmup_cosine(lr, warmup=w, total_steps=w + decay)
    assert sample(s, 150) == pytest.approx(sample(ref, 150), abs=1e-15)


def test_join_each_piece_sees_its_own_step_count():
    a, b, c = constant(3.0), exponential(1.0, gamma=0.5), multi_step(7.0, milestones=[2])
    s = join([a, b, c], boundaries=[4, 6])
    got = sample(s, 10)
    assert got == [3.0, 3.0, 3.0, 3.0, 1.0, 0.5, 7.0, 7.0, pytest.approx(0.7), pytest.approx(0.7)]


def test_join_equal_boundaries_skip_a_piece_and_zero_boundary():
    s = join([constant(1.0), constant(2.0), constant(3.0)], boundaries=[5, 5])
    assert (s(4), s(5)) == (1.0, 3.0)
    assert join([constant(1.0), constant(2.0)], boundaries=[0])(0) == 2.0


def test_join_single_schedule_and_nesting():
    assert join([constant(1.5)], boundaries=[])(100) == 1.5
    inner = join([constant(1.0), constant(2.0)], boundaries=[3])
    outer = join([constant(0.0), inner], boundaries=[10])
    assert [outer(t) for t in (9, 10, 12, 13)] == [0.0, 1.0, 1.0, 2.0]


# --- ScheduleLR -------------------------------------------------------------------------


def make_sgd(lr=9.0, groups=1):
    params = [torch.zeros(3, requires_grad=True) for _ in range(groups)]
    return torch.optim.SGD([{"params": [p]} for p in params], lr=lr, momentum=0.9)


def run(opt, sched, steps):
    """Record each group's lr as used by each update, stepping in torch's documented order."""
    used = []
    for _ in range(steps):
        used.append([g["lr"] for g in opt.param_groups])
        for g in opt.param_groups:
            for p in g["params"]:
                p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
    return used


SCHED = join([linear_warmup(0.1, warmup=50), cosine(0.1, total_steps=950)], boundaries=[50])


def test_schedule_lr_drives_sgd_with_absolute_values():
    opt = make_sgd(lr=123.0)  # the optimizer's own lr is overwritten, not multiplied
    sched = to_torch(opt, SCHED)
    assert isinstance(sched, ScheduleLR)
    used = run(opt, sched, 1000)
    assert [u[0] for u in used] == sample(SCHED, 1000)
    assert sched.get_last_lr() == [SCHED(1000)]


def test_schedule_lr_updates_match_a_manual_sgd():
    # the parameters move as SGD(lr = schedule(t)) would, step by step
    opt = make_sgd()
    sched = ScheduleLR(opt, SCHED)
    run(opt, sched, 120)
    p = torch.zeros(3)
    buf = None
    for t in range(120):
        g = torch.ones(3)
        buf = g.clone() if buf is None else 0.9 * buf + g
        p -= SCHED(t) * buf
    torch.testing.assert_close(opt.param_groups[0]["params"][0].detach(), p)


def test_schedule_lr_one_schedule_per_group():
    opt = make_sgd(groups=2)
    s0, s1 = cosine(0.2, total_steps=30), cyclic(0.01, 0.1, step_size_up=4)
    used = run(opt, ScheduleLR(opt, [s0, s1]), 40)
    assert used == [[s0(t), s1(t)] for t in range(40)]
    with pytest.raises(ValueError, match="schedule"):
        ScheduleLR(make_sgd(groups=2), [s0])
    with pytest.raises(ValueError, match="schedule"):
        ScheduleLR(make_sgd(), lambda t: 0.1)


@pytest.mark.parametrize("load_optimizer_first", [False, True])
def test_schedule_lr_resumes_exactly(load_optimizer_first):
    opt = make_sgd()
    full = run(opt, ScheduleLR(opt, SCHED), 1000)

    opt = make_sgd()
    sched = ScheduleLR(opt, SCHED)
    first = run(opt, sched, 437)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)  # plain data only

    opt2 = make_sgd(lr=5.0)
    if load_optimizer_first:
        opt2.load_state_dict(ckpt["opt"])
        sched2 = ScheduleLR(opt2, SCHED)  # this alone would reset lr to SCHED(0) ...
        sched2.load_state_dict(ckpt["sched"])  # ... and loading puts SCHED(437) back
    else:
        sched2 = ScheduleLR(opt2, SCHED)
        sched2.load_state_dict(ckpt["sched"])
        opt2.load_state_dict(ckpt["opt"])
    assert sched2.last_epoch == 437
    rest = run(opt2, sched2, 1000 - 437)
    assert first + rest == full


def test_schedule_lr_state_dict_has_no_schedule_and_last_epoch_arg():
    opt = make_sgd()
    sched = ScheduleLR(opt, SCHED)
    assert "schedules" not in sched.state_dict()
    opt = make_sgd()
    sched = ScheduleLR(opt, SCHED, last_epoch=99)  # resuming by argument: the next step is 100
    assert opt.param_groups[0]["lr"] == SCHED(100)


def test_schedule_in_param_group_survives_weights_only_load():
    opt = make_sgd()
    opt.param_groups[0]["schedule"] = SCHED
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    assert loaded["param_groups"][0]["schedule"] == SCHED
