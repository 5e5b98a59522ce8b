"""Step-time overhead of `adaptlr.monitor.Monitor` on a 48M-parameter fp32 model (96 tensors).

Times ``optimizer.step()`` (plus ``monitor.record``) with Adam, without a monitor and with one
recording every step and every 10 steps, exact and sampled, side by side in one run. A recorded
step every 10 costs more than the others, so each figure is the median over blocks of 10 steps
of the mean step time in the block (each block after 10 untimed steps that allocate the
monitor's snapshot buffers, a one-off cost).

    python benchmarks/monitor_overhead.py [--device cpu|cuda] [--blocks 5]
        [--optimizer adaptlr|torch] [--write docs/monitor_overhead.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from adaptlr.monitor import Monitor


def make_optimizer(
    params: list[torch.nn.Parameter], which: str
) -> tuple[torch.optim.Optimizer, str]:
    """adaptlr's fused Adam (torch's if adaptlr has none or it fails on this device)."""
    if which == "adaptlr":
        try:
            import adaptlr

            opt = adaptlr.Adam(params, lr=1e-3, fused=True)
            opt.step()  # compile / check the fused path on this device now, not in the timing
            return opt, "adaptlr.Adam(fused=True)"
        except Exception as exc:  # noqa: BLE001 - fall back to torch's fused Adam
            print(f"adaptlr.Adam unavailable here ({exc!r}); using torch's", file=sys.stderr)
    opt = torch.optim.Adam(params, lr=1e-3, fused=True)
    opt.step()
    return opt, "torch.optim.Adam(fused=True)"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tensors", type=int, default=96)
    ap.add_argument("--numel", type=int, default=500_000, help="elements per tensor")
    ap.add_argument("--blocks", type=int, default=5, help="blocks of 10 timed steps")
    ap.add_argument("--write", default=None, help="append a section to this markdown file")
    ap.add_argument("--optimizer", choices=["adaptlr", "torch"], default="adaptlr")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(args.numel, device=dev)) for _ in range(args.tensors)]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt, opt_name = make_optimizer(params, args.optimizer)
    loss = torch.tensor(1.0, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    off = {"eff_lr": False}
    configs = [
        ("no monitor", None),
        ("every step", {"every": 1}),
        ("every 10 steps", {"every": 10}),
        ("every step, eff_lr=False", {"every": 1, **off}),
        ("every 10 steps, eff_lr=False", {"every": 10, **off}),
        ("every step, grad norm only", {"every": 1, "update": False, "cosine": False, **off}),
        ("every step, sample=65536, eff_lr=False", {"every": 1, "sample": 65536, **off}),
        ("every 10 steps, sample=65536, eff_lr=False", {"every": 10, "sample": 65536, **off}),
    ]
    results: dict[str, list[float]] = {name: [] for name, _ in configs}
    # Interleave the configurations block by block so that drift (other load, clocks) hits all.
    for block in range(args.blocks + 1):  # block 0 warms up (allocation, JIT, caches)
        for name, kw in configs:
            mon = Monitor(opt, **kw) if kw is not None else None
            for _ in range(10):  # untimed: the monitor allocates its snapshots here
                opt.step()
                if mon is not None:
                    mon.record(loss)
            sync()
            t0 = time.perf_counter()
            for _ in range(10):
                opt.step()
                if mon is not None:
                    mon.record(loss)
            sync()
            dt = (time.perf_counter() - t0) / 10
            if mon is not None:
                mon.close()
            if block > 0:
                results[name].append(dt)

    base = statistics.median(results["no monitor"])
    n = args.tensors * args.numel
    head = (
        f"{opt_name}, {n / 1e6:.0f}M fp32 parameters in {args.tensors} tensors, "
        f"device {dev.type}"
        + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
        + f", torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"median of {args.blocks} blocks of 10 steps"
    )
    lines = [head, "", "| configuration | ms / step | overhead |", "|---|---:|---:|"]
    for name, _ in configs:
        med = statistics.median(results[name])
        over = "" if name == "no monitor" else f"{(med / base - 1) * 100:+.1f}%"
        lines.append(f"| {name} | {med * 1e3:.2f} | {over} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        cmd = "python benchmarks/monitor_overhead.py " + " ".join(
            a for a in (argv if argv is not None else sys.argv[1:])
        )
        path = Path(args.write)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        with open(path, "a", encoding="utf-8") as f:
            if new:
                f.write(
                    "# Monitor overhead\n\nStep time of Adam with and without "
                    "`adaptlr.monitor.Monitor` attached. Written by "
                    "`benchmarks/monitor_overhead.py`.\n"
                )
            f.write(
                f"\n## {time.strftime('%Y-%m-%d')} on {platform.machine()} ({dev.type})\n\n"
                f"Command: `{cmd.strip()}`\n\n{table}\n"
            )


if __name__ == "__main__":
    main()
