"""What a torch scheduler that writes ``lr`` every step adds to an adaptlr step.

Side by side in one process: the same optimizer and parameters stepped plain; with a new
``group["lr"]`` written after every step by a bare assignment (adaptlr's share of any
scheduler's cost); with ``torch.optim.lr_scheduler.CosineAnnealingLR`` (the same write, plus
the scheduler's own Python); and with an adaptlr schedule given as ``lr``
(``group["lr_schedule"]``), which the chain evaluates itself; in interleaved rounds, so all see
the same machine state. Reports the median
time per step of each and its ratio to the plain step.

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


def make(shapes: list[tuple[int, ...]], fused: bool | None) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(*s, generator=gen)) for s in shapes]
    for p in params:
        p.grad = torch.randn(*p.shape, generator=gen) * 1e-3
    return params


def runner(kind: str, shapes: list[tuple[int, ...]], fused: bool | None) -> Callable[[int], None]:
    params = make(shapes, fused)
    if kind == "adaptlr schedule":
        opt = adaptlr.AdamW(params, lr=schedules.cosine(1e-3, total_steps=10**9), fused=fused)
    else:
        opt = adaptlr.AdamW(params, lr=1e-3, fused=fused)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10**9)
        if kind == "CosineAnnealingLR"
        else None
    )
    group = opt.param_groups[0]

    def run(steps: int) -> None:
        for _ in range(steps):
            opt.step()
            if sched is not None:
                sched.step()
            elif kind == "lr written":  # what any scheduler does, without its own Python
                group["lr"] = group["lr"] * 0.9999

    run(3)  # compile and build outside the timing
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    kinds = ["plain", "lr written", "CosineAnnealingLR", "adaptlr schedule"]
    lines = [
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; AdamW; median of "
        f"{args.rounds} rounds of {args.steps} steps, the three kinds interleaved in each round",
        "",
        "| parameters | path | plain (us/step) | lr written | ratio | CosineAnnealingLR | ratio "
        "| adaptlr schedule | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, shapes in SHAPES.items():
        for fused, path in ((None, "fused"), (False, "reference")):
            runs = {k: runner(k, shapes, fused) for k in kinds}
            times: dict[str, list[float]] = {k: [] for k in kinds}
            for _ in range(args.rounds):
                for k in kinds:
                    t0 = time.perf_counter()
                    runs[k](args.steps)
                    times[k].append((time.perf_counter() - t0) / args.steps * 1e6)
            med = {k: statistics.median(v) for k, v in times.items()}
            cells = " | ".join(f"{med[k]:.1f} | {med[k] / med['plain']:.3f}" for k in kinds[1:])
            lines.append(f"| {label} | {path} | {med['plain']:.1f} | {cells} |")
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
