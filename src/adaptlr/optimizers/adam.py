"""Adam and AdamW: RMSProp's magnitude plus momentum, with bias correction."""

from __future__ import annotations

import torch

from .. import _checks, core
from ..core import Transform
from ._common import wrap
from ._declare import (
    BETAS,
    CAPTURABLE,
    DECOUPLED_WEIGHT_DECAY,
    DIFFERENTIABLE,
    EPS,
    FOREACH,
    FUSED,
    LR,
    MAXIMIZE,
    WEIGHT_DECAY,
    Declared,
    Hyper,
    Hyperparameters,
)

AMSGRAD = Hyper(
    "amsgrad",
    False,
    _checks.FLAG,
    "divide by the running maximum of v_t (AMSGrad; torch's: of the raw average)",
    "bool",
)


def adam_rule(b1: float, b2: float, eps: float, amsgrad: bool) -> core.rule:
    """Adam's m_t/σ_t: bias-corrected EMA of gradients over that of squares (Algorithm 1)."""
    return core.rule(core.ema(b1), core.ema_sq(b2, eps=eps, debias=True, amsgrad=amsgrad))


class Adam(Declared):
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

    hyperparameters = (
        LR, BETAS, EPS, WEIGHT_DECAY, AMSGRAD,
        "*", FOREACH, MAXIMIZE, CAPTURABLE, DIFFERENTIABLE, FUSED, DECOUPLED_WEIGHT_DECAY,
    )  # fmt: skip

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        return wrap(h, adam_rule(h.betas[0], h.betas[1], h.eps, h.amsgrad))

    torch_class = torch.optim.Adam


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

    hyperparameters = (
        LR, BETAS, EPS, WEIGHT_DECAY(1e-2), AMSGRAD,
        "*", MAXIMIZE, FOREACH, CAPTURABLE, DIFFERENTIABLE, FUSED,
    )  # fmt: skip
    fixed = {"decoupled_weight_decay": True}

    torch_class = torch.optim.AdamW
