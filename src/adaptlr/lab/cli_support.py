"""What the CLI's ``lab run`` and ``schedule plot`` do, as plain functions (testable)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import plots
from .runs import run
from .specs import parse_optimizer, parse_schedule
from .surfaces import get_surface

__all__ = ["lab_run", "schedule_plot", "parse_point"]


def parse_point(text: str) -> tuple[float, float]:
    """``"x,y"`` -> ``(x, y)``; ``ValueError`` with the expected form otherwise."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"bad start point {text!r}; expected 'x,y', e.g. '-1.5,2'") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"bad start point {text!r}; both coordinates must be finite")
    return x, y


#: curves are clipped into this range so that log-axis ticks stay computable
_CURVE_MAX = 1e100


def _plottable(y: np.ndarray, log: bool) -> np.ndarray:
    """``y`` for a curve: non-finite values become gaps, huge ones are clipped."""
    y = np.array(y, dtype=np.float64)
    y[~np.isfinite(y)] = np.nan
    return np.clip(y, 1e-30 if log else -_CURVE_MAX, _CURVE_MAX)


def _diverged(tr) -> bool:
    return not (np.isfinite(tr.loss).all() and np.isfinite(tr.params).all()) or bool(
        (np.abs(tr.loss) > _CURVE_MAX).any()
    )


def _switch(opt) -> tuple[int, float]:
    """SWATS's switch: the step after which the first group took SGD steps (0: none or not
    a switching optimizer) and the SGD step size, from the group keys it keeps them in."""
    group = opt.param_groups[0]
    return int(group.get("switch_step", 0)), float(group.get("sgd_lr", 0.0))


def lab_run(
    surface: str,
    optimizers: Sequence[str],
    schedule: str | None,
    steps: int,
    start: str | None,
    out: str | Path,
    gif: str | Path | None = None,
) -> list[str]:
    """Run each optimizer spec on the named surface; save contour + curves; report lines.

    Everything is validated before anything runs, so a bad spec costs no time. An optimizer
    that switches (SWATS) has its switch marked on the path (a diamond) and named in its line.
    """
    surf = get_surface(surface)
    specs = [parse_optimizer(o) for o in optimizers]
    scheds = [parse_schedule(schedule, s.lr) if schedule else None for s in specs]
    x0 = parse_point(start) if start else surf.start
    trs, opts = [], []
    for spec, sched in zip(specs, scheds):
        name = schedule.split(":")[0] if schedule else None
        o = spec.with_schedule(sched, name) if sched is not None else spec
        built: list = []  # the optimizer the run used: what it adds is read from its state

        def make(params, o=o, built=built):
            built.append(o.build(params))
            return built[-1]

        trs.append(run(surf, make, [x0], steps, label=o.label, batch=True))
        opts.append(built[-1])
    fig = plots.new_figure(13.0, 4.6)
    left, right = fig.subfigures(1, 2, width_ratios=[1.0, 1.2])
    diverged = [tr.label for tr in trs if _diverged(tr)]
    title = f"{surf.name}, {steps} steps"
    if diverged:
        title += f"\ndiverged (curves clipped): {', '.join(diverged)}"
    ax0 = left.add_subplot()
    plots.contour(surf, trs, ax=ax0, title=title)
    switches = [_switch(opt) for opt in opts]
    for i, (tr, (k, _)) in enumerate(zip(trs, switches)):
        if k:  # SWATS: the point after which it took SGD steps
            color = plots.COLORS[i % len(plots.COLORS)]
            ax0.plot(*tr.params[k, 0], "D", color="w", mec=color, mew=1.5, ms=8, zorder=6)
    ax1, ax2 = right.subplots(2, 1, sharex=True)
    known = surf.min_value is not None
    gaps = [_plottable(tr.gap()[:, 0], log=known) for tr in trs]
    norms = [_plottable(tr.grad_norm[:, 0], log=True) for tr in trs]
    for i, tr in enumerate(trs):
        color = plots.COLORS[i % len(plots.COLORS)]
        ax1.plot(gaps[i], color=color, label=tr.label)
        ax2.plot(norms[i], color=color)
    ax1.set_ylabel("loss − min" if known else "loss")
    # a log axis needs at least one finite value (an all-NaN curve: the run blew up at once)
    if known and any(np.isfinite(g).any() for g in gaps):
        ax1.set_yscale("log")
    if any(np.isfinite(n).any() for n in norms):
        ax2.set_yscale("log")
    ax2.set_ylabel("‖gradient‖")
    ax2.set_xlabel("step")
    ax1.legend(fontsize=7)
    path = plots.save(fig, out)
    lines = []
    for tr, (k, sgd_lr) in zip(trs, switches):
        d = f", distance to minimum {tr.distance()[-1, 0]:.3g}" if surf.minima else ""
        note = " (diverged)" if tr.label in diverged else ""
        if k:
            note += (
                f", switched to SGD after step {k} (a diamond on the path), step size {sgd_lr:.4g}"
            )
        lines.append(f"{tr.label}: final loss {tr.loss[-1, 0]:.4g}{d}{note}")
    if gif:
        lines.append(f"wrote {plots.animate(surf, trs, gif)}")
    lines.append(f"wrote {path}")
    return lines


def schedule_plot(spec: str, steps: int, out: str | Path, lr: float = 1.0) -> str:
    """Plot the schedule ``spec`` over ``steps`` steps to ``out``; returns a report line."""
    sched = parse_schedule(spec, lr)
    path = plots.save(plots.schedules({spec: sched}, steps, title=spec), out)
    return f"wrote {path}"
