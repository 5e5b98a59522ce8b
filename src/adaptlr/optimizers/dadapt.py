"""D-Adaptation (Defazio & Mishchenko, 2023): Adam, SGD and AdaGrad with no lr to choose.

Each is a chain of :mod:`adaptlr.core.distance` parts with the arguments, defaults and
results of the ``dadaptation`` 3.2 package. What these optimizers share with
:class:`adaptlr.Prodigy` (the arguments, and the rules between param groups) is here too.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .. import _checks, core
from ..core import Transform
from ..core.base import PROCESS_GROUP as PROCESS_GROUP_ALLOWED
from ..core.distance import POSITIVE
from ._declare import (
    BETAS,
    EPS,
    LR,
    MOMENTUM,
    WEIGHT_DECAY,
    Declared,
    Hyper,
    Hyperparameters,
)  # fmt: skip


@dataclass(frozen=True)
class GrowthRate(_checks.Number):
    """``growth_rate``: a number > 0, inf (no limit, the packages' default) included."""

    lo: float = 0.0
    lo_open: bool = True

    def __str__(self) -> str:
        return "a number > 0 (inf: no limit)"

    def check(self, owner: str, name: str, value: Any) -> float:
        if isinstance(value, float) and value == math.inf:
            return value
        return super().check(owner, name, value)


def growth(h: Hyperparameters) -> Any:
    """The group's growth_rate for a part, whose "no limit" is None (a part's numbers are
    finite); a live value passes as it is and reads inf when the step resolves it."""
    g = h.growth_rate
    return None if isinstance(g, float) and g == math.inf else g


@dataclass(frozen=True)
class Exactly(_checks.Allowed):
    """Only ``value`` (an argument adaptlr accepts for its signature but cannot vary)."""

    value: Any
    why: str

    def __str__(self) -> str:
        return f"{self.value!r} ({self.why})"

    def check(self, owner: str, name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, type(self.value)):
            _checks.fail_type(owner, name, self, value)
        if value != self.value:
            _checks.fail_value(owner, name, self, value)
        return value


LR_FREE = LR(1.0)
LR_FREE = dataclasses.replace(
    LR_FREE,
    doc="η, a factor of the estimated step size d·η (leave it at 1 unless training is "
    "unstable): a number, or an adaptlr.schedules.Schedule evaluated at each step's count",
)
EPS_POSITIVE = dataclasses.replace(EPS, allowed=POSITIVE)
D0 = Hyper(
    "d0", 1e-6, POSITIVE, "the initial estimate d of the distance to the solution (rarely changed)"
)
GROWTH_RATE = Hyper(
    "growth_rate",
    math.inf,
    GrowthRate(),
    "the largest factor d may grow by in one step (inf: no limit; 1.02 is a kind of warm-up)",
)
DECOUPLE = Hyper(
    "decouple",
    False,
    _checks.FLAG,
    "decoupled weight decay (AdamW's: θ shrinks by d·η·λθ, outside the moments) instead of "
    "λθ added to the gradient",
    "bool",
)
USE_BIAS_CORRECTION = Hyper(
    "use_bias_correction",
    False,
    _checks.FLAG,
    "multiply the step size by Adam's √(1−β2^t)/(1−β1^t)",
    "bool",
)
LOG_EVERY = Hyper(
    "log_every",
    0,
    _checks.Integer(0),
    "accepted for the package's signature and changes no number: adaptlr logs nothing; "
    "read the estimate from param_groups[0]['d'] (or adaptlr.monitor)",
    "int",
)
FSDP_IN_USE = Hyper(
    "fsdp_in_use",
    False,
    _checks.FLAG,
    "the package's switch for sharded parameters: True adds the estimate's sums over every "
    "process, as process_group='world' does (process_group, if given, wins)",
    "bool",
)
PROCESS_GROUP = Hyper(
    "process_group",
    None,
    PROCESS_GROUP_ALLOWED,
    "the processes whose shares of the step size's sums are added up: needed where each "
    "process holds only part of the parameters as plain tensors (ZeroRedundancyOptimizer, "
    "FSDP1), then every process must step every time; not under DDP (each process holds every "
    "parameter) nor FSDP2 (its DTensors are summed whole, and a process group given is not "
    "applied to them). ZeroRedundancyOptimizer keeps an argument of this name for itself: give "
    "it optimizer_class=functools.partial(<this class>, process_group=...)",
    "ProcessGroup | str | None",
)


def _same(v: Any) -> Any:
    """A group value as compared between groups (a list of betas as a tuple, a tensor's
    value)."""
    if isinstance(v, (list, tuple)):
        return tuple(_same(x) for x in v)
    if hasattr(v, "item") and getattr(v, "numel", lambda: 0)() == 1:
        return v.item()
    return v


#: group keys that say how this process runs, not how far training is: a state dict keeps
#: them (a ProcessGroup, which cannot be pickled, as None) and loading one keeps this
#: optimizer's (a checkpoint saved under ZeRO resumes in one process, and the reverse)
RUN_KEYS = ("process_group", "fsdp_in_use")


class SumsAcrossProcesses(Declared):
    """A named optimizer with a ``process_group`` (adding its sums across processes)."""

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        for g in sd["param_groups"]:
            if not isinstance(g.get("process_group"), (str, type(None))):
                g["process_group"] = None
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if isinstance(groups, list) and len(groups) == len(self.param_groups):
            # (a copy: the caller's dict is left as it was; anything else, checked as it is)
            mine = [{k: g[k] for k in RUN_KEYS if k in g} for g in self.param_groups]
            groups = [{**g, **m} if isinstance(g, dict) else g for g, m in zip(groups, mine)]
            state_dict = {**state_dict, "param_groups": groups}
        super().load_state_dict(state_dict)


class DistanceOptimizer(SumsAcrossProcesses):
    """What D-Adaptation's and Prodigy's named optimizers share: one estimate d for all
    param groups, so the hyperparameters that make it (:attr:`same_in_every_group`) must be
    equal in every group, and ``lr`` too, except that a group with lr 0 is frozen
    (:attr:`lr_zero_freezes`); a group added later joins the optimizer's estimate."""

    #: the hyperparameters the reference reads from the first group only
    same_in_every_group: ClassVar[tuple[str, ...]] = ()
    #: whether lr 0 freezes a group (else every group must have the same lr)
    lr_zero_freezes: ClassVar[bool] = True
    #: the package, for messages
    reference: ClassVar[str] = "dadaptation"
    #: group keys that are not arguments, with their checks (DAdaptAdam's layer_scale)
    group_keys: ClassVar[dict[str, _checks.Allowed]] = {}

    def check_changed(self, group: dict[str, Any], names: list[str] | None) -> None:
        super().check_changed(group, names)
        owner = type(self).__name__
        for name, allowed in self.group_keys.items():
            if name in group:
                allowed.check(owner, name, group[name])
        for name in self.same_in_every_group:
            if name not in group:
                continue
            for i, other in enumerate(self.param_groups):
                if (
                    other is not group
                    and name in other
                    and _same(other[name]) != _same(group[name])
                ):
                    raise ValueError(
                        f"{owner}: {name} must be the same in every param group (one estimate "
                        f"d serves them all; {self.reference} reads the first group's), got "
                        f"{group[name]!r} and {other[name]!r} in param group {i}"
                    )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        first = self.param_groups[0]
        # the estimate is in every group from the start, as the packages keep it; a group
        # added later joins the estimate the others have reached
        for key, value in self.transform_for(group).init_shared().items():
            group.setdefault(key, first.get(key, value))

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One step of every group (``lr`` checked first: see the class)."""
        lrs = [g["lr"] for g in self.param_groups]
        top = max(lrs)
        for i, lr in enumerate(lrs):
            if lr != top and not (lr == 0 and self.lr_zero_freezes):
                freeze = ", or 0 to freeze a group" if self.lr_zero_freezes else ""
                raise ValueError(
                    f"{type(self).__name__}: lr must be the same in every param group{freeze} "
                    f"(one estimate d serves them all), got {lr!r} in param group {i} and "
                    f"{top!r} in another"
                )
        return super().step(closure)


def process_group(h: Hyperparameters) -> Any:
    """The group's process group for its part: ``fsdp_in_use=True`` is ``"world"`` unless
    ``process_group`` names one."""
    if h.process_group is not None:
        return h.process_group
    return "world" if h.get("fsdp_in_use", False) else None


def _coupled(h: Hyperparameters) -> tuple[core.Part, ...]:
    """λθ added to the gradient before the estimate, unless decoupled."""
    coupled = h.weight_decay and not h.get("decouple", False)
    return (core.add_decayed_weights(h.weight_decay),) if coupled else ()


def _decoupled(h: Hyperparameters) -> Any:
    return h.weight_decay if h.weight_decay and h.get("decouple", False) else 0.0


class DAdaptAdam(DistanceOptimizer):
    r"""Adam with D-Adaptation (Defazio & Mishchenko, 2023), with the arguments, defaults and
    results of ``dadaptation.DAdaptAdam`` (dadaptation 3.2).

    .. math::
        \lambda_k = d_k\eta\,\tfrac{\sqrt{1-\beta_2^{k+1}}}{1-\beta_1^{k+1}},\quad
        s_{k+1} = \sqrt{\beta_2}\,s_k + (1-\sqrt{\beta_2})\lambda_k g_k,\quad
        r_{k+1} = \sqrt{\beta_2}\,r_k + (1-\sqrt{\beta_2})\rho\lambda_k
            \Bigl\langle g_k, \frac{s_k}{\sqrt{v_k}+\epsilon}\Bigr\rangle,\\
        m_{k+1} = \beta_1 m_k + (1-\beta_1)\rho\lambda_k g_k,\quad
        v_{k+1} = \beta_2 v_k + (1-\beta_2)g_k^2,\quad
        d_{k+1} = \max\Bigl(d_k, \min\bigl(\tfrac{r_{k+1}}{(1-\sqrt{\beta_2})
            \sum\rho\|s_{k+1}\|_1}, \gamma d_k\bigr)\Bigr),\\
        \theta_{k+1} = \theta_k - \lambda_k\omega\theta_k - m_{k+1}/(\sqrt{v_{k+1}}+\epsilon)

    with sums over every param group, η = ``lr``, ρ = a group's ``layer_scale`` (a group
    key, default 1, as in the package), γ = ``growth_rate``, ω = ``weight_decay`` when
    ``decouple`` (else λθ is added to g first), and the bias correction only with
    ``use_bias_correction``. The estimate is ``param_groups[i]["d"]`` (the same in every
    group), and ``effective_lr()`` gives ρ·d·η·(bias correction)/(√v + ε).

    As in the package, ``betas``, ``d0``, ``growth_rate``, ``use_bias_correction`` and
    ``decouple`` must be the same in every group, and ``lr`` too except that a group with lr
    0 is frozen. Differences from the package, all outside its documented use: a frozen
    group does not move at all (the package still applies its last ``exp_avg`` and its
    decoupled decay); a step whose gradients are all zero before any other leaves d as it
    is but still counts as a step; ``log_every`` logs nothing. Where each process holds part
    of the parameters as plain tensors (ZeRO, FSDP1), ``process_group`` (or the package's
    ``fsdp_in_use=True``: every process) adds the sums across processes; not needed under DDP
    nor FSDP2, whose DTensors are summed whole.

    The chain: ``[add_decayed_weights], dadapt_adam``.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -3.0]))
        >>> opt = adaptlr.DAdaptAdam([w])
        >>> for _ in range(3):
        ...     opt.zero_grad(); (w**2).sum().backward(); opt.step()
        >>> opt.param_groups[0]["d"] > 1e-6   # the estimate grew from d0
        True
    """

    hyperparameters = (
        LR_FREE, BETAS, EPS_POSITIVE, WEIGHT_DECAY, LOG_EVERY, DECOUPLE, USE_BIAS_CORRECTION,
        D0, GROWTH_RATE, FSDP_IN_USE, "*", PROCESS_GROUP,
    )  # fmt: skip
    fixed = {"layer_scale": 1.0}
    group_keys = {"layer_scale": _checks.NONNEGATIVE}
    same_in_every_group = (
        "betas", "d0", "growth_rate", "use_bias_correction", "decouple", "fsdp_in_use",
        "process_group",
    )  # fmt: skip

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        b1, b2 = h.betas
        part = core.dadapt_adam(
            lr=h.lr, b1=b1, b2=b2, eps=h.eps, weight_decay=_decoupled(h),
            use_bias_correction=h.use_bias_correction, d0=h.d0, growth_rate=growth(h),
            layer_scale=h.layer_scale, process_group=process_group(h),
        )  # fmt: skip
        return core.chain(*_coupled(h), part)

    torch_class = None


class DAdaptSGD(DistanceOptimizer):
    r"""SGD with D-Adaptation (Defazio & Mishchenko, 2023; dual averaging), with the
    arguments, defaults and results of ``dadaptation.DAdaptSGD`` (dadaptation 3.2).

    .. math::
        \lambda_k = \frac{d_k\eta}{\|g_0\|},\quad
        r_{k+1} = r_k + \lambda_k\langle g_k, s_k\rangle,\quad
        s_{k+1} = s_k + \lambda_k g_k,\quad
        d_{k+1} = \max\Bigl(d_k, \min\bigl(\tfrac{2r_{k+1}}{\|s_{k+1}\|}, \gamma d_k\bigr)\Bigr),\\
        z_{k+1} = \theta_0 - s_{k+1},\quad
        \theta_{k+1} = \mu\theta_k + (1-\mu)z_{k+1}

    with inner products and norms over every param group, :math:`g_k` the gradient plus
    λθ (``weight_decay``), μ = ``momentum`` and ‖g_0‖ the norm of the first step's gradients
    *without* the decay (the package adds it out of place there, so it is lost: followed
    here). ``effective_lr()`` gives d·η/‖g_0‖ everywhere.

    As in the package, ``momentum``, ``weight_decay`` (the package applies the first
    group's to all), ``d0`` and ``growth_rate`` must be the same in every group, and ``lr``
    too except that a group with lr 0 keeps its s (it moves only by momentum towards its z,
    as the package's). Differences, outside the package's documented use: an all-zero first
    gradient, on which the package divides by zero, leaves d as it is and ‖g_0‖ is taken
    at the first nonzero one; ``log_every`` logs nothing. ``process_group`` (or
    ``fsdp_in_use=True``) as :class:`DAdaptAdam`'s.

    The chain: ``dadapt_sgd`` (it needs the gradient both with and without the decay).

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -3.0]))
        >>> opt = adaptlr.DAdaptSGD([w], momentum=0.9)
        >>> for _ in range(3):
        ...     opt.zero_grad(); (w**2).sum().backward(); opt.step()
        >>> sorted(opt.state[w])
        ['s', 'step', 'x0', 'z']
    """

    hyperparameters = (
        LR_FREE, MOMENTUM(0.0), WEIGHT_DECAY, LOG_EVERY, D0, GROWTH_RATE, FSDP_IN_USE, "*",
        PROCESS_GROUP,
    )  # fmt: skip
    same_in_every_group = (
        "momentum", "weight_decay", "d0", "growth_rate", "fsdp_in_use", "process_group",
    )  # fmt: skip

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        return core.chain(
            core.dadapt_sgd(
                lr=h.lr,
                momentum=h.momentum,
                weight_decay=h.weight_decay,
                d0=h.d0,
                growth_rate=growth(h),
                process_group=process_group(h),
            )  # fmt: skip
        )

    torch_class = None


class DAdaptAdaGrad(DistanceOptimizer):
    r"""AdaGrad with D-Adaptation (Defazio & Mishchenko, 2023; dual averaging), with the
    arguments, defaults and results of ``dadaptation.DAdaptAdaGrad`` (dadaptation 3.2,
    dense gradients).

    .. math::
        \alpha_{k+1} = \alpha_k + g_k^2\ (\alpha_0 = 10^{-6}),\quad
        A_k = \sqrt{\alpha_k}+\epsilon,\quad s_{k+1} = s_k + d_k\eta\,g_k,\\
        \hat d = \frac{\sum s_{k+1}^2/A_{k+1} - \sum_{i\le k}(d_i\eta)^2\sum g_i^2/A_{i+1}}
            {\|s_{k+1}\|_1},\quad
        d_{k+1} = \max(d_k, \min(\hat d, \gamma d_k)),\\
        z_{k+1} = \theta_0 - s_{k+1}/A_{k+1},\quad
        \theta_{k+1} = \mu\theta_k + (1-\mu)z_{k+1}

    with sums over every param group, :math:`g_k` the gradient plus λθ (``weight_decay``),
    μ = ``momentum``. ``effective_lr()`` gives d·η/A elementwise.

    As in the package (which reads them from the first group), ``lr``, ``momentum``,
    ``d0`` and ``growth_rate`` must be the same in every group; ``eps`` and
    ``weight_decay`` may differ. Sparse gradients are refused (adaptlr's steps are dense);
    ``log_every`` logs nothing. ``process_group`` (the package has no ``fsdp_in_use``) as
    :class:`DAdaptAdam`'s.

    The chain: ``[add_decayed_weights], dadapt_adagrad``.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -3.0]))
        >>> opt = adaptlr.DAdaptAdaGrad([w])
        >>> for _ in range(3):
        ...     opt.zero_grad(); (w**2).sum().backward(); opt.step()
        >>> sorted(opt.state[w])
        ['alphak', 'sk', 'step', 'x0']
    """

    hyperparameters = (
        LR_FREE, MOMENTUM(0), LOG_EVERY, WEIGHT_DECAY(0.0), dataclasses.replace(
            EPS_POSITIVE, default=1e-6), D0, GROWTH_RATE, "*", PROCESS_GROUP,
    )  # fmt: skip
    same_in_every_group = ("momentum", "d0", "growth_rate", "process_group")
    lr_zero_freezes = False

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        part = core.dadapt_adagrad(
            lr=h.lr, momentum=h.momentum, eps=h.eps, d0=h.d0, growth_rate=growth(h),
            process_group=process_group(h),
        )  # fmt: skip
        return core.chain(*_coupled(h), part)

    torch_class = None
