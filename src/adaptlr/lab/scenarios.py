"""The lecture's six reproductions, each a named scenario with numbers, text and figures.

Every scenario returns a :class:`Scenario` whose ``metrics`` are what the tests assert and
what the paragraph quotes, so the report never says more than was measured. Constants are
chosen so the lecture's phenomena show on real adaptlr optimizers; each choice is explained
where it is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

import adaptlr
from adaptlr import schedules

from . import plots
from .runs import Trajectory, run
from .surfaces import ELONGATED, RASTRIGIN, Surface, elongated_hessian

__all__ = [
    "Scenario",
    "SCENARIOS",
    "bursts",
    "stuck",
    "tiny_lr",
    "burst",
    "decay",
    "warmup",
    "summary",
    "adabound",
    "lookahead",
    "swats",
    "run_recorded",
]


@dataclass
class Scenario:
    """One reproduction: its runs, the measured numbers, a paragraph and figure builders.

    ``title`` carries no number: the report numbers its sections in the order it writes them.

    Attributes:
        key: the reproduction's id, its key in :data:`SCENARIOS` (``"burst"``, ...).
        title: the section's heading, plain text.
        text: the paragraph, plain text quoting ``metrics`` (the report escapes it for HTML).
        runs: the runs it made, one :class:`~adaptlr.lab.runs.Trajectory` per optimizer.
        metrics: every measured number by name: what the tests assert and ``text`` quotes;
            ``results.json`` keeps them (numpy scalars as numbers, NaN and inf as text).
        table: rows of a table for the report, each a dict from column header to value,
            every row with the first row's keys in its order; ``None`` (default): no table.
        figure_builders: the figures by name, each a function of no argument that builds
            it (:meth:`figures` calls them; the report saves each as ``<key>_<name>.png``);
            default: none.
        gif: a function that writes the animation to the path it is given (its return
            value is not used), e.g. with :func:`~adaptlr.lab.plots.animate`; ``None``
            (default): no animation.
    """

    key: str
    title: str
    text: str
    runs: list[Trajectory]
    metrics: dict[str, Any]
    table: list[dict[str, Any]] | None = None
    figure_builders: dict[str, Callable[[], Figure]] = field(default_factory=dict)
    gif: Callable[[Any], Any] | None = None

    def figures(self) -> dict[str, Figure]:
        """Build every figure (name -> Figure)."""
        return {name: build() for name, build in self.figure_builders.items()}


# ----------------------------------------------------------------------------- helpers


def bursts(step: np.ndarray, after: int, k: float = 10.0, floor: float = 0.05) -> np.ndarray:
    """Indices ``t >= after`` where ``|step[t]|`` exceeds ``k`` x its median and ``floor``.

    The median alone can be ~1e-16 on a quadratic (most steps are rounding-sized), so an
    absolute ``floor`` keeps rounding noise from counting as a burst.

    Args:
        step: ``(T,)`` one coordinate's update at each step (e.g. ``tr.step[:, 0, 1]``);
            the median is that of ``|step|`` over all ``T`` steps, ``after`` or not.
        after: the first step index that can count; earlier ones are never returned.
        k: the multiple of the median a burst must exceed (default 10.0).
        floor: the size a burst must exceed whatever the median (default 0.05): the
            threshold is ``max(k * median, floor)``, and the comparison is strict.
    """
    s = np.abs(step)
    thresh = max(k * float(np.median(s)), floor)
    idx = np.nonzero(s > thresh)[0]
    return idx[idx >= after]


def _first_within(values: np.ndarray, target: float, delta: float) -> int:
    inside = np.abs(values - target) < delta
    return int(np.argmax(inside)) if inside.any() else -1


def _lambda_max() -> float:
    return float(torch.linalg.eigvalsh(elongated_hessian(ELONGATED)).max())


def _lambda_min() -> float:
    return float(torch.linalg.eigvalsh(elongated_hessian(ELONGATED)).min())


# ----------------------------------------------------------------------------- 1. stuck

STUCK_STEPS = 500


def stuck() -> Scenario:
    """1. Training stuck is not a small gradient: GD bouncing between the valley walls."""
    lam = _lambda_max()
    # eta = 2 / lambda_max: the steep eigen-direction's factor 1 - eta*lambda is -1, so w is
    # mirrored across the valley floor forever while the flat direction still converges
    eta = 2.0 / lam
    tr = run(
        ELONGATED,
        f"sgd:lr={eta}",
        steps=STUCK_STEPS,
        label=rf"GD, $\eta = 2/\lambda_{{\max}}$ = {eta:.4f}",
    )
    loss, gn = tr.loss[:, 0], tr.grad_norm[:, 0]
    tail = slice(int(0.8 * STUCK_STEPS), None)
    change = float((loss[tail].max() - loss[tail].min()) / loss[tail].max())
    grad_ratio = float(gn[tail].min() / gn[0])
    m = {
        "eta": eta,
        "lambda_max": lam,
        "loss_change_last20": change,
        "grad_ratio_last20": grad_ratio,
        "loss_ratio": float(loss[-1] / loss[0]),
        "final_grad_norm": float(gn[-1]),
        "final_distance": float(tr.distance()[-1, 0]),
    }
    text = (
        f"Gradient descent on the lecture's elongated convex valley with η = 2/λmax "
        f"= {eta:.4f}. The loss falls to {m['loss_ratio']:.0%} of its start and then stops: "
        f"over the last 20% of the {STUCK_STEPS} steps it changes by "
        f"{change:.1e} (relative), while the gradient norm stays at ≥ "
        f"{grad_ratio:.1%} of its initial value ({gn[-1]:.1f} at the end). The parameters "
        f"are not at a critical point: they jump from one wall of the valley to the other."
    )

    def fig_contour() -> Figure:
        short = replace(tr, params=tr.params[:80], step=tr.step[:79])
        return plots.contour(ELONGATED, [short], title="GD with a large η: the first 80 steps")

    return Scenario(
        "stuck",
        "Training stuck ≠ small gradient",
        text,
        [tr],
        m,
        figure_builders={
            "contour": fig_contour,
            "loss": lambda: plots.loss_curves([tr], title="loss flat, gradient large"),
        },
    )


# ----------------------------------------------------------------------------- 2. tiny eta

TINY_STEPS = 100_000
TINY_LR = 1e-7


def tiny_lr(steps: int = TINY_STEPS) -> Scenario:
    """2. A tiny η (1e-7) has not reached the minimum of the convex valley after 100,000 steps."""
    tr = run(ELONGATED, f"sgd:lr={TINY_LR}", steps=steps, label="GD, η = 1e-7")
    d = tr.distance()[:, 0]
    lam_min = _lambda_min()
    m = {
        "steps": steps,
        "initial_distance": float(d[0]),
        "final_distance": float(d[-1]),
        "distance_ratio": float(d[-1] / d[0]),
        "final_loss": float(tr.loss[-1, 0]),
        # the flat direction contracts by (1 - eta*lambda_min) per step
        "predicted_flat_factor": float((1 - TINY_LR * lam_min) ** steps),
    }
    text = (
        f"Gradient descent with η = 1e-7 on the same convex valley: after {steps:,} updates "
        f"the distance to the minimum is {d[-1]:.2f}, {m['distance_ratio']:.0%} of the "
        f"{d[0]:.2f} it started from (loss {m['final_loss']:.1f}). Along the flat direction "
        f"each step shrinks the error by a factor 1 − ηλmin, so {steps:,} steps remove only "
        f"{1 - m['predicted_flat_factor']:.1%} of it."
    )
    return Scenario(
        "tiny_lr",
        "A tiny η never arrives",
        text,
        [tr],
        m,
        figure_builders={
            "contour": lambda: plots.contour(
                ELONGATED, [tr], title=f"GD, η = 1e-7, {steps:,} steps"
            ),
            "loss": lambda: plots.loss_curves([tr], title="η = 1e-7: barely moving"),
        },
    )


# ----------------------------------------------------------------------------- 3. burst

BURST_LR = 0.3
BURST_STEPS = 1500
BURST_K = 10.0
BURST_DELTA = 0.1


def _burst_metrics(tr: Trajectory, prefix: str) -> dict[str, Any]:
    w1 = tr.params[:, 0, 0]
    steep = tr.step[:, 0, 1]
    near = _first_within(w1, ELONGATED.minima[0][0], BURST_DELTA)
    b = bursts(steep, max(near, 0), k=BURST_K) if near >= 0 else np.array([], dtype=int)
    out: dict[str, Any] = {
        f"{prefix}near_step": near,
        f"{prefix}bursts": int(b.size),
        f"{prefix}median_steep_step": float(np.median(np.abs(steep))),
        f"{prefix}max_steep_step_after_near": (
            float(np.abs(steep[near:]).max()) if near >= 0 else float("nan")
        ),
        f"{prefix}final_distance": float(tr.distance()[-1, 0]),
        f"{prefix}steps_to_reach": int(tr.steps_to_reach(1e-3)[0]),
    }
    if b.size:
        peak = int(b[np.argmax(np.abs(steep[b]))])
        after = np.abs(steep[peak:])
        calm = np.nonzero(after < 1e-2 * abs(steep[peak]))[0]
        out.update(
            {
                f"{prefix}first_burst": int(b[0]),
                f"{prefix}peak_step": peak,
                f"{prefix}peak_size": float(abs(steep[peak])),
                f"{prefix}settled_after": int(calm[0]) if calm.size else -1,
            }
        )
    return out


def burst() -> Scenario:
    """3. The lecture's root-mean-square rule: along the flat direction, then a burst."""
    rms = run(
        ELONGATED, f"rms:lr={BURST_LR}", steps=BURST_STEPS, label=f"RootMeanSquare, η = {BURST_LR}"
    )
    ada = run(
        ELONGATED,
        f"adagrad:lr={BURST_LR}",
        steps=BURST_STEPS,
        label=f"Adagrad (sum), η = {BURST_LR}",
    )
    m = _burst_metrics(rms, "")
    m.update(_burst_metrics(ada, "adagrad_"))
    m["k"] = BURST_K
    m["delta"] = BURST_DELTA
    text = (
        f"The lecture's adaptive rule θ ← θ − η g/σ with σ = sqrt(mean of past g²) "
        f"(adaptlr.RootMeanSquare, η = {BURST_LR}). It walks along the flat direction and "
        f"is within {BURST_DELTA} of the minimum in w1 after {m['near_step']} steps. The steep "
        f"coordinate then sees only tiny gradients, so its σ shrinks and η/σ grows (the η/σ "
        f"figure) until a step of {m.get('peak_size', float('nan')):.2f} in w2 (median step "
        f"{m['median_steep_step']:.1e}) at step {m.get('peak_step', -1)}: the burst. Large "
        f"gradients raise σ again and the walk settles: {m.get('settled_after', -1)} steps "
        f"later the steep step is below 1% of the burst; with a constant η the cycle repeats "
        f"({m['bursts']} steps count as bursts here). Adagrad's ever-growing sum never bursts "
        f"({m['adagrad_bursts']} bursts) but crawls: distance {m['adagrad_final_distance']:.2f} "
        f"after {BURST_STEPS} steps."
    )
    gif = lambda path: plots.animate(  # noqa: E731
        ELONGATED, [rms, ada], path, title="RootMeanSquare vs Adagrad", linestyles=("-", "--")
    )
    return Scenario(
        "burst",
        "Adaptive learning rate: the burst",
        text,
        [rms, ada],
        m,
        figure_builders={
            # side by side: both follow the same path until the burst
            "contour": lambda: plots.contour_grid([rms, ada], title="σ = root mean square or sum"),
            "effective_lr": lambda: plots.effective_lr(
                [rms, ada], title="η/σ per coordinate and step size"
            ),
            "surface3d": lambda: plots.surface3d(ELONGATED, [rms, ada]),
        },
        gif=gif,
    )


# ----------------------------------------------------------------------------- 4. decay

DECAY_GAMMA = 0.998


def decay() -> Scenario:
    """4. The same rule with a decaying η reaches the minimum without a burst."""
    sched = schedules.exponential(BURST_LR, gamma=DECAY_GAMMA)
    dec = run(
        ELONGATED,
        "rms",
        steps=BURST_STEPS,
        schedule=sched,
        label=rf"RootMeanSquare, $\eta_t = {BURST_LR}\cdot{DECAY_GAMMA}^t$",
    )
    const = run(
        ELONGATED, f"rms:lr={BURST_LR}", steps=BURST_STEPS, label=f"RootMeanSquare, η = {BURST_LR}"
    )
    m = _burst_metrics(dec, "")
    m.update(_burst_metrics(const, "constant_"))
    text = (
        f"The same rule and start with ηₜ = {BURST_LR}·{DECAY_GAMMA}ᵗ. Since σ of the steep "
        f"coordinate shrinks like 1/sqrt(t), η/σ only stays bounded if ηₜ decays; here it "
        f"does: {m['bursts']} bursts (largest steep step after arriving "
        f"{m['max_steep_step_after_near']:.1e}), and the distance to the minimum stays below "
        f"1e-3 from step {m['steps_to_reach']} on (final {m['final_distance']:.1e}). With a "
        f"constant η: {m['constant_bursts']} burst steps, largest "
        f"{m['constant_max_steep_step_after_near']:.2f}. The two runs take the same path "
        f"until the decayed η differs enough, so the figures draw them side by side."
    )
    return Scenario(
        "decay",
        "Learning-rate decay removes the burst",
        text,
        [dec, const],
        m,
        figure_builders={
            "contour": lambda: plots.contour_grid([dec, const], title="decay vs constant η"),
            "effective_lr": lambda: plots.effective_lr(
                [dec, const], title=r"$\eta_t/\sigma_t$ and steps", by_run=True
            ),
            "schedule": lambda: plots.schedules(
                {"exponential decay": sched, "constant": schedules.constant(BURST_LR)},
                BURST_STEPS,
            ),
        },
    )


# ----------------------------------------------------------------------------- 5. warm-up

WARM_LR = 0.7
WARM_STEPS = 500
WARMUP = 100
WARM_STARTS = 64
# Rastrigin scaled by 0.01: gradients of order 0.1-0.6, like a network's loss. Adam does not
# see the scale; RAdam's first (unrectified) steps are SGD steps of size eta*|g|, so it does.
WARM_SCALE = 0.01
WARM_SURFACE = replace(
    RASTRIGIN.scaled(WARM_SCALE, name="rastrigin/100"), window=((-2.5, 2.5), (-2.5, 2.5))
)
WARM_SURFACE_FULL = replace(RASTRIGIN, window=((-2.5, 2.5), (-2.5, 2.5)))
ADAM_BETA1 = 0.9  # adaptlr.Adam's default beta1, which the "adam" runs use


def _warm_starts() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    # every start inside the global minimum's basin (|w_i| < 0.5): leaving it is the failure
    return (torch.rand(WARM_STARTS, 2, generator=g, dtype=torch.float64) - 0.5) * 0.8


def _in_basin(tr: Trajectory) -> float:
    return float((np.abs(tr.params[-1]) < 0.5).all(axis=1).mean())


def _curvature_at_minimum(surface: Any) -> float:
    """Largest Hessian eigenvalue at the surface's (first) global minimum, by autograd."""
    w = torch.tensor(surface.minima[0], dtype=torch.float64)
    h = torch.autograd.functional.hessian(lambda x: surface.loss(x), w)
    return float(torch.linalg.eigvalsh(h).max())


def _rise_metrics(tr: Trajectory, after: int, beta1: float) -> dict[str, Any]:
    """Why the median loss of a warmed-up Adam run rises again, measured.

    Near a minimum of curvature λ Adam moves like gradient descent with step η/σ on the EMA
    m of the gradients; that iteration is stable while λη/σ < 2(1+β₁)/(1−β₁) (38 for
    β₁ = 0.9). σ keeps shrinking with the gradients, so λη/σ grows towards that limit.
    """
    gap = tr.gap()
    med = np.median(gap, axis=1)
    rise = after + int(np.argmin(med[after:]))
    lam = _curvature_at_minimum(tr.surface)
    # per run: the step where its own loss is lowest, and lambda * eta/sigma there
    low = np.argmin(gap, axis=0)
    runs = np.arange(tr.runs)
    edge = tr.effective_lr.max(axis=2) * lam  # (T, R); the steeper coordinate decides
    at_low = edge[np.minimum(low, edge.shape[0] - 1), runs]
    return {
        "adam_warmup_rise_step": rise,
        "adam_warmup_rise_low": float(med[rise]),
        "adam_warmup_rise_final": float(med[-1]),
        "adam_warmup_rising_runs": float((gap[-1] > 100 * gap[low, runs]).mean()),
        "curvature": lam,
        "stability_limit": 2 * (1 + beta1) / (1 - beta1),
        "adam_warmup_edge_at_warmup_end": float(np.median(edge[after - 1])),
        "adam_warmup_edge_at_lowest": float(np.median(at_low)),
    }


def warmup() -> Scenario:
    """5. Adam at a large η with and without warm-up, and RAdam, where first steps matter."""
    starts = _warm_starts()
    warm = schedules.linear_warmup(WARM_LR, warmup=WARMUP)
    runs = [
        run(WARM_SURFACE, f"adam:lr={WARM_LR}", starts, WARM_STEPS, label=f"Adam, η = {WARM_LR}"),
        run(
            WARM_SURFACE,
            "adam",
            starts,
            WARM_STEPS,
            schedule=warm,
            label=f"Adam, η warm-up {WARMUP} steps",
        ),
        run(WARM_SURFACE, f"radam:lr={WARM_LR}", starts, WARM_STEPS, label=f"RAdam, η = {WARM_LR}"),
        run(
            WARM_SURFACE_FULL,
            f"radam:lr={WARM_LR}",
            starts,
            WARM_STEPS,
            label=f"RAdam, η = {WARM_LR}, loss ×100",
        ),
    ]
    keys = ["adam", "adam_warmup", "radam", "radam_x100"]
    m: dict[str, Any] = {}
    for key, tr in zip(keys, runs):
        m[f"{key}_in_basin"] = _in_basin(tr)
        m[f"{key}_median_distance"] = float(np.median(tr.distance()[-1]))
    m.update(_rise_metrics(runs[1], WARMUP, ADAM_BETA1))
    table = [
        {
            "run": tr.label,
            "ends in the global basin": f"{m[f'{k}_in_basin']:.0%}",
            "median final distance": f"{m[f'{k}_median_distance']:.3g}",
        }
        for k, tr in zip(keys, runs)
    ]
    text = (
        f"{WARM_STARTS} starts inside the global minimum's basin of Rastrigin's surface "
        f"(loss scaled by {WARM_SCALE}, so gradients are ≲ 0.6 as in a network), η = "
        f"{WARM_LR}. Adam's first steps are ±η in every coordinate whatever the gradient "
        f"(σ is estimated from one or two gradients): only {m['adam_in_basin']:.0%} of the "
        f"runs end in the global basin. A linear warm-up over {WARMUP} steps keeps the first "
        f"steps small while σ is estimated: {m['adam_warmup_in_basin']:.0%}. RAdam replaces "
        f"the first steps by momentum-SGD steps of size η|g| and rectifies σ afterwards: "
        f"{m['radam_in_basin']:.0%}. That depends on the gradient's scale: on the unscaled "
        f"surface (loss ×100) RAdam's first steps throw the runs far away: "
        f"{m['radam_x100_in_basin']:.0%}. In the loss figure each line is the median over "
        f"the {WARM_STARTS} starts and the shaded band holds the middle 80% of them (10th "
        f"to 90th percentile); where a band reaches the bottom of the plot, at least 10% of "
        f"the runs are at the minimum to within rounding (loss − min = 0, which a log axis "
        f"cannot show). The warm-up median is lowest at step "
        f"{m['adam_warmup_rise_step']} ({m['adam_warmup_rise_low']:.1e}) and then rises to "
        f"{m['adam_warmup_rise_final']:.1e}: {m['adam_warmup_rising_runs']:.0%} of the runs "
        f"end more than 100× above their own lowest loss, yet "
        f"{m['adam_warmup_in_basin']:.0%} end in the basin. The "
        f"numbers point to Adam's σ: it keeps shrinking with the gradients, so η/σ keeps "
        f"growing. "
        f"Near the minimum (curvature λ = {m['curvature']:.2f}) Adam is gradient descent with "
        f"step η/σ on the momentum average of the gradients, which is stable only while "
        f"λη/σ < 2(1+β₁)/(1−β₁) = {m['stability_limit']:.0f}. λη/σ (median over runs, "
        f"steeper coordinate) is {m['adam_warmup_edge_at_warmup_end']:.0f} when the warm-up "
        f"ends and {m['adam_warmup_edge_at_lowest']:.1f} at each run's lowest loss: in the "
        f"median the runs leave the floor close to that limit (a bound for momentum on a "
        f"quadratic, not a proof for this surface), the burst of section 3 in Adam's form."
    )

    def fig_contours() -> Figure:
        fig = plots.new_figure(12.0, 3.4)
        axes = fig.subplots(1, 4)
        for i, (ax, tr) in enumerate(zip(axes, runs)):
            plots.contour(tr.surface, [], ax=ax, title=tr.label)
            for r in range(tr.runs):
                ax.plot(
                    tr.params[:, r, 0],
                    tr.params[:, r, 1],
                    color=plots.COLORS[i],
                    lw=0.5,
                    alpha=0.5,
                )
            ax.plot(tr.params[-1, :, 0], tr.params[-1, :, 1], "o", color="w", ms=2.5, mec="k")
            ax.set_title(f"{tr.label}\n{_in_basin(tr):.0%} end at the centre", fontsize=9)
        return fig

    def fig_loss() -> Figure:
        fig = plots.loss_curves(runs[:3], title=f"loss over {WARM_STARTS} starts")
        for ax in fig.axes[:2]:
            ax.axvline(m["adam_warmup_rise_step"], color="grey", ls=":", lw=1)
        fig.axes[0].annotate(
            "warm-up median\nlowest here",
            (m["adam_warmup_rise_step"], m["adam_warmup_rise_low"]),
            xytext=(8, -28),
            textcoords="offset points",
            fontsize=7,
            color="grey",
        )
        return fig

    return Scenario(
        "warmup",
        "Warm-up, and RAdam",
        text,
        runs,
        m,
        table=table,
        figure_builders={
            "contours": fig_contours,
            "loss": fig_loss,
            "schedule": lambda: plots.schedules(
                {"warm-up": warm, "constant": schedules.constant(WARM_LR)}, WARM_STEPS
            ),
        },
    )


# ----------------------------------------------------------------------------- 6. summary

SUMMARY_STEPS = 1000
SUMMARY_TOL = 1e-3
# eta per optimizer from a one-off grid 0.001..2 on this surface and start: GD at the edge of
# stability (just under 2/lambda_max = 0.0198), the others at a usual value that works
SUMMARY_OPTIMIZERS = [
    ("gradient descent", "sgd", 0.019),
    ("momentum 0.9", "momentum", 0.01),
    ("Adagrad", "adagrad", 1.0),
    ("RMSProp (lecture)", "rmsprop_lecture", 0.1),
    ("Adam", "adam", 0.1),
]


def summary() -> Scenario:
    """6. GD, momentum, Adagrad, RMSProp and Adam, with and without a schedule."""
    runs: list[Trajectory] = []
    table: list[dict[str, Any]] = []
    m: dict[str, Any] = {}
    for title, name, lr in SUMMARY_OPTIMIZERS:
        for sched in (None, schedules.cosine(lr, total_steps=SUMMARY_STEPS)):
            label = f"{title}" + (" + cosine" if sched is not None else "")
            spec = name if sched is not None else f"{name}:lr={lr}"
            tr = run(ELONGATED, spec, steps=SUMMARY_STEPS, schedule=sched, label=label)
            runs.append(tr)
            reach = int(tr.steps_to_reach(SUMMARY_TOL)[0])
            dist = float(tr.distance()[-1, 0])
            key = f"{name}{'_cosine' if sched is not None else ''}"
            m[f"{key}_steps"] = reach
            m[f"{key}_distance"] = dist
            table.append(
                {
                    "optimizer": title,
                    "η": f"{lr:g}",
                    "schedule": "cosine" if sched is not None else "constant",
                    "distance to minimum": f"{dist:.2e}",
                    f"steps to stay within {SUMMARY_TOL:g}": reach if reach >= 0 else "never",
                }
            )
    text = (
        f"The lecture's summary θ ← θ − (ηₜ/σₜ) mₜ on the elongated valley, "
        f"{SUMMARY_STEPS} steps from the same start, each optimizer with a constant η and "
        f"with cosine decay to 0. Momentum uses the direction of past gradients and arrives "
        f"first ({m['momentum_steps']} steps); GD needs {m['sgd_steps']} steps even at the edge"
        f" of stability. RMSProp with a constant η ends in a small oscillation at distance "
        f"{m['rmsprop_lecture_distance']:.1e}; decay lets it settle in "
        f"{m['rmsprop_lecture_cosine_steps']} steps. For the others decay only slows the "
        f"end: this surface needs no schedule once η is right."
    )
    return Scenario(
        "summary",
        "Summary: momentum × σ × schedule",
        text,
        runs,
        m,
        table=table,
        figure_builders={
            "contour": lambda: plots.contour(
                ELONGATED, runs[::2], title="constant η", size=(7.5, 5)
            ),
            "contour_schedule": lambda: plots.contour(
                ELONGATED, runs[1::2], title="cosine decay", size=(7.5, 5)
            ),
            # cosine dashed: a pair follows the same path for hundreds of steps
            "loss": lambda: plots.loss_curves(
                runs, title="loss − min and gradient norm", linestyles=("-", "--")
            ),
        },
    )


# ----------------------------------------------------------------------------- the course's


class _Recorded:
    """An optimizer for :func:`run` that calls ``record(self)`` after every step and keeps
    what it returns in ``log``: what a :class:`Trajectory` does not hold (slow weights,
    bounds, a switch). Everything else (``param_groups``, ``state``) is the wrapped
    optimizer's; ``effective_lr()`` is computed once per step, for ``record`` and the run."""

    def __init__(self, optimizer: torch.optim.Optimizer, record: Callable[[Any], Any]) -> None:
        self.optimizer = optimizer
        self.record = record
        self.log: list[Any] = []
        self._eff: Any = None

    def step(self) -> None:
        self.optimizer.step()
        self._eff = None
        self.log.append(self.record(self))

    def _effective_lr(self) -> Any:
        if self._eff is None:
            self._eff = self.optimizer.effective_lr()
        return self._eff

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__["optimizer"]
        if name == "effective_lr" and hasattr(inner, name):  # absent: run() records none
            return self._effective_lr
        return getattr(inner, name)


def run_recorded(
    surface: Surface,
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    record: Callable[[Any], Any],
    starts: Any = None,
    steps: int = 500,
    *,
    label: str,
) -> tuple[Trajectory, list[Any], Any]:
    """:func:`run` with ``record(optimizer)`` called after each step.

    Args:
        surface: the error surface.
        make: ``params -> optimizer``; it may add tensors of its own (probes) after ``params``.
        record: what to keep after each step, given the optimizer ``make`` built (wrapped:
            its attributes, and ``effective_lr()`` computed once per step).
        starts: start point(s), as :func:`run` takes them (the surface's start if None).
        steps: number of updates.
        label: legend text.

    Returns the trajectory, the ``steps`` records, and the optimizer (its final state).
    All starts are one tensor: ``make`` must build an elementwise optimizer when there are
    several (a sum over the tensor would couple the runs).
    """
    built: list[_Recorded] = []

    def factory(params: list[torch.Tensor]) -> Any:
        built.append(_Recorded(make(params), record))
        return built[-1]

    tr = run(surface, factory, starts, steps, label=label, batch=True)
    return tr, built[-1].log, built[-1].optimizer


def _spread_starts(surface: Surface, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` start points uniform over the surface's window (a fixed seed)."""
    g = torch.Generator().manual_seed(seed)
    (x0, x1), (y0, y1) = surface.window
    u = torch.rand(n, 2, generator=g, dtype=torch.float64)
    return torch.stack((x0 + (x1 - x0) * u[:, 0], y0 + (y1 - y0) * u[:, 1]), dim=1)


# ----------------------------------------------------------------------------- 7. AdaBound

# Adam's lr alpha = 1 on this valley puts the first eta/sigma of the 32 starts' coordinates
# both above and below alpha* = 0.1, so both bounds act; gamma = 0.02 closes them to within
# 0.2 alpha* in the 500 steps (the default 1e-3 would leave a gap of 2.7 alpha* at t = 500)
ADABOUND_LR = 1.0
ADABOUND_FINAL_LR = 0.1
ADABOUND_GAMMA = 0.02
ADABOUND_STEPS = 500
ADABOUND_STARTS = 32
#: the steps whose bounds and eta/sigma the metrics (and the tests) quote
ADABOUND_AT = (1, 10, 100, ADABOUND_STEPS)
# two probe elements beside the run: gradient 0 gives sigma = eps, so eta/sigma is far above
# any upper bound; 1e12 gives eta/sigma ~ 1e-12, far below any lower bound. The optimizer
# clips them to exactly eta_u(t) and eta_l(t): the bounds as the optimizer applies them.
_PROBE_GRAD = (0.0, 1e12)


def adabound() -> Scenario:
    """7. AdaBound: η/σ clipped to bounds that close on one SGD step size."""
    starts = _spread_starts(ELONGATED, ADABOUND_STARTS)
    # fused=False: for 66 elements the reference path is as fast and compiles no kernel
    kwargs = {
        "lr": ADABOUND_LR,
        "final_lr": ADABOUND_FINAL_LR,
        "gamma": ADABOUND_GAMMA,
        "fused": False,
    }

    def make(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        probe = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        probe.grad = torch.tensor(_PROBE_GRAD, dtype=torch.float64)  # never zeroed: kept
        return adaptlr.AdaBound([*params, probe], **kwargs)

    def record(opt: Any) -> tuple[float, float]:
        upper, lower = opt.effective_lr()[0][-1].tolist()
        return lower, upper

    tr, bounds, _ = run_recorded(
        ELONGATED,
        make,
        record,
        starts,
        ADABOUND_STEPS,
        label=rf"AdaBound, $\alpha$ = {ADABOUND_LR:g}, $\alpha^\star$ = {ADABOUND_FINAL_LR:g}, "
        rf"$\gamma$ = {ADABOUND_GAMMA:g}",
    )
    lower, upper = np.array(bounds).T  # (T,) each; index t - 1 is step t
    eff = tr.effective_lr.reshape(tr.steps, -1)  # (T, R*2): every element of every run
    m: dict[str, Any] = {
        "lr": ADABOUND_LR,
        "final_lr": ADABOUND_FINAL_LR,
        "gamma": ADABOUND_GAMMA,
        "steps": ADABOUND_STEPS,
        "starts": ADABOUND_STARTS,
        "median_final_distance": float(np.median(tr.distance()[-1])),
    }
    for t in ADABOUND_AT:
        e, lo, hi = eff[t - 1], lower[t - 1], upper[t - 1]
        p10, p50, p90 = np.percentile(e, [10, 50, 90])
        m.update(
            {
                f"lower_{t}": float(lo),
                f"upper_{t}": float(hi),
                f"gap_{t}": float(hi - lo),
                f"p10_{t}": float(p10),
                f"p50_{t}": float(p50),
                f"p90_{t}": float(p90),
                # clipped: eta/sigma equal to a bound (to rounding)
                f"at_lower_{t}": float(np.isclose(e, lo, rtol=1e-9, atol=0).mean()),
                f"at_upper_{t}": float(np.isclose(e, hi, rtol=1e-9, atol=0).mean()),
            }
        )
    last = ADABOUND_AT[-1]
    text = (
        f"AdaBound (adaptlr.AdaBound, Adam's α = {ADABOUND_LR:g}, final SGD step size α* = "
        f"{ADABOUND_FINAL_LR:g}, γ = {ADABOUND_GAMMA:g}) from {ADABOUND_STARTS} starts spread "
        f"over the valley, {ADABOUND_STEPS} steps. Each step clips Adam's η/σ of every "
        f"coordinate to [η_l(t), η_u(t)] = [α*(1 − 1/(γt+1)), α*(1 + 1/(γt))]. The bounds in "
        f"the figure are read from the optimizer (two probe elements whose η/σ lies far "
        f"outside them) and the shaded band holds the 10th to 90th percentile of the "
        f"{2 * ADABOUND_STARTS} coordinates' η/σ (optimizer.effective_lr()). At step 1 the "
        f"bounds are [{m['lower_1']:.1e}, {m['upper_1']:.3g}] and the η/σ spread from "
        f"{m['p10_1']:.2g} to {m['p90_1']:.2g} (10th–90th percentile), Adam's: "
        f"{m['at_lower_1'] + m['at_upper_1']:.0%} of the coordinates are clipped. At step "
        f"100 the bounds are [{m['lower_100']:.3g}, {m['upper_100']:.3g}]: "
        f"{m['at_lower_100']:.0%} of the coordinates sit on the lower bound, "
        f"{m['at_upper_100']:.0%} on the upper. As the runs converge σ shrinks and Adam's "
        f"η/σ grows (the mechanism of section 3's burst); the upper bound holds it: at step "
        f"{last} the bounds are {m[f'lower_{last}']:.4f} and {m[f'upper_{last}']:.4f} (gap "
        f"{m[f'gap_{last}']:.3f}, {m[f'gap_{last}'] / ADABOUND_FINAL_LR:.0%} of α*) and "
        f"{m[f'at_upper_{last}']:.0%} of the coordinates are on the upper one: AdaBound has "
        f"become SGD with momentum at a step size near α*. Median distance to the minimum "
        f"after {ADABOUND_STEPS} steps: {m['median_final_distance']:.1e}."
    )
    t = np.arange(1, ADABOUND_STEPS + 1)
    return Scenario(
        "adabound",
        "AdaBound: bounds on η/σ that close on SGD",
        text,
        [tr],
        m,
        figure_builders={
            "bounds": lambda: plots.bounds(
                t,
                lower,
                upper,
                ADABOUND_FINAL_LR,
                eff,
                title=f"AdaBound on the valley, {ADABOUND_STARTS} starts",
            ),
            "contour": lambda: plots.contour(
                ELONGATED,
                [tr],
                title=f"AdaBound from {ADABOUND_STARTS} starts, {ADABOUND_STEPS} steps",
            ),
        },
    )


# ----------------------------------------------------------------------------- 8. Lookahead

# GD at eta = 2.1/lambda_max: the steep direction's factor 1 - eta*lambda is -1.1, so GD alone
# diverges (section 1 sits at exactly 2/lambda_max). Lookahead's sync multiplies that error by
# (1 - alpha) + alpha(-1.1)^k = -0.31 per cycle for k = 5, alpha = 0.5: the pull-back wins.
LOOKAHEAD_FACTOR = 2.1
LOOKAHEAD_K = 5
LOOKAHEAD_ALPHA = 0.5
LOOKAHEAD_STEPS = 500
#: GD alone leaves the window within these steps; the figures draw these only
LOOKAHEAD_GD_SHOWN = 12
#: the syncs whose steep-error ratios are averaged (later ones are at rounding level)
LOOKAHEAD_SYNCS_MEASURED = 8


def _eigen_errors(points: np.ndarray) -> np.ndarray:
    """``(..., 2)`` points -> their error to the valley's minimum along the flat and the steep
    eigenvector of its Hessian, ``(..., 2)`` (flat first)."""
    _, vecs = torch.linalg.eigh(elongated_hessian(ELONGATED))
    e = points - np.asarray(ELONGATED.minima[0])
    return e @ vecs.numpy()


def lookahead() -> Scenario:
    """8. Lookahead: slow weights that pull GD back every k steps."""
    lam = _lambda_max()
    eta = LOOKAHEAD_FACTOR / lam

    def make(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        inner = adaptlr.SGD(params, lr=eta)
        return adaptlr.Lookahead(inner, k=LOOKAHEAD_K, alpha=LOOKAHEAD_ALPHA)

    def record(opt: Any) -> np.ndarray:
        p = opt.param_groups[0]["params"][0]
        return opt.state[p]["slow_buffer"].numpy().copy()

    gd_label = rf"GD, $\eta = {LOOKAHEAD_FACTOR:g}/\lambda_{{\max}}$"
    la, slow_log, _ = run_recorded(
        ELONGATED,
        make,
        record,
        steps=LOOKAHEAD_STEPS,
        label=f"Lookahead(GD), k = {LOOKAHEAD_K}, α = {LOOKAHEAD_ALPHA:g}: fast weights θ",
    )
    gd = run(ELONGATED, f"sgd:lr={eta}", steps=LOOKAHEAD_STEPS, label=gd_label)
    slow = np.stack(slow_log)[:, 0]  # (T, 2): φ after step t + 1
    fast = la.params[1:, 0]  # (T, 2): θ after step t + 1
    gap = np.linalg.norm(fast - slow, axis=1)
    # a sync sets θ = φ; the slow weights change only there
    syncs = 1 + np.nonzero(np.r_[True, (slow[1:] != slow[:-1]).any(axis=1)])[0]
    errs = _eigen_errors(slow[syncs - 1])  # (S, 2) at each sync: flat, steep
    n = LOOKAHEAD_SYNCS_MEASURED
    ratios = errs[1 : n + 1] / errs[:n]
    m: dict[str, Any] = {
        "eta": eta,
        "lambda_max": lam,
        "k": LOOKAHEAD_K,
        "alpha": LOOKAHEAD_ALPHA,
        "steps": LOOKAHEAD_STEPS,
        "syncs": int(syncs.size),
        "first_syncs": [int(s) for s in syncs[:3]],
        "steep_factor": float(np.median(ratios[:, 1])),
        "flat_factor": float(np.median(ratios[:, 0])),
        "max_slow_fast": float(gap.max()),
        "max_slow_fast_step": int(np.argmax(gap)) + 1,
        "max_slow_fast_last_100": float(gap[-100:].max()),
        "final_distance": float(la.distance()[-1, 0]),
        "gd_final_distance": float(gd.distance()[-1, 0]),
    }
    for t in (3, 50, LOOKAHEAD_STEPS):
        m[f"slow_fast_{t}"] = float(gap[t - 1])
    text = (
        f"Lookahead (adaptlr.Lookahead, k = {LOOKAHEAD_K}, α = {LOOKAHEAD_ALPHA:g}) around "
        f"gradient descent at η = {LOOKAHEAD_FACTOR:g}/λmax = {eta:.4f}, a little beyond the "
        f"edge of section 1. GD alone diverges: each step multiplies the steep error by "
        f"1 − ηλmax = {1 - LOOKAHEAD_FACTOR:.1f}; after {LOOKAHEAD_STEPS} steps it is "
        f"{m['gd_final_distance']:.1e} from the minimum. Lookahead lets the same GD (the fast "
        f"weights θ) take {LOOKAHEAD_K} steps, then moves the slow weights φ a fraction α "
        f"towards θ and restarts θ from φ ({m['syncs']} synchronisations, after steps "
        f"{', '.join(map(str, m['first_syncs']))}, …). Along the steep eigenvector the slow "
        f"error is multiplied by {m['steep_factor']:.3f} per synchronisation (median of the "
        f"first {LOOKAHEAD_SYNCS_MEASURED}), along the flat one by {m['flat_factor']:.3f}: "
        f"the pull-back outweighs the {LOOKAHEAD_K} growing steps, and the run ends "
        f"{m['final_distance']:.1e} from the minimum. The slow weights stay beside the "
        f"fast ones: ‖θ − φ‖ is at most {m['max_slow_fast']:.2f} (after step "
        f"{m['max_slow_fast_step']}) and "
        f"{m['max_slow_fast_last_100']:.1e} over the last 100 steps."
    )
    return Scenario(
        "lookahead",
        "Lookahead: slow weights beside the fast ones",
        text,
        [la, gd],
        m,
        figure_builders={
            "slow_fast": lambda: plots.slow_fast(
                la,
                slow,
                syncs,
                others=[gd],
                others_shown=LOOKAHEAD_GD_SHOWN,
                title=rf"Lookahead around GD at $\eta = {LOOKAHEAD_FACTOR:g}/\lambda_{{\max}}$",
            ),
        },
    )


# ----------------------------------------------------------------------------- 9. SWATS

# the paper's Algorithm 1 (form="paper"): its test |Lambda_t - gamma_t| < tol fires on this
# valley from its start once Adam's steps settle; tol = 1e-4 is a choice made for the picture
# (the paper's 1e-9 is for networks' many coordinates). lr = 0.3: Adam's usual "large" lr.
SWATS_LR = 0.3
SWATS_BETAS = (0.9, 0.999)
SWATS_FORM = "paper"
SWATS_TOL = 1e-4
SWATS_STEPS = 400


def swats() -> Scenario:
    """9. SWATS: Adam until the SGD step size it implies settles, then SGD at that size."""
    kwargs = {"lr": SWATS_LR, "betas": SWATS_BETAS, "form": SWATS_FORM, "tol": SWATS_TOL}

    def make(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        # fused=False: for two elements the reference path is as fast and compiles nothing
        return adaptlr.SWATS(params, **kwargs, fused=False)

    def record(opt: Any) -> float:
        return float(opt.param_groups[0]["switch_step"])

    tr, switches, opt = run_recorded(
        ELONGATED,
        make,
        record,
        None,
        SWATS_STEPS,
        label=f"SWATS, η = {SWATS_LR:g}, β = {SWATS_BETAS[0]:g}/{SWATS_BETAS[1]:g}",
    )
    group = opt.param_groups[0]
    k, sgd_lr = int(group["switch_step"]), float(group["sgd_lr"])
    adam = run(
        ELONGATED,
        f"adam:lr={SWATS_LR},betas={SWATS_BETAS[0]}/{SWATS_BETAS[1]}",
        None,
        SWATS_STEPS,
        label=f"Adam alone, η = {SWATS_LR:g}, same β",
    )
    eff = tr.effective_lr[:, 0]  # (T, 2): eta/sigma, Lambda from the switch on
    d = tr.distance()[:, 0]
    lam = _lambda_max()
    m: dict[str, Any] = {
        "lr": SWATS_LR,
        "steps": SWATS_STEPS,
        "switch_step": k,
        # the step counts at which record saw switch_step change: one switch, for good
        "switch_changes": int(np.count_nonzero(np.diff(np.r_[0.0, switches]))),
        "sgd_lr": sgd_lr,
        "sgd_lr_over_edge": sgd_lr * lam / 2,
        # after step k the optimizer reports Lambda already: Adam's last eta/sigma is step k-1's
        "adam_eff_before_switch": [float(v) for v in eff[k - 2]] if k > 1 else [],
        "distance_at_switch": float(d[k]) if k else float("nan"),
        "final_distance": float(d[-1]),
        "adam_final_distance": float(adam.distance()[-1, 0]),
        "adam_eff_growth": float(
            adam.effective_lr[-1, 0, 0] / adam.effective_lr[max(k, 1) - 1, 0, 0]
        ),
    }
    if k:
        e1, e2 = m["adam_eff_before_switch"]
        switched = (
            f"After step {k} ({m['distance_at_switch']:.2f} from the minimum) |Λₜ − γₜ| < "
            f"{SWATS_TOL:g} and the run switches, for good, to SGD with momentum at Λ = "
            f"{sgd_lr:.4f}. Λ lies between the coordinates' last Adam η/σ ({e1:.3f} for w1, "
            f"{e2:.4f} for w2): one step size for both coordinates, "
            f"{m['sgd_lr_over_edge']:.0%} of GD's stability limit 2/λmax. SGD at Λ "
            f"zig-zags across the valley floor and ends {m['final_distance']:.1e} from the "
            f"minimum after {SWATS_STEPS} steps; "
        )
    else:
        switched = f"It did not switch in {SWATS_STEPS} steps; "
    text = (
        f"SWATS (adaptlr.SWATS with form='paper', Keskar & Socher's Algorithm 1; η = "
        f"{SWATS_LR:g}, β = {SWATS_BETAS[0]:g}/{SWATS_BETAS[1]:g}, switch tolerance "
        f"{SWATS_TOL:g}, chosen for this two-dimensional surface) from the valley's start. "
        f"Each Adam step x is projected on the gradient g: γ = xᵀx / xᵀg is the SGD step "
        f"size that would move as far along g, and its bias-corrected running average Λₜ "
        f"is the estimate. "
        + switched
        + f"Adam alone (same η and β) ends {m['adam_final_distance']:.1e} from it, its η/σ "
        f"still growing (right panel: ×{m['adam_eff_growth']:.1f} in w1 from the switch to "
        f"the end)."
    )
    return Scenario(
        "swats",
        "SWATS: from Adam to SGD",
        text,
        [tr, adam],
        m,
        figure_builders={
            "switch": lambda: plots.switch(
                tr, k, sgd_lr, others=[adam], title="SWATS on the valley"
            ),
        },
    )


#: every reproduction, in the lecture's order
SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "stuck": stuck,
    "tiny_lr": tiny_lr,
    "burst": burst,
    "decay": decay,
    "warmup": warmup,
    "summary": summary,
    "adabound": adabound,
    "lookahead": lookahead,
    "swats": swats,
}
