"""adaptlr: the learning rate cannot be one-size-fits-all.

Every optimizer here is θ_{t+1} = θ_t − (η_t/σ_t)·m_t, composed from the parts in
:mod:`adaptlr.core`; the named ones are drop-in replacements for torch.optim's.
"""

from . import core
from .optimizers import SGD, Adagrad, Adam, AdamW, NAdam, RAdam, RMSprop, RootMeanSquare
from .torch_optim import Optimizer

__version__ = "0.1.0"

__all__ = [
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "NAdam",
    "Optimizer",
    "RAdam",
    "RMSprop",
    "RootMeanSquare",
    "core",
    "__version__",
]
