"""Hook measurements against hand computations; logs; bad input; outputs."""

from __future__ import annotations

import json
import math
import random
import warnings

import pytest
import torch

import adaptlr
from adaptlr.monitor import Monitor, load_log, plot_dashboard, write_report


def _params():
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]


def _step(opt, params, grads):
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt.step()


@pytest.mark.parametrize("sample", [None, 10_000])
def test_measurements_match_hand_computation(sample):
    params = _params()
    extra = torch.nn.Parameter(torch.randn(4))
    opt = torch.optim.Adam([{"params": params}, {"params": [extra], "lr": 0.1}], lr=0.05)
    mon = Monitor(opt, sample=sample)  # sample > numel: every element, so still exact
    g1 = [torch.randn_like(p) for p in [*params, extra]]
    g2 = [torch.randn_like(p) for p in [*params, extra]]
    everything = [*params, extra]
    _step(opt, everything, g1)
    mon.record(1.0)
    before = [p.detach().clone() for p in everything]
    _step(opt, everything, g2)
    mon.record(torch.tensor(0.5))
    r = mon.records[-1]
    flat1 = torch.cat([g.reshape(-1) for g in g1])
    flat2 = torch.cat([g.reshape(-1) for g in g2])
    delta = torch.cat([(p.detach() - b).reshape(-1) for p, b in zip(everything, before)])
    after = torch.cat([p.detach().reshape(-1) for p in everything])
    assert r["step"] == 1 and r["loss"] == 0.5
    assert r["grad_norm"] == pytest.approx(float(flat2.norm()), rel=1e-6)
    g0 = torch.cat([g.reshape(-1) for g in g2[:2]]).norm()
    assert r["group_grad_norm"] == pytest.approx([float(g0), float(g2[2].norm())], rel=1e-6)
    assert r["update_norm"] == pytest.approx(float(delta.norm()), rel=1e-5)
    assert r["param_norm"] == pytest.approx(float(after.norm()), rel=1e-6)
    assert r["update_ratio"] == pytest.approx(float(delta.norm() / after.norm()), rel=1e-5)
    cos = torch.dot(flat1, flat2) / (flat1.norm() * flat2.norm())
    assert r["cos"] == pytest.approx(float(cos), abs=1e-6)
    assert r["nonfinite"] == 0
    assert r["lr"] == [0.05, 0.1]
    assert r["eff_lr"] == [None, None]  # torch's Adam: not re-derived, reported unavailable


def test_cosine_of_two_known_gradients_and_every_k():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=0.1)
    mon = Monitor(opt, every=3)
    grads = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [3.0, 4.0], [5.0, 0.0], [1.0, 2.0]]
    for g in grads:
        _step(opt, [p], [torch.tensor(g)])
        mon.record(0.0)
    recs = mon.records
    assert [r["step"] for r in recs] == [0, 3, 6]
    assert recs[0]["cos"] is None  # no previous gradient
    assert recs[1]["cos"] == pytest.approx(-1.0)  # (1,1) then (-1,-1)
    assert recs[2]["cos"] == pytest.approx(5 / (5 * math.sqrt(5)))  # (5,0) then (1,2)
    assert recs[1]["update_norm"] == pytest.approx(0.1 * math.sqrt(2))


def test_record_before_step_and_closure_optimizers():
    p = torch.nn.Parameter(torch.tensor([3.0]))
    opt = torch.optim.SGD([p], lr=0.1)
    mon = Monitor(opt)
    for _ in range(3):
        loss = (p**2).sum()
        mon.record(loss)  # before step(): belongs to the same step as the gradient
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert [r["loss"] for r in mon.records] == pytest.approx([9.0, 5.76, 3.6864])
    # LBFGS computes the gradient inside step(closure): measured after the closure's first call.
    q = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    lbfgs = torch.optim.LBFGS([q], lr=0.5, max_iter=3)
    mon2 = Monitor(lbfgs)

    def closure():
        lbfgs.zero_grad()
        loss = (q**2).sum()
        loss.backward()
        return loss

    lbfgs.step(closure)
    r = mon2.records[0]
    assert r["grad_norm"] == pytest.approx(2 * math.sqrt(5))
    assert r["loss"] == pytest.approx(5.0)


def test_effective_lr_percentiles_from_adaptlr_optimizer():
    params = _params()
    opt = adaptlr.RootMeanSquare(params, lr=0.1, fused=False)
    mon = Monitor(opt, percentiles=(0, 50, 100))
    grads = [torch.randn_like(p) for p in params]
    _step(opt, params, grads)
    mon.record(0.0)
    eff = mon.records[0]["eff_lr"][0]
    # After one step sigma = |g| (+eps): eta / sigma elementwise, by hand.
    hand = torch.cat([0.1 / (g.abs().reshape(-1) + 1e-8) for g in grads])
    assert eff["p0"] == pytest.approx(float(hand.min()), rel=1e-4)
    assert eff["p50"] == pytest.approx(float(hand.median()), rel=0.2)
    assert eff["p100"] == pytest.approx(float(hand.max()), rel=1e-4)


@pytest.mark.parametrize(
    "loss, flag",
    [
        (torch.tensor([1.0, 2.0]), "non_scalar"),
        (float("nan"), "non_finite"),
        (torch.tensor(float("inf")), "non_finite"),
        ("abc", "not_a_number"),
        (None, None),
    ],
)
def test_bad_losses_are_recorded_and_flagged_never_raised(loss, flag):
    p = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([p], lr=0.1)
    mon = Monitor(opt)
    _step(opt, [p], [torch.ones(2)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mon.record(loss)
    r = mon.records[-1]
    if flag is None:
        assert "loss_flags" not in r and r["loss"] is None
    else:
        assert flag in r["loss_flags"]
    if flag == "non_scalar":
        assert r["loss"] == 1.5
    if flag == "non_finite":
        assert mon.diagnose(window=3).kind == "diverging" or len(mon.records) < 3


def test_non_finite_gradients_counted():
    p = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.SGD([p], lr=0.1)
    mon = Monitor(opt)
    _step(opt, [p], [torch.tensor([1.0, float("nan"), float("inf"), 2.0])])
    mon.record(1.0)
    assert mon.records[0]["nonfinite"] >= 2


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        ({"every": 0}, ValueError, "every"),
        ({"every": 1.5}, TypeError, "every"),
        ({"every": True}, TypeError, "every"),
        ({"window": 2}, ValueError, "window"),
        ({"log": 3}, TypeError, "log"),
        ({"tensorboard": 1.0}, TypeError, "tensorboard"),
        ({"sample": 0}, ValueError, "sample"),
        ({"percentiles": (50, 150)}, ValueError, "percentiles"),
        ({"update": "yes"}, TypeError, "update"),
    ],
)
def test_bad_options_raise_naming_the_argument(kwargs, exc, word):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    with pytest.raises(exc, match=word):
        Monitor(opt, **kwargs)


def test_not_an_optimizer_raises():
    with pytest.raises(TypeError, match="optimizer"):
        Monitor([torch.ones(1)])


def _logged_run(path, steps=30):
    p = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    opt = torch.optim.SGD([p], lr=0.1)
    with Monitor(opt, log=path) as mon:
        for i in range(steps):
            loss = (p**2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.record(loss if i != 5 else float("nan"))
        mon.diagnose()
    return mon


def test_jsonl_log_truncated_at_any_byte_keeps_every_complete_record(tmp_path):
    path = tmp_path / "run.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mon = _logged_run(path)
    data = path.read_bytes()
    full = load_log(path)
    assert [r["type"] for r in full][:2] == ["meta", "step"] and full[-1]["type"] == "diagnosis"
    steps = [r for r in full if r["type"] == "step"]
    assert [r["step"] for r in steps] == list(range(30))
    assert math.isnan(steps[5]["loss"]) and steps[5]["loss_flags"] == ["non_finite"]
    assert steps[-1]["loss"] == pytest.approx(mon.records[-1]["loss"])
    for line in data.split(b"\n")[:-1]:
        json.loads(line)  # strict JSON: no NaN tokens
    rng = random.Random(0)
    cuts = [rng.randrange(len(data) + 1) for _ in range(40)] + [0, len(data) - 1, len(data)]
    for cut in cuts:
        part = tmp_path / "cut.jsonl"
        part.write_bytes(data[:cut])
        complete = data[:cut].count(b"\n")
        got = load_log(part)
        assert len(got) in (complete, complete + 1)  # +1: the cut fell right after a "}"
        assert got == full[: len(got)]
    # Appending after a torn line starts a fresh line: old and new records stay readable.
    part.write_bytes(data[: len(data) // 2])
    n_before = len(load_log(part))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _logged_run(part, steps=3)
    with pytest.warns(UserWarning, match="unreadable line"):  # the torn line, now in the middle
        assert len(load_log(part)) == n_before + 1 + 3 + 1


def test_dashboard_and_report(tmp_path):
    from PIL import Image

    path = tmp_path / "run.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mon = _logged_run(path, steps=60)
    png = plot_dashboard(mon, tmp_path / "a" / "dash.png", window=20)
    assert Image.open(png).size[0] > 300
    out = write_report(path, tmp_path / "report")
    assert out.exists() and Image.open(out).size[0] > 300
    assert (tmp_path / "report" / "diagnosis.txt").read_text().startswith("progressing")
    # The NaN loss at step 5 lies before the last 50-step window; a window holding it diverges.
    assert write_report(path, tmp_path / "r2", window=58).exists()
    assert (tmp_path / "r2" / "diagnosis.txt").read_text().startswith("diverging")
    # Effective-lr panel with an adaptive optimizer.
    params = _params()
    opt = adaptlr.Adam(params, lr=0.01, fused=False)
    mon2 = Monitor(opt)
    for _ in range(5):
        _step(opt, params, [torch.randn_like(p) for p in params])
        mon2.record(1.0)
    assert Image.open(plot_dashboard(mon2.records, tmp_path / "b.png")).size[1] > 300


def test_dashboard_log_axes_skip_zeros_and_legends_lie_outside(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from adaptlr.schedules import warmup_cosine

    drawn = []
    save = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda fig, *a, **kw: (drawn.append(fig), save(fig, *a, **kw))[1]
    )
    params = _params()
    # the warm-up's first lr is 0: the first update (and eta/sigma) is exactly 0
    opt = adaptlr.Adam(params, lr=warmup_cosine(0.01, 5, 40), fused=False)
    mon = Monitor(opt, window=10)
    for _ in range(40):
        _step(opt, params, [torch.randn_like(p) for p in params])
        mon.record(1.0)
    assert mon.records[0]["update_norm"] == 0
    png = plot_dashboard(mon, tmp_path / "d.png", window=10)
    assert png.exists()
    (fig,) = drawn
    fig.canvas.draw()
    _, ax_grad, ax_lr, _ = fig.axes
    smallest = min(r["update_norm"] for r in mon.records if r["update_norm"] > 0)
    for ax in (ax_grad, ax_lr):  # a floor at 1e-30 once stretched these over 36 decades
        lo, hi = ax.get_ylim()
        assert lo > 1e-3 * smallest and math.log10(hi / lo) < 12, (lo, hi)
    assert fig.get_figwidth() * fig.dpi >= 1000  # wide enough to read at the report's width
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert len(legends) >= 2
    for leg in legends:
        for ax in fig.axes:
            assert not leg.get_window_extent().overlaps(ax.get_window_extent())
    assert "$" in ax_lr.get_ylabel() and "$" in fig.axes[3].get_ylabel()  # mathtext


def test_tensorboard_events_or_warning(tmp_path):
    p = torch.nn.Parameter(torch.ones(3))
    opt = adaptlr.Adam([p], lr=0.1, fused=False)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.warns(UserWarning, match="tensorboard"):
            mon = Monitor(opt, tensorboard=tmp_path / "tb")
    else:
        mon = Monitor(opt, tensorboard=tmp_path / "tb")
    for _ in range(3):
        _step(opt, [p], [torch.randn(3)])
        mon.record(1.0)
    mon.close()
    assert len(mon.records) == 3
    try:
        import tensorboard  # noqa: F401, F811
    except ImportError:
        return
    assert list((tmp_path / "tb").glob("events.*"))


@pytest.mark.slow
def test_demo_section_writes_images(tmp_path):
    import re

    from adaptlr.monitor import demo_section

    html = demo_section(tmp_path)
    srcs = re.findall(r"src='([^']+)'", html)
    assert len(srcs) == 5 and all((tmp_path / s).exists() for s in srcs)
    assert "oscillating" in html and "<table" in html


@pytest.mark.parametrize("fused", [None, False], ids=["fused", "reference"])
def test_adaptlr_optimizers_measure_their_own_step(fused, monkeypatch):
    """adaptlr's step measures itself (adaptlr.stats): the monitor makes no pass of its own,
    and on a model smaller than the sample every figure is exact."""
    monkeypatch.setattr(Monitor, "_snapshot_params", None)  # would raise if called
    monkeypatch.setattr(Monitor, "_measure_grads", None)
    params = _params()
    extra = torch.nn.Parameter(torch.randn(4))
    everything = [*params, extra]
    opt = adaptlr.Adam([{"params": params}, {"params": [extra], "lr": 0.1}], lr=0.05, fused=fused)
    mon = Monitor(opt, every=2, percentiles=(0, 50, 100))
    gs = [[torch.randn_like(p) for p in everything] for _ in range(3)]
    for g in gs[:2]:
        _step(opt, everything, g)
        mon.record(1.0)
    before = [p.detach().clone() for p in everything]
    _step(opt, everything, gs[2])
    mon.record(0.5)
    r = mon.records[-1]
    assert r["step"] == 2 and r["loss"] == 0.5
    flat1 = torch.cat([g.reshape(-1) for g in gs[1]]).double()
    flat2 = torch.cat([g.reshape(-1) for g in gs[2]]).double()
    delta = torch.cat([(p.detach() - b).reshape(-1) for p, b in zip(everything, before)]).double()
    after = torch.cat([p.detach().reshape(-1) for p in everything]).double()
    assert r["grad_norm"] == pytest.approx(float(flat2.norm()), rel=1e-6)
    g0 = torch.cat([g.reshape(-1) for g in gs[2][:2]]).norm()
    assert r["group_grad_norm"] == pytest.approx([float(g0), float(gs[2][2].norm())], rel=1e-6)
    assert r["update_norm"] == pytest.approx(float(delta.norm()), rel=1e-5)
    assert r["param_norm"] == pytest.approx(float(after.norm()), rel=1e-6)
    cos = torch.dot(flat1, flat2) / (flat1.norm() * flat2.norm())
    assert r["cos"] == pytest.approx(float(cos), abs=1e-9)  # step 1 was kept for step 2
    for gi, group_eff in enumerate(opt.effective_lr()):
        full = torch.cat([e.reshape(-1) for e in group_eff]).double()
        got = r["eff_lr"][gi]
        assert got["p0"] == pytest.approx(float(full.min()), rel=1e-6)
        assert got["p50"] == pytest.approx(float(torch.quantile(full, 0.5)), rel=1e-6)
        assert got["p100"] == pytest.approx(float(full.max()), rel=1e-6)


def test_sampled_cosine_and_percentiles_on_a_large_model():
    """Past SAMPLE elements the cosine and the η/σ percentiles come from a fixed sample: close
    to the exact figures computed here from whole tensors."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in (150_000, 60_001, 7)]
    opt = adaptlr.Adam(params, lr=1e-3)
    mon = Monitor(opt, percentiles=(5, 50, 95))
    g1 = [torch.randn(p.shape, generator=gen) for p in params]
    g2 = [0.6 * a + 0.8 * torch.randn(a.shape, generator=gen) for a in g1]
    for g in (g1, g2):
        _step(opt, params, g)
        mon.record(0.0)
    r = mon.records[-1]
    f1 = torch.cat([g.reshape(-1) for g in g1]).double()
    f2 = torch.cat([g.reshape(-1) for g in g2]).double()
    exact = float(f1 @ f2 / (f1.norm() * f2.norm()))
    assert exact == pytest.approx(0.6, abs=0.01)
    assert r["cos"] == pytest.approx(exact, abs=0.03)  # 16k samples: error about 1/sqrt(16k)
    assert r["grad_norm"] == pytest.approx(float(f2.norm()), rel=1e-6)  # norms stay exact
    full = torch.cat([e.reshape(-1) for e in opt.effective_lr()[0]]).double()
    for q in (5, 50, 95):
        lo, hi = torch.quantile(full, torch.tensor([q - 2.0, q + 2.0], dtype=torch.float64) / 100)
        assert float(lo) <= r["eff_lr"][0][f"p{q}"] <= float(hi), q


@pytest.mark.parametrize("case", ["plain", "nan", "inf", "one", "ties"])
def test_percentiles_match_numpy(case):
    """The step's η/σ percentiles (adaptlr's own few-call routine) against np.nanpercentile."""
    import numpy as np

    from adaptlr.monitor.monitor import _percentiles

    rng = np.random.default_rng(3)
    x = rng.lognormal(size=4096)
    if case == "nan":
        x[rng.integers(0, len(x), 50)] = np.nan
    elif case == "inf":
        x[:300] = np.inf  # the top percentiles are inf: equal neighbours give inf, not NaN
    elif case == "one":
        x = x[:1]
    elif case == "ties":
        x = np.round(x, 1)
    qs = [0, 5, 25, 50, 75, 95, 100]
    got = _percentiles(x, qs)
    # numpy gives NaN between two infs (inf - inf); the routine gives inf: compare with inf
    # stood in for by a huge finite value
    want = np.nanpercentile(np.where(np.isinf(x), 1e300, x), qs)
    want = [math.inf if w > 1e299 else w for w in want]
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, rel=1e-12)
    assert _percentiles(np.full(3, np.nan), qs) != _percentiles(x, qs)
    assert all(math.isnan(v) for v in _percentiles(np.full(3, np.nan), qs))


def test_both_sources_give_the_same_record():
    """A step that measures itself (adaptlr's) and the monitor's own passes (torch's) feed the
    one record builder: the same keys, and the same figures for the same update."""
    recs = []
    for make in (
        lambda ps: adaptlr.SGD(ps, lr=0.1, fused=False),
        lambda ps: torch.optim.SGD(ps, lr=0.1),
    ):
        params = _params()
        opt = make(params)
        mon = Monitor(opt, eff_lr=False)
        torch.manual_seed(1)
        for _ in range(2):
            _step(opt, params, [torch.randn_like(p) for p in params])
            mon.record(1.0)
        recs.append(mon.records[-1])
    native, own = recs
    assert set(native) == set(own)
    for key in ("grad_norm", "update_norm", "param_norm", "update_ratio", "cos"):
        assert native[key] == pytest.approx(own[key], rel=1e-6), key
    assert native["group_grad_norm"] == pytest.approx(own["group_grad_norm"], rel=1e-6)
    assert native["lr"] == own["lr"] == [0.1] and native["eff_lr"] == own["eff_lr"] == [None]
