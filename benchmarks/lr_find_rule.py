"""Which LR range test suggestion to recommend: evidence on the two benchmark tasks.

For each task (``adaptlr.lab.tasks``: digits, charlm) and seed:

(a) the grid: torch AdamW with linear warm-up (5% of the steps) + cosine to 0 over the task's
    budget, at each lr of a 7-point logarithmic grid; steps to the target, median over seeds;
(b) ``adaptlr.lr_find`` (torch AdamW, the defaults: 1e-7 to 10 in 100 steps) on the seed's
    model and batches, then each suggestion trained with the same warm-up + cosine.

Prints a Markdown table: steps to target per seed, their median, and its ratio to the grid's
best median (the issue asks for the recommended suggestion within 1.25x on both tasks).
Results are kept in ``--cache`` (JSON) as they come, so a run can be resumed or re-tabled.

    python benchmarks/lr_find_rule.py --seeds 0 1 2 --cache /tmp/lr_find_rule.json

``--part sweep`` prints, for the first seed, the suggestions of sweeps of 50, 100 and 200 steps
and the steps to target of the recommended one.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from adaptlr.lab.tasks import get_task, train, warmup_cosine_factor
from adaptlr.lab.time_to_target import GRID_ADAMW
from adaptlr.lr_finder import RECOMMENDED, SUGGESTIONS, suggest

GRID = list(GRID_ADAMW)  # 1e-4 .. 1e-1, half a decade apart (time_to_target's grid)
NOT_REACHED = math.inf
SWEEP_STEPS = 100  # lr_find's default


def adamw(lr: float):  # noqa: ANN201
    return lambda params: torch.optim.AdamW(params, lr=lr)


def steps_to_target(task_name: str, lr: float, seed: int) -> float:
    task = get_task(task_name)
    run = train(
        task, adamw(lr), seed=seed, schedule=warmup_cosine_factor(task.steps), stop_at_target=True
    )
    return NOT_REACHED if run.steps_to_target is None else float(run.steps_to_target)


def lr_find_curve(task_name: str, seed: int, steps: int = SWEEP_STEPS) -> dict[str, list[float]]:
    """The seed's sweep (its curve, so that any rule can be read from it again)."""
    from adaptlr.lab.tasks import lr_find

    res = lr_find(task_name, adamw(1e-7), seed=seed, num_steps=steps)
    return {"lrs": list(res.lrs), "smoothed": list(res.smoothed)}


class Cache:
    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.data: dict[str, Any] = {}
        if self.path and self.path.exists():
            self.data = json.loads(self.path.read_text())

    def get(self, key: str, fn, *args):  # noqa: ANN001, ANN002, ANN201
        if key not in self.data:
            t0 = time.perf_counter()
            self.data[key] = fn(*args)
            value = self.data[key]
            shown = f"a curve of {len(value['lrs'])} points" if isinstance(value, dict) else value
            print(f"  {key}: {shown} ({time.perf_counter() - t0:.1f} s)", flush=True)
            if self.path:
                self.path.write_text(json.dumps(self.data, indent=1))
        return self.data[key]


def fmt(x: float) -> str:
    return "not reached" if x == NOT_REACHED else f"{x:.0f}"


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def sweep_lengths(name: str, seed: int, cache: Cache) -> list[str]:
    """The suggestions of sweeps of 50, 100 and 200 steps, and the recommended one trained."""
    lines = [f"\n### {name}, seed {seed}: by sweep length\n"]
    lines.append(f"| num_steps | {' | '.join(SUGGESTIONS)} | {RECOMMENDED}: steps to target |")
    lines.append("|---|" + "---|" * (len(SUGGESTIONS) + 1))
    for n in (50, SWEEP_STEPS, 200):
        key = f"{name}/lr_find/{seed}" + ("" if n == SWEEP_STEPS else f"/n{n}")
        c = cache.get(key, lr_find_curve, name, seed, n)
        sg = suggest(c["lrs"], c["smoothed"], n)
        lr = sg[RECOMMENDED]
        st = cache.get(f"{name}/run/{seed}/{lr:.6g}", steps_to_target, name, lr, seed)
        lines.append(f"| {n} | {' | '.join(f'{sg[r]:.3g}' for r in SUGGESTIONS)} | {fmt(st)} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["digits", "charlm"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--part", choices=["grid", "rules", "all", "sweep"], default="all")
    ap.add_argument("--rules", nargs="+", default=list(SUGGESTIONS), choices=list(SUGGESTIONS))
    ap.add_argument("--cache", help="JSON file keeping results as they come")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cache = Cache(args.cache)
    lines = []
    if args.part == "sweep":
        for name in args.tasks:
            lines += sweep_lengths(name, args.seeds[0], cache)
        print("\n".join(lines))
        return
    for name in args.tasks:
        print(f"{name}:", flush=True)
        grid: dict[float, list[float]] = {}
        if args.part in ("grid", "all"):
            for lr in GRID:
                grid[lr] = [
                    cache.get(f"{name}/grid/{lr:.3g}/{s}", steps_to_target, name, lr, s)
                    for s in args.seeds
                ]
        best_lr, best = min(
            ((lr, median(v)) for lr, v in grid.items()), key=lambda t: t[1], default=(0, 0)
        )
        rows = [
            (f"grid lr {lr:.3g}", [lr] * len(args.seeds), v, median(v)) for lr, v in grid.items()
        ]
        if args.part in ("rules", "all"):
            curves = [cache.get(f"{name}/lr_find/{s}", lr_find_curve, name, s) for s in args.seeds]
            sugg = [suggest(c["lrs"], c["smoothed"], SWEEP_STEPS) for c in curves]
            for rule in args.rules:
                lrs = [sg[rule] for sg in sugg]
                st = [
                    cache.get(f"{name}/run/{s}/{lr:.6g}", steps_to_target, name, lr, s)
                    for s, lr in zip(args.seeds, lrs)
                ]
                mark = " (recommended)" if rule == RECOMMENDED else ""
                rows.append((f"lr_find {rule}{mark}", lrs, st, median(st)))
        lines.append(f"\n### {name}\n")
        lines.append(
            "| setting | lr per seed | steps to target per seed | median | ratio to grid best |"
        )
        lines.append("|---|---|---|---|---|")
        for label, lrs, st, med in rows:
            ratio = med / best if best and math.isfinite(best) else math.nan
            lines.append(
                f"| {label} | {', '.join(f'{x:.3g}' for x in lrs)} | "
                f"{', '.join(map(fmt, st))} | {fmt(med)} | "
                f"{'' if math.isnan(ratio) else f'{ratio:.2f}'} |"
            )
        if best:
            lines.append(f"\ngrid best: lr {best_lr:.3g}, median {fmt(best)} steps")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
