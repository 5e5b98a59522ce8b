"""Fast paths: one fused pass over flat buffers per (device, dtype) group.

The kernels are *generated* from the chain: :mod:`.trace` runs every part's ``apply`` on
symbols, :mod:`.codegen` writes a numba kernel (CPU, ``prange`` over chunks) and a Triton
kernel (CUDA; on the CPU under ``TRITON_INTERPRET=1`` for tests) from the traced graph, and
:mod:`.flat` keeps each group's state in flat buffers whose views are the usual
``optimizer.state[p][key]`` entries. No optimizer's formula is written here.

:func:`fused_step` is what :meth:`adaptlr.Optimizer.step` calls for each group unless the group
has ``fused=False``. It returns ``False`` (the reference path then runs) where the fast path
cannot hold, with one warning per optimizer and reason: numba/Triton missing,
parameters whose elements do not fill one block of memory (dense layouts such as
``channels_last`` are stepped in place), a part whose ``apply`` cannot be traced.

Under ``torch.compile`` the whole step is one opaque call (:func:`opaque_to_compile`): dynamo
neither traces it nor runs numba's Python under its frame hook.

bf16/fp16 parameters are stepped with their state (float32 by default, or the group's
``state_dtype``) rounding exactly as the reference path's torch operations do; DTensor
parameters (FSDP2) are stepped on each process's local shard, their state entries DTensors
over the flat buffers, a global norm all-reduced over their mesh.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from torch import Tensor

from ..core.base import Transform
from ..stats import StatsRequest, StepStats
from . import backends, flat
from .trace import Program, TraceError, trace

__all__ = [
    "fused_step", "program_for", "use_triton_on_cpu", "FusedFallbackWarning", "opaque_to_compile",
]  # fmt: skip


class FusedFallbackWarning(UserWarning):
    """The fused fast path was not taken for a group; the reference path ran instead."""


_programs: dict[str, Program | str] = {}
#: one Program object per distinct program, so that the compiled kernels and flat plans keyed
#: on it are reused when only a coefficient (e.g. an lr written by a scheduler) changed
_by_signature: dict[str, Program] = {}


#: the last transforms asked for, by identity: their text is not rebuilt on every step
_by_object: dict[int, tuple[Transform, Program | str]] = {}


def program_for(transform: Transform) -> Program:
    """The traced program of ``transform`` (cached on its text; raises :class:`TraceError`)."""
    hit = _by_object.get(id(transform))
    if hit is not None and hit[0] is transform:
        prog = hit[1]
        if isinstance(prog, str):
            raise TraceError(prog)
        return prog
    if len(_by_object) > 256:
        _by_object.clear()
    key = repr(transform)
    prog = _programs.get(key)
    if prog is None:
        if len(_programs) > 256:  # a scheduler makes a new text every step: stay bounded
            _programs.clear()
        try:
            prog = trace(transform)
        except TraceError as exc:
            _programs[key] = str(exc)
            raise
        prog = _by_signature.setdefault(prog.signature(), prog)
        _programs[key] = prog
    _by_object[id(transform)] = (transform, prog)  # holding it keeps its id from being reused
    if isinstance(prog, str):
        raise TraceError(prog)
    return prog


@contextlib.contextmanager
def use_triton_on_cpu() -> Iterator[None]:
    """Run the Triton kernels on CPU tensors (needs ``TRITON_INTERPRET=1``; for tests)."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("use_triton_on_cpu: set TRITON_INTERPRET=1 before importing triton")
    old = flat._FORCE_TRITON[0]
    flat._FORCE_TRITON[0] = True
    try:
        yield
    finally:
        flat._FORCE_TRITON[0] = old


#: why torch.compile runs an adaptlr step between its graphs (dynamo shows it, e.g. under
#: fullgraph=True, where it is the error)
OPAQUE_REASON = (
    "adaptlr: an optimizer step runs outside torch.compile's graphs, as one call (one graph "
    "break, as for torch.optim's fused Adam): its fast path is a generated numba/Triton kernel "
    "on raw tensor addresses, and its reference path (fused=False) computes each step's "
    "coefficients in Python from the tensors' step counts. With fullgraph=True, compile the "
    "forward and backward only and call optimizer.step() outside the compiled function"
)

_Step = TypeVar("_Step", bound=Callable[..., Any])


def opaque_to_compile(step: _Step) -> _Step:
    """``Optimizer.step`` that torch.compile (dynamo) calls as one opaque function.

    Dynamo must not run the step: a graph break leaves its frame hook on for what the breaking
    call runs, so numba's own Python (its compiler when a kernel is compiled or loaded from disk,
    its thread-pool launch) was captured and rewritten by dynamo; and tracing the step itself
    reads addresses, numpy tables and per-tensor step counts on the host. The reference path is
    not traced either: its coefficients are Python numbers of the step count (recompiles, and
    data-dependent branches fullgraph refuses), and dynamo shows the traced step every group
    with ``capturable=True``, which adaptlr refuses. The step then runs with dynamo turned off
    (``torch.compiler.disable``), exactly as in eager mode. A closure is called first, where
    dynamo can trace it, as the step would call it. Nothing here imports dynamo (over a second
    of imports) before torch.compile has.
    """

    @functools.wraps(step)
    def wrapper(self: Any, closure: Callable[[], Any] | None = None) -> Any:
        if not torch.compiler.is_compiling():
            return step(self, closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        _outside_graphs(step, self)
        return loss

    return wrapper  # type: ignore[return-value]


def _outside_graphs(step: Callable[..., Any], optimizer: Any) -> None:
    # Marked as torch.compiler.disable marks what it wraps, so that dynamo stops at this call
    # with adaptlr's reason (the error fullgraph=True gives); what runs it then is plain Python,
    # where dynamo is imported and the step can be wrapped for real.
    opaque = _OPAQUE.get(step)
    if opaque is None:
        opaque = _OPAQUE[step] = torch.compiler.disable(step, reason=OPAQUE_REASON)
    opaque(optimizer)


_outside_graphs._torchdynamo_disable = True  # type: ignore[attr-defined]
_outside_graphs._torchdynamo_disable_msg = OPAQUE_REASON  # type: ignore[attr-defined]
#: each step function with dynamo turned off, made the first time a compiled caller reaches it
_OPAQUE: dict[Callable[..., Any], Callable[..., Any]] = {}


# adaptlr's and torch's own files: between the user's ``optimizer.step()`` and a warning lie
# torch's step hooks and ``no_grad`` wrapper, and adaptlr's step
_INTERNAL = tuple(
    os.path.dirname(os.path.abspath(f)) + os.sep
    for f in (os.path.dirname(__file__), torch.__file__)
)


def _user_stacklevel() -> int:
    """``stacklevel`` naming the first frame outside adaptlr and torch: the user's line."""
    frame, level = sys._getframe(2), 2  # (2: the caller of the function that warns)
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    return level


def _warn(optimizer: Any, reason: str) -> None:
    seen = optimizer.__dict__.setdefault("_adaptlr_warned", set())
    if reason in seen:
        return
    seen.add(reason)
    warnings.warn(
        f"{type(optimizer).__name__}: fused step not available ({reason}); "
        f"using the reference path (pass fused=False to silence this)",
        FusedFallbackWarning,
        stacklevel=_user_stacklevel(),
    )


def _backend_ok(device_types: set[str]) -> str | None:
    if flat._force_triton() or "cuda" in device_types:
        if not backends.triton_available():
            return "triton is not installed"
    if "cpu" in device_types and not flat._force_triton():
        if not backends.numba_available():
            return "numba, a dependency of adaptlr, is not installed (pip install numba)"
        if backends.numba_jit_disabled():
            return "NUMBA_DISABLE_JIT is set: numba runs functions as Python"
    return None


def last_active(optimizer: Any, group: dict) -> flat.Active | None:
    """The active set of ``group``'s last fused step, which :func:`flat.gather` can compare
    the group's parameters with as it reads them; ``None`` where there is none to trust (no
    plan, a plan of another group at a reused id, DTensor shards)."""
    plan = optimizer.__dict__.get("_adaptlr_plans", {}).get(id(group))
    if plan is None or plan.group is not group or plan.dtensor:
        return None
    return plan.last


def fused_step(
    optimizer: Any,
    group: dict,
    params: list[Tensor],
    transform: Transform,
    stats: StatsRequest | None = None,
    grads: flat.Gathered | None = None,
) -> bool | StepStats:
    """Apply one step of ``group`` on the fast path; ``False`` means "take the reference path".

    ``params`` are the group's parameters that have a gradient this step, in group order
    (``grads``: them, their gradients and addresses as :func:`flat.gather` found them).
    Nothing is changed when ``False`` is returned. Otherwise ``True``, or with ``stats`` the
    step's :class:`~adaptlr.stats.StepStats`, measured by the kernel itself.
    """
    try:
        prog = program_for(transform)
    except TraceError as exc:
        _warn(optimizer, str(exc))
        return False
    plans = optimizer.__dict__.setdefault("_adaptlr_plans", {})
    plan = plans.get(id(group))
    usable = (
        plan is not None
        and plan.group is group
        and plan.state is optimizer.state
        and plan.keys == transform.state_keys
    )
    act = plan.find_active(params) if usable else None
    # FSDP2's DTensor parameters: kernels run on each process's local shard. A cached set of
    # plain parameters is still plain (the plan holds those very tensors): no pass over types.
    if act is not None and not plan.dtensor:
        locs = params
    else:
        locs = [flat.shard(p) for p in params] if flat.has_dtensor(params) else params
    if usable:
        found = grads if grads is not None and grads.dense and not plan.dtensor else None
        if act is not None and not flat.still_valid(plan, act, locs, found):
            act = None  # e.g. another group added state, or a parameter's data moved
        if act is None and all(id(p) in plan.where for p in params):
            act = flat.make_active(plan, params, prog, locs)
            if act is not None and flat.still_valid(plan, act, locs):
                plan.remember(act)
            else:
                act = None
    if act is None:
        reason = _backend_ok({p.device.type for p in locs})
        if reason:
            _warn(optimizer, reason)
            return False
        try:
            plan = flat.build_plan(optimizer, group, transform, prog, params)
        except flat.Unsupported as exc:
            plans.pop(id(group), None)
            _warn(optimizer, str(exc))
            return False
        plans[id(group)] = plan
        # groups replaced (e.g. by load_state_dict) must not keep their flat buffers alive
        live = {id(g): g for g in optimizer.param_groups}
        for gid in [gid for gid, pl in plans.items() if live.get(gid) is not pl.group]:
            del plans[gid]
        act = flat.make_active(plan, params, prog, locs)
        if act is None:  # cannot happen right after a build; never step on a bad table
            _warn(optimizer, "internal: a fresh plan does not fit its parameters")
            return False
        plan.remember(act)
    try:
        measured = flat.run_step(
            optimizer, plan, act, params, transform, prog, group["applied_steps"], stats, grads
        )
    except flat.Unsupported as exc:
        _warn(optimizer, str(exc))
        return False
    return measured if measured is not None else True
