"""Helpers the generated numba kernels import: raw addresses as arrays, NaN-propagating max/min.

Parameters and gradients are reached through their addresses (``Tensor.data_ptr()``), so a
step needs neither a copy of the gradients into a flat buffer nor a per-tensor call.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core.caching import FunctionCache
from numba.core.dispatcher import Dispatcher
from numba.core.runtime import rtsys
from numba.extending import intrinsic


@intrinsic
def address_as(typingctx, addr, witness):  # type: ignore[no-untyped-def]
    """``addr`` (an int64) as a pointer to elements of ``witness``'s dtype."""
    ptr = types.CPointer(witness.dtype)
    sig = ptr(addr, witness)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(ptr))

    return sig, codegen


@numba.njit(inline="always")
def nanmax(a, b):  # type: ignore[no-untyped-def]
    """``torch.maximum``: NaN if either operand is NaN."""
    # two selects, not branches, which LLVM makes a vmaxps and one blend: b > a is false
    # when either is NaN, so a's NaN comes through the first select, b's through the second;
    # a tie (+0, -0) gives a, as torch's scalar loop does (its vectorised one gives b)
    r = b if b > a else a
    return b if b != b else r


@numba.njit(inline="always")
def nanmin(a, b):  # type: ignore[no-untyped-def]
    """``torch.minimum``: NaN if either operand is NaN."""
    r = b if b < a else a  # as nanmax
    return b if b != b else r


@numba.njit(fastmath={"reassoc", "nsz"})
def acc_sq(acc, x):  # type: ignore[no-untyped-def]
    """``acc + x²`` for the monitor's sums of squares in the step kernel.

    Compiled on its own with reassociation allowed so that LLVM, after inlining it, vectorises
    the loop with this reduction in it; the update's own arithmetic (compiled without such
    flags) keeps its order and its results.
    """
    return acc + x * x


@numba.njit(fastmath={"reassoc", "nsz"})
def acc_add(acc, x):  # type: ignore[no-untyped-def]
    """``acc + x`` for the reduction kernels' float64 sums (as :func:`acc_sq`: reassociated,
    so that their loops vectorise)."""
    return acc + x


# -- low precision: bfloat16 and float16 values travel as uint16 bits, computed in float32 --


@intrinsic
def _f32_bits(typingctx, x):  # type: ignore[no-untyped-def]
    sig = types.uint32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def _bits_f32(typingctx, u):  # type: ignore[no-untyped-def]
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def f16_to_f32(typingctx, h):  # type: ignore[no-untyped-def]
    """IEEE half bits (uint16) as float32 (exact)."""
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return sig, codegen


@intrinsic
def f32_to_f16(typingctx, x):  # type: ignore[no-untyped-def]
    """float32 rounded to the nearest IEEE half (ties to even), as uint16 bits."""
    sig = types.uint16(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return sig, codegen


@numba.njit(inline="always")
def bf16_to_f32(h):  # type: ignore[no-untyped-def]
    """bfloat16 bits (uint16) as float32: the top half of its bits (exact)."""
    return _bits_f32(np.uint32(h) << np.uint32(16))


@numba.njit(inline="always")
def f32_to_bf16(x):  # type: ignore[no-untyped-def]
    """float32 rounded to the nearest bfloat16 (ties to even, as torch), as uint16 bits."""
    u = _f32_bits(np.float32(x))
    if x != x:
        return np.uint16((u >> np.uint32(16)) | np.uint32(0x40))  # a quiet NaN stays NaN
    u = u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
    return np.uint16(u >> np.uint32(16))


@numba.njit(inline="always")
def round_bf16(x):  # type: ignore[no-untyped-def]
    return bf16_to_f32(f32_to_bf16(x))


@numba.njit(inline="always")
def round_f16(x):  # type: ignore[no-untyped-def]
    return f16_to_f32(f32_to_f16(np.float32(x)))


# -- loading compiled kernels from numba's disk cache -----------------------------------------


class QuickLoadCache(FunctionCache):
    """numba's on-disk cache of one function, loaded without refreshing numba's whole CPU target.

    Before it loads a cached function numba refreshes its CPU target: it imports every registry
    of implementations it has (and, where scipy is installed, ``scipy.linalg`` to look for a
    BLAS): with scipy installed, most of a new process's first step, numba already imported.
    Rebuilding compiled code needs none of those registries, only numba's runtime (NRT: the
    generated code's arrays use it, and a load without it crashed the process). Code compiled
    later in the process, a cache miss included, goes through numba's compiler, which
    refreshes the target itself.
    """

    def load_overload(self, sig, target_context):  # type: ignore[no-untyped-def]
        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)
        return None  # the guard swallowed an I/O error: compile instead


# the private methods QuickLoadCache relies on (numba 0.59 to 0.68 have them); otherwise
# numba's own loading, slower but the same result
QUICK_LOAD = all(
    hasattr(FunctionCache, name) for name in ("_load_overload", "_guard_against_spurious_io_errors")
) and hasattr(rtsys, "initialize")


def cached_njit(**options):  # type: ignore[no-untyped-def]
    """``numba.njit(cache=True, **options)``, loaded from the disk cache by
    :class:`QuickLoadCache`."""

    def wrap(fn):  # type: ignore[no-untyped-def]
        disp = numba.njit(cache=True, **options)(fn)
        if QUICK_LOAD and isinstance(disp, Dispatcher):  # (not the plain function that
            disp._cache = QuickLoadCache(disp.py_func)  # NUMBA_DISABLE_JIT=1 gives back)
        return disp

    return wrap


__all__ = [
    "address_as", "cached_njit", "nanmax", "nanmin", "np", "bf16_to_f32", "f32_to_bf16",
    "round_bf16", "f16_to_f32", "f32_to_f16", "round_f16",
]  # fmt: skip
