r"""Bounds on η_t/σ_t: AdaBound's and AMSBound's dynamic clipping (Luo et al., 2019).

The step size an adaptive method gives each element, η_t/σ_t, is clipped between a lower and
an upper bound that both converge to one SGD step size, so that the method starts adaptive and
ends as SGD. The bound wraps a magnitude (any of :mod:`adaptlr.core.magnitude`'s) and,
optionally, a direction, as :class:`~adaptlr.core.rule` does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._checks import LR, NONNEGATIVE, UNIT_OPEN, Number
from .base import Context, Value, resolve
from .magnitude import rule

#: AdaBound's γ: the speed at which the bounds close, in [0, 1) as the adabound package allows
GAMMA = Number(0.0, 1.0, hi_open=True)


@dataclass(frozen=True, repr=False)
class bound(rule):
    r"""A direction times η_t/σ_t clipped to AdaBound's bounds (no sign: follow it with
    :class:`~adaptlr.core.negate` to descend).

    .. math::
        \eta^*_t = \alpha\,\frac{\sqrt{1-b_2^t}}{1-b_1^t},\qquad
        \alpha^*_t = \alpha^\star\,\frac{\alpha}{\alpha_0},\\
        \eta_l(t) = \alpha^*_t\Bigl(1 - \frac{1}{\gamma t + 1}\Bigr),\qquad
        \eta_u(t) = \alpha^*_t\Bigl(1 + \frac{1}{\gamma t}\Bigr),\\
        u_t = m_t\cdot \mathrm{clip}\bigl(\eta^*_t/\sigma_t,\ \eta_l(t),\ \eta_u(t)\bigr)
        \cdot \rho_t

    with :math:`\alpha` = ``lr`` (a number, a schedule or a live group value), :math:`\alpha_0`
    = ``base_lr`` (the lr the final step size was given for; ``None`` or 0: no scaling),
    :math:`\alpha^\star` = ``final_lr``, :math:`\gamma` = ``gamma`` (0: no upper bound and a
    lower bound of 0, i.e. no clipping), ``b1``/``b2`` the betas of the bias corrections in
    the step size (``None``: that correction left out), and :math:`\rho_t = 1/\sqrt{t}` if
    ``sqrt_t`` else 1 (the paper's Algorithm 2 divides the clipped step by √t; the authors'
    code does not). Both bounds converge to :math:`\alpha^*_t`. ``direction`` and
    ``magnitude`` are fed the same update, as in :class:`~adaptlr.core.rule`; ``magnitude``
    may be any magnitude part. σ reported to the monitor is the one whose η/σ is the clipped
    step size, so :meth:`~adaptlr.core.Transform.effective_lr` shows the bounds closing.

    Args:
        direction (Part | None): the part that makes m_t (AdaBound: :class:`~adaptlr.core.ema`), or
            None for the update itself; as in :class:`~adaptlr.core.rule`.
        magnitude (Magnitude): the part that makes σ_t (AdaBound: :class:`~adaptlr.core.ema_sq`;
            AMSBound: ``ema_sq(..., amsgrad=True)``).
        lr (float | Callable[[int], float], default 1e-3): α, the adaptive step size; a finite
            number >= 0, or a callable (a schedule) of the group's step count.
        final_lr (float | Callable[[int], float], default 0.1): α⋆, the SGD step size both bounds
            converge to; a finite number >= 0, or a callable (a schedule) of the group's step count.
        gamma (float | Callable[[int], float], default 1e-3): γ, how fast the bounds close; a number
            in [0, 1) (0: no clipping), or a callable (a schedule) of the group's step count.
        base_lr (float | Callable[[int], float] | None, default None): α_0, the lr that ``final_lr``
            was given for (the bounds then scale with α/α_0); None or 0: no scaling; else a finite
            number >= 0, or a callable (a schedule) of the group's step count.
        b1 (float | Callable[[int], float] | None, default None): β1 of the bias correction 1/(1 −
            β1^t) in η*_t; None: left out; else a number in [0, 1), or a callable (a schedule) of
            the group's step count.
        b2 (float | Callable[[int], float] | None, default None): β2 of the bias correction √(1 −
            β2^t) in η*_t; None: left out; else a number in [0, 1), or a callable (a schedule) of
            the group's step count.
        sqrt_t (bool, default False): divide the clipped step by √t (the paper's Algorithm 2); True
            or False.
    """

    lr: Value = 1e-3
    final_lr: Value = 0.1
    gamma: Value = 1e-3
    base_lr: Value | None = None
    b1: Value | None = None
    b2: Value | None = None
    sqrt_t: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        optional = {
            k: a
            for k, a in (("base_lr", NONNEGATIVE), ("b1", UNIT_OPEN), ("b2", UNIT_OPEN))
            if getattr(self, k) is not None
        }
        self._check_fields(lr=LR, final_lr=NONNEGATIVE, gamma=GAMMA, **optional)

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        c, new_scalars = super().coefficients(ctx, scalars)
        t, n = ctx.step, ctx.count
        lr = resolve(self.lr, n)
        # the adabound package's order of operations, so that float64 results agree to the bit
        eta = lr
        if self.b2 is not None:
            eta = eta * math.sqrt(1 - resolve(self.b2, n) ** t)
        if self.b1 is not None:
            eta = eta / (1 - resolve(self.b1, n) ** t)
        final = resolve(self.final_lr, n)
        base = 0.0 if self.base_lr is None else resolve(self.base_lr, n)
        if base != 0.0:  # the package's workaround so that an lr scheduler moves the bounds
            final = final * lr / base
        gamma = resolve(self.gamma, n)
        c["eta"] = eta
        c["lo"] = final * (1 - 1 / (gamma * t + 1))
        c["hi"] = final * (1 + 1 / (gamma * t)) if gamma > 0 else math.inf
        c["decay"] = 1 / math.sqrt(t) if self.sqrt_t else 1.0
        return c, new_scalars

    def _clipped(self, mbuf: Mapping[str, Any], c: Mapping[str, Any], ops: Any) -> Any:
        """clip(η*/σ, η_l, η_u)·ρ from the magnitude's (new) buffers."""
        sigma = self.magnitude.sigma(mbuf, self._own(c, "m"), ops)
        return ops.minimum(ops.maximum(c["eta"] / sigma, c["lo"]), c["hi"]) * c["decay"]

    def apply(self, u, p, buf, c, ops):
        m, mbuf, new = self.direction_and_squares(u, p, buf, c, ops)
        return m * self._clipped(mbuf, c, ops), new

    def sigma(self, buf, c, ops):
        # the σ whose η/σ (η = 1 here: the lr is inside the clip) is the clipped step size
        return 1.0 / self._clipped({b.name: buf[b.name] for b in self.magnitude.buffers}, c, ops)
