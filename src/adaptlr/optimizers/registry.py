"""Capabilities as data: one table of every named optimizer, which tests and benchmarks iterate.

Each entry names the class and a table of hyperparameter sets that together switch on every
option the optimizer has; the torch.optim counterpart is the class's own ``torch_class``
(``None`` where torch has none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .adabound import AdaBound, AMSBound
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .nadam import NAdam
from .radam import RAdam
from .rmsprop import RMSprop
from .root_mean_square import RootMeanSquare
from .sgd import SGD
from .sgdw import SGDW


@dataclass(frozen=True)
class OptimizerInfo:
    name: str
    cls: type
    #: hyperparameter sets torch.optim also accepts (compared with it)
    configs: tuple[dict[str, Any], ...]
    #: hyperparameter sets with no torch counterpart (the lecture's forms)
    own_configs: tuple[dict[str, Any], ...] = ()
    dtypes: tuple[torch.dtype, ...] = field(
        default=(torch.float64, torch.float32, torch.bfloat16, torch.float16)
    )

    @property
    def torch_cls(self) -> type | None:
        """torch.optim's class with the same arguments and results, if any."""
        return self.cls.torch_class

    @property
    def all_configs(self) -> tuple[dict[str, Any], ...]:
        return self.configs + self.own_configs


REGISTRY: dict[str, OptimizerInfo] = {
    info.name: info
    for info in [
        OptimizerInfo("sgd", SGD, (
            {"lr": 0.1},
            {"lr": 0.05, "momentum": 0.9},
            {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01},
            {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
            {"lr": 0.05, "momentum": 0.5, "maximize": True},
        )),
        OptimizerInfo("adagrad", Adagrad, (
            {"lr": 0.1},
            {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1},
            {"lr": 0.1, "initial_accumulator_value": 0.5, "eps": 1e-6},
            {"lr": 0.1, "maximize": True, "lr_decay": 0.01},
        )),
        OptimizerInfo("rmsprop", RMSprop, (
            {"lr": 0.01},
            {"lr": 0.01, "alpha": 0.9, "momentum": 0.8},
            {"lr": 0.01, "centered": True, "weight_decay": 0.1},
            {"lr": 0.01, "centered": True, "momentum": 0.5, "maximize": True},
        ), own_configs=(
            {"lr": 0.01, "init": "first_gradient"},
            {"lr": 0.01, "init": "first_gradient", "momentum": 0.5, "weight_decay": 0.1},
        )),
        OptimizerInfo("adam", Adam, (
            {"lr": 0.01},
            {"lr": 0.01, "betas": (0.8, 0.99), "amsgrad": True},
            {"lr": 0.01, "weight_decay": 0.1},
            {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "amsgrad": True},
            {"lr": 0.01, "maximize": True, "eps": 1e-3},
        )),
        OptimizerInfo("adamw", AdamW, (
            {"lr": 0.01},
            {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True},
            {"lr": 0.01, "maximize": True, "betas": (0.5, 0.9)},
        )),
        OptimizerInfo("nadam", NAdam, (
            {"lr": 0.01},
            {"lr": 0.01, "momentum_decay": 0.01, "weight_decay": 0.1},
            {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
            {"lr": 0.01, "maximize": True},
        )),
        OptimizerInfo("radam", RAdam, (
            {"lr": 0.01},
            {"lr": 0.01, "weight_decay": 0.1},
            {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
            {"lr": 0.01, "maximize": True, "betas": (0.9, 0.99)},
        )),
        OptimizerInfo("rootmeansquare", RootMeanSquare, (), own_configs=(
            {"lr": 0.01},
            {"lr": 0.01, "weight_decay": 0.1, "maximize": True},
        )),
        # the course's optimizers: no torch counterpart (tests/optimizers/test_course_bounds.py
        # compares them with the adabound and torch-optimizer packages)
        OptimizerInfo("adabound", AdaBound, (), own_configs=(
            {"lr": 0.01},
            {"lr": 0.01, "final_lr": 0.5, "gamma": 0.5, "weight_decay": 0.1},
            {"lr": 0.01, "amsbound": True, "betas": (0.8, 0.99), "eps": 1e-6},
            {"lr": 0.01, "bias_correction": False, "sqrt_t": True, "gamma": 0.001},
        )),
        OptimizerInfo("amsbound", AMSBound, (), own_configs=(
            {"lr": 0.01, "gamma": 0.1},
        )),
        OptimizerInfo("sgdw", SGDW, (), own_configs=(
            {"lr": 0.05},
            {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1},
            {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1,
             "decay": "constant"},
            {"lr": 0.05, "momentum": 0.5, "dampening": 0.3, "weight_decay": 0.01, "decay": "paper"},
        )),
    ]
}  # fmt: skip
