"""Launching a segment's kernels: numba on the CPU (with its thread count), Triton on CUDA.

Each numba kernel also exists as ``*_serial``, compiled without numba's parallel runtime, for
a step too small to share out, a process where torch runs on one thread, and a process forked
after its parent had started numba's GNU OpenMP pool (:func:`threads_for`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..core.base import LOW_PRECISION
from . import backends
from .layout import DTYPE_NAME
from .plan import Bucket, Segment
from .trace import Program

#: warps per Triton program (Triton's own default); ``benchmarks/gpu_check.py`` sweeps both
TRITON_WARPS = int(os.environ.get("ADAPTLR_TRITON_WARPS", "4"))
#: elements per thread below which fewer CPU threads are woken
PARALLEL_GRAIN = 1 << 17


def run_kernel(
    prog: Program,
    b: Bucket,
    seg: Segment,
    table: np.ndarray,
    inverse: np.ndarray,
    gptr: np.ndarray,
    fn: str,
    extra: tuple = (),
) -> np.ndarray | Tensor | None:
    """Run kernel ``fn`` (``step``, ``step_stats`` or ``reduce{k}``) over ``seg`` of bucket
    ``b``, with coefficient rows ``table`` (``inverse``: each tensor's row) and gradient
    addresses ``gptr``; ``extra``: the measuring kernel's arguments. A reduction kernel
    returns its sums per chunk and term (where it ran: numpy for numba, a device tensor for
    Triton; see :func:`reduction_totals`), a step kernel ``None``."""
    ck_t, ck_lo, ck_hi = seg.chunks
    konst = prog.konst
    if backends.uses_numba(b.device):
        mod = backends.numba_module(prog, DTYPE_NAME[b.dtype], DTYPE_NAME[b.state_dtype])
        witness = seg.witness
        if witness is None:
            wdt = np.uint16 if b.dtype in LOW_PRECISION else DTYPE_NAME[b.dtype]
            witness = seg.witness = np.empty(1, dtype=wdt)
        args = (seg.pptr, gptr, seg.soff, inverse, table, konst, ck_t, ck_lo, ck_hi)
        threads = threads_for(seg)
        if threads == 1:  # the kernel compiled without numba's parallel runtime
            kernel, before = getattr(mod, fn + "_serial"), None
        else:
            kernel, before = getattr(mod, fn), _set_threads(threads)
        try:
            if fn.startswith("step"):
                kernel(*args, witness, *extra, *b.arrays)
                return None
            partial = np.zeros((len(ck_t), _terms_of(prog, fn)), dtype=np.float64)
            kernel(*args, witness, partial, *b.arrays)
            return partial
        finally:
            if before is not None:
                _set_threads(before)  # the user's own numba code keeps its thread count
    return _launch_triton(prog, b, seg, table, inverse, gptr, konst, fn, extra)


def _terms_of(prog: Program, fn: str) -> int:
    """How many terms the reduction kernel ``fn`` (``reduce{k}``) sums."""
    return len(prog.reductions[int(fn.removeprefix("reduce"))].terms)


def reduction_totals(
    seg: Segment, partial: np.ndarray | Tensor, per_tensor: list[int]
) -> np.ndarray | Tensor:
    """A reduction kernel's sums over ``seg`` (``partial``: per chunk and term), where the
    kernel left them: each term's total over the segment, then for the terms ``per_tensor``
    each tensor's totals (tensor-major), as one flat float64 array."""
    ck_t = seg.chunks[0]
    if isinstance(partial, np.ndarray):
        parts = [partial.sum(axis=0)]
        if per_tensor:
            own = [np.bincount(ck_t, partial[:, j], len(seg.pos)) for j in per_tensor]
            parts.append(np.stack(own, axis=1).reshape(-1))
        return np.concatenate(parts)
    total = partial.sum(dim=0)
    if not per_tensor:
        return total
    own = torch.zeros(len(seg.pos), len(per_tensor), dtype=torch.float64, device=partial.device)
    chunk_tensor = seg.dev_tables.chunks[0] if seg.dev_tables is not None else None
    if chunk_tensor is None:  # (no launch made the tables: no chunk either)
        chunk_tensor = torch.from_numpy(ck_t).to(partial.device)
    own.index_add_(0, chunk_tensor, partial[:, per_tensor])
    return torch.cat([total, own.reshape(-1)])


def read_back(values: list[np.ndarray | Tensor]) -> list[np.ndarray]:
    """``values`` (from :func:`reduction_totals`) on the host: device tensors in one transfer
    per device, the one host synchronisation a reduction costs (numba's are host memory)."""
    out: list[np.ndarray | None] = [v if isinstance(v, np.ndarray) else None for v in values]
    by_device: dict[torch.device, list[int]] = {}
    for i, v in enumerate(values):
        if isinstance(v, Tensor):
            by_device.setdefault(v.device, []).append(i)
    for idx in by_device.values():
        host = torch.cat([values[i] for i in idx]).cpu().numpy()  # type: ignore[misc]
        at = 0
        for i in idx:
            n = values[i].numel()  # type: ignore[union-attr]
            out[i] = host[at : at + n]
            at += n
    return out  # type: ignore[return-value]


def threads_for(seg: Segment) -> int:
    """CPU threads for a segment's kernels: one per :data:`PARALLEL_GRAIN` elements (waking a
    thread pool costs more than a small step), at most numba's thread count and torch's
    (``torch.set_num_threads``, or ``OMP_NUM_THREADS``, which torchrun sets to 1 when it
    starts several processes), and 1 in a process that cannot use numba's pool (see
    :func:`_after_fork_in_child`)."""
    grain = seg.grain_threads
    if grain is None:
        elems = int(seg.chunks[2].sum() - seg.chunks[1].sum())
        grain = seg.grain_threads = max(1, elems // PARALLEL_GRAIN)
    if grain == 1 or _POOL_FORKED[0]:
        return 1
    return max(1, min(grain, max_threads(), torch.get_num_threads()))


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


def max_threads() -> int:
    """Numba's thread count (``NUMBA_NUM_THREADS``)."""
    import numba  # imported on the first fused CPU step only: it takes a while

    return numba.config.NUMBA_NUM_THREADS


#: no a*b+c contracted into one rounding: the reference rounds every operation (torch's own
#: kernels contract only inside one operation, e.g. ``add(a, b, alpha=c)``)
_NO_FMA = {"enable_fp_fusion": False}


@dataclass
class DeviceTables:
    """A segment's tables on its device, for the Triton kernels (made on its first launch)."""

    pptr: Tensor
    soff: Tensor
    #: every chunk (tensor, first and end element); then the full ones (``step_full``) and the
    #: shorter tails apart
    chunks: tuple[Tensor, Tensor, Tensor]
    full: tuple[Tensor, Tensor, Tensor]
    tail: tuple[Tensor, Tensor, Tensor]
    #: every parameter address a multiple of 16 bytes
    pptr_aligned: bool


def _device_tables(seg: Segment, dev: torch.device) -> DeviceTables:
    ck_t, ck_lo, ck_hi = seg.chunks
    full = (ck_hi - ck_lo) == seg.block
    return DeviceTables(
        pptr=torch.from_numpy(seg.pptr).to(dev),
        soff=torch.from_numpy(seg.soff).to(dev),
        chunks=tuple(torch.from_numpy(a).to(dev) for a in (ck_t, ck_lo, ck_hi)),  # type: ignore[arg-type]
        full=tuple(torch.from_numpy(a[full]).to(dev) for a in (ck_t, ck_lo, ck_hi)),  # type: ignore[arg-type]
        tail=tuple(torch.from_numpy(a[~full]).to(dev) for a in (ck_t, ck_lo, ck_hi)),  # type: ignore[arg-type]
        pptr_aligned=not bool((seg.pptr % 16).any()),
    )


def _launch_triton(prog, b, seg, table, inverse, gptr, konst, fn, extra=()):  # type: ignore[no-untyped-def]
    mod = backends.triton_module(prog, DTYPE_NAME[b.dtype], DTYPE_NAME[b.state_dtype])
    dev = b.device
    dt = seg.dev_tables
    if dt is None:
        dt = seg.dev_tables = _device_tables(seg, dev)
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
    n = dt.chunks[0].numel()
    if n == 0:
        return (
            None
            if fn.startswith("step")
            else torch.zeros(0, _terms_of(prog, fn), dtype=torch.float64, device=dev)
        )
    head = (dt.pptr, gptr_t, dt.soff, crow, coef, konst_t)
    args = (*head, *dt.chunks)
    opts = {"NCOEF": table.shape[1], "BLOCK": seg.block, "num_warps": TRITON_WARPS, **_NO_FMA}
    if fn == "step":
        nfull, ntail = dt.full[0].numel(), dt.tail[0].numel()
        if nfull:
            aligned = bool(dt.pptr_aligned and not (gptr % 16).any())
            mod.step_full[(nfull,)](*head, *dt.full, *bufs, ALIGNED=aligned, **opts)
        if ntail:
            mod.step[(ntail,)](*head, *dt.tail, *bufs, **opts)
        return None
    if fn.startswith("step"):
        getattr(mod, fn)[(n,)](*args, *extra, *bufs, **opts)
        return None
    partial = torch.zeros(n, _terms_of(prog, fn), dtype=torch.float64, device=dev)
    getattr(mod, fn)[(n,)](*args, partial, *bufs, **opts)
    return partial
