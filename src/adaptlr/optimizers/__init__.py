"""Named optimizers: each a chain of :mod:`adaptlr.core` parts, with torch.optim's interface."""

from .adagrad import Adagrad
from .adam import Adam, AdamW
from .lecture import RootMeanSquare
from .nadam import NAdam
from .radam import RAdam
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "NAdam", "RAdam", "RMSprop", "RootMeanSquare"]
