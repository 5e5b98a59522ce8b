"""``adaptlr`` command line: thin argument parsing; the work is done in :mod:`adaptlr.lab`.

Unknown names and malformed specs print one line that lists what is allowed, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


class _Error(Exception):
    """A user error: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    # argparse prints usage + error on two lines; the contract is one line and exit code 2
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _Error(f"{self.prog}: {message}")


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="adaptlr", description="adaptlr: adaptive learning rates, shown.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="run every lecture reproduction, write DIR/index.html")
    demo.add_argument("--out", default="adaptlr-demo", help="output directory")

    lab = sub.add_parser("lab", help="error surfaces and optimizer runs")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True, parser_class=_Parser)
    lab_sub.add_parser("surfaces", help="list the built-in surfaces")
    run = lab_sub.add_parser("run", help="run optimizers on a surface and plot them")
    run.add_argument("--surface", default="elongated")
    run.add_argument("--optimizer", action="append", help='spec such as "adam:lr=0.1" (repeatable)')
    run.add_argument("--schedule", help='spec such as "warmup_cosine:warmup=50,total=500"')
    run.add_argument("--steps", type=int, default=500)
    run.add_argument("--start", help="start point 'x,y' (default: the surface's)")
    run.add_argument("--out", default="lab_run.png", help="figure path (PNG)")
    run.add_argument("--gif", help="also write an animated GIF here")

    sched = sub.add_parser("schedule", help="learning-rate schedules")
    sched_sub = sched.add_subparsers(dest="schedule_command", required=True, parser_class=_Parser)
    plot = sched_sub.add_parser("plot", help="plot a schedule spec")
    plot.add_argument("spec", help='e.g. "warmup_cosine:warmup=50,total=500"')
    plot.add_argument("--steps", type=int, default=500)
    plot.add_argument("--lr", type=float, default=1.0, help="peak lr if the spec has none")
    plot.add_argument("--out", default="schedule.png")

    mon = sub.add_parser("monitor", help="training diagnostics")
    mon_sub = mon.add_subparsers(dest="monitor_command", required=True, parser_class=_Parser)
    rep = mon_sub.add_parser("report", help="write a report from a monitor log")
    rep.add_argument("log", help="LOG.jsonl written by adaptlr.monitor")
    rep.add_argument("--out", default="adaptlr-report")
    return p


def _demo(args: argparse.Namespace) -> int:
    import time

    from .lab.report import write_demo

    t0 = time.perf_counter()
    index = write_demo(args.out)
    print(f"wrote {index} in {time.perf_counter() - t0:.1f} s")
    return 0


def _lab_surfaces(args: argparse.Namespace) -> int:
    from .lab.surfaces import SURFACES

    width = max(len(n) for n in SURFACES)
    for name, s in SURFACES.items():
        print(f"{name:<{width}}  {s.description}")
    return 0


def _lab_run(args: argparse.Namespace) -> int:
    from .lab.cli_support import lab_run

    if args.steps < 1:
        raise _Error("adaptlr lab run: --steps must be >= 1")
    for line in lab_run(
        surface=args.surface,
        optimizers=args.optimizer or ["adam:lr=0.1"],
        schedule=args.schedule,
        steps=args.steps,
        start=args.start,
        out=args.out,
        gif=args.gif,
    ):
        print(line)
    return 0


def _schedule_plot(args: argparse.Namespace) -> int:
    from .lab.cli_support import schedule_plot

    if args.steps < 1:
        raise _Error("adaptlr schedule plot: --steps must be >= 1")
    print(schedule_plot(args.spec, args.steps, args.out, lr=args.lr))
    return 0


def _monitor_report(args: argparse.Namespace) -> int:
    log = Path(args.log)
    if not log.is_file():
        raise _Error(f"adaptlr monitor report: no such log file: {log}")
    from . import monitor

    out = monitor.write_report(log, Path(args.out))
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``adaptlr`` console script; returns the exit code."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "demo":
            return _demo(args)
        if args.command == "lab":
            return _lab_surfaces(args) if args.lab_command == "surfaces" else _lab_run(args)
        if args.command == "schedule":
            return _schedule_plot(args)
        return _monitor_report(args)
    except _Error as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        # specs, surface and schedule names: the message already lists what is allowed
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
