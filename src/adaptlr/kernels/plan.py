"""Plans: the flat state of one parameter group, the tables of its active sets, and the checks
that they still hold.

A group's parameters are split into *buckets* by (device, real dtype). Each buffer of the
chain (``exp_avg``, …) of a bucket is one flat tensor; ``optimizer.state[p][key]`` is a view
into it, so ``state_dict``, ``load_state_dict``, the monitor and torch's machinery see the
usual keys and shapes. ``step`` and scalar state (NAdam's ``mu_product``) are 0-d views of
flat CPU tensors, so that counting steps is one vectorised operation.

A plan stays valid while nothing moved under it; every step checks, cheaply and completely: the
state dict is the same object, every state entry of a stepped parameter is still our view,
every parameter still lives where it did with the dtype, size and memory layout its state views
were made for (an address alone is not enough: freed memory is reused). Otherwise the plan is
rebuilt, copying the current state values into new flat buffers. A member's state dict is a
:class:`~.watched.WatchedState`, which counts its own changes: while none happened, no entry
needs to be looked at.
"""

from __future__ import annotations

import itertools
import operator
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..core.base import Transform
from . import backends
from .codegen import ALIGN
from .dtensor import dtensor_class, has_dtensor, shard
from .gather import Gathered
from .layout import REAL, as_numpy, dense, layout, lazy, strided_of, view_like
from .trace import Program
from .watched import Clock, WatchedState, is_watched

if TYPE_CHECKING:
    from .launch import DeviceTables

#: elements per chunk: numba's prange unit on CPU, one Triton program on a GPU
CPU_CHUNK = 1 << 15
TRITON_BLOCK = int(os.environ.get("ADAPTLR_TRITON_BLOCK", "1024"))


class Unsupported(Exception):
    """The fast path cannot take this group (the message says why); the reference path runs."""


@dataclass
class Bucket:
    """The flat state of the parameters of one (device, real dtype) in a group."""

    device: torch.device
    dtype: torch.dtype  # of the parameters (their real view)
    state_dtype: torch.dtype  # of the flat buffers
    params: list[Tensor]
    numels: np.ndarray  # real elements per parameter
    offsets: np.ndarray
    buffers: dict[str, Tensor]
    steps: Tensor  # flat CPU, one per parameter
    scalars: dict[str, Tensor]  # flat CPU, one per parameter
    arrays: list[Any] = field(default_factory=list)  # buffers as numpy (CPU) in program order
    #: per parameter, :func:`~.layout.layout` when its state views were made (they have its
    #: strides)
    layouts: list[tuple[int, ...] | None] = field(default_factory=list)


@dataclass(eq=False)
class Segment:
    """The stepped parameters of one bucket in an active set: what one kernel launch covers.

    Its tables are made with the active set; the fields after ``pptr`` are caches, filled by
    the first launch that needs them and kept while the active set lives.
    """

    bucket: Bucket
    #: elements per chunk (the kernels declare chunk starts multiples of it)
    block: int
    #: positions in the active set's ``params``
    pos: list[int]
    #: whether it covers every parameter of the active set (then ``pos`` is ``range(n)``)
    covers_all: bool
    #: each parameter's index in the bucket
    local: np.ndarray
    #: each parameter's offset in the bucket's flat buffers
    soff: np.ndarray
    #: per chunk: its tensor (index into ``pos``), first and end element
    chunks: tuple[np.ndarray, np.ndarray, np.ndarray]
    #: each parameter's (local shard's) address
    pptr: np.ndarray
    #: an array of the parameters' numpy dtype, from which a numba kernel types their addresses
    witness: np.ndarray | None = None
    #: CPU threads the segment's elements can keep busy (see :func:`.launch.threads_for`)
    grain_threads: int | None = None
    #: the Triton launcher's tables, on the device
    dev_tables: DeviceTables | None = None
    #: per sampling stride: where each tensor's samples start, and each sample's tensor
    slots: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: per sampling stride: the sample starts on the device (Triton)
    sbase_dev: dict[int, Tensor] = field(default_factory=dict)
    #: the last measured step's (serial, stride, sample), as the kernel reads it
    prev: tuple[int, int, Any] | None = None


_SERIALS = itertools.count()


@dataclass
class Active:
    """What a step needs about one set of stepped parameters (cached while it repeats)."""

    params: list[Tensor]
    states: list[dict]
    views: dict[str, list[Tensor]]
    pptrs: list[int]
    all_states: list[dict]  # optimizer.state's values when the tables were made
    #: one per bucket that holds some of ``params``
    segments: list[Segment]
    #: distinct for every Active made: the monitor's sample is comparable within one
    serial: int = field(default_factory=lambda: next(_SERIALS))
    #: elements stepped (counted on the first measured step; -1 until then)
    elements: int = -1
    #: the plan's clock when its state entries were last found to be the views
    ticks: int = -1
    #: (position, strides) of each parameter that is not contiguous (see
    #: :func:`~.layout.layout`)
    strided: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    #: the parameters' dtypes and numbers of elements (see :func:`~.gather.gather`)
    dtypes: list[torch.dtype] = field(default_factory=list)
    numels: list[int] = field(default_factory=list)
    #: positions of the parameters that can be (or have a gradient that is) a dense
    #: :func:`~.layout.lazy` view: complex ones (``x.conj()``); of real ones, those of at most
    #: one element (``x.conj().imag``, the only public lazy negation, has even strides
    #: otherwise)
    lazy: list[int] = field(default_factory=list)


class Plan:
    """Flat buffers of one group and the cached tables of its recent active sets."""

    def __init__(
        self, group: dict, state: Any, keys: tuple[str, ...], buckets: list[Bucket], clock: Clock
    ):
        self.group = group
        self.state = state
        #: ticks whenever a member's state dict (a WatchedState) changes
        self.clock = clock
        self.keys = keys
        self.buckets = buckets
        #: the serial of the group's last measured step (adaptlr.stats.StepStats.serial)
        self.measured = 0
        self.where: dict[int, tuple[int, int]] = {}
        for bi, b in enumerate(buckets):
            for li, p in enumerate(b.params):
                self.where[id(p)] = (bi, li)
        #: the recent active sets, by their parameters' ids; ``last`` is the latest one
        self.active: dict[tuple[int, ...], Active] = {}
        self.last: Active | None = None
        #: DTensor parameters: kernels run on local shards; reductions are all-reduced here
        self.norm_group: Any = None
        self.dtensor = False
        #: per member, the views its state entries must be (identity) for the plan to hold
        self.views: dict[int, dict[str, Tensor]] = {}

    def find_active(self, params: list[Tensor]) -> Active | None:
        """The cached active set of exactly ``params`` (in order), or ``None``."""
        last = self.last
        # the usual case, the same set as last step: one C-level identity pass (cheaper than
        # building and hashing a tuple of every id)
        if (
            last is not None
            and len(last.params) == len(params)
            and all(map(operator.is_, params, last.params))
        ):
            return last
        act = self.active.get(tuple(map(id, params)))
        if act is not None:
            self.last = act
        return act

    def remember(self, act: Active) -> None:
        if len(self.active) > 8:  # a few alternating sets (e.g. a None gradient) stay
            self.active.clear()
        self.active[tuple(map(id, act.params))] = act
        self.last = act


def build_plan(
    state: Any,
    group: dict,
    transform: Transform,
    prog: Program,
    stepped: list[Tensor],
    clock: Clock,
) -> Plan:
    """Flat buffers for every parameter of ``group`` that has a gradient or a full state.

    State values are copied from ``state`` (the optimizer's, or initialised as the reference
    path does) and every entry is replaced by a view of the flat buffers; every member's state
    dict becomes a :class:`~.watched.WatchedState` ticking ``clock``. Raises
    :class:`Unsupported` before changing anything if the group cannot be flattened.
    """
    keys = transform.state_keys
    stepped_ids = {id(p) for p in stepped}
    sdtype = group.get("state_dtype")
    members = []
    for p in group["params"]:
        st = state.get(p)
        # a parameter not stepped now whose dtype changed since its state was made stays out:
        # its state is converted when it steps (as the reference path does), in a new plan
        if id(p) in stepped_ids or (
            st is not None and all(k in st for k in keys) and transform.conforms(st, p, sdtype)
        ):
            members.append(p)
    dtensor = has_dtensor(members)
    DTensor = dtensor_class()  # noqa: N806 - the class, when there are DTensors
    norm_group = _check_dtensors(members, prog) if dtensor else None
    loc = {id(p): shard(p) for p in members}
    for p in (loc[id(q)] for q in members):
        if p.dtype not in REAL:
            raise Unsupported(
                f"parameters of dtype {p.dtype} (the fast path takes float32/64, bfloat16, "
                f"float16 and complex)"
            )
        if not dense(p):
            raise Unsupported(
                "a parameter whose elements do not fill one block of memory, e.g. a slice with gaps"
            )
        if p.device.type not in ("cpu", "cuda"):
            raise Unsupported(f"parameters on {p.device.type}")
        if p.is_sparse:
            raise Unsupported("a sparse parameter")
        if lazy(p):
            raise Unsupported("a parameter that is a lazy conjugate or negation, e.g. x.conj()")
    scalar_keys = [k for k in keys if k != "step" and k not in prog.buffer_keys]
    # initialise exactly as the reference path would (setdefault keeps what exists)
    for p in members:
        st = state[p]
        if not all(k in st for k in keys):
            for k, v in transform.init_one(p, sdtype).items():
                st.setdefault(k, v)
        transform.conform_one(st, p, sdtype)  # a stepped parameter whose dtype changed
        for k in prog.buffer_keys:
            if st[k].numel() != p.numel() or shard(st[k]).numel() != loc[id(p)].numel():
                raise Unsupported(f"state {k!r} does not match its parameter's size")
            if dtensor and (not isinstance(st[k], DTensor) or st[k].placements != p.placements):
                raise Unsupported(f"state {k!r} is not sharded as its parameter")
    groups: dict[tuple, list[Tensor]] = {}
    for p in members:
        lp = loc[id(p)]
        # the step count and scalar state are flat per bucket too: one dtype each (they can
        # differ: load_state_dict casts them to a real parameter's dtype, not a complex one's)
        scalar_dtypes = tuple(shard(state[p][k]).dtype for k in ("step", *scalar_keys))
        key = (lp.device, REAL[lp.dtype], _state_dtype(state[p], lp, prog), scalar_dtypes)
        groups.setdefault(key, []).append(p)
    buckets = []
    for (device, dtype, sdtype, _), ps in groups.items():
        lps = [loc[id(p)] for p in ps]
        numels = np.array([p.numel() * (2 if p.is_complex() else 1) for p in lps], dtype=np.int64)
        # each tensor starts on a 64-byte boundary (and a complex one on an even element)
        padded = (numels + ALIGN - 1) // ALIGN * ALIGN
        offsets = np.zeros(len(ps), dtype=np.int64)
        if len(ps) > 1:
            offsets[1:] = np.cumsum(padded)[:-1]
        total = int(padded.sum())
        buffers = {}
        for k in prog.buffer_keys:
            flat = torch.zeros(total, dtype=sdtype, device=device)
            for p, off, n in zip(ps, offsets.tolist(), numels.tolist()):
                if n:  # element by element, whatever the layouts: into the parameter's
                    dst, src = view_like(flat, off, n, loc[id(p)]), shard(state[p][k])
                    dst.copy_(src if src.shape == dst.shape else src.reshape(dst.shape))
            buffers[k] = flat
        step_dtype = shard(state[ps[0]]["step"]).dtype
        steps = torch.tensor([float(shard(state[p]["step"])) for p in ps], dtype=step_dtype)
        scalars = {
            k: torch.tensor(
                [float(shard(state[p][k])) for p in ps], dtype=shard(state[ps[0]][k]).dtype
            )
            for k in scalar_keys
        }
        # only now, with every value read, do the state entries become views
        for i, (p, off, n) in enumerate(zip(ps, offsets.tolist(), numels.tolist())):
            st = state[p]
            for k, flat in buffers.items():
                view = view_like(flat, off, n, loc[id(p)])
                if dtensor:  # a DTensor over this process's flat view: full state dicts work
                    view = DTensor.from_local(
                        view, p.device_mesh, p.placements, shape=p.shape, stride=p.stride(),
                        run_check=False,
                    )  # fmt: skip
                st[k] = view
            st["step"] = steps[i]
            for k, flat in scalars.items():
                st[k] = flat[i]
        arrays = [as_numpy(buffers[k]) for k in prog.buffer_keys] if device.type == "cpu" else []
        layouts = [layout(p) for p in lps]
        buckets.append(
            Bucket(
                device, dtype, sdtype, ps, numels, offsets, buffers, steps, scalars, arrays, layouts
            )
        )
    plan = Plan(group, state, keys, buckets, clock)
    plan.dtensor, plan.norm_group = dtensor, norm_group
    for p in members:
        st = state[p]
        if not is_watched(st, clock):
            state[p] = st = WatchedState(clock, st)
        plan.views[id(p)] = {k: st[k] for k in keys}
    return plan


def _check_dtensors(members: list[Tensor], prog: Program) -> Any:
    """DTensor parameters: all of them DTensors; with a reduction (a global norm, a part's
    sums), all sharded (no replica, which would count twice) over one mesh, whose process
    group is returned."""
    if not all(isinstance(p, dtensor_class()) for p in members):
        raise Unsupported("a group mixing DTensor and plain parameters")
    if not prog.reductions:
        return None
    from torch.distributed.tensor import Shard

    mesh = members[0].device_mesh
    for p in members:
        if p.device_mesh != mesh or not all(isinstance(pl, Shard) for pl in p.placements):
            raise Unsupported("a global norm or sum over DTensors not all sharded over one mesh")
    if mesh.ndim != 1:
        raise Unsupported("a global norm or sum over a DTensor mesh of more than one dimension")
    return mesh.get_group()


def _state_dtype(st: dict, p: Tensor, prog: Program) -> torch.dtype:
    """The (real) dtype of the flat buffers ``p``'s state goes to: that of its buffers."""
    dtypes = {REAL.get(st[k].dtype) for k in prog.buffer_keys}
    if not dtypes:  # no per-element state: the dtype does not matter, keep one bucket
        return REAL[p.dtype]
    if len(dtypes) != 1 or None in dtypes:
        raise Unsupported(f"state buffers of dtypes {sorted(map(str, dtypes))}")
    return dtypes.pop()


def _chunks(numels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split tensors of ``numels`` elements into chunks of at most ``size``."""
    nch = (numels + size - 1) // size
    total = int(nch.sum())
    ck_t = np.repeat(np.arange(len(numels), dtype=np.int64), nch)
    first = np.zeros(len(numels), dtype=np.int64)
    if len(numels) > 1:
        first[1:] = np.cumsum(nch)[:-1]
    ck_lo = (np.arange(total, dtype=np.int64) - np.repeat(first, nch)) * size
    ck_hi = np.minimum(ck_lo + size, numels[ck_t])
    return ck_t, ck_lo, ck_hi


def make_active(
    plan: Plan, params: list[Tensor], prog: Program, locs: list[Tensor] | None = None
) -> Active | None:
    """Tables for stepping ``params`` (all members of ``plan``); ``None`` where a parameter no
    longer fits its bucket (moved to another device or dtype, resized, another layout).
    ``locs`` are their local shards where they are DTensors (default: ``params``)."""
    locs = params if locs is None else locs
    for q, p in zip(params, locs):
        bi, li = plan.where[id(q)]
        b = plan.buckets[bi]
        n = p.numel() * (2 if p.is_complex() else 1)
        if (
            p.device != b.device
            or REAL.get(p.dtype) != b.dtype
            or n != b.numels[li]
            or layout(p) != b.layouts[li]
            or lazy(p)
        ):
            return None
    state = plan.state
    states = [state.get(p) for p in params]  # (None where a dict vanished: never valid)
    clock = plan.clock
    if not all(is_watched(st, clock) for st in states):
        return None  # a dict replaced by hand: its changes would not tick (a rebuild wraps it)
    views = {k: [plan.views[id(p)][k] for p in params] for k in plan.keys}
    segments = []
    for bi, b in enumerate(plan.buckets):
        pos = [i for i, p in enumerate(params) if plan.where[id(p)][0] == bi]
        if not pos:
            continue
        local = np.array([plan.where[id(params[i])][1] for i in pos], dtype=np.int64)
        size = CPU_CHUNK if backends.uses_numba(b.device) else TRITON_BLOCK
        segments.append(
            Segment(
                bucket=b,
                block=size,
                pos=pos,
                covers_all=len(pos) == len(params),
                local=local,
                soff=b.offsets[local].copy(),
                chunks=_chunks(b.numels[local], size),
                pptr=np.array([locs[i].data_ptr() for i in pos], dtype=np.int64),
            )
        )
    pptrs = [p.data_ptr() for p in locs]
    maybe = [i for i, p in enumerate(locs) if p.is_complex() or p.numel() <= 1]
    return Active(
        params, states, views, pptrs, list(state.values()), segments, strided=strided_of(locs),
        dtypes=[p.dtype for p in locs], numels=[p.numel() for p in locs], lazy=maybe,
    )  # fmt: skip


def still_valid(
    plan: Plan, act: Active, params: list[Tensor], found: Gathered | None = None
) -> bool:
    """Everything the plan assumed still holds (identity checks, C-level passes).

    ``found``: the parameters' addresses, strides (of those not contiguous), dtypes and sizes
    as :func:`~.gather.gather` found them (then every gradient is laid out as its parameter).

    The per-parameter state dicts are compared through ``state.values()`` (no tensor
    hashing): a dict replaced, added or removed anywhere in the optimizer shows there. Their
    entries are compared (one pass per key) only when the plan's clock says that one of its
    dicts, all :class:`~.watched.WatchedState`, changed since they were last found to be the
    views.
    """
    state = plan.state
    if len(state) != len(act.all_states) or not all(
        map(operator.is_, state.values(), act.all_states)
    ):
        return False
    ticks = plan.clock.ticks
    if act.ticks != ticks:
        try:
            for k in plan.keys:
                got = map(operator.itemgetter(k), act.states)
                if not all(map(operator.is_, got, act.views[k])):
                    return False
        except (KeyError, TypeError):
            return False
        act.ticks = ticks
    if act.lazy and any(lazy(params[i]) for i in act.lazy):  # p.data = p.data.conj()
        return False
    if found is not None:
        return (
            found.pptrs == act.pptrs
            and found.strided == act.strided
            and found.dtypes == act.dtypes
            and found.numels == act.numels
        )
    # map over the unbound methods: C-level loops, no Python per tensor
    if list(map(Tensor.data_ptr, params)) != act.pptrs:
        return False
    if list(map(Tensor.numel, params)) != act.numels:
        return False
    if list(map(operator.attrgetter("dtype"), params)) != act.dtypes:
        return False
    if all(map(Tensor.is_contiguous, params)):
        return not act.strided
    return strided_of(params) == act.strided
