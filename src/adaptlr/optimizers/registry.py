"""Capabilities as data: one table of every named optimizer, which tests and benchmarks iterate.

Each entry names the class, its torch.optim counterpart (``None`` where torch has none) and a
table of hyperparameter sets that together switch on every option the optimizer has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .adagrad import Adagrad
from .adam import Adam, AdamW
from .lecture import RootMeanSquare
from .nadam import NAdam
from .radam import RAdam
from .rmsprop import RMSprop
from .sgd import SGD


@dataclass(frozen=True)
class OptimizerInfo:
    name: str
    cls: type
    #: torch.optim's class with the same arguments and results, if any
    torch_cls: type | None
    #: hyperparameter sets torch.optim also accepts (compared with it)
    configs: tuple[dict[str, Any], ...]
    #: hyperparameter sets with no torch counterpart (the lecture's forms)
    own_configs: tuple[dict[str, Any], ...] = ()
    dtypes: tuple[torch.dtype, ...] = field(
        default=(torch.float64, torch.float32, torch.bfloat16, torch.float16)
    )

    @property
    def all_configs(self) -> tuple[dict[str, Any], ...]:
        return self.configs + self.own_configs


REGISTRY: dict[str, OptimizerInfo] = {
    info.name: info
    for info in [
        OptimizerInfo("sgd", SGD, torch.optim.SGD, (
            {"lr": 0.1},
            {"lr": 0.05, "momentum": 0.9},
            {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01},
            {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
            {"lr": 0.05, "momentum": 0.5, "maximize": True},
        )),
        OptimizerInfo("adagrad", Adagrad, torch.optim.Adagrad, (
            {"lr": 0.1},
            {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1},
            {"lr": 0.1, "initial_accumulator_value": 0.5, "eps": 1e-6},
            {"lr": 0.1, "maximize": True, "lr_decay": 0.01},
        )),
        OptimizerInfo("rmsprop", RMSprop, torch.optim.RMSprop, (
            {"lr": 0.01},
            {"lr": 0.01, "alpha": 0.9, "momentum": 0.8},
            {"lr": 0.01, "centered": True, "weight_decay": 0.1},
            {"lr": 0.01, "centered": True, "momentum": 0.5, "maximize": True},
        ), own_configs=(
            {"lr": 0.01, "init": "first_gradient"},
            {"lr": 0.01, "init": "first_gradient", "momentum": 0.5, "weight_decay": 0.1},
        )),
        OptimizerInfo("adam", Adam, torch.optim.Adam, (
            {"lr": 0.01},
            {"lr": 0.01, "betas": (0.8, 0.99), "amsgrad": True},
            {"lr": 0.01, "weight_decay": 0.1},
            {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "amsgrad": True},
            {"lr": 0.01, "maximize": True, "eps": 1e-3},
        )),
        OptimizerInfo("adamw", AdamW, torch.optim.AdamW, (
            {"lr": 0.01},
            {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True},
            {"lr": 0.01, "maximize": True, "betas": (0.5, 0.9)},
        )),
        OptimizerInfo("nadam", NAdam, torch.optim.NAdam, (
            {"lr": 0.01},
            {"lr": 0.01, "momentum_decay": 0.01, "weight_decay": 0.1},
            {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
            {"lr": 0.01, "maximize": True},
        )),
        OptimizerInfo("radam", RAdam, torch.optim.RAdam, (
            {"lr": 0.01},
            {"lr": 0.01, "weight_decay": 0.1},
            {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
            {"lr": 0.01, "maximize": True, "betas": (0.9, 0.99)},
        )),
        OptimizerInfo("rootmeansquare", RootMeanSquare, None, (), own_configs=(
            {"lr": 0.01},
            {"lr": 0.01, "weight_decay": 0.1, "maximize": True},
        )),
    ]
}  # fmt: skip
