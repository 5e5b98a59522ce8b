"""Param-group keys that the adapter, checkpoints and the lab share: each list has this one home.

A leaf module (it imports nothing of adaptlr), so that :mod:`adaptlr.checkpoint`, which
:mod:`adaptlr.torch_optim` imports, can use the keys without importing the adapter back.
"""

from __future__ import annotations

#: torch.optim arguments that select an implementation, not the math, and adaptlr's own
#: arguments about how a step runs: kept in the groups for compatibility, never passed to a chain.
IMPLEMENTATION_KEYS = (
    "foreach",
    "capturable",
    "differentiable",
    "fused",
    "state_dtype",
    "nonfinite",
)

#: the param-group key where a schedule given as ``lr`` lives; ``group["lr"]`` holds its value
SCHEDULE_KEY = "lr_schedule"
