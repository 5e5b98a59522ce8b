"""Adagrad: divide by the root of the *sum* of squared gradients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .. import core
from ..core import Transform
from ..core.base import Value
from ..torch_optim import Optimizer
from . import _checks
from ._common import check_common, wrap


class Adagrad(Optimizer):
    r"""Adagrad with torch.optim.Adagrad's arguments, defaults and results.

    .. math::
        g_t \leftarrow \pm g_t + \lambda\theta_{t-1},\quad
        s_t = s_{t-1} + g_t^2,\quad
        \theta_t = \theta_{t-1} - \frac{\eta_t}{1+(t-1)d}\,\frac{g_t}{\sqrt{s_t}+\epsilon}

    with :math:`s_0` = ``initial_accumulator_value`` and ``lr_decay`` :math:`d`. The chain:
    ``[negate], [add_decayed_weights], rss, [scale_by_lr_decay], scale_by_learning_rate``.
    This is the classic *sum*; the lecture's *mean* is :class:`adaptlr.RootMeanSquare`.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        >>> opt = adaptlr.Adagrad([w], lr=0.5)
        >>> (w**2).sum().backward(); opt.step()   # first step: -lr·sign(g)
        >>> w.detach()
        tensor([0.5000, 1.5000])
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: Value = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        state_dtype: torch.dtype | None = None,
        nonfinite: str = "ignore",
    ) -> None:
        super().__init__(
            params, Adagrad.build, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value, eps=eps, foreach=foreach,
            maximize=maximize, differentiable=differentiable, fused=fused, state_dtype=state_dtype,
            nonfinite=nonfinite,
        )  # fmt: skip

    def check_group(self, group: dict[str, Any]) -> None:
        check_common("Adagrad", group)
        _checks.number("Adagrad", "lr_decay", group["lr_decay"], 0.0)
        _checks.number(
            "Adagrad", "initial_accumulator_value", group["initial_accumulator_value"], 0.0
        )

    @staticmethod
    def build(
        lr: Value, lr_decay: float, weight_decay: float, initial_accumulator_value: float,
        eps: float, maximize: bool,
    ) -> Transform:  # fmt: skip
        after = (core.scale_by_lr_decay(lr_decay),) if lr_decay else ()
        sigma = core.rss(eps=eps, initial_accumulator_value=initial_accumulator_value)
        return wrap(sigma, lr=lr, maximize=maximize, weight_decay=weight_decay, after=after)
