r"""Learning-rate schedules: one frozen dataclass and one closed-form formula each.

Every schedule maps the 0-based step count :math:`t` (updates already applied) to the
learning rate of update :math:`t + 1`. The lower-case factories are the public API; the
classes exist so that schedules pickle, compare by value and print their arguments.
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from .._checks import as_bool, as_choice, as_float, as_int, fail_type, fail_value
from .base import Schedule

__all__ = [
    "constant",
    "step_decay",
    "multi_step",
    "exponential",
    "polynomial",
    "inverse_sqrt",
    "inverse_time",
    "cosine",
    "linear_warmup",
    "warmup_linear",
    "warmup_cosine",
    "transformer",
    "cyclic",
    "cosine_restarts",
    "one_cycle",
    "cosine_wave",
    "cosine_hard_restarts",
    "warmup_stable_decay",
    "join",
    "shift",
]


def _set(obj: object, name: str, value: object) -> None:
    # frozen dataclass: normalise a field once, in __post_init__
    object.__setattr__(obj, name, value)


#: (schedule, old key) -> the key every schedule now uses for the same idea (the old one is
#: still accepted, with a FutureWarning, by the function and in a spec)
RENAMED: dict[tuple[str, str], str] = {
    ("warmup_linear", "total"): "total_steps",
    ("warmup_cosine", "total"): "total_steps",
    ("polynomial", "end_lr"): "min_lr",
}


def renamed(fn: str, old: str, value: object, new: str, new_value: object) -> object:
    """``new``'s value, given as ``new`` or (deprecated) as ``old``: a FutureWarning for the
    old key, a TypeError for both or neither."""
    if value is None:
        if new_value is None:
            raise TypeError(f"{fn}: missing required argument {new!r}")
        return new_value
    if new_value is not None:
        raise TypeError(f"{fn}: give {new!r} only ({old!r} is its old name)")
    warnings.warn(
        f"{fn}: {old!r} is now {new!r}, the key every schedule uses; {old!r} will be removed",
        FutureWarning,
        stacklevel=3,
    )
    return value


class _Migrates:
    """Loads a pickle made before a field was renamed (:data:`RENAMED`), so a checkpoint
    holding the schedule still resumes."""

    _old_fields: dict[str, str] = {}

    def __setstate__(self, state: dict) -> None:
        state = {self._old_fields.get(k, k): v for k, v in state.items()}
        self.__dict__.update(state)


# ----------------------------------------------------------------------------- classes


@dataclass(frozen=True)
class Constant(Schedule):
    lr: float

    def __post_init__(self) -> None:
        _set(self, "lr", as_float("constant", "lr", self.lr))

    def value(self, t: int) -> float:
        return self.lr


@dataclass(frozen=True)
class StepDecay(Schedule):
    lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _set(self, "lr", as_float("step_decay", "lr", self.lr))
        _set(self, "step_size", as_int("step_decay", "step_size", self.step_size))
        _set(self, "gamma", as_float("step_decay", "gamma", self.gamma))

    def value(self, t: int) -> float:
        return self.lr * self.gamma ** (t // self.step_size)


@dataclass(frozen=True)
class MultiStep(Schedule):
    lr: float
    milestones: tuple[int, ...]
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _set(self, "lr", as_float("multi_step", "lr", self.lr))
        if isinstance(self.milestones, (str, bytes)) or not isinstance(self.milestones, Sequence):
            fail_type(
                "multi_step", "milestones", "a sequence of positive integers", self.milestones
            )
        ms = sorted(as_int("multi_step", "milestones", m) for m in self.milestones)
        _set(self, "milestones", tuple(ms))
        _set(self, "gamma", as_float("multi_step", "gamma", self.gamma))

    def value(self, t: int) -> float:
        return self.lr * self.gamma ** bisect.bisect_right(self.milestones, t)


@dataclass(frozen=True)
class Exponential(Schedule):
    lr: float
    gamma: float

    def __post_init__(self) -> None:
        _set(self, "lr", as_float("exponential", "lr", self.lr))
        _set(self, "gamma", as_float("exponential", "gamma", self.gamma, strict=True))

    def value(self, t: int) -> float:
        return self.lr * self.gamma**t


@dataclass(frozen=True)
class Polynomial(_Migrates, Schedule):
    lr: float
    total_steps: int
    power: float = 1.0
    min_lr: float = 0.0
    _old_fields = {"end_lr": "min_lr"}

    def __post_init__(self) -> None:
        _set(self, "lr", as_float("polynomial", "lr", self.lr))
        _set(self, "total_steps", as_int("polynomial", "total_steps", self.total_steps))
        _set(self, "power", as_float("polynomial", "power", self.power, strict=True))
        _set(self, "min_lr", as_float("polynomial", "min_lr", self.min_lr))

    def value(self, t: int) -> float:
        frac = 1.0 - min(t, self.total_steps) / self.total_steps
        f = frac**self.power
        return self.lr * f + self.min_lr * (1.0 - f)  # exact at both ends


@dataclass(frozen=True)
class InverseSqrt(Schedule):
    lr: float
    warmup: int = 0
    timescale: float | None = None  # None: max(warmup, 1); also what pickles without it mean

    def __post_init__(self) -> None:
        _set(self, "lr", as_float("inverse_sqrt", "lr", self.lr))
        _set(self, "warmup", as_int("inverse_sqrt", "warmup", self.warmup, minimum=0))
        if self.timescale is not None:
            ts = as_float("inverse_sqrt", "timescale", self.timescale, strict=True)
            _set(self, "timescale", ts)

    def value(self, t: int) -> float:
        n, w = t + 1, max(self.warmup, 1)
        if n < w:
            return self.lr * (n / w)
        s = w if self.timescale is None else self.timescale
        return self.lr * math.sqrt(s / (n - w + s))


@dataclass(frozen=True)
class InverseTime(Schedule):
    lr: float
    decay: float

    def __post_init__(self) -> None:
        _set(self, "lr", as_float("inverse_time", "lr", self.lr))
        _set(self, "decay", as_float("inverse_time", "decay", self.decay))

    def value(self, t: int) -> float:
        return self.lr / (1.0 + self.decay * t)


@dataclass(frozen=True)
class Cosine(Schedule):
    lr: float
    total_steps: int
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "lr", as_float("cosine", "lr", self.lr))
        _set(self, "total_steps", as_int("cosine", "total_steps", self.total_steps))
        _set(self, "min_lr", as_float("cosine", "min_lr", self.min_lr))

    def value(self, t: int) -> float:
        frac = min(t, self.total_steps) / self.total_steps
        f = (1.0 + math.cos(math.pi * frac)) / 2.0
        return self.lr * f + self.min_lr * (1.0 - f)


@dataclass(frozen=True)
class LinearWarmup(Schedule):
    lr: float
    warmup: int
    start_lr: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "lr", as_float("linear_warmup", "lr", self.lr))
        _set(self, "warmup", as_int("linear_warmup", "warmup", self.warmup, minimum=0))
        _set(self, "start_lr", as_float("linear_warmup", "start_lr", self.start_lr))

    def value(self, t: int) -> float:
        if t >= self.warmup:
            return self.lr
        return self.start_lr + (self.lr - self.start_lr) * t / self.warmup


def _check_warmup_total(fn: str, warmup: object, total: object) -> tuple[int, int]:
    w = as_int(fn, "warmup", warmup, minimum=0)
    n = as_int(fn, "total_steps", total)
    if w > n:
        raise ValueError(f"{fn}: warmup must be <= total_steps ({n}), got {w}")
    return w, n


@dataclass(frozen=True)
class WarmupLinear(_Migrates, Schedule):
    lr: float
    warmup: int
    total_steps: int
    _old_fields = {"total": "total_steps"}

    def __post_init__(self) -> None:
        _set(self, "lr", as_float("warmup_linear", "lr", self.lr))
        w, n = _check_warmup_total("warmup_linear", self.warmup, self.total_steps)
        _set(self, "warmup", w)
        _set(self, "total_steps", n)

    def value(self, t: int) -> float:
        if t < self.warmup:
            return self.lr * t / max(1, self.warmup)
        n = self.total_steps
        return self.lr * max(0.0, (n - t) / max(1, n - self.warmup))


@dataclass(frozen=True)
class WarmupCosine(_Migrates, Schedule):
    lr: float
    warmup: int
    total_steps: int
    min_lr: float = 0.0
    num_cycles: float = 0.5
    _old_fields = {"total": "total_steps"}

    def __post_init__(self) -> None:
        _set(self, "lr", as_float("warmup_cosine", "lr", self.lr))
        w, n = _check_warmup_total("warmup_cosine", self.warmup, self.total_steps)
        _set(self, "warmup", w)
        _set(self, "total_steps", n)
        _set(self, "min_lr", as_float("warmup_cosine", "min_lr", self.min_lr))
        nc = as_float("warmup_cosine", "num_cycles", self.num_cycles, strict=True)
        _set(self, "num_cycles", nc)

    def value(self, t: int) -> float:
        if t < self.warmup:
            return self.lr * t / max(1, self.warmup)
        progress = min(1.0, (t - self.warmup) / max(1, self.total_steps - self.warmup))
        f = max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * self.num_cycles * progress)))
        return self.lr * f + self.min_lr * (1.0 - f)


@dataclass(frozen=True)
class Transformer(Schedule):
    d_model: int
    warmup: int
    scale: float = 1.0

    def __post_init__(self) -> None:
        _set(self, "d_model", as_int("transformer", "d_model", self.d_model))
        _set(self, "warmup", as_int("transformer", "warmup", self.warmup))
        _set(self, "scale", as_float("transformer", "scale", self.scale))

    def value(self, t: int) -> float:
        n = t + 1
        return self.scale * self.d_model**-0.5 * min(n**-0.5, n * self.warmup**-1.5)


_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


@dataclass(frozen=True)
class Cyclic(Schedule):
    base_lr: float
    max_lr: float
    step_size_up: int
    step_size_down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0

    def __post_init__(self) -> None:
        _set(self, "base_lr", as_float("cyclic", "base_lr", self.base_lr))
        _set(self, "max_lr", as_float("cyclic", "max_lr", self.max_lr))
        up = as_int("cyclic", "step_size_up", self.step_size_up)
        _set(self, "step_size_up", up)
        down = self.step_size_down
        _set(
            self, "step_size_down", up if down is None else as_int("cyclic", "step_size_down", down)
        )
        _set(self, "mode", as_choice("cyclic", "mode", self.mode, _CYCLIC_MODES))
        _set(self, "gamma", as_float("cyclic", "gamma", self.gamma, strict=True))

    def value(self, t: int) -> float:
        # the arithmetic of torch.optim.lr_scheduler.CyclicLR.get_lr, in the same order
        total = float(self.step_size_up + self.step_size_down)
        ratio = self.step_size_up / total
        cycle = math.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        height = (self.max_lr - self.base_lr) * scale
        if self.mode == "triangular":
            amp = 1.0
        elif self.mode == "triangular2":
            amp = 1 / (2.0 ** (cycle - 1))
        else:
            amp = self.gamma**t
        return self.base_lr + height * amp


@dataclass(frozen=True)
class CosineRestarts(Schedule):
    lr: float
    T_0: int
    T_mult: int = 1
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "lr", as_float("cosine_restarts", "lr", self.lr))
        _set(self, "T_0", as_int("cosine_restarts", "T_0", self.T_0))
        _set(self, "T_mult", as_int("cosine_restarts", "T_mult", self.T_mult))
        _set(self, "min_lr", as_float("cosine_restarts", "min_lr", self.min_lr))

    def _cycle_start(self, k: int) -> int:
        # first step of cycle k: T_0 (1 + m + ... + m^(k-1)), exact in integers
        m = self.T_mult
        return self.T_0 * (m**k - 1) // (m - 1)

    def value(self, t: int) -> float:
        m = self.T_mult
        if m == 1:
            t_cur, t_i = t % self.T_0, self.T_0
        else:
            k = int(math.log(t / self.T_0 * (m - 1) + 1, m))
            # the log can land a hair below an integer at a restart: settle k exactly
            while self._cycle_start(k + 1) <= t:
                k += 1
            while k > 0 and self._cycle_start(k) > t:
                k -= 1
            t_cur, t_i = t - self._cycle_start(k), self.T_0 * m**k
        f = (1.0 + math.cos(math.pi * t_cur / t_i)) / 2.0
        return self.lr * f + self.min_lr * (1.0 - f)


@dataclass(frozen=True)
class OneCycle(Schedule):
    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    anneal_strategy: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False

    def __post_init__(self) -> None:
        fn = "one_cycle"
        _set(self, "max_lr", as_float(fn, "max_lr", self.max_lr))
        _set(self, "total_steps", as_int(fn, "total_steps", self.total_steps))
        pct = as_float(fn, "pct_start", self.pct_start)
        if pct > 1.0:
            raise ValueError(f"{fn}: pct_start must be a number in [0, 1], got {self.pct_start!r}")
        _set(self, "pct_start", pct)
        strategy = as_choice(fn, "anneal_strategy", self.anneal_strategy, ("cos", "linear"))
        _set(self, "anneal_strategy", strategy)
        _set(self, "div_factor", as_float(fn, "div_factor", self.div_factor, strict=True))
        fdf = as_float(fn, "final_div_factor", self.final_div_factor, strict=True)
        _set(self, "final_div_factor", fdf)
        _set(self, "three_phase", as_bool(fn, "three_phase", self.three_phase))

    def value(self, t: int) -> float:
        # the phases of torch.optim.lr_scheduler.OneCycleLR, as (end_step, start_lr, end_lr)
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        p, n = self.pct_start, self.total_steps
        if self.three_phase:
            phases = (
                (float(p * n) - 1, initial, self.max_lr),
                (float(2 * p * n) - 2, self.max_lr, initial),
                (n - 1, initial, final),
            )
        else:
            phases = ((float(p * n) - 1, initial, self.max_lr), (n - 1, self.max_lr, final))
        start_step = 0.0
        for i, (end_step, lo, hi) in enumerate(phases):
            last = i == len(phases) - 1
            if t <= end_step or last:
                span = end_step - start_step
                pct = (t - start_step) / span if span != 0 else 1.0
                if last:
                    pct = min(pct, 1.0)  # after total_steps, hold the final value
                if self.anneal_strategy == "cos":
                    return hi + (lo - hi) / 2.0 * (math.cos(math.pi * pct) + 1)
                return (hi - lo) * pct + lo
            start_step = end_step
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class CosineWave(Schedule):
    lr: float
    total_steps: int
    num_cycles: float = 0.5
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "lr", as_float("cosine_wave", "lr", self.lr))
        _set(self, "total_steps", as_int("cosine_wave", "total_steps", self.total_steps))
        nc = as_float("cosine_wave", "num_cycles", self.num_cycles, strict=True)
        _set(self, "num_cycles", nc)
        _set(self, "min_lr", as_float("cosine_wave", "min_lr", self.min_lr))

    def value(self, t: int) -> float:
        # the operations of transformers' cosine lambdas, in their order
        progress = t / self.total_steps
        f = 0.5 * (1.0 + math.cos(math.pi * self.num_cycles * 2.0 * progress))
        return self.lr * f + self.min_lr * (1.0 - f)


@dataclass(frozen=True)
class CosineHardRestarts(Schedule):
    lr: float
    total_steps: int
    num_cycles: float = 1.0
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        fn = "cosine_hard_restarts"
        _set(self, "lr", as_float(fn, "lr", self.lr))
        _set(self, "total_steps", as_int(fn, "total_steps", self.total_steps))
        _set(self, "num_cycles", as_float(fn, "num_cycles", self.num_cycles, strict=True))
        _set(self, "min_lr", as_float(fn, "min_lr", self.min_lr))

    def value(self, t: int) -> float:
        # the cycle is found as transformers finds it, (c * p) mod 1, so that a restart falls
        # on the same step even where the cycle length T / c is not an integer
        progress = t / self.total_steps
        if progress >= 1.0:
            return self.min_lr
        f = 0.5 * (1.0 + math.cos(math.pi * ((self.num_cycles * progress) % 1.0)))
        return self.lr * f + self.min_lr * (1.0 - f)


_WSD_SHAPES = ("linear", "cosine", "1-sqrt")


@dataclass(frozen=True)
class WarmupStableDecay(Schedule):
    lr: float
    warmup: int
    stable: int
    decay: int
    min_lr: float = 0.0
    warmup_type: str = "linear"
    decay_type: str = "cosine"
    num_cycles: float = 0.5

    def __post_init__(self) -> None:
        fn = "warmup_stable_decay"
        _set(self, "lr", as_float(fn, "lr", self.lr))
        _set(self, "warmup", as_int(fn, "warmup", self.warmup, minimum=0))
        _set(self, "stable", as_int(fn, "stable", self.stable, minimum=0))
        _set(self, "decay", as_int(fn, "decay", self.decay, minimum=0))
        _set(self, "min_lr", as_float(fn, "min_lr", self.min_lr))
        _set(self, "warmup_type", as_choice(fn, "warmup_type", self.warmup_type, _WSD_SHAPES))
        _set(self, "decay_type", as_choice(fn, "decay_type", self.decay_type, _WSD_SHAPES))
        _set(self, "num_cycles", as_float(fn, "num_cycles", self.num_cycles, strict=True))

    def value(self, t: int) -> float:
        w, s, d = self.warmup, self.stable, self.decay
        if t < w:
            p = t / w
            if self.warmup_type == "linear":
                f = p
            elif self.warmup_type == "cosine":
                f = 0.5 * (1.0 - math.cos(math.pi * p))
            else:
                f = 1.0 - math.sqrt(1.0 - p)
        elif t < w + s:
            return self.lr
        elif t < w + s + d:
            p = (t - w - s) / d
            if self.decay_type == "linear":
                f = 1.0 - p
            elif self.decay_type == "cosine":
                f = 0.5 * (1.0 + math.cos(math.pi * self.num_cycles * 2.0 * p))
            else:
                f = 1.0 - math.sqrt(p)
        else:
            return self.min_lr
        return self.min_lr + (self.lr - self.min_lr) * f


@dataclass(frozen=True)
class Join(Schedule):
    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]

    def __post_init__(self) -> None:
        allowed = "a non-empty sequence of Schedule objects"
        if isinstance(self.schedules, Schedule) or not isinstance(self.schedules, Sequence):
            fail_type("join", "schedules", allowed, self.schedules)
        scheds = tuple(self.schedules)
        if not scheds:
            fail_value("join", "schedules", allowed, self.schedules)
        if not all(isinstance(s, Schedule) for s in scheds):
            fail_type("join", "schedules", allowed, self.schedules)
        if not isinstance(self.boundaries, Sequence):
            fail_type("join", "boundaries", "a sequence of ints", self.boundaries)
        bounds = tuple(as_int("join", "boundaries", b, minimum=0) for b in self.boundaries)
        if len(bounds) != len(scheds) - 1:
            raise ValueError(
                f"join: boundaries must have len(schedules) - 1 = {len(scheds) - 1} entries, "
                f"got {len(bounds)}"
            )
        if any(a > b for a, b in zip(bounds, bounds[1:])):
            raise ValueError(f"join: boundaries must be non-decreasing, got {list(bounds)}")
        _set(self, "schedules", scheds)
        _set(self, "boundaries", bounds)

    def value(self, t: int) -> float:
        i = bisect.bisect_right(self.boundaries, t)
        offset = self.boundaries[i - 1] if i else 0
        return self.schedules[i](t - offset)


@dataclass(frozen=True)
class Shift(Schedule):
    schedule: Schedule
    steps: int

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, Schedule):
            fail_type("shift", "schedule", "a Schedule", self.schedule)
        _set(self, "steps", as_int("shift", "steps", self.steps, minimum=0))

    def value(self, t: int) -> float:
        return self.schedule(t + self.steps)


# ----------------------------------------------------------------------------- factories


def constant(lr: float) -> Schedule:
    r"""A constant learning rate.

    .. math:: \eta_t = \eta

    Args:
        lr: the learning rate η, >= 0.

    >>> constant(0.1)(1000)
    0.1
    """
    return Constant(lr)


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    r"""Multiply by ``gamma`` every ``step_size`` steps (the shape of ``torch``'s ``StepLR``).

    .. math:: \eta_t = \eta \, \gamma^{\lfloor t / s \rfloor}

    Args:
        lr: the initial learning rate η, >= 0.
        step_size: s, the steps between two multiplications, an int >= 1.
        gamma: γ, the factor, >= 0 (default 0.1).

    >>> s = step_decay(1.0, step_size=10, gamma=0.5)
    >>> s(9), s(10), s(25)
    (1.0, 0.5, 0.25)
    """
    return StepDecay(lr, step_size, gamma)


def multi_step(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    r"""Multiply by ``gamma`` at each milestone (the shape of ``torch``'s ``MultiStepLR``).

    A milestone listed twice multiplies twice, as in torch.

    .. math:: \eta_t = \eta \, \gamma^{\#\{m_i \le t\}}

    Args:
        lr: the initial learning rate η, >= 0.
        milestones: the steps m_i at which to multiply: a sequence of ints >= 1 (in any order;
            sorted).
        gamma: γ, the factor, >= 0 (default 0.1).

    >>> s = multi_step(1.0, milestones=[3, 5], gamma=0.1)
    >>> s(2), s(3), round(s(5), 12)
    (1.0, 0.1, 0.01)
    """
    return MultiStep(lr, milestones, gamma)  # type: ignore[arg-type]


def exponential(lr: float, gamma: float) -> Schedule:
    r"""Multiply by ``gamma`` every step (the shape of ``torch``'s ``ExponentialLR``).

    .. math:: \eta_t = \eta \, \gamma^{t}

    Args:
        lr: the initial learning rate η, >= 0.
        gamma: γ, the factor per step, > 0.

    >>> exponential(1.0, gamma=0.5)(3)
    0.125
    """
    return Exponential(lr, gamma)


def polynomial(
    lr: float,
    total_steps: int,
    power: float = 1.0,
    min_lr: float | None = None,
    *,
    end_lr: float | None = None,
) -> Schedule:
    r"""Polynomial decay from ``lr`` to ``min_lr`` over ``total_steps``, then constant.

    With ``min_lr = 0`` (the default) this is ``torch``'s ``PolynomialLR`` (``total_iters =
    total_steps``). ``end_lr`` is ``min_lr``'s old name (a FutureWarning).

    .. math::
        \eta_t = (\eta - \eta_{end}) \left(1 - \frac{\min(t, T)}{T}\right)^{p} + \eta_{end}

    Args:
        lr: the initial learning rate η, >= 0.
        total_steps: T, the steps of the decay, an int >= 1.
        power: p, the power of the decay, > 0 (default 1.0: linear).
        min_lr: η_end, the value from ``total_steps`` on, >= 0 (default 0.0).
        end_lr: ``min_lr``'s old name (a FutureWarning); give one of the two, not both.

    >>> s = polynomial(1.0, total_steps=4, power=2.0)
    >>> s(0), s(2), s(4), s(100)
    (1.0, 0.25, 0.0, 0.0)
    """
    if end_lr is not None or min_lr is not None:
        min_lr = renamed("polynomial", "end_lr", end_lr, "min_lr", min_lr)  # type: ignore[assignment]
    return Polynomial(lr, total_steps, power, 0.0 if min_lr is None else min_lr)


def inverse_sqrt(lr: float, warmup: int = 0, timescale: float | None = None) -> Schedule:
    r"""Inverse square-root decay, after an optional linear warm-up.

    With :math:`n = t + 1`, :math:`w = \max(\text{warmup}, 1)` and the timescale
    :math:`s` (default :math:`w`):

    .. math::
        \eta_t = \begin{cases}
            \eta \, n / w & n < w \\
            \eta \sqrt{\dfrac{s}{n - w + s}} & n \ge w
        \end{cases}

    so the default is :math:`\eta \min(n/w, \sqrt{w/n})`, ``warmup=0`` is the lecture's
    :math:`\eta / \sqrt{t + 1}`, and the peak ``lr`` is reached at ``t = warmup - 1``. Equal to
    ``transformer(d, w, scale)`` for ``lr = scale / sqrt(d * w)``. A longer ``timescale`` decays
    more slowly: ``inverse_sqrt(lr, timescale=s)`` is :math:`\eta / \sqrt{1 + t/s}`, the decay of
    big_vision's and transformers' ``inverse_sqrt``.

    Args:
        lr: the peak learning rate :math:`\eta`, >= 0.
        warmup: steps of linear warm-up (counted from ``n = 1``), >= 0.
        timescale: :math:`s > 0`, the steps after the peak over which the rate falls by
            :math:`1/\sqrt{2}`; ``None`` means ``max(warmup, 1)``.

    >>> s = inverse_sqrt(1.0)
    >>> s(0), s(3)
    (1.0, 0.5)
    >>> inverse_sqrt(1.0, warmup=4)(1)
    0.5
    >>> inverse_sqrt(1.0, timescale=100)(300)
    0.5
    """
    return InverseSqrt(lr, warmup, timescale)


def inverse_time(lr: float, decay: float) -> Schedule:
    r"""Inverse-time decay, the shape of Adagrad's ``lr_decay``.

    .. math:: \eta_t = \frac{\eta}{1 + d\, t}

    Args:
        lr: the initial learning rate η, >= 0.
        decay: d, >= 0 (0: constant).

    >>> inverse_time(1.0, decay=0.5)(2)
    0.5
    """
    return InverseTime(lr, decay)


def cosine(lr: float, total_steps: int, min_lr: float = 0.0) -> Schedule:
    r"""Cosine annealing from ``lr`` to ``min_lr`` over ``total_steps``, then ``min_lr``.

    The closed form of ``torch``'s ``CosineAnnealingLR`` (``T_max = total_steps``,
    ``eta_min = min_lr``) for :math:`t \le T`; torch's cosine rises again after ``T_max``,
    this one holds ``min_lr``.

    .. math::
        \eta_t = \eta_{min} + \frac{\eta - \eta_{min}}{2}
                 \left(1 + \cos\frac{\pi \min(t, T)}{T}\right)

    Args:
        lr: the initial learning rate η, >= 0.
        total_steps: T, the steps of the decay, an int >= 1.
        min_lr: η_min, the value from ``total_steps`` on, >= 0 (default 0.0).

    >>> s = cosine(1.0, total_steps=100)
    >>> s(0), round(s(50), 12), s(100), s(200)
    (1.0, 0.5, 0.0, 0.0)
    """
    return Cosine(lr, total_steps, min_lr)


def linear_warmup(lr: float, warmup: int, start_lr: float = 0.0) -> Schedule:
    r"""Linear ramp from ``start_lr`` at ``t = 0`` to ``lr`` at ``t = warmup``, then constant.

    .. math::
        \eta_t = \eta_{start} + (\eta - \eta_{start}) \frac{\min(t, w)}{w}

    Join it with a decay using :func:`join` (boundary ``warmup``).

    Args:
        lr: the value η from ``warmup`` on, >= 0.
        warmup: w, the steps of the ramp, an int >= 0 (0: ``lr`` from the start).
        start_lr: η_start, the value at t = 0, >= 0 (default 0.0).

    >>> s = linear_warmup(1.0, warmup=4)
    >>> s(0), s(1), s(4), s(9)
    (0.0, 0.25, 1.0, 1.0)
    """
    return LinearWarmup(lr, warmup, start_lr)


def warmup_linear(
    lr: float, warmup: int, total_steps: int | None = None, *, total: int | None = None
) -> Schedule:
    r"""Linear warm-up then linear decay to 0 at ``total_steps`` (required; ``total`` is its
    old name, a FutureWarning).

    The shape of HuggingFace's ``get_linear_schedule_with_warmup``:

    .. math::
        \eta_t = \begin{cases}
            \eta \, t / w & t < w \\
            \eta \max\!\left(0, \frac{T - t}{\max(1, T - w)}\right) & t \ge w
        \end{cases}

    Args:
        lr: the peak learning rate η, reached at t = ``warmup``, >= 0.
        warmup: w, the steps of warm-up, an int >= 0 and <= ``total_steps``.
        total_steps: T, where the rate reaches 0, an int >= 1 (required).
        total: ``total_steps``'s old name (a FutureWarning); give one of the two, not both.

    >>> s = warmup_linear(1.0, warmup=2, total_steps=6)
    >>> [s(t) for t in range(8)]
    [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    n = renamed("warmup_linear", "total", total, "total_steps", total_steps)
    return WarmupLinear(lr, warmup, n)  # type: ignore[arg-type]


def warmup_cosine(
    lr: float,
    warmup: int,
    total_steps: int | None = None,
    min_lr: float = 0.0,
    num_cycles: float = 0.5,
    *,
    total: int | None = None,
) -> Schedule:
    r"""Linear warm-up then cosine decay to ``min_lr`` at ``total_steps`` (required; ``total``
    is its old name, a FutureWarning).

    The shape of HuggingFace's ``get_cosine_schedule_with_warmup`` (``min_lr = 0``) and
    ``get_cosine_with_min_lr_schedule_with_warmup``. With
    :math:`p = \min\!\left(1, \frac{t - w}{\max(1, T - w)}\right)`:

    .. math::
        \eta_t = \begin{cases}
            \eta \, t / w & t < w \\
            \eta_{min} + (\eta - \eta_{min})
            \max\!\left(0, \tfrac12 \left(1 + \cos(2 \pi c\, p)\right)\right) & t \ge w
        \end{cases}

    Unlike HuggingFace, :math:`p` stops at 1, so the value after ``total_steps`` is held.

    Args:
        lr: the peak learning rate η, reached at t = ``warmup``, >= 0.
        warmup: w, the steps of warm-up, an int >= 0 and <= ``total_steps``.
        total_steps: T, where the decay ends, an int >= 1 (required).
        min_lr: η_min, where the decay ends, >= 0 (default 0.0).
        num_cycles: c, the cosine waves over the decay, > 0 (default 0.5: one half-wave down to
            ``min_lr``).
        total: ``total_steps``'s old name (a FutureWarning); give one of the two, not both.

    >>> s = warmup_cosine(1.0, warmup=10, total_steps=110)
    >>> s(5), s(10), round(s(60), 12), s(110), s(500)
    (0.5, 1.0, 0.5, 0.0, 0.0)
    """
    n = renamed("warmup_cosine", "total", total, "total_steps", total_steps)
    return WarmupCosine(lr, warmup, n, min_lr, num_cycles)  # type: ignore[arg-type]


def transformer(d_model: int, warmup: int, scale: float = 1.0) -> Schedule:
    r"""The schedule of "Attention Is All You Need" (Vaswani et al., 2017), with :math:`n = t + 1`.

    .. math::
        \eta_t = s \, d^{-1/2} \min\!\left(n^{-1/2},\; n \, w^{-3/2}\right), \qquad n = t + 1

    The paper counts steps from 1; here ``t`` counts updates already applied, so the
    formula uses ``n = t + 1`` (the first update has a positive learning rate). The peak is
    at ``n = warmup``.

    Args:
        d_model: d, the model width, an int >= 1.
        warmup: w, the step n of the peak, an int >= 1.
        scale: s, a factor of the whole schedule, >= 0 (default 1.0).

    >>> s = transformer(d_model=512, warmup=4000)
    >>> round(s(3999), 10) == round(512**-0.5 * 4000**-0.5, 10)
    True
    """
    return Transformer(d_model, warmup, scale)


def cyclic(
    base_lr: float,
    max_lr: float,
    step_size_up: int,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> Schedule:
    r"""Cyclical learning rate (Smith, 2017), the shape of ``torch``'s ``CyclicLR``.

    With :math:`u, d` the steps up and down, :math:`c = \lfloor 1 + t/(u+d) \rfloor`,
    :math:`x = 1 + t/(u+d) - c` and :math:`r = u/(u+d)`:

    .. math::
        \eta_t = \eta_{base} + (\eta_{max} - \eta_{base})
                 \cdot \begin{cases} x / r & x \le r \\ (x - 1)/(r - 1) & x > r \end{cases}
                 \cdot a, \qquad
        a = \begin{cases} 1 & \text{triangular} \\ 2^{1 - c} & \text{triangular2} \\
                          \gamma^{t} & \text{exp\_range} \end{cases}

    ``mode`` is one of ``"triangular"``, ``"triangular2"``, ``"exp_range"``; ``gamma`` is
    used by ``"exp_range"`` only. ``step_size_down`` defaults to ``step_size_up``.

    Args:
        base_lr: η_base, the low end of each cycle, >= 0.
        max_lr: η_max, the high end, >= 0.
        step_size_up: u, the steps from low to high, an int >= 1.
        step_size_down: d, the steps from high to low, an int >= 1; None: ``step_size_up``.
        mode: the amplitude's shape: ``"triangular"`` (default), ``"triangular2"`` or
            ``"exp_range"``.
        gamma: γ, the amplitude's factor per step in ``"exp_range"`` mode, > 0 (default 1.0).

    >>> s = cyclic(0.0, 1.0, step_size_up=2)
    >>> [s(t) for t in range(5)]
    [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    return Cyclic(base_lr, max_lr, step_size_up, step_size_down, mode, gamma)


def cosine_restarts(lr: float, T_0: int, T_mult: int = 1, min_lr: float = 0.0) -> Schedule:
    r"""Cosine annealing with warm restarts, SGDR (Loshchilov & Hutter, 2017).

    The shape of ``torch``'s ``CosineAnnealingWarmRestarts``. Cycle :math:`k` lasts
    :math:`T_k = T_0 m^k` steps and starts at :math:`S_k = T_0 (m^k - 1)/(m - 1)`
    (:math:`S_k = k T_0` when :math:`m = 1`); :math:`k` is found in closed form,
    :math:`k = \lfloor \log_m (1 + t (m - 1)/T_0) \rfloor`. Then

    .. math::
        \eta_t = \eta_{min} + \frac{\eta - \eta_{min}}{2}
                 \left(1 + \cos\frac{\pi (t - S_k)}{T_k}\right)

    Args:
        lr: the value at the start of each cycle η, >= 0.
        T_0: the steps of the first cycle, an int >= 1.
        T_mult: m, the factor by which each cycle is longer than the previous one, an int >= 1
            (default 1).
        min_lr: η_min, the value each cycle decays towards, >= 0 (default 0.0).

    >>> s = cosine_restarts(1.0, T_0=4, T_mult=2)
    >>> s(0), s(2), s(4), s(8), s(12)
    (1.0, 0.5, 1.0, 0.5, 1.0)
    """
    return CosineRestarts(lr, T_0, T_mult, min_lr)


def one_cycle(
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    r"""The 1cycle policy (Smith & Topin, 2018), the shape of ``torch``'s ``OneCycleLR``.

    From :math:`\eta_0 = \eta_{max} / \text{div\_factor}` up to :math:`\eta_{max}` until step
    :math:`p N - 1`, then down to :math:`\eta_0 / \text{final\_div\_factor}` at step
    :math:`N - 1` (with ``three_phase``: up until :math:`pN - 1`, back to :math:`\eta_0` at
    :math:`2pN - 2`, then down). Within a phase from :math:`a` to :math:`b` at fraction
    :math:`q` of its steps:

    .. math::
        \text{cos: } b + \frac{a - b}{2}(1 + \cos \pi q), \qquad
        \text{linear: } a + (b - a) q

    ``anneal_strategy`` is ``"cos"`` or ``"linear"``. Steps past ``total_steps - 1`` hold
    the final value (torch raises instead).

    Args:
        max_lr: η_max, the peak, >= 0.
        total_steps: N, the steps of the cycle, an int >= 1.
        pct_start: p, the fraction of the steps spent rising, in [0, 1] (default 0.3).
        anneal_strategy: ``"cos"`` (default) or ``"linear"``.
        div_factor: η_0 = η_max / div_factor, > 0 (default 25.0).
        final_div_factor: the final value is η_0 / final_div_factor, > 0 (default 1e4).
        three_phase: go back to η_0 at step 2pN − 2 before the final decay (torch's
            ``three_phase``); True or False (default False).

    >>> s = one_cycle(1.0, total_steps=100, pct_start=0.5, anneal_strategy="linear")
    >>> s(0), s(49), round(s(99), 12)
    (0.04, 1.0, 4e-06)
    """
    return OneCycle(
        max_lr, total_steps, pct_start, anneal_strategy, div_factor, final_div_factor, three_phase
    )


def cosine_wave(
    lr: float, total_steps: int, num_cycles: float = 0.5, min_lr: float = 0.0
) -> Schedule:
    r"""``num_cycles`` cosine waves between ``lr`` and ``min_lr`` over ``total_steps``, and on.

    .. math::
        \eta_t = \eta_{min} + (\eta - \eta_{min}) \,
                 \tfrac12 \left(1 + \cos\left(2 \pi c \, \frac{t}{T}\right)\right)

    Unlike :func:`cosine`, nothing is held after :math:`T`: the wave goes on, with period
    :math:`T / c` (fractional periods are fine). With ``num_cycles=0.5`` this is the closed form
    of ``torch``'s ``CosineAnnealingLR`` (``T_max = total_steps``) at every step, and the decay
    of transformers' ``cosine`` and ``cosine_with_min_lr`` schedules, past their end too.

    Args:
        lr: the value at :math:`t = 0` (and at every multiple of the period), >= 0.
        total_steps: :math:`T`, the steps over which ``num_cycles`` waves run, >= 1.
        num_cycles: :math:`c > 0`; 0.5 is one half-wave from ``lr`` down to ``min_lr``.
        min_lr: the value at the troughs, >= 0.

    >>> s = cosine_wave(1.0, total_steps=10)
    >>> s(0), round(s(5), 12), s(10), round(s(15), 12), s(20)
    (1.0, 0.5, 0.0, 0.5, 1.0)
    """
    return CosineWave(lr, total_steps, num_cycles, min_lr)


def cosine_hard_restarts(
    lr: float, total_steps: int, num_cycles: float = 1.0, min_lr: float = 0.0
) -> Schedule:
    r"""``num_cycles`` equal cosine decays from ``lr`` towards ``min_lr``, then ``min_lr``.

    The decay of transformers' ``cosine_with_restarts`` ("hard restarts"). Each cycle lasts
    :math:`T / c` steps, which need not be an integer; with :math:`p = t / T`:

    .. math::
        \eta_t = \begin{cases}
            \eta_{min} + (\eta - \eta_{min}) \,
                \tfrac12 \left(1 + \cos\left(\pi \, (c\,p \bmod 1)\right)\right) & p < 1 \\
            \eta_{min} & p \ge 1
        \end{cases}

    Where :math:`T / c` is an integer :math:`L`, it equals ``cosine_restarts(lr, T_0=L)`` for
    :math:`t < T`.

    Args:
        lr: the value at the start of each cycle, >= 0.
        total_steps: :math:`T`, the steps that all the cycles fill, >= 1.
        num_cycles: :math:`c > 0`, how many cycles (a fraction cuts the last one short).
        min_lr: the value each cycle decays towards, and the value from :math:`T` on, >= 0.

    >>> s = cosine_hard_restarts(1.0, total_steps=45, num_cycles=2)  # cycles of 22.5 steps
    >>> s(0), round(s(22), 4), round(s(23), 4), s(45)
    (1.0, 0.0012, 0.9988, 0.0)
    """
    return CosineHardRestarts(lr, total_steps, num_cycles, min_lr)


def warmup_stable_decay(
    lr: float,
    warmup: int,
    stable: int,
    decay: int,
    min_lr: float = 0.0,
    warmup_type: str = "linear",
    decay_type: str = "cosine",
    num_cycles: float = 0.5,
) -> Schedule:
    r"""Warm-up, stable, decay (WSD): up from ``min_lr`` to ``lr``, hold, down to ``min_lr``.

    The "trapezoidal" schedule of MiniCPM (Hu et al., 2024) and Hägele et al. (2024), and
    transformers' ``warmup_stable_decay``. With :math:`w, s, d` the lengths of the three
    phases, :math:`p = t / w` in the warm-up and :math:`q = (t - w - s) / d` in the decay:

    .. math::
        \eta_t = \begin{cases}
            \eta_{min} + (\eta - \eta_{min}) \, u(p) & t < w \\
            \eta & w \le t < w + s \\
            \eta_{min} + (\eta - \eta_{min}) \, v(q) & w + s \le t < w + s + d \\
            \eta_{min} & t \ge w + s + d
        \end{cases}

    where the warm-up shape :math:`u` is :math:`p` (``"linear"``),
    :math:`\tfrac12(1 - \cos \pi p)` (``"cosine"``) or :math:`1 - \sqrt{1 - p}` (``"1-sqrt"``),
    and the decay shape :math:`v` is :math:`1 - q` (``"linear"``),
    :math:`\tfrac12(1 + \cos 2 \pi c q)` (``"cosine"``) or :math:`1 - \sqrt{q}` (``"1-sqrt"``).

    Args:
        lr: the peak (stable) learning rate :math:`\eta`, >= 0.
        warmup: :math:`w`, steps of warm-up, >= 0.
        stable: :math:`s`, steps at ``lr``, >= 0.
        decay: :math:`d`, steps of decay, >= 0.
        min_lr: where the warm-up starts and the decay ends, >= 0.
        warmup_type: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.
        decay_type: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.
        num_cycles: :math:`c > 0`, for the cosine decay; 0.5 is one half-wave down to ``min_lr``.

    >>> s = warmup_stable_decay(1.0, warmup=2, stable=2, decay=4, decay_type="1-sqrt")
    >>> [s(t) for t in range(9)]
    [0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.2928932188134524, 0.1339745962155614, 0.0]
    """
    return WarmupStableDecay(lr, warmup, stable, decay, min_lr, warmup_type, decay_type, num_cycles)


def shift(schedule: Schedule, steps: int) -> Schedule:
    r"""``schedule`` started ``steps`` steps in: the inverse of :func:`join`'s offset.

    .. math:: \eta_t = s(t + k)

    Useful for schedules that count steps from 1 where adaptlr counts from 0.

    Args:
        schedule: any :class:`Schedule`.
        steps: :math:`k \ge 0`, the steps of ``schedule`` already behind at :math:`t = 0`.

    >>> s = shift(linear_warmup(1.0, warmup=4), 1)
    >>> [s(t) for t in range(5)]
    [0.25, 0.5, 0.75, 1.0, 1.0]
    """
    return Shift(schedule, steps)


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    r"""Glue schedules end to end (``optax.join_schedules`` semantics).

    Schedule :math:`i` runs for :math:`b_{i-1} \le t < b_i` and is evaluated at its own
    step count :math:`t - b_{i-1}` (with :math:`b_{-1} = 0`): at ``t == boundaries[i]``
    schedule ``i + 1`` starts at its step 0.

    .. math:: \eta_t = s_i(t - b_{i-1}), \qquad i = \#\{j : b_j \le t\}

    Args:
        schedules: the schedules in order: a non-empty sequence of :class:`Schedule` objects.
        boundaries: b_i, the step at which schedule i + 1 starts: ``len(schedules) - 1`` non-
            decreasing ints >= 0.

    >>> s = join([linear_warmup(1.0, warmup=2), cosine(1.0, total_steps=4)], boundaries=[2])
    >>> [round(s(t), 6) for t in range(7)]
    [0.0, 0.5, 1.0, 0.853553, 0.5, 0.146447, 0.0]
    """
    return Join(schedules, boundaries)  # type: ignore[arg-type]


SCHEDULE_CLASSES: tuple[type[Schedule], ...] = (
    Constant,
    StepDecay,
    MultiStep,
    Exponential,
    Polynomial,
    InverseSqrt,
    InverseTime,
    Cosine,
    LinearWarmup,
    WarmupLinear,
    WarmupCosine,
    Transformer,
    Cyclic,
    CosineRestarts,
    OneCycle,
    CosineWave,
    CosineHardRestarts,
    WarmupStableDecay,
    Join,
    Shift,
)
