"""Stochastic gradient descent, with heavy-ball or Nesterov momentum."""

from __future__ import annotations

from typing import Any

import torch

from .. import _checks, core
from ..core import Transform
from ._common import wrap
from ._declare import (
    DIFFERENTIABLE,
    FOREACH,
    FUSED,
    LR,
    MAXIMIZE,
    MOMENTUM,
    WEIGHT_DECAY,
    Declared,
    Hyper,
    Hyperparameters,
    Rule,
)

DAMPENING = Hyper("dampening", 0, _checks.UNIT, "τ: the gradient enters the buffer times 1 - τ")
NESTEROV = Hyper("nesterov", False, _checks.FLAG, "Nesterov momentum: step by g + μb", "bool")


class SGD(Declared):
    r"""SGD with torch.optim.SGD's arguments, defaults and results.

    .. math::
        g_t \leftarrow \pm g_t + \lambda\theta_{t-1},\quad
        b_t = \mu b_{t-1} + (1-\tau) g_t\ (b_1 = g_1),\quad
        m_t = \begin{cases} g_t + \mu b_t & \text{nesterov}\\ b_t & \mu \ne 0 \\ g_t & \mu = 0
        \end{cases},\quad
        \theta_t = \theta_{t-1} - \eta_t m_t

    The chain: ``[negate], [add_decayed_weights], [momentum], scale_by_learning_rate``; σ = 1.
    ``lr`` may be a schedule from :mod:`adaptlr.schedules`.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = adaptlr.SGD([w], lr=0.1, momentum=0.9)
        >>> (w**2).sum().backward(); opt.step()
        >>> w.detach()
        tensor([0.8000])
    """

    hyperparameters = (
        LR, MOMENTUM, DAMPENING, WEIGHT_DECAY, NESTEROV,
        "*", MAXIMIZE, FOREACH, DIFFERENTIABLE, FUSED,
    )  # fmt: skip
    rules = (
        Rule(
            lambda h: not h.nesterov or (h.momentum > 0 and h.dampening == 0),
            "nesterov=True requires momentum > 0 and dampening = 0",
        ),
    )

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        middle = (core.momentum(h.momentum, h.dampening, h.nesterov),) if h.momentum else ()
        return wrap(h, *middle)

    torch_class = torch.optim.SGD

    @classmethod
    def prepare_torch_state_dict(cls, state_dict: dict[str, Any]) -> None:
        """torch's SGD keeps no step count (it detects the first step by a missing buffer):
        drop each parameter's ``step``, and a state left empty."""
        state = state_dict["state"]
        for idx in list(state):
            state[idx].pop("step", None)
            if not state[idx]:
                del state[idx]
