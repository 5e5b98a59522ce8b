"""Step-time overhead of `adaptlr.monitor.Monitor` on a 48M-parameter fp32 model (96 tensors).

Times ``optimizer.step()`` (plus ``monitor.record``) with Adam, without a monitor and with one
recording every step and every 10 steps, side by side in one run. A recorded step every 10
costs more than the others, so a figure is the mean step time over a block of 10 steps (after
2 untimed steps that let the monitor allocate what it keeps, a one-off cost; a block of 10
then holds one recorded step and the step before it, which measures too, for the cosine).

These machines are shared and their memory bandwidth drifts by tens of percent within
seconds, so every monitored block is timed between two unmonitored ones, and the overhead
reported is the median over rounds of its ratio to their mean (the "ms / step" column is the
median of the blocks themselves, for scale).

    python benchmarks/monitor_overhead.py [--device cpu|cuda] [--rounds 30]
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
    ap.add_argument("--rounds", type=int, default=30, help="rounds of paired 10-step blocks")
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
        ("every step", {"every": 1}),
        ("every 10 steps", {"every": 10}),
        ("every step, eff_lr=False", {"every": 1, **off}),
        ("every 10 steps, eff_lr=False", {"every": 10, **off}),
        ("every step, grad norm only", {"every": 1, "update": False, "cosine": False, **off}),
    ]
    if args.optimizer == "torch":  # adaptlr's optimizers measure themselves: no sampling
        configs += [
            ("every step, sample=65536, eff_lr=False", {"every": 1, "sample": 65536, **off}),
            ("every 10 steps, sample=65536, eff_lr=False", {"every": 10, "sample": 65536, **off}),
        ]

    # Where a monitored step's time goes (adaptlr on CPU): the step kernel is timed on its own
    # by wrapping the launch, so that the Python around it (the monitor's, and the step's own)
    # is measured to the microsecond, apart from the kernel's share, which moves with this
    # machine's bandwidth from one second to the next.
    kernel_time = [0.0]
    split = args.optimizer == "adaptlr" and dev.type == "cpu" and "adaptlr" in opt_name
    if split:
        from adaptlr.kernels import launch as kernel_launch

        launch = kernel_launch.run_kernel

        def timed_launch(*a: object, **k: object) -> float:
            t = time.perf_counter()
            try:
                return launch(*a, **k)  # type: ignore[arg-type]
            finally:
                kernel_time[0] += time.perf_counter() - t

        kernel_launch.run_kernel = timed_launch  # type: ignore[assignment]

    def block(kw: dict | None) -> tuple[float, float]:
        mon = Monitor(opt, **kw) if kw is not None else None
        for _ in range(2):  # untimed: the monitor allocates what it keeps here
            opt.step()
            if mon is not None:
                mon.record(loss)
        sync()
        kernel_time[0] = 0.0
        t0 = time.perf_counter()
        for _ in range(10):
            opt.step()
            if mon is not None:
                mon.record(loss)
        sync()
        dt = (time.perf_counter() - t0) / 10
        if mon is not None:
            mon.close()
        return dt, kernel_time[0] / 10

    base: list[float] = []
    times: dict[str, list[float]] = {name: [] for name, _ in configs}
    ratios: dict[str, list[float]] = {name: [] for name, _ in configs}
    outside: dict[str, list[float]] = {name: [] for name, _ in configs}
    kernel: dict[str, list[float]] = {name: [] for name, _ in configs}
    for r in range(args.rounds + 1):  # round 0 warms up (allocation, JIT, caches)
        for name, kw in configs:
            (before, kb), (monitored, km), (after, ka) = block(None), block(kw), block(None)
            if r > 0:
                base += [before, after]
                times[name].append(monitored)
                ratios[name].append(monitored / ((before + after) / 2))
                if split:
                    outside[name].append((monitored - km) - ((before - kb) + (after - ka)) / 2)
                    kernel[name].append(km / ((kb + ka) / 2))

    n = args.tensors * args.numel
    head = (
        f"{opt_name}, {n / 1e6:.0f}M fp32 parameters in {args.tensors} tensors, "
        f"device {dev.type}"
        + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
        + f", torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.rounds} rounds of 10-step blocks; overhead = median over rounds of "
        f"(monitored block / mean of the unmonitored blocks just before and after it) - 1"
        + (
            "; the last two columns split it: the extra time per step outside the step kernel "
            "(the monitor's Python and the step's, median over rounds) and the step kernel's "
            "time against the unmonitored blocks' (median ratio)"
            if split
            else ""
        )
    )
    extra_head = " outside the kernel, extra ms / step | kernel time ratio |" if split else ""
    lines = [
        head,
        "",
        "| configuration | ms / step | overhead (median) | overhead (quartiles) |" + extra_head,
        "|---|---:|---:|---:|" + ("---:|---:|" if split else ""),
        f"| no monitor | {statistics.median(base) * 1e3:.2f} |  |  |" + ("  |  |" if split else ""),
    ]
    for name, _ in configs:
        q1, med, q3 = statistics.quantiles(ratios[name], n=4)
        lines.append(
            f"| {name} | {statistics.median(times[name]) * 1e3:.2f} | "
            f"{(statistics.median(ratios[name]) - 1) * 100:+.1f}% | "
            f"{(q1 - 1) * 100:+.1f}% .. {(q3 - 1) * 100:+.1f}% |"
            + (
                f" {statistics.median(outside[name]) * 1e3:+.3f} | "
                f"{statistics.median(kernel[name]):.3f} |"
                if split
                else ""
            )
        )
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
