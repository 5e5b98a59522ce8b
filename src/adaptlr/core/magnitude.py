r"""Magnitudes σ_t: per-parameter sizes that the update is divided by.

Each magnitude accumulates squared gradients into its buffers and reads σ_t off them. Used
alone, a magnitude part turns ``u`` into ``u / σ``; inside :func:`rule` it divides a
direction computed from the same gradient (Adam is ``rule(ema, ema_sq)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._checks import NONNEGATIVE, UNIT, UNIT_OPEN, Choice, Text
from .base import Buffer, Context, Part, Value, resolve


class Magnitude(Part):
    """A part that divides by σ_t; subclasses define :meth:`accumulate` and :meth:`sigma`."""

    def accumulate(
        self, u: Any, buf: Mapping[str, Any], c: Mapping[str, Any], ops: Any
    ) -> dict[str, Any]:
        """This step's new buffers, by name, from the squares of ``u`` (elementwise).

        Args:
            u: the update this part receives (the gradient, or what earlier parts made of it): a
                tensor on the reference path, one element's value in a generated kernel.
            buf: this part's buffers (:attr:`buffers`) by name, as the previous step left them.
            c: this step's coefficients, as :meth:`coefficients` returned them.
            ops: the elementwise operations allowed (``sqrt``, ``maximum``, ``where``, ...):
                :class:`~adaptlr.core.TorchOps` on the reference path, the tracer's in a kernel.
        """
        raise NotImplementedError

    def apply(self, u: Any, p: Any, buf: Mapping[str, Any], c: Mapping[str, Any], ops: Any):
        new = self.accumulate(u, buf, c, ops)
        return u / self.sigma(new, c, ops), new


@dataclass(frozen=True, repr=False)
class sum_sq(Magnitude):
    r"""Root of the sum of squares (classic Adagrad, torch.optim.Adagrad).

    .. math:: s_t = s_0 + \sum_{k\le t} g_k^2,\qquad \sigma_t = \sqrt{s_t} + \epsilon

    Args:
        eps (float | Callable[[int], float], default 1e-10): ε, added to the root; a finite number
            >= 0, or a callable (a schedule) of the group's step count.
        initial_accumulator_value (float, default 0.0): s_0, the sum's starting value
            (torch.optim.Adagrad's); a finite number >= 0.
    """

    eps: Value = 1e-10
    initial_accumulator_value: Value = 0.0

    def __post_init__(self) -> None:
        self._check_fields(eps=NONNEGATIVE, initial_accumulator_value=NONNEGATIVE)

    @property
    def buffers(self):  # type: ignore[override]
        return (Buffer("sum", self.initial_accumulator_value),)

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        return {"eps": resolve(self.eps, ctx.count)}, {}

    def accumulate(self, u, buf, c, ops):
        return {"sum": buf["sum"] + u * u}

    def sigma(self, buf, c, ops):
        return ops.sqrt(buf["sum"]) + c["eps"]


@dataclass(frozen=True, repr=False)
class mean_sq(Magnitude):
    r"""The lecture's root *mean* square over all steps so far.

    .. math:: \sigma_t = \sqrt{\tfrac{1}{t}\sum_{k=1}^{t} g_k^2} + \epsilon

    (the lecture counts from 0 and writes :math:`1/(t+1)`). The mean is kept as a running
    mean, :math:`v_t = (1 - 1/t)\,v_{t-1} + g_t^2/t`, so it does not grow with t and an
    infinite square stays infinite instead of turning into inf − inf.

    Args:
        eps (float | Callable[[int], float], default 1e-8): ε, added to the root; a finite number >=
            0, or a callable (a schedule) of the group's step count.
    """

    eps: Value = 1e-8
    buffers = (Buffer("mean_square"),)

    def __post_init__(self) -> None:
        self._check_fields(eps=NONNEGATIVE)

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        c = {"keep": 1.0 - 1.0 / ctx.step, "take": 1.0 / ctx.step}
        return c | {"eps": resolve(self.eps, ctx.count)}, {}

    def accumulate(self, u, buf, c, ops):
        return {"mean_square": c["keep"] * buf["mean_square"] + c["take"] * (u * u)}

    def sigma(self, buf, c, ops):
        return ops.sqrt(buf["mean_square"]) + c["eps"]


INITS = ("zero", "first_gradient")


@dataclass(frozen=True, repr=False)
class ema_sq(Magnitude):
    r"""Exponential moving average of squared gradients (RMSProp, Adam's second moment).

    .. math::
        v_t = \beta\, v_{t-1} + (1-\beta)\, g_t^2,\qquad
        \sigma_t = \sqrt{\hat v_t} + \epsilon

    where :math:`\hat v_t` is :math:`v_t/(1-\beta^t)` if ``debias``, the running maximum of
    :math:`v` (AMSGrad, torch's: the max of the raw average) if ``amsgrad``, and
    :math:`v_t - \bar g_t^2` with :math:`\bar g_t` the moving average of gradients if
    ``centered``. ``init="zero"`` starts at :math:`v_0 = 0` (torch); ``"first_gradient"``
    starts at :math:`v_1 = g_1^2`, i.e. the lecture's :math:`\sigma_0 = |g_0|`.
    ``name`` is the buffer's name (torch calls it ``exp_avg_sq`` in Adam and ``square_avg``
    in RMSprop).

    Args:
        b2 (float | Callable[[int], float]): β, the decay rate of the average; a number in [0, 1]
            ([0, 1) with ``debias``), or a callable (a schedule) of the group's step count.
        eps (float | Callable[[int], float], default 1e-8): ε, added to the (debiased) root; a
            finite number >= 0, or a callable of the step count.
        debias (bool, default False): divide v_t by 1 − β^t (Adam's bias correction); True or False.
        amsgrad (bool, default False): divide by the running maximum of v (AMSGrad); True or False.
        centered (bool, default False): subtract the square of the moving average of the gradients
            (centered RMSprop); True or False.
        init (str, default "zero"): the average's start: ``"zero"`` (v_0 = 0, torch) or
            ``"first_gradient"`` (v_1 = g_1², the lecture's).
        name (str, default "exp_avg_sq"): the buffer's name in the optimizer's state; a non-empty
            string.
    """

    b2: Value
    eps: Value = 1e-8
    debias: bool = False
    amsgrad: bool = False
    centered: bool = False
    init: str = "zero"
    name: str = "exp_avg_sq"

    def __post_init__(self) -> None:
        # with debias, b2 = 1 would divide by 1 - b2**t = 0
        b2 = UNIT_OPEN if self.debias is True else UNIT
        self._check_fields(b2=b2, eps=NONNEGATIVE, init=Choice(INITS), name=Text())

    @property
    def buffers(self):  # type: ignore[override]
        extra = (Buffer("grad_avg"),) * self.centered + (Buffer("max_" + self.name),) * self.amsgrad
        return (Buffer(self.name),) + extra

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        b2 = resolve(self.b2, ctx.count)
        start = self.init == "first_gradient" and ctx.step == 1
        c = {
            "keep": 0.0 if start else b2,
            "take": 1.0 if start else 1.0 - b2,
            # as its inverse: a product per element, not a division (see ``ema``)
            "inv_root_correction": 1.0 / math.sqrt(1 - b2**ctx.step) if self.debias else 1.0,
            "eps": resolve(self.eps, ctx.count),
        }
        return c, {}

    def accumulate(self, u, buf, c, ops):
        v = c["keep"] * buf[self.name] + c["take"] * (u * u)
        new = {self.name: v}
        if self.centered:
            new["grad_avg"] = c["keep"] * buf["grad_avg"] + c["take"] * u
        if self.amsgrad:
            new["max_" + self.name] = ops.maximum(buf["max_" + self.name], v)
        return new

    def sigma(self, buf, c, ops):
        v = buf["max_" + self.name] if self.amsgrad else buf[self.name]
        if self.centered:
            v = v - buf["grad_avg"] * buf["grad_avg"]
        return ops.sqrt(v) * c["inv_root_correction"] + c["eps"]


def radam_rectification(
    b2: float, step: int, threshold: float = 5.0, *, pow_half: bool = False
) -> float | None:
    r"""RAdam's :math:`r_t` at ``step`` (1 first), or ``None`` while :math:`\rho_t` is not
    above ``threshold`` (torch.optim.RAdam: 5; the paper and schedulefree's
    RAdamScheduleFree: 4).

    .. math::
        \rho_\infty = \tfrac{2}{1-\beta_2} - 1,\quad
        \rho_t = \rho_\infty - \tfrac{2 t \beta_2^t}{1-\beta_2^t},\quad
        r_t = \sqrt{\tfrac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

    ``pow_half``: the root as ``x ** 0.5`` (C ``pow``, schedulefree's rounding) rather than
    ``math.sqrt`` (torch's); the two can differ in the last bit.
    """
    beta2_t = b2**step
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * step * beta2_t / (1 - beta2_t)
    if not rho_t > threshold:
        return None
    r2 = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
    return r2**0.5 if pow_half else math.sqrt(r2)


@dataclass(frozen=True, repr=False)
class rectified(Magnitude):
    r"""RAdam's rectified magnitude (Liu et al. 2019, with torch.optim.RAdam's details).

    .. math::
        \rho_\infty = \tfrac{2}{1-\beta_2} - 1,\quad
        \rho_t = \rho_\infty - \tfrac{2 t \beta_2^t}{1-\beta_2^t},\quad
        r_t = \sqrt{\tfrac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

    .. math::
        \sigma_t = \frac{\sqrt{v_t} + \epsilon}{r_t\sqrt{1-\beta_2^t}}\ \text{if}\ \rho_t > 5,
        \quad \sigma_t = 1\ \text{otherwise (an un-preconditioned momentum step)}

    ``v_t`` is :func:`ema_sq` without bias correction; torch adds ε to the uncorrected root and
    rectifies when :math:`\rho_t > 5` (the paper says 4).

    Args:
        b2 (float | Callable[[int], float]): β2, the decay rate of the average of squares; a number
            in [0, 1), or a callable (a schedule) of the group's step count.
        eps (float | Callable[[int], float], default 1e-8): ε, added to the uncorrected root; a
            finite number >= 0, or a callable of the step count.
    """

    b2: Value
    eps: Value = 1e-8

    def __post_init__(self) -> None:
        self._check_fields(b2=UNIT_OPEN, eps=NONNEGATIVE)

    @property
    def _v(self) -> ema_sq:
        return ema_sq(self.b2, eps=self.eps)

    @property
    def buffers(self):  # type: ignore[override]
        return self._v.buffers

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        c, _ = self._v.coefficients(ctx, scalars)
        t, b2 = ctx.step, resolve(self.b2, ctx.count)
        rect = radam_rectification(b2, t)
        scale = 1.0 / (math.sqrt(1 - b2**t) * (1.0 if rect is None else rect))
        c.update(rectify=0.0 if rect is None else 1.0, scale=scale)
        return c, {}

    def accumulate(self, u, buf, c, ops):
        return self._v.accumulate(u, buf, c, ops)

    def sigma(self, buf, c, ops):
        return ops.where(c["rectify"] > 0.5, self._v.sigma(buf, c, ops) * c["scale"], 1.0)


@dataclass(frozen=True, repr=False)
class rule(Part):
    r"""The lecture's rule: a direction divided by a magnitude, both fed the same gradient.

    .. math:: u_t = m_t / \sigma_t

    ``rule(ema(β1), ema_sq(β2, debias=True))`` is Adam; ``rule(nesterov_ema(β1),
    ema_sq(β2, debias=True))`` is NAdam; ``rule(ema(β1), rectified(β2))`` is RAdam. A plain
    gradient direction is ``rule(None, magnitude)``, the same as the magnitude alone.

    Args:
        direction (Part | None): the part that makes m_t from the gradient (:class:`ema`,
            :class:`momentum`, :class:`nesterov_ema`, or any part), or None for the gradient itself;
            its buffer names must differ from the magnitude's.
        magnitude (Magnitude): the part that makes σ_t from the same gradient: a :class:`Magnitude`
            (:class:`sum_sq`, :class:`mean_sq`, :class:`ema_sq`, :class:`rectified`).
    """

    direction: Part | None
    magnitude: Magnitude

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.magnitude, Magnitude):
            raise TypeError(
                f"rule: magnitude must be a magnitude part (sum_sq, mean_sq, ema_sq, rectified), "
                f"got {type(self.magnitude).__name__}"
            )
        if self.direction is not None and not isinstance(self.direction, Part):
            raise TypeError(f"rule: direction must be a part, got {type(self.direction).__name__}")
        names = [b.name for b in self.buffers] + [s.name for s in self.scalars]
        if len(set(names)) != len(names):
            raise ValueError(f"rule: direction and magnitude share a buffer name: {names}")

    @property
    def buffers(self):  # type: ignore[override]
        return (self.direction.buffers if self.direction else ()) + self.magnitude.buffers

    @property
    def scalars(self):  # type: ignore[override]
        return (self.direction.scalars if self.direction else ()) + self.magnitude.scalars

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        c, new_scalars = {}, {}
        for tag, part in (("d", self.direction), ("m", self.magnitude)):
            if part is None:
                continue
            pc, ps = part.coefficients(ctx, {s.name: scalars[s.name] for s in part.scalars})
            c.update({f"{tag}.{k}": v for k, v in pc.items()})
            new_scalars.update(ps)
        return c, new_scalars

    @staticmethod
    def _own(c: Mapping[str, Any], tag: str) -> dict[str, Any]:
        return {k[2:]: v for k, v in c.items() if k.startswith(tag + ".")}

    def direction_and_squares(
        self, u: Any, p: Any, buf: Mapping[str, Any], c: Mapping[str, Any], ops: Any
    ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """m_t, the magnitude's new buffers, and every new buffer: both parts fed ``u``.

        Args:
            u: the update this rule receives (the gradient, or what earlier parts made of it): a
                tensor on the reference path, one element's value in a generated kernel.
            p: the parameter (its value before this step), in the same form as ``u``.
            buf: the buffers of both parts, by name, as the previous step left them.
            c: this step's coefficients, as :meth:`coefficients` returned them (the direction's keys
                prefixed ``d.``, the magnitude's ``m.``).
            ops: the elementwise operations allowed: :class:`~adaptlr.core.TorchOps` on the
                reference path, the tracer's in a kernel.
        """
        new: dict[str, Any] = {}
        m = u
        if self.direction is not None:
            dbuf = {b.name: buf[b.name] for b in self.direction.buffers}
            m, new = self.direction.apply(u, p, dbuf, self._own(c, "d"), ops)
        mbuf = self.magnitude.accumulate(
            u, {b.name: buf[b.name] for b in self.magnitude.buffers}, self._own(c, "m"), ops
        )
        return m, mbuf, {**new, **mbuf}

    def apply(self, u, p, buf, c, ops):
        m, mbuf, new = self.direction_and_squares(u, p, buf, c, ops)
        return m / self.magnitude.sigma(mbuf, self._own(c, "m"), ops), new

    def sigma(self, buf, c, ops):
        return self.magnitude.sigma(
            {b.name: buf[b.name] for b in self.magnitude.buffers}, self._own(c, "m"), ops
        )
