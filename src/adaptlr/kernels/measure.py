"""The measured step: launching the kernel that measures itself, and assembling the group's
:class:`~adaptlr.stats.StepStats` from each segment's figures (see :mod:`adaptlr.stats`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..stats import PER_TENSOR, STATISTICS, StatsRequest, StepStats, eff_step
from . import backends, launch
from .plan import Active, Bucket, Segment
from .trace import Program

#: the kernels' sums, one column per statistic in :data:`adaptlr.stats.STATISTICS`' order,
#: then (``T`` only) the per-tensor sums of :data:`adaptlr.stats.PER_TENSOR`
NSTATS = len(STATISTICS)
COLUMN = {s.name: j for j, s in enumerate(STATISTICS)}


class SegmentStats(NamedTuple):
    """What the measuring kernel found over one segment."""

    #: Σg², Σ(θ_new − θ_old)², Σθ_new², the sampled gradient's products with the previous
    #: measured step's sample and with itself, then each tensor's Σg²
    total: np.ndarray
    #: the sampled gradient
    sample: np.ndarray
    #: η_t/σ_t at every :func:`~adaptlr.stats.eff_step`-th sampled element (``None`` without
    #: ``prog.eff``)
    eff: np.ndarray | None
    #: the serial of the previous sample, if the product with it was taken
    prev_serial: int | None


def sample_slots(seg: Segment, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """The sampled elements of a segment (every flat offset that is a multiple of ``stride``:
    in memory order, which for a parameter laid out e.g. channels_last is not its index
    order), cached per stride: per tensor, where its samples start in the sample (``sbase``,
    minus its first offset // stride, as the kernels index), and per sample, its tensor
    (index into the segment)."""
    cache = seg.slots
    if stride not in cache:
        soff = seg.soff
        numels = seg.bucket.numels[seg.local]
        first = -(-soff // stride)
        counts = np.maximum(-(-(soff + numels) // stride) - first, 0)
        tensor = np.repeat(np.arange(len(soff), dtype=np.int64), counts)
        sbase = (np.cumsum(counts) - counts - first).astype(np.int64)
        cache[stride] = (sbase, tensor)
    return cache[stride]


def launch_stats(
    prog: Program,
    b: Bucket,
    seg: Segment,
    table: np.ndarray,
    inverse: np.ndarray,
    gptr: np.ndarray,
    stride: int,
    serial: int,
    last: int,
) -> SegmentStats:
    """The step kernel that measures itself (the step numbered ``serial`` among measured ones;
    ``last``: the group's previous measured step). The sample is kept in ``seg.prev`` while
    the segment's tables live, for the next measured step's product with it.
    """
    ck_t = seg.chunks[0]
    sbase, tensor = sample_slots(seg, stride)
    size = len(tensor)
    every = eff_step(size)
    esize = -(-size // every) if prog.eff is not None else 0
    # the previous measured step's sample of this segment, where it sampled the same elements
    prev = seg.prev
    prev = prev if prev is not None and prev[0] == last and prev[1] == stride else None
    if backends.uses_numba(b.device):
        # every chunk writes its row of sums, the kernel zeroes T and every sample is written
        sums = np.empty((len(ck_t), NSTATS), dtype=np.float64)
        sample = sample_k = np.empty(size, dtype=np.float64)
        eff = np.empty(max(esize, 1), dtype=np.float64)
        total = np.empty(NSTATS + len(seg.pos), dtype=np.float64)
        sp = prev[2] if prev is not None else sample  # without one: read, then ignored
        extra = (sums, sample, sp, eff, stride, every, sbase, total)
        launch.run_kernel(prog, b, seg, table, inverse, gptr, "step_stats", extra)
    else:
        sbase_t = seg.sbase_dev.get(stride)
        if sbase_t is None:
            sbase_t = seg.sbase_dev[stride] = torch.from_numpy(sbase).to(b.device)
        ns = len(ck_t) * NSTATS
        both = torch.zeros(ns + size + max(esize, 1), dtype=torch.float64, device=b.device)
        sums_t, sample_k, eff_t = both[:ns], both[ns : ns + size], both[ns + size :]
        sp = prev[2] if prev is not None else sample_k
        extra = (sums_t, sample_k, sp, eff_t, stride, every, sbase_t)
        launch.run_kernel(prog, b, seg, table, inverse, gptr, "step_stats", extra)
        host = both.cpu().numpy()  # one transfer of the sums and the samples
        sums = host[:ns].reshape(-1, NSTATS)
        per_tensor = np.bincount(ck_t, weights=sums[:, COLUMN[PER_TENSOR]], minlength=len(seg.pos))
        total = np.concatenate([sums.sum(axis=0), per_tensor])
        sample, eff = host[ns : ns + size], host[ns + size :]
    seg.prev = (serial, stride, sample_k)  # as the kernel reads it (device memory on CUDA)
    return SegmentStats(
        total, sample, (eff[:esize] if esize else None), (prev[0] if prev else None)
    )


def step_stats(
    act: Active,
    measured: list[SegmentStats],
    stride: int,
    request: StatsRequest,
    serial: int,
) -> StepStats:
    """Assemble the group's :class:`~adaptlr.stats.StepStats` from each segment's figures."""
    if len(measured) == 1 and act.segments[0].covers_all:  # one bucket: no gathering
        total, grad_sample, eff, _ = measured[0]
        totals, tensor_grad_sq = total[:NSTATS], total[NSTATS:]
    else:
        tensor_grad_sq = np.zeros(len(act.params), dtype=np.float64)
        totals = np.zeros(NSTATS, dtype=np.float64)
        for seg, m in zip(act.segments, measured):
            tensor_grad_sq[seg.pos] = m.total[NSTATS:]
            totals += m.total[:NSTATS]
        grad_sample = np.concatenate([m.sample for m in measured])
        effs = [m.eff for m in measured]
        eff = None if any(e is None for e in effs) else np.concatenate(effs)  # type: ignore[arg-type]
    used = {m.prev_serial for m in measured}
    prev = used.pop() if len(used) == 1 else None  # every bucket against the same step
    figure = {name: float(totals[j]) for name, j in COLUMN.items()}
    return StepStats(
        grad_sq=figure["grad_sq"],
        update_sq=figure["update_sq"],
        param_sq=figure["param_sq"],
        tensor_grad_sq=torch.from_numpy(tensor_grad_sq),
        grad_sample=torch.from_numpy(grad_sample),
        sample_key=("fused", act.serial, stride),
        eff_lr=torch.from_numpy(eff) if eff is not None and request.eff_lr else None,
        fused=True,
        serial=serial,
        sample_sq=figure["sample_sq"],
        prev_serial=prev,
        sample_dot_prev=figure["sample_dot_prev"] if prev is not None else None,
    )
