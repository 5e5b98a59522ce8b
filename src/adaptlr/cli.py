"""``adaptlr`` command line: thin argument parsing; the work is done in :mod:`adaptlr.lab`.

Unknown names and malformed specs print one line that lists what is allowed, exit code 2.

Every import of the package is inside a function: the console script (``_adaptlr_cli``) runs
this module without the package's ``__init__`` (which imports torch), so that ``--help`` and
``--version`` answer at once; a module-level ``from . import ...`` here would undo that.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

#: the most steps ``lab run`` and ``schedule plot`` accept (a run keeps every step in memory)
MAX_STEPS = 10_000_000
#: the largest |coordinate| ``lab run --start`` accepts (the surfaces live near the origin)
MAX_START = 1e6


class _Error(Exception):
    """A user error: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    # argparse prints usage + error on two lines; the contract is one line and exit code 2
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _Error(f"{self.prog}: {message}")


class _Formatter(argparse.HelpFormatter):
    """``--help`` shows each option's default (where it has one) and, where an option takes
    a name from a registry (``action.names``), the names, read only when help is printed
    (the registries live in modules that import torch and matplotlib)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += f" (default: {default})"
        names = getattr(action, "names", None)
        return f"{text}; names: {', '.join(names())}" if names is not None else text


def _surface_names() -> list[str]:
    from .lab.surfaces import SURFACES

    return list(SURFACES)


def _optimizer_names() -> list[str]:
    from .lab.specs import OPTIMIZERS

    return list(OPTIMIZERS)


def _schedule_names() -> list[str]:
    from .schedules.spec import SCHEDULES

    return sorted(SCHEDULES)


def _task_names() -> list[str]:
    from .lab.tasks import TASKS

    return list(TASKS)


def _named(action: argparse.Action, names: Callable[[], list[str]]) -> None:
    action.names = names  # type: ignore[attr-defined]


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, read only when asked for
    (importing ``importlib.metadata`` is the slowest part of ``adaptlr --version``)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.update(nargs=0, default=argparse.SUPPRESS)
        super().__init__(option_strings, argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"adaptlr {_version()}")
        parser.exit()


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("adaptlr")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        from . import __version__

        return __version__


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="adaptlr", description="adaptlr: adaptive learning rates, shown.")
    p.add_argument("--version", action=_Version, help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="run every lecture reproduction, write DIR/index.html")
    demo.add_argument("--out", default="adaptlr-demo", help="output directory")

    lab = sub.add_parser("lab", help="error surfaces and optimizer runs")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True, parser_class=_Parser)
    lab_sub.add_parser("surfaces", help="list the built-in surfaces")
    run = lab_sub.add_parser("run", help="run optimizers on a surface and plot them")
    _named(run.add_argument("--surface", default="elongated", help="error surface"), _surface_names)
    _named(
        run.add_argument(
            "--optimizer",
            action="append",
            help='spec "name" or "name:key=value,..." (repeatable; default: "adam:lr=0.1")',
        ),
        _optimizer_names,
    )
    _named(
        run.add_argument(
            "--schedule", help='spec such as "warmup_cosine:warmup=50,total_steps=500"'
        ),
        _schedule_names,
    )
    run.add_argument("--steps", type=int, default=500, help="steps of each optimizer")
    run.add_argument("--start", help="start point 'x,y' (default: the surface's)")
    run.add_argument("--out", default="lab_run.png", help="figure path (PNG)")
    run.add_argument("--gif", help="also write an animated GIF here")

    sched = sub.add_parser("schedule", help="learning-rate schedules")
    sched_sub = sched.add_subparsers(dest="schedule_command", required=True, parser_class=_Parser)
    plot = sched_sub.add_parser("plot", help="plot a schedule spec")
    _named(
        plot.add_argument("spec", help='e.g. "warmup_cosine:warmup=50,total_steps=500"'),
        _schedule_names,
    )
    plot.add_argument("--steps", type=int, default=500, help="steps to plot")
    plot.add_argument("--lr", type=float, default=1.0, help="peak lr if the spec has none")
    plot.add_argument("--out", default="schedule.png")

    mon = sub.add_parser("monitor", help="training diagnostics")
    mon_sub = mon.add_subparsers(dest="monitor_command", required=True, parser_class=_Parser)
    rep = mon_sub.add_parser("report", help="write a report from a monitor log")
    rep.add_argument("log", help="LOG.jsonl written by adaptlr.monitor")
    rep.add_argument("--out", default="adaptlr-report")

    lrf = sub.add_parser("lr-find", help="LR range test on a built-in task, print suggestions")
    _named(lrf.add_argument("--task", default="digits", help="built-in task"), _task_names)
    _named(
        lrf.add_argument("--optimizer", default="adamw", help='spec such as "adam:eps=1e-6"'),
        _optimizer_names,
    )
    lrf.add_argument("--seed", type=int, default=0, help="seeds the model and the batches")
    lrf.add_argument("--out", default="lr_find.png", help="figure path (PNG)")
    return p


def _check_steps(cmd: str, steps: int) -> None:
    if not 1 <= steps <= MAX_STEPS:
        raise _Error(f"{cmd}: --steps must be between 1 and {MAX_STEPS}; got {steps}")


def _check_file_out(cmd: str, flag: str, path: str, suffixes: Sequence[str]) -> None:
    """Refuse an output file path that cannot be written, before any work is done."""
    p = Path(path)
    allowed = ", ".join(suffixes)
    if p.suffix.lower() not in suffixes:
        raise _Error(f"{cmd}: {flag} {path!r} must end in one of: {allowed}")
    if p.is_dir():
        raise _Error(f"{cmd}: {flag} {path!r} is a directory; expected a file such as out.png")
    _check_parent(cmd, flag, p.parent, path)


def _check_parent(cmd: str, flag: str, parent: Path, path: str) -> None:
    # the nearest existing ancestor must be a writable directory (the rest is created)
    anc = parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise _Error(f"{cmd}: {flag} {path!r}: {str(anc)!r} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise _Error(f"{cmd}: {flag} {path!r}: directory {str(anc)!r} is not writable")


def _check_dir_out(cmd: str, flag: str, path: str) -> None:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise _Error(f"{cmd}: {flag} {path!r} exists and is not a directory")
    _check_parent(cmd, flag, p, path)


@contextlib.contextmanager
def _writing(cmd: str, outputs: dict[str, str | None]) -> Iterator[None]:
    """Turn an ``OSError`` while writing into a one-line error naming the output flag."""
    try:
        yield
    except OSError as err:
        where = str(err.filename) if err.filename else ""
        flag = next(
            (f for f, v in outputs.items() if v and where.startswith(str(Path(v).parent))),
            " / ".join(f for f, v in outputs.items() if v),
        )
        reason = err.strerror or type(err).__name__
        raise _Error(f"{cmd}: cannot write {flag} {where!r}: {reason}") from None


def _demo(args: argparse.Namespace) -> int:
    import time

    from .lab.report import write_demo

    cmd = "adaptlr demo"
    _check_dir_out(cmd, "--out", args.out)
    with _writing(cmd, {"--out": args.out}):
        # create it now: a path that cannot be a directory fails before minutes of work
        Path(args.out).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with _writing(cmd, {"--out": args.out}):
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
    from .lab.cli_support import lab_run, parse_point

    cmd = "adaptlr lab run"
    _check_steps(cmd, args.steps)
    if args.start is not None:
        try:
            point = parse_point(args.start)
        except ValueError as err:
            raise _Error(f"{cmd}: --start: {err}") from None
        if not all(math.isfinite(v) and abs(v) <= MAX_START for v in point):
            raise _Error(
                f"{cmd}: --start {args.start!r} must be two finite numbers 'x,y' "
                f"with |x|, |y| <= {MAX_START:.0f}"
            )
    _check_file_out(cmd, "--out", args.out, _figure_suffixes())
    if args.gif:
        _check_file_out(cmd, "--gif", args.gif, (".gif",))
    with _writing(cmd, {"--out": args.out, "--gif": args.gif}):
        lines = lab_run(
            surface=args.surface,
            optimizers=args.optimizer or ["adam:lr=0.1"],
            schedule=args.schedule,
            steps=args.steps,
            start=args.start,
            out=args.out,
            gif=args.gif,
        )
    for line in lines:
        print(line)
    return 0


def _figure_suffixes() -> tuple[str, ...]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return tuple(f".{k}" for k in FigureCanvasAgg.get_supported_filetypes())


def _schedule_plot(args: argparse.Namespace) -> int:
    from .lab.cli_support import schedule_plot

    cmd = "adaptlr schedule plot"
    _check_steps(cmd, args.steps)
    _check_file_out(cmd, "--out", args.out, _figure_suffixes())
    with _writing(cmd, {"--out": args.out}):
        line = schedule_plot(args.spec, args.steps, args.out, lr=args.lr)
    print(line)
    return 0


def _lr_find(args: argparse.Namespace) -> int:
    from .lab.specs import parse_optimizer
    from .lab.tasks import get_task, lr_find

    cmd = "adaptlr lr-find"
    if args.task not in _task_names():
        raise _Error(f"{cmd}: unknown task {args.task!r}; allowed: {', '.join(_task_names())}")
    task = get_task(args.task)
    if args.seed < 0:
        raise _Error(f"{cmd}: --seed must be >= 0; got {args.seed}")
    spec = parse_optimizer(args.optimizer)
    _check_file_out(cmd, "--out", args.out, _figure_suffixes())
    result = lr_find(task, spec.build, seed=args.seed)
    with _writing(cmd, {"--out": args.out}):
        result.plot(args.out)
    print(f"{task.name}, {spec.label}, seed {args.seed}")
    for line in result.summary():
        print(line)
    print(f"wrote {args.out}")
    return 0


def _monitor_report(args: argparse.Namespace) -> int:
    cmd = "adaptlr monitor report"
    log = Path(args.log)
    if log.is_dir():
        raise _Error(f"{cmd}: {str(log)!r} is a directory; give the .jsonl log a Monitor wrote")
    if not log.is_file():
        raise _Error(f"{cmd}: no such log file: {log}")
    _check_dir_out(cmd, "--out", args.out)
    from . import monitor

    # the log reader warns once per unreadable line; the CLI says it in one line instead
    with warnings.catch_warnings(record=True) as caught, _writing(cmd, {"--out": args.out}):
        warnings.simplefilter("always")
        out = monitor.write_report(log, Path(args.out))
    if caught:
        more = f" (and {len(caught) - 1} more)" if len(caught) > 1 else ""
        print(f"warning: {str(caught[0].message).splitlines()[0]}{more}", file=sys.stderr)
    print(f"wrote {out}")
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return _demo(args)
    if args.command == "lab":
        return _lab_surfaces(args) if args.lab_command == "surfaces" else _lab_run(args)
    if args.command == "schedule":
        return _schedule_plot(args)
    if args.command == "lr-find":
        return _lr_find(args)
    return _monitor_report(args)


@contextlib.contextmanager
def _notes(cmd: str) -> Iterator[None]:
    """A deprecation (an old spec key) as one line, ``adaptlr <command>: note: ...``, not a
    warning with a source path; other warnings pass through as they are."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, FutureWarning):
                    print(f"{cmd}: note: {w.message}", file=sys.stderr)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``adaptlr`` console script; returns the exit code.

    Args:
        argv: the arguments after the program name (``["lab", "surfaces"]``); None: the
            process's, ``sys.argv[1:]``.
    """
    parser = _build_parser()
    cmd = "adaptlr"
    # one form for every error: "adaptlr <command>: <what is wrong>; <what is allowed>"
    try:
        args, extra = parser.parse_known_args(argv)
        sub = getattr(args, f"{args.command.replace('-', '_')}_command", None)
        cmd = " ".join(w for w in ("adaptlr", args.command, sub) if w)
        if extra:  # (argparse would name the top-level parser, not the command)
            raise _Error(f"{cmd}: unrecognized arguments: {' '.join(extra)}; see {cmd} --help")
        with _notes(cmd):
            return _dispatch(args)
    except _Error as err:  # (its message starts with the command already)
        print(str(err), file=sys.stderr)
        return 2
    except ValueError as err:
        # specs, surface and schedule names: the message already lists what is allowed
        print(f"{cmd}: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
