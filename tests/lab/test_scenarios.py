"""The lecture's reproductions, asserted numerically on adaptlr's real optimizers."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from adaptlr.lab import ELONGATED, SCENARIOS, Scenario, specs
from adaptlr.lab.cli_support import lab_run
from adaptlr.lab.scenarios import ADABOUND_AT, SWATS_BETAS, SWATS_LR, SWATS_TOL


@functools.cache
def get(key: str) -> Scenario:
    return SCENARIOS[key]()


def test_1_stuck_is_not_a_small_gradient() -> None:
    m = get("stuck").metrics
    assert m["loss_change_last20"] < 0.01  # the loss has stopped falling ...
    assert m["grad_ratio_last20"] > 0.5  # ... while the gradient stays > 50% of its start
    assert m["loss_ratio"] > 0.5  # and it stopped far above the minimum (loss 0)
    assert m["final_distance"] > 1.0


def test_2_tiny_lr_does_not_arrive_in_100000_steps() -> None:
    sc = get("tiny_lr")
    m = sc.metrics
    assert m["steps"] == 100_000 and sc.runs[0].steps == 100_000
    assert m["distance_ratio"] > 0.9
    assert m["final_loss"] > 10.0
    # the measured flat-direction progress matches 1 - (1 - eta*lambda_min)^T
    assert m["predicted_flat_factor"] > 0.98


def test_3_root_mean_square_bursts_after_arriving_then_settles() -> None:
    m = get("burst").metrics
    k = m["k"]
    assert m["near_step"] > 0  # the flat coordinate came within delta of the minimum
    assert m["bursts"] > 0 and m["first_burst"] > m["near_step"]
    assert m["peak_size"] > k * m["median_steep_step"]
    assert m["peak_size"] > 0.5  # a real jump, not rounding noise
    assert 0 < m["settled_after"] < 100  # and it calms down again
    # the sum (Adagrad) never bursts
    assert m["adagrad_bursts"] == 0


def test_3_burst_happens_in_the_steep_coordinate() -> None:
    sc = get("burst")
    rms = sc.runs[0]
    peak = sc.metrics["peak_step"]
    # the tilt couples the coordinates, so w1 moves too, but less
    assert abs(rms.step[peak, 0, 1]) > 1.5 * abs(rms.step[peak, 0, 0])
    # eta/sigma of the steep coordinate grew before the burst
    eff = rms.effective_lr[:, 0, 1]
    assert eff[peak - 1] > 3 * eff[20]


def test_4_decay_reaches_the_minimum_without_burst() -> None:
    m = get("decay").metrics
    assert m["bursts"] == 0
    assert m["final_distance"] < 1e-6
    assert 0 < m["steps_to_reach"] < 400
    assert m["max_steep_step_after_near"] < 0.01
    assert m["constant_bursts"] > 0


def test_5_warmup_and_radam() -> None:
    m = get("warmup").metrics
    assert m["adam_in_basin"] < 0.2  # large eta, no warm-up: thrown out of the basin
    assert m["adam_warmup_in_basin"] > 0.9
    assert m["radam_in_basin"] > 0.9
    assert m["radam_x100_in_basin"] < 0.1  # RAdam's first SGD steps scale with |g|


def test_6_summary_table() -> None:
    sc = get("summary")
    assert len(sc.runs) == 10 and len(sc.table) == 10
    m = sc.metrics
    reach = {k: v for k, v in m.items() if k.endswith("_steps")}
    # momentum arrives first; RMSProp with constant eta never settles, with decay it does
    assert min(reach.values(), key=lambda v: v if v >= 0 else 1e9) == m["momentum_steps"]
    assert m["rmsprop_lecture_steps"] == -1 and m["rmsprop_lecture_cosine_steps"] > 0
    assert all(m[f"{n}_steps"] > 0 for n in ("sgd", "momentum", "adagrad", "adam"))
    for row in sc.table:
        assert set(row) >= {"optimizer", "η", "schedule", "distance to minimum"}


@pytest.mark.parametrize("key", list(SCENARIOS))
def test_scenario_texts_quote_numbers(key: str) -> None:
    sc = get(key)
    assert sc.text and any(ch.isdigit() for ch in sc.text)
    assert np.isfinite([r.params[0] for r in sc.runs]).all()


# ----------------------------------------------------------------------------- the course's


def _adabound_bounds(final: float, gamma: float, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Luo et al. (2019), with the authors' code's gamma: eta_l, eta_u at step t."""
    return final * (1 - 1 / (gamma * t + 1)), final * (1 + 1 / (gamma * t))


def test_7_adabound_bounds_close_on_the_final_step_size() -> None:
    sc = get("adabound")
    m = sc.metrics
    a, g = m["final_lr"], m["gamma"]
    for t in ADABOUND_AT:
        lo, hi = _adabound_bounds(a, g, np.float64(t))
        # the bounds read from the optimizer (its probe elements) are the paper's
        assert m[f"lower_{t}"] == pytest.approx(lo, rel=1e-12)
        assert m[f"upper_{t}"] == pytest.approx(hi, rel=1e-12)
        assert m[f"gap_{t}"] == pytest.approx(hi - lo, rel=1e-12)
        assert lo * (1 - 1e-12) <= m[f"p10_{t}"] <= m[f"p50_{t}"] <= m[f"p90_{t}"]
        assert m[f"p90_{t}"] <= hi * (1 + 1e-12)
    end = ADABOUND_AT[-1]
    assert m[f"gap_{end}"] < 0.2 * a < m["gap_100"]  # closing: 19% of alpha* at the end
    assert m["at_lower_1"] + m["at_upper_1"] < 0.1  # at first, mostly Adam's eta/sigma ...
    assert m[f"at_upper_{end}"] > 0.8  # ... at the end, SGD's: held by the upper bound
    assert m["median_final_distance"] < 1e-9


def test_7_adabound_eta_over_sigma_is_adams_clipped() -> None:
    # float64 recomputation from the recorded path: v_t of each coordinate, Adam's step
    # size with the package's bias corrections, clipped to the closed-form bounds
    sc = get("adabound")
    m, tr = sc.metrics, sc.runs[0]
    b1, b2, eps = 0.9, 0.999, 1e-8  # adaptlr.AdaBound's defaults, which the scenario keeps
    grads = ELONGATED.grad(torch.from_numpy(tr.params[:-1])).numpy()  # (T, R, 2)
    v = np.zeros_like(grads[0])
    want = np.empty_like(grads)
    for i, gr in enumerate(grads):
        t = i + 1
        v = b2 * v + (1 - b2) * gr * gr
        eta = m["lr"] * np.sqrt(1 - b2**t) / (1 - b1**t)
        lo, hi = _adabound_bounds(m["final_lr"], m["gamma"], np.float64(t))
        want[i] = np.clip(eta / (np.sqrt(v) + eps), lo, hi)
    np.testing.assert_allclose(tr.effective_lr, want, rtol=1e-9)


def test_8_lookahead_slow_weights_as_torch_optimizer() -> None:
    torch_optimizer = pytest.importorskip("torch_optimizer")
    sc = get("lookahead")
    m, la = sc.metrics, sc.runs[0]
    p = torch.tensor([ELONGATED.start], dtype=torch.float64, requires_grad=True)
    ref = torch_optimizer.Lookahead(torch.optim.SGD([p], lr=m["eta"]), k=m["k"], alpha=m["alpha"])
    gaps = []
    with torch.no_grad():
        for _ in range(m["steps"]):
            p.grad = ELONGATED.grad(p)
            ref.step()
            gaps.append(float((p - ref.state[p]["slow_param"]).norm()))
    np.testing.assert_allclose(la.params[-1, 0], p.detach().numpy()[0], rtol=1e-12)
    for t in (3, 50, m["steps"]):
        assert m[f"slow_fast_{t}"] == pytest.approx(gaps[t - 1], rel=1e-9, abs=1e-15)
    assert m["max_slow_fast"] == pytest.approx(max(gaps), rel=1e-9)
    assert m["max_slow_fast_step"] == int(np.argmax(gaps)) + 1


def test_8_lookahead_contracts_as_the_closed_form() -> None:
    m = get("lookahead").metrics
    # the valley's Hessian [[a + b c^2, -b c], [-b c, b]] (a = 1, b = 100, c = 0.1), by hand
    lam = np.linalg.eigvalsh(np.array([[1.0 + 100 * 0.01, -10.0], [-10.0, 100.0]]))
    r = 1 - m["eta"] * lam  # GD's factor per step along each eigenvector (flat, steep)
    # a sync: phi <- phi + alpha (theta - phi), theta after k GD steps from phi
    flat, steep = (1 - m["alpha"]) + m["alpha"] * r ** m["k"]
    assert r[1] < -1  # GD alone diverges along the steep eigenvector ...
    assert m["gd_final_distance"] > 1e6
    assert m["steep_factor"] == pytest.approx(steep, rel=1e-6)  # ... Lookahead contracts
    assert m["flat_factor"] == pytest.approx(flat, rel=1e-6)
    assert abs(steep) < 1 and m["final_distance"] < 0.1
    assert m["syncs"] == 100 and m["first_syncs"] == [1, 6, 11]  # after steps 1, k+1, ...


def _swats_paper(
    w0: tuple[float, float],
    lr: float,
    betas: tuple[float, float],
    eps: float,
    tol: float,
    steps: int,
) -> tuple[np.ndarray, int, float]:
    """Keskar & Socher (2017), Algorithm 1, by hand in float64 (Adam's step with the bias
    corrections in the step size, as torch-optimizer writes it): the final point, the step
    after which it switched (0: never) and Lambda."""
    b1, b2 = betas
    w = np.array(w0, dtype=np.float64)
    m, v, b = np.zeros(2), np.zeros(2), np.zeros(2)
    lam, big_lam, k = 0.0, 0.0, 0
    for t in range(1, steps + 1):
        g = ELONGATED.grad(torch.from_numpy(w)).numpy()
        if k:  # SGD with momentum at Lambda
            b = b1 * b + g
            w = w - (1 - b1) * big_lam * b
            continue
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        w = w - x
        gamma = (x @ x) / (x @ g)
        lam = b2 * lam + (1 - b2) * gamma
        estimate = lam / (1 - b2**t)
        if t > 1 and abs(estimate - gamma) < tol and estimate > 0:
            k, big_lam = t, estimate
    return w, k, big_lam


def test_9_swats_switches_as_the_paper() -> None:
    sc = get("swats")
    m, tr = sc.metrics, sc.runs[0]
    w, k, big_lam = _swats_paper(
        ELONGATED.start, SWATS_LR, SWATS_BETAS, 1e-3, SWATS_TOL, m["steps"]
    )  # eps 1e-3: SWATS's default (torch-optimizer's), which the scenario keeps
    assert 10 < k < m["steps"] - 100  # a switch in the middle of the run, seen on the path
    assert m["switch_step"] == k and m["switch_changes"] == 1
    assert m["sgd_lr"] == pytest.approx(big_lam, rel=1e-9)
    np.testing.assert_allclose(tr.params[-1, 0], w, rtol=1e-9)
    # from the switch on, the optimizer reports Lambda as eta/sigma of both coordinates
    np.testing.assert_allclose(tr.effective_lr[k - 1 :, 0], big_lam, rtol=1e-12)
    lam_max = np.linalg.eigvalsh(np.array([[1.0 + 100 * 0.01, -10.0], [-10.0, 100.0]]))[1]
    assert m["sgd_lr_over_edge"] == pytest.approx(big_lam * lam_max / 2, rel=1e-9)
    lo, hi = sorted(m["adam_eff_before_switch"])
    assert lo < big_lam < hi  # one step size between the coordinates' Adam step sizes
    assert m["adam_eff_growth"] > 1


def test_9_lab_run_marks_the_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # adaptlr lab run names SWATS once specs.OPTIMIZERS lists it; here the test lists it
    monkeypatch.setitem(specs.OPTIMIZERS, "swats", specs._Entry("SWATS", {}, "SWATS"))
    steps = 120
    _, k, big_lam = _swats_paper(ELONGATED.start, SWATS_LR, SWATS_BETAS, 1e-3, SWATS_TOL, steps)
    spec = f"swats:lr={SWATS_LR},form=paper,tol={SWATS_TOL}"
    lines = lab_run("elongated", [spec, "adam:lr=0.3"], None, steps, None, tmp_path / "r.png")
    assert (
        f"switched to SGD after step {k} (a diamond on the path), step size {big_lam:.4g}"
        in (lines[0])
    )
    assert "switched" not in lines[1]  # Adam has no switch
    assert (tmp_path / "r.png").stat().st_size > 10_000
