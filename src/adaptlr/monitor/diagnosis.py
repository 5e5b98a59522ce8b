"""Turn a window of monitor records into one of six diagnoses, with the figures that decided it.

The lecture's point: when the loss stops falling, the gradient is often *not* small; the
parameters bounce between the walls of a valley. The figures that tell the cases apart:

- loss change over the window (median of the first third against the last third, robust to
  single spikes): flat or not;
- gradient norm: small (a critical point) or not;
- cosine between consecutive gradients: strongly negative means the steps bounce (oscillating);
- update norm: rare steps far above the usual size are the lecture's Adagrad/RMS "burst";
- non-finite values or a loss/gradient that keeps growing: diverging;
- update norm relative to the parameter norm, and the loss's rate of fall: steps so small that
  the target lies tens of thousands of steps away (crawling, the lecture's η = 1e-7).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

KINDS = ("progressing", "crawling", "critical_point", "oscillating", "diverging", "bursting")

#: The projection, in steps, that `crawling`'s suggested learning-rate factor aims at (a tenth
#: of the default ``crawl_steps``: well inside the healthy runs' range, docs/monitor.md).
CRAWL_TARGET_STEPS = 1_000

SUGGESTIONS = {
    "progressing": "The loss is falling; nothing to change.",
    "critical_point": (
        "The gradient is small and the loss is flat: a critical point. Run the curvature check "
        "(monitor.curvature(loss_fn)) to tell a saddle point from a minimum."
    ),
    "saddle": (
        "A saddle point: the Hessian has a negative eigenvalue, so a way down exists. Add "
        "momentum, a larger learning rate or gradient noise (smaller batches) to leave along it."
    ),
    "minimum": (
        "A local minimum: no direction goes down. Stop here, or change the model, the data or "
        "the regularisation if the loss is still too high."
    ),
    "oscillating": (
        "The loss has stopped falling although the gradient is not small: consecutive gradients "
        "point against each other, so the parameters bounce between the walls of a valley. "
        "Lower the learning rate or add decay, or use an adaptive method that takes smaller "
        "steps in the steep directions."
    ),
    "diverging": (
        "The loss or the gradient is growing, or values became non-finite. Lower the learning "
        "rate (about 10x), add warm-up, clip the gradient norm, and check the data for NaN."
    ),
    "bursting": (
        "Rare steps far larger than usual: an adaptive method's sigma shrank after many small "
        "gradients, so one step overshot. Add learning-rate decay or warm-up, clip the update, "
        "or raise eps."
    ),
}


@dataclass
class Diagnosis:
    """What the monitor concludes about a window of training steps.

    Attributes:
        kind: one of `KINDS`: ``"progressing"``, ``"crawling"``, ``"critical_point"``,
            ``"oscillating"``, ``"diverging"``, ``"bursting"``.
        evidence: the figures that decided it, with ``"first_step"``, ``"last_step"`` and
            ``"records"`` naming the window; a ``"curvature"`` entry when the check ran.
        suggestion: what to do, in plain words.
        reason: one sentence with the deciding figures.
    """

    kind: str
    evidence: dict[str, Any] = field(default_factory=dict)
    suggestion: str = ""
    reason: str = ""

    def __str__(self) -> str:
        ev = self.evidence
        span = f"steps {ev.get('first_step')}-{ev.get('last_step')} ({ev.get('records')} records)"
        return f"{self.kind} over {span}: {self.reason}\nSuggestion: {self.suggestion}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (used for the log's ``"diagnosis"`` lines)."""
        return {
            "kind": self.kind,
            "evidence": self.evidence,
            "suggestion": self.suggestion,
            "reason": self.reason,
        }


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _thirds(values: list[float]) -> tuple[float, float]:
    """Median of the first and of the last third: a trend that one spike cannot fake.

    A third holds an even number of values (when it holds more than one), so that a value that
    alternates between two levels from one step to the next (the loss of a period-2
    oscillation) has the same median in both thirds; with an odd count each third's median
    would be the level of whichever parity it holds more of, and a loss that only bounces
    would read as a rise or a fall of the full gap between the two levels.
    """
    k = _third(len(values))
    return statistics.median(values[:k]), statistics.median(values[-k:])


def _third(n: int) -> int:
    """How many of `n` values each of `_thirds`' thirds holds."""
    k = max(1, n // 3)
    return k - k % 2 if k > 1 else k


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _steps(x: float) -> str:
    """A projected number of steps, to two figures: ``"20,000"``."""
    return f"{float(f'{x:.2g}'):,.0f}" if math.isfinite(x) and x < 1e15 else "infinitely many"


def diagnose_records(
    records: list[dict[str, Any]],
    window: int = 50,
    *,
    flat_tol: float = 0.01,
    loss_atol: float = 1e-8,
    grad_atol: float = 1e-4,
    grad_rtol: float = 1e-2,
    cos_tol: float = -0.3,
    rise_tol: float = 0.1,
    burst_factor: float = 10.0,
    burst_frac: float = 0.2,
    crawl_steps: float = 10_000,
) -> Diagnosis:
    """Diagnose the last `window` step records (as written by `Monitor` or read by `load_log`).

    Args:
        records: step records in step order; other record types are ignored. Records before the
            window count only for the gradient norm's running maximum ("small" is relative).
        window: how many of the last records to judge.
        flat_tol: the loss is flat when it fell by less than this fraction over the window.
        loss_atol: losses this close to 0 are compared in absolute terms instead.
        grad_atol, grad_rtol: the gradient is small below ``max(grad_atol, grad_rtol * max)``,
            where ``max`` is the largest gradient norm in `records`.
        cos_tol: consecutive gradients oppose each other when their median cosine is below this.
        rise_tol: the loss diverges when it rose by more than this fraction.
        burst_factor, burst_frac: a burst is an update larger than ``burst_factor`` times the
            window's median, on at most ``burst_frac`` of the records.
        crawl_steps: crawling (the lecture's η = 1e-7) is judged on two projections made
            from the window's measured rates: ``steps_to_move_params`` = 1 / the median
            ``update_ratio`` (|Δθ| / |θ|: the steps that updates of this size take to move
            the parameters by their own norm) and ``steps_to_fall_by_loss`` (the steps the
            loss, falling at the rate between the medians of the window's first and last
            thirds, takes to fall by its own size; infinite when it does not fall). With the
            gradient not small and consecutive gradients not opposed (median cosine >=
            `cos_tol`), the window is crawling when the loss is flat (below `flat_tol`), or
            when both projections (the loss one alone when the update is not measured) are at
            least `crawl_steps`. ``projected_steps`` is the smaller of the two. Both scale as
            1/η while the steps are small (the update is η times a direction; the loss falls
            by g·Δθ per step to first order), so the suggestion's factor is
            ``projected_steps / CRAWL_TARGET_STEPS`` (at least 2; 10 when no projection is
            finite). A run near the end of a schedule that decays η towards 0 can read as
            crawling: there it is the schedule that makes the steps small.
    """
    steps = [r for r in records if r.get("type", "step") == "step"]
    win = steps[-window:] if window > 0 else steps
    n = len(win)
    evidence: dict[str, Any] = {
        "first_step": win[0].get("step") if win else None,
        "last_step": win[-1].get("step") if win else None,
        "records": n,
        "window": window,
    }

    def done(kind: str, reason: str, key: str | None = None) -> Diagnosis:
        return Diagnosis(kind, evidence, SUGGESTIONS[key or kind], reason)

    # Non-finite values anywhere in the window end the discussion.
    nonfinite = sum(int(r.get("nonfinite") or 0) for r in win)
    bad_loss = [r.get("step") for r in win if "non_finite" in (r.get("loss_flags") or [])]
    if nonfinite or bad_loss:
        evidence["nonfinite_values"] = nonfinite
        evidence["nonfinite_loss_steps"] = bad_loss[:10]
        first_bad = next(
            (r.get("step") for r in win if r.get("nonfinite") or r.get("step") in bad_loss), None
        )
        evidence["first_nonfinite_step"] = first_bad
        return done(
            "diverging",
            f"{nonfinite} non-finite gradient/parameter values and {len(bad_loss)} non-finite "
            f"losses, first at step {first_bad}.",
        )

    losses = _finite([r.get("loss") for r in win])
    grads = _finite([r.get("grad_norm") for r in win])
    if n < 3 or len(grads) < 3:
        return Diagnosis(
            "progressing",
            evidence,
            "Too few records to judge; record more steps before diagnosing.",
            f"only {n} records in the window.",
        )

    g_first, g_last = _thirds(grads)
    g_max = max(_finite([r.get("grad_norm") for r in steps]) or [g_last])
    grad_growth = g_last / g_first if g_first > 0 else math.inf
    evidence.update(grad_norm_first=g_first, grad_norm_last=g_last, grad_norm_growth=grad_growth)
    evidence["grad_norm_max_seen"] = g_max

    if len(losses) >= 3:
        l_first, l_last = _thirds(losses)
        scale = max(abs(l_first), loss_atol)
        loss_drop = (l_first - l_last) / scale  # > 0: the loss fell
        evidence.update(loss_first=l_first, loss_last=l_last, loss_rel_drop=loss_drop)
    else:
        # No losses recorded: judge by the gradient alone.
        loss_drop = 0.0 if grad_growth < 1 + rise_tol else -math.inf
        evidence["loss_rel_drop"] = None

    cosines = _finite([r.get("cos") for r in win])
    cos_med = statistics.median(cosines) if cosines else None
    evidence["cos_median"] = cos_med

    # Rare, isolated steps far above the usual update size (or gradient size if the update is
    # not measured): the lecture's burst of an adaptive method.
    sizes = _finite([r.get("update_norm") for r in win]) or grads
    med = statistics.median(sizes)
    spikes = [i for i, s in enumerate(sizes) if s > burst_factor * med] if med > 0 else []
    # A burst is rare and ends: either the last update is back to the usual size, or it has only
    # just started (at most 3 steps). A spike that keeps growing is the onset of a divergence.
    calmed = bool(spikes) and sizes[-1] <= burst_factor * med
    if spikes and len(spikes) <= max(1, burst_frac * n) and (calmed or len(spikes) <= 3):
        evidence.update(
            update_norm_median=med,
            update_norm_max=max(sizes),
            burst_steps=[win[i].get("step") for i in spikes][:20],
            burst_ratio=max(sizes) / med,
        )
        return done(
            "bursting",
            f"{len(spikes)} of {n} steps were more than {_fmt(burst_factor)}x the median update "
            f"norm ({_fmt(med)}), the largest {_fmt(max(sizes) / med)}x, first at step "
            f"{evidence['burst_steps'][0]}.",
        )

    # Growth that the medians of thirds show is sustained, not a single spike.
    if loss_drop < -rise_tol or (loss_drop < -flat_tol and grad_growth > 2.0) or grad_growth > 1e3:
        return done(
            "diverging",
            f"the loss rose by {_fmt(-loss_drop * 100)}% and the gradient norm grew "
            f"{_fmt(grad_growth)}x over the window.",
        )

    flat = loss_drop < flat_tol
    grad_small = g_last < max(grad_atol, grad_rtol * g_max)
    evidence.update(loss_flat=flat, grad_small=grad_small)
    agree = cos_med is None or cos_med >= cos_tol
    if not flat:
        crawl = _crawl_evidence(win, evidence, loss_drop)
        if agree and not grad_small and all(x >= crawl_steps for x in crawl):
            return _crawling(evidence, win, "falls")
        return done("progressing", f"the loss fell by {_fmt(loss_drop * 100)}% over the window.")
    if grad_small:
        return done(
            "critical_point",
            f"the loss changed by {_fmt(-loss_drop * 100)}% while the gradient norm is small "
            f"({_fmt(g_last)}, the largest seen was {_fmt(g_max)}).",
        )
    if cos_med is not None and cos_med < cos_tol:
        return done(
            "oscillating",
            f"the loss changed by only {_fmt(-loss_drop * 100)}% while the gradient norm stayed "
            f"at {_fmt(g_last)} ({_fmt(grad_growth)}x its value at the window's start) and "
            f"consecutive gradients point against each other (median cosine {_fmt(cos_med)}).",
        )
    _crawl_evidence(win, evidence, loss_drop)
    return _crawling(evidence, win, "is flat")


def _crawl_evidence(
    win: list[dict[str, Any]], evidence: dict[str, Any], drop: float
) -> list[float]:
    """Adds crawling's projections to `evidence` (see `diagnose_records`' ``crawl_steps``);
    returns those that were measured."""
    ratios = _finite([r.get("update_ratio") for r in win])
    r_med = statistics.median(ratios) if ratios else None
    to_move = None if r_med is None else (1 / r_med if r_med > 0 else math.inf)
    # the steps between the centres of the two thirds `loss_rel_drop` compares
    steps = [r.get("step") for r in win if _finite([r.get("loss")])]
    k = _third(len(steps))
    span = statistics.median(steps[-k:]) - statistics.median(steps[:k]) if steps else 0
    to_fall = span / drop if drop > 0 and span > 0 else math.inf
    measured = [x for x in (to_move, to_fall) if x is not None]
    evidence.update(
        update_ratio_median=r_med,
        steps_to_move_params=to_move,
        steps_to_fall_by_loss=to_fall,
        projected_steps=min(measured),
    )
    return measured


def _crawling(evidence: dict[str, Any], win: list[dict[str, Any]], loss: str) -> Diagnosis:
    """The crawling diagnosis, its suggested learning rate derived from the projection."""
    projected = evidence["projected_steps"]
    factor = max(2.0, projected / CRAWL_TARGET_STEPS) if math.isfinite(projected) else 10.0
    factor = float(f"{factor:.1g}")
    lr = (win[-1].get("lr") or [None])[0]
    evidence["lr_factor"] = factor
    evidence["suggested_lr"] = lr * factor if isinstance(lr, (int, float)) else None
    r_med = evidence["update_ratio_median"]
    size = "not measured" if r_med is None else f"{_fmt(r_med)} of their norm"
    drop = evidence.get("loss_rel_drop")
    change = "not recorded" if drop is None else f"{_fmt(drop * 100)}% over the window"
    reason = (
        f"the loss {loss} ({change}) and "
        f"consecutive gradients agree, but each update moves the parameters by {size}: at "
        f"this rate the target is ~{_steps(projected)} steps away."
    )
    to = "" if evidence["suggested_lr"] is None else f" (to about {_fmt(evidence['suggested_lr'])})"
    suggestion = (
        f"The steps are too small: raise the learning rate about {factor:,g}x{to}, which "
        f"brings the projection to ~{CRAWL_TARGET_STEPS:,} steps; raise it in stages (or find "
        "it with adaptlr.lr_find) and watch for oscillation, or use an adaptive method (Adam, "
        "RMSprop) that enlarges the steps in flat directions."
    )
    return Diagnosis("crawling", evidence, suggestion, reason)
