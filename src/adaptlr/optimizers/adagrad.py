"""Adagrad: divide by the root of the *sum* of squared gradients."""

from __future__ import annotations

import torch

from .. import _checks, core
from ..core import Transform
from ._common import wrap
from ._declare import (
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

LR_DECAY = Hyper(
    "lr_decay", 0, _checks.NONNEGATIVE, "d: the t-th step of a tensor is scaled by 1/(1+(t-1)d)"
)
INITIAL_ACCUMULATOR_VALUE = Hyper(
    "initial_accumulator_value", 0, _checks.NONNEGATIVE, "s_0, where the sum of squares starts"
)


class Adagrad(Declared):
    r"""Adagrad with torch.optim.Adagrad's arguments, defaults and results.

    .. math::
        g_t \leftarrow \pm g_t + \lambda\theta_{t-1},\quad
        s_t = s_{t-1} + g_t^2,\quad
        \theta_t = \theta_{t-1} - \frac{\eta_t}{1+(t-1)d}\,\frac{g_t}{\sqrt{s_t}+\epsilon}

    with :math:`s_0` = ``initial_accumulator_value`` and ``lr_decay`` :math:`d`. The chain:
    ``[negate], [add_decayed_weights], sum_sq, [scale_by_lr_decay], scale_by_learning_rate``.
    This is the classic *sum*; the lecture's *mean* is :class:`adaptlr.RootMeanSquare`.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        >>> opt = adaptlr.Adagrad([w], lr=0.5)
        >>> (w**2).sum().backward(); opt.step()   # first step: -lr·sign(g)
        >>> w.detach()
        tensor([0.5000, 1.5000])
    """

    hyperparameters = (
        LR(1e-2), LR_DECAY, WEIGHT_DECAY, INITIAL_ACCUMULATOR_VALUE, EPS(1e-10), FOREACH,
        "*", MAXIMIZE, DIFFERENTIABLE, FUSED,
    )  # fmt: skip

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        after = (core.scale_by_lr_decay(h.lr_decay),) if h.lr_decay else ()
        sigma = core.sum_sq(eps=h.eps, initial_accumulator_value=h.initial_accumulator_value)
        return wrap(h, sigma, after=after)

    torch_class = torch.optim.Adagrad
