"""Schedules from text: the ``SCHEDULES`` registry and ``from_spec`` (for the CLI)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from .._checks import fail_type
from . import shapes
from .base import Schedule

__all__ = ["SCHEDULES", "from_spec"]

#: the shapes that take other schedules, which a one-line spec cannot write
COMBINATORS = ("join", "shift")

#: name -> factory, for every schedule that a one-line spec can describe (not the combinators).
SCHEDULES: dict[str, Callable[..., Schedule]] = {
    name: getattr(shapes, name) for name in shapes.__all__ if name not in COMBINATORS
}

# the argument that from_spec's ``lr`` default fills, where a schedule has one peak lr
_LR_ARG = {"one_cycle": "max_lr", "cyclic": None, "transformer": None}

_FORM = "expected 'name' or 'name:key=value,key=value'"


def _split_items(body: str) -> list[str]:
    """Split on commas outside brackets: ``a=1,b=[2,3]`` -> ``["a=1", "b=[2,3]"]``."""
    items, depth, cur = [], 0, []
    for ch in body:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    items.append("".join(cur))
    return [i.strip() for i in items if i.strip()]


def parse_value(text: str) -> Any:
    """A spec value: ``[1,2]`` a list, ``0.9/0.99`` a tuple of floats (a comma would end it),
    ``true``/``false``/``none``, an int, a float, else the text."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        return [parse_value(x) for x in text[1:-1].replace(";", ",").split(",") if x.strip()]
    if "/" in text:  # a tuple of numbers (betas=0.9/0.99); anything else is a ValueError
        return tuple(float(x) for x in text.split("/"))
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text.strip("'\"")


def parse_items(
    name: str, spec: str, body: str, allowed: Sequence[str], form: str
) -> dict[str, Any]:
    """The ``key=value`` items of a ``name:key=value,...`` spec (commas inside ``[...]`` do not
    split), each key once and in ``allowed``, values by :func:`parse_value`; a one-line
    ``ValueError`` otherwise. Shared by schedule and optimizer specs."""
    kwargs: dict[str, Any] = {}
    for item in _split_items(body):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key or not value.strip():
            raise ValueError(f"{name}: bad item {item!r} in {spec!r}; {form}")
        if key not in allowed:
            raise ValueError(f"{name}: unknown key {key!r}; allowed: {', '.join(allowed)}")
        if key in kwargs:
            raise ValueError(f"{name}: key {key!r} given twice in {spec!r}")
        try:
            kwargs[key] = parse_value(value)
        except ValueError:
            raise ValueError(f"{name}: bad value {value!r} for {key!r}; {form}") from None
    return kwargs


def from_spec(spec: str, lr: float | None = None) -> Schedule:
    """Build a schedule from a spec such as ``"warmup_cosine:warmup=50,total_steps=500"``.

    ``lr`` fills the schedule's learning-rate argument (``max_lr`` for ``one_cycle``; not
    used by ``cyclic``, which needs both bounds, nor ``transformer``, which has ``scale``)
    when the spec leaves it out. Lists are written in brackets: ``milestones=[30,60]``. Unknown
    names, unknown or missing keys and bad values raise ``ValueError`` with a one-line
    message that says what is allowed.

    Args:
        spec: ``"name"`` or ``"name:key=value,..."``: a name of :data:`SCHEDULES` and
            arguments of its factory (``warmup_cosine``'s ``warmup``, ``total_steps``, ...).
        lr: the learning rate where the spec gives none; None: the spec must give it.

    >>> from_spec("cosine:lr=0.1,total_steps=100")
    Cosine(lr=0.1, total_steps=100, min_lr=0.0)
    >>> from_spec("warmup_cosine:warmup=50,total_steps=500", lr=0.1)(50)
    0.1
    """
    if not isinstance(spec, str):
        fail_type("from_spec", "spec", f"a string ({_FORM})", spec)
    name, _, body = spec.strip().partition(":")
    name = name.strip()
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(sorted(SCHEDULES))}")
    factory = SCHEDULES[name]
    params = {
        k: p for k, p in inspect.signature(factory).parameters.items()
        if (name, k) not in shapes.RENAMED  # an old key: accepted below, not listed
    }  # fmt: skip
    allowed = ", ".join(params)
    old = [k for (n, k) in shapes.RENAMED if n == name]
    kwargs = parse_items(name, spec, body, [*params, *old], _FORM)
    for key in old:
        if key in kwargs:
            new = shapes.RENAMED[(name, key)]
            try:  # (the one check and warning of an old key, shapes.renamed)
                kwargs[new] = shapes.renamed(name, key, kwargs.pop(key), new, kwargs.get(new))
            except TypeError as err:
                raise ValueError(str(err)) from None
    lr_arg = _LR_ARG.get(name, "lr")
    if lr is not None and lr_arg is not None and lr_arg not in kwargs:
        kwargs[lr_arg] = lr
    # (a renamed key has a default of None in the function, so that either name can be given)
    required = {k for k, p in params.items() if p.default is inspect.Parameter.empty}
    required |= {new for (n, _), new in shapes.RENAMED.items() if n == name and new in params}
    missing = [k for k in params if k in required and k not in kwargs]
    if missing:
        raise ValueError(
            f"{name}: missing required key(s) {', '.join(missing)}; allowed: {allowed}"
        )
    return factory(**kwargs)
