"""The ``torch.optim.Optimizer`` adapter: any chain of parts as a drop-in torch optimizer."""

from __future__ import annotations

import inspect
import math
import operator
import pickle
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from . import kernels
from ._group_keys import IMPLEMENTATION_KEYS, SCHEDULE_KEY
from .checkpoint import check_state_dict
from .core import State, Transform
from .core.base import LOW_PRECISION, resolve
from .kernels import Gathered, has_dtensor
from .schedules import Schedule
from .stats import SAMPLE, StatsRequest, StepStats, reference_stats, snapshot

Factory = Callable[..., Transform]

#: what a step does when a gradient holds NaN or inf (the ``nonfinite`` argument)
NONFINITE = ("ignore", "skip", "raise")


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

    Args:
        params: the tensors to optimize: an iterable of tensors, or of param-group dicts (each with
            a ``"params"`` entry; its other keys override ``defaults`` for its tensors), as
            torch.optim takes them.
        transform: a :class:`~adaptlr.core.Transform` (``core.chain(...)``) used as is for every
            group, or a factory: a callable taking hyperparameters by keyword (the keys of
            ``defaults`` it names) and returning a Transform, called with each group's values.
        **defaults: the hyperparameters every group starts with (``lr``: a number, or an
            :class:`adaptlr.schedules.Schedule`; the rest as the factory takes them).

    Example:
        >>> import torch, adaptlr
        >>> from adaptlr import core
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
        >>> rule = core.chain(core.mean_sq(), core.scale_by_learning_rate(0.1))
        >>> opt = adaptlr.Optimizer([w], rule)
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
        #: the fused fast path: its plans, and the clock the state dicts tick on every change
        #: (see kernels.WatchedState)
        self._fast_path = kernels.FastPath()
        self.state = self._fast_path.watched(self.state)
        #: what the last step measured per group, when asked by :meth:`request_stats`
        self.last_stats: list[StepStats | None] = []

    def __getstate__(self) -> dict[str, Any]:
        # torch keeps only defaults, state and groups; a copy (copy.deepcopy, pickle) also
        # needs the chain, and the fast path's clock, which its state dicts tick (the fast
        # path's flat plans are not kept: the copy's first step rebuilds them).
        return {
            **super().__getstate__(),
            "_factory": self._factory,
            "_hyper": self._hyper,
            "_fast_path": self._fast_path,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        # also how torch's load_state_dict installs the loaded state
        super().__setstate__(state)
        self.state = self.__dict__.setdefault("_fast_path", kernels.FastPath()).watched(self.state)
        self.__dict__.setdefault("last_stats", [])

    # -- hyperparameters --------------------------------------------------------------------
    def check_group(self, group: dict[str, Any]) -> None:
        """Raise a clear error for a bad hyperparameter of ``group`` (named optimizers).

        Args:
            group: a param group (a dict of hyperparameters and ``"params"``); here nothing is
                checked.
        """

    def check_changed(self, group: dict[str, Any], names: list[str]) -> None:
        """Check ``group`` after the hyperparameters ``names`` changed between steps.

        :meth:`check_group` here; an optimizer that can check one value at a time (the
        declared ones) checks only those, and what relates them.

        Args:
            group: the param group, with its new values.
            names: the keys of ``group`` whose values changed.
        """
        self.check_group(group)

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
        if not isinstance(self._factory, Transform):  # checked above: the first step need not
            chains = self.__dict__.setdefault("_chains", {})
            chains[id(group)] = (group, self._snapshot(group), None, None)
        group.setdefault("applied_steps", 0)
        group.setdefault("skipped_steps", 0)
        if group.get(SCHEDULE_KEY) is not None:
            # recorded now, so that a scheduler writing lr before the first step is seen
            self._write_lr(group)

    def transform_for(self, group: dict[str, Any], gi: int | None = None) -> Transform:
        """The chain that updates ``group`` (:meth:`_chain_for`); over FSDP2's DTensor
        parameters, without its parts' ``process_group``: their sums are whole already
        (:meth:`adaptlr.core.Transform.over_dtensors`).

        Args:
            group: one of :attr:`param_groups`.
            gi: its index in :attr:`param_groups`; None: looked up.
        """
        t = self._chain_for(group, gi)
        return t.over_dtensors() if t.collective and has_dtensor(group["params"]) else t

    def _chain_for(self, group: dict[str, Any], gi: int | None = None) -> Transform:
        """The chain that updates ``group``, built once per group and structure.

        Hyperparameters are data: the factory receives each number of the group as a
        :class:`GroupValue`, which the chain reads when a step makes its coefficients, so a
        scheduler or a hand writing a new ``lr``, ``betas`` or ``weight_decay`` rebuilds and
        retraces nothing. A changed value is checked here, before it reaches a parameter; the
        chain is rebuilt only when the group's *structure* changes (a flag such as
        ``amsgrad``, or a number becoming zero or nonzero, which adds or drops a part).
        """
        if isinstance(self._factory, Transform):
            return self._factory
        read, lr_at = self._reader()
        try:
            now = read(group)
        except KeyError:  # (a group that lacks a hyperparameter: the check names it)
            now = tuple(group.get(k) for k in self._hyper)
        chains = self.__dict__.setdefault("_chains", {})
        hit = chains.get(id(group))
        if (
            hit is not None
            and hit[0] is group
            and hit[3] is not None
            and group.get(SCHEDULE_KEY) is hit[2][0]
        ):
            # the usual steps, compared in C: nothing changed, or only a new plain lr
            if now == hit[1]:
                return hit[3]
            if lr_at is not None:
                lr = now[lr_at]
                if (
                    type(lr) is float
                    and 0.0 <= lr < math.inf
                    and now[:lr_at] == hit[1][:lr_at]
                    and now[lr_at + 1 :] == hit[1][lr_at + 1 :]
                ):
                    chains[id(group)] = (group, now, hit[2], hit[3])
                    return hit[3]
        if hit is not None and hit[0] is not group:  # a new group at a freed dict's id
            hit = None
        # a list or a tensor is compared by its values (it may change in place)
        now = tuple(_frozen(v) for v in now)
        if hit is None or hit[1] != now:
            self._check_changed(group, gi, None if hit is None else hit[1], now)
        # lr never shapes a chain (every step may write a new one, zero included)
        shape = (group.get(SCHEDULE_KEY),) + tuple(
            None if k == "lr" else _structure(v) for k, v in zip(self._hyper, now)
        )
        if hit is not None and hit[2] == shape and hit[3] is not None:
            t = hit[3]
        else:
            t = self._build(self._values(group, live=True))
        if len(chains) > 256:  # groups of optimizers loaded again and again
            chains.clear()
        chains[id(group)] = (group, now, shape, t)
        return t

    def _reader(self) -> tuple[Callable[[dict[str, Any]], tuple[Any, ...]], int | None]:
        """A function reading a group's hyperparameters as a tuple in one C call, and the
        position of ``lr`` in it."""
        cached = self.__dict__.get("_read_hyper")
        if cached is None or cached[0] is not self._hyper:
            keys = self._hyper
            read = operator.itemgetter(*keys) if len(keys) > 1 else _tuple_getter(keys)
            lr_at = keys.index("lr") if "lr" in keys else None
            cached = self.__dict__["_read_hyper"] = (keys, read, lr_at)
        return cached[1], cached[2]

    def _snapshot(self, group: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(_frozen(group.get(k)) for k in self._hyper)

    def _check_changed(
        self,
        group: dict[str, Any],
        gi: int | None,
        before: tuple[Any, ...] | None,
        now: tuple[Any, ...],
    ) -> None:
        """Check the hyperparameters of ``group`` that changed since they were last checked.

        A new plain-number ``lr`` (a scheduler's, every step) costs one comparison; other
        changes run :meth:`check_changed` (a new group, :meth:`check_group`), whose error then
        names the param group.
        """
        try:
            if before is None:
                self.check_group(group)
                return
            changed = [k for k, b, n in zip(self._hyper, before, now) if b != n]
            lr = group.get("lr")
            if changed == ["lr"] and type(lr) is float and 0.0 <= lr < math.inf:
                return
            self.check_changed(group, changed)
        except (TypeError, ValueError) as e:
            if gi is None:
                raise
            raise type(e)(f"{type(self).__name__} (param group {gi}): {e}") from None

    def _values(self, group: dict[str, Any], live: bool) -> tuple[Any, ...]:
        """The group's hyperparameters as the factory takes them.

        With ``live``, each number (also inside a tuple, as ``betas``) is a
        :class:`GroupValue` that reads the group when a step makes its coefficients, and an
        ``lr`` schedule is the schedule itself (evaluated at each step's count); without, the
        numbers themselves (:meth:`transform`).
        """
        out = []
        for k in self._hyper:
            v = group.get(k)
            if k == "lr" and group.get(SCHEDULE_KEY) is not None:
                v = group[SCHEDULE_KEY]
            elif live and _is_number(v):
                v = GroupValue(group, k)
            elif live and isinstance(v, (tuple, list)) and all(_is_number(x) for x in v):
                v = tuple(GroupValue(group, k, i) for i in range(len(v)))
            out.append(v)
        return tuple(out)

    def _build(self, values: tuple[Any, ...]) -> Transform:
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

        Args:
            **hyperparameters: this optimizer's constructor arguments other than ``params``, by
                keyword, with the values and checks the constructor has.
        """
        # Building a throwaway instance reuses the constructor's defaults and checks exactly.
        opt = cls([torch.zeros(0, requires_grad=True)], **hyperparameters)
        if isinstance(opt._factory, Transform):
            return opt._factory
        return opt._build(opt._values(opt.param_groups[0], live=False))  # the numbers

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
            shared = {k: group[k] for k in t.shared_keys if k in group}
            out.append(
                [
                    t.effective_lr_one(self.state[p], count, shared) if self.state.get(p) else None
                    for p in group["params"]
                ]
            )
        return out

    # -- the step ----------------------------------------------------------------------------
    def _prepare(self) -> list[tuple[dict[str, Any], list[Tensor], Transform, Gathered]]:
        """Every group's parameters with a gradient, its chain and what
        :meth:`adaptlr.kernels.FastPath.gather` found about them (their gradients, and addresses),
        checked before any change."""
        work = []
        for gi, group in enumerate(self.param_groups):
            self._sync_schedule(gi, group)
            t = self.transform_for(group, gi)  # checks what changed, before anything changes
            # one pass: with 10,000 tensors, per-tensor Python costs show in a fused step
            found = self._fast_path.gather(group)
            if not found.dense and any(g.layout != torch.strided for g in found.grads):
                raise TypeError(
                    f"{type(self).__name__} does not support sparse gradients "
                    f"(param group {gi}); use torch.optim.SparseAdam or dense gradients"
                )
            work.append((group, found.params, t, found))
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
                    stacklevel=kernels.user_stacklevel(),
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

    @staticmethod
    def _init_shared(group: dict[str, Any], t: Transform) -> dict[str, float]:
        """The scalars ``t`` keeps once per group (Prodigy's ``d``), read from the group, where
        they live as the reference packages keep them; set to their initial values if new."""
        if not t.shared_keys:
            return {}
        for k, v in t.init_shared().items():
            group.setdefault(k, v)
        return {k: group[k] for k in t.shared_keys}

    def _optimizer_sums(
        self, work: list[tuple[dict[str, Any], list[Tensor], Transform, Gathered]]
    ) -> dict[int, dict[int, dict[str, float]]]:
        """The sums that run over every group (D-Adaptation's, Prodigy's): each group's share,
        added up, and across processes; by group index, then slot."""
        wide = [(gi, w) for gi, w in enumerate(work) if w[2].optimizer_sums_slot is not None]
        if not wide:
            return {}
        first = wide[0][1][2]
        part = first.slots[first.optimizer_sums_slot].part  # type: ignore[index]
        totals = {x.name: 0.0 for x in part.sums if x.scope == "optimizer"}
        todo = [w for _, w in wide if w[1]]
        fast = [w for w in todo if w[0].get("fused") is not False]
        # the reduction kernels, every group's share read back at once (None: not fused)
        shares = self._fast_path.partial_sums(
            self, [(g, ps, t, f, self._init_shared(g, t)) for g, ps, t, f in fast]
        )
        fused = {id(w[0]): share for w, share in zip(fast, shares)}
        for group, params, t, _ in todo:
            local = fused.get(id(group))
            if local is None:
                self._init_state(group, params, t)
                states = State([self.state[p] for p in params], self._init_shared(group, t))
                count = group["applied_steps"]
                local = t.partial_sums([p.grad for p in params], states, params, count)
            for k, v in local.items():
                totals[k] += v
        totals = part.reduce_sums(totals)
        return {gi: {w[2].optimizer_sums_slot: totals} for gi, w in wide}  # type: ignore[misc]

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
        """One update of every parameter that has a gradient; returns ``closure()``'s loss.

        Args:
            closure: None, or a callable that recomputes the loss (forward and backward) and returns
                it; called with gradients enabled before the update.
        """
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
        wide = self._optimizer_sums(work)
        for gi, (group, params, t, found) in enumerate(work):
            if not params:
                # a group with no gradient: its parameters stay put, but scalars kept per group
                # (Schedule-Free's weights, Prodigy's d) advance and its step is counted, as in
                # the reference packages; a collective part still sends its (empty) share
                if t.counts_empty_steps or t.collective:
                    shared = self._init_shared(group, t)
                    count = group["applied_steps"]
                    _, new = t.update([], State([], shared), [], count, wide.get(gi))
                    if t.counts_empty_steps:
                        group.update(new.shared)
                        group["applied_steps"] += 1
                continue
            shared = self._init_shared(group, t)
            # DTensor (FSDP2) shards: a step sees only this process's share, so it measures
            # nothing (the monitor then measures through its hooks, over whole DTensors)
            measure = request if request is None or not has_dtensor(params) else None
            if group.get("fused") is not False:
                taken = self._fast_path.step(
                    self, group, params, t, measure, found, shared, wide.get(gi)
                )
                if taken:
                    group["applied_steps"] += 1
                    if isinstance(taken, StepStats):
                        self.last_stats[gi] = taken
                    continue
            self._init_state(group, params, t)
            states = State([self.state[p] for p in params], shared)
            old = snapshot(params) if measure is not None else None
            updates, new_states = t.update(
                [p.grad for p in params], states, params, group["applied_steps"], wide.get(gi)
            )
            for p, u, st, new in zip(params, updates, states, new_states):
                p.add_(u)
                st.update(new)
            group.update(new_states.shared)
            states.shared.update(new_states.shared)  # what the step's statistics read
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

        Args:
            sample: about how many elements of each group to sample for the gradient and η_t/σ_t
                (default 16384, ``adaptlr.stats.SAMPLE``); an integer >= 1.
            eff_lr: also measure η_t/σ_t at the sampled elements; True or False.
        """
        self._stats_request = StatsRequest(sample, eff_lr)

    # -- resume ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, each parameter's state a plain ``dict``.

        The fast path keeps its parameters' state in :class:`~adaptlr.kernels.WatchedState`
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

        Args:
            state_dict: a dict as :meth:`state_dict` returns it (``"state"`` and
                ``"param_groups"``), of this class or of its torch.optim counterpart.
        """
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

    #: torch.optim's class with this class's arguments and results (``None``: there is none);
    #: :func:`adaptlr.checkpoint.to_torch_state_dict` converts for it
    torch_class: type[torch.optim.Optimizer] | None = None

    @classmethod
    def prepare_torch_state_dict(cls, state_dict: dict[str, Any]) -> None:
        """Change ``state_dict`` in place into what ``torch_class`` loads; here, nothing.

        :func:`adaptlr.checkpoint.to_torch_state_dict` calls it with a copy of a state dict of
        this class (``applied_steps`` still in the groups; it drops that and the hyperparameters
        ``torch_class`` does not take afterwards). A named optimizer whose state differs from
        its torch counterpart's overrides it, and raises ``ValueError`` for what torch cannot
        express.

        Args:
            state_dict: a copy of a state dict of this class, changed in place.
        """


class GroupValue:
    """A param group's hyperparameter (``group[key]``, or its ``index``-th element), read when
    a step makes its coefficients.

    It stands in the chain where the number would: the chain and its traced kernel then do
    not depend on the value, which torch's schedulers change every step (lr; OneCycleLR's
    betas); the value reaches the kernel as a coefficient, as a schedule's does. Its truth is
    the value's, so that a factory can leave out a part for a zero (``if weight_decay:``);
    :meth:`Optimizer.transform_for` rebuilds when that changes. ``lr`` has no truth: every
    step may change it, so no chain may depend on it.

    Args:
        group: the param group (a dict) to read; read at each call, not copied.
        key: the hyperparameter's key in ``group`` (``"lr"``, ``"betas"``, ...).
        index: for a tuple-valued hyperparameter (``betas``), the element to read; None: the value
            itself.
    """

    __slots__ = ("group", "index", "key")

    def __init__(self, group: dict[str, Any], key: str, index: int | None = None) -> None:
        self.group, self.key, self.index = group, key, index

    def __call__(self, step: int) -> float:
        """The value now, as a float (a schedule's call; ``step`` is not used).

        Args:
            step: the group's step count, as a schedule is called with; ignored.
        """
        v = self.group[self.key]
        return float(v if self.index is None else v[self.index])

    def __bool__(self) -> bool:
        if self.key == "lr":
            raise TypeError(
                "a transform factory must not branch on lr: it is data that any step may change "
                "(zero included); build the same chain for every lr"
            )
        return self(0) != 0.0

    def __repr__(self) -> str:
        return f"group[{self.key!r}]" + ("" if self.index is None else f"[{self.index}]")


def _tuple_getter(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """``operator.itemgetter`` for zero or one key, which would not return a tuple."""
    return lambda group: tuple(group[k] for k in keys)


def _is_number(v: Any) -> bool:
    """A real number (a 0-d tensor too), not a bool."""
    if isinstance(v, Tensor):
        return v.numel() == 1 and not v.is_complex() and v.dtype != torch.bool
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _frozen(v: Any) -> Any:
    """``v`` as a value that a later change to the group's object cannot alter (a list's
    elements, a tensor's value)."""
    if isinstance(v, list):
        return tuple(_frozen(x) for x in v)
    if isinstance(v, Tensor) and v.numel() == 1:
        return ("tensor", v.item())
    return v


def _structure(v: Any) -> Any:
    """What of a hyperparameter value shapes a chain: of a number, only whether it is zero."""
    if isinstance(v, tuple) and v[:1] == ("tensor",):
        return ("number", v[1] != 0)
    if isinstance(v, tuple):
        return tuple(_structure(x) for x in v)
    if _is_number(v):
        return ("number", v != 0)
    return v


def as_schedule(owner: str, lr: Any) -> Any:
    """``lr`` if it is a schedule that a state dict can hold, else a ``ValueError`` saying why.

    A group's schedule is saved with the optimizer's state dict, and checkpoints are loaded
    with ``torch.load(weights_only=True)`` (HF Trainer's default), which rebuilds registered
    :class:`adaptlr.schedules.Schedule` subclasses only: a function or a lambda is refused now,
    not at the first save.

    Args:
        owner: the name the error message starts with (the optimizer's class name).
        lr: the value given as ``lr``: an :class:`adaptlr.schedules.Schedule` whose fields pickle,
            or else refused.
    """
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
    error and steps it once per listing, and its for-loop, foreach and fused Adam then give
    three different results."""
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
