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
) -> float:
    """Run kernel ``fn`` (``step``, ``step_stats`` or ``norm{k}``) over ``seg`` of bucket
    ``b``, with coefficient rows ``table`` (``inverse``: each tensor's row) and gradient
    addresses ``gptr``; ``extra``: the measuring kernel's arguments. A norm kernel's sum of
    squares is returned, else 0."""
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
                return 0.0
            partial = np.zeros(len(ck_t), dtype=np.float64)
            kernel(*args, witness, partial, *b.arrays)
            return float(partial.sum())
        finally:
            if before is not None:
                _set_threads(before)  # the user's own numba code keeps its thread count
    return _launch_triton(prog, b, seg, table, inverse, gptr, konst, fn, extra)


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


def _launch_triton(prog, b, seg, table, inverse, gptr, konst, fn, extra=()) -> float:  # type: ignore[no-untyped-def]
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
        return 0.0
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
        return 0.0
    if fn.startswith("step"):
        getattr(mod, fn)[(n,)](*args, *extra, *bufs, **opts)
        return 0.0
    partial = torch.zeros(n, dtype=torch.float64, device=dev)
    getattr(mod, fn)[(n,)](*args, partial, *bufs, **opts)
    return float(partial.sum())
