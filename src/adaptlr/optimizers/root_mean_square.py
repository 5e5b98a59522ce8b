"""The lecture's own adaptive rule: divide by the root *mean* square of all past gradients."""

from __future__ import annotations

from .. import core
from ..core import Transform
from ._common import wrap
from ._declare import EPS, LR, MAXIMIZE, WEIGHT_DECAY, Declared, Hyperparameters


class RootMeanSquare(Declared):
    r"""The lecture's parameter-dependent learning rate with the root-mean-square σ.

    .. math::
        \sigma_i^t = \sqrt{\frac{1}{t+1}\sum_{k=0}^{t}(g_i^k)^2} + \epsilon,\qquad
        \theta_i^{t+1} = \theta_i^t - \frac{\eta_t}{\sigma_i^t}\, g_i^t

    Unlike :class:`adaptlr.Adagrad` (the *sum*, whose steps only shrink), the *mean* forgets
    nothing but does not grow with t: after many small gradients σ becomes small and a steep
    gradient then makes a large step — the lecture's "burst". ``eps`` (default ``1e-8``) only
    guards against division by zero; ``lr`` defaults to ``1e-2`` as Adagrad's.
    The chain: ``[negate], [add_decayed_weights], mean_sq, scale_by_learning_rate``.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        >>> opt = adaptlr.RootMeanSquare([w], lr=0.1)
        >>> (w**2).sum().backward(); opt.step()   # sigma_0 = |g_0|: a step of lr
        >>> w.detach()
        tensor([0.9000, 1.9000])
    """

    hyperparameters = (LR(1e-2), EPS, WEIGHT_DECAY, "*", MAXIMIZE)

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        return wrap(h, core.mean_sq(eps=h.eps))
