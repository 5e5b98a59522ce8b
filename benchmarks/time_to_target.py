"""Time to target: steps to each task's target, and the total cost with tuning, per method.

Trains every method of ``adaptlr.lab.time_to_target.METHODS`` on each task of
``adaptlr.lab.tasks`` (digits, charlm, digits_cnn) from each seed, prints a Markdown table per
task (steps to target, final and best metric, total steps including tuning, step time as a
ratio to torch's AdamW) and writes a figure per task (validation metric over the steps,
median over seeds with a min-max band). Runs are kept in ``--cache`` as they come, so the
command can be resumed, split over processes (``--tasks``/``--methods``/``--seeds``, each
with its own cache) and re-tabled from the caches (``--also``).

    nice -n 10 python benchmarks/time_to_target.py --seeds 0 1 2 \
        --cache /tmp/ttt.json --figures docs/time_to_target

``--lr`` trains the tuned methods at one lr instead of their grids: the lr a grid kept,
checked on seeds that did not choose it (``--seeds 3 4 5``).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from adaptlr.lab.tasks import TASKS
from adaptlr.lab.time_to_target import (
    METHODS,
    Cache,
    NotCached,
    figure,
    grid_table,
    run_method,
    table,
)

#: the figure's panels: torch and tuned references, adaptlr's learning-rate-free optimizers
#: at their defaults, the candidates for adaptlr.Auto, and Auto against the fastest ones;
#: tuned AdamW + cosine in each
TUNED = "AdamW + cosine, tuned"
PANELS = [
    [n for n, m in METHODS.items() if m.kind.startswith(("torch", "tuned", "LR range"))],
    [TUNED, *(n for n, m in METHODS.items() if "adaptlr" in m.kind)],
    [TUNED, *(n for n, m in METHODS.items() if "candidate" in m.kind)],
    [TUNED, "AdamWScheduleFree, tuned", "Prodigy", "Auto"],
]
TITLES = [
    "torch.optim, tuned, LR range test",
    "adaptlr learning-rate-free, defaults",
    "candidates",
    "adaptlr.Auto, no lr chosen",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--steps", type=int, help="the budget of every run (default: the task's)")
    ap.add_argument("--cache", help="JSON file keeping the runs as they come")
    ap.add_argument("--also", nargs="*", default=[], help="further caches to read")
    ap.add_argument("--figures", help="folder for the figures (<task>.png)")
    ap.add_argument("--no-timing", action="store_true", help="leave out the step-time ratio")
    ap.add_argument(
        "--lr",
        type=float,
        help="train each tuned method at this lr only, not its grid (a kept lr on other seeds)",
    )
    ap.add_argument(
        "--cached-only",
        action="store_true",
        help="table what the caches hold, train nothing (missing step timings are measured)",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)  # small models: one thread is the fastest, and others need the CPU
    cache = Cache(args.cache, args.also, read_only=args.cached_only)
    t0 = time.perf_counter()
    out = []
    for name in args.tasks:
        print(f"{name}:", flush=True)
        results, missing = [], []
        for m in args.methods:
            method = METHODS[m]
            if args.lr is not None and method.grid:
                method = dataclasses.replace(method, grid=(args.lr,))
            try:
                results.append(
                    run_method(
                        name,
                        method,
                        args.seeds,
                        args.steps,
                        cache=cache,
                        time_steps=not args.no_timing,
                        log=lambda s: print(s, flush=True),
                    )  # fmt: skip
                )
            except NotCached:
                missing.append(m)
        task = TASKS[name]
        out.append(f"\n### {name} (target {task.metric} {task.target:g})\n")
        if not results:
            out.append(f"(no method has every run in the caches: {', '.join(missing)})")
            continue
        out.append(table(results))
        if missing:
            out.append(f"\nnot run (not in the caches): {', '.join(missing)}")
        for r in results:
            if r.grid:
                out += [f"\n{name}, {r.method}: the grid\n", grid_table(r)]
        if args.figures:
            fig = figure(results, PANELS, TITLES)
            path = Path(args.figures) / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=100)
            out.append(f"\n![{name}]({path.name})")
    print("\n".join(out))
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
