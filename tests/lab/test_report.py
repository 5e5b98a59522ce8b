"""The report's page: numbered sections with unique ids; the progress bar (tqdm)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

import adaptlr.lab.tasks
import adaptlr.monitor.demo
from adaptlr.lab import ELONGATED, Scenario, plots, report, run
from adaptlr.lab.report import progress, write_demo


def _fake(key: str) -> Scenario:
    tr = run(ELONGATED, "sgd:lr=0.01", steps=20, label="GD")
    return Scenario(
        key,
        f"fake {key}",
        "20 steps",
        [tr],
        {},
        figure_builders={"loss": lambda: plots.loss_curves([tr])},
    )


# in two processes (the default on a machine with two cores or more): the sections come back
# in any order and are written in theirs
@pytest.mark.parametrize("workers", [2], ids=["two_processes"])
def test_page_sections_are_numbered_with_unique_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    # the real monitor and LR-finder sections, on short runs: their ids and headings count
    train, find = adaptlr.monitor.demo.train_digits, adaptlr.lab.tasks.lr_find
    monkeypatch.setattr(
        adaptlr.monitor.demo, "train_digits", lambda make, **kw: train(make, steps=12, **kw)
    )
    monkeypatch.setattr(adaptlr.lab.tasks, "lr_find", lambda *a, **kw: find(*a, num_steps=20, **kw))
    # the time-to-target section has its own test (tests/lab/test_time_to_target.py); here a
    # stand-in numbered as the report numbers it
    monkeypatch.setattr(
        report, "_time_to_target", lambda out, n: f'<section id="ttt"><h2>{n}. ttt</h2></section>'
    )
    stream = io.StringIO()
    index = write_demo(
        tmp_path,
        scenarios={"a": lambda: _fake("a"), "b": lambda: _fake("b"), "c": lambda: _fake("c")},
        stream=stream,
        gif=False,
        workers=workers,
    )
    page = index.read_text(encoding="utf-8")
    ids = re.findall(r"""\bid=["']([^"']+)["']""", page)
    assert len(ids) == len(set(ids)), ids
    assert ids == ["a", "b", "c", "monitor", "lr_find", "ttt"]  # in order, whatever finished first
    headings = re.findall(r"<h2>([^<]*)</h2>", page)
    assert len(headings) == page.count("<section")
    assert [h.split(".")[0] for h in headings] == ["1", "2", "3", "4", "5", "6"], headings
    assert stream.getvalue() == ""  # not a terminal: no progress bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_only() -> None:
    items = [("one", 1), ("two", 2), ("three", 3)]
    quiet = io.StringIO()
    assert list(progress(items, 3, quiet)) == items and quiet.getvalue() == ""
    tty = _Terminal()
    assert list(progress(items, 3, tty)) == items
    text = tty.getvalue()
    assert "3/3" in text and "three" in text  # reached the end, naming the item
