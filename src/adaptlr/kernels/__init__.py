"""Fast paths: one fused pass over flat buffers per (device, dtype) group.

The kernels are *generated* from the chain: :mod:`.trace` runs every part's ``apply`` on
symbols (:mod:`.programs` caches the result), :mod:`.codegen` writes a numba kernel (CPU,
``prange`` over chunks) and a Triton kernel (CUDA; on the CPU under ``TRITON_INTERPRET=1`` for
tests) from the traced graph, and :mod:`.backends` compiles them. No optimizer's formula is
written here. A group's state lives in flat buffers whose views are the usual
``optimizer.state[p][key]`` entries (:mod:`.plan`); a step gathers its parameters
(:mod:`.gather`), checks that its plan still holds, runs the kernels (:mod:`.step`,
:mod:`.launch`) and measures itself when asked (:mod:`.measure`). What a part needs summed
over many elements before its coefficients (a global norm, the :class:`~adaptlr.core.Sum`
terms a part declares) is a *reduction* (:class:`.trace.Reduction`): a pass over the group's
buckets before the update pass, generated from the part's ``sum_terms``, whose totals (per
group, and per tensor for ``scope="tensor"``) come back to the host once per reduction; a
part's scalars kept once per group (``Part.shared``) are read from and written back to the
group. The state dicts count their changes (:mod:`.watched`); DTensor parameters are stepped
on their shards (:mod:`.dtensor`); tensor layouts are in :mod:`.layout`.

:class:`FastPath` is the object :class:`adaptlr.Optimizer` owns: its :meth:`FastPath.step`
runs each group unless the group has ``fused=False``. It returns ``False`` (the reference path
then runs) where the fast path cannot hold, with one warning per optimizer and reason:
numba/Triton missing, parameters whose elements do not fill one block of memory (dense layouts
such as ``channels_last`` are stepped in place), a part whose ``apply`` cannot be traced.

Under ``torch.compile`` the whole step is one opaque call (:func:`opaque_to_compile`): dynamo
neither traces it nor runs numba's Python under its frame hook.

bf16/fp16 parameters are stepped with their state (float32 by default, or the group's
``state_dtype``) rounding exactly as the reference path's torch operations do; DTensor
parameters (FSDP2) are stepped on each process's local shard, their state entries DTensors
over the flat buffers, a global norm or a part's sums all-reduced over their mesh.
"""

from __future__ import annotations

from .backends import use_triton_on_cpu
from .dtensor import has_dtensor, shard
from .fastpath import FastPath, FusedFallbackWarning, user_stacklevel
from .gather import Gathered
from .opaque import opaque_to_compile
from .programs import program_for
from .watched import WatchedState

__all__ = [
    "FastPath",
    "FusedFallbackWarning",
    "Gathered",
    "WatchedState",
    "has_dtensor",
    "opaque_to_compile",
    "program_for",
    "shard",
    "use_triton_on_cpu",
    "user_stacklevel",
]
