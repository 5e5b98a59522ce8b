r"""DoG's step size (Ivgi, Hinder & Carmon, 2023): η_t from the distance travelled and the
gradients seen, with no learning rate to choose.

.. math::
    \bar r_t = \begin{cases} r_\epsilon = \alpha\,(1 + \lVert x_0\rVert) & t = 0 \\
    \max(\bar r_{t-1}, \lVert x_t - x_0\rVert) & t > 0\end{cases},\qquad
    G_t = \epsilon + \sum_{i \le t} \lVert u_i\rVert^2,\qquad
    \eta_t = c\,\frac{\bar r_t}{\sqrt{G_t}},\qquad x_{t+1} = x_t - \eta_t\, u_t

over the whole param group (DoG) or over each tensor alone (LDoG, ``layerwise=True``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .. import _checks
from .base import PROCESS_GROUP, Buffer, Context, Part, Scalar, Sum, Value, resolve

#: ``lr`` (DoG's c) and ``reps_rel`` (α): finite numbers > 0, as dog-optimizer requires
POSITIVE = _checks.Number(0.0, lo_open=True)


@dataclass(frozen=True)
class NoneOr(_checks.Allowed):
    """``None``, or what ``allowed`` allows (``init_eta``: None or a number > 0)."""

    allowed: _checks.Allowed

    def __str__(self) -> str:
        return f"None or {self.allowed}"

    def check(self, owner: str, name: str, value: Any) -> Any:
        if value is None or _checks.is_live(value):  # a live value was checked where it entered
            return value
        return self.allowed.check(owner, name, value)


#: ``init_eta``: None (η_0 from ``reps_rel``) or the first step size itself
INIT_ETA = NoneOr(POSITIVE)

#: DoG's state, kept once per group (DoG) or per tensor (LDoG), under dog-optimizer's names
#: (float64 per tensor too: G is a running sum compared with the package's float64 one)
_STATE = tuple(Scalar(n, 0.0, torch.float64) for n in ("rbar", "G", "eta"))


@dataclass(frozen=True, repr=False)
class dog(Part):
    r"""DoG's step size around any update: :math:`u \leftarrow -\eta_t\, u` (see the module).

    :math:`\bar r_t` is the largest distance from the point each tensor had at its first
    update (buffer ``x0``, dog-optimizer's ``group["init_buffer"][i]``) measured *before*
    each step, :math:`G_t` the running sum of :math:`\lVert u\rVert^2` plus ``eps`` (added
    once, on the first step), ``lr`` the paper's constant c. The part produces the final
    update itself (no ``scale_by_learning_rate`` after it).

    The reference applies η_t to the raw gradient (``u`` = g, after L2 weight decay: put
    ``add_decayed_weights`` first, as ``adaptlr.DoG`` does). Here η_t multiplies whatever
    reaches the part, and :math:`G_t` sums the squares of *that* update, so
    ``chain(core.momentum(0.9), core.dog())`` is DoG's step size on the momentum direction,
    normalised by the momentum's norms, not the gradient's.

    ``layerwise=False`` (DoG): sums run over every tensor of the group that has a gradient;
    ``rbar``, ``G`` and ``eta`` are kept once per group, in the param group (``group["eta"]``
    is the η of the last step; dog-optimizer keeps a list repeating it once per parameter,
    and 0-d tensors). ``layerwise=True`` (LDoG): each tensor has its own, in its state
    (``state[p]["rbar"]`` is dog-optimizer's ``group["rbar"][i]``), and a tensor's first
    update starts its own :math:`\bar r` at :math:`r_\epsilon`.

    ``init_eta`` replaces η_0 (and :math:`\bar r_0` is then 0, as in the package);
    ``eps=0`` is the paper's Algorithm 1. While :math:`G_t = 0` (every update so far exactly
    zero, possible only with ``eps=0``) η_t is 0, where the package stops on an assertion:
    the step is zero either way. DoG has no σ: :meth:`sigma` is 1, so ``effective_lr``
    reports η_t at every element. ``process_group`` (a ``torch.distributed`` group or
    ``"world"``) adds the group-wide sums across processes that each hold other tensors
    (ZeRO); DTensors (FSDP2) are summed whole and need none (see
    :meth:`~.base.Transform.over_dtensors`).

    Args:
        lr (float | Callable[[int], float], default 1.0): c, the paper's constant multiplying η_t
            (1.0: the paper's advice); a finite number > 0, or a callable (a schedule) of the
            group's step count.
        reps_rel (float | Callable[[int], float], default 1e-6): α, the first step's distance r_ε =
            α(1 + ‖x_0‖) relative to the parameter's norm; a finite number >= 0 (> 0 unless
            ``init_eta`` is given), or a callable (a schedule) of the group's step count.
        eps (float | Callable[[int], float], default 1e-8): ε, added once to G (0: the paper's
            Algorithm 1); a finite number >= 0, or a callable (a schedule) of the group's step
            count.
        init_eta (float | Callable[[int], float] | None, default None): η_0 itself, in place of the
            one from ``reps_rel`` (r̄_0 is then 0); None, or a finite number > 0, or a callable (a
            schedule) of the group's step count.
        layerwise (bool, default False): keep r̄, G and η per tensor (LDoG) instead of once per
            param group (DoG); True or False.
        process_group (ProcessGroup | str | None, default None): where each process holds other
            parameters as plain tensors (ZeRO), the ``torch.distributed`` group (or ``"world"``)
            across which the group-wide sums are added; None: this process's tensors only (enough
            for DTensor shards and for replicated parameters).

    Example:
        >>> import torch, adaptlr
        >>> from adaptlr import core
        >>> w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
        >>> opt = adaptlr.Optimizer([w], core.chain(core.dog(reps_rel=0.1, eps=0.0)))
        >>> w.grad = torch.tensor([0.6, 0.8])
        >>> opt.step()   # η_0 = 0.1·(1 + 5) / 1
        >>> round(opt.param_groups[0]["eta"], 6), w.detach()
        (0.6, tensor([2.6400, 3.5200]))
    """

    lr: Value = 1.0
    reps_rel: Value = 1e-6
    eps: Value = 1e-8
    init_eta: Value | None = None
    layerwise: bool = False
    process_group: Any = None
    buffers = (Buffer("x0", from_param=True),)
    is_scale = True

    def __post_init__(self) -> None:
        self._check_fields(
            lr=POSITIVE,
            reps_rel=_checks.NONNEGATIVE,
            eps=_checks.NONNEGATIVE,
            init_eta=INIT_ETA,
            process_group=PROCESS_GROUP,
        )
        if self.init_eta is None and not _checks.is_live(self.reps_rel) and self.reps_rel == 0:
            # r̄ would stay 0: η = 0 and the parameters never move
            raise ValueError(
                f"dog: reps_rel must be a finite number > 0 unless init_eta is given, got "
                f"{self.reps_rel!r}"
            )

    @property
    def shared(self) -> tuple[Scalar, ...]:  # type: ignore[override]
        return () if self.layerwise else _STATE

    @property
    def scalars(self) -> tuple[Scalar, ...]:  # type: ignore[override]
        return _STATE if self.layerwise else ()

    @property
    def sums(self) -> tuple[Sum, ...]:  # type: ignore[override]
        scope = "tensor" if self.layerwise else "group"
        return (Sum("g2", scope), Sum("d2", scope), Sum("p2", scope))

    def coefficients(self, ctx: Context, scalars: Mapping[str, float]):
        if ctx.sums is None:
            # the call whose c feeds sum_terms (which needs no number), and effective_lr's:
            # the η of the last step
            return {"eta": scalars["eta"]}, {}
        # the first step: of the group (shared state may not depend on a tensor's own count),
        # or of the tensor for LDoG, so that a tensor whose first gradient comes late starts
        # from r_ε, not from r̄ = 0 (where it would never move)
        first = ctx.step == 1 if self.layerwise else ctx.count == 0
        g2 = ctx.sums["g2"]
        if first:
            rbar = (
                0.0
                if self.init_eta is not None
                else resolve(self.reps_rel, ctx.count) * (1.0 + math.sqrt(ctx.sums["p2"]))
            )
            big_g = g2 + resolve(self.eps, ctx.count)
        else:
            rbar = max(scalars["rbar"], math.sqrt(ctx.sums["d2"]))
            big_g = scalars["G"] + g2
        if first and self.init_eta is not None:
            eta = resolve(self.init_eta, ctx.count)
        elif big_g > 0.0:
            eta = resolve(self.lr, ctx.count) * rbar / math.sqrt(big_g)
        else:
            eta = 0.0
        return {"eta": eta}, {"rbar": rbar, "G": big_g, "eta": eta}

    def sum_terms(self, u, p, buf, c, ops):
        d = p - buf["x0"]
        return {"g2": u * u, "d2": d * d, "p2": p * p}

    def apply(self, u, p, buf, c, ops):
        return -c["eta"] * u, {}

    def scale(self, c: Mapping[str, float]) -> float:
        return c["eta"]

    def sigma(self, buf, c, ops):
        # no σ: η_t/σ_t is η_t itself at every element
        return 1.0
