"""What one optimizer step measured about itself, for :class:`adaptlr.monitor.Monitor`.

``optimizer.request_stats()`` asks the next ``step()`` of an :class:`adaptlr.Optimizer` to
measure, per param group, the gradient's, the update's and the new parameters' sums of squares,
the gradient at a fixed sample of elements and its products with itself and with the previous
measured step's sample (the cosine between consecutive gradients), and η_t/σ_t
(:meth:`adaptlr.core.Transform.eta_over_sigma`) at some of those elements. On the fast path
these come out of the step's own pass over memory (``step_stats`` in the generated kernels); on
the reference path they are computed from the tensors the step already holds. Either way the
monitor needs no pass of its own.

The sums are defined once, :data:`STATISTICS` (each a Σ a·b whose factors are written over the
step's :class:`Leaves`), as η_t/σ_t is by ``eta_over_sigma``: ``kernels.codegen`` generates
them into the numba and Triton ``step_stats`` kernels (sums per chunk in the compute type,
then float64 totals), :func:`reference_stats` evaluates them on float64 tensors
(:func:`evaluate`), and the monitor evaluates them on its own copies for other optimizers.

The sample is every ``stride``-th element of the group's stepped parameters laid end to end
(the fast path: of its flat state, which pads each tensor to a 16-element boundary), with
``stride = ceil(elements / sample)``: a fixed, evenly spread subset, the same elements from one
step to the next while the set of stepped parameters does not change (``sample_key``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .core.base import Transform, _real

#: default number of sampled elements per group: percentiles of 16k values are within 0.4% of
#: rank of the exact ones (the standard error of an empirical quantile's rank is at most
#: 0.5/sqrt(n)), and a sampled cosine's error is about 1/sqrt(n) = 0.008
SAMPLE = 16_384
#: η_t/σ_t is kept at every k-th sampled element, at most this many: the standard error of its
#: percentiles' ranks is then at most 0.8%, and the monitor selects them with one
#: ``np.partition`` of at most 4,096 values per group
EFF_SAMPLE = 4_096


@dataclass
class Leaves:
    """What a statistic is written over, per element of a measured step: the gradient ``g``
    (as the update reads it: cast up to the state's dtype, complex as pairs of reals), the
    parameter before (``p_old``) and after (``p_new``) the step, and ``g_prev``, the group's
    previous measured step's gradient at the same sampled element. An evaluator passes the
    leaves it has (the monitor measures the gradient before the step, the parameters after).

    Attributes:
        g: the gradient as the update reads it; None where the evaluator has none.
        p_old: the parameter before the step; None where the evaluator has none.
        p_new: the parameter after the step; None where the evaluator has none.
        g_prev: the previous measured step's gradient at the same sampled element; None where the
            evaluator has none.
    """

    g: Any = None
    p_old: Any = None
    p_new: Any = None
    g_prev: Any = None


@dataclass(frozen=True)
class Statistic:
    """One figure of a measured step: Σ a·b over the step's elements (over the sampled ones
    if ``sampled``), where ``(a, b) = factors(leaves)``, written with arithmetic operators
    only, so that the same definition runs on symbols (``kernels.codegen`` generates it into
    the ``step_stats`` kernels), on float64 tensors (:func:`reference_stats`) and on lists of
    tensors (the monitor's own path, for other optimizers). ``a is b`` marks a sum of squares,
    which every evaluator takes as such (a norm, a vectorised ``acc + x²``).

    Attributes:
        name: the figure's name, a field of :class:`StepStats` (``"grad_sq"``, ...).
        factors: a function of :class:`Leaves` returning the pair (a, b), written with arithmetic
            operators only.
        sampled: sum over the sampled elements only (True) or over every element (False).
    """

    name: str
    factors: Callable[[Leaves], tuple[Any, Any]]
    sampled: bool = False


def _update(x: Leaves) -> tuple[Any, Any]:
    u = x.p_new - x.p_old
    return u, u


#: The one definition of a measured step's sums, in the order of the kernels' columns
#: (``stats[k, j]`` of the generated ``step_stats``, ``T[j]``, :class:`StepStats`' fields)
STATISTICS: tuple[Statistic, ...] = (
    Statistic("grad_sq", lambda x: (x.g, x.g)),
    Statistic("update_sq", _update),
    Statistic("param_sq", lambda x: (x.p_new, x.p_new)),
    Statistic("sample_dot_prev", lambda x: (x.g, x.g_prev), sampled=True),
    Statistic("sample_sq", lambda x: (x.g, x.g), sampled=True),
)
#: by name
STATISTIC = {s.name: s for s in STATISTICS}
#: the statistic also summed per tensor (``StepStats.tensor_grad_sq``, ``T[len(STATISTICS) + t]``)
PER_TENSOR = "grad_sq"


@dataclass(frozen=True)
class StatsRequest:
    """What ``request_stats`` asked of the next step.

    Attributes:
        sample: about how many elements of each group to sample (default :data:`SAMPLE`); an int >=
            1.
        eff_lr: also measure η_t/σ_t at the sampled elements; True or False.
    """

    sample: int = SAMPLE
    eff_lr: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.sample, bool) or not isinstance(self.sample, int) or self.sample < 1:
            raise ValueError(f"request_stats: sample must be an int >= 1, got {self.sample!r}")
        if not isinstance(self.eff_lr, bool):
            raise TypeError(f"request_stats: eff_lr must be True or False, got {self.eff_lr!r}")


@dataclass
class StepStats:
    """One param group's measurements of one step (float64 figures, tensors on the CPU).

    ``tensor_grad_sq`` has one entry per parameter that had a gradient, in group order;
    ``grad_sample`` is the gradient at the sampled elements, which are the same from one step
    to the next exactly when ``sample_key`` is equal; ``eff_lr`` is η_t/σ_t at every
    :func:`eff_step`-th of them. ``serial`` numbers the measured steps (of every group and
    optimizer); ``sample_dot_prev`` is Σ g·g' over the sample, with g' the sampled gradient of
    the group's previous measured step (``prev_serial``), where that step sampled the same
    elements, else ``None``; ``sample_sq`` is Σ g² over the sample. The cosine between the two
    gradients' samples is then ``sample_dot_prev / sqrt(sample_sq * its sample_sq)``.

    Attributes:
        grad_sq: Σ g² over the group's gradients.
        update_sq: Σ (θ_new − θ_old)² over the group's parameters.
        param_sq: Σ θ_new² over the group's parameters.
        tensor_grad_sq: Σ g² per parameter that had a gradient (a 1-d float64 tensor).
        grad_sample: the gradient at the sampled elements (a 1-d float64 tensor).
        sample_key: equal between two steps exactly when they sampled the same elements.
        eff_lr: η_t/σ_t at every :func:`eff_step`-th sampled element, or None when not asked.
        fused: whether the step ran on the fused fast path (True) or the reference path.
        serial: the measured step's number (:func:`next_serial`).
        sample_sq: Σ g² over the sample.
        prev_serial: ``serial`` of the group's previous measured step, or None.
        sample_dot_prev: Σ g·g' over the sample, or None (see above).
    """

    grad_sq: float
    update_sq: float
    param_sq: float
    tensor_grad_sq: Tensor
    grad_sample: Tensor
    sample_key: Hashable
    eff_lr: Tensor | None
    fused: bool
    serial: int = 0
    sample_sq: float = 0.0
    prev_serial: int | None = None
    sample_dot_prev: float | None = None


_SERIALS = itertools.count(1)


def next_serial() -> int:
    """A number for a measured step, distinct from every other one in this process."""
    return next(_SERIALS)


def stride_for(elements: int, sample: int) -> int:
    """Every how many elements one is sampled so that about ``sample`` are.

    Args:
        elements: how many elements there are; an int >= 0 (0: the stride is 1).
        sample: about how many to sample; an int >= 1.
    """
    return max(1, math.ceil(elements / sample)) if elements else 1


def eff_step(samples: int) -> int:
    """Every how many sampled elements η_t/σ_t is computed (at most :data:`EFF_SAMPLE`).

    Args:
        samples: how many elements were sampled; an int >= 0.
    """
    return max(1, math.ceil(samples / EFF_SAMPLE))


def snapshot(params: Sequence[Tensor]) -> list[Tensor]:
    """Copies of the parameters (real views) before a reference-path step, to measure it.

    Args:
        params: the group's parameters (complex ones are copied as pairs of reals).
    """
    return [_real(p.detach()).clone() for p in params]


def evaluate(stat: Statistic, leaves: Leaves) -> Tensor:
    """``stat`` on float64 tensors: a 0-d float64 tensor (the reference path's arithmetic).

    Args:
        stat: the statistic to evaluate.
        leaves: its leaves, as float64 tensors of one parameter.
    """
    a, b = stat.factors(leaves)
    if a is b:
        return torch.linalg.vector_norm(a, dtype=torch.float64) ** 2
    return (a * b).sum(dtype=torch.float64)


def reference_stats(
    transform: Transform,
    params: Sequence[Tensor],
    old: Sequence[Tensor],
    states: Sequence[dict[str, Tensor]],
    count: int,
    request: StatsRequest,
    prev: StepStats | None = None,
) -> StepStats:
    """Measure a reference-path step after it ran: ``old`` are the parameters before it.

    ``count`` is the group's number of applied updates *after* this one; ``prev`` is the
    group's previous measured step (for ``sample_dot_prev``).

    Args:
        transform: the chain that made the step (its buffers give η_t/σ_t).
        params: the group's parameters that stepped, after the step, with their gradients.
        old: :func:`snapshot` of ``params`` before the step.
        states: the optimizer's state of each of ``params``, after the step.
        count: the group's number of applied updates after this one.
        request: what to measure.
        prev: the group's previous measured step, or None.
    """
    grads = [_real(p.grad) for p in params]
    new = [_real(p.detach()) for p in params]
    numels = [g.numel() for g in grads]
    stride = stride_for(sum(numels), request.sample)
    whole = [s for s in STATISTICS if not s.sampled]
    sums: dict[str, list[Tensor]] = {s.name: [] for s in whole}
    samples, eff = [], []
    start = 0
    for g, o, n, st, numel in zip(grads, old, new, states, numels):
        leaves = Leaves(g=g.detach().double(), p_old=o.double(), p_new=n.double())
        for s in whole:
            sums[s.name].append(evaluate(s, leaves).cpu())
        first = (-start) % stride
        start += numel
        if first >= numel:
            continue
        samples.append(g.reshape(-1)[first::stride].double().cpu())
        if request.eff_lr:
            keys = transform.buffer_keys
            part = {k: v for k, v in st.items() if k not in keys}
            part.update({k: _real(st[k]).reshape(-1)[first::stride] for k in keys})
            try:  # the step is done: a measurement must not fail it
                e = transform.effective_lr_one(part, count, getattr(states, "shared", None))
            except Exception:  # noqa: BLE001
                e = None
            if e is not None:
                eff.append(e.detach().reshape(-1).double().cpu())
    empty = torch.zeros(0, dtype=torch.float64)
    per = {k: torch.stack(v) if v else empty for k, v in sums.items()}
    sample = torch.cat(samples) if samples else empty
    eff_lr = torch.cat(eff) if eff else None
    if eff_lr is not None:
        eff_lr = eff_lr[:: eff_step(len(eff_lr))]
    key = ("reference", tuple(map(id, params)), tuple(numels), stride)
    same = prev is not None and prev.sample_key == key
    at_sample = Leaves(g=sample, g_prev=prev.grad_sample if same else None)  # type: ignore[union-attr]
    dot = evaluate(STATISTIC["sample_dot_prev"], at_sample) if same else None
    return StepStats(
        grad_sq=float(per["grad_sq"].sum()),
        update_sq=float(per["update_sq"].sum()),
        param_sq=float(per["param_sq"].sum()),
        tensor_grad_sq=per[PER_TENSOR],
        grad_sample=sample,
        sample_key=key,
        eff_lr=eff_lr,
        fused=False,
        serial=next_serial(),
        sample_sq=float(evaluate(STATISTIC["sample_sq"], at_sample)),
        prev_serial=prev.serial if same else None,  # type: ignore[union-attr]
        sample_dot_prev=None if dot is None else float(dot),
    )
