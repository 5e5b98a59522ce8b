r"""transformers' named schedules as adaptlr schedules: :func:`from_hf`.

``transformers.get_scheduler(name, optimizer, num_warmup_steps, num_training_steps,
scheduler_specific_kwargs)`` wraps a ``LambdaLR`` whose lr at scheduler step :math:`k` is
:math:`\eta \lambda(k)`, used by update :math:`k + 1`; an adaptlr schedule's ``s(t)`` is the lr
of update :math:`t + 1`, so ``from_hf(...)(t)`` is :math:`\eta \lambda(t)`. This module builds
each from the public shapes (with :func:`~adaptlr.schedules.join` where transformers switches
phases) and does not import transformers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from .._checks import as_float, as_int
from .base import Schedule
from .shapes import (
    constant,
    cosine_hard_restarts,
    cosine_wave,
    inverse_sqrt,
    join,
    linear_warmup,
    polynomial,
    shift,
    warmup_linear,
    warmup_stable_decay,
)

__all__ = ["HF_METRIC_NAMES", "HF_NAMES", "from_hf"]

#: transformers' scheduler names that depend on a metric, not on the step alone
HF_METRIC_NAMES = ("reduce_lr_on_plateau", "greedy")


def _warmup_then(lr: float, w: int, rest: Schedule, warm: Schedule | None = None) -> Schedule:
    # transformers' warm-up t / max(1, w) for t < w, then ``rest`` counted from t = w
    if w == 0:
        return rest
    return join([linear_warmup(lr, w) if warm is None else warm, rest], boundaries=[w])


def _min_lr(fn: str, lr: float, kw: dict[str, Any]) -> float:
    min_lr, rate = kw.get("min_lr"), kw.get("min_lr_rate")
    if min_lr is not None and rate is not None:
        raise ValueError(f"{fn}: only one of min_lr or min_lr_rate should be set")
    if min_lr is not None:
        return as_float(fn, "min_lr", min_lr)
    if rate is None:
        raise ValueError(f"{fn}: one of min_lr or min_lr_rate should be set")
    return as_float(fn, "min_lr_rate", rate) * lr


def _decay_steps(fn: str, w: int, t: int) -> int:
    if w > t:
        raise ValueError(f"{fn}: num_warmup_steps must be <= num_training_steps ({t}), got {w}")
    return max(1, t - w)  # transformers divides by max(1, T - W)


def _linear(fn: str, lr: float, w: int, t: int | None, kw: dict[str, Any]) -> Schedule:
    _decay_steps(fn, w, t)
    return warmup_linear(lr, w, t)


def _cosine(fn: str, lr: float, w: int, t: int | None, kw: dict[str, Any]) -> Schedule:
    c = as_float(fn, "num_cycles", kw.get("num_cycles", 0.5), strict=True)
    return _warmup_then(lr, w, cosine_wave(lr, _decay_steps(fn, w, t), c))


def _restarts(fn: str, lr: float, w: int, t: int | None, kw: dict[str, Any]) -> Schedule:
    c = as_float(fn, "num_cycles", kw.get("num_cycles", 1), strict=True)
    return _warmup_then(lr, w, cosine_hard_restarts(lr, _decay_steps(fn, w, t), c))


def _polynomial(fn: str, lr: float, w: int, t: int | None, kw: dict[str, Any]) -> Schedule:
    lr_end = as_float(fn, "lr_end", kw.get("lr_end", 1e-7))
    power = as_float(fn, "power", kw.get("power", 1.0), strict=True)
    if not lr > lr_end:
        raise ValueError(f"{fn}: lr_end ({lr_end}) must be smaller than initial lr ({lr})")
    if t <= w:  # transformers divides by T - W here, without max(1, .)
        raise ValueError(f"{fn}: num_training_steps must be > num_warmup_steps ({w}), got {t}")
    return _warmup_then(lr, w, polynomial(lr, t - w, power, min_lr=lr_end))


def _inverse_sqrt(fn: str, lr: float, w: int, t: int | None, kw: dict[str, Any]) -> Schedule:
    ts = kw.get("timescale")
    ts = (w or 10_000) if ts is None else as_float(fn, "timescale", ts, strict=True)
    return _warmup_then(lr, w, inverse_sqrt(lr, warmup=0, timescale=ts))


def _cosine_min_lr(fn: str, lr: float, w: int, t: int | None, kw: dict[str, Any]) -> Schedule:
    c = as_float(fn, "num_cycles", kw.get("num_cycles", 0.5), strict=True)
    return _warmup_then(lr, w, cosine_wave(lr, _decay_steps(fn, w, t), c, _min_lr(fn, lr, kw)))


def _cosine_warmup_min_lr(
    fn: str, lr: float, w: int, t: int | None, kw: dict[str, Any]
) -> Schedule:
    c = as_float(fn, "num_cycles", kw.get("num_cycles", 0.5), strict=True)
    wave = cosine_wave(lr, _decay_steps(fn, w, t), c, _min_lr(fn, lr, kw))
    # this one counts from 1: warm-up (t + 1) / w, and the decay at (t - w + 1) / (T - w)
    rate = kw.get("warmup_lr_rate")
    if rate is None:
        warm = shift(linear_warmup(lr, w), 1)
    else:
        start = as_float(fn, "warmup_lr_rate", rate) * lr
        warm = linear_warmup(lr, max(1, w - 1), start_lr=start)
    return _warmup_then(lr, w, shift(wave, 1), warm)


def _wsd(fn: str, lr: float, w: int, t: int | None, kw: dict[str, Any]) -> Schedule:
    if kw.get("num_decay_steps") is None:
        raise ValueError(f"{fn} requires `num_decay_steps`, please provide that argument")
    d = as_int(fn, "num_decay_steps", kw["num_decay_steps"], minimum=0)
    s = kw.get("num_stable_steps")
    if s is None and t is None:
        raise ValueError(f"{fn}: either num_training_steps or num_stable_steps must be specified")
    if s is not None:
        if t is not None:
            warnings.warn(
                f"{fn}: both num_training_steps and num_stable_steps are specified; "
                "num_stable_steps will be used (as transformers does)",
                stacklevel=3,
            )
        s = as_int(fn, "num_stable_steps", s, minimum=0)
    elif w + d > t:
        raise ValueError(
            f"{fn}: num_training_steps ({t}) must be >= num_warmup_steps + num_decay_steps "
            f"({w} + {d})"
        )
    else:
        s = t - w - d
    ratio = as_float(fn, "min_lr_ratio", kw.get("min_lr_ratio", 0.0))
    return warmup_stable_decay(
        lr,
        w,
        s,
        d,
        min_lr=ratio * lr,
        warmup_type=kw.get("warmup_type", "linear"),
        decay_type=kw.get("decay_type", "cosine"),
        num_cycles=as_float(fn, "num_cycles", kw.get("num_cycles", 0.5), strict=True),
    )


_Builder = Callable[[str, float, int, "int | None", dict[str, Any]], Schedule]

# name -> (builder, its scheduler-specific arguments, whether num_training_steps is required)
_BUILDERS: dict[str, tuple[_Builder, tuple[str, ...], bool]] = {
    "linear": (_linear, (), True),
    "cosine": (_cosine, ("num_cycles",), True),
    "cosine_with_restarts": (_restarts, ("num_cycles",), True),
    "polynomial": (_polynomial, ("lr_end", "power"), True),
    "inverse_sqrt": (_inverse_sqrt, ("timescale",), False),
    "cosine_with_min_lr": (_cosine_min_lr, ("num_cycles", "min_lr", "min_lr_rate"), True),
    "cosine_warmup_with_min_lr": (
        _cosine_warmup_min_lr,
        ("num_cycles", "min_lr", "min_lr_rate", "warmup_lr_rate"),
        True,
    ),
    "warmup_stable_decay": (
        _wsd,
        (
            "num_decay_steps",
            "num_stable_steps",
            "warmup_type",
            "decay_type",
            "min_lr_ratio",
            "num_cycles",
        ),
        False,
    ),
}

#: every transformers scheduler name that :func:`from_hf` accepts
HF_NAMES = ("constant", "constant_with_warmup", *_BUILDERS)


def from_hf(
    name: str,
    lr: float,
    num_warmup_steps: int | None = None,
    num_training_steps: int | None = None,
    **scheduler_specific_kwargs: Any,
) -> Schedule:
    r"""The schedule of ``transformers.get_scheduler(name, ...)`` for a peak learning rate ``lr``.

    transformers' ``LambdaLR`` gives the update after :math:`t` applied updates the rate
    :math:`\eta \lambda(t)`; the returned schedule :math:`s` has

    .. math:: s(t) = \eta \, \lambda(t) \qquad \text{for every } t \ge 0

    (past ``num_training_steps`` too), where :math:`\lambda` is transformers' lambda for
    ``name`` with these arguments. It is built from adaptlr's public shapes, e.g. ``"cosine"``
    is ``join([linear_warmup(lr, W), cosine_wave(lr, T - W, num_cycles)], [W])``; the table
    of names and shapes is in ``docs/schedules.md``.

    Args:
        name: a name of transformers' ``SchedulerType`` (a string or the enum) that is a
            function of the step alone: ``"linear"``, ``"cosine"``, ``"cosine_with_restarts"``,
            ``"polynomial"``, ``"constant"``, ``"constant_with_warmup"``, ``"inverse_sqrt"``,
            ``"cosine_with_min_lr"``, ``"cosine_warmup_with_min_lr"``,
            ``"warmup_stable_decay"``. ``"reduce_lr_on_plateau"`` and ``"greedy"`` follow a
            metric and raise ``ValueError``.
        lr: the optimizer's learning rate :math:`\eta` (what transformers reads from the
            optimizer), >= 0.
        num_warmup_steps: :math:`W`, required by every name but ``"constant"`` (as in
            transformers), an integer >= 0.
        num_training_steps: :math:`T`, required by the names that decay to an end
            (not ``"constant"``, ``"constant_with_warmup"``, ``"inverse_sqrt"``; optional for
            ``"warmup_stable_decay"`` given ``num_stable_steps``), an integer >= ``W``.
        **scheduler_specific_kwargs: what transformers takes as ``scheduler_specific_kwargs``
            for ``name``, with its defaults: ``num_cycles`` (cosine shapes),
            ``lr_end``/``power`` (polynomial), ``timescale`` (inverse_sqrt; default ``W``, or
            10,000 when ``W = 0``), ``min_lr``/``min_lr_rate`` (exactly one, for the min-lr
            cosines), ``warmup_lr_rate``, and ``num_decay_steps``, ``num_stable_steps``,
            ``warmup_type``, ``decay_type``, ``min_lr_ratio`` for ``"warmup_stable_decay"``.
            ``"constant"`` and ``"constant_with_warmup"`` ignore them, as transformers does;
            elsewhere an unknown one is a ``ValueError``.

    Missing or bad arguments raise ``ValueError`` naming the argument. Where transformers
    accepts degenerate arguments silently (``W > T``; ``W = T`` for ``"polynomial"``, where it
    divides by zero), ``from_hf`` refuses them.

    >>> s = from_hf("cosine", 0.1, num_warmup_steps=10, num_training_steps=110)
    >>> round(s(5), 12), s(10), round(s(60), 12), round(s(110), 12)
    (0.05, 0.1, 0.05, 0.0)
    >>> s = from_hf("warmup_stable_decay", 1.0, 2, num_decay_steps=2, num_stable_steps=1,
    ...             decay_type="1-sqrt", min_lr_ratio=0.1)
    >>> [round(s(t), 4) for t in range(6)]
    [0.1, 0.55, 1.0, 1.0, 0.3636, 0.1]
    """
    name = getattr(name, "value", name)  # transformers.SchedulerType is a str Enum
    allowed = ", ".join(HF_NAMES)
    if name in HF_METRIC_NAMES:
        raise ValueError(
            f"from_hf: {name!r} follows a metric, not the step count, so it is not a Schedule "
            f"(use a metric-driven scheduler on the optimizer); allowed: {allowed}"
        )
    if not isinstance(name, str) or name not in HF_NAMES:
        raise ValueError(f"from_hf: unknown scheduler name {name!r}; allowed: {allowed}")
    fn = f"from_hf({name!r})"
    lr = as_float(fn, "lr", lr)
    if name == "constant":
        return constant(lr)
    if num_warmup_steps is None:
        raise ValueError(f"{fn} requires `num_warmup_steps`, please provide that argument")
    w = as_int(fn, "num_warmup_steps", num_warmup_steps, minimum=0)
    if name == "constant_with_warmup":
        return linear_warmup(lr, w)
    builder, keys, needs_total = _BUILDERS[name]
    unknown = [k for k in scheduler_specific_kwargs if k not in keys]
    if unknown:
        hint = (
            "; pass them as keyword arguments: from_hf(..., **scheduler_specific_kwargs)"
            if unknown == ["scheduler_specific_kwargs"]
            else ""
        )
        raise ValueError(
            f"{fn}: unknown argument(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(keys) or 'none'}{hint}"
        )
    t = num_training_steps
    if t is None and needs_total:
        raise ValueError(f"{fn} requires `num_training_steps`, please provide that argument")
    if t is not None:
        t = as_int(fn, "num_training_steps", t)
    return builder(fn, lr, w, t, scheduler_specific_kwargs)
