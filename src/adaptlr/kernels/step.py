"""One fused step of a group: its reductions (a pass per part with sums, whose totals come
back once), its coefficient rows, then one kernel launch per segment, and only
then the step counts and scalar state written back."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from ..core.base import Transform, all_reduce_many
from ..stats import StatsRequest, StepStats, next_serial, stride_for
from . import launch
from .dtensor import shard
from .gather import Gathered
from .layout import in_layout
from .measure import SegmentStats, launch_stats, step_stats
from .plan import Active, Plan, Segment, Unsupported
from .trace import Program, Reduction


@dataclass
class Found:
    """What a step's reductions found so far (see :class:`~.trace.Reduction`)."""

    #: per part with sums, its totals over the group (or the optimizer), by name
    sums: dict[int, dict[str, float]] = field(default_factory=dict)
    #: the sums taken per tensor (scope ``"tensor"``), as ``(slot, name)``
    own_names: list[tuple[int, str]] = field(default_factory=list)
    #: per segment, each tensor's own sums: a column per ``own_names`` entry
    own: list[np.ndarray] = field(default_factory=list)


def coefficient_rows(
    transform: Transform,
    prog: Program,
    keys: np.ndarray,
    scalar_names: list[str],
    count: int,
    found: Found,
    shared: Mapping[str, float] | None = None,
    upto: int | None = None,
    pre: bool = False,
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """The coefficient table for each distinct (step, scalars…, own sums…) row of ``keys``
    (own sums: a column per ``found.own_names``), with ``shared``, the group's scalars.

    With ``upto``, only what the reduction of that slot reads: the slots before it, and with
    ``pre`` its part's first call (``ctx.sums`` ``None``, in ``prog.pre_keys``' columns).
    Returns the table (rows x ``prog.ncoef``) and, per row, the new scalar state (the shared
    scalars by name).
    """
    column, pre_column = prog.coef_columns, prog.pre_columns
    table = np.zeros((len(keys), prog.ncoef), dtype=np.float64)
    new_scalars: list[dict[str, float]] = []
    ns = len(scalar_names)
    slots = transform.slots
    last = len(slots) if upto is None else upto + int(pre)
    for r, row in enumerate(keys):
        values = row.tolist()
        scal_now = dict(zip(scalar_names, values[1 : 1 + ns]))
        if shared:
            scal_now.update(shared)
        own: dict[int, dict[str, float]] = {}
        for (si, name), v in zip(found.own_names, values[1 + ns :]):
            own.setdefault(si, {})[name] = v
        new: dict[str, float] = {}
        for si in range(last):
            part = slots[si].part
            first = si == upto  # (only with pre)
            sums = None
            if part.sums and not first:
                sums = {**found.sums.get(si, {}), **own.get(si, {})}
            c, ns_ = transform.slot_coefficients(si, int(values[0]), count, scal_now, sums)
            where, counts = (pre_column, prog.pre_counts) if first else (column, prog.coef_counts)
            for name, value in c.items():
                j = where.get((si, name))
                if j is None:
                    raise Unsupported(f"{part!r} returned an untraced coefficient {name!r}")
                table[r, j] = float(value)
            if len(c) != counts[si]:
                raise Unsupported(f"{part!r} returned a different set of coefficients")
            if not first:
                new.update(ns_)
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


@dataclass
class _Work:
    """One segment's share of a step: what every pass over it needs."""

    seg: Segment
    local: np.ndarray
    new_steps: np.ndarray
    #: the (step, scalars…) columns that make the coefficient rows
    cols: list[np.ndarray]
    gptr: np.ndarray

    def rows(self, own: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The distinct coefficient rows, with each tensor's own sums found so far."""
        if own is None or own.shape[1] == 0:
            return _rows(self.cols)
        return _rows(self.cols + [own[:, j] for j in range(own.shape[1])])


def _prepare(
    plan: Plan, act: Active, params: list[Tensor], given: Gathered | None, scalar_names: list[str]
) -> tuple[list[Tensor], list[_Work]]:
    """The step's gradients (laid out as their parameters) and each segment's work."""
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
    work = []
    for seg in act.segments:
        b = seg.bucket
        local = seg.local
        new_steps = b.steps.numpy()[local] + 1
        cols = [new_steps] + [b.scalars[k].numpy()[local] for k in scalar_names]
        gptr = gptr_all if seg.covers_all else gptr_all[seg.pos]
        work.append(_Work(seg, local, new_steps, cols, gptr))
    return grads, work


def _launch_reduction(
    k: int,
    transform: Transform,
    prog: Program,
    work: list[_Work],
    scalar_names: list[str],
    count: int,
    shared: Mapping[str, float] | None,
    found: Found,
) -> list[np.ndarray | Tensor]:
    """Run reduction ``k``'s kernel over every segment: each segment's totals, where the
    kernel left them (see :func:`.launch.reduction_totals`)."""
    red = prog.reductions[k]
    out = []
    for i, w in enumerate(work):
        uniq, inverse = w.rows(found.own[i] if found.own_names else None)
        table, _ = coefficient_rows(
            transform, prog, uniq, scalar_names, count, found, shared, red.slot, True
        )
        chunks = launch.run_kernel(prog, w.seg.bucket, w.seg, table, inverse, w.gptr, f"reduce{k}")
        out.append(launch.reduction_totals(w.seg, chunks, red.per_tensor))  # type: ignore[arg-type]
    return out


def _totals(plan: Plan, nt: int, host: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each term's total over the group (of ``nt`` terms), and per segment its tensors' own
    sums, from the segments' totals (over every process for DTensor shards)."""
    if plan.norm_group is not None:  # DTensor shards: the sums over every process
        flat = all_reduce_many(np.concatenate(host).tolist(), plan.norm_group)
        at = np.cumsum([0] + [len(h) for h in host]).tolist()
        host = [np.array(flat[at[i] : at[i + 1]], dtype=np.float64) for i in range(len(host))]
    total = np.sum([h[:nt] for h in host], axis=0) if host else np.zeros(nt)
    return total, [h[nt:] for h in host]


def _reduce(
    k: int,
    plan: Plan,
    transform: Transform,
    prog: Program,
    work: list[_Work],
    scalar_names: list[str],
    count: int,
    shared: Mapping[str, float] | None,
    found: Found,
    given: Mapping[int, Mapping[str, float]] | None,
) -> None:
    """Run reduction ``k`` over every segment and record what it found in ``found``, as
    :meth:`Transform.update` makes its sums (``given``: an optimizer's totals over
    all its groups, by slot)."""
    red = prog.reductions[k]
    si = red.slot
    part = transform.slots[si].part
    if not part.needs_sums(shared or {}):
        # this phase reads no sum (SWATS after its switch): no pass, every sum 0
        found.sums[si] = {n: 0.0 for n, scope in zip(red.names, red.scopes) if scope != "tensor"}
        if red.per_tensor:
            found.own_names += [(si, red.names[j]) for j in red.per_tensor]
            zeros = [np.zeros((len(w.local), len(red.per_tensor))) for w in work]
            found.own = [np.hstack([a, z]) for a, z in zip(found.own, zeros)] or zeros
        return
    everywhere = {n for n, scope in zip(red.names, red.scopes) if scope == "optimizer"}
    if given is not None and si in given and len(everywhere) == len(red.names):
        # every sum of the part is the optimizer's, given: no pass over this group's elements
        found.sums[si] = {**part.reduce_sums({}), **given[si]}
        return
    values = _launch_reduction(k, transform, prog, work, scalar_names, count, shared, found)
    host = launch.read_back(values)  # the reduction's one host synchronisation
    total, own = _totals(plan, len(red.names), host)
    wide = {n: float(v) for n, v, scope in zip(red.names, total, red.scopes) if scope != "tensor"}
    if given is not None and si in given:
        # the optimizer's totals over all its groups and processes
        mine = {n: v for n, v in wide.items() if n not in everywhere}
        wide = {**part.reduce_sums(mine), **given[si]}
    else:
        wide = part.reduce_sums(wide)
    found.sums[si] = wide
    per_tensor = red.per_tensor
    if per_tensor:
        found.own_names += [(si, red.names[j]) for j in per_tensor]
        mine_per_seg = [m.reshape(-1, len(per_tensor)) for m in own]
        if found.own:
            found.own = [np.hstack([a, m]) for a, m in zip(found.own, mine_per_seg)]
        else:
            found.own = mine_per_seg


def _changes(
    launches: list[tuple[Any, Any, list[dict[str, float]], Any]], shared: Mapping[str, float]
) -> bool:
    """Whether a row's new shared values differ from the group's before the step."""
    return any(
        row.get(k, v) != v for _, _, rows, _ in launches for row in rows for k, v in shared.items()
    )


def _sequential_rows(
    transform: Transform,
    prog: Program,
    work: list[_Work],
    scalar_names: list[str],
    count: int,
    found: Found,
    shared: Mapping[str, float] | None,
) -> list[tuple[_Work, np.ndarray, list[dict[str, float]], np.ndarray]]:
    """Each segment's coefficient table with a row per tensor, made in the group's order,
    each row seeing the shared values the rows before it left (:attr:`Part.sequential`)."""
    now = dict(shared or {})
    keys = []
    for i, w in enumerate(work):
        own = found.own[i] if found.own_names else None
        cols = w.cols + ([own[:, j] for j in range(own.shape[1])] if own is not None else [])
        keys.append(np.stack(cols, axis=1).astype(np.float64))
    order = sorted((pos, i, r) for i, w in enumerate(work) for r, pos in enumerate(w.seg.pos))
    tables = [np.zeros((len(k), prog.ncoef), dtype=np.float64) for k in keys]
    news: list[list[dict[str, float]]] = [[{} for _ in k] for k in keys]
    for _, i, r in order:
        table, new = coefficient_rows(
            transform, prog, keys[i][r : r + 1], scalar_names, count, found, now
        )
        tables[i][r] = table[0]
        news[i][r] = new[0]
        now.update((k, v) for k, v in new[0].items() if k in now)
    return [
        (w, tables[i], news[i], np.arange(len(keys[i]), dtype=np.int64)) for i, w in enumerate(work)
    ]


@dataclass
class PendingSums:
    """A group's share of the sums that run over every group of the optimizer, launched but
    not read yet: an optimizer reads every group's share back in one transfer
    (:func:`.launch.read_back`), then :meth:`result` makes it."""

    plan: Plan
    red: Reduction
    values: list[np.ndarray | Tensor]

    def result(self, host: list[np.ndarray]) -> dict[str, float]:
        """The share by name (``host``: :attr:`values` read back), not yet added across
        processes, as :meth:`Transform.partial_sums` returns it."""
        red = self.red
        total, _ = _totals(self.plan, len(red.names), host)
        return {n: float(v) for n, v, sc in zip(red.names, total, red.scopes) if sc == "optimizer"}


def partial_sums(
    plan: Plan,
    act: Active,
    params: list[Tensor],
    transform: Transform,
    prog: Program,
    count: int,
    given: Gathered | None = None,
    shared: Mapping[str, float] | None = None,
) -> PendingSums:
    """This group's share of the sums of the part whose sums run over every group
    (:attr:`Transform.optimizer_sums_slot`), by the reduction kernels (the reductions before
    it first): what :meth:`Transform.partial_sums` computes, for the optimizer to add up and
    give to :func:`run_step`. Nothing is changed."""
    scalar_names = [k for k in plan.keys if k != "step" and k not in prog.buffer_keys]
    grads, work = _prepare(plan, act, params, given, scalar_names)
    found = Found()
    wide = transform.optimizer_sums_slot
    for k, red in enumerate(prog.reductions):
        if red.slot == wide:
            values = _launch_reduction(k, transform, prog, work, scalar_names, count, shared, found)
            del grads  # (kept alive until the kernels were launched)
            return PendingSums(plan, red, values)
        _reduce(k, plan, transform, prog, work, scalar_names, count, shared, found, None)
    raise Unsupported("partial_sums: no part of this chain sums over every group")


def run_step(
    plan: Plan,
    act: Active,
    params: list[Tensor],
    transform: Transform,
    prog: Program,
    count: int,
    stats: StatsRequest | None = None,
    given: Gathered | None = None,
    shared: dict[str, float] | None = None,
    sums: Mapping[int, Mapping[str, float]] | None = None,
) -> StepStats | None:
    """Update ``params`` and their state in place: one kernel launch per bucket (plus one
    per bucket and reduction before it). With ``stats``, the kernel also measures the step
    (see :mod:`adaptlr.stats`), and that is returned.

    ``shared``: the group's scalars kept once per group (:attr:`Part.shared`), updated in
    place with their new values once the step is done; ``sums``: by slot, an optimizer's
    totals over all its groups (see :func:`partial_sums`)."""
    scalar_names = [k for k in plan.keys if k != "step" and k not in prog.buffer_keys]
    grads, work = _prepare(plan, act, params, given, scalar_names)

    # the reductions first, in slot order: each over every bucket
    found = Found()
    for k in range(len(prog.reductions)):
        _reduce(k, plan, transform, prog, work, scalar_names, count, shared, found, sums)

    launches = []
    for i, w in enumerate(work):
        uniq, inverse = w.rows(found.own[i] if found.own_names else None)
        table, new_scal = coefficient_rows(
            transform, prog, uniq, scalar_names, count, found, shared
        )
        launches.append((w, table, new_scal, inverse))
    if transform.sequential and shared and _changes(launches, shared):
        # a tensor changed the group's values (SWATS switched): the tensors after it see
        # them; until one does, every tensor sees the same, and the rows above are right
        launches = _sequential_rows(transform, prog, work, scalar_names, count, found, shared)
    stride, serial = 0, 0
    if stats is not None:
        serial = next_serial()
        if act.elements < 0:
            act.elements = sum(int(s.bucket.numels[s.local].sum()) for s in act.segments)
        stride = stride_for(act.elements, stats.sample)
    measured: list[SegmentStats] = []
    # every check passed and every coefficient is known: only now does anything change
    for w, table, new_scal, inverse in launches:
        seg, b = w.seg, w.seg.bucket
        if stats is None:
            launch.run_kernel(prog, b, seg, table, inverse, w.gptr, "step")
        else:
            measured.append(
                launch_stats(prog, b, seg, table, inverse, w.gptr, stride, serial, plan.measured)
            )
        b.steps.numpy()[w.local] = w.new_steps
        for key in scalar_names:
            values = np.array([row[key] for row in new_scal], dtype=np.float64)
            b.scalars[key].numpy()[w.local] = values[inverse]
    if shared and launches:
        # the values of the group's last tensor, as the reference path keeps them (every
        # tensor computes the same: they depend on the count, the sums and themselves only;
        # made one after another, the last one's are the step's)
        w, _, new_scal, inverse = next(x for x in launches if x[0].seg.pos[-1] == len(params) - 1)
        row = new_scal[int(inverse[-1])]
        shared.update({k: row[k] for k in shared if k in row})
    del grads  # (kept alive until the kernels ran)
    if stats is None:
        return None
    plan.measured = serial
    return step_stats(act, measured, stride, stats, serial)
