"""RMSProp: divide by a moving root mean square; torch's zero start or the lecture's."""

from __future__ import annotations

from typing import Any

import torch

from .. import _checks, core
from ..core import Transform
from ..core.magnitude import INITS
from ._common import wrap
from ._declare import (
    CAPTURABLE,
    DIFFERENTIABLE,
    EPS,
    FOREACH,
    LR,
    MAXIMIZE,
    MOMENTUM,
    WEIGHT_DECAY,
    Declared,
    Hyper,
    Hyperparameters,
    Rule,
)

ALPHA = Hyper("alpha", 0.99, _checks.UNIT, "α, the decay rate of the moving average of g²")
CENTERED = Hyper(
    "centered", False, _checks.FLAG, "divide by the root of an estimate of the variance", "bool"
)
INIT = Hyper(
    "init",
    "zero",
    _checks.Choice(INITS),
    "'zero' starts at v_0 = 0 (torch); 'first_gradient' at v_1 = g_1² (the lecture's)",
    "str",
)


class RMSprop(Declared):
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

    hyperparameters = (
        LR(1e-2), ALPHA, EPS, WEIGHT_DECAY, MOMENTUM, CENTERED, CAPTURABLE, FOREACH, MAXIMIZE,
        DIFFERENTIABLE, "*", INIT,
    )  # fmt: skip
    rules = (
        Rule(lambda h: not h.centered or h.init == "zero", "centered=True requires init='zero'"),
    )

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        sigma = core.ema_sq(h.alpha, eps=h.eps, centered=h.centered, init=h.init, name="square_avg")
        after = (core.momentum(h.momentum),) if h.momentum else ()
        return wrap(h, sigma, after=after)

    torch_class = torch.optim.RMSprop

    @classmethod
    def prepare_torch_state_dict(cls, state_dict: dict[str, Any]) -> None:
        """torch.optim.RMSprop starts at v_0 = 0: refuse the lecture's ``init``; the ``init``
        key itself goes with the other hyperparameters torch does not take."""
        for gi, group in enumerate(state_dict["param_groups"]):
            if group.get("init", "zero") != "zero":
                raise ValueError(
                    f"{cls.__name__}: param group {gi} has init={group['init']!r} (the "
                    f"lecture's RMSProp), which torch.optim.RMSprop cannot express"
                )
