"""RAdam: Adam whose early, high-variance σ estimates are rectified."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .. import core
from ..core import Transform
from ..core.base import Value
from ..torch_optim import Optimizer
from ._common import check_common, wrap


class RAdam(Optimizer):
    r"""RAdam (Liu et al. 2019) with torch.optim.RAdam's arguments, defaults and results.

    .. math::
        \theta_t = \theta_{t-1} - \eta_t\,\frac{m_t}{1-\beta_1^t}\cdot
        \begin{cases} r_t\,\dfrac{\sqrt{1-\beta_2^t}}{\sqrt{v_t}+\epsilon} & \rho_t > 5 \\
        1 & \text{otherwise}\end{cases}

    with :math:`\rho_t` and :math:`r_t` as in :class:`adaptlr.core.rectified` (torch's
    threshold 5 and ε on the uncorrected root). The chain: ``[negate],
    [add_decayed_weights], rule(ema, rectified), [add_decayed_weights],
    scale_by_learning_rate``.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = adaptlr.RAdam([w], lr=0.1)
        >>> (w**2).sum().backward(); opt.step()   # rho_1 <= 5: a momentum step m_1/(1-b1) = g
        >>> w.detach()
        tensor([0.8000])
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: Value = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
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
            params, RAdam.build, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay, foreach=foreach, maximize=maximize,
            capturable=capturable, differentiable=differentiable, fused=fused,
            state_dtype=state_dtype,
            nonfinite=nonfinite,
        )  # fmt: skip

    def check_group(self, group: dict[str, Any]) -> None:
        check_common("RAdam", group)

    @staticmethod
    def build(
        lr: Value, betas: tuple[float, float], eps: float, weight_decay: float,
        decoupled_weight_decay: bool, maximize: bool,
    ) -> Transform:  # fmt: skip
        rule = core.rule(core.ema(betas[0]), core.rectified(betas[1], eps=eps))
        return wrap(
            rule, lr=lr, maximize=maximize, weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
        )  # fmt: skip
