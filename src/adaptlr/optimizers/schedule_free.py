"""Schedule-Free AdamW, SGD and RAdam (Defazio et al., 2024), equal to schedulefree 1.4.1.

The parameters hold one of two points: y, where gradients are taken (``optimizer.train()``),
or x, the average to evaluate and keep (``optimizer.eval()``); see ``docs/schedule_free.md``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import torch

from .. import _checks, core
from ..core import Part, Transform
from ..core.schedule_free import (
    OPEN_UNIT,
    move_to_x_,
    move_to_y_,
    rectified_lr,
    rectifying,
    sqrt_bias_correction,
)
from ._declare import EPS, FOREACH, LR, Declared, Hyper, Hyperparameters


class _Betas(_checks.Pair):
    """(β1, β2): β1 in (0, 1), the interpolation (x = y/β1 − …), β2 in [0, 1)."""

    def __str__(self) -> str:
        return "a tuple of 2 numbers, beta1 in (0, 1) and beta2 in [0, 1)"

    def check(self, owner: str, name: str, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            return super().check(owner, name, value)
        return (
            OPEN_UNIT.check(owner, f"{name}[0]", value[0]),
            _checks.UNIT_OPEN.check(owner, f"{name}[1]", value[1]),
        )


SF_BETAS = Hyper(
    "betas",
    (0.9, 0.999),
    _Betas(_checks.UNIT_OPEN),
    "(β1, β2): β1 interpolates the gradient point y between z and the average x "
    "(y = (1-β1)z + β1x); β2 is the decay rate of the moving average of g²",
    "tuple[float, float]",
)
SF_LR = LR(0.0025)
WARMUP_STEPS = Hyper(
    "warmup_steps",
    0,
    _checks.NONNEGATIVE,
    "T: the step size grows linearly, γ = lr·(k+1)/T for the first T steps (0: none)",
    "int",
)
R = Hyper(
    "r",
    0.0,
    _checks.FINITE,
    "the average's polynomial weighting: step k's weight is (k+1)^r·lr_max^weight_lr_power",
)
WEIGHT_LR_POWER = Hyper(
    "weight_lr_power",
    2.0,
    _checks.NONNEGATIVE,
    "p: steps weigh lr_max^p in the average (lr_max the largest γ so far), so that warm-up "
    "steps count less (0: equal weights)",
)
SF_FOREACH = FOREACH(True)
SF_WEIGHT_DECAY = Hyper(
    "weight_decay",
    0,
    _checks.NONNEGATIVE,
    "λ: λy is added to the normalized update (decoupled from σ, evaluated at y)",
)
BIAS_CORRECTION = Hyper(
    "bias_correction",
    "sigma",
    _checks.Choice(("sigma", "lr")),
    "'sigma' (schedulefree's AdamWScheduleFree): σ = sqrt(v/(1-β2^t)) + ε; 'lr' (the "
    "paper's Algorithm 1, schedulefree's AdamWScheduleFreePaper): σ = sqrt(v) + ε and "
    "γ = lr·sqrt(1-β2^t), which also enters lr_max and so the averaging weights",
    "str",
)
SGD_MOMENTUM = Hyper(
    "momentum",
    0.9,
    OPEN_UNIT,
    "β, the interpolation: gradients are taken at y = (1-β)z + βx",
)
SILENT_SGD_PHASE = Hyper(
    "silent_sgd_phase",
    True,
    _checks.FLAG,
    "while RAdam's ρ_t <= 4 (the first steps), True: γ = 0, only v is updated; False: plain "
    "SGD steps with γ = lr",
    "bool",
)


class _ScheduleFree:
    """``train()``/``eval()``, the mode check of ``step()`` and the mode of new groups."""

    param_groups: list[dict[str, Any]]
    state: Any

    @staticmethod
    def _interpolation(group: dict[str, Any]) -> float:
        """β of the interpolation y = (1-β)z + βx, from the group."""
        return float(group["betas"][0])

    def _move(self, to_train: bool) -> None:
        for group in self.param_groups:
            if bool(group.get("train_mode", True)) == to_train:
                continue
            b1 = self._interpolation(group)
            for p in group["params"]:
                st = self.state.get(p)
                if st and "z" in st:
                    (move_to_y_ if to_train else move_to_x_)(p, st["z"], b1)
            group["train_mode"] = to_train

    @torch.no_grad()
    def train(self) -> None:
        """Put the parameters at y, where training takes its gradients.

        A new optimizer starts in train mode, where schedulefree's starts in eval mode and
        refuses its first step: before the first step y = x = z, so the two modes hold the
        same point, and a loop that calls ``train()`` first (as schedulefree's documentation
        asks) behaves the same with either."""
        self._move(True)

    @torch.no_grad()
    def eval(self) -> None:
        """Put the parameters at x, the average: before evaluating, saving a model for use,
        or recomputing BatchNorm statistics (:func:`update_bn`)."""
        self._move(False)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        modes = [g.get("train_mode", True) for g in self.param_groups]
        if not all(modes):
            where = ", ".join(str(i) for i, m in enumerate(modes) if not m)
            raise RuntimeError(
                f"{type(self).__name__}.step() called in eval mode (param group(s) {where}: "
                f"the parameters hold the average x): call optimizer.train() before training "
                f"steps, and optimizer.eval() before evaluating or saving"
            )
        return super().step(closure)  # type: ignore[misc]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group, in the mode (train or eval) the other groups are in.

        Args:
            param_group: a dict with ``"params"`` (the tensors) and, optionally, values of this
                optimizer's hyperparameters for them.
        """
        groups = self.param_groups
        mode = bool(groups[0].get("train_mode", True)) if groups else True
        super().add_param_group(param_group)  # type: ignore[misc]
        # new parameters have no z yet: they are at y and x at once, so take the others' mode
        self.param_groups[-1].setdefault("train_mode", mode)


def _decay(h: Hyperparameters) -> tuple[Part, ...]:
    # λ·y: the parameter is y during a step
    return (core.add_decayed_weights(h.weight_decay),) if h.weight_decay else ()


class AdamWScheduleFree(_ScheduleFree, Declared):
    r"""Schedule-Free AdamW (Defazio et al., 2024) with the arguments, defaults and results
    of schedulefree 1.4.1's ``AdamWScheduleFree``.

    .. math::
        v_k = \beta_2 v_{k-1} + (1-\beta_2) g_k^2,\quad
        \hat g_k = \frac{g_k}{\sqrt{v_k/(1-\beta_2^{k+1})}+\epsilon} + \lambda y_k,\\
        \gamma_k = \eta\,\min\Bigl(1,\frac{k+1}{T}\Bigr),\quad
        w_k = (k+1)^r \bigl(\max_{i\le k}\gamma_i\bigr)^{p},\quad
        c_{k+1} = \frac{w_k}{\sum_{i\le k} w_i},\\
        y_{k+1} = (1-c_{k+1})\,y_k + c_{k+1} z_k + \gamma_k\bigl(\beta_1(1-c_{k+1})-1\bigr)
        \hat g_k,\qquad z_{k+1} = z_k - \gamma_k \hat g_k

    with :math:`k` the group's step count (``group["applied_steps"]``, schedulefree's
    ``group["k"]``), T = ``warmup_steps``, p = ``weight_lr_power``. The parameters hold y
    in train mode; ``eval()`` moves them to the average
    :math:`x = y + (1 - 1/\beta_1)(z - y)` and ``train()`` back. The optimizer starts in
    train mode (schedulefree's in eval mode; the point is the same until the first step),
    and ``step()`` refuses to run in eval mode. The group keeps ``lr_max``,
    ``weight_sum``, ``scheduled_lr`` (the γ of the last step) and ``train_mode``, as
    schedulefree does.

    The paper's Algorithm 1 (schedulefree's ``AdamWScheduleFreePaper``) corrects the bias of
    v in the step size instead, :math:`\gamma_k = \eta\min(1,\frac{k+1}{T})\sqrt{1-\beta_2^{k+1}}`
    with :math:`\sigma = \sqrt{v_k}+\epsilon`: ``bias_correction="lr"``.

    The chain: ``group_clock(ema_sq), [add_decayed_weights], schedule_free``.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -3.0]))
        >>> opt = adaptlr.AdamWScheduleFree([w], lr=0.1)
        >>> opt.train()
        >>> (w**2).sum().backward(); opt.step()   # first step: y = z = w - lr·sign(g)
        >>> w.detach()
        tensor([ 0.9000, -2.9000])
        >>> opt.eval()   # the average x, to evaluate (here x = z after one step)
        >>> w.detach()
        tensor([ 0.9000, -2.9000])
    """

    hyperparameters = (
        SF_LR, SF_BETAS, EPS, SF_WEIGHT_DECAY, WARMUP_STEPS, R, WEIGHT_LR_POWER, SF_FOREACH,
        "*", BIAS_CORRECTION,
    )  # fmt: skip

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        b1, b2 = h.betas
        in_sigma = h.bias_correction == "sigma"
        magnitude = core.ema_sq(b2, eps=h.eps, debias=in_sigma)
        factor = 1.0 if in_sigma else sqrt_bias_correction(b2)
        return core.chain(
            core.group_clock(magnitude),
            *_decay(h),
            core.schedule_free(h.lr, b1, h.warmup_steps, h.r, h.weight_lr_power, factor),
        )

    torch_class = None


class SGDScheduleFree(_ScheduleFree, Declared):
    r"""Schedule-Free SGD (Defazio et al., 2024) with the arguments, defaults and results of
    schedulefree 1.4.1's ``SGDScheduleFree``.

    .. math::
        \hat g_k = g_k + \lambda y_k,\quad
        y_{k+1} = (1-c_{k+1})\,y_k + c_{k+1} z_k + \gamma_k\bigl(\beta(1-c_{k+1})-1\bigr)
        \hat g_k,\quad z_{k+1} = z_k - \gamma_k \hat g_k

    with β = ``momentum`` and :math:`\gamma_k`, :math:`c_{k+1}` as in
    :class:`AdamWScheduleFree`. ``momentum`` must be in (0, 1), as in the package. ``train()``
    and ``eval()`` as in :class:`AdamWScheduleFree`, with β = ``momentum``.

    The chain: ``[add_decayed_weights], schedule_free``.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -3.0]))
        >>> opt = adaptlr.SGDScheduleFree([w], lr=0.1)
        >>> opt.train()
        >>> (w**2).sum().backward(); opt.step()   # first step: w - lr·g
        >>> w.detach()
        tensor([ 0.8000, -2.4000])
    """

    hyperparameters = (
        LR(1.0), SGD_MOMENTUM, SF_WEIGHT_DECAY, WARMUP_STEPS, R, WEIGHT_LR_POWER(2), SF_FOREACH,
    )  # fmt: skip

    @staticmethod
    def _interpolation(group: dict[str, Any]) -> float:
        return float(group["momentum"])

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        return core.chain(
            *_decay(h),
            core.schedule_free(h.lr, h.momentum, h.warmup_steps, h.r, h.weight_lr_power),
        )

    torch_class = None


class RAdamScheduleFree(_ScheduleFree, Declared):
    r"""Schedule-Free RAdam with the arguments, defaults and results of schedulefree 1.4.1's
    ``RAdamScheduleFree``: no warm-up to choose, RAdam's rectification :math:`r_t` scales
    the step size (and so the averaging weights).

    .. math::
        \gamma_k = \eta\, r_{k+1},\qquad
        \hat g_k = \frac{g_k}{\sqrt{v_k/(1-\beta_2^{k+1})}+\epsilon} + \lambda y_k
        \quad\text{once}\ \rho_{k+1} > 4

    with :math:`\rho_t`, :math:`r_t` as in :class:`adaptlr.core.rectified`, but with the
    paper's threshold 4 (torch's RAdam uses 5). Before that, :math:`\hat g_k = g_k +
    \lambda y_k` and :math:`\gamma_k = 0` (``silent_sgd_phase=True``: only v moves) or
    :math:`\eta` (SGD steps). y, z, x, ``train()`` and ``eval()`` as in
    :class:`AdamWScheduleFree`.

    The chain: ``group_clock(ema_sq, gate=ρ > 4), [add_decayed_weights],
    schedule_free(lr_factor=r)``.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -3.0]))
        >>> opt = adaptlr.RAdamScheduleFree([w], lr=0.1)
        >>> opt.train()
        >>> (w**2).sum().backward(); opt.step()   # the silent phase: w stays put
        >>> w.detach()
        tensor([ 1., -3.])
    """

    hyperparameters = (
        SF_LR, SF_BETAS, EPS, SF_WEIGHT_DECAY, R, WEIGHT_LR_POWER, SF_FOREACH, SILENT_SGD_PHASE,
    )  # fmt: skip

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        b1, b2 = h.betas
        magnitude = core.ema_sq(b2, eps=h.eps, debias=True)
        return core.chain(
            core.group_clock(magnitude, gate=rectifying(b2)),
            *_decay(h),
            core.schedule_free(
                h.lr, b1, 0, h.r, h.weight_lr_power, rectified_lr(b2, h.silent_sgd_phase)
            ),
        )

    torch_class = None


@torch.no_grad()
def update_bn(
    batches: Iterable[Any],
    model: torch.nn.Module,
    optimizer: _ScheduleFree,
    *,
    device: torch.device | str | None = None,
    max_batches: int | None = None,
) -> None:
    """Recompute the BatchNorm running statistics of ``model`` at the average x.

    In train mode the parameters are y, so the running mean and variance that BatchNorm
    gathers during training describe y, not the x that is evaluated (schedulefree's README:
    "additional modifications are required"). This puts the optimizer in eval mode (x), runs
    :func:`torch.optim.swa_utils.update_bn` (the statistics reset, then the plain average over
    ``batches``: each a tensor, or a list/tuple whose first element is the model's input; at
    most ``max_batches`` of them), and puts the optimizer and the model back in the modes they
    were in. Call it before evaluating, after ``optimizer.eval()`` or not.

    Args:
        batches: an iterable of batches: each a tensor, or a list/tuple whose first element is the
            model's input.
        model: the ``torch.nn.Module`` whose BatchNorm statistics are recomputed.
        optimizer: the schedule-free optimizer (:class:`AdamWScheduleFree`, :class:`SGDScheduleFree`
            or :class:`RAdamScheduleFree`) that trains ``model``.
        device: where each batch is moved before the forward pass (``torch.device`` or a string);
            None: left where it is.
        max_batches: use at most this many batches; None: all of them; else an int >= 1.

    Example:
        >>> import torch, adaptlr
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
        >>> opt = adaptlr.SGDScheduleFree(model.parameters(), lr=0.1)
        >>> opt.train()
        >>> batches = [torch.randn(8, 3) for _ in range(4)]
        >>> for x in batches:
        ...     model(x).square().mean().backward(); opt.step(); opt.zero_grad()
        >>> opt.eval(); adaptlr.schedule_free.update_bn(batches, model, opt); _ = model.eval()
    """
    if not isinstance(optimizer, _ScheduleFree):
        raise TypeError(
            f"update_bn: optimizer must be a schedule-free optimizer (AdamWScheduleFree, "
            f"SGDScheduleFree, RAdamScheduleFree), got {type(optimizer).__name__}"
        )
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"update_bn: model must be a torch.nn.Module, got {type(model).__name__}")
    if max_batches is not None:
        max_batches = _checks.Integer(1).check("update_bn", "max_batches", max_batches)
        batches = itertools.islice(batches, max_batches)
    training = [bool(g.get("train_mode", True)) for g in optimizer.param_groups]
    optimizer.eval()
    try:
        torch.optim.swa_utils.update_bn(batches, model, device)
    finally:
        if any(training):
            optimizer.train()
