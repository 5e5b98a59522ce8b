r"""η_t and the other scalings: learning rate (constant or scheduled), weight decay,
``maximize`` and clipping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._checks import LR, NONNEGATIVE
from .base import PROCESS_GROUP, Context, Part, Sum, Value, resolve


@dataclass(frozen=True, repr=False)
class scale_by_learning_rate(Part):
    r"""Step *against* the update by η_t: :math:`u \leftarrow -\eta_t\, u`.

    ``lr`` is a number or a schedule ``count -> η`` (see :mod:`adaptlr.schedules`), evaluated
    at the number of updates applied before this one.

    Args:
        lr (float | Callable[[int], float]): η, the learning rate; a finite number >= 0, or a
            callable (a schedule) of the group's step count.
    """

    lr: Value
    is_scale = True

    def __post_init__(self) -> None:
        self._check_fields(lr=LR)

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        return {"lr": resolve(self.lr, ctx.count)}, {}

    def apply(self, u, p, buf, c, ops):
        return -c["lr"] * u, {}

    def scale(self, c: Mapping[str, float]) -> float:
        return c["lr"]


@dataclass(frozen=True, repr=False)
class scale_by_lr_decay(Part):
    r"""torch.optim.Adagrad's ``lr_decay``: :math:`u \leftarrow u / (1 + (t-1)\,d)`.

    Unlike a schedule it follows each tensor's own step count :math:`t`, as torch does.

    Args:
        lr_decay (float | Callable[[int], float]): d; a finite number >= 0, or a callable (a
            schedule) of the group's step count.
    """

    lr_decay: Value
    is_scale = True

    def __post_init__(self) -> None:
        self._check_fields(lr_decay=NONNEGATIVE)

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        return {"f": 1.0 / (1.0 + (ctx.step - 1) * resolve(self.lr_decay, ctx.count))}, {}

    def apply(self, u, p, buf, c, ops):
        return c["f"] * u, {}

    def scale(self, c: Mapping[str, float]) -> float:
        return c["f"]


@dataclass(frozen=True, repr=False)
class scale(Part):
    r"""Multiply by a constant: :math:`u \leftarrow s\,u`.

    Args:
        factor (float | Callable[[int], float]): s; a finite number (of either sign), or a callable
            (a schedule) of the group's step count.
    """

    factor: Value

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        return {"factor": resolve(self.factor, ctx.count)}, {}

    def apply(self, u, p, buf, c, ops):
        return c["factor"] * u, {}


@dataclass(frozen=True, repr=False)
class negate(Part):
    r"""``maximize=True``: ascend instead of descend, :math:`u \leftarrow -u`."""

    def apply(self, u, p, buf, c, ops):
        return -u, {}


@dataclass(frozen=True, repr=False)
class add_decayed_weights(Part):
    r"""Weight decay :math:`u \leftarrow u + \lambda\theta`.

    Before a magnitude it is *coupled* (L2 regularisation: the decay is divided by σ, as in
    torch's Adam ``weight_decay``); after the magnitude and before the learning rate it is
    *decoupled* (AdamW: :math:`\theta \leftarrow \theta - \eta_t(u + \lambda\theta)`).

    Args:
        weight_decay (float | Callable[[int], float]): λ; a finite number >= 0, or a callable (a
            schedule) of the group's step count.
    """

    weight_decay: Value

    def __post_init__(self) -> None:
        self._check_fields(weight_decay=NONNEGATIVE)

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        return {"weight_decay": resolve(self.weight_decay, ctx.count)}, {}

    def apply(self, u, p, buf, c, ops):
        return u + c["weight_decay"] * p, {}


@dataclass(frozen=True, repr=False)
class add_constant(Part):
    r"""Add a number to every element: :math:`u \leftarrow u + \lambda`.

    torch-optimizer 0.3.0's SGDW "weight decay" (``p.add_(weight_decay, alpha=-lr)`` adds
    the *number* λ, not λθ): before :class:`~adaptlr.core.scale_by_learning_rate` it moves
    every element by −ηλ whatever its value. Kept so that :class:`adaptlr.SGDW` can give
    that package's results; decay proportional to θ is
    :class:`~adaptlr.core.add_decayed_weights`.

    Args:
        value (float | Callable[[int], float]): λ; a finite number >= 0, or a callable (a schedule)
            of the group's step count.
    """

    value: Value

    def __post_init__(self) -> None:
        self._check_fields(value=NONNEGATIVE)

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        return {"value": resolve(self.value, ctx.count)}, {}

    def apply(self, u, p, buf, c, ops):
        return u + c["value"], {}


@dataclass(frozen=True, repr=False)
class clip_by_value(Part):
    r"""Clip each element: :math:`u \leftarrow \min(\max(u, -c), c)`.

    Args:
        max_value (float | Callable[[int], float]): c; a finite number >= 0, or a callable (a
            schedule) of the group's step count.
    """

    max_value: Value

    def __post_init__(self) -> None:
        self._check_fields(max_value=NONNEGATIVE)

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        value = resolve(self.max_value, ctx.count)
        return {"low": -value, "high": value}, {}

    def apply(self, u, p, buf, c, ops):
        return ops.minimum(ops.maximum(u, c["low"]), c["high"]), {}


@dataclass(frozen=True, repr=False)
class clip_by_global_norm(Part):
    r"""Rescale all updates of a group together when their joint norm exceeds ``max_norm``.

    .. math:: u \leftarrow u \cdot \min\!\left(1, \frac{c}{\lVert u\rVert_2 + 10^{-6}}\right)

    with the norm over every tensor of the group, as ``torch.nn.utils.clip_grad_norm_``.
    DTensor parameters (FSDP2) give the norm over all shards by themselves. Where each process
    holds a *different part* of the parameters as plain tensors (``ZeroRedundancyOptimizer``),
    pass ``process_group`` (a ``torch.distributed`` group, or ``"world"``) so that the sums of
    squares are added across processes; every process must then step every time.

    Args:
        max_norm (float | Callable[[int], float]): c, the largest joint norm let through; a finite
            number >= 0, or a callable (a schedule) of the group's step count.
        process_group (ProcessGroup | str | None, default None): where each process holds other
            parameters as plain tensors (ZeRO), the ``torch.distributed`` group (or ``"world"``)
            across which the sums of squares are added; None: this process's tensors only (enough
            for DTensor shards and for replicated parameters).
    """

    max_norm: Value
    process_group: Any = None
    #: Σ u² over the group's tensors (a reduction pass before the update in the kernels)
    sums = (Sum("sq", "group"),)

    def __post_init__(self) -> None:
        self._check_fields(max_norm=NONNEGATIVE, process_group=PROCESS_GROUP)

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        if ctx.sums is None:  # (the first call: sum_terms needs no coefficient)
            return {}, {}
        norm = math.sqrt(ctx.sums["sq"])
        return {"f": min(1.0, resolve(self.max_norm, ctx.count) / (norm + 1e-6))}, {}

    def sum_terms(self, u, p, buf, c, ops):
        return {"sq": u * u}

    def apply(self, u, p, buf, c, ops):
        return c["f"] * u, {}
