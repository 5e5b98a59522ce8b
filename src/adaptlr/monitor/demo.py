"""The monitor's section of the ``adaptlr demo`` report: the lecture's picture on real data.

scikit-learn's digits (1,797 real 8x8 images shipped inside scikit-learn, no download), full
batch, four runs. Plain SGD with a learning rate that is too large for the surface, on softmax
regression with an L2 penalty (a strictly convex loss with one minimum, where the largest
Hessian eigenvalue is about 0.93, so no learning rate above 2 / 0.93 = 2.15 can settle there):
at lr 3 the parameters bounce between two points on the walls of the valley, the loss repeats
the same two values, the gradient norm stays at about 0.46 (it started near 0.5) and
consecutive gradients are opposite (cosine -1). The monitor says "oscillating", not "critical
point"; at lr 1 the same surface reaches its minimum (gradient norm 1e-3). This bounce is a stable
period-2 orbit: seeds 0-9, float64, two threads and weights perturbed by 1e-6 all end on it.

The 64-64-10 ReLU network does not show this reliably: SGD with a large learning rate either
kills its ReLUs (loss ln 10 with a zero gradient: a genuine critical point) or wanders
chaotically, and which one happens changes with the seed and with the CPU's rounding. On that
network a tiny learning rate barely moves (the monitor says "crawling" and by how much to raise
it); Adam (with or without warm-up and cosine decay) trains.
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
L2 = 0.01  # the L2 penalty of the oscillating run: makes softmax regression strictly convex
TOO_LARGE = "SGD, lr 3 (too large): softmax regression + L2"  # the oscillating run's label
TITLE = "Why is training stuck? The monitor on real data"  # the section's heading


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


def digits_linear(seed: int = 0) -> torch.nn.Module:
    """Softmax regression (one 64-10 linear layer), initialised from `seed`."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return torch.nn.Linear(64, 10)
    finally:
        torch.random.set_rng_state(gen_state)


def digits_loss(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, l2: float = 0.0
) -> torch.Tensor:
    """Cross-entropy plus ``l2 / 2`` times the squared norm of all parameters (when `l2` > 0)."""
    loss = torch.nn.functional.cross_entropy(model(x), y)
    if l2:
        loss = loss + 0.5 * l2 * sum(p.square().sum() for p in model.parameters())
    return loss


def train_digits(
    make_optimizer: Callable[[Any], torch.optim.Optimizer],
    steps: int = STEPS,
    *,
    seed: int = 0,
    window: int = WINDOW,
    log: str | os.PathLike[str] | None = None,
    model: str = "mlp",
    l2: float = 0.0,
) -> tuple[Monitor, Diagnosis]:
    """Full-batch training with a monitor; returns it and its final diagnosis.

    `model` is ``"mlp"`` (`digits_mlp`) or ``"linear"`` (`digits_linear`); the loss is
    `digits_loss` with penalty `l2`, the one the monitor records. Runs on one thread: for a
    network this small, threads only add synchronisation, and one thread makes the run
    bit-for-bit repeatable.
    """
    builders = {"mlp": digits_mlp, "linear": digits_linear}
    if model not in builders:
        raise ValueError(f"model must be 'mlp' or 'linear', got {model!r}")
    x, y = digits_data()
    net = builders[model](seed)
    opt = make_optimizer(net.parameters())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        monitor = Monitor(opt, window=window, log=log)
        for _ in range(steps):
            loss = digits_loss(net, x, y, l2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            monitor.record(loss)
        diagnosis = monitor.diagnose()
        monitor.close()
    finally:
        torch.set_num_threads(threads)
    return monitor, diagnosis


def demo_runs() -> dict[str, tuple[Callable[[Any], torch.optim.Optimizer], dict[str, Any]]]:
    """The four runs of the demo, by label: the optimizer and `train_digits`' keywords.

    The too-large learning rate runs on the convex surface (softmax regression + L2): there
    the bounce between the valley's walls is a stable period-2 orbit, the same for every seed
    and rounding. On the ReLU network SGD at a large learning rate kills the units or wanders
    chaotically, a different diagnosis for each seed or CPU.
    """
    import adaptlr
    from adaptlr.schedules import warmup_cosine

    # fused=False: the reference path. For 4,810 parameters a JIT-compiled kernel saves nothing
    # and its first compile (seconds) would dominate the demo's time.
    return {
        TOO_LARGE: (
            lambda p: adaptlr.SGD(p, lr=3.0, fused=False),
            {"model": "linear", "l2": L2},
        ),
        "SGD, lr 1e-3 (tiny)": (lambda p: adaptlr.SGD(p, lr=1e-3, fused=False), {}),
        "Adam, lr 1e-2": (lambda p: adaptlr.Adam(p, lr=1e-2, fused=False), {}),
        "Adam, warm-up 30 + cosine": (
            lambda p: adaptlr.Adam(p, lr=warmup_cosine(1e-2, 30, STEPS), fused=False),
            {},
        ),
    }


def _comparison(results: dict[str, tuple[Monitor, Diagnosis]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_grad = fig.subplots(1, 2)
    for label, (mon, d) in results.items():
        recs = mon.records
        steps = [r["step"] for r in recs]
        (line,) = ax_loss.plot(steps, [r["loss"] for r in recs], lw=1, label=f"{label}: {d.kind}")
        ax_grad.plot(steps, [r["grad_norm"] for r in recs], lw=1, color=line.get_color())
    ax_loss.set_title("loss")
    ax_loss.set_ylabel(r"$L(\theta_t)$")
    ax_grad.set_title("gradient norm")
    ax_grad.set_ylabel(r"$\|g_t\|$")
    for ax in (ax_loss, ax_grad):
        ax.set_xlabel("step $t$")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    # below the panels: inside, four long labels covered the curves
    fig.legend(loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    fig.savefig(path, dpi=100)


def demo_section(out_dir: str | os.PathLike[str], *, number: int | None = None) -> str:
    """Train the four digits runs, write their PNGs into `out_dir`, return an HTML fragment.

    The fragment is one ``<section id="monitor">``; its ``<img>`` tags use paths relative to
    `out_dir`, so it can be embedded in a report written there. `number`: the section's number
    in that report (its heading then reads ``"7. Why is ..."``); ``None``: no number.

    Args:
        out_dir: the directory (str or path-like) the PNGs are written into; created if missing.
        number: the section's number in the report, an int; None (default): no number.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {label: train_digits(make, **kw) for label, (make, kw) in demo_runs().items()}
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
            f"<figure><img src='{name}' alt='dashboard: {html.escape(label)}'>"
            f"<figcaption>{html.escape(str(d))}</figcaption></figure>"
        )
    heading = html.escape(TITLE if number is None else f"{number}. {TITLE}")
    return (
        f"<section id='monitor'>\n<h2>{heading}</h2>\n"
        "<p>scikit-learn's digits (1,797 real images), full batch, "
        f"{STEPS} steps, diagnosed over the last {WINDOW} steps. Even a convex surface defeats "
        "plain SGD when the learning rate is too large: softmax regression with an L2 penalty "
        f"({L2}) has one minimum, where the largest Hessian eigenvalue is about 0.93, so no "
        "learning rate above 2 / 0.93 = 2.15 can settle there. At lr 3 the loss stalls at the "
        "same two values while the gradient norm does <i>not</i> shrink and consecutive "
        "gradients are opposite: the parameters bounce between the walls of the valley, this "
        "is not a critical point (at lr 1 the same surface reaches its minimum). The other "
        "three runs train a 64-64-10 ReLU network (on it, a large learning rate kills ReLUs or "
        "wanders chaotically, differently for each seed). A tiny learning rate barely moves: "
        "the monitor calls it crawling and says by how much to raise it; Adam trains.</p>\n"
        "<img src='monitor_digits_compare.png' alt='loss and gradient norm of the four runs'>\n"
        "<table border='1' cellspacing='0' cellpadding='4'>\n<tr><th>run</th><th>loss</th>"
        "<th>gradient norm</th><th>median cos(g<sub>t</sub>, g<sub>t-1</sub>)</th>"
        "<th>diagnosis</th><th>suggestion</th></tr>\n" + "\n".join(rows) + "\n</table>\n"
        + "\n".join(imgs) + "\n</section>\n"
    )  # fmt: skip
