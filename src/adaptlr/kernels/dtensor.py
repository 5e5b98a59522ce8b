"""FSDP2's DTensor parameters: recognising them and reaching this process's shard.

Kernels run on each process's local shard of a DTensor; nothing here imports
``torch.distributed.tensor`` (see :func:`dtensor_class`).
"""

from __future__ import annotations

import sys
from typing import Any

from torch import Tensor


def dtensor_class() -> Any:
    """FSDP2's DTensor class, or None where nothing has imported it.

    Read from ``sys.modules`` instead of imported here: importing ``torch.distributed.tensor``
    is slow (it pulls in sympy), and a process holding DTensor parameters has imported it
    already (it made them).
    """
    mod = sys.modules.get("torch.distributed.tensor")
    return getattr(mod, "DTensor", None)


def has_dtensor(params: list[Tensor]) -> bool:
    """Whether any of ``params`` is a DTensor (one C-level pass over their types).

    Args:
        params: tensors (a param group's ``"params"``).
    """
    cls = dtensor_class()
    return cls is not None and any(issubclass(t, cls) for t in set(map(type, params)))


def shard(t: Tensor) -> Tensor:
    """This process's shard of a DTensor; any other tensor itself.

    Args:
        t: a tensor or a DTensor.
    """
    cls = dtensor_class()
    return t.to_local() if cls is not None and isinstance(t, cls) else t
