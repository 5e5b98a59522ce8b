"""Run real adaptlr optimizers on a surface and record everything the pictures need.

Speed: adaptlr's optimizers are elementwise, so ``R`` independent runs from ``R`` start points
are one parameter of shape ``(R, 2)``; the surface's analytic gradient is written into
``.grad`` (no autograd graph) and the loop runs under ``torch.no_grad()``. Loss, gradient
norm and step sizes are computed afterwards from the recorded parameters, in one vectorised
pass, so the loop itself does only: gradient, step, copy. A chain with global-norm clipping
couples the rows, so such runs are stepped one start at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch

import adaptlr
from adaptlr.core import Transform
from adaptlr.torch_optim import SCHEDULE_KEY

from .specs import OptimizerSpec, parse_optimizer, parse_schedule
from .surfaces import Surface

__all__ = ["Trajectory", "run", "run_many", "OptimizerLike"]

#: what :func:`run` accepts as an optimizer: a spec string (``"adam:lr=0.1"``), an
#: :class:`OptimizerSpec`, an adaptlr core chain, or a factory ``params -> Optimizer``
# a runtime alias (py3.10 evaluates it), hence Union rather than a | b in a string
OptimizerLike = Union[str, OptimizerSpec, Transform, Callable[[list[torch.Tensor]], Any]]  # noqa: UP007


@dataclass
class Trajectory:
    """What one optimizer did from ``R`` start points over ``T`` steps (numpy arrays).

    Attributes:
        label: legend text.
        surface: the surface it ran on.
        params: ``(T+1, R, 2)`` parameters, the start first.
        loss: ``(T+1, R)`` loss at each recorded point.
        grad_norm: ``(T+1, R)`` Euclidean norm of the gradient there.
        step: ``(T, R, 2)`` the update ``theta_{t+1} - theta_t`` per coordinate.
        effective_lr: ``(T, R, 2)`` eta_t / sigma_t per coordinate as reported by
            ``optimizer.effective_lr()`` after each step, or ``None`` for optimizers without a
            magnitude (SGD) or without that method.
        lr: ``(T,)`` the learning rate eta_t applied at each step (``current_lr()``).
    """

    label: str
    surface: Surface
    params: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    step: np.ndarray
    effective_lr: np.ndarray | None
    lr: np.ndarray

    @property
    def steps(self) -> int:
        """Number of updates T."""
        return self.step.shape[0]

    @property
    def runs(self) -> int:
        """Number of start points R."""
        return self.params.shape[1]

    def distance(self) -> np.ndarray:
        """``(T+1, R)`` distance to the nearest known minimum."""
        d = self.surface.distance_to_minimum(torch.from_numpy(self.params))
        return d.numpy()

    def gap(self) -> np.ndarray:
        """``(T+1, R)`` loss above the known minimum value (the loss if it is unknown)."""
        return self.loss - (self.surface.min_value or 0.0)

    def steps_to_reach(self, tol: float) -> np.ndarray:
        """Per run: the first step after which the distance stays below ``tol`` (-1: never).

        Args:
            tol: the distance to the nearest known minimum to stay below; a number > 0.
        """
        d = self.distance()
        inside = d < tol
        # last step that was outside; the run has "arrived" one step later, if it stays
        outside_rev = ~inside[::-1]
        last_out = np.where(outside_rev.any(0), d.shape[0] - 1 - np.argmax(outside_rev, axis=0), -1)
        out = last_out + 1
        out[out > d.shape[0] - 1] = -1
        return out


def _as_spec(optimizer: OptimizerLike) -> OptimizerLike:
    return parse_optimizer(optimizer) if isinstance(optimizer, str) else optimizer


def _build(optimizer: OptimizerLike, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    if isinstance(optimizer, OptimizerSpec):
        return optimizer.build(params)
    if isinstance(optimizer, Transform):
        return adaptlr.Optimizer(params, optimizer)
    if callable(optimizer):
        return optimizer(params)
    raise TypeError(
        "optimizer must be a spec string, an OptimizerSpec, an adaptlr.core chain or a "
        f"factory params -> optimizer, got {type(optimizer).__name__}"
    )


def _label(optimizer: OptimizerLike) -> str:
    if isinstance(optimizer, OptimizerSpec):
        return optimizer.label
    if isinstance(optimizer, Transform):
        return "chain"
    return getattr(optimizer, "__name__", type(optimizer).__name__)


def _couples_rows(opt: torch.optim.Optimizer) -> bool:
    """True if a step mixes elements (a part with sums: global-norm clipping, a distance
    estimate): rows cannot share a tensor."""
    transform_for = getattr(opt, "transform_for", None)
    if transform_for is None:
        # a foreign optimizer (e.g. torch.optim.LBFGS) may do anything: do not batch it
        return not isinstance(opt, adaptlr.Optimizer)
    return transform_for(opt.param_groups[0]).has_sums


def _lr_history(opt: torch.optim.Optimizer, steps: int) -> torch.Tensor:
    """eta_t for t = 0..steps-1, from the first group's lr.

    A schedule is a pure function of the applied-step count, which is t at update t + 1, so
    it is evaluated once after the loop instead of asking ``current_lr()`` in the hot loop.
    """
    group = opt.param_groups[0]
    lr = group.get(SCHEDULE_KEY) or group.get("lr", float("nan"))  # adaptlr keeps one there
    if callable(lr):
        return torch.tensor([float(lr(t)) for t in range(steps)], dtype=torch.float64)
    return torch.full((steps,), float(lr), dtype=torch.float64)


def _loop(
    surface: Surface,
    optimizer: OptimizerLike,
    start: torch.Tensor,
    steps: int,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The hot loop: ``start`` is ``(R, 2)``; returns params, effective lr, lr history."""
    p = start.clone().requires_grad_(True)
    opt = _build(optimizer, [p])
    hist = torch.empty((steps + 1, *p.shape), dtype=p.dtype)
    hist[0] = p.detach()
    eff: torch.Tensor | None = None
    eff_fn = getattr(opt, "effective_lr", None)
    with torch.no_grad():
        for t in range(steps):
            p.grad = surface.grad(p)
            opt.step()
            hist[t + 1] = p
            if eff_fn is not None:
                e = eff_fn()[0][0]
                if e is None:
                    eff_fn = None  # no magnitude part (SGD): stop asking, the loop is hot
                else:
                    if eff is None:
                        eff = torch.full((steps, *p.shape), float("nan"), dtype=p.dtype)
                    eff[t] = e
    return hist, eff, _lr_history(opt, steps)


def run(
    surface: Surface,
    optimizer: OptimizerLike,
    starts: Sequence[Sequence[float]] | torch.Tensor | None = None,
    steps: int = 500,
    *,
    schedule: str | Callable[[int], float] | None = None,
    label: str | None = None,
    batch: bool | None = None,
    dtype: torch.dtype = torch.float64,
) -> Trajectory:
    """Run one optimizer on ``surface`` from each start point for ``steps`` updates.

    Args:
        surface: the error surface.
        optimizer: ``"adam:lr=0.1"``, an :class:`OptimizerSpec`, an adaptlr core chain
            (wrapped in :class:`adaptlr.Optimizer`) or a factory ``params -> optimizer``.
        starts: start point(s), ``(2,)`` or ``(R, 2)``; the surface's default start if None.
        steps: number of updates.
        schedule: a schedule (callable ``step -> lr``) or a spec for
            :func:`adaptlr.schedules.from_spec`; it replaces the spec's ``lr`` (whose value
            becomes the schedule's peak when the spec text leaves ``lr`` out). Only for
            specs; a factory or chain carries its own schedule.
        label: legend text (derived from the spec if None).
        batch: run all starts as one ``(R, 2)`` tensor; None decides from the chain (no
            batching with global-norm clipping).
        dtype: float64 by default, so that the lecture's tiny effects are not rounding.
    """
    optimizer = _as_spec(optimizer)
    if schedule is not None:
        if not isinstance(optimizer, OptimizerSpec):
            raise ValueError("schedule= needs an optimizer spec; a chain carries its own lr")
        name = schedule.split(":")[0] if isinstance(schedule, str) else None
        sched = parse_schedule(schedule, optimizer.lr) if isinstance(schedule, str) else schedule
        optimizer = optimizer.with_schedule(sched, name)
    if starts is None:
        starts = [surface.start]
    x0 = torch.as_tensor(starts, dtype=dtype).reshape(-1, 2)
    if batch is None:
        probe = _build(optimizer, [torch.zeros(1, 2, dtype=dtype, requires_grad=True)])
        batch = not _couples_rows(probe)
    if batch or x0.shape[0] == 1:
        hist, eff, lrs = _loop(surface, optimizer, x0, steps)
    else:
        parts = [_loop(surface, optimizer, x0[i : i + 1], steps) for i in range(x0.shape[0])]
        hist = torch.cat([h for h, _, _ in parts], dim=1)
        effs = [e for _, e, _ in parts]
        eff = None if effs[0] is None else torch.cat(effs, dim=1)  # type: ignore[arg-type]
        lrs = parts[0][2]
    with torch.no_grad():
        loss = surface.loss(hist)
        grad_norm = surface.grad(hist).norm(dim=-1)
    return Trajectory(
        label=label or _label(optimizer),
        surface=surface,
        params=hist.numpy(),
        loss=loss.numpy(),
        grad_norm=grad_norm.numpy(),
        step=(hist[1:] - hist[:-1]).numpy(),
        effective_lr=None if eff is None else eff.numpy(),
        lr=lrs.numpy(),
    )


def run_many(
    surface: Surface,
    optimizers: Sequence[OptimizerLike],
    starts: Sequence[Sequence[float]] | torch.Tensor | None = None,
    steps: int = 500,
    *,
    schedule: str | Callable[[int], float] | None = None,
) -> list[Trajectory]:
    """:func:`run` for each optimizer, same surface, starts, steps and schedule.

    Args:
        surface: the error surface.
        optimizers: each as :func:`run` takes it: a spec string (``"adam:lr=0.1"``), an
            :class:`OptimizerSpec`, an adaptlr core chain or a factory ``params -> optimizer``.
        starts: start point(s), ``(2,)`` or ``(R, 2)``; the surface's default start if None.
        steps: number of updates of each (default 500).
        schedule: a schedule (callable ``step -> lr``) or a spec for
            :func:`adaptlr.schedules.from_spec`, given to every spec as in :func:`run`; None:
            none.
    """
    return [run(surface, o, starts, steps, schedule=schedule) for o in optimizers]
