"""The fast path of one optimizer, as the object the adapter owns: its groups' plans, the
clock of its watched state dicts, and the fallback reasons it has warned about."""

from __future__ import annotations

import os
import sys
import warnings
from collections import defaultdict
from typing import Any

import torch
from torch import Tensor

from ..core.base import Transform
from ..stats import StatsRequest, StepStats
from . import backends
from .dtensor import has_dtensor, shard
from .gather import Gathered, gather
from .plan import Active, Plan, Unsupported, build_plan, make_active, still_valid
from .programs import program_for
from .step import run_step
from .trace import TraceError
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
        :func:`~.watched.watched`."""
        return watched(state, self.clock)

    def last_active(self, group: dict) -> Active | None:
        """The active set of ``group``'s last fused step, which :meth:`gather` compares the
        group's parameters with as it reads them; ``None`` where there is none to trust (no
        plan, a plan of another group at a reused id, DTensor shards)."""
        plan = self.plans.get(id(group))
        if plan is None or plan.group is not group or plan.dtensor:
            return None
        return plan.last

    def gather(self, group: dict) -> Gathered:
        """``group``'s parameters with a gradient, their gradients and addresses, read in one
        pass (see :func:`~.gather.gather`) against the group's last active set."""
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

    def step(
        self,
        optimizer: Any,
        group: dict,
        params: list[Tensor],
        transform: Transform,
        stats: StatsRequest | None = None,
        grads: Gathered | None = None,
    ) -> bool | StepStats:
        """Apply one step of ``optimizer``'s ``group`` on the fast path; ``False`` means "take
        the reference path".

        ``params`` are the group's parameters that have a gradient this step, in group order
        (``grads``: them, their gradients and addresses as :meth:`gather` found them).
        Nothing is changed when ``False`` is returned (after one warning per reason).
        Otherwise ``True``, or with ``stats`` the step's :class:`~adaptlr.stats.StepStats`,
        measured by the kernel itself.
        """
        try:
            prog = program_for(transform)
        except TraceError as exc:
            self._warn(optimizer, str(exc))
            return False
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
                return False
            try:
                plan = build_plan(optimizer.state, group, transform, prog, params, self.clock)
            except Unsupported as exc:
                plans.pop(id(group), None)
                self._warn(optimizer, str(exc))
                return False
            plans[id(group)] = plan
            # groups replaced (e.g. by load_state_dict) must not keep their flat buffers alive
            live = {id(g): g for g in optimizer.param_groups}
            for gid in [gid for gid, pl in plans.items() if live.get(gid) is not pl.group]:
                del plans[gid]
            act = make_active(plan, params, prog, locs)
            if act is None:  # cannot happen right after a build; never step on a bad table
                self._warn(optimizer, "internal: a fresh plan does not fit its parameters")
                return False
            plan.remember(act)
        try:
            measured = run_step(
                plan, act, params, transform, prog, group["applied_steps"], stats, grads
            )
        except Unsupported as exc:
            self._warn(optimizer, str(exc))
            return False
        return measured if measured is not None else True
