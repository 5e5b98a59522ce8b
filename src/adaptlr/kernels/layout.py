"""How a tensor lies in memory, as the kernels read it: real dtypes, density, strides, lazy
views, and views of the flat state buffers laid out as their parameters.

A parameter need not be contiguous, only *dense*: its elements fill one block of memory, each
once (e.g. a convolution's weight in ``channels_last``). The kernels step such a block as
``numel`` elements from its address; its state views get its strides and its gradient must
have them too (autograd makes it so; another is read through a copy laid out as the
parameter), so that the i-th element in memory of each is the same element of the parameter.
A lazy conjugate or negation (``x.conj()``, whose memory holds ``x``) is read through a copy
where it is a gradient; a parameter that is one takes the reference path.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..core.base import LOW_PRECISION

#: the dtype of each parameter dtype's real view (a complex tensor is stepped as its reals)
REAL = {
    torch.float32: torch.float32,
    torch.float64: torch.float64,
    torch.complex64: torch.float32,
    torch.complex128: torch.float64,
    torch.bfloat16: torch.bfloat16,
    torch.float16: torch.float16,
}
#: the generated kernels' names of the real dtypes
DTYPE_NAME = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.bfloat16: "bfloat16",
    torch.float16: "float16",
}


def as_numpy(t: Tensor) -> np.ndarray:
    """A CPU tensor as numpy; bf16/fp16 as their uint16 bits (numpy has no bfloat16), as the
    numba kernels take them."""
    return t.view(torch.uint16).numpy() if t.dtype in LOW_PRECISION else t.numpy()


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


def view_like(flat: Tensor, off: int, n: int, p: Tensor) -> Tensor:
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


def in_layout(g: Tensor, stride: tuple[int, ...] | None) -> Tensor:
    """``g``, or a copy of it laid out as its parameter (``stride``; ``None``: contiguous),
    any lazy conjugate or negation applied."""
    if not lazy(g) and (g.is_contiguous() if stride is None else g.stride() == stride):
        return g
    if stride is None:
        return torch.empty(g.shape, dtype=g.dtype, device=g.device).copy_(g)
    return torch.empty_strided(g.shape, stride, dtype=g.dtype, device=g.device).copy_(g)
