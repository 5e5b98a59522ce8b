"""Time to target: how soon each way of setting the learning rate trains a task to its target.

For a task of :mod:`adaptlr.lab.tasks` and a few seeds, each :class:`Method` is trained from
each seed and measured by its steps to the target (the first evaluation that meets it), its
final and best metric, the **total steps it cost including its tuning** (a 7-point grid costs
7 runs of the budget, an LR range test its sweep), and the time of its optimizer step as a
ratio to torch's AdamW, timed side by side in the same process (:func:`step_time_ratio`).

A method is either one run at fixed settings (torch's defaults, every learning-rate-free
optimizer of adaptlr at its defaults), a grid of learning rates of which the best is kept
(the lr with the fewest median steps to target over the seeds, ties broken by the median
best metric), or the LR range test's suggestion followed by warm-up + cosine.
``benchmarks/time_to_target.py`` runs them all and writes ``docs/time_to_target.md``;
:func:`demo_section` is the short budget for ``adaptlr demo``'s report.
"""

from __future__ import annotations

import html
import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import schedules
from .._checks import Integer, fail_type
from .tasks import Task, best_metric, get_task, lr_find, train, warmup_cosine_factor

__all__ = [
    "GRID_ADAMW",
    "GRID_SCHEDULE_FREE",
    "GRID_SGD",
    "METHODS",
    "Method",
    "MethodResult",
    "Run",
    "demo_section",
    "figure",
    "grid_table",
    "run_method",
    "step_time_ratio",
    "table",
]

Build = Callable[[Iterable[nn.Parameter], float | None, int], torch.optim.Optimizer]

#: learning-rate grids, 7 points half a decade apart (AdamW's is benchmarks/lr_find_rule.py's)
GRID_ADAMW = tuple(10 ** (-4 + k / 2) for k in range(7))  # 1e-4 .. 1e-1
GRID_SGD = tuple(10 ** (-3 + k / 2) for k in range(7))  # 1e-3 .. 1
GRID_SCHEDULE_FREE = tuple(10 ** (-3.5 + k / 2) for k in range(7))  # 3.16e-4 .. 0.316
WARMUP_FRACTION = 0.05  #: of the budget, for every warm-up here (warmup_cosine_factor's)


@dataclass(frozen=True)
class Method:
    """A way of setting the learning rate.

    ``build(params, lr, steps)`` makes the optimizer (``lr`` is the grid's point, the LR
    range test's suggestion, or None for a method without one; ``steps`` is the budget);
    ``grid``: the learning rates tried (empty: one run); ``cosine``: :func:`train` multiplies
    the lr by a linear warm-up over 5% of the steps (none where ``warmup`` is False) and a
    cosine to 0 at the last step; ``lr_find``: the lr is
    the suggestion of :func:`adaptlr.lr_find` (AdamW, its defaults) on the seed's model and
    batches; ``kind``: the table's group.
    """

    name: str
    build: Build
    kind: str
    grid: tuple[float, ...] = ()
    cosine: bool = False
    lr_find: bool = False
    warmup: bool = True


def _torch_adamw(p: Iterable[nn.Parameter], lr: float | None, steps: int) -> torch.optim.Optimizer:
    return torch.optim.AdamW(p) if lr is None else torch.optim.AdamW(p, lr=lr)


def _torch_sgd(p: Iterable[nn.Parameter], lr: float | None, steps: int) -> torch.optim.Optimizer:
    # torch's defaults but momentum, which the issue asks for (torch's default is 0)
    return torch.optim.SGD(p, momentum=0.9) if lr is None else torch.optim.SGD(p, lr, 0.9)


def _adaptlr(name: str, **kwargs: Any) -> Build:
    def build(p: Iterable[nn.Parameter], lr: float | None, steps: int) -> torch.optim.Optimizer:
        import adaptlr

        cls = getattr(adaptlr, name)
        return cls(p, **kwargs) if lr is None else cls(p, lr=lr, **kwargs)

    return build


def _schedule_free_tuned(
    p: Iterable[nn.Parameter], lr: float | None, steps: int
) -> torch.optim.Optimizer:
    import adaptlr

    warmup = max(1, round(WARMUP_FRACTION * steps))
    return adaptlr.AdamWScheduleFree(p, lr=2.5e-3 if lr is None else lr, warmup_steps=warmup)


LR_FREE = (
    "Prodigy", "DAdaptAdam", "DAdaptSGD", "DAdaptAdaGrad", "DoG", "LDoG",
    "AdamWScheduleFree", "SGDScheduleFree", "RAdamScheduleFree",
)  # fmt: skip

#: every method of the benchmark, in the table's order
METHODS: dict[str, Method] = {
    "AdamW": Method("AdamW", _torch_adamw, "torch.optim, defaults"),
    "SGD": Method("SGD", _torch_sgd, "torch.optim, defaults"),
    "AdamW + cosine, tuned": Method(
        "AdamW + cosine, tuned", _torch_adamw, "tuned on a 7-point grid", GRID_ADAMW, True
    ),
    "SGD + cosine, tuned": Method(
        "SGD + cosine, tuned", _torch_sgd, "tuned on a 7-point grid", GRID_SGD, True
    ),
    "AdamWScheduleFree, tuned": Method(
        "AdamWScheduleFree, tuned", _schedule_free_tuned, "tuned on a 7-point grid",
        GRID_SCHEDULE_FREE,
    ),
    "lr_find + AdamW + cosine": Method(
        "lr_find + AdamW + cosine", _torch_adamw, "LR range test", cosine=True, lr_find=True
    ),
    **{n: Method(n, _adaptlr(n), "adaptlr, learning-rate-free, defaults") for n in LR_FREE},
    "Auto": Method("Auto", _adaptlr("Auto"), "automatic (no lr)"),
    # candidates for adaptlr.Auto: compositions of adaptlr's optimizers and schedules
    "Prodigy + cosine": Method(
        "Prodigy + cosine", _adaptlr("Prodigy"), "candidate (no lr)", cosine=True
    ),
    "Prodigy safeguarded + cosine": Method(
        "Prodigy safeguarded + cosine",
        _adaptlr("Prodigy", safeguard_warmup=True, use_bias_correction=True),
        "candidate (no lr)",
        cosine=True,
    ),
    "Prodigy safeguarded, d_coef 2, + cosine": Method(
        "Prodigy safeguarded, d_coef 2, + cosine",
        _adaptlr("Prodigy", safeguard_warmup=True, use_bias_correction=True, d_coef=2.0),
        "candidate (no lr)", cosine=True,
    ),
    "Prodigy + cosine, no warm-up": Method(
        "Prodigy + cosine, no warm-up", _adaptlr("Prodigy"), "candidate (no lr)", cosine=True,
        warmup=False,
    ),
    "Prodigy, d_coef 2, + cosine, no warm-up": Method(
        "Prodigy, d_coef 2, + cosine, no warm-up", _adaptlr("Prodigy", d_coef=2.0),
        "candidate (no lr)", cosine=True, warmup=False,
    ),
    "DAdaptAdam + cosine": Method(
        "DAdaptAdam + cosine", _adaptlr("DAdaptAdam"), "candidate (no lr)", cosine=True
    ),
}  # fmt: skip


# -- running --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One training run: its lr (None: the method's default), its curve, steps to target."""

    seed: int
    lr: float | None
    steps: int  #: the budget it trained for
    eval_steps: tuple[int, ...]
    metric: tuple[float, ...]
    steps_to_target: int | None
    diverged: bool
    extra_steps: int = 0  #: steps spent before the run (the LR range test's sweep)

    def best(self, higher_is_better: bool) -> float:
        return best_metric(self.metric, higher_is_better)

    @property
    def final(self) -> float:
        """The metric at the end of the budget (NaN where the run diverged before it)."""
        return self.metric[-1] if self.eval_steps[-1] == self.steps else math.nan

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Run:
        d = dict(d, eval_steps=tuple(d["eval_steps"]), metric=tuple(d["metric"]))
        return Run(**d)


class NotCached(KeyError):
    """A run that a read-only :class:`Cache` does not hold."""


class Cache:
    """Runs by key, kept in a JSON file as they come (None: in memory), so a benchmark can
    be resumed; `also` are further files read (not written), e.g. of a parallel process;
    `read_only`: a missing run raises :class:`NotCached` instead of being made (a step
    timing, cheap, is still measured)."""

    def __init__(
        self,
        path: str | Path | None = None,
        also: Sequence[str | Path] = (),
        read_only: bool = False,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.read_only = read_only
        self.data: dict[str, Any] = {}
        for p in [*also, *([self.path] if self.path is not None else [])]:
            if Path(p).exists():
                self.data.update(json.loads(Path(p).read_text()))

    def get(
        self, key: str, fn: Callable[[], Any], log: Callable[[str], None] | None,
        cheap: bool = False,
    ) -> Any:  # fmt: skip
        """The value at `key`, made by ``fn()`` if missing (`cheap`: even when read-only)."""
        if key not in self.data:
            if self.read_only and not cheap:
                raise NotCached(key)
            t0 = time.perf_counter()
            self.data[key] = fn()
            if log is not None:
                log(f"  {key} ({time.perf_counter() - t0:.1f} s)")
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(self.data))
                tmp.replace(self.path)
        return self.data[key]


def _train(task: Task, method: Method, lr: float | None, seed: int, steps: int) -> Run:
    schedule = None
    if method.cosine:
        schedule = (
            warmup_cosine_factor(steps, WARMUP_FRACTION)
            if method.warmup
            else schedules.cosine(1.0, total_steps=steps)
        )
    r = train(task, lambda p: method.build(p, lr, steps), steps, seed, schedule=schedule)
    return Run(seed, lr, steps, r.eval_steps, r.metric, r.steps_to_target, r.diverged)


def _sweep(task: Task, seed: int) -> dict[str, Any]:
    res = lr_find(task, lambda p: torch.optim.AdamW(p, lr=1e-7), seed=seed)
    return {"lr": float(res.suggestion), "sweep_steps": len(res.lrs)}


def step_time_ratio(
    task: str | Task, build: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    *, inner: int = 20, rounds: int = 15, seed: int = 0,
) -> float:  # fmt: skip
    """The time of ``build(params).step()`` over that of ``torch.optim.AdamW``'s.

    Both step copies of the task's model with the same fixed gradients (one backward of the
    seed's first batch), after 5 warm-up steps each (adaptlr compiles its kernels on the
    first), in `rounds` rounds of `inner` steps that alternate which goes first; the ratio is
    of the fastest rounds' times (the least disturbed by other processes on a shared
    machine). Forward and backward, the same for every method, are left out.
    """
    task = get_task(task)
    x, y = next(task.batches(seed))
    opts = []
    for make in (build, lambda p: torch.optim.AdamW(p, lr=1e-3)):
        model = task.model(seed)
        task.loss(model(x), y).backward()
        opt = make(model.parameters())
        if callable(getattr(opt, "train", None)):
            opt.train()  # type: ignore[attr-defined]
        for _ in range(5):
            opt.step()
        opts.append(opt)
    times: list[list[float]] = [[], []]
    for r in range(rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            t0 = time.perf_counter()
            for _ in range(inner):
                opts[i].step()
            times[i].append(time.perf_counter() - t0)
    return min(times[0]) / min(times[1])


@dataclass
class MethodResult:
    """A method on a task over seeds: the runs of its chosen lr and what it cost."""

    task: str
    method: str
    kind: str
    higher_is_better: bool
    steps: int  #: the budget of one run
    runs: list[Run]  #: one per seed, at the chosen lr
    tuning_runs: int  #: runs of the budget paid per seed (the grid's size, else 1)
    step_ratio: float
    grid: dict[float, list[int | None]] = field(default_factory=dict)  #: lr -> steps per seed

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    @property
    def steps_to_target(self) -> list[int | None]:
        return [r.steps_to_target for r in self.runs]

    @property
    def median_steps(self) -> float:
        """Median steps to target over seeds (inf where the median run did not reach it)."""
        return median_steps(self.steps_to_target)

    @property
    def total_steps(self) -> list[int]:
        """Steps spent per seed including the tuning: grid runs x budget, plus any sweep."""
        return [self.tuning_runs * self.steps + r.extra_steps for r in self.runs]

    def final(self) -> float:
        return float(np.median([r.final for r in self.runs]))

    def best(self) -> float:
        return float(np.median([r.best(self.higher_is_better) for r in self.runs]))


def median_steps(steps: Sequence[int | None]) -> float:
    """The median with "not reached" (None) as infinity."""
    return float(statistics.median([math.inf if s is None else s for s in steps]))


def run_method(
    task: str | Task,
    method: str | Method,
    seeds: Sequence[int] = (0, 1, 2),
    steps: int | None = None,
    *,
    cache: Cache | None = None,
    log: Callable[[str], None] | None = None,
    time_steps: bool = True,
) -> MethodResult:
    """Train `method` on `task` from each of `seeds` for `steps` (default: the task's budget).

    A grid method trains every lr of its grid from every seed and keeps the lr with the
    fewest median steps to target (ties: the better median best metric). `cache` keeps each
    run (resumable benchmarks), `log` is told of each new one; `time_steps` measures
    :func:`step_time_ratio` (NaN without).
    """
    task = get_task(task)
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"run_method: method must be one of {list(METHODS)}, got {method!r}")
        method = METHODS[method]
    elif not isinstance(method, Method):
        fail_type("run_method", "method", "a Method or a name of METHODS", method)
    steps = task.steps if steps is None else Integer(1).check("run_method", "steps", steps)
    seeds = [Integer(0).check("run_method", "seeds", s) for s in seeds]
    if not seeds:
        raise ValueError("run_method: seeds must hold at least one seed, got none")
    cache = cache if cache is not None else Cache()

    def run(lr: float | None, seed: int, extra: int = 0) -> Run:
        key = f"{task.name}/{method.name}/{'default' if lr is None else f'{lr:.6g}'}/{seed}/{steps}"
        d = cache.get(key, lambda: _train(task, method, lr, seed, steps).to_json(), log)
        return Run.from_json({**d, "extra_steps": extra})

    grid: dict[float, list[int | None]] = {}
    if method.grid:
        by_lr = {lr: [run(lr, s) for s in seeds] for lr in method.grid}
        grid = {lr: [r.steps_to_target for r in rs] for lr, rs in by_lr.items()}
        sign = -1.0 if task.higher_is_better else 1.0

        def score(lr: float) -> tuple[float, float]:
            best = np.median([r.best(task.higher_is_better) for r in by_lr[lr]])
            return median_steps(grid[lr]), sign * float(np.nan_to_num(best, nan=-sign * np.inf))

        runs = by_lr[min(method.grid, key=score)]
    elif method.lr_find:
        sweeps = [
            cache.get(f"{task.name}/lr_find/{s}", lambda s=s: _sweep(task, s), log) for s in seeds
        ]
        runs = [run(sw["lr"], s, sw["sweep_steps"]) for s, sw in zip(seeds, sweeps)]
    else:
        runs = [run(None, s) for s in seeds]
    ratio = math.nan
    if time_steps:
        lr = runs[0].lr
        ratio = cache.get(
            f"{task.name}/{method.name}/step_time",
            lambda: step_time_ratio(task, lambda p: method.build(p, lr, steps)),
            log,
            cheap=True,
        )
    return MethodResult(
        task.name, method.name, method.kind, task.higher_is_better, steps, runs,
        len(method.grid) or 1, ratio, grid,
    )  # fmt: skip


# -- the table and the figure ---------------------------------------------------------------------
def fmt_steps(s: float | None) -> str:
    return "not reached" if s is None or not math.isfinite(s) else f"{s:.0f}"


def _lr_text(r: MethodResult) -> str:
    lrs = [run.lr for run in r.runs]
    if all(lr is None for lr in lrs):
        return "defaults"
    if len(set(lrs)) == 1:
        return f"{lrs[0]:.3g}"
    return ", ".join(f"{lr:.3g}" for lr in lrs if lr is not None)


def table(results: Sequence[MethodResult]) -> str:
    """A Markdown table of `results` (one task): a row per method."""
    if not results:
        raise ValueError("table: results must hold at least one MethodResult, got none")
    r0 = results[0]
    task = get_task(r0.task)
    metric = task.metric.replace("_", " ")
    lines = [
        f"| method | lr | steps to target, median | per seed ({', '.join(map(str, r0.seeds))}) "
        f"| final {metric} | best {metric} | total steps incl. tuning | step time / AdamW |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        total = r.total_steps
        total_text = str(total[0]) if len(set(total)) == 1 else ", ".join(map(str, total))
        lines.append(
            f"| {r.method} | {_lr_text(r)} | {fmt_steps(r.median_steps)} | "
            f"{', '.join(fmt_steps(s) for s in r.steps_to_target)} | {r.final():.4g} | "
            f"{r.best():.4g} | {total_text} | {r.step_ratio:.2f} |"
        )
    return "\n".join(lines)


def grid_table(result: MethodResult) -> str:
    """A Markdown table of a tuned method's grid: steps to target per seed for each lr."""
    if not result.grid:
        raise ValueError(f"grid_table: {result.method!r} has no grid")
    chosen = result.runs[0].lr
    lines = ["| lr | steps to target per seed | median |", "|---|---|---|"]
    for lr, st in result.grid.items():
        mark = " (kept)" if lr == chosen else ""
        lines.append(
            f"| {lr:.3g}{mark} | {', '.join(map(fmt_steps, st))} | {fmt_steps(median_steps(st))} |"
        )
    return "\n".join(lines)


def _curves(r: MethodResult) -> tuple[np.ndarray, np.ndarray]:
    """Eval steps and metric per seed (columns), NaN after a run ended early."""
    longest = max(r.runs, key=lambda run: len(run.eval_steps))
    y = np.full((len(longest.eval_steps), len(r.runs)), np.nan)
    for j, run in enumerate(r.runs):
        y[: len(run.metric), j] = run.metric
    return np.asarray(longest.eval_steps), y


def figure(  # noqa: ANN201
    results: Sequence[MethodResult],
    panels: Sequence[Sequence[str]] | None = None,
    titles: Sequence[str] = (),
):
    """The validation metric over the steps, median over seeds with a min-max band, one panel
    per list of method names in `panels` (default: all in one) titled by `titles`, the target
    dashed."""
    from .plots import COLORS, legend_outside, new_figure

    panels = panels or [[r.method for r in results]]
    task = get_task(results[0].task)
    fig = new_figure(5.0 * len(panels), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    by_name = {r.method: r for r in results}
    colors = {r.method: COLORS[i % len(COLORS)] for i, r in enumerate(results)}
    styles = {r.method: ("-", "--", ":")[i // len(COLORS) % 3] for i, r in enumerate(results)}
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
    for ax, names in zip(axes, panels):
        for name in names:
            if name not in by_name:
                continue
            t, y = _curves(by_name[name])
            keep = t > 0  # log axis
            t, y = t[keep], y[keep]
            c, ls = colors[name], styles[name]
            with np.errstate(all="ignore"):
                med = np.nanmedian(y, axis=1)
                lo, hi = np.nanmin(y, axis=1), np.nanmax(y, axis=1)
            ax.plot(t, med, ls, color=c, lw=1.2, label=name)
            if y.shape[1] > 1:
                ax.fill_between(t, lo, hi, color=c, alpha=0.15, lw=0)
        ax.axhline(task.target, color="k", ls="--", lw=0.8, label=f"target {task.target:g}")
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(task.metric.replace("_", " "))
    if task.higher_is_better:
        axes[0].set_ylim(max(0.0, task.target - 0.15), 1.0)
    else:
        axes[0].set_ylim(task.target - 0.6, task.target + 1.4)
    seeds = len(results[0].runs)
    band = f"median over {seeds} seeds, band min-max" if seeds > 1 else "one seed"
    fig.suptitle(f"{task.name}: {band}", fontsize=10)
    legend_outside(fig, ncols=3)
    return fig


# -- adaptlr demo ---------------------------------------------------------------------------------
DEMO_METHODS = ("AdamW", "Prodigy", "DoG", "AdamWScheduleFree", "Auto")
DEMO_STEPS = 200


def demo_section(out: Path, number: int) -> str:
    """The report's section: digits, seed 0, 200 steps, a few methods at their defaults, the
    figure under `out` (about 6 s of one core)."""
    out = Path(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small model: a second thread only waits
    try:
        results = [
            run_method("digits", m, seeds=(0,), steps=DEMO_STEPS, time_steps=False)
            for m in DEMO_METHODS
        ]
    finally:
        torch.set_num_threads(threads)
    from .plots import save

    save(figure(results), out / "time_to_target_digits.png")
    task = get_task("digits")
    rows = "".join(
        f"<tr><td>{html.escape(r.method)}</td><td>{fmt_steps(r.median_steps)}</td>"
        f"<td>{r.final():.3f}</td></tr>"
        for r in results
    )
    return (
        f'<section id="time_to_target"><h2>{number}. Time to target: how soon each way of '
        "setting the learning rate trains</h2>"
        f"<p>The digits task (MLP 64-128-10, batches of 64), seed 0, {DEMO_STEPS} steps: the "
        f"steps until the validation accuracy first reaches {task.target:g}, with no learning "
        "rate chosen (torch's AdamW at its defaults, adaptlr's learning-rate-free optimizers, "
        "and adaptlr.Auto, the recommendation). "
        "The full benchmark, with tuned grids, three tasks and three seeds, is "
        "docs/time_to_target.md.</p>"
        f"<table><tr><th>method</th><th>steps to target</th><th>final accuracy</th></tr>{rows}"
        "</table>"
        '<img src="time_to_target_digits.png" alt="validation accuracy over the steps on '
        'digits, one curve per method">'
        "</section>"
    )
