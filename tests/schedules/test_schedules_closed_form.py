"""Each schedule against its formula, written out by hand here, at boundaries and in between."""

import math

import pytest

from adaptlr.schedules import (
    constant,
    cosine,
    cosine_restarts,
    cyclic,
    exponential,
    inverse_sqrt,
    inverse_time,
    linear_warmup,
    multi_step,
    one_cycle,
    polynomial,
    sample,
    step_decay,
    transformer,
    warmup_cosine,
    warmup_linear,
)

approx = pytest.approx


def test_constant():
    s = constant(0.3)
    assert [s(t) for t in (0, 1, 10**9)] == [0.3, 0.3, 0.3]
    assert isinstance(s(0), float)


def test_step_decay_boundaries():
    s = step_decay(2.0, step_size=3, gamma=0.5)
    assert sample(s, 10) == [2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_multi_step_unsorted_and_repeated_milestones():
    s = multi_step(1.0, milestones=[8, 3, 8], gamma=0.5)
    assert (s(2), s(3), s(7), s(8), s(100)) == (1.0, 0.5, 0.5, 0.125, 0.125)


def test_exponential():
    s = exponential(3.0, gamma=0.9)
    for t in (0, 1, 2, 57):
        assert s(t) == approx(3.0 * math.exp(t * math.log(0.9)), rel=1e-13)


@pytest.mark.parametrize("power", [0.5, 1.0, 2.0])
def test_polynomial(power):
    lr, end, total = 0.8, 0.05, 40
    s = polynomial(lr, total_steps=total, power=power, min_lr=end)
    assert s(0) == approx(lr)
    assert s(10) == approx(end + (lr - end) * 0.75**power)
    assert s(20) == approx(end + (lr - end) * 0.5**power)
    assert s(total - 1) == approx(end + (lr - end) * (1 / 40) ** power)
    assert s(total) == approx(end)
    assert s(total + 100) == approx(end)


def test_inverse_sqrt_no_warmup_is_lectures_decay():
    s = inverse_sqrt(0.5)
    for t in (0, 1, 3, 99, 10**6):
        assert s(t) == approx(0.5 / math.sqrt(t + 1))
    assert sample(s, 50) == sample(inverse_sqrt(0.5, warmup=1), 50)


def test_inverse_sqrt_warmup():
    s = inverse_sqrt(1.0, warmup=4)
    assert [s(t) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]  # linear in n = t + 1
    assert s(15) == approx(0.5)  # sqrt(4 / 16)
    assert max(sample(s, 100)) == s(3)


def test_inverse_sqrt_equals_transformer():
    d, w, scale = 512, 40, 2.0
    a = inverse_sqrt(scale / math.sqrt(d * w), warmup=w)
    b = transformer(d, w, scale)
    for t in range(0, 500, 7):
        assert a(t) == approx(b(t), rel=1e-12)


def test_inverse_time():
    s = inverse_time(0.1, decay=0.01)
    assert s(0) == 0.1
    assert s(100) == approx(0.05)
    assert s(300) == approx(0.025)


def test_cosine():
    lr, lo, total = 1.0, 0.1, 100
    s = cosine(lr, total_steps=total, min_lr=lo)
    assert s(0) == lr
    assert s(25) == approx(lo + (lr - lo) * (1 + math.sqrt(0.5)) / 2)
    assert s(50) == approx((lr + lo) / 2)
    assert s(100) == approx(lo)
    assert s(1000) == approx(lo)  # held, not rising again
    vals = sample(s, total + 1)
    assert all(a >= b for a, b in zip(vals, vals[1:]))


def test_linear_warmup():
    s = linear_warmup(1.0, warmup=5, start_lr=0.5)
    assert sample(s, 7) == approx([0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0])
    assert sample(linear_warmup(0.2, warmup=0), 3) == [0.2, 0.2, 0.2]


def hf_linear(step, warmup, total):
    # transformers.optimization._get_linear_schedule_with_warmup_lr_lambda
    if step < warmup:
        return float(step) / float(max(1, warmup))
    return max(0.0, float(total - step) / float(max(1, total - warmup)))


def hf_cosine(step, warmup, total, num_cycles=0.5, min_lr_rate=0.0):
    # transformers.optimization._get_cosine_schedule_with_warmup_lr_lambda (+ min_lr variant)
    if step < warmup:
        return float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    factor = 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))
    return max(0.0, factor * (1 - min_lr_rate) + min_lr_rate)


@pytest.mark.parametrize("warmup,total", [(0, 50), (1, 50), (10, 50), (50, 50), (7, 300)])
def test_warmup_linear_matches_huggingface(warmup, total):
    s = warmup_linear(0.3, warmup=warmup, total_steps=total)
    for t in range(total + 20):
        assert s(t) == approx(0.3 * hf_linear(t, warmup, total), abs=1e-15)
    assert s(total) == 0.0


@pytest.mark.parametrize("num_cycles", [0.5, 1.0, 1.5])
@pytest.mark.parametrize("warmup,total", [(0, 50), (10, 50), (13, 301)])
def test_warmup_cosine_matches_huggingface(warmup, total, num_cycles):
    s = warmup_cosine(0.3, warmup=warmup, total_steps=total, num_cycles=num_cycles)
    for t in range(total + 1):
        assert s(t) == approx(0.3 * hf_cosine(t, warmup, total, num_cycles), abs=1e-15)


def test_warmup_cosine_min_lr_and_hold():
    lr, lo = 0.3, 0.03
    s = warmup_cosine(lr, warmup=10, total_steps=110, min_lr=lo)
    for t in range(111):
        assert s(t) == approx(lr * hf_cosine(t, 10, 110, 0.5, lo / lr), abs=1e-15)
    assert s(0) == 0.0 and s(10) == lr and s(60) == approx((lr + lo) / 2)
    assert s(110) == approx(lo) and s(500) == approx(lo)


def test_transformer_formula_n_is_t_plus_1():
    d, w = 64, 10
    s = transformer(d, w, scale=3.0)
    for t in (0, 1, 8, 9, 10, 500):
        n = t + 1
        ref = 3.0 / math.sqrt(d) * (n * w**-1.5 if n < w else 1 / math.sqrt(n))
        assert s(t) == approx(ref)
    assert max(sample(s, 100)) == s(w - 1)


def test_cyclic_triangular_shapes():
    s = cyclic(1.0, 3.0, step_size_up=2, step_size_down=4)
    assert sample(s, 9) == approx([1.0, 2.0, 3.0, 2.5, 2.0, 1.5, 1.0, 2.0, 3.0])
    s2 = cyclic(1.0, 3.0, step_size_up=2, mode="triangular2")
    assert sample(s2, 11) == approx([1, 2, 3, 2, 1, 1.5, 2, 1.5, 1, 1.25, 1.5])
    s3 = cyclic(1.0, 3.0, step_size_up=2, mode="exp_range", gamma=0.5)
    assert s3(2) == approx(1.0 + 2.0 * 0.25)
    assert s3(6) == approx(1.0 + 2.0 * 0.5**6)


def ref_restarts(t, lr, t0, mult, lo):
    # walk the cycles one by one (the independent, iterative reference)
    start, length = (t - t % t0, t0) if mult == 1 else (0, t0)
    while t >= start + length:
        start, length = start + length, length * mult
    return lo + (lr - lo) * (1 + math.cos(math.pi * (t - start) / length)) / 2


@pytest.mark.parametrize("t0,mult", [(1, 1), (5, 1), (1, 2), (3, 2), (10, 3), (7, 4)])
def test_cosine_restarts_against_iterative_reference(t0, mult):
    s = cosine_restarts(2.0, T_0=t0, T_mult=mult, min_lr=0.1)
    steps = list(range(400)) + [10**6 + k for k in range(50)]
    # every restart point up to large t: value there is exactly lr, just before it is lowest
    start, length = 0, t0
    for _ in range(40):
        steps += [start, max(start - 1, 0), start + length // 2]
        start, length = start + length, length * mult
    for t in steps:
        assert s(t) == approx(ref_restarts(t, 2.0, t0, mult, 0.1), rel=1e-12), t


def test_cosine_restarts_restart_values():
    s = cosine_restarts(1.0, T_0=4, T_mult=2, min_lr=0.0)
    for k, start in [(0, 0), (1, 4), (2, 12), (3, 28), (4, 60), (30, 4 * (2**30 - 1))]:
        length = 4 * 2**k
        assert s(start) == 1.0
        assert s(start + 1) < 1.0 or k == 30  # 1 - 3e-19 rounds to 1.0 in a 4e9-step cycle
        if k:  # the last step of the previous cycle, of length length / 2
            prev = length // 2
            assert s(start - 1) == approx((1 + math.cos(math.pi * (prev - 1) / prev)) / 2)
        assert s(start + length // 2) == pytest.approx(0.5)


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_endpoints(strategy, three_phase):
    n, peak = 200, 2.0
    s = one_cycle(
        peak,
        total_steps=n,
        pct_start=0.25,
        anneal_strategy=strategy,
        div_factor=20.0,
        final_div_factor=100.0,
        three_phase=three_phase,
    )
    initial, final = peak / 20.0, peak / 20.0 / 100.0
    assert s(0) == approx(initial)
    assert s(49) == approx(peak)  # pct_start * n - 1
    if three_phase:
        assert s(98) == approx(initial)  # 2 * pct_start * n - 2
    assert s(n - 1) == approx(final)
    assert s(n) == approx(final) and s(10 * n) == approx(final)
    q = 20 / 49
    up = initial + (peak - initial) * (
        q if strategy == "linear" else (1 - math.cos(math.pi * q)) / 2
    )
    assert s(20) == approx(up)
