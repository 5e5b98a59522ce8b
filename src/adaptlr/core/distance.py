r"""The distance estimate of D-Adaptation and Prodigy: a step size d·η with no η to choose.

D-Adaptation (Defazio & Mishchenko, 2023) and Prodigy (Mishchenko & Defazio, 2023) estimate
D = ‖x_0 − x_*‖ from sums over every parameter of the optimizer (⟨g, x_0 − x⟩ or ⟨g, s⟩, and
‖s‖), keep one estimate ``d`` for all param groups (so their sums are :class:`~.base.Sum`
with scope ``"optimizer"`` and ``d`` a :attr:`~.base.Part.shared` scalar, in each group's
dict under the reference packages' names) and multiply the step by d·η.

- :class:`scale_by_distance`: Prodigy's estimate around *any* update (put it last in a chain,
  after a direction and a magnitude: a Prodigy-scaled RMSProp is
  ``chain(mean_sq(), scale_by_distance())``);
- :class:`prodigy`, :class:`dadapt_adam`, :class:`dadapt_sgd`, :class:`dadapt_adagrad`: the
  reference packages' methods, exactly. Each weighs its moments by d as it goes (Prodigy's
  ``exp_avg`` takes d·(1−β1)·g, D-Adaptation Adam's r·dλ·(1−β1)·g, SGD's and AdaGrad's dual
  sums s take dλ·g), so a moment is a sum of differently scaled gradients that no existing
  part (``ema``, ``ema_sq``, ``sum_sq``) followed by a scaling reproduces; hence a part each,
  sharing the estimates' formulas (``_prodigy_estimate``, ``_bounded_growth``) with
  :class:`scale_by_distance`.

γ is ``growth_rate`` in every part (None, the default: no limit, the packages' inf).

Each part's ``scale`` and ``sigma`` give :meth:`~.base.Transform.effective_lr` the step size
d·η·(bias correction)/σ per element, with d the group's estimate as of the last step
(``group["d"]``, the one the next step starts from).

A param group whose ``lr`` is 0 contributes nothing to the sums and its buffers stay as they
are (the packages' "frozen" groups); where that group's parameters move is said per part.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._checks import LR, NONNEGATIVE, UNIT, UNIT_OPEN, Number
from .base import PROCESS_GROUP, Buffer, Context, Part, Scalar, Sum, Value, resolve

POSITIVE = Number(0.0, lo_open=True)


@dataclass(frozen=True)
class NoneOr(Number):
    """None (a default that no number states: β3 = √β2, no growth limit) or a number."""

    what: str = ""

    def __str__(self) -> str:
        return f"None ({self.what}) or {super().__str__()}"

    def check(self, owner: str, name: str, value: Any) -> Any:
        return None if value is None else super().check(owner, name, value)


#: a part's ``growth_rate``: None is the packages' inf
GROWTH = NoneOr(0.0, lo_open=True, what="no limit")


def _growth(value: Value | None, count: int) -> float:
    return math.inf if value is None else resolve(value, count)


def _bounded_growth(d: float, d_hat: float, growth: float) -> float:
    """D-Adaptation's rule: d never falls, and grows at most by the factor ``growth``."""
    return max(d, min(d_hat, d * growth))


def _prodigy_estimate(
    s: Mapping[str, float], sums: Mapping[str, float], b3: float, d0: float, d_coef: float,
    growth: float,
) -> dict[str, float]:  # fmt: skip
    """Prodigy's new shared scalars (prodigyopt 1.1.2's order of operations), from the
    numerator's new terms and ‖s‖₁; nothing changes while ‖s‖₁ is 0 (no gradient yet)."""
    den = sums["d_denom"]
    if den == 0.0:
        return {}
    num = b3 * s["d_numerator"] + sums["delta_numerator"]
    d = s["d"]
    d_hat = d_coef * num / den
    if d == d0:
        d = max(d, d_hat)
    d_max = max(s["d_max"], d_hat)
    d = min(d_max, d * growth)
    return {"d": d, "d_max": d_max, "d_numerator": num, "d_denom": den, "d_hat": d_hat}


def _after(new: Mapping[str, float], scalars: Mapping[str, float], name: str) -> float:
    """A shared scalar as the group holds it after this step (what ``effective_lr`` reads
    then): so that the effective lr a step measures in itself is the one reported after."""
    return new.get(name, scalars[name])


def _moved(p: Any, c: Mapping[str, Any], step: Any) -> Any:
    """The update that takes p where the packages take it: first the decoupled decay, then
    the step, each rounded as their in-place operations round it. Returned as new − old,
    which adds back to p exactly (Sterbenz) wherever the step is under half of p, so that
    ⟨g, x_0 − x⟩, which cancels x_0 against x, sees the packages' x to the last bit."""
    moved = (p - c["decay"] * p) + step
    return moved - p


class _Estimated:
    """A distance estimate's factor of η_t: the step size d·η it estimated (``c["eta"]``),
    what :meth:`~adaptlr.Optimizer.effective_lr` and the monitor report."""

    def scale(self, c: Mapping[str, float]) -> float:
        return c["eta"]


_PRODIGY_SUMS = (Sum("delta_numerator", "optimizer"), Sum("d_denom", "optimizer"))


class _ProdigyWeights(_Estimated):
    """What Prodigy's two estimate-parts share: the shared scalars, the sums and the weights
    of its numerator and of s (one home for both)."""

    sums = _PRODIGY_SUMS

    @property
    def shared(self):  # type: ignore[override]
        return (
            Scalar("d", self.d0),  # type: ignore[attr-defined]
            Scalar("d_max", self.d0),  # type: ignore[attr-defined]
            Scalar("d_numerator", 0.0),
            Scalar("d_denom", 0.0),
            Scalar("d_hat", 0.0),
        )

    def _weights(self, ctx: Context, s: Mapping[str, float], bc: float) -> dict[str, float]:
        lr = resolve(self.lr, ctx.count)  # type: ignore[attr-defined]
        d, d0 = s["d"], resolve(self.d0, ctx.count)  # type: ignore[attr-defined]
        b3 = self._b3(ctx)
        dlr = d * lr * bc
        on = 1.0 if lr > 0 else 0.0
        # d/d0 rather than d: the package's scaling, which keeps the sums away from underflow
        w = (d / d0) * d if self.safeguard_warmup else (d / d0) * dlr  # type: ignore[attr-defined]
        return {
            "dlr": dlr * on,
            "on": on,
            "num": (d / d0) * dlr * on,
            "keep3": b3 if on else 1.0,
            "take3": w * on,
        }

    def _b3(self, ctx: Context) -> float:
        raise NotImplementedError

    def _estimate(self, ctx: Context, s: Mapping[str, float]) -> dict[str, float]:
        assert ctx.sums is not None
        return _prodigy_estimate(
            s,
            ctx.sums,
            self._b3(ctx),
            resolve(self.d0, ctx.count),  # type: ignore[attr-defined]
            resolve(self.d_coef, ctx.count),  # type: ignore[attr-defined]
            _growth(self.growth_rate, ctx.count),  # type: ignore[attr-defined]
        )

    @staticmethod
    def _s(u: Any, buf: Mapping[str, Any], c: Mapping[str, Any]) -> Any:
        return c["keep3"] * buf["s"] + c["take3"] * u

    def sum_terms(self, u, p, buf, c, ops):
        return {
            "delta_numerator": c["num"] * (u * (buf["p0"] - p)),
            "d_denom": c["on"] * ops.abs(self._s(u, buf, c)),
        }


@dataclass(frozen=True, repr=False)
class scale_by_distance(_ProdigyWeights, Part):
    r"""Prodigy's distance estimate around any update: :math:`u \leftarrow -d_{k+1}\eta\,u`.

    The incoming update :math:`u_k` (a gradient, or a direction already divided by a
    magnitude) plays the gradient's part in Prodigy's estimate:

    .. math::
        r_{k+1} = \beta_3 r_k + \tfrac{d_k}{d_0} d_k\eta\,\langle u_k, x_0 - x_k\rangle,\quad
        s_{k+1} = \beta_3 s_k + \tfrac{d_k}{d_0} d_k\eta\, u_k,\\
        \hat d = c\,r_{k+1}/\|s_{k+1}\|_1,\quad
        d_{k+1} = \min(\max_{i\le k+1}\hat d_i,\ \gamma d_k)\ (\text{and} \ge d_0),\quad
        x_{k+1} = x_k - d_k\eta\,u_k

    with the sums over every param group of the optimizer, β3 = ``beta3``, c = ``d_coef``,
    γ = ``growth_rate`` (``safeguard_warmup``: s takes (d/d0)·d·u instead, without η). So
    ``chain(mean_sq(), scale_by_distance())`` is the lecture's RMS rule with a Prodigy step
    size; it is *not* :class:`prodigy`, whose moments themselves carry d.

    Shared scalars (in each param group): ``d``, ``d_max``, ``d_numerator``, ``d_denom``,
    ``d_hat``, as prodigyopt names them; buffers ``s`` and ``p0`` (x_0).


    Args:
        lr (float | Callable[[int], float], default 1.0): η, multiplies the estimated step size d
            (1.0: the packages' advice); a finite number >= 0, or a callable (a schedule) of the
            group's step count.
        beta3 (float | Callable[[int], float], default √0.999): β3, the decay rate of r and s; a
            number in [0, 1], or a callable (a schedule) of the group's step count.
        d0 (float | Callable[[int], float], default 1e-6): d_0, the initial estimate of D; a finite
            number > 0, or a callable (a schedule) of the group's step count.
        d_coef (float | Callable[[int], float], default 1.0): c, multiplies the estimate d̂; a
            finite number > 0, or a callable (a schedule) of the group's step count.
        growth_rate (float | Callable[[int], float] | None, default None): γ, the largest factor by
            which d may grow in one step; None: no limit; else a finite number > 0, or a callable (a
            schedule) of the group's step count.
        safeguard_warmup (bool, default False): s takes (d/d_0)·d·u without η (prodigyopt's
            ``safeguard_warmup``, for warm-up schedules); True or False.
        process_group (ProcessGroup | str | None, default None): where each process holds other
            parameters as plain tensors (ZeRO), the ``torch.distributed`` group (or ``"world"``)
            across which the optimizer-wide sums are added; None: this process's tensors only
            (enough for DTensor shards and for replicated parameters).
    """

    lr: Value = 1.0
    beta3: Value = math.sqrt(0.999)
    d0: Value = 1e-6
    d_coef: Value = 1.0
    growth_rate: Value | None = None
    safeguard_warmup: bool = False
    process_group: Any = None
    buffers = (Buffer("s"), Buffer("p0", from_param=True))
    is_scale = True

    def __post_init__(self) -> None:
        self._check_fields(
            lr=LR, beta3=UNIT, d0=POSITIVE, d_coef=POSITIVE, growth_rate=GROWTH,
            process_group=PROCESS_GROUP,
        )  # fmt: skip

    def _b3(self, ctx: Context) -> float:
        return resolve(self.beta3, ctx.count)

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        c = self._weights(ctx, scalars, 1.0)
        new = {} if ctx.sums is None else self._estimate(ctx, scalars)
        c["eta"] = _after(new, scalars, "d") * resolve(self.lr, ctx.count)
        return c, new

    def apply(self, u, p, buf, c, ops):
        return -c["dlr"] * u, {"s": self._s(u, buf, c)}


@dataclass(frozen=True, repr=False)
class prodigy(_ProdigyWeights, Part):
    r"""Prodigy (Mishchenko & Defazio, 2023) as prodigyopt 1.1.2 computes it: Adam whose
    moments are weighted by the distance estimate d, stepped by d·η.

    .. math::
        m_{k+1} = \beta_1 m_k + d_k(1-\beta_1)g_k,\quad
        v_{k+1} = \beta_2 v_k + d_k^2(1-\beta_2)g_k^2,\\
        r_{k+1} = \beta_3 r_k + \tfrac{d_k}{d_0}\lambda_k\langle g_k, x_0 - x_k\rangle,\quad
        s_{k+1} = \beta_3 s_k + \tfrac{d_k}{d_0}\lambda_k g_k,\quad
        \hat d = c\,r_{k+1}/\|s_{k+1}\|_1,\\
        d_{k+1} = \min(\max_{i}\hat d_i,\ \gamma d_k),\quad
        x_{k+1} = x_k - \lambda_k\bigl(\omega x_k + m_{k+1}/(\sqrt{v_{k+1}} + d_{k+1}\epsilon)\bigr)

    with :math:`\lambda_k = d_k\eta\sqrt{1-\beta_2^{k+1}}/(1-\beta_1^{k+1})` (the bias
    correction with ``use_bias_correction``, else 1), c = ``d_coef``, γ = ``growth_rate``,
    ω = ``weight_decay`` (decoupled; the coupled form adds ωx to g before this part), β3 =
    ``beta3`` (None: √β2), sums over every group of the optimizer. ``safeguard_warmup``: s
    takes :math:`(d_k/d_0)d_k g_k` (no η). With β1 = 0 there is no ``exp_avg`` and the step
    is :math:`\lambda_k d_{k+1} g_k/(\sqrt{v_{k+1}} + d_{k+1}\epsilon)`.

    The package divides by :math:`\sqrt{v} + d_{k+1}\epsilon` (and, with β1 = 0, multiplies
    by :math:`d_{k+1}`), the *new* estimate, where the paper's Algorithm 3 uses
    :math:`d_k`, the one the step began with: ``paper=True`` gives the paper's form.

    Why a part of its own: m and v sum gradients each weighted by the d of its step, which
    ``ema``/``ema_sq`` fed with d·g would reproduce only up to rounding, and the ε term
    moves with d; :class:`scale_by_distance` is the estimate around other rules.

    Shared scalars: ``d``, ``d_max``, ``d_numerator``, ``d_denom``, ``d_hat``; buffers
    ``exp_avg`` (β1 > 0), ``exp_avg_sq``, ``s``, ``p0``. A group with lr 0 is frozen: nothing
    of it changes (the package still moves it by its last ``exp_avg`` and its decoupled decay
    at the other groups' step size).


    Args:
        lr (float | Callable[[int], float], default 1.0): η, multiplies the estimated step size d
            (1.0: the packages' advice); a finite number >= 0, or a callable (a schedule) of the
            group's step count.
        b1 (float | Callable[[int], float], default 0.9): β1, the decay rate of the first moment; a
            number in [0, 1), or a callable (a schedule) of the group's step count.
        b2 (float | Callable[[int], float], default 0.999): β2, the decay rate of the second moment;
            a number in [0, 1), or a callable (a schedule) of the group's step count.
        beta3 (float | Callable[[int], float] | None, default None): β3, the decay rate of r and s;
            None: √β2; else a number in [0, 1], or a callable (a schedule) of the group's step
            count.
        eps (float | Callable[[int], float], default 1e-8): ε, added to the root of the second
            moment; a finite number > 0, or a callable (a schedule) of the group's step count.
        weight_decay (float | Callable[[int], float], default 0.0): ω, decoupled weight decay (the
            coupled form is a part before this one); a finite number >= 0, or a callable (a
            schedule) of the group's step count.
        use_bias_correction (bool, default False): multiply the step by √(1 − β2^(k+1))/(1 −
            β1^(k+1)); True or False.
        safeguard_warmup (bool, default False): s takes (d/d_0)·d·u without η (prodigyopt's
            ``safeguard_warmup``, for warm-up schedules); True or False.
        d0 (float | Callable[[int], float], default 1e-6): d_0, the initial estimate of D; a finite
            number > 0, or a callable (a schedule) of the group's step count.
        d_coef (float | Callable[[int], float], default 1.0): c, multiplies the estimate d̂; a
            finite number > 0, or a callable (a schedule) of the group's step count.
        growth_rate (float | Callable[[int], float] | None, default None): γ, the largest factor by
            which d may grow in one step; None: no limit; else a finite number > 0, or a callable (a
            schedule) of the group's step count.
        first_moment (bool, default True): keep ``exp_avg`` (False: the β1 = 0 form, which the named
            optimizer :class:`adaptlr.Prodigy` selects for ``betas[0] == 0``); True or False.
        paper (bool, default False): divide by √v + d_k ε, the paper's Algorithm 3, instead of
            prodigyopt's √v + d_(k+1) ε; True or False.
        process_group (ProcessGroup | str | None, default None): where each process holds other
            parameters as plain tensors (ZeRO), the ``torch.distributed`` group (or ``"world"``)
            across which the optimizer-wide sums are added; None: this process's tensors only
            (enough for DTensor shards and for replicated parameters).
    """

    lr: Value = 1.0
    b1: Value = 0.9
    b2: Value = 0.999
    beta3: Value | None = None
    eps: Value = 1e-8
    weight_decay: Value = 0.0
    use_bias_correction: bool = False
    safeguard_warmup: bool = False
    d0: Value = 1e-6
    d_coef: Value = 1.0
    growth_rate: Value | None = None
    first_moment: bool = True
    paper: bool = False
    process_group: Any = None
    is_scale = True

    def __post_init__(self) -> None:
        self._check_fields(
            lr=LR, b1=UNIT_OPEN, b2=UNIT_OPEN, beta3=NoneOr(0.0, 1.0, what="√β2"),
            eps=POSITIVE, weight_decay=NONNEGATIVE, d0=POSITIVE, d_coef=POSITIVE,
            growth_rate=GROWTH, process_group=PROCESS_GROUP,
        )  # fmt: skip

    @property
    def buffers(self):  # type: ignore[override]
        first = (Buffer("exp_avg"),) if self.first_moment else ()
        return first + (Buffer("exp_avg_sq"), Buffer("s"), Buffer("p0", from_param=True))

    def _b3(self, ctx: Context) -> float:
        if self.beta3 is None:
            return math.sqrt(resolve(self.b2, ctx.count))
        return resolve(self.beta3, ctx.count)

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        k = ctx.count
        b1, b2 = resolve(self.b1, k), resolve(self.b2, k)
        bc = ((1 - b2 ** (k + 1)) ** 0.5) / (1 - b1 ** (k + 1)) if self.use_bias_correction else 1
        c = self._weights(ctx, scalars, bc)
        d, on = scalars["d"], c["on"]
        new = {} if ctx.sums is None else self._estimate(ctx, scalars)
        d_new = _after(new, scalars, "d")
        d_eps = d if self.paper else d_new  # the package's ε moves with the new d
        eps = resolve(self.eps, k)
        c |= {
            "keep1": b1 if on else 1.0,
            "take1": d * (1 - b1) * on,
            "keep2": b2 if on else 1.0,
            "take2": d * d * (1 - b2) * on,
            "eps_d": d_eps * eps,
            "sigma_eps": d_new * eps,
            # β1 = 0: the gradient itself, times the same d as ε's
            "step": c["dlr"] * (1.0 if self.first_moment else d_eps),
            "decay": resolve(self.weight_decay, k) * c["dlr"],
            # the effective lr: d·η·bc with the group's d after the step
            "eta": d_new * resolve(self.lr, k) * bc * (1.0 if self.first_moment else d_new),
        }
        return c, new

    def apply(self, u, p, buf, c, ops):
        new = {
            "exp_avg_sq": c["keep2"] * buf["exp_avg_sq"] + c["take2"] * (u * u),
            "s": self._s(u, buf, c),
        }
        m = u
        if self.first_moment:
            m = new["exp_avg"] = c["keep1"] * buf["exp_avg"] + c["take1"] * u
        denom = ops.sqrt(new["exp_avg_sq"]) + c["eps_d"]
        return _moved(p, c, (-c["step"] * m) / denom), new

    def sigma(self, buf, c, ops):
        return ops.sqrt(buf["exp_avg_sq"]) + c["sigma_eps"]


@dataclass(frozen=True, repr=False)
class dadapt_adam(_Estimated, Part):
    r"""D-Adaptation Adam as dadaptation 3.2's ``DAdaptAdam`` computes it.

    .. math::
        \lambda_k = d_k\eta\sqrt{1-\beta_2^{k+1}}/(1-\beta_1^{k+1}),\quad
        A_k = \sqrt{v_k} + \epsilon,\\
        r_{k+1} = \sqrt{\beta_2} r_k + (1-\sqrt{\beta_2})\,\rho\lambda_k
            \langle g_k, s_k / A_k\rangle,\quad
        s_{k+1} = \sqrt{\beta_2}s_k + (1-\sqrt{\beta_2})\lambda_k g_k,\\
        m_{k+1} = \beta_1 m_k + (1-\beta_1)\rho\lambda_k g_k,\quad
        v_{k+1} = \beta_2 v_k + (1-\beta_2) g_k^2,\\
        d_{k+1} = \max\bigl(d_k, \min(\tfrac{r_{k+1}}{(1-\sqrt{\beta_2})\rho\|s_{k+1}\|_1},
            \gamma d_k)\bigr),\quad
        x_{k+1} = x_k - \omega\lambda_k x_k - m_{k+1}/(\sqrt{v_{k+1}} + \epsilon)

    (bias correction only with ``use_bias_correction``; ρ = ``layer_scale``, per group;
    ω = ``weight_decay``, decoupled; the coupled form adds ωx to g before this part). The
    numerator's inner product divides by :math:`A_k`, the magnitude *before* this step's
    update, as the package computes it.

    Why a part of its own: m sums gradients each weighted by the λ of its step (the step is
    :math:`m/\sigma` with no λ outside), and r reads the magnitude's previous state.

    Shared scalars: ``d``, ``numerator_weighted``; buffers ``s``, ``exp_avg``,
    ``exp_avg_sq``. A group with lr 0 is frozen (the package still moves it by its last
    ``exp_avg``).


    Args:
        lr (float | Callable[[int], float], default 1.0): η, multiplies the estimated step size d
            (1.0: the packages' advice); a finite number >= 0, or a callable (a schedule) of the
            group's step count.
        b1 (float | Callable[[int], float], default 0.9): β1, the decay rate of the first moment; a
            number in [0, 1), or a callable (a schedule) of the group's step count.
        b2 (float | Callable[[int], float], default 0.999): β2, the decay rate of the second moment;
            a number in [0, 1), or a callable (a schedule) of the group's step count.
        eps (float | Callable[[int], float], default 1e-8): ε, added to the root of the second
            moment; a finite number > 0, or a callable (a schedule) of the group's step count.
        weight_decay (float | Callable[[int], float], default 0.0): ω, decoupled weight decay (the
            coupled form is a part before this one); a finite number >= 0, or a callable (a
            schedule) of the group's step count.
        use_bias_correction (bool, default False): multiply the step by √(1 − β2^(k+1))/(1 −
            β1^(k+1)); True or False.
        d0 (float | Callable[[int], float], default 1e-6): d_0, the initial estimate of D; a finite
            number > 0, or a callable (a schedule) of the group's step count.
        growth_rate (float | Callable[[int], float] | None, default None): γ, the largest factor by
            which d may grow in one step; None: no limit; else a finite number > 0, or a callable (a
            schedule) of the group's step count.
        layer_scale (float | Callable[[int], float], default 1.0): ρ, this group's weight in the
            numerator and the first moment; a finite number >= 0, or a callable (a schedule) of the
            group's step count.
        process_group (ProcessGroup | str | None, default None): where each process holds other
            parameters as plain tensors (ZeRO), the ``torch.distributed`` group (or ``"world"``)
            across which the optimizer-wide sums are added; None: this process's tensors only
            (enough for DTensor shards and for replicated parameters).
    """

    lr: Value = 1.0
    b1: Value = 0.9
    b2: Value = 0.999
    eps: Value = 1e-8
    weight_decay: Value = 0.0
    use_bias_correction: bool = False
    d0: Value = 1e-6
    growth_rate: Value | None = None
    layer_scale: Value = 1.0
    process_group: Any = None
    buffers = (Buffer("s"), Buffer("exp_avg"), Buffer("exp_avg_sq"))
    sums = (Sum("numerator_acum", "optimizer"), Sum("sk_l1", "optimizer"))
    is_scale = True

    def __post_init__(self) -> None:
        self._check_fields(
            lr=LR, b1=UNIT_OPEN, b2=UNIT_OPEN, eps=POSITIVE, weight_decay=NONNEGATIVE,
            d0=POSITIVE, growth_rate=GROWTH, layer_scale=NONNEGATIVE, process_group=PROCESS_GROUP,
        )  # fmt: skip

    @property
    def shared(self):  # type: ignore[override]
        return (Scalar("d", self.d0), Scalar("numerator_weighted", 0.0))

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        k = ctx.count
        b1, b2 = resolve(self.b1, k), resolve(self.b2, k)
        lr, r = resolve(self.lr, k), resolve(self.layer_scale, k)
        bc = ((1 - b2 ** (k + 1)) ** 0.5) / (1 - b1 ** (k + 1)) if self.use_bias_correction else 1
        d = scalars["d"]
        on = 1.0 if lr > 0 else 0.0
        dlr = d * lr * bc * on
        sb2 = b2**0.5
        c = {
            "on": on,
            "num": r * dlr,
            "l1": r * on,
            "keep1": b1 if on else 1.0,
            "take1": r * dlr * (1 - b1),
            "keep2": b2 if on else 1.0,
            "take2": (1 - b2) * on,
            "keep3": sb2 if on else 1.0,
            "take3": dlr * (1 - sb2),
            "eps": resolve(self.eps, k),
            "decay": resolve(self.weight_decay, k) * dlr,
            "eta": r * d * lr * bc,
        }
        if ctx.sums is None:
            return c, {}
        nw = sb2 * scalars["numerator_weighted"] + (1 - sb2) * ctx.sums["numerator_acum"]
        l1 = ctx.sums["sk_l1"]
        if l1 == 0.0:  # no gradient yet: the package returns before keeping anything
            return c, {}
        d_hat = nw / ((1 - sb2) * l1)
        d_new = _bounded_growth(d, d_hat, _growth(self.growth_rate, k))
        c["eta"] = r * d_new * lr * bc
        return c, {"d": d_new, "numerator_weighted": nw}

    @staticmethod
    def _s(u, buf, c):
        return c["keep3"] * buf["s"] + c["take3"] * u

    def sum_terms(self, u, p, buf, c, ops):
        old = buf["s"] / (ops.sqrt(buf["exp_avg_sq"]) + c["eps"])
        return {
            "numerator_acum": c["num"] * (u * old),
            "sk_l1": c["l1"] * ops.abs(self._s(u, buf, c)),
        }

    def apply(self, u, p, buf, c, ops):
        m = c["keep1"] * buf["exp_avg"] + c["take1"] * u
        v = c["keep2"] * buf["exp_avg_sq"] + c["take2"] * (u * u)
        step = (-c["on"] * m) / (ops.sqrt(v) + c["eps"])
        return _moved(p, c, step), {"s": self._s(u, buf, c), "exp_avg": m, "exp_avg_sq": v}

    def sigma(self, buf, c, ops):
        return ops.sqrt(buf["exp_avg_sq"]) + c["eps"]


@dataclass(frozen=True, repr=False)
class dadapt_sgd(_Estimated, Part):
    r"""D-Adaptation SGD (dual averaging) as dadaptation 3.2's ``DAdaptSGD`` computes it.

    .. math::
        \lambda_k = d_k\eta/\|g_0\|,\quad
        r_{k+1} = r_k + \lambda_k\langle g_k, s_k\rangle,\quad
        s_{k+1} = s_k + \lambda_k g_k,\\
        \hat d = 2 r_{k+1}/\|s_{k+1}\|,\quad
        d_{k+1} = \max(d_k, \min(\hat d, \gamma d_k)),\quad
        z_{k+1} = x_0 - s_{k+1},\quad x_{k+1} = \mu x_k + (1-\mu) z_{k+1}

    with :math:`g_k` the gradient plus ``weight_decay``·x (coupled), μ = ``momentum``, and
    :math:`\|g_0\|` the norm over all groups of the first step's gradients *without* the
    decay (the package's first pass adds it out of place, so it is lost); ``g0_norm`` is
    measured at the first step that has a nonzero gradient.

    Shared scalars: ``d``, ``numerator_weighted``, ``g0_norm``; buffers ``z``, ``s``, ``x0``.
    A group with lr 0 keeps its s, and so moves only by momentum towards its z (as the
    package's does).


    Args:
        lr (float | Callable[[int], float], default 1.0): η, multiplies the estimated step size d
            (1.0: the packages' advice); a finite number >= 0, or a callable (a schedule) of the
            group's step count.
        momentum (float | Callable[[int], float], default 0.0): μ, x_(k+1) = μ x_k + (1 − μ)
            z_(k+1); a finite number >= 0, or a callable (a schedule) of the group's step count.
        weight_decay (float | Callable[[int], float], default 0.0): coupled weight decay, added to
            the gradient as ``weight_decay``·x; a finite number >= 0, or a callable (a schedule) of
            the group's step count.
        d0 (float | Callable[[int], float], default 1e-6): d_0, the initial estimate of D; a finite
            number > 0, or a callable (a schedule) of the group's step count.
        growth_rate (float | Callable[[int], float] | None, default None): γ, the largest factor by
            which d may grow in one step; None: no limit; else a finite number > 0, or a callable (a
            schedule) of the group's step count.
        process_group (ProcessGroup | str | None, default None): where each process holds other
            parameters as plain tensors (ZeRO), the ``torch.distributed`` group (or ``"world"``)
            across which the optimizer-wide sums are added; None: this process's tensors only
            (enough for DTensor shards and for replicated parameters).
    """

    lr: Value = 1.0
    momentum: Value = 0.0
    weight_decay: Value = 0.0
    d0: Value = 1e-6
    growth_rate: Value | None = None
    process_group: Any = None
    buffers = (Buffer("z", from_param=True), Buffer("s"), Buffer("x0", from_param=True))
    sums = (
        Sum("g0_sq", "optimizer"), Sum("numerator", "optimizer"), Sum("sk_sq", "optimizer"),
        Sum("g_sq", "optimizer"),
    )  # fmt: skip
    is_scale = True

    def __post_init__(self) -> None:
        self._check_fields(
            lr=LR, momentum=NONNEGATIVE, weight_decay=NONNEGATIVE, d0=POSITIVE,
            growth_rate=GROWTH, process_group=PROCESS_GROUP,
        )  # fmt: skip

    @property
    def shared(self):  # type: ignore[override]
        return (Scalar("d", self.d0), Scalar("numerator_weighted", 0.0), Scalar("g0_norm", 0.0))

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        k = ctx.count
        lr = resolve(self.lr, k)
        on = 1.0 if lr > 0 else 0.0
        d, g0 = scalars["d"], scalars["g0_norm"]
        first = g0 == 0.0
        if ctx.sums is not None and first:
            g0 = math.sqrt(ctx.sums["g0_sq"])
        dlr = d * lr / g0 * on if g0 > 0 else 0.0
        ck = 1 - resolve(self.momentum, k)
        c = {
            "on": on,
            "first": on if first else 0.0,
            # at the first step s is 0 and ‖s_1‖² = (dη/‖g_0‖)²Σg², ‖g_0‖ of this very pass:
            # (dη)² goes into the term (a frozen group's own η is 0) and ‖g_0‖² out of it
            "first_w": on * (d * lr) ** 2 if first else 0.0,
            "wd": resolve(self.weight_decay, k),
            "dlr": dlr,
            "keep": 1 - ck,
            "ck": ck,
            "eta": d * lr,
            "g0": g0 if g0 > 0 else math.inf,
        }
        if ctx.sums is None:
            return c, {}
        nw = scalars["numerator_weighted"] + ctx.sums["numerator"]
        sk_sq = ctx.sums["sk_sq"] + (ctx.sums["g_sq"] / (g0 * g0) if first and g0 > 0 else 0.0)
        if sk_sq == 0.0 or g0 == 0.0:  # no gradient yet (the package would divide by 0)
            return c, {}
        d_hat = 2 * nw / math.sqrt(sk_sq)
        # (not gated on this group's lr: every group must compute the same d)
        d_new = _bounded_growth(d, d_hat, _growth(self.growth_rate, k))
        c["eta"] = d_new * lr
        return c, {"d": d_new, "numerator_weighted": nw, "g0_norm": g0}

    def sum_terms(self, u, p, buf, c, ops):
        g = u + c["wd"] * p
        s_new = buf["s"] + c["dlr"] * g
        return {
            "g0_sq": c["first"] * (u * u),
            "numerator": c["dlr"] * (g * buf["s"]),
            "sk_sq": c["on"] * (s_new * s_new),
            "g_sq": c["first_w"] * (g * g),
        }

    def apply(self, u, p, buf, c, ops):
        s = buf["s"] + c["dlr"] * (u + c["wd"] * p)
        z = buf["x0"] - s
        return (c["keep"] * p + c["ck"] * z) - p, {"s": s, "z": z}

    def sigma(self, buf, c, ops):
        return c["g0"]  # the same for every element: SGD's step is d·η/‖g_0‖


@dataclass(frozen=True, repr=False)
class dadapt_adagrad(_Estimated, Part):
    r"""D-Adaptation AdaGrad (dual averaging) as dadaptation 3.2's ``DAdaptAdaGrad``
    computes it (dense gradients).

    .. math::
        \alpha_{k+1} = \alpha_k + g_k^2\ (\alpha_0 = 10^{-6}),\quad
        A_k = \sqrt{\alpha_k} + \epsilon,\quad s_{k+1} = s_k + d_k\eta\,g_k,\\
        \textstyle Q_{k+1} = \sum s_{k+1}^2/A_{k+1},\quad
        G_{k+1} = G_k + (d_k\eta)^2\sum g_k^2/A_{k+1},\\
        \hat d = (Q_{k+1} - G_{k+1})/\|s_{k+1}\|_1,\quad
        d_{k+1} = \max(d_k, \min(\hat d, \gamma d_k)),\\
        z_{k+1} = x_0 - s_{k+1}/A_{k+1},\quad x_{k+1} = \mu x_k + (1-\mu) z_{k+1}

    (g with coupled weight decay, added before this part; μ = ``momentum``). Q and ‖s‖₁ are
    kept as running totals updated by each step's change, as the package keeps them.

    Shared scalars: ``d``, ``gsq_weighted`` (G), ``sksq_weighted`` (Q), ``skl1``; buffers
    ``alphak``, ``sk``, ``x0``.


    Args:
        lr (float | Callable[[int], float], default 1.0): η, multiplies the estimated step size d
            (1.0: the packages' advice); a finite number >= 0, or a callable (a schedule) of the
            group's step count.
        momentum (float | Callable[[int], float], default 0.0): μ, x_(k+1) = μ x_k + (1 − μ)
            z_(k+1); a finite number >= 0, or a callable (a schedule) of the group's step count.
        eps (float | Callable[[int], float], default 1e-6): ε, added to √α; a finite number > 0, or
            a callable (a schedule) of the group's step count.
        d0 (float | Callable[[int], float], default 1e-6): d_0, the initial estimate of D; a finite
            number > 0, or a callable (a schedule) of the group's step count.
        growth_rate (float | Callable[[int], float] | None, default None): γ, the largest factor by
            which d may grow in one step; None: no limit; else a finite number > 0, or a callable (a
            schedule) of the group's step count.
        process_group (ProcessGroup | str | None, default None): where each process holds other
            parameters as plain tensors (ZeRO), the ``torch.distributed`` group (or ``"world"``)
            across which the optimizer-wide sums are added; None: this process's tensors only
            (enough for DTensor shards and for replicated parameters).
    """

    lr: Value = 1.0
    momentum: Value = 0.0
    eps: Value = 1e-6
    d0: Value = 1e-6
    growth_rate: Value | None = None
    process_group: Any = None
    buffers = (Buffer("alphak", 1e-6), Buffer("sk"), Buffer("x0", from_param=True))
    sums = tuple(
        Sum(n, "optimizer") for n in ("sksq_new", "sksq_old", "skl1_new", "skl1_old", "g_sq")
    )
    is_scale = True

    def __post_init__(self) -> None:
        self._check_fields(
            lr=LR, momentum=NONNEGATIVE, eps=POSITIVE, d0=POSITIVE, growth_rate=GROWTH,
            process_group=PROCESS_GROUP,
        )  # fmt: skip

    @property
    def shared(self):  # type: ignore[override]
        return (
            Scalar("d", self.d0), Scalar("gsq_weighted", 0.0), Scalar("sksq_weighted", 0.0),
            Scalar("skl1", 0.0),
        )  # fmt: skip

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        k = ctx.count
        lr, mu = resolve(self.lr, k), resolve(self.momentum, k)
        d = scalars["d"]
        dlr = d * lr
        c = {
            "dlr": dlr,
            "eps": resolve(self.eps, k),
            "keep": mu if mu != 0 else 0.0,
            "take": 1 - mu if mu != 0 else 1.0,
            "eta": dlr,
        }
        if ctx.sums is None:
            return c, {}
        t = ctx.sums
        sksq = scalars["sksq_weighted"] + (t["sksq_new"] - t["sksq_old"])
        skl1 = scalars["skl1"] + (t["skl1_new"] - t["skl1_old"])
        if skl1 == 0.0:  # no gradient yet: the package returns before keeping anything
            return c, {}
        gsq = scalars["gsq_weighted"] + dlr * dlr * t["g_sq"]
        if lr > 0:
            d = _bounded_growth(d, (sksq - gsq) / skl1, _growth(self.growth_rate, k))
            c["eta"] = d * lr
        return c, {"d": d, "gsq_weighted": gsq, "sksq_weighted": sksq, "skl1": skl1}

    @staticmethod
    def _new(u, buf, c, ops):
        alpha = buf["alphak"] + u * u
        return alpha, buf["sk"] + c["dlr"] * u, ops.sqrt(alpha) + c["eps"]

    def sum_terms(self, u, p, buf, c, ops):
        _, sk, den = self._new(u, buf, c, ops)
        old = buf["sk"]
        # one division for the two terms over the new denominator: the float64 pass is bound
        # by its divisions and square roots, not by memory (docs/benchmarks-lr-free.md)
        inv = 1.0 / den
        return {
            "sksq_new": (sk * sk) * inv,
            "sksq_old": (old * old) / (ops.sqrt(buf["alphak"]) + c["eps"]),
            "skl1_new": ops.abs(sk),
            "skl1_old": ops.abs(old),
            "g_sq": (u * u) * inv,
        }

    def apply(self, u, p, buf, c, ops):
        alpha, sk, den = self._new(u, buf, c, ops)
        z = buf["x0"] - sk / den
        return (c["keep"] * p + c["take"] * z) - p, {"alphak": alpha, "sk": sk}

    def sigma(self, buf, c, ops):
        return ops.sqrt(buf["alphak"]) + c["eps"]
