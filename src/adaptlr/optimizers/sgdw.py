"""SGDW and SGDWM: SGD (with momentum) and weight decay decoupled from the gradient."""

from __future__ import annotations

from .. import _checks, core
from ..core import Part, Transform
from ._declare import FUSED, LR, MOMENTUM, WEIGHT_DECAY, Declared, Hyper, Hyperparameters
from .sgd import DAMPENING, NESTEROV, SGD

DECAY_FORMS = ("constant", "lr", "paper")

DECAY = Hyper(
    "decay",
    "lr",
    _checks.Choice(DECAY_FORMS),
    "how weight_decay λ moves θ, beside the SGD step: 'constant' subtracts ηλ from every "
    "element (torch-optimizer 0.3.0's code), 'lr' subtracts ηλθ (decay scaled by the lr, as "
    "torch's AdamW), 'paper' subtracts λθ (Loshchilov & Hutter's Algorithm 1 with a constant "
    "schedule multiplier: the decay is not scaled by the lr)",
    "str",
)


class SGDW(Declared):
    r"""SGDW / SGDWM (Loshchilov & Hutter, 2019) with the arguments, defaults and results of
    ``torch_optimizer.SGDW`` (torch-optimizer 0.3.0).

    .. math::
        b_t = \mu b_{t-1} + (1-\tau) g_t\ (b_1 = g_1),\quad
        m_t = \begin{cases} g_t + \mu b_t & \text{nesterov}\\ b_t & \mu \ne 0 \\ g_t & \mu = 0
        \end{cases},\\
        \theta_t = \theta_{t-1} - \eta_t m_t - \begin{cases}
        \eta_t\lambda & \texttt{decay="constant"}\\
        \eta_t\lambda\,\theta_{t-1} & \texttt{decay="lr"}\\
        \lambda\,\theta_{t-1} & \texttt{decay="paper"}\end{cases}

    The gradient is never decayed (the decay is decoupled from it: with momentum, SGDWM).
    The package's code, ``p.add_(weight_decay, alpha=-lr)``, adds the *number* −ηλ to every
    element instead of −ηλθ; ``decay="constant"`` gives its results, ``"lr"`` (the default)
    the decay it means (θ shrinks by the factor 1 − ηλ, as torch's AdamW), and ``"paper"``
    the paper's Algorithm 1, where the decay is multiplied by the schedule multiplier
    :math:`\eta_t` but not by the learning rate α (here with a constant multiplier: give a
    schedule's multiplier to ``weight_decay`` through a param group to follow one).
    ``nesterov`` requires momentum > 0 and dampening = 0, as in the package.

    The chain: ``[momentum], [add_constant | add_decayed_weights], scale_by_learning_rate``;
    for ``"paper"``, ``[momentum], scale_by_learning_rate, negate, add_decayed_weights,
    negate``.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = adaptlr.optimizers.SGDW([w], lr=0.1, momentum=0.9, weight_decay=0.5,
        ...                               decay="lr")
        >>> (w**2).sum().backward(); opt.step()   # θ - 0.1·(2θ + 0.5θ)
        >>> w.detach()
        tensor([ 0.7500, -1.5000])
    """

    hyperparameters = (
        LR, MOMENTUM, DAMPENING, WEIGHT_DECAY, NESTEROV, "*", DECAY, FUSED,
    )  # fmt: skip
    rules = SGD.rules

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        parts: list[Part] = []
        if h.momentum:
            parts.append(core.momentum(h.momentum, h.dampening, h.nesterov))
        if not h.weight_decay:
            return core.chain(*parts, core.scale_by_learning_rate(h.lr))
        if h.decay == "paper":
            # θ − η m − λθ: the decay joins after η, on the descent side
            return core.chain(
                *parts,
                core.scale_by_learning_rate(h.lr),
                core.negate(),
                core.add_decayed_weights(h.weight_decay),
                core.negate(),
            )
        decay = core.add_constant if h.decay == "constant" else core.add_decayed_weights
        return core.chain(*parts, decay(h.weight_decay), core.scale_by_learning_rate(h.lr))

    torch_class = None
