"""One vocabulary of argument checks for parts, schedules and optimizers.

Every check raises :class:`WrongType` (a ``TypeError``) for a value of the wrong type and a
``ValueError`` for a value out of range, with one message form: ``"{owner}: {name} must be
{allowed}, got {value!r}"``. What is allowed is an object (:class:`Number`, :class:`Flag`,
:class:`Choice`, ...) that both checks a value and says in words what it allows, so that a
declaration (a part's ``__post_init__``, a named optimizer's hyperparameters) states each rule
once. This module imports nothing of adaptlr: ``core``, ``schedules`` and ``optimizers`` all
use it.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

import torch


class WrongType(TypeError, ValueError):
    """A value of the wrong type. A ``TypeError``; also a ``ValueError`` for one release,
    because adaptlr 0.1 raised ``ValueError`` for these (code catching it keeps working)."""


def fail_type(owner: str, name: str, allowed: object, value: Any) -> NoReturn:
    raise WrongType(f"{owner}: {name} must be {allowed}, got {value!r} ({type(value).__name__})")


def fail_value(owner: str, name: str, allowed: object, value: Any) -> NoReturn:
    raise ValueError(f"{owner}: {name} must be {allowed}, got {value!r}")


def _scalar(value: Any) -> Any:
    """A one-element tensor as its Python number (torch.optim takes tensor hyperparameters)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value


class Allowed:
    """What an argument may be: :meth:`check` returns the value or raises; ``str()`` says it."""

    def check(self, owner: str, name: str, value: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Number(Allowed):
    """A finite real number (not a bool) in an interval; a one-element tensor is read."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def __str__(self) -> str:
        if self.lo == -math.inf and self.hi == math.inf:
            return "a finite number"
        if self.hi == math.inf:
            return f"a finite number {'>' if self.lo_open else '>='} {self.lo:g}"
        if self.lo == -math.inf:
            return f"a finite number {'<' if self.hi_open else '<='} {self.hi:g}"
        left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        return f"a number in {left}{self.lo:g}, {self.hi:g}{right}"

    def check(self, owner: str, name: str, value: Any) -> float:
        x = _scalar(value)
        if isinstance(x, bool) or not isinstance(x, numbers.Real):
            fail_type(owner, name, self, value)
        x = float(x)
        ok_lo = x > self.lo if self.lo_open else x >= self.lo
        ok_hi = x < self.hi if self.hi_open else x <= self.hi
        if not (math.isfinite(x) and ok_lo and ok_hi):
            fail_value(owner, name, self, value)
        return x


@dataclass(frozen=True)
class NumberOrSchedule(Number):
    """A number as :class:`Number`, or a schedule (a callable ``step -> number``) unchecked."""

    def __str__(self) -> str:
        return f"{super().__str__()} or a schedule (callable step -> value)"

    def check(self, owner: str, name: str, value: Any) -> Any:
        if callable(value) and not isinstance(value, torch.Tensor):
            return value
        return super().check(owner, name, value)


@dataclass(frozen=True)
class Integer(Allowed):
    """A Python integer (``operator.index``; not a bool, not a float) ``>= lo``."""

    lo: int = 0

    def __str__(self) -> str:
        return "a positive integer" if self.lo == 1 else f"an integer >= {self.lo}"

    def check(self, owner: str, name: str, value: Any) -> int:
        if isinstance(value, bool):
            fail_type(owner, name, self, value)
        try:
            x = operator.index(value)
        except TypeError:
            fail_type(owner, name, self, value)
        if x < self.lo:
            fail_value(owner, name, self, value)
        return x


@dataclass(frozen=True)
class Flag(Allowed):
    def __str__(self) -> str:
        return "True or False"

    def check(self, owner: str, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            fail_type(owner, name, self, value)
        return value


@dataclass(frozen=True)
class OptionalFlag(Allowed):
    def __str__(self) -> str:
        return "None, True or False"

    def check(self, owner: str, name: str, value: Any) -> bool | None:
        if value is not None and not isinstance(value, bool):
            fail_type(owner, name, self, value)
        return value


@dataclass(frozen=True)
class Unsupported(Allowed):
    """A torch.optim switch accepted for compatibility that adaptlr cannot honour: False."""

    why: str

    def __str__(self) -> str:
        return f"False ({self.why})"

    def check(self, owner: str, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            fail_type(owner, name, self, value)
        if value:
            raise ValueError(f"{owner}: {name}=True is not supported: {self.why}")
        return value


@dataclass(frozen=True)
class Choice(Allowed):
    options: tuple[str, ...]

    def __str__(self) -> str:
        return "one of " + ", ".join(map(repr, self.options))

    def check(self, owner: str, name: str, value: Any) -> str:
        if not isinstance(value, str):
            fail_type(owner, name, self, value)
        if value not in self.options:
            fail_value(owner, name, self, value)
        return value


@dataclass(frozen=True)
class Text(Allowed):
    """A non-empty string (a buffer's name)."""

    def __str__(self) -> str:
        return "a non-empty string"

    def check(self, owner: str, name: str, value: Any) -> str:
        if not isinstance(value, str):
            fail_type(owner, name, self, value)
        if not value:
            fail_value(owner, name, self, value)
        return value


@dataclass(frozen=True)
class FloatDType(Allowed):
    def __str__(self) -> str:
        return "None or a floating torch.dtype"

    def check(self, owner: str, name: str, value: Any) -> torch.dtype | None:
        if value is not None and not isinstance(value, torch.dtype):
            fail_type(owner, name, self, value)
        if value is not None and not value.is_floating_point:
            fail_value(owner, name, self, value)
        return value


@dataclass(frozen=True)
class Pair(Allowed):
    """A tuple (or list) of ``n`` values, each allowed by ``each`` and named ``name[i]``."""

    each: Allowed
    n: int = 2

    def __str__(self) -> str:
        return f"a tuple of {self.n} numbers, each {self.each}"

    def check(self, owner: str, name: str, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, (tuple, list)):
            fail_type(owner, name, self, value)
        if len(value) != self.n:
            fail_value(owner, name, self, value)
        return tuple(self.each.check(owner, f"{name}[{i}]", v) for i, v in enumerate(value))


#: the allowed values most hyperparameters share
FINITE = Number()
NONNEGATIVE = Number(0.0)
UNIT = Number(0.0, 1.0)
UNIT_OPEN = Number(0.0, 1.0, hi_open=True)
FLAG = Flag()
LR = NumberOrSchedule(0.0)


def lr(owner: str, value: Any) -> None:
    """A learning rate: a finite number >= 0 or a schedule (a callable ``step -> lr``)."""
    LR.check(owner, "lr", value)


# -- the functional forms the schedules use ------------------------------------------------------
def as_float(
    fn: str, name: str, value: Any, *, minimum: float | None = 0.0, strict: bool = False
) -> float:
    """``value`` as a finite float, ``>= minimum`` (``> minimum`` if ``strict``)."""
    lo = -math.inf if minimum is None else minimum
    return Number(lo, lo_open=strict).check(fn, name, value)


def as_int(fn: str, name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as a Python int ``>= minimum``."""
    return Integer(minimum).check(fn, name, value)


def as_choice(fn: str, name: str, value: Any, allowed: Iterable[str]) -> str:
    return Choice(tuple(allowed)).check(fn, name, value)


def as_bool(fn: str, name: str, value: Any) -> bool:
    return FLAG.check(fn, name, value)


def is_live(value: Any) -> bool:
    """Whether ``value`` is a callable standing for a number (a schedule, a param group's live
    value): accepted by a part unchecked, as it was checked where it entered."""
    return callable(value) and not isinstance(value, torch.Tensor)
