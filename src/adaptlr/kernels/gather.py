"""Gathering a group's step: its parameters with a gradient, their gradients and addresses.

Parameters and gradients are *not* copied: kernels reach them through their addresses, so a
gradient set to ``None`` by ``zero_grad()`` and recreated by autograd costs nothing extra.
What :func:`gather` reads is what the plan's checks (:func:`.plan.still_valid`) compare.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .plan import Active


@dataclass
class Gathered:
    """A group's parameters that have a gradient this step, and their gradients.

    ``dense``: every one of them and its gradient are plain tensors, both contiguous or both
    with the same strides (listed in ``strided``); ``pptrs`` and ``gptrs`` are then their
    addresses, and ``dtypes`` and ``numels`` the parameters' (else ``None``). Whether those
    strides make a dense block is the plan's check.

    Attributes:
        params: the parameters that have a gradient, in group order.
        grads: their gradients, in the same order.
        dense: whether the fused kernels can take them as they are (see above).
        pptrs: the parameters' addresses, where ``dense``; else None.
        gptrs: the gradients' addresses, where ``dense``; else None.
        strided: where ``dense``, ``(position, strides)`` of each parameter that is not
            contiguous (empty where all are); else None.
        dtypes: each parameter's dtype, where ``dense``; else None.
        numels: each parameter's number of elements, where ``dense``; else None.
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
    the caches, each separate pass over many tensors (a C-level ``map``) finds them cold
    again, so one loop costs less than the six passes it replaces.
    A parameter's address alone does not say that it is the data a plan was made for: freed
    memory is reused, and ``p.data = p.data.double()`` then ``.bfloat16()`` can put other
    data there; its dtype and size are read too.

    ``expect``: the active set of the group's last fused step (see
    :meth:`adaptlr.kernels.FastPath.last_active`). Where it covers as many parameters as the
    group and none of them is strided, each parameter is compared with it as it is read, and
    the lists returned are its own; the full loop runs from the start at the first difference.
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

    Comparing as it reads spares the three lists that :func:`.plan.still_valid` would
    compare, and the two integers per tensor they hold.
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
