"""The watched state dicts: per-parameter ``optimizer.state`` entries that count their changes.

A step must know that every state entry of its parameters is still the view of the flat
buffers it updates. Each per-parameter state dict is a :class:`WatchedState`, which ticks its
optimizer's :class:`Clock` on every change, so the entries themselves are compared only after
a tick.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import Any


class Clock:
    """How many times the state dicts that an optimizer's plans hold views in have changed."""

    __slots__ = ("ticks",)

    def __init__(self) -> None:
        self.ticks = 0


def _rebuild_watched(clock: Clock, items: dict) -> WatchedState:
    return WatchedState(clock, items)


class WatchedState(dict):
    """A parameter's ``optimizer.state`` entry that counts its changes on ``clock``.

    Comparing every entry of every stepped parameter costs one pass per key a step; reading
    the clock costs nothing. Every method that can change a dict ticks it (``setdefault``
    even when the key exists: a spurious tick costs one full check).
    It pickles and deep-copies as itself (with its clock); ``state_dict()`` hands out
    plain dicts (see :meth:`adaptlr.Optimizer.state_dict`). :func:`watched` makes an
    optimizer's state of them.

    Args:
        clock: the counter to tick on every change (a fast path's ``clock``).
        items: the entries to start with; None: none.
    """

    __slots__ = ("clock",)

    def __init__(self, clock: Clock, items: dict | None = None) -> None:
        super().__init__(items or {})
        self.clock = clock

    def __reduce__(self) -> tuple:
        return (_rebuild_watched, (self.clock, dict(self)))

    def __setitem__(self, key: Any, value: Any) -> None:
        self.clock.ticks += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self.clock.ticks += 1
        super().__delitem__(key)

    def __ior__(self, other: Any) -> WatchedState:
        self.clock.ticks += 1
        return super().__ior__(other)

    def clear(self) -> None:
        self.clock.ticks += 1
        super().clear()

    def pop(self, *args: Any) -> Any:
        """``dict.pop``, ticking the clock.

        Args:
            *args: ``key`` and, optionally, ``default``, as ``dict.pop`` takes them.
        """
        self.clock.ticks += 1
        return super().pop(*args)

    def popitem(self) -> tuple:
        self.clock.ticks += 1
        return super().popitem()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """``dict.setdefault``, ticking the clock (also when ``key`` is there).

        Args:
            key: the key.
            default: the value to set where ``key`` is missing.
        """
        self.clock.ticks += 1
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """``dict.update``, ticking the clock.

        Args:
            *args: at most one mapping or iterable of pairs, as ``dict.update`` takes it.
            **kwargs: more entries by keyword.
        """
        self.clock.ticks += 1
        super().update(*args, **kwargs)


def is_watched(st: Any, clock: Clock) -> bool:
    """Whether ``st`` is a WatchedState ticking ``clock``."""
    return type(st) is WatchedState and st.clock is clock


def watched(state: Any, clock: Clock) -> defaultdict:
    """``optimizer.state`` whose per-parameter dicts are (and are born) WatchedState dicts.

    Wrapping a dict makes a new object: done where the state is made (construction, load,
    unpickling), before a caller can hold a dict that the fast path would then replace.
    """
    out: defaultdict = defaultdict(functools.partial(WatchedState, clock))
    for k, v in state.items():
        fresh = isinstance(v, dict) and not is_watched(v, clock)
        out[k] = WatchedState(clock, v) if fresh else v
    return out
