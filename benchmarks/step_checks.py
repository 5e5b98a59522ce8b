"""Where a CPU step over 10,000 small tensors spends its time: the per-tensor checks.

adaptlr's fast path checks every parameter on every step before it changes anything (its
gradient, the addresses of both, their layouts, the parameter's dtype and size: see
:func:`adaptlr.kernels.gather.gather`). With many small tensors those reads, one Python call
each, cost more than the kernel. This script times, side by side in rounds:

- torch's fused Adam step and adaptlr's Adam step, each on its own parameters;
- ``gather`` alone, the loop that makes those reads and keeps what it read;
- the reads alone, with nothing kept: ``p.grad``, then one more read per line, up to the seven
  that the check needs; the last line is a lower bound for any step that makes them in Python;
- the floor: an in-place pass over a float32 tensor moving Adam's bytes (28 per parameter).

Before each timed item a pass over a 280 MB tensor evicts the caches, as the previous step's
kernel does. Times are medians over rounds; "/ torch fused" is the median over rounds of the
ratio within a round.

    python benchmarks/step_checks.py [--tensors 10000] [--numel 1000] [--rounds 21]
        [--write docs/step_checks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

# (run as a script: this folder is on sys.path)
from step_speed import algorithms, floor_bytes, make_params

import adaptlr
from adaptlr.kernels.gather import gather

#: the reads of one parameter ``p`` and its gradient ``g``, added one per line
READS = [
    ("p.grad", "g = p.grad"),
    ("+ g.is_contiguous()", "g.is_contiguous()"),
    ("+ p.is_contiguous()", "p.is_contiguous()"),
    ("+ p.data_ptr()", "p.data_ptr()"),
    ("+ g.data_ptr()", "g.data_ptr()"),
    ("+ p.numel()", "p.numel()"),
    ("+ p.dtype", "p.dtype"),
]


def read_loops() -> list[tuple[str, Callable[[list[torch.Tensor]], None]]]:
    """One loop per prefix of :data:`READS` (generated: a function call per read would add
    its own cost to each)."""
    loops = []
    for k in range(1, len(READS) + 1):
        body = "\n".join("        " + code for _, code in READS[:k])
        ns: dict = {}
        exec(f"def reads(params):\n    for p in params:\n{body}\n", ns)  # noqa: S102
        loops.append((READS[k - 1][0], ns["reads"]))
    return loops


def run(count: int, numel: int, rounds: int) -> str:
    torch.manual_seed(0)
    ours = adaptlr.Adam(make_params(count * numel, count, "cpu"), lr=1e-3)
    theirs = torch.optim.Adam(make_params(count * numel, count, "cpu"), lr=1e-3, fused=True)
    for _ in range(2):  # state allocated, kernels compiled
        ours.step()
        theirs.step()
    group = ours.param_groups[0]
    params, expect = group["params"], ours._fast_path.last_active(group)
    adam = next(a for a in algorithms("cpu") if a.name == "Adam")
    floor = torch.randn(count * numel * floor_bytes(adam, 4) // 8)  # (read + written: 28)
    evict = torch.randn(280_000_000 // 8)
    items: list[tuple[str, Callable[[], object]]] = [
        ("torch fused Adam step", theirs.step),
        ("adaptlr Adam step", ours.step),
        ("adaptlr's check loop (`gather`)", lambda: gather(params, expect)),
    ]
    items += [(f"reads alone: {name}", lambda f=f: f(params)) for name, f in read_loops()]
    items.append(("floor: one pass over Adam's bytes", lambda: floor.mul_(1.0000001)))
    times: dict[str, list[float]] = {name: [] for name, _ in items}
    for r in range(rounds):
        order = items[r % len(items) :] + items[: r % len(items)]
        for name, fn in order:
            evict.mul_(1.0000001)
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    ref = times["torch fused Adam step"]
    lines = [
        f"Device: {platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}; "
        f"Python {platform.python_version()}; {count:,} tensors x {numel:,} fp32 parameters, "
        f"{rounds} rounds.",
        "",
        "| item | ms | / torch fused |",
        "|---|---|---|",
    ]
    for name, _ in items:
        ratio = statistics.median(a / b for a, b in zip(times[name], ref))
        lines.append(f"| {name} | {statistics.median(times[name]):.2f} | {ratio:.3f} |")
    reads = statistics.median(times[f"reads alone: {READS[-1][0]}"])
    floor_ms = statistics.median(times["floor: one pass over Adam's bytes"])
    budget = 0.2 * statistics.median(ref)
    lines += [
        "",
        f"A step 5 x faster than torch's fused one has {budget:.2f} ms; the seven reads alone "
        f"and one pass over the bytes take {reads:.2f} + {floor_ms:.2f} = "
        f"{reads + floor_ms:.2f} ms.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tensors", type=int, default=10_000)
    ap.add_argument("--numel", type=int, default=1_000)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--write", default=None, help="markdown file to write the table to")
    args = ap.parse_args()
    table = run(args.tensors, args.numel, args.rounds)
    print(table)
    if args.write:
        cmd = "python benchmarks/step_checks.py " + " ".join(sys.argv[1:])
        title, _, body = (__doc__ or "").split("\n\n    python")[0].partition("\n")
        # the docstring's reStructuredText roles and literals, as Markdown
        body = re.sub(r":\w+:`([^`]*)`", r"`\1`", body).replace("``", "`")
        text = (
            f"# {title.rstrip('.')}\n{body}\n\nMeasured with `{cmd.strip()}` (one run).\n\n"
            f"{table}\n"
        )
        Path(args.write).write_text(text)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
