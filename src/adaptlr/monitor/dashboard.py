"""Dashboard figure of a monitored run: loss, gradient norm, effective learning rate, cosine,
with the diagnosis of each window shaded behind.

matplotlib is imported lazily (it is an optional dependency) and used through its object API
with the Agg canvas, so no global backend is switched and no window ever opens.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .diagnosis import KINDS, Diagnosis, diagnose_records
from .log import Run, load_log, split_runs

if TYPE_CHECKING:
    from .monitor import Monitor

KIND_COLORS = {
    "progressing": "#4caf50",
    "crawling": "#fdd835",  # yellow: moving, but too slowly to arrive (not healthy progress)
    "critical_point": "#2196f3",
    "oscillating": "#ff9800",
    "diverging": "#e53935",
    "bursting": "#9c27b0",
}


def _runs(source: Any) -> list[Run]:
    from .monitor import Monitor

    if isinstance(source, Monitor):
        recs = source.records
    elif isinstance(source, (str, os.PathLike)):
        recs = load_log(source)
    else:
        recs = list(source)
    return split_runs(recs)


def window_diagnoses(
    records: list[dict[str, Any]], window: int = 50
) -> list[tuple[int, int, Diagnosis]]:
    """Diagnose consecutive windows of `window` records: ``(first_step, last_step, diagnosis)``.

    Each window is judged with all earlier records available (the gradient's "small" is relative
    to the largest norm seen so far), as `Monitor.diagnose` would have judged it at that time.
    """
    steps = [r for r in records if r.get("type", "step") == "step"]
    out = []
    n = len(steps)
    if n < 3:
        return out
    window = max(3, min(window, n))
    for end in range(window, n + 1, window):
        d = diagnose_records(steps[:end], window)
        out.append((steps[end - window]["step"], steps[end - 1]["step"], d))
    if n % window >= 3:  # a last, shorter window
        d = diagnose_records(steps, n % window)
        out.append((steps[n - n % window]["step"], steps[-1]["step"], d))
    return out


def _series(
    recs: list[dict[str, Any]], key: str, positive: bool = False
) -> tuple[list[int], list[float]]:
    """Steps and finite values of `key`; `positive`: only values > 0 (for a log axis).

    On a log axis a 0 (Adam's first update) is left out: a floor would stretch the axis
    over thirty decades and squash every other value into a line.
    """
    xs, ys = [], []
    for r in recs:
        v = r.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 or not positive):
            xs.append(r["step"])
            ys.append(float(v))
    return xs, ys


def plot_dashboard(
    source: Monitor | list[dict[str, Any]] | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    window: int = 50,
    title: str | None = None,
) -> Path:
    """Draw the dashboard of a run to a PNG and return its path.

    Args:
        source: a `Monitor`, its records, or the path of its JSON Lines log.
        path: the PNG to write (its folder is created).
        window: records per diagnosis window (the shaded bands).
        title: the figure's title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    runs = _runs(source)
    recs = runs[-1].steps if runs else []  # the bands and the η/σ panel: the last run
    many = len(runs) > 1
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # 11 inches at 100 dpi: the report's full width, legends to the right of the data
    fig = Figure(figsize=(11, 9.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 1, sharex=True)
    ax_loss, ax_grad, ax_lr, ax_cos = axes

    def draw(ax: Any, key: str, log: bool = False, label: str | None = None, **kw: Any):
        """One line per run (a run restarted from step 0 is its own line, never a jump)."""
        every: list[float] = []
        for i, run in enumerate(runs):
            xs, ys = _series(run.steps, key, positive=log)
            name = label
            if many:
                name = f"{label + ', ' if label else ''}{run.label} ({run.span})"
            if ys:
                ax.plot(xs, ys, ls=("-", "--", ":", "-.")[i % 4], label=name, **kw)
            every += ys
        return every

    ys = draw(ax_loss, "loss", color="black", lw=1)
    if ys and min(ys) > 0 and max(ys) / min(ys) > 20:
        ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")

    draw(ax_grad, "grad_norm", True, color="tab:red", lw=1, label=r"gradient $\|g_t\|$")
    draw(ax_grad, "update_norm", True, color="tab:blue", lw=1, label=r"update $\|\Delta\theta_t\|$")
    ax_grad.set_yscale("log")
    ax_grad.set_ylabel("norm (log)")
    ax_grad.legend(**_OUTSIDE)

    _plot_eff_lr(ax_lr, recs)

    draw(ax_cos, "cos", color="tab:green", lw=0.8)
    ax_cos.axhline(0, color="grey", lw=0.5)
    ax_cos.set_ylim(-1.05, 1.05)
    ax_cos.set_ylabel(r"$\cos(g_t, g_{t-1})$")
    ax_cos.set_xlabel("step $t$")

    bands = window_diagnoses(recs, window)
    seen = set()
    for first, last, d in bands:
        seen.add(d.kind)
        for ax in axes:
            ax.axvspan(first, last, color=KIND_COLORS[d.kind], alpha=0.12, lw=0)
    if seen:
        handles = [Patch(color=KIND_COLORS[k], alpha=0.4, label=k) for k in KINDS if k in seen]
        if many:  # the runs' lines, then the bands (drawn for the last run)
            handles = ax_loss.get_legend_handles_labels()[0] + handles
        name = f"diagnosis ({runs[-1].label})" if many else "diagnosis"
        ax_loss.legend(handles=handles, title=name, **_OUTSIDE)
    if title is None and bands:
        title = f"last window: {bands[-1][2].kind}"
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return path


#: a legend to the right of its axes, never over the data (constrained layout makes room)
_OUTSIDE: dict[str, Any] = {
    "loc": "upper left",
    "bbox_to_anchor": (1.01, 1.0),
    "fontsize": 8,
    "borderaxespad": 0.0,
}


def _plot_eff_lr(ax: Any, recs: list[dict[str, Any]]) -> None:
    """Effective learning rate percentiles of group 0 (bands), or the scheduled lr if absent."""
    rows = [
        (r["step"], r["eff_lr"][0])
        for r in recs
        if r.get("eff_lr") and isinstance(r["eff_lr"][0], dict) and r["eff_lr"][0]
    ]
    ax.set_ylabel(r"$\eta/\sigma$")
    if rows:
        keys = sorted(rows[0][1], key=lambda k: float(k[1:]))
        steps = [s for s, _ in rows]

        def col(k: str) -> list[float]:
            # non-positive (Adam's first step, before any sigma) -> NaN: left off the log axis
            vals = (float(e.get(k, math.nan)) for _, e in rows)
            return [v if v > 0 else math.nan for v in vals]

        lo, hi = keys[0], keys[-1]
        ax.fill_between(steps, col(lo), col(hi), color="tab:purple", alpha=0.2, label=f"{lo}-{hi}")
        if len(keys) >= 4:
            ax.fill_between(
                steps, col(keys[1]), col(keys[-2]), color="tab:purple", alpha=0.3,
                label=f"{keys[1]}-{keys[-2]}",
            )  # fmt: skip
        mid = keys[len(keys) // 2]
        ax.plot(steps, col(mid), color="tab:purple", lw=1, label=mid)
        ax.set_yscale("log")
        ax.legend(title="percentiles", **_OUTSIDE)
        ax.set_ylabel(r"$\eta/\sigma$ (log)")
        return
    xs, ys = [], []
    for r in recs:
        lr = (r.get("lr") or [None])[0]
        if isinstance(lr, (int, float)) and math.isfinite(lr):
            xs.append(r["step"])
            ys.append(lr)
    if ys:
        ax.plot(xs, ys, color="tab:purple", lw=1)
    ax.set_ylabel("learning rate")
    # above the panel, not over its line
    ax.set_title("not adaptive (or no effective_lr()): learning rate shown", loc="left", fontsize=8)


def write_report(
    log_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], window: int = 50
) -> Path:
    """Redraw a run's dashboard from its log into `out_dir` (``dashboard.png`` and
    ``diagnosis.txt`` with the last window's diagnosis); returns the PNG's path.

    A log holding several runs (`split_runs`: a run resumed with the monitor's state is one
    run) is drawn with one line per run, labelled, and ``diagnosis.txt`` diagnoses each run
    on its own records, a paragraph per run headed by its label and steps.

    This is what ``adaptlr monitor report LOG.jsonl --out DIR`` runs.

    Args:
        log_path: the ``.jsonl`` log a :class:`Monitor` wrote (str or path-like).
        out_dir: the directory to write into (str or path-like); created if missing.
        window: records per diagnosis: the last ``window`` records of each run are diagnosed
            and the dashboard's bands are this many records wide (default 50); an int.
    """
    recs = load_log(log_path)
    runs = split_runs(recs)
    if not runs:
        raise ValueError(f"{log_path}: no step records to report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for run in runs:
        d = diagnose_records(run.steps, window)
        head = f"{run.label} ({run.span}"
        if run.resumed_at:
            head += ", resumed at step " + ", ".join(str(s) for s in run.resumed_at)
        if run.superseded:
            head += f", {run.superseded} records superseded by a resume"
        lines.append(f"{head}): {d}" if len(runs) > 1 else str(d))
    name = runs[-1].meta.get("optimizer", "run")
    if len(runs) > 1:
        name = f"{name}, {runs[-1].label} of {len(runs)}"
    png = plot_dashboard(recs, out / "dashboard.png", window=window, title=f"{name}: {d.kind}")
    (out / "diagnosis.txt").write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    return png
