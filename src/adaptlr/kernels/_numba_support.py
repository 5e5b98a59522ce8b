"""Helpers the generated numba kernels import: raw addresses as arrays, NaN-propagating max/min.

Parameters and gradients are reached through their addresses (``Tensor.data_ptr()``), so a
step needs neither a copy of the gradients into a flat buffer nor a per-tensor call.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
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
    if a != a:
        return a
    if b != b:
        return b
    return a if a > b else b


@numba.njit(inline="always")
def nanmin(a, b):  # type: ignore[no-untyped-def]
    """``torch.minimum``: NaN if either operand is NaN."""
    if a != a:
        return a
    if b != b:
        return b
    return a if a < b else b


__all__ = ["address_as", "nanmax", "nanmin", "np"]
