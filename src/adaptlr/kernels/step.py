"""One fused step of a group: its coefficient rows, then one kernel launch per segment (plus
one per global norm), and only then the step counts and scalar state written back."""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
from torch import Tensor

from ..core.base import Transform, all_reduce_sum
from ..stats import StatsRequest, StepStats, next_serial, stride_for
from . import launch
from .dtensor import shard
from .gather import Gathered
from .layout import in_layout
from .measure import SegmentStats, launch_stats, step_stats
from .plan import Active, Plan, Unsupported
from .trace import Program


def coefficient_rows(
    transform: Transform,
    prog: Program,
    keys: np.ndarray,
    scalar_names: list[str],
    count: int,
    norms: dict[int, float],
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """The coefficient table for each distinct (step, scalars…) row of ``keys``.

    Returns the table (rows x ``len(prog.coef_keys)``) and, per row, the new scalar state.
    """
    column = prog.coef_columns
    table = np.zeros((len(keys), max(len(prog.coef_keys), 1)), dtype=np.float64)
    new_scalars: list[dict[str, float]] = []
    for r, row in enumerate(keys):
        scal_now = dict(zip(scalar_names, row[1:].tolist()))
        coefs, new = transform.coefficients(int(row[0]), count, scal_now, norms)
        for si, c in enumerate(coefs):
            for name, value in c.items():
                j = column.get((si, name))
                if j is None:
                    part = transform.slots[si].part
                    raise Unsupported(f"{part!r} returned an untraced coefficient {name!r}")
                table[r, j] = float(value)
            if len(c) != prog.coef_counts[si]:
                part = transform.slots[si].part
                raise Unsupported(f"{part!r} returned a different set of coefficients")
        new_scalars.append({k: float(v) for k, v in new.items()})
    return table, new_scalars


def _rows(cols: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (step, scalars…) rows of per-tensor columns, and each tensor's row."""
    if len(cols) == 1:  # steps only (no scalar state), the usual case all at one step
        col = cols[0]
        if (col == col[0]).all():
            return np.full((1, 1), col[0], dtype=np.float64), np.zeros(len(col), dtype=np.int64)
    keys = np.stack(cols, axis=1).astype(np.float64)
    if (keys == keys[0]).all():  # the usual case: every tensor at the same step
        return keys[:1], np.zeros(len(keys), dtype=np.int64)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1).astype(np.int64)


def run_step(
    plan: Plan,
    act: Active,
    params: list[Tensor],
    transform: Transform,
    prog: Program,
    count: int,
    stats: StatsRequest | None = None,
    given: Gathered | None = None,
) -> StepStats | None:
    """Update ``params`` and their state in place: one kernel launch per bucket (plus one
    per global norm). With ``stats``, the kernel also measures the step (see
    :mod:`adaptlr.stats`), and that is returned."""
    # ``given``: the gradients (and their addresses) as Optimizer.step gathered them
    # a gradient laid out otherwise than its parameter (assigned by hand), or a lazy view
    # (x.conj()), is read through a copy laid out as the parameter
    gptr_all = None
    if given is not None and given.dense and not plan.dtensor:
        grads = given.grads  # laid out as their parameters: only a lazy view is copied
        gptr_all = np.array(given.gptrs, dtype=np.int64)
        redo: Any = act.lazy
    else:
        grads = given.grads if given is not None else list(map(operator.attrgetter("grad"), params))
        if plan.dtensor:
            grads = [shard(g) for g in grads]
        redo = act.lazy
        if act.strided or not all(map(Tensor.is_contiguous, grads)):
            redo = range(len(grads))
    if redo:
        want = dict(act.strided)
        copies = {i: h for i in redo if (h := in_layout(grads[i], want.get(i))) is not grads[i]}
        if copies:
            grads = list(grads)
            for i, h in copies.items():
                grads[i] = h
            if gptr_all is not None:
                gptr_all[list(copies)] = [h.data_ptr() for h in copies.values()]
    if gptr_all is None:
        gptr_all = np.fromiter(map(Tensor.data_ptr, grads), dtype=np.int64, count=len(grads))
    scalar_names = [k for k in plan.keys if k != "step" and k not in prog.buffer_keys]
    work = []
    for seg in act.segments:
        b = seg.bucket
        local = seg.local
        steps = b.steps.numpy()
        new_steps = steps[local] + 1
        uniq, inverse = _rows([new_steps] + [b.scalars[k].numpy()[local] for k in scalar_names])
        gptr = gptr_all if seg.covers_all else gptr_all[seg.pos]
        work.append((seg, b, local, new_steps, uniq, inverse, gptr))

    # global norms first: one reduction per part that needs one, over every bucket
    norms: dict[int, float] = {}
    for k, (si, _) in enumerate(prog.norms):
        total = 0.0
        for seg, b, _local, _ns, uniq, inverse, gptr in work:
            table, _ = coefficient_rows(transform, prog, uniq, scalar_names, count, norms)
            total += launch.run_kernel(prog, b, seg, table, inverse, gptr, f"norm{k}")
        if plan.norm_group is not None:  # DTensor shards: the sum over every process
            total = all_reduce_sum(total, plan.norm_group)
        norms[si] = math.sqrt(transform.slots[si].part.reduce_sq(total))

    launches = []
    for seg, b, local, new_steps, uniq, inverse, gptr in work:
        table, new_scal = coefficient_rows(transform, prog, uniq, scalar_names, count, norms)
        launches.append((seg, b, local, new_steps, table, new_scal, inverse, gptr))
    stride, serial = 0, 0
    if stats is not None:
        serial = next_serial()
        if act.elements < 0:
            act.elements = sum(int(s.bucket.numels[s.local].sum()) for s in act.segments)
        stride = stride_for(act.elements, stats.sample)
    measured: list[SegmentStats] = []
    # every check passed and every coefficient is known: only now does anything change
    for seg, b, local, new_steps, table, new_scal, inverse, gptr in launches:
        if stats is None:
            launch.run_kernel(prog, b, seg, table, inverse, gptr, "step")
        else:
            measured.append(
                launch_stats(prog, b, seg, table, inverse, gptr, stride, serial, plan.measured)
            )
        b.steps.numpy()[local] = new_steps
        for k in scalar_names:
            values = np.array([row[k] for row in new_scal], dtype=np.float64)
            b.scalars[k].numpy()[local] = values[inverse]
    del grads  # (kept alive until the kernels ran)
    if stats is None:
        return None
    plan.measured = serial
    return step_stats(act, measured, stride, stats, serial)
