"""What every named optimizer shares: how ``maximize``, weight decay and η wrap its core."""

from __future__ import annotations

import torch

from .. import core
from ..core import Part, Transform
from ..core.base import Value
from ..torch_optim import NONFINITE
from . import _checks


def wrap(
    *middle: Part,
    lr: Value,
    maximize: bool = False,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    after: tuple[Part, ...] = (),
) -> Transform:
    r"""``chain(negate?, L2 decay?, *middle, decoupled decay?, *after, scale_by_learning_rate)``.

    This is torch.optim's order: the gradient is negated for ``maximize`` first, coupled
    weight decay is added to it before any preconditioning, decoupled decay is added to the
    preconditioned update and scaled by η with it.
    """
    parts: list[Part] = []
    if maximize:
        parts.append(core.negate())
    if weight_decay and not decoupled_weight_decay:
        parts.append(core.add_decayed_weights(weight_decay))
    parts.extend(middle)
    if weight_decay and decoupled_weight_decay:
        parts.append(core.add_decayed_weights(weight_decay))
    parts.extend(after)
    parts.append(core.scale_by_learning_rate(lr))
    return core.chain(*parts)


def check_common(owner: str, group: dict) -> None:
    """Checks of the arguments most optimizers share."""
    _checks.lr(owner, group["lr"])
    if "eps" in group:
        _checks.number(owner, "eps", group["eps"], 0.0)
    if "weight_decay" in group:
        _checks.number(owner, "weight_decay", group["weight_decay"], 0.0)
    if "betas" in group:
        _checks.betas(owner, group["betas"])
    for name in ("maximize", "amsgrad", "nesterov", "centered", "decoupled_weight_decay"):
        if name in group:
            _checks.flag(owner, name, group[name])
    _checks.choice(owner, "nonfinite", group.get("nonfinite", "ignore"), NONFINITE)
    for name in ("fused", "foreach"):
        if group.get(name) not in (None, True, False):
            raise TypeError(f"{owner}: {name} must be None, True or False, got {group[name]!r}")
    state_dtype = group.get("state_dtype")
    if state_dtype is not None and not (
        isinstance(state_dtype, torch.dtype) and state_dtype.is_floating_point
    ):
        raise TypeError(
            f"{owner}: state_dtype must be None or a floating torch.dtype, got {state_dtype!r}"
        )
    for name in ("capturable", "differentiable"):
        _checks.unsupported(
            owner, name, group.get(name, False), "adaptlr steps run outside autograd and graphs"
        )
