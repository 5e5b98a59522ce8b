"""RAdam: Adam whose early, high-variance σ estimates are rectified."""

from __future__ import annotations

import torch

from .. import core
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
    Hyperparameters,
)


class RAdam(Declared):
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

    hyperparameters = (
        LR, BETAS, EPS, WEIGHT_DECAY, DECOUPLED_WEIGHT_DECAY,
        "*", FOREACH, MAXIMIZE, CAPTURABLE, DIFFERENTIABLE,
    )  # fmt: skip

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        return wrap(h, core.rule(core.ema(h.betas[0]), core.rectified(h.betas[1], eps=h.eps)))

    torch_class = torch.optim.RAdam
