"""The time-to-target benchmark on a reduced budget (digits, one seed, 100 steps): the table is
produced and its numbers are finite and consistent, each recomputed independently."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import pytest
import torch

from adaptlr.lab import time_to_target as ttt
from adaptlr.lab.tasks import digits_split, get_task

STEPS = 100
METHODS = (
    "AdamW",
    "AdamW + cosine, tuned",
    "lr_find + AdamW + cosine",
    "Prodigy",
    "AdamWScheduleFree",
    "Auto",
)


pytestmark = pytest.mark.usefixtures("one_thread")  # (tests/conftest.py)


@pytest.fixture(scope="module")
def results() -> list[ttt.MethodResult]:
    # 7 grid runs, a sweep of up to 100 steps and 4 runs of 100 steps, 5 step timings
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [ttt.run_method("digits", m, seeds=(0,), steps=STEPS) for m in METHODS]
    finally:
        torch.set_num_threads(threads)


def _manual_adamw_curve(steps: int, seed: int) -> list[float]:
    """torch AdamW at its defaults on digits, written out: batches of 64 from a permutation
    of the training set per epoch, the validation accuracy before and after every step."""
    xt, yt, xv, yv = digits_split()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
        )
    opt = torch.optim.AdamW(model.parameters())
    gen = torch.Generator().manual_seed(seed)

    def accuracy() -> float:
        with torch.no_grad():
            return (model(xv).argmax(1) == yv).double().mean().item()

    curve = [accuracy()]
    while len(curve) <= steps:
        perm = torch.randperm(len(yt), generator=gen)
        for k in range(len(yt) // 64):
            idx = perm[64 * k : 64 * (k + 1)]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
            curve.append(accuracy())
            if len(curve) > steps:
                break
    return curve


def test_the_table_is_produced_and_its_numbers_are_consistent(
    results: list[ttt.MethodResult],
) -> None:
    task = get_task("digits")
    text = ttt.table(results)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(METHODS)  # header + one row per method
    for r, row in zip(results, rows[1:]):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == r.method
        # steps to target: the first evaluated step meeting the target, within the budget
        for run in r.runs:
            first = next((s for s, m in zip(run.eval_steps, run.metric) if m >= task.target), None)
            assert run.steps_to_target == first
            assert run.steps_to_target is None or 0 < run.steps_to_target <= STEPS
            assert run.eval_steps == tuple(range(STEPS + 1))  # evaluated every step
            assert all(math.isfinite(m) and 0 <= m <= 1 for m in run.metric)
        shown = cells[2]
        s = r.steps_to_target[0]
        assert shown == ("not reached" if s is None else str(s))
        # final and best, recomputed from the curve
        assert float(cells[4]) == pytest.approx(r.runs[0].metric[-1], abs=5e-4)
        assert float(cells[5]) == pytest.approx(max(r.runs[0].metric), abs=5e-4)
        # total steps: runs x budget, plus the sweep of the LR range test
        grid = len(ttt.METHODS[r.method].grid)
        sweep = 0
        if r.method.startswith("lr_find"):
            sweep = int(cells[6]) - STEPS
            assert 1 <= sweep <= 100  # lr_find's num_steps (it may stop early)
        assert int(cells[6]) == (grid or 1) * STEPS + sweep
        ratio = float(cells[7])
        assert math.isfinite(ratio) and 0.05 < ratio < 50


def test_the_grid_keeps_its_fastest_lr(results: list[ttt.MethodResult]) -> None:
    tuned = results[1]
    assert list(tuned.grid) == [10 ** (-4 + k / 2) for k in range(7)]
    inf = [math.inf if s is None else s for s in (v[0] for v in tuned.grid.values())]
    fastest = min(inf)
    assert math.isfinite(fastest)
    assert tuned.runs[0].steps_to_target == fastest
    assert tuned.runs[0].lr in [lr for lr, v in zip(tuned.grid, inf) if v == fastest]
    assert tuned.median_steps == statistics.median([fastest])


def test_the_curve_matches_a_loop_written_out(results: list[ttt.MethodResult]) -> None:
    assert list(results[0].runs[0].metric) == _manual_adamw_curve(STEPS, 0)


def test_schedule_free_is_evaluated_at_its_average(results: list[ttt.MethodResult]) -> None:
    import adaptlr

    task = get_task("digits")
    model = task.model(0)
    opt = adaptlr.AdamWScheduleFree(model.parameters())
    data = task.batches(0)
    at_x, at_y = [task.evaluate(model)], [task.evaluate(model)]
    for _ in range(STEPS):
        x, y = next(data)
        opt.zero_grad()
        task.loss(model(x), y).backward()
        opt.step()
        at_y.append(task.evaluate(model))
        opt.eval()
        at_x.append(task.evaluate(model))
        opt.train()
    assert at_x != at_y  # the two points differ: the check below can fail
    assert list(results[4].runs[0].metric) == at_x


def test_demo_section(tmp_path: Path) -> None:
    html = ttt.demo_section(tmp_path, 7)
    assert html.startswith('<section id="time_to_target"><h2>7. ')
    assert html.endswith("</section>")
    assert (tmp_path / "time_to_target_digits.png").stat().st_size > 10_000
    assert len(re.findall("<tr><td>", html)) == len(ttt.DEMO_METHODS)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        ttt.run_method("digits", "Adam", seeds=(0,))
    with pytest.raises(ValueError, match="seeds must hold at least one"):
        ttt.run_method("digits", "AdamW", seeds=())
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        ttt.run_method("digits", "AdamW", steps=0)
