"""adaptlr: the learning rate cannot be one-size-fits-all.

Every optimizer here is θ_{t+1} = θ_t − (η_t/σ_t)·m_t, composed from the parts in
:mod:`adaptlr.core`; the named ones are drop-in replacements for torch.optim's.

``adaptlr.monitor`` and ``adaptlr.lab`` are imported on first use (``adaptlr.lab`` needs the
``lab`` extra: matplotlib and pillow).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# schedules is eager, not lazy: importing it registers every Schedule class with
# torch.load(weights_only=True), which a checkpoint holding a group's lr_schedule needs
from . import checkpoint, core, kernels, schedules, stats  # (the adapter needs them all)
from .lr_finder import LRFinderResult, lr_find
from .optimizers import (
    SGD,
    SGDW,
    SWATS,
    AdaBound,
    Adagrad,
    Adam,
    AdamW,
    AdamWScheduleFree,
    AMSBound,
    Auto,
    DAdaptAdaGrad,
    DAdaptAdam,
    DAdaptSGD,
    DoG,
    LDoG,
    Lookahead,
    NAdam,
    PolynomialDecayAverager,
    Prodigy,
    RAdam,
    RAdamScheduleFree,
    RMSprop,
    RootMeanSquare,
    SGDScheduleFree,
    schedule_free,  # adaptlr.schedule_free.update_bn
)
from .torch_optim import Optimizer, ScheduleOverrideWarning

__version__ = "0.1.0"

# submodules imported on first attribute access (PEP 562): lab pulls in matplotlib, which
# would make `import adaptlr` much slower than `import torch`; most programs never touch them
_LAZY = ("lab", "monitor")

__all__ = [
    "SGD",
    "SGDW",
    "SGDScheduleFree",
    "SWATS",
    "AdaBound",
    "AMSBound",
    "Lookahead",
    "Adagrad",
    "Adam",
    "AdamW",
    "AdamWScheduleFree",
    "Auto",
    "DAdaptAdaGrad",
    "DAdaptAdam",
    "DAdaptSGD",
    "DoG",
    "LDoG",
    "LRFinderResult",
    "NAdam",
    "PolynomialDecayAverager",
    "Prodigy",
    "Optimizer",
    "RAdam",
    "RAdamScheduleFree",
    "RMSprop",
    "RootMeanSquare",
    "ScheduleOverrideWarning",
    "checkpoint",
    "core",
    "kernels",
    "lr_find",
    "monitor",
    "schedule_free",
    "schedules",
    "stats",
    "__version__",
]
# "lab" is left out of __all__ so that `from adaptlr import *` needs no matplotlib


def __getattr__(name: str) -> ModuleType:
    if name in _LAZY:
        # import_module binds the submodule on this package, so this runs once per name
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_LAZY))
