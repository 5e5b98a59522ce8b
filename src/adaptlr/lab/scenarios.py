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

from adaptlr import schedules

from . import plots
from .runs import Trajectory, run
from .surfaces import ELONGATED, RASTRIGIN, elongated_hessian

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
]


@dataclass
class Scenario:
    """One reproduction: its runs, the measured numbers, a paragraph and figure builders.

    ``title`` carries no number: the report numbers its sections in the order it writes them.
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


#: every reproduction, in the lecture's order
SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "stuck": stuck,
    "tiny_lr": tiny_lr,
    "burst": burst,
    "decay": decay,
    "warmup": warmup,
    "summary": summary,
}
