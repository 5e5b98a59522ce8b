"""Flat state and the fused step of one parameter group.

A group's parameters are split into *buckets* by (device, real dtype). Each buffer of the
chain (``exp_avg``, …) of a bucket is one flat tensor; ``optimizer.state[p][key]`` is a view
into it, so ``state_dict``, ``load_state_dict``, the monitor and torch's machinery see the
usual keys and shapes. ``step`` and scalar state (NAdam's ``mu_product``) are 0-d views of
flat CPU tensors, so that counting steps is one vectorised operation.

Parameters and gradients are *not* copied: kernels reach them through their addresses, so a
gradient set to ``None`` by ``zero_grad()`` and recreated by autograd costs nothing extra.

A plan stays valid while nothing moved under it; every step checks, cheaply and completely: the
state dict is the same object, every state entry of a stepped parameter is still our view,
every parameter still lives where it did with the dtype, size and memory layout its state views
were made for (an address alone is not enough: freed memory is reused). Otherwise the plan is
rebuilt, copying the current state values into new flat buffers. A member's state dict is a
:class:`WatchedState`, which counts its own changes: while none happened, no entry needs to be
looked at.

A parameter need not be contiguous, only *dense*: its elements fill one block of memory, each
once (e.g. a convolution's weight in ``channels_last``). The kernels step such a block as
``numel`` elements from its address; its state views get its strides and its gradient must
have them too (autograd makes it so; another is read through a copy laid out as the
parameter), so that the i-th element in memory of each is the same element of the parameter.
A lazy conjugate or negation (``x.conj()``, whose memory holds ``x``) is read through a copy
where it is a gradient; a parameter that is one takes the reference path.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core.base import Context, Transform
from ..stats import StatsRequest, StepStats, eff_step, next_serial, stride_for
from . import backends
from .codegen import ALIGN
from .trace import Program

REAL = {
    torch.float32: torch.float32,
    torch.float64: torch.float64,
    torch.complex64: torch.float32,
    torch.complex128: torch.float64,
    torch.bfloat16: torch.bfloat16,
    torch.float16: torch.float16,
}
DTYPE_NAME = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.bfloat16: "bfloat16",
    torch.float16: "float16",
}
#: held as uint16 bits in numpy arrays and numba kernels (numpy has no bfloat16)
LOW_PRECISION = (torch.bfloat16, torch.float16)
#: elements per chunk: numba's prange unit on CPU, one Triton program on a GPU
CPU_CHUNK = 1 << 15
TRITON_BLOCK = int(os.environ.get("ADAPTLR_TRITON_BLOCK", "1024"))
#: warps per Triton program (Triton's own default); ``benchmarks/gpu_check.py`` sweeps both
TRITON_WARPS = int(os.environ.get("ADAPTLR_TRITON_WARPS", "4"))
#: elements per thread below which fewer CPU threads are woken
PARALLEL_GRAIN = 1 << 17


def _dtensor_class() -> Any:
    """FSDP2's DTensor class, or None where nothing has imported it.

    Read from ``sys.modules`` instead of imported here: importing ``torch.distributed.tensor``
    costs 0.6 s (it pulls in sympy), and a process holding DTensor parameters has imported it
    already (it made them).
    """
    mod = sys.modules.get("torch.distributed.tensor")
    return getattr(mod, "DTensor", None)


def has_dtensor(params: list[Tensor]) -> bool:
    """Whether any of ``params`` is a DTensor (one C-level pass over their types)."""
    cls = _dtensor_class()
    return cls is not None and any(issubclass(t, cls) for t in set(map(type, params)))


def shard(t: Tensor) -> Tensor:
    """This process's shard of a DTensor; any other tensor itself."""
    cls = _dtensor_class()
    return t.to_local() if cls is not None and isinstance(t, cls) else t


class Unsupported(Exception):
    """The fast path cannot take this group (the message says why); the reference path runs."""


@dataclass
class Gathered:
    """A group's parameters that have a gradient this step, and their gradients.

    ``dense``: every one of them and its gradient are plain tensors, both contiguous or both
    with the same strides (listed in ``strided``); ``pptrs`` and ``gptrs`` are then their
    addresses, and ``dtypes`` and ``numels`` the parameters' (else ``None``). Whether those
    strides make a dense block is the plan's check.
    """

    params: list[Tensor]
    grads: list[Tensor]
    dense: bool
    pptrs: list[int] | None = None
    gptrs: list[int] | None = None
    #: (position, strides) of each parameter that is not contiguous, its gradient strided alike
    strided: list[tuple[int, tuple[int, ...]]] | None = None
    #: each parameter's dtype and number of elements
    dtypes: list[torch.dtype] | None = None
    numels: list[int] | None = None


def gather(group_params: list[Tensor], expect: Active | None = None) -> Gathered:
    """The parameters with a gradient, their gradients and addresses, in one pass.

    One loop that touches each tensor once: after a step has streamed the parameters through
    the caches, each separate pass over 10,000 tensors (a C-level ``map``) found them cold
    again (measured: 9 ms for this loop against 13-17 ms for the six passes it replaces).
    A parameter's address alone does not say that it is the data a plan was made for: freed
    memory is reused, and ``p.data = p.data.double()`` then ``.bfloat16()`` can put other
    data there; its dtype and size are read too.

    ``expect``: the active set of the group's last fused step (see
    :func:`adaptlr.kernels.last_active`). Where it covers as many parameters as the group and
    none of them is strided, each parameter is compared with it as it is read, and the lists
    returned are its own; the full loop runs from the start at the first difference.
    """
    if expect is not None and len(expect.params) == len(group_params) and not expect.strided:
        found = _gather_as(group_params, expect)
        if found is not None:
            return found
    params: list[Tensor] = []
    grads: list[Tensor] = []
    pptrs: list[int] = []
    gptrs: list[int] = []
    dtypes: list[torch.dtype] = []
    numels: list[int] = []
    strided: list[tuple[int, tuple[int, ...]]] = []
    add_p, add_g, add_pp, add_gp = params.append, grads.append, pptrs.append, gptrs.append
    add_d, add_n = dtypes.append, numels.append
    try:
        for p in group_params:
            g = p.grad
            if g is None:
                continue
            if not (g.is_contiguous() and p.is_contiguous()):
                s = p.stride()  # e.g. channels_last: its gradient has its strides
                if g.stride() != s:
                    break
                strided.append((len(params), s))
            add_p(p)
            add_g(g)
            add_pp(p.data_ptr())
            add_gp(g.data_ptr())
            add_d(p.dtype)
            add_n(p.numel())
        else:
            return Gathered(params, grads, True, pptrs, gptrs, strided, dtypes, numels)
    except Exception:  # noqa: BLE001 - sparse or storage-less tensors (DTensor): passes below
        pass
    grads = list(map(operator.attrgetter("grad"), group_params))
    present = list(map(operator.is_not, grads, itertools.repeat(None)))
    return Gathered(
        list(itertools.compress(group_params, present)),
        list(itertools.compress(grads, present)),
        False,
    )


def _gather_as(group_params: list[Tensor], expect: Active) -> Gathered | None:
    """:func:`gather` for the usual step: every parameter has a gradient, both contiguous, and
    is where, of the dtype and size, that ``expect`` lists; else ``None``.

    Comparing as it reads spares the three lists that :func:`still_valid` would compare and
    the 20,000 integers they hold with 10,000 tensors (measured, paired: 0.6-1.4 ms of a
    21-25 ms step).
    """
    grads: list[Tensor] = []
    gptrs: list[int] = []
    add_g, add_gp = grads.append, gptrs.append
    try:
        for p, ptr, dtype, numel in zip(group_params, expect.pptrs, expect.dtypes, expect.numels):
            g = p.grad
            if (
                g is None
                or not (g.is_contiguous() and p.is_contiguous())
                or p.data_ptr() != ptr
                or p.dtype is not dtype
                or p.numel() != numel
            ):
                return None
            add_g(g)
            add_gp(g.data_ptr())
    except Exception:  # noqa: BLE001 - sparse or storage-less tensors: gather's own loop
        return None
    return Gathered(
        list(group_params), grads, True, expect.pptrs, gptrs, [], expect.dtypes, expect.numels
    )


class Clock:
    """How many times the state dicts that an optimizer's plans hold views in have changed."""

    __slots__ = ("ticks",)

    def __init__(self) -> None:
        self.ticks = 0


def _rebuild_watched(clock: Clock, items: dict) -> WatchedState:
    return WatchedState(clock, items)


class WatchedState(dict):
    """A parameter's ``optimizer.state`` entry that counts its changes on ``clock``.

    A step must know that every state entry of its parameters is still the view of the flat
    buffers it updates; comparing 3 entries each of 10,000 parameters costs 1 ms a step
    (measured), reading the clock nothing. Every method that can change a dict ticks it
    (``setdefault`` even when the key exists: a spurious tick costs one full check).
    It pickles and deep-copies as itself (with its clock); ``state_dict()`` hands out
    plain dicts (see :meth:`adaptlr.Optimizer.state_dict`). :func:`watched` makes an
    optimizer's state of them.
    """

    __slots__ = ("clock",)

    def __init__(self, clock: Clock, items: dict | None = None) -> None:
        super().__init__(items or {})
        self.clock = clock

    def __reduce__(self) -> tuple:
        return (_rebuild_watched, (self.clock, dict(self)))

    def __setitem__(self, key: Any, value: Any) -> None:
        self.clock.ticks += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self.clock.ticks += 1
        super().__delitem__(key)

    def __ior__(self, other: Any) -> WatchedState:
        self.clock.ticks += 1
        return super().__ior__(other)

    def clear(self) -> None:
        self.clock.ticks += 1
        super().clear()

    def pop(self, *args: Any) -> Any:
        self.clock.ticks += 1
        return super().pop(*args)

    def popitem(self) -> tuple:
        self.clock.ticks += 1
        return super().popitem()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self.clock.ticks += 1
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.clock.ticks += 1
        super().update(*args, **kwargs)


def clock_of(optimizer: Any) -> Clock:
    """The clock of ``optimizer``'s watched state dicts (made on first use)."""
    clock = optimizer.__dict__.get("_adaptlr_clock")
    if clock is None:
        clock = optimizer.__dict__["_adaptlr_clock"] = Clock()
    return clock


def is_watched(st: Any, clock: Clock) -> bool:
    """Whether ``st`` is a WatchedState ticking ``clock``."""
    return type(st) is WatchedState and st.clock is clock


def watched(state: Any, clock: Clock) -> defaultdict:
    """``optimizer.state`` whose per-parameter dicts are (and are born) WatchedState dicts.

    Wrapping a dict makes a new object: done where the state is made (construction, load,
    unpickling), before a caller can hold a dict that the fast path would then replace.
    """
    out: defaultdict = defaultdict(functools.partial(WatchedState, clock))
    for k, v in state.items():
        fresh = isinstance(v, dict) and not is_watched(v, clock)
        out[k] = WatchedState(clock, v) if fresh else v
    return out


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
    #: per parameter, :func:`layout` when its state views were made (they have its strides)
    layouts: list[tuple[int, ...] | None] = field(default_factory=list)


_SERIALS = itertools.count()


@dataclass
class Active:
    """What a step needs about one set of stepped parameters (cached while it repeats)."""

    params: list[Tensor]
    states: list[dict]
    views: dict[str, list[Tensor]]
    pptrs: list[int]
    all_states: list[dict]  # optimizer.state's values when the tables were made
    #: per bucket: positions in ``params``, local indices in the bucket, chunk tables, ...
    parts: list[dict[str, Any]]
    #: distinct for every Active made: the monitor's sample is comparable within one
    serial: int = field(default_factory=lambda: next(_SERIALS))
    #: elements stepped (counted on the first measured step; -1 until then)
    elements: int = -1
    #: the plan's clock when its state entries were last found to be the views
    ticks: int = -1
    #: (position, strides) of each parameter that is not contiguous (see :func:`layout`)
    strided: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    #: the parameters' dtypes and numbers of elements (see :func:`gather`)
    dtypes: list[torch.dtype] = field(default_factory=list)
    numels: list[int] = field(default_factory=list)
    #: positions of the parameters that can be (or have a gradient that is) a dense
    #: :func:`lazy` view: complex ones (``x.conj()``); of real ones, those of at most one
    #: element (``x.conj().imag``, the only public lazy negation, has even strides otherwise)
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
        #: DTensor parameters: kernels run on local shards; a global norm is all-reduced here
        self.norm_group: Any = None
        self.dtensor = False
        #: per member, the views its state entries must be (identity) for the plan to hold
        self.views: dict[int, dict[str, Tensor]] = {}

    def find_active(self, params: list[Tensor]) -> Active | None:
        """The cached active set of exactly ``params`` (in order), or ``None``."""
        last = self.last
        # the usual case, the same set as last step: one C-level identity pass (building and
        # hashing a tuple of 10,000 ids costs 0.4 ms)
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


def layout(t: Tensor) -> tuple[int, ...] | None:
    """``None`` for a contiguous tensor, else its strides."""
    return None if t.is_contiguous() else t.stride()


def strided_of(tensors: list[Tensor]) -> list[tuple[int, tuple[int, ...]]]:
    """(position, strides) of each tensor that is not contiguous."""
    return [(i, t.stride()) for i, t in enumerate(tensors) if not t.is_contiguous()]


def dense(t: Tensor) -> bool:
    """Whether ``t``'s elements fill one block of memory from its address, each once:
    contiguous, or e.g. ``channels_last`` or a transposed matrix (not a slice with gaps)."""
    if t.is_contiguous():
        return True
    expected = 1
    for stride, size in sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _view_like(flat: Tensor, off: int, n: int, p: Tensor) -> Tensor:
    """``flat[off : off + n]`` with ``p``'s shape and strides (``p`` dense)."""
    v = flat[off : off + n]
    shape, stride = tuple(p.shape), p.stride()
    if p.is_complex():  # its real view: (..., 2), strides in real elements
        shape, stride = (*shape, 2), (*(2 * s for s in stride), 1)
    v = v.view(shape) if p.is_contiguous() else v.as_strided(shape, stride)
    return torch.view_as_complex(v) if p.is_complex() else v


def lazy(t: Tensor) -> bool:
    """A lazy conjugate or negation (``x.conj()``, ``x.conj().imag``): its memory holds the
    values before it, which a kernel reading the address would take."""
    return t.is_conj() or t.is_neg()


def _in_layout(g: Tensor, stride: tuple[int, ...] | None) -> Tensor:
    """``g``, or a copy of it laid out as its parameter (``stride``; ``None``: contiguous),
    any lazy conjugate or negation applied."""
    if not lazy(g) and (g.is_contiguous() if stride is None else g.stride() == stride):
        return g
    if stride is None:
        return torch.empty(g.shape, dtype=g.dtype, device=g.device).copy_(g)
    return torch.empty_strided(g.shape, stride, dtype=g.dtype, device=g.device).copy_(g)


def build_plan(
    optimizer: Any, group: dict, transform: Transform, prog: Program, stepped: list[Tensor]
) -> Plan:
    """Flat buffers for every parameter of ``group`` that has a gradient or a full state.

    State values are copied from ``optimizer.state`` (or initialised as the reference path
    does) and every entry is replaced by a view of the flat buffers. Raises
    :class:`Unsupported` before changing anything if the group cannot be flattened.
    """
    state = optimizer.state
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
    DTensor = _dtensor_class()  # noqa: N806 - the class, when there are DTensors
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
                    dst, src = _view_like(flat, off, n, loc[id(p)]), shard(state[p][k])
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
                view = _view_like(flat, off, n, loc[id(p)])
                if dtensor:  # a DTensor over this process's flat view: full state dicts work
                    view = DTensor.from_local(
                        view, p.device_mesh, p.placements, shape=p.shape, stride=p.stride(),
                        run_check=False,
                    )  # fmt: skip
                st[k] = view
            st["step"] = steps[i]
            for k, flat in scalars.items():
                st[k] = flat[i]
        arrays = [_as_numpy(buffers[k]) for k in prog.buffer_keys] if device.type == "cpu" else []
        layouts = [layout(p) for p in lps]
        buckets.append(
            Bucket(
                device, dtype, sdtype, ps, numels, offsets, buffers, steps, scalars, arrays, layouts
            )
        )
    clock = clock_of(optimizer)
    plan = Plan(group, state, keys, buckets, clock)
    plan.dtensor, plan.norm_group = dtensor, norm_group
    for p in members:
        st = state[p]
        if not is_watched(st, clock):
            state[p] = st = WatchedState(clock, st)
        plan.views[id(p)] = {k: st[k] for k in keys}
    return plan


def _check_dtensors(members: list[Tensor], prog: Program) -> Any:
    """DTensor parameters: all of them DTensors; with a global norm, all sharded (no
    replica, which would count twice) over one mesh, whose process group is returned."""
    if not all(isinstance(p, _dtensor_class()) for p in members):
        raise Unsupported("a group mixing DTensor and plain parameters")
    if not prog.norms:
        return None
    from torch.distributed.tensor import Shard

    mesh = members[0].device_mesh
    for p in members:
        if p.device_mesh != mesh or not all(isinstance(pl, Shard) for pl in p.placements):
            raise Unsupported("a global norm over DTensors not all sharded over one mesh")
    if mesh.ndim != 1:
        raise Unsupported("a global norm over a DTensor mesh of more than one dimension")
    return mesh.get_group()


def _state_dtype(st: dict, p: Tensor, prog: Program) -> torch.dtype:
    """The (real) dtype of the flat buffers ``p``'s state goes to: that of its buffers."""
    dtypes = {REAL.get(st[k].dtype) for k in prog.buffer_keys}
    if not dtypes:  # no per-element state: the dtype does not matter, keep one bucket
        return REAL[p.dtype]
    if len(dtypes) != 1 or None in dtypes:
        raise Unsupported(f"state buffers of dtypes {sorted(map(str, dtypes))}")
    return dtypes.pop()


def _as_numpy(t: Tensor) -> np.ndarray:
    return t.view(torch.uint16).numpy() if t.dtype in LOW_PRECISION else t.numpy()


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
    parts = []
    for bi, b in enumerate(plan.buckets):
        pos = [i for i, p in enumerate(params) if plan.where[id(p)][0] == bi]
        if not pos:
            continue
        local = np.array([plan.where[id(params[i])][1] for i in pos], dtype=np.int64)
        numels = b.numels[local]
        size = CPU_CHUNK if (b.device.type == "cpu" and not _force_triton()) else TRITON_BLOCK
        ck_t, ck_lo, ck_hi = _chunks(numels, size)
        part = {
            "bucket": b,
            "block": size,  # the kernels declare chunk starts multiples of it
            "pos": pos,
            "all": len(pos) == len(params),
            "local": local,
            "soff": b.offsets[local].copy(),
            "chunks": (ck_t, ck_lo, ck_hi),
            "pptr": np.array([locs[i].data_ptr() for i in pos], dtype=np.int64),
        }
        parts.append(part)
    pptrs = [p.data_ptr() for p in locs]
    maybe = [i for i, p in enumerate(locs) if p.is_complex() or p.numel() <= 1]
    return Active(
        params, states, views, pptrs, list(state.values()), parts, strided=strided_of(locs),
        dtypes=[p.dtype for p in locs], numels=[p.numel() for p in locs], lazy=maybe,
    )  # fmt: skip


_FORCE_TRITON = [False]


def _force_triton() -> bool:
    return _FORCE_TRITON[0]


def still_valid(
    plan: Plan, act: Active, params: list[Tensor], found: Gathered | None = None
) -> bool:
    """Everything the plan assumed still holds (identity checks, C-level passes).

    ``found``: the parameters' addresses, strides (of those not contiguous), dtypes and sizes
    as :func:`gather` found them (then every gradient is laid out as its parameter).

    The per-parameter state dicts are compared through ``state.values()`` (no tensor
    hashing): a dict replaced, added or removed anywhere in the optimizer shows there. Their
    entries are compared (one pass per key) only when the plan's clock says that one of its
    dicts, all :class:`WatchedState`, changed since they were last found to be the views.
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
    # map over the unbound methods: C-level loops, ~10,000 tensors in well under 1 ms
    if list(map(Tensor.data_ptr, params)) != act.pptrs:
        return False
    if list(map(Tensor.numel, params)) != act.numels:
        return False
    if list(map(operator.attrgetter("dtype"), params)) != act.dtypes:
        return False
    if all(map(Tensor.is_contiguous, params)):
        return not act.strided
    return strided_of(params) == act.strided


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
        step = int(row[0])
        scal_now = dict(zip(scalar_names, row[1:].tolist()))
        out: dict[str, float] = {}
        for si, slot in enumerate(transform.slots):
            part = slot.part
            ctx = Context(step=step, count=count, norm=norms.get(si, 0.0))
            scal = {s.name: scal_now[slot.names[s.name]] for s in part.scalars}
            c, ns = part.coefficients(ctx, scal)
            for name, value in c.items():
                j = column.get((si, name))
                if j is None:
                    raise Unsupported(f"{part!r} returned an untraced coefficient {name!r}")
                table[r, j] = float(value)
            if len(c) != prog.coef_counts[si]:
                raise Unsupported(f"{part!r} returned a different set of coefficients")
            for name, value in ns.items():
                out[slot.names[name]] = float(value)
        new_scalars.append(out)
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
    optimizer: Any,
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
        copies = {i: h for i in redo if (h := _in_layout(grads[i], want.get(i))) is not grads[i]}
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
    for part in act.parts:
        b: Bucket = part["bucket"]
        local = part["local"]
        steps = b.steps.numpy()
        new_steps = steps[local] + 1
        uniq, inverse = _rows([new_steps] + [b.scalars[k].numpy()[local] for k in scalar_names])
        gptr = gptr_all if part["all"] else gptr_all[part["pos"]]
        work.append((part, b, local, new_steps, uniq, inverse, gptr))

    # global norms first: one reduction per part that needs one, over every bucket
    norms: dict[int, float] = {}
    for k, (si, _) in enumerate(prog.norms):
        total = 0.0
        for part, b, _local, _ns, uniq, inverse, gptr in work:
            table, _ = coefficient_rows(transform, prog, uniq, scalar_names, count, norms)
            total += _launch(prog, b, part, table, inverse, gptr, f"norm{k}")
        if plan.norm_group is not None:  # DTensor shards: the sum over every process
            import torch.distributed as dist

            dev = "cuda" if dist.get_backend(plan.norm_group) == "nccl" else "cpu"
            t = torch.tensor([total], dtype=torch.float64, device=dev)
            dist.all_reduce(t, group=plan.norm_group)
            total = float(t)
        norms[si] = math.sqrt(transform.slots[si].part.reduce_sq(total))

    launches = []
    for part, b, local, new_steps, uniq, inverse, gptr in work:
        table, new_scal = coefficient_rows(transform, prog, uniq, scalar_names, count, norms)
        launches.append((part, b, local, new_steps, table, new_scal, inverse, gptr))
    stride, serial = 0, 0
    if stats is not None:
        serial = next_serial()
        if act.elements < 0:
            act.elements = sum(int(p["bucket"].numels[p["local"]].sum()) for p in act.parts)
        stride = stride_for(act.elements, stats.sample)
    measured = []
    # every check passed and every coefficient is known: only now does anything change
    for part, b, local, new_steps, table, new_scal, inverse, gptr in launches:
        if stats is None:
            _launch(prog, b, part, table, inverse, gptr, "step")
        else:
            measured.append(
                _launch_stats(prog, b, part, table, inverse, gptr, stride, serial, plan.measured)
            )
        b.steps.numpy()[local] = new_steps
        for k in scalar_names:
            values = np.array([row[k] for row in new_scal], dtype=np.float64)
            b.scalars[k].numpy()[local] = values[inverse]
    del grads  # (kept alive until the kernels ran)
    if stats is None:
        return None
    plan.measured = serial
    return _step_stats(act, measured, stride, stats, serial)


def _sample_slots(part: dict, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """The sampled elements of a part (every flat offset that is a multiple of ``stride``: in
    memory order, which for a parameter laid out e.g. channels_last is not its index order),
    cached per stride: per tensor, where its samples start in the sample (``sbase``, minus its
    first offset // stride, as the kernels index), and per sample, its tensor (index into
    the part)."""
    cache = part.setdefault("slots", {})
    if stride not in cache:
        soff = part["soff"]
        numels = part["bucket"].numels[part["local"]]
        first = -(-soff // stride)
        counts = np.maximum(-(-(soff + numels) // stride) - first, 0)
        tensor = np.repeat(np.arange(len(soff), dtype=np.int64), counts)
        sbase = (np.cumsum(counts) - counts - first).astype(np.int64)
        cache[stride] = (sbase, tensor)
    return cache[stride]


def _launch_stats(
    prog: Program,
    b: Bucket,
    part: dict,
    table: np.ndarray,
    inverse: np.ndarray,
    gptr: np.ndarray,
    stride: int,
    serial: int,
    last: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int | None]:
    """The step kernel that measures itself (the step numbered ``serial`` among measured ones;
    ``last``: the group's previous measured step).

    Returns ``T`` (Σg², Σ(θ_new − θ_old)², Σθ_new² over the part, the sampled gradient's
    products with the previous measured step's sample and with itself, then each tensor's
    Σg²), the sampled gradient, η_t/σ_t at every :func:`~adaptlr.stats.eff_step`-th sampled
    element (``None`` without ``prog.eff``) and the serial of the previous sample, if the
    product with it was taken (it is kept in ``part`` while the part's tables live).
    """
    ck_t = part["chunks"][0]
    sbase, tensor = _sample_slots(part, stride)
    size = len(tensor)
    every = eff_step(size)
    esize = -(-size // every) if prog.eff is not None else 0
    # the previous measured step's sample of this part, where it sampled the same elements
    prev = part.get("prev")
    prev = prev if prev is not None and prev[0] == last and prev[1] == stride else None
    if b.device.type == "cpu" and not _force_triton():
        # every chunk writes its row of sums, the kernel zeroes T and every sample is written
        sums = np.empty((len(ck_t), 5), dtype=np.float64)
        sample = sample_k = np.empty(size, dtype=np.float64)
        eff = np.empty(max(esize, 1), dtype=np.float64)
        total = np.empty(5 + len(part["pos"]), dtype=np.float64)
        sp = prev[2] if prev is not None else sample  # without one: read, then ignored
        extra = (sums, sample, sp, eff, stride, every, sbase, total)
        _launch(prog, b, part, table, inverse, gptr, "step_stats", extra)
    else:
        sbase_t = part.setdefault("sbase_dev", {}).get(stride)
        if sbase_t is None:
            sbase_t = part["sbase_dev"][stride] = torch.from_numpy(sbase).to(b.device)
        n5 = len(ck_t) * 5
        both = torch.zeros(n5 + size + max(esize, 1), dtype=torch.float64, device=b.device)
        sums_t, sample_k, eff_t = both[:n5], both[n5 : n5 + size], both[n5 + size :]
        sp = prev[2] if prev is not None else sample_k
        extra = (sums_t, sample_k, sp, eff_t, stride, every, sbase_t)
        _launch(prog, b, part, table, inverse, gptr, "step_stats", extra)
        host = both.cpu().numpy()  # one transfer of the sums and the samples
        sums = host[:n5].reshape(-1, 5)
        per_tensor = np.bincount(ck_t, weights=sums[:, 0], minlength=len(part["pos"]))
        total = np.concatenate([sums.sum(axis=0), per_tensor])
        sample, eff = host[n5 : n5 + size], host[n5 + size :]
    part["prev"] = (serial, stride, sample_k)  # as the kernel reads it (device memory on CUDA)
    return total, sample, (eff[:esize] if esize else None), (prev[0] if prev else None)


def _step_stats(
    act: Active,
    measured: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, int | None]],
    stride: int,
    request: StatsRequest,
    serial: int,
) -> StepStats:
    """Assemble the group's :class:`~adaptlr.stats.StepStats` from each bucket's figures."""
    if len(measured) == 1 and act.parts[0]["all"]:  # one bucket: no gathering
        total, grad_sample, eff, _ = measured[0]
        totals, tensor_grad_sq = total[:5], total[5:]
    else:
        tensor_grad_sq = np.zeros(len(act.params), dtype=np.float64)
        totals = np.zeros(5, dtype=np.float64)
        for part, (total, *_) in zip(act.parts, measured):
            tensor_grad_sq[part["pos"]] = total[5:]
            totals += total[:5]
        grad_sample = np.concatenate([m[1] for m in measured])
        effs = [m[2] for m in measured]
        eff = None if any(e is None for e in effs) else np.concatenate(effs)  # type: ignore[arg-type]
    used = {m[3] for m in measured}
    prev = used.pop() if len(used) == 1 else None  # every bucket against the same step
    return StepStats(
        grad_sq=float(totals[0]),
        update_sq=float(totals[1]),
        param_sq=float(totals[2]),
        tensor_grad_sq=torch.from_numpy(tensor_grad_sq),
        grad_sample=torch.from_numpy(grad_sample),
        sample_key=("fused", act.serial, stride),
        eff_lr=torch.from_numpy(eff) if eff is not None and request.eff_lr else None,
        fused=True,
        serial=serial,
        sample_sq=float(totals[4]),
        prev_serial=prev,
        sample_dot_prev=float(totals[3]) if prev is not None else None,
    )


def _launch(
    prog: Program,
    b: Bucket,
    part: dict,
    table: np.ndarray,
    inverse: np.ndarray,
    gptr: np.ndarray,
    fn: str,
    extra: tuple = (),
) -> float:
    ck_t, ck_lo, ck_hi = part["chunks"]
    konst = prog.konst
    if b.device.type == "cpu" and not _force_triton():
        mod = backends.numba_module(prog, DTYPE_NAME[b.dtype], DTYPE_NAME[b.state_dtype])
        witness = part.get("witness")
        if witness is None:
            wdt = np.uint16 if b.dtype in LOW_PRECISION else DTYPE_NAME[b.dtype]
            witness = part["witness"] = np.empty(1, dtype=wdt)
        args = (part["pptr"], gptr, part["soff"], inverse, table, konst, ck_t, ck_lo, ck_hi)
        threads = threads_for(part)
        if threads == 1:  # the kernel compiled without numba's parallel runtime
            kernel, before = getattr(mod, fn + "_serial"), None
        else:
            kernel, before = getattr(mod, fn), _set_threads(threads)
        try:
            if fn.startswith("step"):
                kernel(*args, witness, *extra, *b.arrays)
                return 0.0
            partial = np.zeros(len(ck_t), dtype=np.float64)
            kernel(*args, witness, partial, *b.arrays)
            return float(partial.sum())
        finally:
            if before is not None:
                _set_threads(before)  # the user's own numba code keeps its thread count
    return _launch_triton(prog, b, part, table, inverse, gptr, konst, fn, extra)


def threads_for(part: dict) -> int:
    """CPU threads for a part's kernels: one per :data:`PARALLEL_GRAIN` elements (waking a
    thread pool costs more than a small step), at most numba's thread count and torch's
    (``torch.set_num_threads``, or ``OMP_NUM_THREADS``, which torchrun sets to 1 when it
    starts several processes), and 1 in a process that cannot use numba's pool (see
    :func:`_after_fork_in_child`)."""
    grain = part.get("grain_threads")
    if grain is None:
        elems = int(part["chunks"][2].sum() - part["chunks"][1].sum())
        grain = part["grain_threads"] = max(1, elems // PARALLEL_GRAIN)
    if grain == 1 or _POOL_FORKED[0]:
        return 1
    return max(1, min(grain, _max_threads(), torch.get_num_threads()))


#: True in a process forked from one that had started numba's OpenMP thread pool
_POOL_FORKED = [False]


def _after_fork_in_child() -> None:
    """GNU OpenMP's thread pool does not survive a fork: numba terminates a forked child that
    runs a parallel kernel on the pool its parent started ("fork() called from a process
    already using GNU OpenMP, this is unsafe"). Such a child steps on one thread. (Numba calls
    every other OpenMP fork-safe, and its other pools too; this treats every OpenMP alike.)"""
    numba = sys.modules.get("numba")
    if numba is None:
        return
    try:
        layer = numba.threading_layer()
    except ValueError:  # no pool started before the fork: the child starts its own
        return
    _POOL_FORKED[0] = _POOL_FORKED[0] or layer == "omp"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _set_threads(n: int) -> int:
    """Set numba's thread count for this thread; return the previous one."""
    import numba

    before = numba.get_num_threads()
    if n != before:
        numba.set_num_threads(n)
    return before


def _max_threads() -> int:
    import numba  # imported on the first fused CPU step only: it takes a while

    return numba.config.NUMBA_NUM_THREADS


#: no a*b+c contracted into one rounding: the reference rounds every operation (torch's own
#: kernels contract only inside one operation, e.g. ``add(a, b, alpha=c)``)
_NO_FMA = {"enable_fp_fusion": False}


def _launch_triton(prog, b, part, table, inverse, gptr, konst, fn, extra=()) -> float:  # type: ignore[no-untyped-def]
    mod = backends.triton_module(prog, DTYPE_NAME[b.dtype], DTYPE_NAME[b.state_dtype])
    dev = b.device
    dt = part.get("dev_tables")
    if dt is None:
        ck_t, ck_lo, ck_hi = part["chunks"]
        full = (ck_hi - ck_lo) == part["block"]
        dt = part["dev_tables"] = {
            "pptr": torch.from_numpy(part["pptr"]).to(dev),
            "soff": torch.from_numpy(part["soff"]).to(dev),
            # every chunk; then the full ones (``step_full``) and the shorter tails apart
            "all": tuple(torch.from_numpy(a).to(dev) for a in (ck_t, ck_lo, ck_hi)),
            "full": tuple(torch.from_numpy(a[full]).to(dev) for a in (ck_t, ck_lo, ck_hi)),
            "tail": tuple(torch.from_numpy(a[~full]).to(dev) for a in (ck_t, ck_lo, ck_hi)),
            "pptr_aligned": not (part["pptr"] % 16).any(),
        }
    # this step's tables in one copy to the device (each copy from pageable memory waits for
    # the device): all four are 8-byte values, the float64 ones carried as their bits; each
    # starts on 16 bytes, as Triton specialises its kernels on pointers that do (another
    # alignment would compile another variant)
    segs = [gptr, inverse, table.reshape(-1).view(np.int64), konst.view(np.int64)]
    starts = np.cumsum([0] + [len(a) + len(a) % 2 for a in segs]).tolist()
    host = np.zeros(starts[-1], dtype=np.int64)
    for a, at in zip(segs, starts):
        host[at : at + len(a)] = a
    tables = torch.from_numpy(host).to(dev)
    gptr_t, crow, coef, konst_t = (tables[at : at + len(a)] for a, at in zip(segs, starts))
    coef, konst_t = coef.view(torch.float64), konst_t.view(torch.float64)
    bufs = [b.buffers[k] for k in prog.buffer_keys]
    n = dt["all"][0].numel()
    if n == 0:
        return 0.0
    head = (dt["pptr"], gptr_t, dt["soff"], crow, coef, konst_t)
    args = (*head, *dt["all"])
    opts = {"NCOEF": table.shape[1], "BLOCK": part["block"], "num_warps": TRITON_WARPS, **_NO_FMA}
    if fn == "step":
        nfull, ntail = dt["full"][0].numel(), dt["tail"][0].numel()
        if nfull:
            aligned = bool(dt["pptr_aligned"] and not (gptr % 16).any())
            mod.step_full[(nfull,)](*head, *dt["full"], *bufs, ALIGNED=aligned, **opts)
        if ntail:
            mod.step[(ntail,)](*head, *dt["tail"], *bufs, **opts)
        return 0.0
    if fn.startswith("step"):
        getattr(mod, fn)[(n,)](*args, *extra, *bufs, **opts)
        return 0.0
    partial = torch.zeros(n, dtype=torch.float64, device=dev)
    getattr(mod, fn)[(n,)](*args, partial, *bufs, **opts)
    return float(partial.sum())
