"""``optimizer.request_stats()``: a step that measures itself (adaptlr.stats).

Every figure is checked against a float64 recomputation from copies of the tensors taken in
the test (the gradient, the parameters before and after), the sample against the elements it
must hold by the documented layout, and η/σ against ``optimizer.effective_lr()``; and a
measured step must change exactly what an unmeasured one changes.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (test_triton_*)

import pytest  # noqa: E402
import torch  # noqa: E402

import adaptlr  # noqa: E402
from adaptlr import kernels  # noqa: E402
from adaptlr.kernels import backends, plan  # noqa: E402
from adaptlr.kernels.codegen import ALIGN  # noqa: E402
from adaptlr.optimizers.registry import REGISTRY  # noqa: E402
from adaptlr.stats import StatsRequest  # noqa: E402

SHAPES = [(37,), (3, 4), (0,), (), (2, 5, 3), (1000,)]
PATHS = ["numba", "triton", "reference"]
# one config per optimizer, plus the centered/momentum RMSprop and AMSGrad variants
CASES = [(name, 0) for name in sorted(REGISTRY)] + [
    (name, i) for name in ("rmsprop", "adam") for i in range(1, len(REGISTRY[name].all_configs))
]
# Under the Triton interpreter (seconds a case) one optimizer per kind of generated kernel:
# the measuring code is the same for every chain; what differs is what precedes it
TRITON_KINDS = ("adam", "prodigy", "dog", "ldog", "adamwschedulefree")
STATS_CASES = [
    (name, ci, path)
    for name, ci in CASES
    for path in PATHS
    if path != "triton" or (name in TRITON_KINDS and ci == 0)
]


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    if request.param == "numba" and not backends.numba_available():
        pytest.skip("numba is not installed")
    if request.param == "triton":
        pytest.importorskip("triton")
        if os.environ.get("TRITON_INTERPRET") != "1":
            pytest.skip("the Triton interpreter needs TRITON_INTERPRET=1 before triton is imported")
        monkeypatch.setattr(plan, "TRITON_BLOCK", 16)  # several programs per tensor
        with kernels.use_triton_on_cpu():
            yield request.param
        return
    yield request.param


def build(name, ci, path, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in SHAPES]
    cfg = dict(REGISTRY[name].all_configs[ci])
    opt = REGISTRY[name].cls(params, **cfg, fused=False if path == "reference" else None)
    return params, opt


def grads(params, step, none_at=None):
    gen = torch.Generator().manual_seed(100 + step)
    for i, p in enumerate(params):
        p.grad = None if i == none_at else torch.randn(p.shape, generator=gen, dtype=p.dtype)


def expected_sample(params, stepped, stride, fused):
    """The gradient at every stride-th element of the stepped parameters laid end to end: on
    the fast path each tensor starts at a multiple of 16 elements (``kernels.codegen.ALIGN``)."""
    out, pos = [], 0
    for i in stepped:
        g = params[i].grad.detach().reshape(-1).double()
        first = (-pos) % stride
        out.append(g[first::stride])
        n = g.numel()
        pos += (n + ALIGN - 1) // ALIGN * ALIGN if fused else n
    return torch.cat(out)


@pytest.mark.parametrize("name, ci, path", STATS_CASES, indirect=["path"])
def test_step_measures_itself(name, ci, path):
    params, opt = build(name, ci, path)
    last = None
    for step in range(4):
        none_at = 2 if step == 2 else None  # a parameter without a gradient this step
        grads(params, step, none_at)
        before = [p.detach().double().clone() for p in params]
        opt.request_stats(sample=50)
        opt.step()
        st = opt.last_stats[0]
        assert st is not None and st.fused == (path != "reference")
        stepped = [i for i, p in enumerate(params) if p.grad is not None]
        g = [params[i].grad.double() for i in stepped]
        new = [params[i].detach().double() for i in stepped]
        old = [before[i] for i in stepped]
        assert st.grad_sq == pytest.approx(sum(float((x * x).sum()) for x in g), rel=1e-6)
        usq = sum(float(((n - o) ** 2).sum()) for n, o in zip(new, old))
        assert st.update_sq == pytest.approx(usq, rel=1e-5, abs=1e-30)
        assert st.param_sq == pytest.approx(sum(float((n * n).sum()) for n in new), rel=1e-6)
        per = torch.tensor([float((x * x).sum()) for x in g], dtype=torch.float64)
        torch.testing.assert_close(st.tensor_grad_sq, per, rtol=1e-6, atol=1e-12)

        elements = sum(params[i].numel() for i in stepped)
        stride = math.ceil(elements / 50)
        want = expected_sample(params, stepped, stride, fused=path != "reference")
        torch.testing.assert_close(st.grad_sample, want, rtol=0, atol=0)
        # the sample's products with itself and with the previous measured step's, where
        # that step sampled the same elements (step 1 here; 2 has a gradient fewer, so 3's
        # previous measured step sampled other elements)
        assert st.sample_sq == pytest.approx(float((want * want).sum()), rel=1e-12)
        if last is not None and last.sample_key == st.sample_key:
            assert step == 1 and st.prev_serial == last.serial
            dot = float((want * last.grad_sample).sum())
            assert st.sample_dot_prev == pytest.approx(dot, rel=1e-12, abs=1e-300)
        else:
            assert step in (0, 2, 3) and st.prev_serial is None and st.sample_dot_prev is None
        last = st

        # η/σ at those elements, from the full tensors effective_lr() gives
        eff_full = opt.effective_lr()[0]
        if all(e is None for e in eff_full):
            assert st.eff_lr is None
            continue
        full = [eff_full[i].detach().reshape(-1).double() for i in stepped]
        want_eff, pos = [], 0
        for e in full:
            first = (-pos) % stride
            want_eff.append(e[first::stride])
            n = e.numel()
            pos += (n + ALIGN - 1) // ALIGN * ALIGN if path != "reference" else n
        want_eff = torch.cat(want_eff)
        assert st.eff_lr is not None and st.eff_lr.numel() == want_eff.numel()
        torch.testing.assert_close(st.eff_lr.double(), want_eff, rtol=1e-5, atol=0)


@pytest.mark.parametrize("name", ["adam", "nadam", "sgd"])
def test_a_measured_step_changes_exactly_what_a_plain_one_does(name, path):
    """Monitoring must not change training: bit-identical parameters and state."""
    pa, a = build(name, 0, path)
    pb, b = build(name, 0, path)
    for step in range(5):
        grads(pa, step)
        grads(pb, step)
        a.request_stats()
        a.step()
        b.step()
    for x, y in zip(pa, pb):
        assert torch.equal(x, y)
    for x, y in zip(pa, pb):
        for k, v in a.state[x].items():
            assert torch.equal(v, b.state[y][k]), k


def test_the_sample_is_comparable_step_to_step_only_over_the_same_elements():
    params, opt = build("adam", 0, "numba")
    keys = []
    for step, none_at in enumerate([None, None, 1, None]):
        grads(params, step, none_at)
        opt.request_stats(sample=64)
        opt.step()
        keys.append(opt.last_stats[0].sample_key)
    assert keys[0] == keys[1] == keys[3] != keys[2]


def test_large_model_low_precision_and_groups():
    """bf16 parameters (float32 state) and two groups: figures per group, the sample about
    the size asked for."""
    gen = torch.Generator().manual_seed(0)
    ps = [torch.randn(n, generator=gen).to(torch.bfloat16).requires_grad_() for n in (70_000, 5)]
    opt = adaptlr.Adam([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.1}], lr=1e-3)
    for p in ps:
        p.grad = torch.randn(p.shape, generator=gen).to(torch.bfloat16)
    before = [p.detach().double().clone() for p in ps]
    opt.request_stats(sample=4096)
    opt.step()
    for gi, p in enumerate(ps):
        st = opt.last_stats[gi]
        assert st.fused
        assert st.grad_sq == pytest.approx(float((p.grad.double() ** 2).sum()), rel=1e-5)
        usq = float(((p.detach().double() - before[gi]) ** 2).sum())
        assert st.update_sq == pytest.approx(usq, rel=1e-5)
    assert 4096 * 0.9 < opt.last_stats[0].grad_sample.numel() <= 4096
    assert opt.last_stats[1].grad_sample.numel() == 5


def test_no_stats_unless_asked_and_none_for_groups_that_did_not_step():
    params, opt = build("adam", 0, "numba")
    grads(params, 0)
    opt.step()
    assert opt.last_stats == [None]
    for p in params:
        p.grad = None
    opt.request_stats()
    opt.step()
    assert opt.last_stats == [None]
    skip = adaptlr.Adam([torch.ones(3, requires_grad=True)], nonfinite="skip")
    skip.param_groups[0]["params"][0].grad = torch.tensor([1.0, math.nan, 0.0])
    skip.request_stats()
    skip.step()
    assert skip.last_stats == [None] and skip.param_groups[0]["skipped_steps"] == 1


@pytest.mark.parametrize(
    "kw, err, match",
    [
        ({"sample": 0}, ValueError, "sample must be an int >= 1"),
        ({"sample": 1.5}, ValueError, "sample must be an int >= 1"),
        ({"eff_lr": "yes"}, TypeError, "eff_lr must be True or False"),
    ],
)
def test_bad_requests(kw, err, match):
    with pytest.raises(err, match=match):
        StatsRequest(**kw)
    params, opt = build("adam", 0, "reference")
    with pytest.raises(err, match=match):
        opt.request_stats(**kw)


def test_complex_parameters_are_measured_as_pairs_of_reals():
    """As torch.optim treats them: the real view. Both paths give the same figures."""
    got = {}
    for fused in (None, False):
        gen = torch.Generator().manual_seed(0)
        p = torch.randn(40, generator=gen, dtype=torch.complex64).requires_grad_()
        opt = adaptlr.Adam([p], lr=0.01, fused=fused)
        for _ in range(2):
            p.grad = torch.randn(40, generator=gen, dtype=torch.complex64)
            before = torch.view_as_real(p.detach()).double().clone()
            opt.request_stats(sample=16)
            opt.step()
        st = got[fused] = opt.last_stats[0]
        g = torch.view_as_real(p.grad).double()
        assert st.grad_sq == pytest.approx(float(g.square().sum()), rel=1e-6)
        delta = torch.view_as_real(p.detach()).double() - before
        assert st.update_sq == pytest.approx(float(delta.square().sum()), rel=1e-5)
        torch.testing.assert_close(st.grad_sample, g.reshape(-1)[::5], rtol=0, atol=0)
    torch.testing.assert_close(got[None].eff_lr, got[False].eff_lr, rtol=1e-5, atol=0)


def test_the_products_are_with_the_previous_measured_step(path):
    """An unmeasured step in between does not count; a different sample size breaks the pair."""
    params, opt = build("adam", 0, path)
    seen = []
    for step, sample in enumerate([64, None, 64, 32]):
        grads(params, step)
        if sample is not None:
            opt.request_stats(sample=sample)
        opt.step()
        if sample is not None:
            seen.append(opt.last_stats[0])
    a, b, c = seen
    assert b.prev_serial == a.serial and c.prev_serial is None
    dot = float((a.grad_sample * b.grad_sample).sum())
    assert b.sample_dot_prev == pytest.approx(dot, rel=1e-12)
    assert len({a.serial, b.serial, c.serial}) == 3


def test_every_path_measures_what_the_one_definition_says(path, monkeypatch):
    """The statistics are defined once (``adaptlr.stats.STATISTICS``): redefine one and the
    generated kernels, the reference path and the monitor's own passes all follow."""
    from adaptlr import stats
    from adaptlr.monitor import Monitor

    old_param = stats.Statistic("param_sq", lambda x: (x.p_old, x.p_old))
    redefined = tuple(old_param if s.name == "param_sq" else s for s in stats.STATISTICS)
    monkeypatch.setattr(stats, "STATISTICS", redefined)
    monkeypatch.setattr(stats, "STATISTIC", {s.name: s for s in redefined})
    monkeypatch.setattr(backends, "_by_program", {})  # generate the kernels anew
    params, opt = build("adam", 0, path)
    grads(params, 0)
    before = [p.detach().double().clone() for p in params]
    opt.request_stats(sample=50)
    opt.step()
    st = opt.last_stats[0]
    assert st.param_sq == pytest.approx(sum(float((b * b).sum()) for b in before), rel=1e-6)
    usq = sum(float(((p.detach().double() - b) ** 2).sum()) for p, b in zip(params, before))
    assert st.update_sq == pytest.approx(usq, rel=1e-5)
    if path != "reference":
        return
    # the monitor's own passes, for an optimizer that does not measure itself
    sgd = torch.optim.SGD(params, lr=0.1)
    mon = Monitor(sgd)
    before = [p.detach().double().clone() for p in params]
    sgd.step()
    mon.record(0.0)
    want = math.sqrt(sum(float((b * b).sum()) for b in before))
    assert mon.records[-1]["param_norm"] == pytest.approx(want, rel=1e-6)
