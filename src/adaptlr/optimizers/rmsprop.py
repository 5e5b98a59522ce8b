"""RMSProp: divide by a moving root mean square; torch's zero start or the lecture's."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .. import core
from ..core import Transform
from ..core.base import Value
from ..core.magnitude import INITS
from ..torch_optim import Optimizer
from . import _checks
from ._common import check_common, wrap


class RMSprop(Optimizer):
    r"""RMSprop with torch.optim.RMSprop's arguments, defaults and results, plus ``init``.

    .. math::
        g_t \leftarrow \pm g_t + \lambda\theta_{t-1},\quad
        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2,\quad
        \sigma_t = \sqrt{v_t - [\bar g_t^2]} + \epsilon,\\
        b_t = \mu b_{t-1} + g_t/\sigma_t,\quad
        \theta_t = \theta_{t-1} - \eta_t\, b_t \ (\text{or } \eta_t g_t/\sigma_t \text{ if } \mu=0)

    ``init="zero"`` (torch's default) starts at :math:`v_0 = 0`; ``init="first_gradient"``
    is the lecture's RMSProp, :math:`\sigma_0 = |g_0|`, i.e. :math:`v_1 = g_1^2` (ε is still
    added outside the root for safety). ``centered`` subtracts the squared moving average of
    gradients :math:`\bar g_t` (it needs ``init="zero"``: with one sample the variance is 0).
    The chain: ``[negate], [add_decayed_weights], ema_sq, [momentum], scale_by_learning_rate``.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([3.0]))
        >>> opt = adaptlr.RMSprop([w], lr=0.1, init="first_gradient")
        >>> (w**2).sum().backward(); opt.step()   # sigma_0 = |g_0|: a step of lr
        >>> w.detach()
        tensor([2.9000])
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: Value = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        init: str = "zero",
        fused: bool | None = None,
        state_dtype: torch.dtype | None = None,
        nonfinite: str = "ignore",
    ) -> None:
        super().__init__(
            params, RMSprop.build, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
            momentum=momentum, centered=centered, capturable=capturable, foreach=foreach,
            maximize=maximize, differentiable=differentiable, fused=fused,
            state_dtype=state_dtype,
            nonfinite=nonfinite, init=init,
        )  # fmt: skip

    def check_group(self, group: dict[str, Any]) -> None:
        check_common("RMSprop", group)
        _checks.number("RMSprop", "alpha", group["alpha"], 0.0, 1.0)
        _checks.number("RMSprop", "momentum", group["momentum"], 0.0)
        _checks.choice("RMSprop", "init", group["init"], INITS)
        if group["centered"] and group["init"] != "zero":
            raise ValueError("RMSprop: centered=True requires init='zero'")

    @staticmethod
    def build(
        lr: Value, alpha: float, eps: float, weight_decay: float, momentum: float,
        centered: bool, maximize: bool, init: str,
    ) -> Transform:  # fmt: skip
        sigma = core.ema_sq(alpha, eps=eps, centered=centered, init=init, name="square_avg")
        after = (core.momentum(momentum),) if momentum else ()
        return wrap(sigma, lr=lr, maximize=maximize, weight_decay=weight_decay, after=after)
