"""What writing hyperparameters every step (a torch scheduler's job) adds to an adaptlr step.

Side by side in one process: the same optimizer and parameters stepped plain (twice, two
optimizers over two copies of the parameters: their difference is the noise); with a
CosineAnnealingLR built and never stepped (torch's wrapper around ``optimizer.step`` alone,
which every scheduler installs); with a new
``group["lr"]`` written after every step by a bare assignment; with ``lr``, ``betas``, ``eps``
and ``weight_decay`` all written after every step; with
``torch.optim.lr_scheduler.CosineAnnealingLR`` and with ``OneCycleLR`` (which cycles ``betas``
too); and with an adaptlr schedule given as ``lr`` (``group["lr_schedule"]``), which the chain
evaluates itself; in interleaved rounds, so all see the same machine state. Reports the median
time of ``optimizer.step()`` alone per kind and its ratio to the plain step, and, for the torch
schedulers, the time of ``scheduler.step()`` (their own Python, the same for torch's
optimizers).

    python benchmarks/scheduler_overhead.py [--rounds 15] [--steps 200] [--out docs/FILE.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

import adaptlr
from adaptlr import schedules

SHAPES = {
    "1 x 10,000": [(10_000,)],
    "100 x 1,000": [(1_000,)] * 100,
}


def make(shapes: list[tuple[int, ...]]) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(*s, generator=gen)) for s in shapes]
    for p in params:
        p.grad = torch.randn(*p.shape, generator=gen) * 1e-3
    return params


KINDS = [
    "plain", "plain again", "lr written", "all written", "wrapped", "CosineAnnealingLR",
    "OneCycleLR", "schedule",
]  # fmt: skip


def runner(kind: str, shapes: list[tuple[int, ...]], path: str) -> Callable[[int], float]:
    """A function that runs ``steps`` steps of ``kind`` and returns the seconds in ``step()``.

    ``path``: adaptlr's ``"fused"`` or ``"reference"`` step, or ``"torch fused"``
    (``torch.optim.AdamW(fused=True)``, the control: what the same schedulers cost torch).
    """
    params = make(shapes)
    if path == "torch fused":
        opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=1e-3, fused=True)
    elif kind == "schedule":
        lr = schedules.cosine(1e-3, total_steps=10**9)
        opt = adaptlr.AdamW(params, lr=lr, fused=path == "fused" and None)
    else:
        opt = adaptlr.AdamW(params, lr=1e-3, fused=path == "fused" and None)
    sched: torch.optim.lr_scheduler.LRScheduler | None = None
    if kind == "wrapped":  # what building any LRScheduler does to optimizer.step, alone
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10**9)
    if kind == "CosineAnnealingLR":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10**9)
    elif kind == "OneCycleLR":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=10**9)
    group = opt.param_groups[0]

    def run(steps: int) -> float:
        inside = 0.0
        for i in range(steps):
            t0 = time.perf_counter()
            opt.step()
            inside += time.perf_counter() - t0
            if sched is not None:
                sched.step()
            elif kind == "lr written":  # what any scheduler does, without its own Python
                group["lr"] = group["lr"] * 0.9999
            elif kind == "all written":
                group["lr"] = group["lr"] * 0.9999
                group["betas"] = (0.85 + 0.1 * (i % 2), 0.999 - 1e-4 * (i % 3))
                group["eps"] = 1e-8 * (1 + i % 2)
                group["weight_decay"] = 0.01 + 0.001 * (i % 5)
        return inside

    run(3)  # compile and build outside the timing
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    lines = [
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; AdamW; median over "
        f"{args.rounds} rounds of {args.steps} steps, the kinds interleaved in each round; "
        f"us per `optimizer.step()` and its ratio to the plain step; for the torch schedulers "
        f"also us per `scheduler.step()`",
        "",
        "| parameters | path | plain | plain again | ratio | lr written | ratio "
        "| lr, betas, eps, wd written | ratio | scheduler built, never stepped | ratio "
        "| CosineAnnealingLR | ratio | its step | OneCycleLR | ratio | its step "
        "| adaptlr schedule | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, shapes in SHAPES.items():
        for path in ("fused", "reference", "torch fused"):
            kinds = [k for k in KINDS if not (path == "torch fused" and k == "schedule")]
            runs = {k: runner(k, shapes, path) for k in kinds}
            inside: dict[str, list[float]] = {k: [] for k in kinds}
            total: dict[str, list[float]] = {k: [] for k in kinds}
            for _ in range(args.rounds):
                for k in kinds:
                    t0 = time.perf_counter()
                    inside[k].append(runs[k](args.steps) / args.steps * 1e6)
                    total[k].append((time.perf_counter() - t0) / args.steps * 1e6)
            med = {k: statistics.median(v) for k, v in inside.items()}
            own = {k: statistics.median(total[k]) - med[k] for k in kinds}
            cells = []
            for k in KINDS[1:]:
                if k not in med:
                    cells.append("— | —")
                    continue
                cells.append(f"{med[k]:.1f} | {med[k] / med['plain']:.3f}")
                if k in ("CosineAnnealingLR", "OneCycleLR"):
                    cells.append(f"{own[k]:.1f}")
            lines.append(f"| {label} | {path} | {med['plain']:.1f} | {' | '.join(cells)} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            command = " ".join(["python benchmarks/scheduler_overhead.py", *(argv or sys.argv[1:])])
            f.write(f"```\n{command}\n```\n\n")
            f.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
