r"""Directions m_t: what the update points along.

The raw gradient is the identity (no part at all); these parts replace it by a weighted sum of
past gradients.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .._checks import NONNEGATIVE, UNIT, UNIT_OPEN
from .base import Buffer, Context, Part, Scalar, Value, resolve, scalar_dtype


@dataclass(frozen=True, repr=False)
class momentum(Part):
    r"""Heavy-ball momentum with torch.optim.SGD's semantics.

    .. math::
        b_1 = g_1,\qquad b_t = \mu\, b_{t-1} + (1-\tau)\, g_t,\qquad
        m_t = \begin{cases} g_t + \mu\, b_t & \text{nesterov} \\ b_t & \text{otherwise}\end{cases}

    with momentum :math:`\mu` and dampening :math:`\tau`. The first step copies the gradient
    (no dampening), as torch does.

    Args:
        momentum (float | Callable[[int], float]): μ, the weight of the previous buffer; a finite
            number >= 0, or a callable (a schedule) of the group's step count.
        dampening (float | Callable[[int], float], default 0.0): τ: the gradient enters the buffer
            with weight 1 − τ (from the second step on); a number in [0, 1], or a callable of the
            step count.
        nesterov (bool, default False): return g_t + μ b_t (Nesterov momentum) instead of b_t; True
            or False.
    """

    momentum: Value
    dampening: Value = 0.0
    nesterov: bool = False
    buffers = (Buffer("momentum_buffer"),)

    def __post_init__(self) -> None:
        self._check_fields(momentum=NONNEGATIVE, dampening=UNIT)

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        mu = resolve(self.momentum, ctx.count)
        first = ctx.step == 1
        c = {
            "a": 0.0 if first else mu,
            "b": 1.0 if first else 1 - resolve(self.dampening, ctx.count),
        }
        if self.nesterov:
            c["mu"] = mu
        return c, {}

    def apply(self, u: Any, p: Any, buf: Mapping[str, Any], c: Mapping[str, Any], ops: Any):
        b = c["a"] * buf["momentum_buffer"] + c["b"] * u
        m = u + c["mu"] * b if self.nesterov else b
        return m, {"momentum_buffer": b}


@dataclass(frozen=True, repr=False)
class ema(Part):
    r"""Exponential moving average of the gradient (Adam's first moment).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\qquad
        \hat m_t = m_t / (1-\beta_1^t)\ \text{(if debias)}

    Args:
        b1 (float | Callable[[int], float]): β1, the decay rate of the average; a number in [0, 1),
            or a callable (a schedule) of the group's step count.
        debias (bool, default True): divide by 1 − β1^t (Adam's bias correction); True or False.
    """

    b1: Value
    debias: bool = True
    buffers = (Buffer("exp_avg"),)

    def __post_init__(self) -> None:
        self._check_fields(b1=UNIT_OPEN)

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        b1 = resolve(self.b1, ctx.count)
        correction = 1 - b1**ctx.step if self.debias else 1.0
        return {"take": 1 - b1, "inv_correction": 1.0 / correction}, {}

    def apply(self, u: Any, p: Any, buf: Mapping[str, Any], c: Mapping[str, Any], ops: Any):
        m = buf["exp_avg"] + c["take"] * (u - buf["exp_avg"])
        # times the inverse (a per-step number), not divided by the correction: a division per
        # element can make a fused CPU step compute-bound; both paths round the same way
        return m * c["inv_correction"], {"exp_avg": m}


@dataclass(frozen=True, repr=False)
class nesterov_ema(Part):
    r"""NAdam's direction (Dozat 2016, with torch.optim.NAdam's momentum decay ψ).

    .. math::
        \mu_t = \beta_1\,(1 - \tfrac12\, 0.96^{t\psi}),\qquad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\\
        \hat m_t = \frac{(1-\mu_t)\, g_t}{1 - \prod_{i\le t}\mu_i}
                 + \frac{\mu_{t+1}\, m_t}{1 - \prod_{i\le t+1}\mu_i}

    ``mu_product`` is kept per tensor in the scalar dtype torch uses, so rounding matches.

    Args:
        b1 (float | Callable[[int], float]): β1, the decay rate of the average and the scale of μ_t;
            a number in [0, 1), or a callable (a schedule) of the group's step count.
        momentum_decay (float | Callable[[int], float], default 0.004): ψ, how fast μ_t rises to β1
            (torch.optim.NAdam's ``momentum_decay``); a finite number >= 0, or a callable of the
            step count.
    """

    b1: Value
    momentum_decay: Value = 4e-3
    buffers = (Buffer("exp_avg"),)
    scalars = (Scalar("mu_product", 1.0),)

    def __post_init__(self) -> None:
        self._check_fields(b1=UNIT_OPEN, momentum_decay=NONNEGATIVE)

    @staticmethod
    def _mu(b1: float, decay: float, step: int) -> float:
        return b1 * (1.0 - 0.5 * 0.96 ** (step * decay))

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        b1, decay = resolve(self.b1, ctx.count), resolve(self.momentum_decay, ctx.count)
        mu, mu_next = self._mu(b1, decay, ctx.step), self._mu(b1, decay, ctx.step + 1)
        # torch keeps the product as a 0-d tensor of its scalar dtype and multiplies in that
        # dtype; doing the same keeps NAdam equal to torch's to the last bit
        product = float(torch.tensor(scalars["mu_product"], dtype=scalar_dtype()) * mu)
        c = {
            "take": 1 - b1,
            "g": (1.0 - mu) / (1.0 - product),
            "m": mu_next / (1.0 - product * mu_next),
        }
        return c, {"mu_product": product}

    def apply(self, u: Any, p: Any, buf: Mapping[str, Any], c: Mapping[str, Any], ops: Any):
        m = buf["exp_avg"] + c["take"] * (u - buf["exp_avg"])
        return c["g"] * u + c["m"] * m, {"exp_avg": m}
