"""The ``Schedule`` base class, the check of a step, and ``sample``."""

from __future__ import annotations

import math
import operator
from typing import Any

from .._checks import as_int, fail_type, fail_value

__all__ = ["Schedule", "sample"]


def check_step(step: Any) -> int:
    """Return ``step`` as a Python ``int``: a ``TypeError`` unless it is a number, a
    ``ValueError`` unless it is an integer >= 0.

    Integer-valued floats and 0-dim tensors (e.g. an optimizer's ``state["step"]``) are accepted.
    """
    if isinstance(step, (bool, str, bytes)):
        fail_type("Schedule", "step", "a non-negative integer", step)
    try:
        t = operator.index(step)
    except TypeError:
        try:
            f = float(step)
        except (TypeError, ValueError):
            fail_type("Schedule", "step", "a non-negative integer", step)
        if not math.isfinite(f) or not f.is_integer():
            fail_value("Schedule", "step", "a non-negative integer", step)
        t = int(f)
    if t < 0:
        fail_value("Schedule", "step", "a non-negative integer", step)
    return t


class Schedule:
    """A learning rate as a pure function of the 0-based step count ``t``.

    ``t`` is the number of optimizer updates already applied, so ``schedule(t)`` is the
    learning rate used by update number ``t + 1``. Subclasses are frozen dataclasses (hence
    picklable and comparable) and implement :meth:`value` with one closed-form formula.

    Every subclass, built-in or a user's own, registers itself with
    ``torch.serialization.add_safe_globals`` when it is defined, so a state dict holding it
    loads with ``torch.load(..., weights_only=True)`` in any process that has imported the
    class (define it in a module, not in ``__main__``, to load it from another script).

    >>> import torch
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Halving(Schedule):
    ...     lr: float
    ...     def value(self, t: int) -> float:
    ...         return self.lr * 0.5**t
    >>> Halving(1.0)(3), Halving in torch.serialization.get_safe_globals()
    (0.125, True)
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register_safe_global(cls)

    def __call__(self, step: int) -> float:
        """The learning rate at ``step``, as a float.

        Args:
            step: the 0-based step count (an optimizer passes its applied updates); an
                integer >= 0 (an integer-valued float or 0-d tensor is accepted).
        """
        return float(self.value(check_step(step)))

    def value(self, t: int) -> float:
        """The learning rate at a validated step ``t >= 0``; what a subclass defines.

        Args:
            t: the 0-based step count, an ``int >= 0`` (checked by :meth:`__call__`).
        """
        raise NotImplementedError


def _register_safe_global(cls: type) -> None:
    """Let ``torch.load(weights_only=True)`` rebuild ``cls``: a schedule is plain data."""
    import torch  # adaptlr.schedules needs torch anyway; imported here to keep base.py light

    name = f"{cls.__module__}.{cls.__qualname__}"
    safe = torch.serialization.get_safe_globals()
    stale = [g for g in safe if isinstance(g, type) and f"{g.__module__}.{g.__qualname__}" == name]
    if stale:
        # a class defined again under the same name (a re-run notebook cell, or
        # ``dataclass(slots=True)``, which rebuilds the class) replaces the old one: torch keys
        # its allowlist by name and would otherwise rebuild either
        keep = [g for g in safe if all(g is not old for old in stale)]
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(keep)
    torch.serialization.add_safe_globals([cls])


def sample(schedule: Schedule, steps: int) -> list[float]:
    """The values ``[schedule(0), ..., schedule(steps - 1)]``.

    Args:
        schedule: the :class:`Schedule` to evaluate.
        steps: how many steps, from 0; an integer >= 0.

    >>> from adaptlr.schedules import step_decay
    >>> sample(step_decay(1.0, step_size=2, gamma=0.5), 5)
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    if not isinstance(schedule, Schedule):
        fail_type("sample", "schedule", "a Schedule", schedule)
    n = as_int("sample", "steps", steps, minimum=0)
    return [schedule(t) for t in range(n)]
