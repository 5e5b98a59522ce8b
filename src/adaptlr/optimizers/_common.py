"""What every named optimizer shares: how ``maximize``, weight decay and η wrap its core."""

from __future__ import annotations

from .. import core
from ..core import Part, Transform
from ._declare import Hyperparameters


def wrap(h: Hyperparameters, *middle: Part, after: tuple[Part, ...] = ()) -> Transform:
    r"""``chain(negate?, L2 decay?, *middle, decoupled decay?, *after, scale_by_learning_rate)``
    from ``h.lr`` and, where declared, ``h.maximize``, ``h.weight_decay`` and
    ``h.decoupled_weight_decay``.

    This is torch.optim's order: the gradient is negated for ``maximize`` first, coupled
    weight decay is added to it before any preconditioning, decoupled decay is added to the
    preconditioned update and scaled by η with it.
    """
    decay, decoupled = h.get("weight_decay", 0), h.get("decoupled_weight_decay", False)
    parts: list[Part] = []
    if h.get("maximize", False):
        parts.append(core.negate())
    if decay and not decoupled:
        parts.append(core.add_decayed_weights(decay))
    parts.extend(middle)
    if decay and decoupled:
        parts.append(core.add_decayed_weights(decay))
    parts.extend(after)
    parts.append(core.scale_by_learning_rate(h.lr))
    return core.chain(*parts)
