r"""SWATS's switch from Adam to SGD (Keskar & Socher, 2017) as a part.

The part takes Adam steps while it estimates, from the projection of each Adam step on the
gradient, the SGD step size that would have moved the parameters as far along the gradient;
once that estimate settles, the group switches to SGD with momentum at that step size, for
good. The phase and the estimate are state: the switch step and the SGD step size live in the
param group (so in a state dict), the running estimate beside each tensor's moments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .._checks import LR, NONNEGATIVE, UNIT_OPEN, Choice
from .base import Buffer, Context, Scalar, Sum, Value, resolve
from .magnitude import rule

#: the forms of the switch: torch-optimizer 0.3.0's code, or the paper's Algorithm 1
SWITCH_FORMS = ("package", "paper")

#: torch-optimizer's test of a settled estimate, ``Tensor.allclose(Λ, γ, rtol=1e-6)``
PACKAGE_RTOL = 1e-6
PACKAGE_ATOL = 1e-8

_SWITCH = (
    # the group's step count at which it switched (0: still Adam)
    Scalar("switch_step", 0.0),
    # Λ, the SGD step size it switched to, and the lr then (an lr schedule moves Λ with it)
    Scalar("sgd_lr", 0.0),
    Scalar("switch_lr", 0.0),
)
# λ, the running average of the projected step sizes γ (torch-optimizer: per tensor)
_ESTIMATE = Scalar("exp_avg2", 0.0, dtype=torch.float64)
# how many SGD steps this tensor has taken (the package's first SGD step is special)
_SGD_STEPS = Scalar("sgd_step", 0.0)


@dataclass(frozen=True, repr=False)
class switch_to_sgd(rule):
    r"""SWATS: Adam steps until the SGD step size they imply settles, then SGD with momentum
    (no sign: follow it with :class:`~adaptlr.core.negate` to descend).

    In the Adam phase the step is :math:`x_t = \eta^*_t\, m_t/\sigma_t` (``direction`` and
    ``magnitude`` fed the same update, as in :class:`~adaptlr.core.rule`), and each step's
    projection on the update :math:`g_t` gives an SGD step size, averaged and bias-corrected:

    .. math::
        \eta^*_t = \alpha_t\,\frac{\sqrt{1-b_2^t}}{1-b_1^t}\ (\text{or } \alpha_t),\qquad
        \gamma_t = \frac{x_t^\top x_t}{x_t^\top g_t},\qquad
        \lambda_t = \beta_2\lambda_{t-1} + (1-\beta_2)\gamma_t,\qquad
        \Lambda_t = \frac{\lambda_t}{1-\beta_2^t}

    (:math:`\lambda` is left unchanged when :math:`x_t^\top g_t = 0`). When
    :math:`\Lambda_t` is positive and close to :math:`\gamma_t` (after the first step), the
    group switches to SGD with momentum at step size :math:`\Lambda = \Lambda_t`, scaled by
    :math:`\alpha_t/\alpha_{\text{switch}}` afterwards so that an lr schedule still moves it.

    ``form="package"`` is torch-optimizer 0.3.0's ``SWATS``: the projection is taken per
    tensor (each tensor keeps its own :math:`\lambda`, ``exp_avg2``), "close" is
    ``allclose(Λ, γ, rtol=1e-6)`` (:math:`|\Lambda-\gamma| \le 10^{-8} + 10^{-6}|\gamma|`),
    the first tensor that settles switches the whole group *in the middle of the step*
    (the tensors after it in the group take that step as SGD already), and its SGD step
    updates the momentum buffer in place as its code does:

    .. math::
        b_1 = g,\ u_1 = \kappa_1 g;\qquad
        b_k = K(\beta_1 b_{k-1} + g),\ u_k = b_k\quad(k > 1),

    with :math:`\kappa_1 = 1-\beta_1` and :math:`K = 1-\beta_1`, or with ``nesterov``
    :math:`\kappa_1 = 1` and :math:`K = (1-\beta_1)(1+\beta_1)`. ``form="paper"`` is the
    paper's Algorithm 1: one projection over the whole group (:math:`\lambda` is kept in the
    group), "close" is :math:`|\Lambda_t-\gamma_t| < \epsilon_s` with :math:`\epsilon_s` =
    ``tol``, the switch applies from the next step, and SGD is
    :math:`b_k = \beta_1 b_{k-1} + g_k,\ u_k = (1-\beta_1)\,b_k` from :math:`b = 0` (the
    paper has no Nesterov form).

    Args:
        direction: the Adam phase's direction (:class:`~adaptlr.core.ema`).
        magnitude: the Adam phase's magnitude (:class:`~adaptlr.core.ema_sq`, with
            ``amsgrad`` for AMSGrad's σ).
        lr: :math:`\alpha`, a number > 0, a schedule or a live group value.
        b1: :math:`\beta_1` of the SGD phase's momentum, in [0, 1).
        b2: :math:`\beta_2` of the estimate's average, in [0, 1).
        correct_step: multiply α by :math:`\sqrt{1-b_2^t}/(1-b_1^t)` in the Adam step (the
            package's step size, for a direction and magnitude without bias correction);
            False: the step is α·m/σ (the parts correct themselves).
        nesterov: the package's Nesterov form of its SGD phase (``form="package"`` only).
        form: ``"package"`` or ``"paper"`` (above).
        tol: :math:`\epsilon_s`, the paper form's closeness threshold, a number >= 0 (unused
            by the package form).
    """

    lr: Value = 1e-3
    b1: Value = 0.9
    b2: Value = 0.999
    correct_step: bool = True
    nesterov: bool = False
    form: str = "package"
    tol: Value = 1e-9

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_fields(
            lr=LR, b1=UNIT_OPEN, b2=UNIT_OPEN, form=Choice(SWITCH_FORMS), tol=NONNEGATIVE
        )
        if self.form == "paper" and self.nesterov is True:
            raise ValueError(
                "switch_to_sgd: nesterov must be False with form='paper' (the paper's SGD "
                "phase has no Nesterov form), got True"
            )

    @property
    def buffers(self):  # type: ignore[override]
        return super().buffers + (Buffer("momentum_buffer"),)

    @property
    def scalars(self):  # type: ignore[override]
        own = (_ESTIMATE, _SGD_STEPS) if self.form == "package" else ()
        return super().scalars + own

    @property
    def shared(self):  # type: ignore[override]
        return _SWITCH + ((_ESTIMATE,) if self.form == "paper" else ())

    @property
    def sums(self):  # type: ignore[override]
        scope = "tensor" if self.form == "package" else "group"
        return (Sum("xg", scope), Sum("xx", scope))

    @property
    def sequential(self) -> bool:  # type: ignore[override]
        # the package switches its group as soon as one tensor settles, mid-step
        return self.form == "package"

    def needs_sums(self, shared: Mapping[str, float]) -> bool:
        # after the switch the projection is never read again
        return not shared.get("switch_step", 0.0) > 0

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        c, new_scalars = super().coefficients(ctx, scalars)
        t, n = ctx.step, ctx.count
        lr = resolve(self.lr, n)
        b1, b2 = resolve(self.b1, n), resolve(self.b2, n)
        eta = lr
        if self.correct_step:
            # torch-optimizer's order of operations: lr·√(1 − β2^t) / (1 − β1^t)
            eta = lr * (1 - b2**t) ** 0.5 / (1 - b1**t)
        sgd = scalars["switch_step"] > 0
        switched = {k.name: scalars[k.name] for k in _SWITCH}
        package = self.form == "package"
        if package:
            new_scalars["exp_avg2"] = scalars["exp_avg2"]
            new_scalars["sgd_step"] = scalars["sgd_step"] + sgd
        else:
            switched["exp_avg2"] = scalars["exp_avg2"]
        if not sgd and ctx.sums is not None:
            estimate = self._estimate(ctx, scalars, lr, b2)
            if estimate is not None:
                lam, switch = estimate
                (new_scalars if package else switched)["exp_avg2"] = lam[0]
                if switch:
                    switched.update(switch_step=float(n + 1), sgd_lr=lam[1], switch_lr=lr)
        new_scalars.update(switched)
        c["eta"] = eta
        c["sgd"] = float(sgd)
        first = package and scalars["sgd_step"] == 0
        if package:
            big_k = (1 - b1) * (1 + b1 if self.nesterov else 1.0)
            c["a"], c["b"] = (0.0, 1.0) if first else (big_k * b1, big_k)
            c["k"] = (1.0 if self.nesterov else 1 - b1) if first else 1.0
        else:
            c["a"], c["b"], c["k"] = b1, 1.0, 1 - b1
        sgd_lr, at = scalars["sgd_lr"], scalars["switch_lr"]
        c["lam"] = lam = sgd_lr * lr / at if sgd and at > 0 else sgd_lr
        c["inv_lam"] = 1.0 / lam if lam > 0 else 0.0  # (for σ; read in the SGD phase only)
        return c, new_scalars

    def _estimate(
        self, ctx: Context, scalars: Mapping[str, float], lr: float, b2: float
    ) -> tuple[tuple[float, float], bool] | None:
        """(λ_t, Λ_t) and whether the switch fires, or ``None`` if x·g = 0 (λ unchanged)."""
        assert ctx.sums is not None
        xg, xx = ctx.sums["xg"], ctx.sums["xx"]
        if xg == 0.0:
            return None
        gamma = xx / xg  # γ = pᵀp / −pᵀg with p = −x
        lam = b2 * scalars["exp_avg2"] + (1 - b2) * gamma
        # the package counts its tensor's steps; the paper's group counts its own
        t = ctx.step if self.form == "package" else ctx.count + 1
        big_lam = lam / (1 - b2**t)
        if self.form == "package":
            close = abs(big_lam - gamma) <= PACKAGE_ATOL + PACKAGE_RTOL * abs(gamma)
        else:
            close = abs(big_lam - gamma) < resolve(self.tol, ctx.count)
        return (lam, big_lam), t > 1 and close and big_lam > 0

    def _adam(self, m: Any, mbuf: Mapping[str, Any], c: Mapping[str, Any], ops: Any) -> Any:
        """x_t = η*·m/σ from the magnitude's new buffers."""
        return m * (c["eta"] / self.magnitude.sigma(mbuf, self._own(c, "m"), ops))

    def sum_terms(self, u, p, buf, c, ops):
        m, mbuf, _ = self.direction_and_squares(u, p, buf, c, ops)
        x = self._adam(m, mbuf, c, ops)
        return {"xg": x * u, "xx": x * x}

    def apply(self, u, p, buf, c, ops):
        m, mbuf, adam = self.direction_and_squares(u, p, buf, c, ops)
        sgd = c["sgd"] > 0.5
        mom = c["a"] * buf["momentum_buffer"] + c["b"] * u
        # the phase a tensor is not in leaves its buffers as they are
        new = {k: ops.where(sgd, buf[k], v) for k, v in adam.items()}
        new["momentum_buffer"] = ops.where(sgd, mom, buf["momentum_buffer"])
        return ops.where(sgd, c["lam"] * (c["k"] * mom), self._adam(m, mbuf, c, ops)), new

    def sigma(self, buf, c, ops):
        # the σ whose η/σ (η = 1: the lr is inside) is the step size on the direction: η*/σ
        # in the Adam phase, Λ in the SGD phase
        adam = (
            self.magnitude.sigma(
                {b.name: buf[b.name] for b in self.magnitude.buffers}, self._own(c, "m"), ops
            )
            / c["eta"]
        )
        return ops.where(c["sgd"] > 0.5, c["inv_lam"], adam)


__all__ = ["switch_to_sgd", "SWITCH_FORMS"]
