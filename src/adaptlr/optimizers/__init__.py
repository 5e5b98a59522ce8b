"""Named optimizers: each a chain of :mod:`adaptlr.core` parts, with torch.optim's interface."""

from .adabound import AdaBound, AMSBound
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .lookahead import Lookahead
from .nadam import NAdam
from .radam import RAdam
from .rmsprop import RMSprop
from .root_mean_square import RootMeanSquare
from .sgd import SGD
from .sgdw import SGDW

__all__ = [
    "AMSBound",
    "SGD",
    "SGDW",
    "AdaBound",
    "Adagrad",
    "Adam",
    "AdamW",
    "Lookahead",
    "NAdam",
    "RAdam",
    "RMSprop",
    "RootMeanSquare",
]
