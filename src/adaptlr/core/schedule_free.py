r"""Schedule-Free (Defazio et al., 2024, "The Road Less Scheduled"): interpolation and
averaging around any normalized direction, instead of a learning-rate schedule.

Three sequences share one step. Gradients are taken at :math:`y`, the parameter the model
holds while training; :math:`z` takes plain steps; :math:`x`, the point to evaluate, is a
weighted average of the :math:`z` iterates:

.. math::
    z_{t+1} = z_t - \gamma_t \hat g_t,\qquad
    x_{t+1} = (1-c_{t+1})\,x_t + c_{t+1} z_{t+1},\qquad
    y_{t+1} = (1-\beta)\,z_{t+1} + \beta\,x_{t+1}

with :math:`\hat g_t` the incoming update (the raw gradient for SGD, :math:`g/\sigma` for
AdamW; weight decay, added before this part, is evaluated at :math:`y`),
:math:`\gamma_t = \eta\cdot\min(1, (k+1)/T_{warm})\cdot f_k` and the averaging weights
:math:`c_{t+1} = w_k/\sum_{i\le k} w_i`, :math:`w_k = (k+1)^r\,\gamma_{\max}^{p}`, where
:math:`\gamma_{\max}` is the largest :math:`\gamma` so far, :math:`p` = ``weight_lr_power``
and :math:`k` the group's count of applied updates. Only :math:`y` and :math:`z` are kept
(schedulefree 1.4.1's memory-saving form): :math:`x` is recovered from them when needed
(:func:`move_to_x_`), and the step updates :math:`y` directly,

.. math::
    y \leftarrow (1-c)\,y + c\,z + \gamma\,(\beta(1-c) - 1)\,\hat g,\qquad
    z \leftarrow z - \gamma\,\hat g .

:class:`schedule_free` is that step, as the last part of a chain; the scalars it keeps once
per param group (``lr_max``, ``weight_sum``, ``scheduled_lr``) carry schedulefree's names.
:class:`group_clock` makes a magnitude count time as schedulefree does (by the group's step,
not the tensor's own), which matters for a tensor that missed a step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import _checks
from .._checks import FINITE, LR, NONNEGATIVE, UNIT
from .base import PROCESS_GROUP, Buffer, Context, Part, Scalar, Value, resolve
from .distance import GROWTH, POSITIVE, _ProdigyWeights
from .magnitude import Magnitude, radam_rectification

#: β of the interpolation: 0 would put y at z and make x = y/β undefined (eval)
OPEN_UNIT = _checks.Number(0.0, 1.0, lo_open=True, hi_open=True)


@dataclass(frozen=True, repr=False)
class schedule_free(Part):
    r"""Schedule-Free's interpolation and averaging: the final update of the parameter y.

    .. math::
        \gamma = \eta\cdot s_k\cdot f_k,\quad \gamma_{\max} \leftarrow \max(\gamma_{\max},
        \gamma),\quad w = (k+1)^r\gamma_{\max}^{p},\quad W \leftarrow W + w,\quad c = w/W,
        \\
        y \leftarrow y + c\,(z - y) + \gamma\,(\beta(1-c)-1)\,u,\qquad z \leftarrow z - \gamma u

    with :math:`s_k = (k+1)/T` while :math:`k < T` = ``warmup_steps`` (else 1), :math:`f_k`
    = ``lr_factor`` (a number or a schedule ``count -> factor``: the paper's
    :math:`\sqrt{1-\beta_2^{k+1}}`, RAdam's rectification), :math:`c = 0` when :math:`W = 0`.
    ``b1`` is the interpolation β (schedulefree's ``betas[0]``, or SGD's ``momentum``).
    ``z`` starts as a copy of the parameter. γ, :math:`\gamma_{\max}` and :math:`W` are kept
    in the param group as ``scheduled_lr``, ``lr_max`` and ``weight_sum``.

    Args:
        lr (float | Callable[[int], float]): η, the learning rate; a finite number >= 0, or a
            callable (a schedule) of the group's step count.
        b1 (float | Callable[[int], float], default 0.9): β, the interpolation between z and x that
            gives y; a number in (0, 1), or a callable (a schedule) of the group's step count.
        warmup_steps (float | Callable[[int], float], default 0): T, the steps of linear warm-up of
            γ (0: none); a finite number >= 0, or a callable (a schedule) of the group's step count.
        r (float | Callable[[int], float], default 0.0): the power of (k+1) in the averaging
            weights; a finite number, or a callable (a schedule) of the group's step count.
        weight_lr_power (float | Callable[[int], float], default 2.0): p, the power of γ_max in the
            averaging weights; a finite number >= 0, or a callable (a schedule) of the group's step
            count.
        lr_factor (float | Callable[[int], float], default 1.0): f_k, a factor of γ (the paper's √(1
            − β2^(k+1)), RAdam's rectification); a finite number >= 0, or a callable (a schedule) of
            the group's step count.

    Example:
        >>> import torch
        >>> from adaptlr import core
        >>> sf = core.chain(core.schedule_free(lr=0.1, b1=0.9))
        >>> p = [torch.tensor([1.0])]
        >>> state = sf.init(p)
        >>> u, state = sf.update([torch.tensor([2.0])], state, p)
        >>> p[0] + u[0], state[0]["z"], state.shared["weight_sum"]  # first step: y = x = z
        (tensor([0.8000]), tensor([0.8000]), 0.010000000000000002)
    """

    lr: Value
    b1: Value = 0.9
    warmup_steps: Value = 0
    r: Value = 0.0
    weight_lr_power: Value = 2.0
    lr_factor: Value = 1.0
    buffers = (Buffer("z", from_param=True),)
    shared = (Scalar("lr_max", -1.0), Scalar("weight_sum", 0.0), Scalar("scheduled_lr", 0.0))
    is_scale = True

    def __post_init__(self) -> None:
        self._check_fields(
            lr=LR,
            b1=OPEN_UNIT,
            warmup_steps=NONNEGATIVE,
            r=FINITE,
            weight_lr_power=NONNEGATIVE,
            lr_factor=NONNEGATIVE,
        )

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        k = ctx.count
        warmup = resolve(self.warmup_steps, k)
        sched = (k + 1) / warmup if k < warmup else 1.0
        # (η·s)·f in this order: schedulefree's rounding
        lr = resolve(self.lr, k) * sched * resolve(self.lr_factor, k)
        return _averaging(lr, k, scalars, self.b1, self.r, self.weight_lr_power)

    def apply(self, u, p, buf, c, ops):
        return _interpolate(u, p, buf["z"], c)

    def scale(self, c: Mapping[str, float]) -> float:
        return c["lr"]


def _averaging(
    lr: float, k: int, scalars: Mapping[str, float], b1: Value, r: Value, power: Value
) -> tuple[dict[str, float], dict[str, float]]:
    """Schedule-Free's coefficients for a step of size γ = ``lr`` (the one home of the
    averaging weights, for :class:`schedule_free` and :class:`schedule_free_distance`)."""
    lr_max = max(lr, scalars["lr_max"])
    weight = ((k + 1) ** resolve(r, k)) * (lr_max ** resolve(power, k))
    weight_sum = scalars["weight_sum"] + weight
    ckp1 = weight / weight_sum if weight_sum != 0 else 0.0
    c = {"ckp1": ckp1, "y_lr": lr * (resolve(b1, k) * (1 - ckp1) - 1), "lr": lr}
    return c, {"lr_max": lr_max, "weight_sum": weight_sum, "scheduled_lr": lr}


def _interpolate(u, p, z, c):  # type: ignore[no-untyped-def]
    """y ← y + c(z − y) + γ(β(1−c) − 1)u and z ← z − γu: the new y's update, and z."""
    return c["ckp1"] * (z - p) + c["y_lr"] * u, {"z": z - c["lr"] * u}


@dataclass(frozen=True, repr=False)
class schedule_free_distance(_ProdigyWeights, Part):
    r"""Schedule-Free averaging whose step size is Prodigy's distance estimate, measured
    along z: no learning rate to choose (:class:`adaptlr.Auto`'s last part).

    Schedule-Free's z takes the plain steps :math:`z_{k+1} = z_k - \gamma_k u_k`, so the
    distance the estimate needs is the one z travels; the point y where gradients are taken
    moves about :math:`1-\beta` as far, which would shrink the estimate by that factor.
    With :math:`\gamma_k = d_k\eta` and :math:`u_k` the incoming update (for
    :class:`adaptlr.Auto`, :math:`g_k/\sigma_k`):

    .. math::
        r_{k+1} = \beta_3 r_k + \tfrac{d_k}{d_0}\gamma_k\langle u_k, z_0 - z_k\rangle,\quad
        s_{k+1} = \beta_3 s_k + \tfrac{d_k}{d_0}\gamma_k u_k,\quad
        \hat d = c\,\frac{r_{k+1}}{\|s_{k+1}\|_1},\quad
        d_{k+1} = \min\bigl(\max(d_k, \hat d_1, \dots, \hat d_{k+1}),\ \Gamma d_k\bigr),\\
        w_k = (k+1)^r\bigl(\max_{i\le k}\gamma_i\bigr)^{p},\quad
        c_{k+1} = \frac{w_k}{\sum_{i\le k} w_i},\quad
        y_{k+1} = y_k + c_{k+1}(z_k - y_k) + \gamma_k\bigl(\beta(1-c_{k+1})-1\bigr)u_k,\quad
        z_{k+1} = z_k - \gamma_k u_k

    with the sums over every param group of the optimizer, :math:`z_0 = y_0` the starting
    point (buffer ``p0``), β3 = ``beta3``, c = ``d_coef``, Γ = ``growth_rate``
    (``safeguard_warmup``: s takes :math:`(d_k/d_0)d_k u_k`, without η). The estimate is
    Prodigy's (:class:`scale_by_distance`, with z in place of the parameter); the averaging
    is :class:`schedule_free`'s, its weights growing with γ_max² as d grows, so the steps
    taken while d was small count little in x. Shared scalars: ``d``, ``d_max``,
    ``d_numerator``, ``d_denom``, ``d_hat`` (prodigyopt's names), ``lr_max``,
    ``weight_sum``, ``scheduled_lr`` (schedulefree's); buffers ``z``, ``s``, ``p0``.

    Args:
        lr (float | Callable[[int], float], default 1.0): η, multiplies the estimated step size d
            (a schedule here is a warm-up or a decay on top of the estimate); a finite number
            >= 0, or a callable (a schedule) of the group's step count.
        b1 (float | Callable[[int], float], default 0.9): β, the interpolation between z and x that
            gives y; a number in (0, 1), or a callable (a schedule) of the group's step count.
        beta3 (float | Callable[[int], float], default √0.999): β3, the decay rate of r and s; a
            number in [0, 1], or a callable (a schedule) of the group's step count.
        d0 (float | Callable[[int], float], default 1e-3): d_0, the initial estimate, and so the
            smallest step size; a finite number > 0, or a callable (a schedule) of the group's
            step count.
        d_coef (float | Callable[[int], float], default 1.0): c, multiplies the estimate d̂; a
            finite number > 0, or a callable (a schedule) of the group's step count.
        growth_rate (float | Callable[[int], float] | None, default None): Γ, the largest factor by
            which d may grow in one step; None: no limit; else a finite number > 0, or a callable (a
            schedule) of the group's step count.
        safeguard_warmup (bool, default False): s takes (d/d_0)·d·u without η (for an η that
            warms up); True or False.
        r (float | Callable[[int], float], default 0.0): the power of (k+1) in the averaging
            weights; a finite number, or a callable (a schedule) of the group's step count.
        weight_lr_power (float | Callable[[int], float], default 2.0): p, the power of γ_max in the
            averaging weights; a finite number >= 0, or a callable (a schedule) of the group's step
            count.
        process_group (ProcessGroup | str | None, default None): where each process holds other
            parameters as plain tensors (ZeRO), the ``torch.distributed`` group (or ``"world"``)
            across which the optimizer-wide sums are added; None: this process's tensors only
            (enough for DTensor shards and for replicated parameters).

    Example:
        >>> import torch
        >>> from adaptlr import core
        >>> sf = core.chain(core.schedule_free_distance(d0=0.1))
        >>> p = [torch.tensor([1.0])]
        >>> state = sf.init(p)
        >>> u, state = sf.update([torch.tensor([2.0])], state, p)
        >>> p[0] + u[0], state[0]["z"]  # the first step is d0·u: y = x = z
        (tensor([0.8000]), tensor([0.8000]))
        >>> state.shared["d"]  # no distance travelled before this step: no estimate yet
        0.1
    """

    lr: Value = 1.0
    b1: Value = 0.9
    beta3: Value = math.sqrt(0.999)
    d0: Value = 1e-3
    d_coef: Value = 1.0
    growth_rate: Value | None = None
    safeguard_warmup: bool = False
    r: Value = 0.0
    weight_lr_power: Value = 2.0
    process_group: Any = None
    buffers = (Buffer("z", from_param=True), Buffer("s"), Buffer("p0", from_param=True))
    is_scale = True

    def __post_init__(self) -> None:
        self._check_fields(
            lr=LR, b1=OPEN_UNIT, beta3=UNIT, d0=POSITIVE, d_coef=POSITIVE, growth_rate=GROWTH,
            r=FINITE, weight_lr_power=NONNEGATIVE, process_group=PROCESS_GROUP,
        )  # fmt: skip

    @property
    def shared(self):  # type: ignore[override]
        return (*super().shared, *schedule_free.shared)

    def _b3(self, ctx: Context) -> float:
        return resolve(self.beta3, ctx.count)

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        c = self._weights(ctx, scalars, 1.0)
        new = {} if ctx.sums is None else self._estimate(ctx, scalars)
        avg, more = _averaging(c["dlr"], ctx.count, scalars, self.b1, self.r, self.weight_lr_power)
        return {**c, **avg}, {**new, **more}

    def sum_terms(self, u, p, buf, c, ops):
        # Prodigy's terms with z, the point that takes the plain steps, in place of p
        return super().sum_terms(u, buf["z"], buf, c, ops)

    def apply(self, u, p, buf, c, ops):
        out, new = _interpolate(u, p, buf["z"], c)
        return out, {**new, "s": self._s(u, buf, c)}

    def scale(self, c: Mapping[str, float]) -> float:
        return c["lr"]


@dataclass(frozen=True, repr=False)
class group_clock(Magnitude):
    r"""A magnitude whose coefficients follow the group's count of updates, not the tensor's.

    schedulefree corrects :math:`v` by :math:`1-\beta_2^{k+1}` with :math:`k` the group's
    step count, also for a tensor whose gradient was ``None`` on some steps (whose own count
    is smaller). ``gate`` (a schedule ``count -> number``) switches the division off where it
    is not above 0.5: σ = 1 there, the update passes unchanged (RAdam's early steps), while
    the buffers still accumulate.

    Args:
        magnitude (Magnitude): the magnitude part whose coefficients are computed at the group's
            count (:class:`~adaptlr.core.ema_sq`, ...): a :class:`~adaptlr.core.Magnitude`.
        gate (Callable[[int], float] | None, default None): a schedule count -> number; where it is
            not above 0.5, σ = 1; None: always divide.
    """

    magnitude: Magnitude
    gate: Value | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.magnitude, Magnitude):
            raise TypeError(
                f"group_clock: magnitude must be a magnitude part (sum_sq, mean_sq, ema_sq, "
                f"rectified), got {type(self.magnitude).__name__}"
            )

    @property
    def buffers(self):  # type: ignore[override]
        return self.magnitude.buffers

    @property
    def scalars(self):  # type: ignore[override]
        return self.magnitude.scalars

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        clock = Context(step=ctx.count + 1, count=ctx.count, sums=ctx.sums)
        c, new = self.magnitude.coefficients(clock, scalars)
        if self.gate is not None:
            c = {**c, "gate": resolve(self.gate, ctx.count)}
        return c, new

    def accumulate(self, u, buf, c, ops):
        return self.magnitude.accumulate(u, buf, c, ops)

    def sigma(self, buf, c, ops):
        s = self.magnitude.sigma(buf, c, ops)
        return s if self.gate is None else ops.where(c["gate"] > 0.5, s, 1.0)


@dataclass(frozen=True)
class rectified_lr:
    """``count -> r_{count+1}``, RAdamScheduleFree's factor of the learning rate: RAdam's
    rectification once ρ_t > 4, before that 0 (``silent``: the parameters stay put while
    v warms up) or 1 (a plain SGD step)."""

    b2: Value
    silent: bool = True

    def __call__(self, count: int) -> float:
        r = radam_rectification(resolve(self.b2, count), count + 1, 4.0, pow_half=True)
        return (0.0 if self.silent else 1.0) if r is None else r


@dataclass(frozen=True)
class rectifying:
    """``count -> 1.0`` once RAdam's ρ_t > 4 (divide by σ), else ``0.0``: a
    :class:`group_clock` gate."""

    b2: Value

    def __call__(self, count: int) -> float:
        r = radam_rectification(resolve(self.b2, count), count + 1, 4.0, pow_half=True)
        return 0.0 if r is None else 1.0


@dataclass(frozen=True)
class sqrt_bias_correction:
    r"""``count -> \sqrt{1-\beta_2^{count+1}}``: the paper's Algorithm 1 scales γ by it
    (with σ = √v + ε uncorrected) where schedulefree's AdamW corrects σ instead."""

    b2: Value

    def __call__(self, count: int) -> float:
        return math.sqrt(1 - resolve(self.b2, count) ** (count + 1))


def _lerp_(p: Tensor, end: Tensor, weight: float) -> None:
    """``p ← p + weight·(end − p)`` in place, in ``end``'s precision when it is wider."""
    end = end.to(p.device)
    if end.dtype == p.dtype:
        p.lerp_(end, weight)
    else:
        p.copy_(torch.lerp(p.to(end.dtype), end, weight))


@torch.no_grad()
def move_to_x_(p: Tensor, z: Tensor, b1: float) -> None:
    r"""Turn the training point y into the average x in place (``optimizer.eval()``):
    :math:`x = y + (1 - 1/\beta)(z - y)`, the inverse of :func:`move_to_y_`."""
    _lerp_(p, z, 1 - 1 / b1)


@torch.no_grad()
def move_to_y_(p: Tensor, z: Tensor, b1: float) -> None:
    r"""Turn the average x into the training point y in place (``optimizer.train()``):
    :math:`y = (1-\beta) z + \beta x`."""
    _lerp_(p, z, 1 - b1)
