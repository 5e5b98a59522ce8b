"""The ``torch.optim.Optimizer`` adapter: any chain of parts as a drop-in torch optimizer."""

from __future__ import annotations

import inspect
import math
import pickle
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from . import kernels
from .core import Transform
from .core.base import LOW_PRECISION, resolve
from .kernels.flat import Gathered, clock_of, gather, has_dtensor, watched
from .stats import SAMPLE, StatsRequest, StepStats, reference_stats, snapshot

Factory = Callable[..., Transform]

#: torch.optim arguments that select an implementation, not the math: kept in the groups for
#: compatibility, never passed to a chain.
IMPLEMENTATION_KEYS = (
    "foreach",
    "capturable",
    "differentiable",
    "fused",
    "state_dtype",
    "nonfinite",
)

#: what a step does when a gradient holds NaN or inf (the ``nonfinite`` argument)
NONFINITE = ("ignore", "skip", "raise")

#: the param-group key where a schedule given as ``lr`` lives; ``group["lr"]`` holds its value
SCHEDULE_KEY = "lr_schedule"


class ScheduleOverrideWarning(UserWarning):
    """Something other than the group's schedule wrote ``group["lr"]``; the schedule won."""


class Optimizer(torch.optim.Optimizer):
    r"""Turn a chain of :mod:`adaptlr.core` parts into a ``torch.optim.Optimizer``.

    Each step applies, per parameter group,

    .. math:: \theta \leftarrow \theta + u, \qquad u = \mathrm{chain}(g)

    (the chain's last part, usually ``scale_by_learning_rate``, supplies the minus sign and
    η_t). ``transform`` is either a :class:`~adaptlr.core.Transform` used as is for every
    group, or a factory called with each group's hyperparameters (the keyword arguments given
    here are the defaults, overridable per group), so that a ``torch.optim.lr_scheduler``
    changing ``group["lr"]`` takes effect at the next step.

    Each group counts its applied updates in ``group["applied_steps"]``; schedules given as
    hyperparameters are evaluated at that count, so resuming from a state dict continues the
    schedule exactly and a step skipped by ``GradScaler`` does not advance it.

    ``group["lr"]`` is always a number: the η the group's next step applies. A schedule given
    as ``lr`` (an :class:`adaptlr.schedules.Schedule`; a function is refused, as a state dict
    could not hold it) lives in ``group["lr_schedule"]`` and the step keeps ``lr`` at its value,
    so loggers, HF, Lightning, timm and torch's schedulers read a float. If something else
    writes ``lr`` while the group has a schedule, the schedule wins and the step warns once
    (:class:`ScheduleOverrideWarning`); ``group["lr_schedule"] = None`` removes the schedule.

    Example:
        >>> import torch, adaptlr
        >>> from adaptlr import core
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
        >>> opt = adaptlr.Optimizer([w], core.chain(core.rms(), core.scale_by_learning_rate(0.1)))
        >>> w.grad = torch.tensor([2.0, -0.5])
        >>> opt.step()
        >>> w.detach()  # the first step of the lecture's RMS rule is -lr·sign(g), up to eps
        tensor([ 0.9000, -0.9000])
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        transform: Transform | Factory,
        **defaults: Any,
    ) -> None:
        if not isinstance(transform, Transform) and not callable(transform):
            raise TypeError(
                f"{type(self).__name__}: transform must be an adaptlr.core chain or a factory "
                f"returning one, got {type(transform).__name__}"
            )
        if isinstance(params, (int, float)) or params is None:
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of tensors or of dicts "
                f"(param groups), got {params!r}"
            )
        if callable(defaults.get("lr")):
            sched = as_schedule(type(self).__name__, defaults["lr"])
            defaults["lr"], defaults[SCHEDULE_KEY] = sched(0), sched
        self._factory = transform
        self._hyper = (
            ()
            if isinstance(transform, Transform)
            else tuple(
                k for k in inspect.signature(transform).parameters if k not in IMPLEMENTATION_KEYS
            )
        )
        super().__init__(params, defaults)
        # per-parameter state dicts count their changes (see kernels.flat.WatchedState)
        self.state = watched(self.state, clock_of(self))
        #: what the last step measured per group, when asked by :meth:`request_stats`
        self.last_stats: list[StepStats | None] = []

    def __getstate__(self) -> dict[str, Any]:
        # torch keeps only defaults, state and groups; a copy (copy.deepcopy, pickle) also
        # needs the chain, and the clock its state dicts tick. The fast path's flat plans are
        # not kept: the copy's first step rebuilds them from its state entries.
        return {
            **super().__getstate__(),
            "_factory": self._factory,
            "_hyper": self._hyper,
            "_adaptlr_clock": clock_of(self),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        # also how torch's load_state_dict installs the loaded state
        super().__setstate__(state)
        self.state = watched(self.state, clock_of(self))
        self.__dict__.setdefault("last_stats", [])

    # -- hyperparameters --------------------------------------------------------------------
    def check_group(self, group: dict[str, Any]) -> None:
        """Raise a clear error for a bad hyperparameter of ``group`` (named optimizers)."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # Validate the completed group before torch records it, so nothing is half-applied.
        if isinstance(param_group, dict):
            if "params" not in param_group:
                raise ValueError(
                    f"{type(self).__name__}.add_param_group: the group needs a 'params' entry "
                    f"(the tensors to optimize), got keys {sorted(param_group)}"
                )
            params = param_group.get("params")
            if params is not None and not isinstance(params, (Tensor, set)):
                param_group["params"] = list(params)  # a generator must survive the check
            if callable(param_group.get("lr")):
                sched = as_schedule(type(self).__name__, param_group["lr"])
                param_group[SCHEDULE_KEY] = sched
                param_group["lr"] = sched(param_group.get("applied_steps", 0))  # for the checks
            elif "lr" in param_group and self.defaults.get(SCHEDULE_KEY) is not None:
                param_group.setdefault(SCHEDULE_KEY, None)  # its own lr, not the default schedule
            self.check_group({**self.defaults, **param_group})
            _check_trainable(type(self).__name__, param_group)
            _check_listed_once(type(self).__name__, param_group)
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.setdefault("applied_steps", 0)
        group.setdefault("skipped_steps", 0)
        if group.get(SCHEDULE_KEY) is not None:
            # recorded now, so that a scheduler writing lr before the first step is seen
            self._write_lr(group)

    def transform_for(self, group: dict[str, Any]) -> Transform:
        """The chain that updates ``group`` with its current hyperparameters."""
        if isinstance(self._factory, Transform):
            return self._factory
        values = self._values(group, live=True)
        cache = self.__dict__.setdefault("_transforms", {})
        try:
            return cache[values]
        except TypeError:  # an unhashable hyperparameter (e.g. a list): build it every time
            return self._build(group, values)
        except KeyError:
            if len(cache) > 64:  # a scheduler writing a new lr each step: keep memory bounded
                cache.clear()
            cache[values] = self._build(group, values)
            return cache[values]

    def _values(self, group: dict[str, Any], live: bool) -> tuple[Any, ...]:
        """The group's hyperparameters as the factory takes them.

        ``lr`` is data, not part of the chain's identity: a schedule reaches the chain as
        itself (evaluated at each step's count) and, with ``live``, a number as
        :class:`GroupLR`, which reads ``group["lr"]`` when a step makes its coefficients. A
        scheduler that writes a new lr every step then rebuilds and retraces nothing.
        """
        sched = group.get(SCHEDULE_KEY)
        if sched is not None:
            lr: Any = sched
        elif live and "lr" in self._hyper:
            lives = self.__dict__.setdefault("_group_lrs", {})
            lr = lives.get(id(group))
            if lr is None or lr.group is not group:  # (a new group at a freed dict's id)
                if len(lives) > 64:  # groups of optimizers loaded again and again
                    lives.clear()
                lr = lives[id(group)] = GroupLR(group)
        else:
            lr = group.get("lr")
        return tuple(lr if k == "lr" else group[k] for k in self._hyper)

    def _build(self, group: dict[str, Any], values: tuple[Any, ...]) -> Transform:
        # New hyperparameter values (a scheduler, or a hand edit of the group): check them
        # as the constructor did, before they reach a parameter.
        self.check_group(group)
        t = self._factory(**dict(zip(self._hyper, values)))
        if not isinstance(t, Transform):
            raise TypeError(
                f"{type(self).__name__}: the transform factory must return an adaptlr.core "
                f"chain, got {type(t).__name__}"
            )
        return t

    @classmethod
    def transform(cls, **hyperparameters: Any) -> Transform:
        """The functional form: this optimizer's chain for the given hyperparameters.

        Unspecified ones take the constructor's defaults, and the same checks apply; use
        ``init``/``update`` on lists of tensors (see :class:`adaptlr.core.Transform`).
        """
        # Building a throwaway instance reuses the constructor's defaults and checks exactly.
        opt = cls([torch.zeros(0, requires_grad=True)], **hyperparameters)
        if isinstance(opt._factory, Transform):
            return opt._factory
        group = opt.param_groups[0]
        return opt._build(group, opt._values(group, live=False))  # the numbers themselves

    # -- what users ask for ------------------------------------------------------------------
    def current_lr(self) -> list[float | None]:
        """η of the next step of each group: its schedule at the group's applied-step count,
        or its lr (``None`` for a group without ``lr``, e.g. a fixed chain)."""
        return [
            resolve(g.get(SCHEDULE_KEY) or g["lr"], g.get("applied_steps", 0))
            if "lr" in g
            else None
            for g in self.param_groups
        ]

    @torch.no_grad()
    def effective_lr(self) -> list[list[Tensor | None]]:
        r"""Per group, per parameter: :math:`\eta_t/\sigma_t` elementwise, as of the last step.

        ``None`` for a parameter that has not been updated yet or whose chain has no
        magnitude (e.g. SGD). Complex parameters give the real view's shape (..., 2).
        """
        out = []
        for group in self.param_groups:
            t = self.transform_for(group)
            count = group.get("applied_steps", 0)
            out.append(
                [
                    t.effective_lr(self.state[p], count) if self.state.get(p) else None
                    for p in group["params"]
                ]
            )
        return out

    # -- the step ----------------------------------------------------------------------------
    def _prepare(self) -> list[tuple[dict[str, Any], list[Tensor], Transform, Gathered]]:
        """Every group's parameters with a gradient, its chain and what
        :func:`adaptlr.kernels.flat.gather` found about them (their gradients, and addresses),
        checked before any change."""
        work = []
        for gi, group in enumerate(self.param_groups):
            self._sync_schedule(gi, group)
            lr = group.get("lr")
            # the chain reads lr at each step (GroupLR), so a value a scheduler or a hand wrote
            # is checked here, before anything changes; a plain valid float costs one test
            if (
                "lr" in self._hyper
                and not (type(lr) is float and 0.0 <= lr < math.inf)
                and not isinstance(lr, Tensor)
            ):
                from .optimizers import _checks  # late: the optimizers import this module

                _checks.lr(f"{type(self).__name__} (param group {gi})", lr)
            # one pass: with 10,000 tensors, per-tensor Python costs show in a fused step
            found = gather(group["params"], kernels.last_active(self, group))
            if not found.dense and any(g.layout != torch.strided for g in found.grads):
                raise TypeError(
                    f"{type(self).__name__} does not support sparse gradients "
                    f"(param group {gi}); use torch.optim.SparseAdam or dense gradients"
                )
            work.append((group, found.params, self.transform_for(group), found))
        return work

    def _sync_schedule(self, gi: int, group: dict[str, Any]) -> None:
        """Keep ``group["lr"]`` a number: the value of the group's schedule, if it has one.

        A schedule assigned to ``group["lr"]`` by hand (or read from a state dict of adaptlr
        0.1) moves to ``group["lr_schedule"]``. An ``lr`` that something else wrote (a torch,
        HF or timm scheduler, a hand edit) while the group has a schedule is overwritten by
        the schedule's value, with one :class:`ScheduleOverrideWarning` per group.
        """
        lr = group.get("lr")
        if callable(lr):
            group[SCHEDULE_KEY] = as_schedule(type(self).__name__, lr)
        sched = group.get(SCHEDULE_KEY)
        if sched is None:
            return
        want = sched(group["applied_steps"])
        # what this optimizer last wrote, held with its group so that a reused id cannot match
        prev = self.__dict__.setdefault("_lr_written", {}).get(id(group))
        if prev is not None and prev[0] is group and not callable(lr) and float(lr) != prev[1]:
            warned = self.__dict__.setdefault("_lr_overridden", {})
            if warned.get(id(group)) is not group:
                warned[id(group)] = group
                warnings.warn(
                    f"{type(self).__name__}: param group {gi} has a schedule "
                    f"(group['lr_schedule'] = {sched!r}) but its lr was set to {lr!r} by "
                    f"something else (a torch, HF, Lightning or timm scheduler?); the "
                    f"schedule's {want!r} is applied. Drop the other scheduler, or remove the "
                    f"schedule with group['lr_schedule'] = None (where a framework needs a "
                    f"scheduler object, adaptlr.schedules.ScheduleLR(optimizer) follows the "
                    f"optimizer's own)",
                    ScheduleOverrideWarning,
                    stacklevel=kernels._user_stacklevel(),
                )
        self._write_lr(group, want)

    def _write_lr(self, group: dict[str, Any], value: float | None = None) -> None:
        """``group["lr"]`` = its schedule's value now (``value``, when the caller has it),
        remembered to see other writers."""
        if value is None:
            value = group[SCHEDULE_KEY](group["applied_steps"])
        group["lr"] = value
        self.__dict__.setdefault("_lr_written", {})[id(group)] = (group, value)

    def _advance_schedules(self) -> None:
        """After a step: each scheduled group's ``lr`` is the η its next step applies."""
        for group in self.param_groups:
            if group.get(SCHEDULE_KEY) is not None:
                self._write_lr(group)

    def _gradients_finite(
        self, work: list[tuple[dict[str, Any], list[Tensor], Transform, Gathered]]
    ) -> bool:
        """``False`` if a group with ``nonfinite="skip"`` has a NaN/inf gradient.

        Raises ``FloatingPointError`` for ``nonfinite="raise"``. Runs before anything changes,
        on either path, so a skipped or refused step leaves parameters and state untouched.
        """
        for gi, (group, params, *_) in enumerate(work):
            mode = group.get("nonfinite", "ignore")
            if mode == "ignore":
                continue
            grads = [p.grad for p in params if p.grad.numel()]
            if not grads:
                continue
            # the max-norm is finite exactly when every element is (an L2 norm could overflow);
            # one reduction per device, one synchronisation per group
            norms = torch._foreach_norm(grads, ord=math.inf)
            by_device: dict[torch.device, list[Tensor]] = {}
            for n in norms:
                by_device.setdefault(n.device, []).append(n.float())
            if all(bool(torch.stack(ns).isfinite().all()) for ns in by_device.values()):
                continue
            if mode == "raise":
                bad = next(i for i, n in enumerate(norms) if not bool(n.isfinite()))
                raise FloatingPointError(
                    f"{type(self).__name__}: a gradient holds NaN or inf (param group {gi}, "
                    f"parameter {bad} of those with a gradient, shape {tuple(grads[bad].shape)}); "
                    f"nothing was changed (nonfinite='raise')"
                )
            return False
        return True

    def _init_state(self, group: dict[str, Any], params: list[Tensor], t: Transform) -> None:
        """Create missing state entries (the fused path keeps its own, flat, state)."""
        keys, sdtype = t.state_keys, group.get("state_dtype")
        for p in params:
            st = self.state[p]
            if not all(k in st for k in keys):
                for k, v in t.init_one(p, sdtype).items():
                    st.setdefault(k, v)
            t.conform_one(st, p, sdtype)  # its dtype may have changed since its state was made

    @kernels.opaque_to_compile  # torch.compile runs the step as one call, outside its graphs
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One update of every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        request = self.__dict__.pop("_stats_request", None)
        self.last_stats = [None] * len(self.param_groups)
        work = self._prepare()
        if not self._gradients_finite(work):
            for group in self.param_groups:
                group["skipped_steps"] = group.get("skipped_steps", 0) + 1
            return loss
        for gi, (group, params, t, found) in enumerate(work):
            if not params:
                if t.collective:  # the other processes wait for this one's share of a norm
                    t.update([], [], [], count=group["applied_steps"])
                continue
            # DTensor (FSDP2) shards: a step sees only this process's share, so it measures
            # nothing (the monitor then measures through its hooks, over whole DTensors)
            measure = request if request is None or not has_dtensor(params) else None
            if group.get("fused") is not False:
                taken = kernels.fused_step(self, group, params, t, measure, found)
                if taken:
                    group["applied_steps"] += 1
                    if isinstance(taken, StepStats):
                        self.last_stats[gi] = taken
                    continue
            self._init_state(group, params, t)
            states = [self.state[p] for p in params]
            old = snapshot(params) if measure is not None else None
            updates, new_states = t.update(
                [p.grad for p in params], states, params, count=group["applied_steps"]
            )
            for p, u, st, new in zip(params, updates, states, new_states):
                p.add_(u)
                st.update(new)
            group["applied_steps"] += 1
            if measure is not None and old is not None:
                last = self.__dict__.setdefault("_last_measured", {})
                self.last_stats[gi] = last[id(group)] = reference_stats(
                    t, params, old, states, group["applied_steps"], measure, last.get(id(group))
                )
        self._advance_schedules()
        return loss

    def request_stats(self, sample: int = SAMPLE, eff_lr: bool = True) -> None:
        """Measure the next :meth:`step`: its results are in :attr:`last_stats` after it.

        Per param group, a :class:`adaptlr.stats.StepStats`: the sums of squares of the
        gradient, of the update and of the new parameters, per-tensor gradient sums of squares,
        the gradient at a fixed sample of about ``sample`` elements and, with ``eff_lr``,
        η_t/σ_t at those elements. On the fast path the step kernel measures itself in the
        same pass over memory (this is what :class:`adaptlr.monitor.Monitor` uses); the
        reference path keeps a copy of the parameters for the step. ``None`` for a group
        that did not step (no gradient, or a step skipped for a non-finite gradient) and for
        DTensor (FSDP2) parameters, of which a step sees only this process's shard.
        """
        self._stats_request = StatsRequest(sample, eff_lr)

    # -- resume ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, each parameter's state a plain ``dict``.

        The fast path keeps its parameters' state in :class:`~adaptlr.kernels.flat.WatchedState`
        dicts; a checkpoint must not need adaptlr's classes to load
        (``torch.load(..., weights_only=True)`` accepts plain containers only).
        """
        sd = super().state_dict()
        sd["state"] = {k: dict(v) if isinstance(v, dict) else v for k, v in sd["state"].items()}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict of this optimizer, or of its torch.optim counterpart.

        Everything is checked before anything changes (see
        :func:`adaptlr.checkpoint.check_state_dict`): on a ``ValueError``/``TypeError`` the
        state and the groups are as they were. A torch.optim state dict (no
        ``applied_steps``) is migrated with :func:`adaptlr.checkpoint.from_torch_state_dict`,
        and hyperparameters it lacks (``init``, ``fused``) take this optimizer's defaults.
        """
        from .checkpoint import check_state_dict  # late: checkpoint imports this module

        checked = check_state_dict(self, state_dict)
        super().load_state_dict(checked)
        for gi, group in enumerate(self.param_groups):
            self._sync_schedule(gi, group)  # a state dict of adaptlr 0.1 kept it in "lr"
        # torch casts every floating state tensor to its parameter's dtype on load, which would
        # round the float32 state of bf16/fp16 parameters: put the saved values back.
        ids = [i for g in checked["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for pid, p in zip(ids, params):
            if p.dtype not in LOW_PRECISION:
                continue
            for k, v in checked["state"].get(pid, {}).items():
                if k != "step" and isinstance(v, Tensor) and v.dtype != p.dtype:
                    self.state[p][k] = v.to(device=p.device, copy=True)


class GroupLR:
    """A param group's current ``lr``, read when a step makes its coefficients.

    It stands in the chain where the number would: the chain and its traced kernel then do
    not depend on the value, which torch's schedulers change every step (the value reaches
    the kernel as a coefficient, as a schedule's does).
    """

    __slots__ = ("group",)

    def __init__(self, group: dict[str, Any]) -> None:
        self.group = group

    def __call__(self, step: int) -> float:
        return float(self.group["lr"])

    def __repr__(self) -> str:
        return "group['lr']"


def as_schedule(owner: str, lr: Any) -> Any:
    """``lr`` if it is a schedule that a state dict can hold, else a ``ValueError`` saying why.

    A group's schedule is saved with the optimizer's state dict, and checkpoints are loaded
    with ``torch.load(weights_only=True)`` (HF Trainer's default), which rebuilds registered
    :class:`adaptlr.schedules.Schedule` subclasses only: a function or a lambda is refused now,
    not at the first save.
    """
    from .schedules import Schedule  # late: schedules is a sibling package users may not need

    if isinstance(lr, Schedule):
        try:
            pickle.dumps(lr)
        except Exception as e:
            raise ValueError(
                f"{owner}: lr={lr!r} cannot be saved in a state dict ({e}); a schedule's fields "
                f"must be plain data (numbers, tuples, other schedules)"
            ) from None
        return lr
    if callable(lr):
        raise ValueError(
            f"{owner}: lr must be a finite number >= 0 or an adaptlr.schedules.Schedule, got "
            f"{lr!r}: a function cannot be saved in a state dict and reloaded with "
            f"torch.load(weights_only=True). Use a schedule from adaptlr.schedules (join, "
            f"from_hf, ...), write a frozen dataclass subclassing adaptlr.schedules.Schedule "
            f"with a value(t) method, or keep lr a number and drive it with "
            f"torch.optim.lr_scheduler.LambdaLR"
        )
    raise ValueError(
        f"{owner}: lr must be a finite number >= 0 or an adaptlr.schedules.Schedule, got {lr!r}"
    )


def _group_tensors(group: dict[str, Any]) -> list[Tensor]:
    """The tensors of a group's ``params`` (plain, or ``(name, tensor)`` pairs)."""
    params = group.get("params")
    items = [params] if isinstance(params, Tensor) else list(params or [])
    tensors = [x[1] if isinstance(x, tuple) else x for x in items]
    return [t for t in tensors if isinstance(t, Tensor)]


def _check_listed_once(owner: str, group: dict[str, Any]) -> None:
    """Refuse a tensor listed twice in one group. torch.optim warns that this will become an
    error and steps it once per listing, each of its implementations differently (Adam, three
    steps from 1.0 with lr 0.1: 0.408 for-loop, 0.406 foreach, 0.447 fused)."""
    first: dict[int, int] = {}
    for i, t in enumerate(_group_tensors(group)):
        j = first.setdefault(id(t), i)
        if j != i:
            raise ValueError(
                f"{owner}: the tensor at position {i} of this param group is the one at "
                f"position {j}; list each tensor once (torch.optim warns that this will become "
                f"an error)"
            )


def _check_trainable(owner: str, group: dict[str, Any]) -> None:
    """Refuse a group none of whose tensors requires grad: it could never be updated.

    Frozen tensors *among* trainable ones are accepted, as torch.optim accepts them
    (fine-tuning with ``optimizer(model.parameters())``); a group that is frozen on purpose,
    to be unfrozen later, says so with ``allow_frozen=True``.
    """
    tensors = _group_tensors(group)
    allow = group.get("allow_frozen", False)
    if not isinstance(allow, bool):
        raise TypeError(f"{owner}: allow_frozen must be True or False, got {allow!r}")
    if tensors and not allow:
        if not any(t.requires_grad for t in tensors):
            raise ValueError(
                f"{owner}: none of the {len(tensors)} tensors of this param group requires "
                f"grad, so it could never be updated: set requires_grad=True (or pass "
                f"nn.Parameters), or give the group allow_frozen=True if you unfreeze it later"
            )
