"""Runs: batching equals separate runs, recorded quantities are what they claim."""

from __future__ import annotations

import numpy as np
import torch

import adaptlr
from adaptlr import core, schedules
from adaptlr.lab import ELONGATED, ROSENBROCK, run

STARTS = [(-1.5, 2.0), (0.5, -0.5), (1.8, 2.5)]


def test_batched_runs_equal_separate_runs() -> None:
    both = run(ROSENBROCK, "adam:lr=0.05", STARTS, steps=100)
    for r, s in enumerate(STARTS):
        one = run(ROSENBROCK, "adam:lr=0.05", [s], steps=100)
        np.testing.assert_allclose(both.params[:, r], one.params[:, 0], rtol=0, atol=0)


def test_recorded_quantities() -> None:
    tr = run(ROSENBROCK, "adam:lr=0.05", STARTS, steps=50)
    assert tr.params.shape == (51, 3, 2)
    assert tr.loss.shape == tr.grad_norm.shape == (51, 3)
    assert tr.step.shape == tr.effective_lr.shape == (50, 3, 2)
    p = torch.from_numpy(tr.params)
    np.testing.assert_allclose(tr.loss, ROSENBROCK.loss(p).numpy())
    np.testing.assert_allclose(tr.grad_norm, ROSENBROCK.grad(p).norm(dim=-1).numpy())
    np.testing.assert_allclose(tr.step, np.diff(tr.params, axis=0))
    # Adam's first step is -lr * sign(g) (up to eps): the step over the effective lr
    g0 = ROSENBROCK.grad(p[0]).numpy()
    np.testing.assert_allclose(tr.step[0], -0.05 * np.sign(g0), rtol=1e-6)
    np.testing.assert_allclose(tr.lr, 0.05)


def test_effective_lr_of_lecture_rms_is_lr_over_rms() -> None:
    tr = run(ELONGATED, "rms:lr=0.3", steps=20)
    g = ELONGATED.grad(torch.from_numpy(tr.params[:-1, 0])).numpy()  # (T, 2)
    rms = np.sqrt(np.cumsum(g**2, axis=0) / np.arange(1, 21)[:, None])
    np.testing.assert_allclose(tr.effective_lr[:, 0], 0.3 / (rms + 1e-8), rtol=1e-9)


def test_sgd_has_no_effective_lr_and_schedule_is_applied() -> None:
    sched = schedules.cosine(0.01, total_steps=30)
    tr = run(ELONGATED, "sgd", steps=30, schedule=sched)
    assert tr.effective_lr is None
    np.testing.assert_allclose(tr.lr, [sched(t) for t in range(30)])
    # GD: step = -eta_t * gradient
    g = ELONGATED.grad(torch.from_numpy(tr.params[:-1, 0])).numpy()
    np.testing.assert_allclose(tr.step[:, 0], -tr.lr[:, None] * g, rtol=1e-12)


def test_schedule_spec_takes_the_optimizer_lr_as_peak() -> None:
    tr = run(ELONGATED, "adam:lr=0.2", steps=60, schedule="warmup_cosine:warmup=10,total_steps=60")
    assert tr.lr[0] == 0.0 and abs(tr.lr[10] - 0.2) < 1e-12
    assert "warmup_cosine" in tr.label


def test_user_chain_with_global_clipping_is_not_batched() -> None:
    lr = core.scale_by_learning_rate(0.1)
    chain = core.chain(core.clip_by_global_norm(1.0), core.mean_sq(), lr)
    both = run(ROSENBROCK, chain, STARTS, steps=30)
    for r, s in enumerate(STARTS):
        one = run(ROSENBROCK, chain, [s], steps=30)
        np.testing.assert_allclose(both.params[:, r], one.params[:, 0])


def test_factory_and_steps_to_reach() -> None:
    tr = run(ELONGATED, lambda ps: adaptlr.SGD(ps, lr=0.01, momentum=0.9), steps=400)
    reach = int(tr.steps_to_reach(1e-3)[0])
    d = tr.distance()[:, 0]
    assert 0 < reach <= 400
    assert (d[reach:] < 1e-3).all() and d[reach - 1] >= 1e-3
