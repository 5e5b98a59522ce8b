"""Adam and AdamW: RMSProp's magnitude plus momentum, with bias correction."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .. import core
from ..core import Transform
from ..core.base import Value
from ..torch_optim import Optimizer
from ._common import check_common, wrap


def adam_rule(b1: float, b2: float, eps: float, amsgrad: bool) -> core.rule:
    """Adam's m_t/σ_t: bias-corrected EMA of gradients over that of squares (Algorithm 1)."""
    return core.rule(core.ema(b1), core.ema_sq(b2, eps=eps, debias=True, amsgrad=amsgrad))


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, Algorithm 1) with torch.optim.Adam's arguments, defaults, results.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,
        \\
        \theta_t = \theta_{t-1} - \eta_t\,\frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} +
        \epsilon}

    ``amsgrad`` uses the running maximum of :math:`v_t` (torch's: of the raw average);
    ``weight_decay`` is added to the gradient (L2), or, with ``decoupled_weight_decay=True``,
    to the update (AdamW). The chain: ``[negate], [add_decayed_weights], rule(ema, ema_sq),
    [add_decayed_weights], scale_by_learning_rate``.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -3.0]))
        >>> opt = adaptlr.Adam([w], lr=0.1)
        >>> (w**2).sum().backward(); opt.step()   # first step: -lr·sign(g), up to eps
        >>> w.detach()
        tensor([ 0.9000, -2.9000])
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: Value = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        state_dtype: torch.dtype | None = None,
        nonfinite: str = "ignore",
        decoupled_weight_decay: bool = False,
    ) -> None:
        super().__init__(
            params, Adam.build, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
            amsgrad=amsgrad, foreach=foreach, maximize=maximize, capturable=capturable,
            differentiable=differentiable, fused=fused, state_dtype=state_dtype,
            nonfinite=nonfinite,
            decoupled_weight_decay=decoupled_weight_decay,
        )  # fmt: skip

    def check_group(self, group: dict[str, Any]) -> None:
        check_common(type(self).__name__, group)

    @staticmethod
    def build(
        lr: Value, betas: tuple[float, float], eps: float, weight_decay: float, amsgrad: bool,
        maximize: bool, decoupled_weight_decay: bool,
    ) -> Transform:  # fmt: skip
        return wrap(
            adam_rule(betas[0], betas[1], eps, amsgrad), lr=lr, maximize=maximize,
            weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay,
        )  # fmt: skip


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, as torch.optim.AdamW.

    .. math::
        \theta_t = \theta_{t-1} - \eta_t\left(\frac{\hat m_t}{\sqrt{\hat v_t}+\epsilon}
        + \lambda\theta_{t-1}\right)

    Same chain as :class:`Adam` with ``decoupled_weight_decay=True``; default
    ``weight_decay=1e-2``.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = adaptlr.AdamW([w], lr=0.1, weight_decay=0.5)
        >>> (w**2).sum().backward(); opt.step()   # 1 - 0.1·(1 + 0.5·1)
        >>> w.detach()
        tensor([0.8500])
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: Value = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        state_dtype: torch.dtype | None = None,
        nonfinite: str = "ignore",
    ) -> None:
        super().__init__(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
            foreach=foreach, maximize=maximize, capturable=capturable,
            differentiable=differentiable, fused=fused, state_dtype=state_dtype,
            nonfinite=nonfinite,
            decoupled_weight_decay=True,
        )  # fmt: skip
