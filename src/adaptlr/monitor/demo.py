"""The monitor's section of the ``adaptlr demo`` report: the lecture's picture on real data.

A small MLP on scikit-learn's digits (1,797 real 8x8 images shipped inside scikit-learn, no
download), full batch, trained four ways. Plain SGD with a learning rate that is too large
stalls near the chance-level loss while its gradient norm grows instead of shrinking and
consecutive gradients point against each other: the monitor says "oscillating", not "critical
point". A tiny learning rate barely moves; Adam (with or without warm-up and cosine decay)
trains.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .dashboard import KIND_COLORS, plot_dashboard
from .diagnosis import Diagnosis
from .monitor import Monitor

STEPS = 300
WINDOW = 100


def digits_data() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as float32 features in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def digits_mlp(seed: int = 0) -> torch.nn.Module:
    """64-64-10 ReLU network, initialised from `seed`."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return torch.nn.Sequential(
            torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
        )
    finally:
        torch.random.set_rng_state(gen_state)  # leave the caller's random stream untouched


def train_digits(
    make_optimizer: Callable[[Any], torch.optim.Optimizer],
    steps: int = STEPS,
    *,
    seed: int = 0,
    window: int = WINDOW,
    log: str | os.PathLike[str] | None = None,
) -> tuple[Monitor, Diagnosis]:
    """Full-batch training of `digits_mlp` with a monitor; returns it and its final diagnosis.

    Runs on one thread: for a network this small, threads only add synchronisation, and one
    thread makes the run bit-for-bit repeatable.
    """
    x, y = digits_data()
    model = digits_mlp(seed)
    opt = make_optimizer(model.parameters())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        monitor = Monitor(opt, window=window, log=log)
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            monitor.record(loss)
        diagnosis = monitor.diagnose()
        monitor.close()
    finally:
        torch.set_num_threads(threads)
    return monitor, diagnosis


def demo_runs() -> dict[str, Callable[[Any], torch.optim.Optimizer]]:
    """The four optimizers of the demo, by label."""
    import adaptlr
    from adaptlr.schedules import warmup_cosine

    # fused=False: the reference path. For 4,810 parameters a JIT-compiled kernel saves nothing
    # and its first compile (seconds) would dominate the demo's time.
    return {
        "SGD, lr 2 (too large)": lambda p: adaptlr.SGD(p, lr=2.0, fused=False),
        "SGD, lr 1e-3 (tiny)": lambda p: adaptlr.SGD(p, lr=1e-3, fused=False),
        "Adam, lr 1e-2": lambda p: adaptlr.Adam(p, lr=1e-2, fused=False),
        "Adam, warm-up 30 + cosine": lambda p: adaptlr.Adam(
            p, lr=warmup_cosine(1e-2, 30, STEPS), fused=False
        ),
    }


def _comparison(results: dict[str, tuple[Monitor, Diagnosis]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_grad = fig.subplots(1, 2)
    for label, (mon, d) in results.items():
        recs = mon.records
        steps = [r["step"] for r in recs]
        (line,) = ax_loss.plot(steps, [r["loss"] for r in recs], lw=1, label=f"{label}: {d.kind}")
        ax_grad.plot(steps, [r["grad_norm"] for r in recs], lw=1, color=line.get_color())
    ax_loss.set_title("loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_yscale("log")
    ax_loss.legend(fontsize=7)
    ax_grad.set_title("gradient norm")
    ax_grad.set_xlabel("step")
    ax_grad.set_yscale("log")
    fig.savefig(path, dpi=90)


def demo_section(out_dir: str | os.PathLike[str]) -> str:
    """Train the four digits runs, write their PNGs into `out_dir`, return an HTML fragment.

    The fragment's ``<img>`` tags use paths relative to `out_dir`, so it can be embedded in a
    report written there.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {label: train_digits(make) for label, make in demo_runs().items()}
    _comparison(results, out / "monitor_digits_compare.png")
    rows, imgs = [], []
    for i, (label, (mon, d)) in enumerate(results.items()):
        name = f"monitor_digits_{i}.png"
        plot_dashboard(mon, out / name, window=WINDOW, title=f"{label}: {d.kind}")
        ev, first, last = d.evidence, mon.records[0], mon.records[-1]
        cos = ev.get("cos_median")
        rows.append(
            "<tr>"
            f"<td>{html.escape(label)}</td>"
            f"<td>{first['loss']:.3f} &rarr; {last['loss']:.3f}</td>"
            f"<td>{first['grad_norm']:.3g} &rarr; {last['grad_norm']:.3g}</td>"
            f"<td>{'n/a' if cos is None else f'{cos:.2f}'}</td>"
            f"<td style='background:{KIND_COLORS[d.kind]}33'><b>{d.kind}</b></td>"
            f"<td>{html.escape(d.suggestion)}</td>"
            "</tr>"
        )
        imgs.append(
            f"<figure><img src='{name}' alt='dashboard: {html.escape(label)}' width='600'>"
            f"<figcaption>{html.escape(str(d))}</figcaption></figure>"
        )
    return (
        "<section id='monitor'>\n<h2>Why is training stuck? The monitor on real data</h2>\n"
        "<p>A 64-64-10 ReLU network on scikit-learn's digits (1,797 real images), full batch, "
        f"{STEPS} steps, diagnosed over the last {WINDOW} steps. With plain SGD at a learning "
        "rate that is too large the loss stalls while the gradient norm does <i>not</i> shrink "
        "and consecutive gradients point against each other: the parameters oscillate, this is "
        "not a critical point. A tiny learning rate barely moves; Adam trains.</p>\n"
        "<img src='monitor_digits_compare.png' alt='loss and gradient norm of the four runs' "
        "width='800'>\n"
        "<table border='1' cellspacing='0' cellpadding='4'>\n<tr><th>run</th><th>loss</th>"
        "<th>gradient norm</th><th>median cos(g<sub>t</sub>, g<sub>t-1</sub>)</th>"
        "<th>diagnosis</th><th>suggestion</th></tr>\n" + "\n".join(rows) + "\n</table>\n"
        + "\n".join(imgs) + "\n</section>\n"
    )  # fmt: skip
