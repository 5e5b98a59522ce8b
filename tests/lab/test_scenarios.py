"""The lecture's six reproductions, asserted numerically on adaptlr's real optimizers."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from adaptlr.lab import SCENARIOS, Scenario


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
