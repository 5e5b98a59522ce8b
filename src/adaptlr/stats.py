"""What one optimizer step measured about itself, for :class:`adaptlr.monitor.Monitor`.

``optimizer.request_stats()`` asks the next ``step()`` of an :class:`adaptlr.Optimizer` to
measure, per param group, the gradient's, the update's and the new parameters' sums of squares,
the gradient at a fixed sample of elements and its products with itself and with the previous
measured step's sample (the cosine between consecutive gradients), and η_t/σ_t
(:meth:`adaptlr.core.Transform.eta_over_sigma`) at some of those elements. On the fast path
these come out of the step's own pass over memory (``step_stats`` in the generated kernels); on
the reference path they are computed from the tensors the step already holds. Either way the
monitor needs no pass of its own.

The sample is every ``stride``-th element of the group's stepped parameters laid end to end
(the fast path: of its flat state, which pads each tensor to a 16-element boundary), with
``stride = ceil(elements / sample)``: a fixed, evenly spread subset, the same elements from one
step to the next while the set of stepped parameters does not change (``sample_key``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class StatsRequest:
    """What ``request_stats`` asked of the next step."""

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
    """Every how many elements one is sampled so that about ``sample`` are."""
    return max(1, math.ceil(elements / sample)) if elements else 1


def eff_step(samples: int) -> int:
    """Every how many sampled elements η_t/σ_t is computed (at most :data:`EFF_SAMPLE`)."""
    return max(1, math.ceil(samples / EFF_SAMPLE))


def snapshot(params: Sequence[Tensor]) -> list[Tensor]:
    """Copies of the parameters (real views) before a reference-path step, to measure it."""
    return [_real(p.detach()).clone() for p in params]


def _sq(tensors: Sequence[Tensor]) -> Tensor:
    """Per-tensor sums of squares, float64, on the CPU."""
    if not tensors:
        return torch.zeros(0, dtype=torch.float64)
    return torch.stack(
        [torch.linalg.vector_norm(t.detach(), dtype=torch.float64).cpu() ** 2 for t in tensors]
    )


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
    """
    grads = [_real(p.grad) for p in params]
    new = [_real(p.detach()) for p in params]
    numels = [g.numel() for g in grads]
    stride = stride_for(sum(numels), request.sample)
    tensor_grad_sq = _sq(grads)
    deltas = [n.double() - o.double() for n, o in zip(new, old)]
    samples, eff = [], []
    start = 0
    for g, st, n in zip(grads, states, numels):
        first = (-start) % stride
        start += n
        if first >= n:
            continue
        samples.append(g.reshape(-1)[first::stride].double().cpu())
        if request.eff_lr:
            keys = transform.buffer_keys
            part = {k: v for k, v in st.items() if k not in keys}
            part.update({k: _real(st[k]).reshape(-1)[first::stride] for k in keys})
            try:  # the step is done: a measurement must not fail it
                e = transform.effective_lr(part, count)
            except Exception:  # noqa: BLE001
                e = None
            if e is not None:
                eff.append(e.detach().reshape(-1).double().cpu())
    sample = torch.cat(samples) if samples else torch.zeros(0, dtype=torch.float64)
    eff_lr = torch.cat(eff) if eff else None
    if eff_lr is not None:
        eff_lr = eff_lr[:: eff_step(len(eff_lr))]
    key = ("reference", tuple(map(id, params)), tuple(numels), stride)
    same = prev is not None and prev.sample_key == key
    return StepStats(
        grad_sq=float(tensor_grad_sq.sum()),
        update_sq=float(_sq(deltas).sum()),
        param_sq=float(_sq(new).sum()),
        tensor_grad_sq=tensor_grad_sq,
        grad_sample=sample,
        sample_key=key,
        eff_lr=eff_lr,
        fused=False,
        serial=next_serial(),
        sample_sq=float((sample * sample).sum()),
        prev_serial=prev.serial if same else None,  # type: ignore[union-attr]
        sample_dot_prev=float((sample * prev.grad_sample).sum()) if same else None,  # type: ignore[union-attr]
    )
