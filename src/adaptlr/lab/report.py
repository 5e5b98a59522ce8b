"""``adaptlr demo``: run every reproduction and write ``index.html`` with figures and tables."""

from __future__ import annotations

import functools
import html
import json
import math
import multiprocessing as mp
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TextIO

from ..lr_finder import RECOMMENDED
from . import plots
from .scenarios import SCENARIOS, Scenario

__all__ = ["write_demo", "progress", "demo_workers"]


def progress(items: Iterable[Any], total: int, stream: TextIO | None = None) -> Iterator[Any]:
    """Yield ``items`` with a tqdm bar on ``stream`` (stderr) naming the current item.

    Quiet when ``stream`` is not a terminal (a log, CI, a test), and without tqdm installed.
    """
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the "lab" extra; without it, no bar
        yield from items
        return
    bar = tqdm(
        items,
        total=total,
        file=stream or sys.stderr,
        disable=None,  # None: off unless the stream is a terminal
        desc="adaptlr demo",
        unit="section",
        dynamic_ncols=True,
    )
    with bar:
        for item in bar:
            bar.set_postfix_str(str(item[0] if isinstance(item, tuple) else item))
            yield item


def _table(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
section { margin-bottom: 2.5em; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th { background: #eee; }
p.note { color: #555; font-size: 0.9em; }
figure { margin: 1em 0; }
"""


#: what a section job returns: its HTML, and for a reproduction its record (``results.json``)
_Done = tuple[str, "dict[str, Any] | None"]

#: what the worker processes run: set before the pool forks them, read in the children
_JOBS: list[Callable[[], _Done]] = []


def _run_job(i: int) -> _Done:
    return _JOBS[i]()


def _child() -> None:
    # one thread: a forked child must not enter the GNU OpenMP pool its parent may have
    # started (it would wait forever), and the sections' tensors are small
    import torch

    torch.set_num_threads(1)


def _plain(value: Any) -> Any:
    """A metric as JSON holds it (numpy scalars as Python numbers; NaN and inf as text)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _record(key: str, sc: Scenario, figures: list[str]) -> dict[str, Any]:
    """What ``results.json`` keeps of a reproduction: its title, text, table, every measured
    number (``metrics``) and its figures' file names."""
    return {
        "title": sc.title,
        "text": sc.text,
        "table": [{k: _plain(v) for k, v in row.items()} for row in sc.table or []],
        "metrics": {k: _plain(v) for k, v in sc.metrics.items()},
        "figures": figures,
    }


def demo_workers() -> int:
    """How many processes ``adaptlr demo`` runs its sections in: the CPU count (at most 4)
    where processes can be forked (a forked child inherits the sections to run, and a test's
    patches), else 1."""
    if "fork" not in mp.get_all_start_methods():
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


def _scenario_section(
    out: Path, key: str, fn: Callable[[], Scenario], number: int, gif: bool
) -> _Done:
    """One reproduction run, its figures saved under ``out``: its ``<section>`` and record."""
    sc = fn()
    imgs, files = [], []
    for name, fig in sc.figures().items():
        fname = f"{key}_{name}.png"
        plots.save(fig, out / fname)
        files.append(fname)
        imgs.append(f'<img src="{fname}" alt="{html.escape(sc.title)}: {name}">')
    if gif and sc.gif is not None:
        sc.gif(out / f"{key}.gif")
        files.append(f"{key}.gif")
        imgs.append(f'<img src="{key}.gif" alt="{html.escape(sc.title)}: animation">')
    table = _table(sc.table) if sc.table else ""
    section = (
        f'<section id="{key}"><h2>{number}. {html.escape(sc.title)}</h2>'
        f"<p>{html.escape(sc.text)}</p>{table}{''.join(imgs)}</section>"
    )
    return section, _record(key, sc, files)


def _only(job: Callable[[Path, int], str], out: Path, number: int) -> _Done:
    return job(out, number), None


def write_demo(
    out_dir: str | Path,
    *,
    scenarios: dict[str, Callable[[], Scenario]] | None = None,
    stream: TextIO | None = None,
    gif: bool = True,
    workers: int | None = None,
) -> Path:
    """Run every reproduction, save its figures under ``out_dir`` and write ``index.html``.

    The sections (the reproductions, then the monitor's, the LR range test's and the time to
    target's) run in ``workers`` processes at once and are written in their order. Beside the
    page, ``results.json`` keeps each reproduction's title, text, table, measured numbers
    (``metrics``) and figure files (the documentation's lecture pages are made from it).

    Args:
        out_dir: the folder the page and its figures are written to (made if missing).
        scenarios: the reproductions by section id, each a function returning a
            :class:`Scenario`; ``None``: :data:`SCENARIOS`, the lecture's.
        stream: where the progress bar goes (stderr by default; drawn only on a terminal).
        gif: also write the animations of the scenarios that have one.
        workers: processes to run the sections in; ``None``: :func:`demo_workers`; 1: in
            this process, one after the other.

    Returns:
        The path of ``index.html``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scenarios = scenarios or SCENARIOS
    t0 = time.perf_counter()
    keys = [*scenarios, "monitor", "lr_find", "time_to_target"]
    jobs: list[Callable[[], _Done]] = [
        functools.partial(_scenario_section, out, key, fn, i + 1, gif)
        for i, (key, fn) in enumerate(scenarios.items())
    ]
    n = len(jobs)
    jobs += [
        functools.partial(_only, _monitor_section, out, n + 1),
        functools.partial(_only, _lr_find, out, n + 2),
        functools.partial(_only, _time_to_target, out, n + 3),
    ]
    done: dict[str, _Done] = {}
    workers = demo_workers() if workers is None else workers
    if workers <= 1:
        for key, job in progress(list(zip(keys, jobs)), len(jobs), stream):
            done[key] = job()
    else:
        _JOBS[:] = jobs  # (read by the forked children)
        try:
            ctx = mp.get_context("fork")
            pool = ProcessPoolExecutor(min(workers, len(jobs)), ctx, initializer=_child)
            with pool:
                futures = {pool.submit(_run_job, i): key for i, key in enumerate(keys)}
                finished = ((futures[f], f) for f in as_completed(futures))
                for key, future in progress(finished, len(jobs), stream):
                    done[key] = future.result()
        finally:
            _JOBS.clear()
    # numbered in the order they are written (a section that came back empty takes none)
    sections = [done[k][0] for k in keys if done[k][0]]
    sections = [re.sub(r"<h2>\d+\. ", f"<h2>{i}. ", s, count=1) for i, s in enumerate(sections, 1)]
    elapsed = time.perf_counter() - t0
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>adaptlr lab: the lecture's experiments</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>adaptlr lab: adaptive learning rates on error surfaces</h1>"
        "<p>Each section reproduces one claim of the lecture with adaptlr's real optimizers "
        "on a two-dimensional error surface; the numbers in the text are measured in this "
        "run and asserted in the test suite.</p>"
        + "".join(sections)
        + f"<p class='note'>Generated by <code>adaptlr demo</code> in {elapsed:.1f} s.</p>"
        "</body></html>"
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    records = {k: done[k][1] for k in keys if done[k][1] is not None}
    results = {"elapsed_s": elapsed, "scenarios": records}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return index


def _time_to_target(out: Path, number: int) -> str:
    """Time to target on digits, one seed, a few methods (adaptlr.lab.time_to_target)."""
    from . import time_to_target

    return time_to_target.demo_section(out, number)


def _monitor_section(out: Path, number: int) -> str:
    try:
        from adaptlr import monitor
    except ImportError:  # the monitor is optional for the lab
        return ""
    fn = getattr(monitor, "demo_section", None)
    if fn is None:
        return ""
    try:
        return fn(out, number=number)  # a whole <section id="monitor">
    except NotImplementedError:  # the monitor's section is still a stub
        return ""


def _lr_find(out: Path, number: int) -> str:
    """The LR range test on the digits task (adaptlr.lab.tasks), its plot and suggestions."""
    import torch

    import adaptlr

    from .tasks import lr_find

    # fused=False: for 9,610 parameters the reference path is as fast and compiles nothing;
    # one thread: for a network this small, more threads only wait on each other
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = lr_find("digits", lambda p: adaptlr.AdamW(p, fused=False), seed=0)
    finally:
        torch.set_num_threads(threads)
    res.plot(out / "lr_find_digits.png")
    rows = [{"suggestion": name, "lr": f"{lr:.3g}"} for name, lr in res.suggestions.items()]
    return (
        f'<section id="lr_find"><h2>{number}. Choosing the learning rate: the LR range test</h2>'
        "<p>adaptlr.lr_find on the digits task (MLP 64-128-10, batches of 64), AdamW: the lr "
        f"grows exponentially from {res.lrs[0]:.0e} over {len(res.lrs)} steps"
        + (" until the smoothed loss diverged" if res.stopped_early else "")
        + "; the model and the optimizer are restored afterwards. The recommended suggestion "
        f"is <b>{html.escape(RECOMMENDED)}</b> ({res.suggestion:.3g}): the rule that, trained "
        "with warm-up and cosine decay, reached the target on both benchmark tasks within "
        "1.25x the steps of the best lr of a 7-point grid (docs/lr_find.md).</p>"
        + _table(rows)
        + '<img src="lr_find_digits.png" alt="LR range test on digits: loss against lr">'
        "</section>"
    )
