"""Named optimizers: each a chain of :mod:`adaptlr.core` parts, with torch.optim's interface."""

from .adabound import AdaBound, AMSBound
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .auto import Auto
from .averager import PolynomialDecayAverager
from .dadapt import DAdaptAdaGrad, DAdaptAdam, DAdaptSGD
from .dog import DoG, LDoG
from .lookahead import Lookahead
from .nadam import NAdam
from .prodigy import Prodigy
from .radam import RAdam
from .rmsprop import RMSprop
from .root_mean_square import RootMeanSquare
from .schedule_free import AdamWScheduleFree, RAdamScheduleFree, SGDScheduleFree
from .sgd import SGD
from .sgdw import SGDW
from .swats import SWATS

__all__ = [
    "AMSBound",
    "SGD",
    "SGDW",
    "SGDScheduleFree",
    "SWATS",
    "AdaBound",
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
    "PolynomialDecayAverager",
    "Lookahead",
    "NAdam",
    "Prodigy",
    "RAdam",
    "RAdamScheduleFree",
    "RMSprop",
    "RootMeanSquare",
]
