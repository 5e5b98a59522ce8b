"""The fast path of one optimizer, as the object the adapter owns: its groups' plans, the
clock of its watched state dicts, and the fallback reasons it has warned about."""

from __future__ import annotations

import os
import sys
import warnings
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..core.base import Transform
from ..stats import StatsRequest, StepStats
from . import backends
from .dtensor import has_dtensor, shard
from .gather import Gathered, gather
from .launch import read_back
from .plan import Active, Plan, Unsupported, build_plan, make_active, still_valid
from .programs import program_for
from .step import PendingSums, partial_sums, run_step
from .trace import Program, TraceError
from .watched import Clock, watched


class FusedFallbackWarning(UserWarning):
    """The fused fast path was not taken for a group; the reference path ran instead."""


# adaptlr's and torch's own files: between the user's ``optimizer.step()`` and a warning lie
# torch's step hooks and ``no_grad`` wrapper, and adaptlr's step
_INTERNAL = tuple(
    os.path.dirname(os.path.abspath(f)) + os.sep
    for f in (os.path.dirname(__file__), torch.__file__)
)


def user_stacklevel() -> int:
    """``stacklevel`` naming the first frame outside adaptlr and torch: the user's line."""
    frame, level = sys._getframe(2), 2  # (2: the caller of the function that warns)
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    return level


def _backend_ok(device_types: set[str]) -> str | None:
    """Why the kernels for tensors on ``device_types`` cannot run here (``None``: they can)."""
    if backends.triton_on_cpu() or "cuda" in device_types:
        if not backends.triton_available():
            return "triton is not installed"
    if "cpu" in device_types and not backends.triton_on_cpu():
        if not backends.numba_available():
            return "numba, a dependency of adaptlr, is not installed (pip install numba)"
        if backends.numba_jit_disabled():
            return "NUMBA_DISABLE_JIT is set: numba runs functions as Python"
    return None


class FastPath:
    """The fused fast path of one optimizer: one fused pass over flat buffers per (device,
    dtype) of a group.

    It keeps each group's :class:`~.plan.Plan` (by the group's id, with the group itself),
    the :class:`~.watched.Clock` that the optimizer's per-parameter state dicts tick, and the
    fallback reasons already warned about (one :class:`FusedFallbackWarning` per reason).
    A copy (``copy.deepcopy``, pickle) keeps the clock, which the copied state dicts tick; the
    plans are not kept: the copy's first step rebuilds them from its state entries.
    """

    def __init__(self) -> None:
        self.plans: dict[int, Plan] = {}
        self.clock = Clock()
        self.warned: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {"clock": self.clock}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.plans = {}
        self.clock = state["clock"]
        self.warned = set()

    def watched(self, state: Any) -> defaultdict:
        """``state`` (an ``optimizer.state``) whose per-parameter dicts tick this clock; see
        :func:`~.watched.watched`.

        Args:
            state: an optimizer's ``state``: a mapping from parameters to their state dicts.
        """
        return watched(state, self.clock)

    def last_active(self, group: dict) -> Active | None:
        """The active set of ``group``'s last fused step, which :meth:`gather` compares the
        group's parameters with as it reads them; ``None`` where there is none to trust (no
        plan, a plan of another group at a reused id, DTensor shards).

        Args:
            group: a param group of the optimizer this fast path belongs to.
        """
        plan = self.plans.get(id(group))
        if plan is None or plan.group is not group or plan.dtensor:
            return None
        return plan.last

    def gather(self, group: dict) -> Gathered:
        """``group``'s parameters with a gradient, their gradients and addresses, read in one
        pass (see :func:`~.gather.gather`) against the group's last active set.

        Args:
            group: a param group of the optimizer this fast path belongs to.
        """
        return gather(group["params"], self.last_active(group))

    def _warn(self, optimizer: Any, reason: str) -> None:
        if reason in self.warned:
            return
        self.warned.add(reason)
        warnings.warn(
            f"{type(optimizer).__name__}: fused step not available ({reason}); "
            f"using the reference path (pass fused=False to silence this)",
            FusedFallbackWarning,
            stacklevel=user_stacklevel(),
        )

    def _plan_for(
        self,
        optimizer: Any,
        group: dict,
        params: list[Tensor],
        transform: Transform,
        grads: Gathered | None,
    ) -> tuple[Plan, Active, Program] | None:
        """``group``'s plan and the active set of ``params`` (built or rebuilt where needed),
        and the chain's program; ``None`` (after one warning per reason) where the fast path
        cannot take the group."""
        try:
            prog = program_for(transform)
        except TraceError as exc:
            self._warn(optimizer, str(exc))
            return None
        plans = self.plans
        plan = plans.get(id(group))
        usable = (
            plan is not None
            and plan.group is group
            and plan.state is optimizer.state
            and plan.keys == transform.state_keys
        )
        act = plan.find_active(params) if usable else None
        # FSDP2's DTensor parameters: kernels run on each process's local shard. A cached set
        # of plain parameters is still plain (the plan holds those very tensors): no pass over
        # types.
        if act is not None and not plan.dtensor:
            locs = params
        else:
            locs = [shard(p) for p in params] if has_dtensor(params) else params
        if usable:
            found = grads if grads is not None and grads.dense and not plan.dtensor else None
            if act is not None and not still_valid(plan, act, locs, found):
                act = None  # e.g. another group added state, or a parameter's data moved
            if act is None and all(id(p) in plan.where for p in params):
                act = make_active(plan, params, prog, locs)
                if act is not None and still_valid(plan, act, locs):
                    plan.remember(act)
                else:
                    act = None
        if act is None:
            reason = _backend_ok({p.device.type for p in locs})
            if reason:
                self._warn(optimizer, reason)
                return None
            try:
                plan = build_plan(optimizer.state, group, transform, prog, params, self.clock)
            except Unsupported as exc:
                plans.pop(id(group), None)
                self._warn(optimizer, str(exc))
                return None
            plans[id(group)] = plan
            # groups replaced (e.g. by load_state_dict) must not keep their flat buffers alive
            live = {id(g): g for g in optimizer.param_groups}
            for gid in [gid for gid, pl in plans.items() if live.get(gid) is not pl.group]:
                del plans[gid]
            act = make_active(plan, params, prog, locs)
            if act is None:  # cannot happen right after a build; never step on a bad table
                self._warn(optimizer, "internal: a fresh plan does not fit its parameters")
                return None
            plan.remember(act)
        assert plan is not None
        return plan, act, prog

    def step(
        self,
        optimizer: Any,
        group: dict,
        params: list[Tensor],
        transform: Transform,
        stats: StatsRequest | None = None,
        grads: Gathered | None = None,
        shared: Mapping[str, float] | None = None,
        sums: Mapping[int, Mapping[str, float]] | None = None,
    ) -> bool | StepStats:
        """Apply one step of ``optimizer``'s ``group`` on the fast path; ``False`` means "take
        the reference path".

        ``params`` are the group's parameters that have a gradient this step, in group order
        (``grads``: them, their gradients and addresses as :meth:`gather` found them).
        ``shared``: the scalars the chain keeps once per group (:attr:`Part.shared`), as the
        group holds them; their new values are written to ``group`` after the step. ``sums``:
        by slot, an optimizer's totals over all its groups (:meth:`partial_sums`).
        Nothing is changed when ``False`` is returned (after one warning per reason).
        Otherwise ``True``, or with ``stats`` the step's :class:`~adaptlr.stats.StepStats`,
        measured by the kernel itself.

        Args:
            optimizer: the adaptlr optimizer stepping (named in warnings).
            group: the param group to step.
            params: its parameters that have a gradient this step, in group order.
            transform: the chain that updates the group.
            stats: what to measure of the step; None: nothing.
            grads: what :meth:`gather` found for ``params``; None: gathered here.
            shared: the group's shared scalars; None: none.
            sums: by slot, the optimizer-wide totals; None: none.
        """
        found = self._plan_for(optimizer, group, params, transform, grads)
        if found is None:
            return False
        plan, act, prog = found
        new_shared = dict(shared) if shared else None
        try:
            measured = run_step(
                plan, act, params, transform, prog, group["applied_steps"], stats, grads,
                new_shared, sums,
            )  # fmt: skip
        except Unsupported as exc:
            self._warn(optimizer, str(exc))
            return False
        if new_shared:
            group.update(new_shared)
        return measured if measured is not None else True

    def partial_sums(
        self,
        optimizer: Any,
        entries: list[tuple[dict, list[Tensor], Transform, Gathered | None, Mapping[str, float]]],
    ) -> list[dict[str, float] | None]:
        """Each group's share of the sums that run over every group of the optimizer
        (:attr:`Transform.optimizer_sums_slot`; D-Adaptation's, Prodigy's), by the reduction
        kernels, as :meth:`Transform.partial_sums` computes it; every share read back in one
        transfer. ``entries``: per group, the group, its parameters with a gradient, its
        chain, what :meth:`gather` found and its shared scalars. ``None`` for a group (after
        one warning per reason) that the fast path cannot take. Nothing is changed but the
        state's layout (the group's flat plan, as a fused step makes it).

        Args:
            optimizer: the adaptlr optimizer stepping (named in warnings).
            entries: per param group, ``(group, params with a gradient, chain, what
                :meth:`gather` found or None, shared scalars)``.
        """
        pending: list[PendingSums | None] = []
        for group, params, transform, grads, shared in entries:
            found = self._plan_for(optimizer, group, params, transform, grads)
            if found is None:
                pending.append(None)
                continue
            plan, act, prog = found
            try:
                pending.append(
                    partial_sums(
                        plan, act, params, transform, prog, group["applied_steps"], grads, shared
                    )
                )
            except Unsupported as exc:
                self._warn(optimizer, str(exc))
                pending.append(None)
        host = iter(read_back([v for p in pending if p is not None for v in p.values]))
        return [None if p is None else p.result([next(host) for _ in p.values]) for p in pending]
