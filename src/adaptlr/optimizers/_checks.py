"""Argument checks shared by the named optimizers: one clear error, before anything changes."""

from __future__ import annotations

import math
from typing import Any


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def number(
    owner: str,
    name: str,
    value: Any,
    lo: float,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """``value`` as a float in the interval, or a ValueError naming ``name`` and the interval."""
    left = "(" if lo_open else "["
    right = ")" if hi_open or hi == math.inf else "]"
    allowed = f"a finite number in {left}{lo:g}, {hi:g}{right}"
    if hasattr(value, "item") and getattr(value, "numel", lambda: 0)() == 1:
        value = value.item()
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be {allowed}, got {value!r}")
    ok_lo = value > lo if lo_open else value >= lo
    ok_hi = value < hi if hi_open else value <= hi
    if not (ok_lo and ok_hi):
        raise ValueError(f"{owner}: {name} must be {allowed}, got {value!r}")
    return float(value)


def lr(owner: str, value: Any) -> None:
    """A learning rate is a finite number >= 0 or a schedule (a callable ``step -> lr``)."""
    if callable(value) and not _is_number(value):
        return
    if hasattr(value, "item") and getattr(value, "numel", lambda: 0)() == 1:
        value = value.item()
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{owner}: lr must be a finite number >= 0 or a schedule (callable step -> lr), "
            f"got {value!r}"
        )


def betas(owner: str, value: Any, n: int = 2) -> None:
    if not isinstance(value, (tuple, list)) or len(value) != n:
        raise ValueError(f"{owner}: betas must be a tuple of {n} numbers in [0, 1), got {value!r}")
    for i, b in enumerate(value):
        number(owner, f"betas[{i}]", b, 0.0, 1.0, hi_open=True)


def flag(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")


def choice(owner: str, name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{owner}: {name} must be one of {allowed}, got {value!r}")


def unsupported(owner: str, name: str, value: Any, why: str) -> None:
    """torch.optim arguments accepted for compatibility that adaptlr cannot honour."""
    if value:
        raise ValueError(f"{owner}: {name}=True is not supported: {why}")
