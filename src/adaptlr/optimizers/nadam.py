"""NAdam: Adam with a Nesterov look-ahead in the direction."""

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
    LR,
    MAXIMIZE,
    WEIGHT_DECAY,
    Declared,
    Hyper,
    Hyperparameters,
)

MOMENTUM_DECAY = Hyper("momentum_decay", 4e-3, _checks.NONNEGATIVE, "ψ, torch's momentum decay")


class NAdam(Declared):
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

    hyperparameters = (
        LR(2e-3), BETAS, EPS, WEIGHT_DECAY, MOMENTUM_DECAY, DECOUPLED_WEIGHT_DECAY,
        "*", FOREACH, MAXIMIZE, CAPTURABLE, DIFFERENTIABLE,
    )  # fmt: skip

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        direction = core.nesterov_ema(h.betas[0], h.momentum_decay)
        return wrap(h, core.rule(direction, core.ema_sq(h.betas[1], eps=h.eps, debias=True)))

    torch_class = torch.optim.NAdam
