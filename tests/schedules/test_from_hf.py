"""from_hf against transformers.get_scheduler driving a real optimizer, and the shapes it uses."""

import io
import math
import warnings
from fractions import Fraction

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import SchedulerType, get_scheduler  # noqa: E402

import adaptlr.schedules as S  # noqa: E402
from adaptlr.schedules.hf import HF_METRIC_NAMES, HF_NAMES  # noqa: E402

PAST_END = 50


def hf_lrs(name, lr, warmup, total, steps, **kwargs):
    """The lr that each of ``steps`` updates of SGD uses under transformers' scheduler."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    sched = get_scheduler(
        name,
        opt,
        num_warmup_steps=warmup,
        num_training_steps=total,
        scheduler_specific_kwargs=kwargs,
    )
    lrs = []
    for _ in range(steps):
        lr_now = opt.param_groups[0]["lr"]
        assert sched.get_last_lr() == [lr_now]
        lrs.append(lr_now)
        opt.step()  # no gradient: the step only tells the scheduler it came first
        sched.step()
    return lrs


# (name, warmup, total, scheduler-specific kwargs); each case runs at two learning rates
CASES = []
for w, t in [(0, 7), (1, 7), (7, 7), (0, 52), (5, 52), (10, 97)]:
    CASES.append(("linear", w, t, {}))
    CASES.append(("constant_with_warmup", w, t, {}))
    for c in (0.5, 1.0, 2.25):
        CASES.append(("cosine", w, t, {"num_cycles": c}))
        CASES.append(("cosine_with_min_lr", w, t, {"num_cycles": c, "min_lr_rate": 0.1}))
    CASES.append(("cosine", w, t, {}))
    CASES.append(("cosine_with_min_lr", w, t, {"min_lr": 0.004}))
    CASES.append(("cosine_with_min_lr", w, t, {"min_lr_rate": 0.0}))
    for rate in (None, 0.0, 0.25):
        kw = {} if rate is None else {"warmup_lr_rate": rate}
        CASES.append(("cosine_warmup_with_min_lr", w, t, {"min_lr_rate": 0.05, **kw}))
        CASES.append(
            ("cosine_warmup_with_min_lr", w, t, {"min_lr": 0.004, "num_cycles": 1.3, **kw})
        )
for w, t, c in [
    (0, 45, 2),
    (5, 50, 2),
    (0, 52, 1),
    (3, 100, 3),
    (7, 97, 7),
    (0, 60, 1.5),
    (2, 2, 1),
    (4, 104, 6),  # 100 / 6: at t - w = 50, t % (100 / 6) lands a hair below a restart
]:
    CASES.append(("cosine_with_restarts", w, t, {"num_cycles": c}))  # (t - w) / c = 22.5, ...
CASES.append(("cosine_with_restarts", 4, 40, {}))
for w, t in [(0, 9), (1, 9), (8, 9), (6, 80)]:
    CASES.append(("polynomial", w, t, {}))
    for power in (0.5, 1.0, 2.0, 3.3):
        CASES.append(("polynomial", w, t, {"power": power, "lr_end": 2e-5}))
for w in (0, 1, 7, 50):
    CASES.append(("inverse_sqrt", w, None, {}))
    for ts in (1, 3, 100, 2.5):
        CASES.append(("inverse_sqrt", w, None, {"timescale": ts}))
CASES.append(("inverse_sqrt", 7, 30, {}))  # num_training_steps is ignored, as in transformers
for w in (0, 1, 6):
    CASES.append(("constant", w, 30, {}))
CASES.append(("constant", None, None, {}))
SHAPES = ("linear", "cosine", "1-sqrt")
for wt in SHAPES:
    for dt in SHAPES:
        CASES.append(
            (
                "warmup_stable_decay",
                6,
                40,
                {"warmup_type": wt, "decay_type": dt, "num_decay_steps": 13},
            )
        )
        CASES.append(
            (
                "warmup_stable_decay",
                5,
                None,
                {
                    "warmup_type": wt,
                    "decay_type": dt,
                    "num_decay_steps": 7,
                    "num_stable_steps": 3,
                    "min_lr_ratio": 0.1,
                    "num_cycles": 1.25,
                },
            )
        )
for w, t, d in [(0, 20, 20), (0, 20, 0), (1, 20, 5), (20, 20, 0), (3, 25, 22)]:
    CASES.append(("warmup_stable_decay", w, t, {"num_decay_steps": d, "min_lr_ratio": 0.02}))

IDS = [f"{n}-w{w}-t{t}-" + ",".join(f"{k}={v}" for k, v in kw.items()) for n, w, t, kw in CASES]


def horizon(name, warmup, total, kwargs):
    if total is not None:
        return total + PAST_END + 1
    end = (warmup or 0) + kwargs.get("num_stable_steps", 0) + kwargs.get("num_decay_steps", 0)
    return max(end, 40) + PAST_END + 1


@pytest.mark.parametrize("name,warmup,total,kwargs", CASES, ids=IDS)
def test_from_hf_equals_transformers_at_every_step(name, warmup, total, kwargs):
    steps = horizon(name, warmup, total, kwargs)
    for lr in (0.1, 3e-4):
        theirs = hf_lrs(name, lr, warmup, total, steps, **kwargs)
        sched = S.from_hf(name, lr, warmup, total, **kwargs)
        ours = [sched(t) for t in range(steps)]
        bad = [
            (t, a, b) for t, (a, b) in enumerate(zip(ours, theirs)) if not abs(a - b) <= 1e-12 * lr
        ]
        assert not bad, bad[:5]
        # the comparison can fail: the same schedule one step late differs somewhere
        if len(set(theirs)) > 1:
            assert any(abs(sched(t + 1) - b) > 1e-6 * lr for t, b in enumerate(theirs))


def test_every_transformers_scheduler_name_is_either_built_or_refused():
    names = {m.value for m in SchedulerType}
    assert names == set(HF_NAMES) | set(HF_METRIC_NAMES)
    assert not set(HF_NAMES) & set(HF_METRIC_NAMES)


def test_the_enum_is_accepted_as_name():
    a = S.from_hf(SchedulerType.COSINE, 0.1, 3, 30)
    b = S.from_hf("cosine", 0.1, 3, 30)
    assert a == b and S.sample(a, 40) == S.sample(b, 40)


@pytest.mark.parametrize("name", HF_METRIC_NAMES)
def test_metric_driven_names_are_refused(name):
    with pytest.raises(ValueError) as info:
        S.from_hf(name, 0.1, 3, 30)
    msg = str(info.value)
    assert repr(name) in msg and "metric" in msg and "cosine_with_restarts" in msg
    assert "\n" not in msg


def test_both_stable_and_total_warn_and_use_stable_as_transformers_does():
    kw = {"num_decay_steps": 4, "num_stable_steps": 2}
    with pytest.warns(UserWarning, match="num_stable_steps"):
        sched = S.from_hf("warmup_stable_decay", 0.1, 3, 30, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = hf_lrs("warmup_stable_decay", 0.1, 3, 30, 40, **kw)
    assert [sched(t) for t in range(40)] == pytest.approx(theirs, abs=1e-13)


def test_constant_names_ignore_what_transformers_ignores():
    theirs = hf_lrs("constant_with_warmup", 0.1, 4, 10, 20, num_cycles=3)
    ours = S.from_hf("constant_with_warmup", 0.1, 4, 10, num_cycles=3)
    assert S.sample(ours, 20) == pytest.approx(theirs, abs=1e-13)
    assert S.from_hf("constant", 0.1, 4, 10, power=2) == S.constant(0.1)


# --- errors: where transformers refuses, from_hf refuses with a ValueError naming the argument

REFUSED_BY_BOTH = [
    ("linear", None, 10, {}, "num_warmup_steps"),
    ("cosine", 2, None, {}, "num_training_steps"),
    ("polynomial", 2, None, {}, "num_training_steps"),
    ("cosine_with_min_lr", 2, 10, {}, "min_lr"),
    ("cosine_with_min_lr", 2, 10, {"min_lr": 0.01, "min_lr_rate": 0.1}, "min_lr_rate"),
    ("cosine_warmup_with_min_lr", 2, 10, {}, "min_lr"),
    ("warmup_stable_decay", 2, 10, {}, "num_decay_steps"),
    ("warmup_stable_decay", 2, None, {"num_decay_steps": 3}, "num_stable_steps"),
    ("warmup_stable_decay", 2, 10, {"num_decay_steps": 3, "warmup_type": "exp"}, "warmup_type"),
    ("warmup_stable_decay", 2, 10, {"num_decay_steps": 3, "decay_type": "sqrt"}, "decay_type"),
    ("polynomial", 2, 10, {"lr_end": 0.1}, "lr_end"),
    ("cosine", 2, 10, {"power": 2.0}, "power"),
    ("linear", 2, 10, {"num_cycles": 2}, "num_cycles"),
    ("inverse_sqrt", 2, 10, {"num_cycles": 2}, "num_cycles"),
    ("cosine_with_restarts", 2, 10, {"last_epoch": 3}, "last_epoch"),
    ("no_such_schedule", 2, 10, {}, "cosine_with_min_lr"),
]


@pytest.mark.parametrize("name,warmup,total,kwargs,arg", REFUSED_BY_BOTH)
def test_arguments_transformers_refuses_are_refused(name, warmup, total, kwargs, arg):
    with pytest.raises((ValueError, TypeError, KeyError)):  # KeyError: last_epoch
        hf_lrs(name, 0.1, warmup, total, 3, **kwargs)
    with pytest.raises(ValueError, match=rf"\b{arg}\b") as info:
        S.from_hf(name, 0.1, warmup, total, **kwargs)
    assert "\n" not in str(info.value)


# where transformers runs on silently (or divides by zero later), from_hf refuses at once
REFUSED_BY_US = [
    ("linear", 11, 10, {}, "num_warmup_steps"),
    ("cosine_with_restarts", 11, 10, {}, "num_warmup_steps"),
    ("polynomial", 10, 10, {}, "num_training_steps"),
    ("warmup_stable_decay", 5, 10, {"num_decay_steps": 6}, "num_training_steps"),
    ("linear", -1, 10, {}, "num_warmup_steps"),
    ("linear", 2, 10.5, {}, "num_training_steps"),
    ("linear", 2.0, 10, {}, "num_warmup_steps"),
    ("cosine", 2, 10, {"num_cycles": 0}, "num_cycles"),
    ("inverse_sqrt", 2, None, {"timescale": 0}, "timescale"),
    ("cosine_with_min_lr", 2, 10, {"min_lr": -0.1}, "min_lr"),
    ("cosine_warmup_with_min_lr", 2, 10, {"min_lr": 0.0, "warmup_lr_rate": -1}, "warmup_lr_rate"),
    ("warmup_stable_decay", 2, 10, {"num_decay_steps": 3, "min_lr_ratio": -0.1}, "min_lr_ratio"),
    ("linear", 2, 10, {"scheduler_specific_kwargs": {}}, "scheduler_specific_kwargs"),
    ("constant", None, None, {}, None),  # lr below
]


@pytest.mark.parametrize("name,warmup,total,kwargs,arg", REFUSED_BY_US)
def test_degenerate_or_bad_arguments_are_refused(name, warmup, total, kwargs, arg):
    lr, arg = (-0.1, "lr") if arg is None else (0.1, arg)
    with pytest.raises(ValueError, match=rf"\b{arg}\b") as info:
        S.from_hf(name, lr, warmup, total, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and "from_hf" in msg


# --- the new shapes, against formulas written here -----------------------------------------


def test_cosine_wave_closed_form_and_torch_cosine_annealing_past_t_max():
    lr, lo, n = 0.3, 0.02, 40
    for c in (0.5, 1.0, 1.7):
        s = S.cosine_wave(lr, total_steps=n, num_cycles=c, min_lr=lo)
        for t in range(4 * n):
            want = lo + (lr - lo) * (1 + math.cos(2 * math.pi * c * t / n)) / 2
            assert s(t) == pytest.approx(want, rel=1e-12, abs=1e-15)
    # num_cycles=0.5 is torch's CosineAnnealingLR, which rises again after T_max
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n, eta_min=lo)
    s = S.cosine_wave(lr, total_steps=n, min_lr=lo)
    for t in range(3 * n):
        assert s(t) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-10)
        p.grad = torch.ones_like(p)
        opt.step()
        sched.step()


@pytest.mark.parametrize(
    "total,cycles", [(45, 2), (100, 3), (97, 7), (60, 1.5), (30, 1), (100, 6), (20, 6)]
)
def test_cosine_hard_restarts_closed_form_in_exact_fractions(total, cycles):
    s = S.cosine_hard_restarts(2.0, total_steps=total, num_cycles=cycles, min_lr=0.5)
    c = Fraction(cycles)
    for t in range(total + 30):
        if t >= total:
            want = 0.5
        else:
            phase = (c * Fraction(t, total)) % 1  # exact position within the cycle
            want = 0.5 + 1.5 * (1 + math.cos(math.pi * phase)) / 2
        assert s(t) == pytest.approx(want, rel=1e-12), t


def test_cosine_hard_restarts_with_whole_cycles_is_sgdr():
    a = S.cosine_hard_restarts(0.1, total_steps=60, num_cycles=3)
    b = S.cosine_restarts(0.1, T_0=20)
    assert S.sample(a, 60) == pytest.approx(S.sample(b, 60), rel=1e-12, abs=1e-15)
    assert a(60) == a(1000) == 0.0


@pytest.mark.parametrize("wt", SHAPES)
@pytest.mark.parametrize("dt", SHAPES)
def test_warmup_stable_decay_closed_form(wt, dt):
    lr, lo, w, st, d = 0.2, 0.01, 8, 5, 11
    s = S.warmup_stable_decay(lr, w, st, d, min_lr=lo, warmup_type=wt, decay_type=dt)
    up = {
        "linear": lambda p: p,
        "cosine": lambda p: (1 - math.cos(math.pi * p)) / 2,
        "1-sqrt": lambda p: 1 - math.sqrt(1 - p),
    }[wt]
    down = {
        "linear": lambda q: 1 - q,
        "cosine": lambda q: (1 + math.cos(math.pi * q)) / 2,
        "1-sqrt": lambda q: 1 - math.sqrt(q),
    }[dt]
    for t in range(w + st + d + 20):
        if t < w:
            want = lo + (lr - lo) * up(t / w)
        elif t < w + st:
            want = lr
        elif t < w + st + d:
            want = lo + (lr - lo) * down((t - w - st) / d)
        else:
            want = lo
        assert s(t) == pytest.approx(want, rel=1e-12, abs=1e-15), t


@pytest.mark.parametrize("kind", SHAPES)
def test_warmup_shape_is_the_decay_shape_reversed(kind):
    n, st = 9, 3
    s = S.warmup_stable_decay(1.0, n, st, n, min_lr=0.1, warmup_type=kind, decay_type=kind)
    for t in range(n):
        assert s(t) == pytest.approx(s(n + st + (n - t)), rel=1e-12)


def test_warmup_stable_decay_with_linear_and_cosine_is_a_join():
    lr, lo, w, st, d = 0.2, 0.01, 6, 4, 10
    a = S.warmup_stable_decay(lr, w, st, d, min_lr=lo)
    b = S.join(
        [
            S.linear_warmup(lr, w, start_lr=lo),
            S.constant(lr),
            S.cosine(lr, total_steps=d, min_lr=lo),
            S.constant(lo),
        ],
        boundaries=[w, w + st, w + st + d],
    )
    assert S.sample(a, 40) == pytest.approx(S.sample(b, 40), rel=1e-12)


def test_inverse_sqrt_timescale():
    s = S.inverse_sqrt(0.8, timescale=25)
    for t in (0, 1, 24, 75, 1000):
        assert s(t) == pytest.approx(0.8 / math.sqrt(1 + t / 25), rel=1e-12)
    assert s(75) == pytest.approx(0.4)  # halves after 3 timescales
    # with a warm-up: linear to the peak at n = w, then sqrt(s / (n - w + s))
    s = S.inverse_sqrt(1.0, warmup=4, timescale=10)
    assert [s(t) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert s(33) == pytest.approx(math.sqrt(10 / 40))
    # the default timescale is max(warmup, 1): unchanged behaviour
    assert S.sample(S.inverse_sqrt(1.0, 4, timescale=4), 50) == S.sample(S.inverse_sqrt(1.0, 4), 50)
    assert S.inverse_sqrt(1.0, 4) != S.inverse_sqrt(1.0, 4, timescale=5)


def test_inverse_sqrt_saved_before_timescale_existed_still_loads():
    old = S.inverse_sqrt(0.5, warmup=6)
    state = {k: v for k, v in vars(old).items() if k != "timescale"}  # the old pickle's state
    obj = object.__new__(type(old))
    obj.__dict__.update(state)
    buf = io.BytesIO()
    torch.save({"lr_schedule": obj}, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=True)["lr_schedule"]
    assert S.sample(back, 40) == S.sample(old, 40)


def test_shift():
    base = S.cosine(1.0, total_steps=10)
    s = S.shift(base, 3)
    assert [s(t) for t in range(12)] == [base(t + 3) for t in range(12)]
    assert S.shift(base, 0) != base and S.sample(S.shift(base, 0), 12) == S.sample(base, 12)


def test_from_spec_knows_the_new_shapes():
    spec = "warmup_stable_decay:warmup=5,stable=3,decay=7,warmup_type=1-sqrt,decay_type=linear"
    assert S.from_spec(spec, lr=0.1) == S.warmup_stable_decay(0.1, 5, 3, 7, 0.0, "1-sqrt", "linear")
    assert S.from_spec("cosine_hard_restarts:total_steps=45,num_cycles=2", lr=0.1) == (
        S.cosine_hard_restarts(0.1, 45, 2)
    )
    assert S.from_spec("inverse_sqrt:timescale=100", lr=0.1) == S.inverse_sqrt(0.1, 0, 100)
    with pytest.raises(ValueError, match="unknown schedule"):
        S.from_spec("shift:steps=1")


def test_from_hf_builds_the_documented_shapes():
    lr, w, t = 0.1, 10, 100
    d = t - w
    lw = S.linear_warmup(lr, w)
    expected = {
        ("constant", ()): S.constant(lr),
        ("constant_with_warmup", ()): lw,
        ("linear", ()): S.warmup_linear(lr, w, t),
        ("cosine", ()): S.join([lw, S.cosine_wave(lr, d, 0.5)], [w]),
        ("cosine_with_restarts", (("num_cycles", 4),)): S.join(
            [lw, S.cosine_hard_restarts(lr, d, 4)], [w]
        ),
        ("polynomial", (("power", 2.0),)): S.join(
            [lw, S.polynomial(lr, d, power=2.0, min_lr=1e-7)], [w]
        ),
        ("inverse_sqrt", ()): S.join([lw, S.inverse_sqrt(lr, timescale=w)], [w]),
        ("cosine_with_min_lr", (("min_lr", 0.01),)): S.join(
            [lw, S.cosine_wave(lr, d, 0.5, 0.01)], [w]
        ),
        ("cosine_warmup_with_min_lr", (("min_lr", 0.01),)): S.join(
            [S.shift(lw, 1), S.shift(S.cosine_wave(lr, d, 0.5, 0.01), 1)], [w]
        ),
        ("warmup_stable_decay", (("num_decay_steps", 30), ("min_lr_ratio", 0.5))): (
            S.warmup_stable_decay(lr, w, t - w - 30, 30, min_lr=0.5 * lr)
        ),
    }
    for (name, kw), want in expected.items():
        assert S.from_hf(name, lr, w, t, **dict(kw)) == want, name
    assert S.from_hf("inverse_sqrt", lr, 0) == S.inverse_sqrt(lr, timescale=10_000)
    assert S.from_hf("cosine", lr, 0, t) == S.cosine_wave(lr, t)
