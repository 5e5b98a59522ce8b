"""Stochastic gradient descent, with heavy-ball or Nesterov momentum."""

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


class SGD(Optimizer):
    r"""SGD with torch.optim.SGD's arguments, defaults and results.

    .. math::
        g_t \leftarrow \pm g_t + \lambda\theta_{t-1},\quad
        b_t = \mu b_{t-1} + (1-\tau) g_t\ (b_1 = g_1),\quad
        m_t = \begin{cases} g_t + \mu b_t & \text{nesterov}\\ b_t & \mu \ne 0 \\ g_t & \mu = 0
        \end{cases},\quad
        \theta_t = \theta_{t-1} - \eta_t m_t

    The chain: ``[negate], [add_decayed_weights], [momentum], scale_by_learning_rate``; σ = 1.
    ``lr`` may be a schedule from :mod:`adaptlr.schedules`. ``foreach`` and ``fused`` are
    accepted for compatibility and select nothing.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = adaptlr.SGD([w], lr=0.1, momentum=0.9)
        >>> (w**2).sum().backward(); opt.step()
        >>> w.detach()
        tensor([0.8000])
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: Value = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        state_dtype: torch.dtype | None = None,
        nonfinite: str = "ignore",
    ) -> None:
        super().__init__(
            params, SGD.build, lr=lr, momentum=momentum, dampening=dampening,
            weight_decay=weight_decay, nesterov=nesterov, maximize=maximize, foreach=foreach,
            differentiable=differentiable, fused=fused, state_dtype=state_dtype,
            nonfinite=nonfinite,
        )  # fmt: skip

    def check_group(self, group: dict[str, Any]) -> None:
        check_common("SGD", group)
        _checks.number("SGD", "momentum", group["momentum"], 0.0)
        _checks.number("SGD", "dampening", group["dampening"], 0.0, 1.0)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov=True requires momentum > 0 and dampening = 0")

    @staticmethod
    def build(
        lr: Value, momentum: float, dampening: float, weight_decay: float, nesterov: bool,
        maximize: bool,
    ) -> Transform:  # fmt: skip
        middle = (core.momentum(momentum, dampening, nesterov),) if momentum else ()
        return wrap(*middle, lr=lr, maximize=maximize, weight_decay=weight_decay)
