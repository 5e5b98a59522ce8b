"""Each diagnosis built on purpose, on the lecture's surfaces and on the digits network."""

from __future__ import annotations

import warnings

import pytest
import torch

import adaptlr
from adaptlr.monitor import Monitor


def quad_run(lr, start, steps, *, f, opt_cls=torch.optim.SGD, dtype=torch.float64, window=50):
    """Gradient descent on a 2-d surface `f`, recorded every step with the loss after step()."""
    p = torch.nn.Parameter(torch.tensor(start, dtype=dtype))
    opt = opt_cls([p], lr=lr)
    mon = Monitor(opt, window=window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            loss = f(p)
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.record(loss)
    return mon, p


def elongated(a: float, b: float):
    return lambda p: 0.5 * (a * p[0] ** 2 + b * p[1] ** 2)


def test_large_eta_on_elongated_surface_oscillates():
    # Curvatures 1000 and 1: eta just below 2/1000, so the steep coordinate flips sign every step
    # and shrinks by only 0.01% per step while the flat one crawls (0.2% per step).
    mon, _ = quad_run(1.9999 / 1000, [1.0, 1.0], 300, f=elongated(1000.0, 1.0))
    d = mon.diagnose()
    assert d.kind == "oscillating", str(d)
    assert d.evidence["cos_median"] < -0.99
    assert d.evidence["grad_norm_last"] > 900  # the gradient is anything but small
    assert abs(d.evidence["loss_rel_drop"]) < 0.01
    assert "oscillating" in str(d) and "Suggestion" in str(d)


def test_a_loss_bouncing_between_two_unequal_levels_is_flat():
    # A period-2 orbit: the loss alternates 0.94 / 0.90, gradients are opposite. A third of a
    # 100-record window used to hold 33 records, 17 of one parity in the first third and 17 of
    # the other in the last, so its median read a 4% fall ("progressing") or rise.
    from adaptlr.monitor import diagnose_records

    for offset in (0, 1):
        recs = [
            {"step": t, "loss": (0.94, 0.90)[(t + offset) % 2], "grad_norm": 0.46, "cos": -1.0}
            for t in range(100)
        ]
        d = diagnose_records(recs, window=100)
        assert d.kind == "oscillating", str(d)
        assert d.evidence["loss_rel_drop"] == pytest.approx(0.0, abs=1e-12)


def test_small_eta_on_well_conditioned_surface_progresses():
    mon, _ = quad_run(0.01, [1.0, 1.0], 300, f=elongated(1.0, 1.0))
    d = mon.diagnose()
    assert d.kind == "progressing", str(d)
    assert d.evidence["loss_rel_drop"] > 0.3


def test_far_too_large_eta_diverges_before_any_overflow():
    # |1 - eta * a| = 2: every step doubles the steep coordinate; 60 steps stay finite in float64.
    mon, p = quad_run(3.0 / 1000, [1.0, 1.0], 60, f=elongated(1000.0, 1.0))
    assert torch.isfinite(p).all()
    d = mon.diagnose()
    assert d.kind == "diverging", str(d)
    assert d.evidence["grad_norm_growth"] > 1e3


def test_non_finite_values_are_diverging():
    mon, p = quad_run(3.0 / 1000, [1.0, 1.0], 1200, f=elongated(1000.0, 1.0))
    d = mon.diagnose()
    assert d.kind == "diverging"
    assert d.evidence["nonfinite_values"] > 0 or d.evidence["nonfinite_loss_steps"]


def saddle(p):
    return p[0] ** 2 - p[1] ** 2


def test_saddle_with_tiny_eta_is_critical_point_and_curvature_finds_negative_eigenvalue():
    mon, p = quad_run(1e-3, [1e-5, 1e-5], 300, f=saddle)
    d = mon.diagnose(curvature=lambda: saddle(p))
    assert d.kind == "critical_point", str(d)
    # The Hessian of x^2 - y^2 is diag(2, -2) everywhere: eigenvalues 2 and -2 by hand.
    c = d.evidence["curvature"]
    assert c["kind"] == "saddle"
    assert c["min_eigenvalue"] == pytest.approx(-2.0, rel=1e-6)
    assert c["max_eigenvalue"] == pytest.approx(2.0, rel=1e-6)
    assert "saddle" in d.suggestion.lower()


def test_curvature_at_a_minimum_and_on_a_larger_known_spectrum():
    # 0.5 x^T A x with A = Q diag(lam) Q^T: Lanczos must find min and max of lam.
    torch.manual_seed(0)
    lam = torch.linspace(0.5, 7.0, 12, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    a = q @ torch.diag(lam) @ q.T
    x = torch.nn.Parameter(torch.randn(12, dtype=torch.float64))
    mon = Monitor(torch.optim.SGD([x], lr=0.1))
    c = mon.curvature(lambda: 0.5 * x @ a @ x, iters=12)
    assert c.kind == "minimum"
    assert c.min_eigenvalue == pytest.approx(0.5, rel=1e-8)
    assert c.max_eigenvalue == pytest.approx(7.0, rel=1e-8)
    lam2 = lam - 3.0  # shift: now indefinite
    a2 = q @ torch.diag(lam2) @ q.T
    c2 = mon.curvature(lambda: 0.5 * x @ a2 @ x, iters=12)
    assert c2.kind == "saddle" and c2.min_eigenvalue == pytest.approx(-2.5, rel=1e-8)


def test_root_mean_square_bursts_on_the_elongated_surface():
    # The lecture's burst: the steep coordinate settles, its sigma (the root *mean* square of
    # all its gradients) decays with the many tiny gradients, the step grows until it overshoots.
    assert hasattr(adaptlr, "RootMeanSquare")
    f = elongated(20.0, 0.2)
    p = torch.nn.Parameter(torch.tensor([1.0, 30.0]))
    opt = adaptlr.RootMeanSquare([p], lr=0.3)
    mon = Monitor(opt, window=50)
    updates, kinds = [], []
    for _ in range(400):
        before = p.detach().clone()
        loss = f(p)
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.record(loss)
        updates.append(float((p.detach() - before).norm()))
        kinds.append(mon.diagnose().kind)
    # The burst, found by hand: the first update 10x larger than the median of the 50 before.
    burst = next(
        i for i in range(50, len(updates)) if updates[i] > 10 * sorted(updates[i - 49 : i + 1])[25]
    )
    assert kinds[burst] == "bursting"
    assert "bursting" not in kinds[burst - 20 : burst]  # not before the burst
    assert kinds[burst + 15] == "bursting"  # and still named once it calmed down


@pytest.fixture(scope="module")
def digits_runs():
    from adaptlr.monitor.demo import train_digits

    return {"adam": train_digits(lambda p: adaptlr.Adam(p, lr=1e-2, fused=False))}


def _perturbed(make, rel):
    """`make`, after multiplying every weight by 1 + rel * N(0, 1) (a fixed draw)."""

    def wrapped(params):
        params = list(params)
        gen = torch.Generator().manual_seed(1234)
        with torch.no_grad():
            for p in params:
                p.mul_(1 + rel * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        return make(params)

    return wrapped


def test_digits_too_large_sgd_oscillates_for_every_seed_and_perturbation():
    # The demo's case: SGD at lr 3 on softmax regression + L2 (strictly convex). The bounce is a
    # stable period-2 orbit, so the diagnosis must not depend on the seed or on rounding (SGD at
    # lr 2 on the ReLU network gave all five kinds across seeds, dtypes and thread counts).
    from adaptlr.monitor.demo import TOO_LARGE, demo_runs, train_digits

    make, kw = demo_runs()[TOO_LARGE]
    runs = [(f"seed {s}", s, make) for s in range(5)]
    runs.append(("seed 0, weights perturbed by 1e-6", 0, _perturbed(make, 1e-6)))
    for name, seed, mk in runs:
        mon, d = train_digits(mk, seed=seed, **kw)
        assert d.kind == "oscillating", f"{name}: {d}"
        ev, recs = d.evidence, mon.records
        # The lecture's picture: the loss is stuck (it repeats the same two values) ...
        assert abs(ev["loss_rel_drop"]) < 1e-3, name
        assert recs[-1]["loss"] > 0.3 * recs[0]["loss"], name
        # ... while the gradient norm does not shrink and is far from small ...
        assert 0.95 < ev["grad_norm_growth"] < 1.05, name
        assert ev["grad_norm_last"] > 0.5 * recs[0]["grad_norm"], name
        # ... and consecutive gradients point against each other.
        assert ev["cos_median"] < -0.95, name


def test_digits_too_large_lr_is_above_two_over_the_sharpness_of_the_minimum():
    # Not a critical point: the same convex surface at lr 1 reaches its minimum (gradient norm
    # 1e-3, 400x smaller than in the bounce), and lr 3 is above 2 / lambda_max there, so no
    # run at lr 3 can settle.
    from adaptlr.monitor.curvature import hessian_extremes
    from adaptlr.monitor.demo import L2, TOO_LARGE, demo_runs, digits_data, train_digits

    _, kw = demo_runs()[TOO_LARGE]
    params = []

    def make(p):
        params.extend(p)
        return adaptlr.SGD(params, lr=1.0, fused=False)

    mon, d = train_digits(make, **kw)
    assert d.kind == "critical_point", str(d)
    assert d.evidence["grad_norm_last"] < 2e-3
    x, y = digits_data()
    w, b = params

    def loss():
        l2 = 0.5 * L2 * (w.square().sum() + b.square().sum())
        return torch.nn.functional.cross_entropy(x @ w.T + b, y) + l2

    c = hessian_extremes(loss, params, iters=30)
    assert c.kind == "minimum"
    assert c.max_eigenvalue == pytest.approx(0.93, abs=0.01)  # the figure the demo's text names
    assert 1.0 < 2 / c.max_eigenvalue < 3.0


def test_digits_adam_progresses(digits_runs):
    mon, d = digits_runs["adam"]
    assert d.kind == "progressing", str(d)
    assert mon.records[-1]["loss"] < 0.05
    eff = mon.records[-1]["eff_lr"][0]
    assert eff is not None and eff["p5"] <= eff["p50"] <= eff["p95"]


def _lecture_valley_run(lr, steps=300, window=100):
    """SGD on the lecture's elongated valley (curvatures ~1 and ~101) from its start point."""
    from adaptlr.lab.surfaces import ELONGATED

    p = torch.nn.Parameter(torch.tensor(ELONGATED.start, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr)
    mon = Monitor(opt, window=window)
    path = [p.detach().clone()]
    for _ in range(steps):
        loss = ELONGATED.loss(p)
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.record(loss)
        path.append(p.detach().clone())
    return mon, torch.stack(path)


def test_the_lectures_tiny_eta_crawls_with_its_evidence():
    # The lecture's eta = 1e-7: the loss still falls, but each step moves the parameters by
    # ~2e-6 of their norm. The figures, recomputed in float64 at the final point (they change
    # by ~1e-5 over the run): the update is eta * H (w - w*), the loss falls by eta |g|^2 per
    # step to first order.
    from adaptlr.lab.surfaces import ELONGATED, elongated_hessian

    lr = 1e-7
    mon, path = _lecture_valley_run(lr)
    d = mon.diagnose()
    assert d.kind == "crawling", str(d)
    # the relative update of each of the window's steps, from the parameters' path
    w = path[-100:]
    ratio = float(((w - path[-101:-1]).norm(dim=1) / w.norm(dim=1)).quantile(0.5))
    # first order at the window's middle: the loss falls by lr |g|^2 per step
    mid = path[-50]
    g = (mid - torch.tensor(ELONGATED.minima[0], dtype=torch.float64)) @ elongated_hessian(
        ELONGATED
    )
    to_fall = float(ELONGATED.loss(mid)) / (lr * float(g @ g))
    ev = d.evidence
    assert ev["update_ratio_median"] == pytest.approx(ratio, rel=1e-6)
    assert ev["steps_to_move_params"] == pytest.approx(1 / ratio, rel=1e-6)
    # the loss's thirds sit ~33 steps either side of the middle: a 1e-3 difference
    assert ev["steps_to_fall_by_loss"] == pytest.approx(to_fall, rel=2e-3)
    assert ev["projected_steps"] == min(ev["steps_to_move_params"], ev["steps_to_fall_by_loss"])
    assert ev["projected_steps"] > 1e4  # the lecture: still far after 10^5 steps
    # the loss does fall: this is no critical point and no flat plateau
    assert ev["loss_rel_drop"] > 0 and not ev["grad_small"]
    # the suggestion's factor brings the projection to ~1,000 steps
    factor = float(f"{ev['projected_steps'] / 1000:.1g}")
    assert ev["lr_factor"] == factor and ev["suggested_lr"] == pytest.approx(lr * factor)
    assert f"{factor:,g}x" in d.suggestion and "raise the learning rate" in d.suggestion
    assert "crawling" in str(d)


def test_a_good_eta_on_the_same_valley_never_crawls():
    from adaptlr.monitor.dashboard import window_diagnoses

    mon, _ = _lecture_valley_run(1e-2)  # below 2 / 101: converges, ~1% per step flat direction
    d = mon.diagnose()
    assert d.kind == "progressing", str(d)
    assert all(w[2].kind != "crawling" for w in window_diagnoses(mon.records, 50))


def test_crawling_is_not_shaded_as_progress_and_the_demos_tiny_lr_crawls():
    # The demo's "SGD, lr 1e-3 (tiny)" run used to be "progressing" (shaded green) with a
    # suggestion saying the steps were too small.
    from adaptlr.monitor.dashboard import KIND_COLORS
    from adaptlr.monitor.demo import demo_runs, train_digits

    assert KIND_COLORS["crawling"] != KIND_COLORS["progressing"]
    make, kw = demo_runs()["SGD, lr 1e-3 (tiny)"]
    mon, d = train_digits(make, **kw)
    assert d.kind == "crawling", str(d)
    recs = mon.records[-100:]
    ratios = sorted(r["update_norm"] / r["param_norm"] for r in recs)
    assert d.evidence["update_ratio_median"] == pytest.approx(
        (ratios[49] + ratios[50]) / 2, rel=1e-9
    )
    assert d.evidence["suggested_lr"] > 1e-3
