"""Fast paths: one fused pass over flat buffers per (device, dtype) group.

Work in progress (issue 4): until the fused kernels land, every step takes the reference
path in :mod:`adaptlr.core`.
"""

from __future__ import annotations

from typing import Any


def fused_step(optimizer: Any, group: dict, params: list, transform: Any) -> bool:
    """Apply one step of ``group`` on the fast path; ``False`` means "take the reference path"."""
    return False
