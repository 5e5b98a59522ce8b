"""What the CLI's ``lab run`` and ``schedule plot`` do, as plain functions (testable)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
    return x, y


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

    Everything is validated before anything runs, so a bad spec costs no time.
    """
    surf = get_surface(surface)
    specs = [parse_optimizer(o) for o in optimizers]
    scheds = [parse_schedule(schedule, s.lr) if schedule else None for s in specs]
    x0 = parse_point(start) if start else surf.start
    trs = []
    for spec, sched in zip(specs, scheds):
        name = schedule.split(":")[0] if schedule else None
        o = spec.with_schedule(sched, name) if sched is not None else spec
        trs.append(run(surf, o, [x0], steps))
    fig = plots.new_figure(13.0, 4.6)
    left, right = fig.subfigures(1, 2, width_ratios=[1.0, 1.2])
    plots.contour(surf, trs, ax=left.add_subplot(), title=f"{surf.name}, {steps} steps")
    ax1, ax2 = right.subplots(2, 1, sharex=True)
    for i, tr in enumerate(trs):
        color = plots.COLORS[i % len(plots.COLORS)]
        gap = tr.gap()[:, 0]
        ax1.plot(gap.clip(1e-30), color=color, label=tr.label)
        ax2.plot(tr.grad_norm[:, 0].clip(1e-30), color=color)
    known = surf.min_value is not None
    ax1.set_ylabel("loss − min" if known else "loss")
    if known:
        ax1.set_yscale("log")
    ax2.set_yscale("log")
    ax2.set_ylabel("‖gradient‖")
    ax2.set_xlabel("step")
    ax1.legend(fontsize=7)
    path = plots.save(fig, out)
    lines = []
    for tr in trs:
        d = f", distance to minimum {tr.distance()[-1, 0]:.3g}" if surf.minima else ""
        lines.append(f"{tr.label}: final loss {tr.loss[-1, 0]:.4g}{d}")
    if gif:
        lines.append(f"wrote {plots.animate(surf, trs, gif)}")
    lines.append(f"wrote {path}")
    return lines


def schedule_plot(spec: str, steps: int, out: str | Path, lr: float = 1.0) -> str:
    """Plot the schedule ``spec`` over ``steps`` steps to ``out``; returns a report line."""
    sched = parse_schedule(spec, lr)
    path = plots.save(plots.schedules({spec: sched}, steps, title=spec), out)
    return f"wrote {path}"
