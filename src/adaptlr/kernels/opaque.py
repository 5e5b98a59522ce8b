"""``Optimizer.step`` as one opaque call under ``torch.compile``: dynamo neither traces it nor
runs numba's Python under its frame hook."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["OPAQUE_REASON", "opaque_to_compile"]


#: why torch.compile runs an adaptlr step between its graphs (dynamo shows it, e.g. under
#: fullgraph=True, where it is the error)
OPAQUE_REASON = (
    "adaptlr: an optimizer step runs outside torch.compile's graphs, as one call (one graph "
    "break, as for torch.optim's fused Adam): its fast path is a generated numba/Triton kernel "
    "on raw tensor addresses, and its reference path (fused=False) computes each step's "
    "coefficients in Python from the tensors' step counts. With fullgraph=True, compile the "
    "forward and backward only and call optimizer.step() outside the compiled function"
)

_Step = TypeVar("_Step", bound=Callable[..., Any])


def opaque_to_compile(step: _Step) -> _Step:
    """``Optimizer.step`` that torch.compile (dynamo) calls as one opaque function.

    Dynamo must not run the step: a graph break leaves its frame hook on for what the breaking
    call runs, so numba's own Python (its compiler when a kernel is compiled or loaded from disk,
    its thread-pool launch) was captured and rewritten by dynamo; and tracing the step itself
    reads addresses, numpy tables and per-tensor step counts on the host. The reference path is
    not traced either: its coefficients are Python numbers of the step count (recompiles, and
    data-dependent branches fullgraph refuses), and dynamo shows the traced step every group
    with ``capturable=True``, which adaptlr refuses. The step then runs with dynamo turned off
    (``torch.compiler.disable``), exactly as in eager mode. A closure is called first, where
    dynamo can trace it, as the step would call it. Nothing here imports dynamo (a slow import)
    before torch.compile has.

    Args:
        step: the ``step(self, closure=None)`` method to wrap.
    """

    @functools.wraps(step)
    def wrapper(self: Any, closure: Callable[[], Any] | None = None) -> Any:
        if not torch.compiler.is_compiling():
            return step(self, closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        _outside_graphs(step, self)
        return loss

    return wrapper  # type: ignore[return-value]


def _outside_graphs(step: Callable[..., Any], optimizer: Any) -> None:
    # Marked as torch.compiler.disable marks what it wraps, so that dynamo stops at this call
    # with adaptlr's reason (the error fullgraph=True gives); what runs it then is plain Python,
    # where dynamo is imported and the step can be wrapped for real.
    opaque = _OPAQUE.get(step)
    if opaque is None:
        opaque = _OPAQUE[step] = torch.compiler.disable(step, reason=OPAQUE_REASON)
    opaque(optimizer)


_outside_graphs._torchdynamo_disable = True  # type: ignore[attr-defined]
_outside_graphs._torchdynamo_disable_msg = OPAQUE_REASON  # type: ignore[attr-defined]
#: each step function with dynamo turned off, made the first time a compiled caller reaches it
_OPAQUE: dict[Callable[..., Any], Callable[..., Any]] = {}
