"""NAdam: Adam with a Nesterov look-ahead in the direction."""

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


class NAdam(Optimizer):
    r"""NAdam (Dozat 2016) with torch.optim.NAdam's arguments, defaults and results.

    .. math::
        \mu_t = \beta_1(1 - \tfrac12 0.96^{t\psi}),\quad
        \hat m_t = \frac{(1-\mu_t) g_t}{1-\prod_{i\le t}\mu_i}
            + \frac{\mu_{t+1} m_t}{1-\prod_{i\le t+1}\mu_i},\quad
        \theta_t = \theta_{t-1} - \eta_t\frac{\hat m_t}{\sqrt{v_t/(1-\beta_2^t)}+\epsilon}

    with torch's momentum decay :math:`\psi` (``momentum_decay``; optax's ``nadam`` has none).
    The chain: ``[negate], [add_decayed_weights], rule(nesterov_ema, ema_sq),
    [add_decayed_weights], scale_by_learning_rate``.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = adaptlr.NAdam([w], lr=0.1)
        >>> (w**2).sum().backward(); opt.step()
        >>> round(w.item(), 4)
        0.8944
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: Value = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        state_dtype: torch.dtype | None = None,
        nonfinite: str = "ignore",
    ) -> None:
        super().__init__(
            params, NAdam.build, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
            momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
            foreach=foreach, maximize=maximize, capturable=capturable,
            differentiable=differentiable, fused=fused, state_dtype=state_dtype,
            nonfinite=nonfinite,
        )  # fmt: skip

    def check_group(self, group: dict[str, Any]) -> None:
        check_common("NAdam", group)
        _checks.number("NAdam", "momentum_decay", group["momentum_decay"], 0.0)

    @staticmethod
    def build(
        lr: Value, betas: tuple[float, float], eps: float, weight_decay: float,
        momentum_decay: float, decoupled_weight_decay: bool, maximize: bool,
    ) -> Transform:  # fmt: skip
        direction = core.nesterov_ema(betas[0], momentum_decay)
        sigma = core.ema_sq(betas[1], eps=eps, debias=True)
        return wrap(
            core.rule(direction, sigma), lr=lr, maximize=maximize, weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
        )  # fmt: skip
