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
from .auto import Auto
from .dadapt import DAdaptAdaGrad, DAdaptAdam, DAdaptSGD
from .dog import DoG, LDoG
from .nadam import NAdam
from .prodigy import Prodigy
from .radam import RAdam
from .rmsprop import RMSprop
from .root_mean_square import RootMeanSquare
from .schedule_free import AdamWScheduleFree, RAdamScheduleFree, SGDScheduleFree
from .sgd import SGD
from .sgdw import SGDW
from .swats import SWATS


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
        OptimizerInfo("swats", SWATS, (), own_configs=(
            {"lr": 0.01},
            {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1, "nesterov": True},
            {"lr": 0.01, "betas": (0.8, 0.99), "form": "paper", "tol": 1e-2},
        )),
        # learning-rate-free: compared with prodigyopt, dadaptation, dog-optimizer and
        # schedulefree in tests/optimizers/test_lr_free_*.py and test_schedule_free.py
        OptimizerInfo("prodigy", Prodigy, (), own_configs=(
            {"lr": 1.0},
            {"lr": 1.0, "weight_decay": 0.1, "use_bias_correction": True},
            {"lr": 1.0, "weight_decay": 0.1, "decouple": False, "safeguard_warmup": True,
             "growth_rate": 1.02},
            {"lr": 0.5, "betas": (0.0, 0.99), "beta3": 0.9, "d0": 1e-4, "d_coef": 2.0},
            {"lr": 1.0, "paper": True, "eps": 1e-6},
        )),
        OptimizerInfo("dadapt_adam", DAdaptAdam, (), own_configs=(
            {"lr": 1.0},
            {"lr": 1.0, "weight_decay": 0.1, "decouple": True, "use_bias_correction": True},
            {"lr": 0.5, "weight_decay": 0.1, "growth_rate": 1.02, "d0": 1e-4,
             "betas": (0.8, 0.99)},
        )),
        OptimizerInfo("dadapt_sgd", DAdaptSGD, (), own_configs=(
            {"lr": 1.0},
            {"lr": 1.0, "momentum": 0.9, "weight_decay": 0.01},
            {"lr": 0.5, "growth_rate": 1.02, "d0": 1e-4},
        )),
        OptimizerInfo("dadapt_adagrad", DAdaptAdaGrad, (), own_configs=(
            {"lr": 1.0},
            {"lr": 1.0, "momentum": 0.5, "weight_decay": 0.1, "eps": 1e-4},
            {"lr": 0.5, "growth_rate": 1.02, "d0": 1e-4},
        )),
        OptimizerInfo("dog", DoG, (), own_configs=(
            {"lr": 1.0},
            {"lr": 1.0, "reps_rel": 1e-4, "weight_decay": 0.1},
            {"lr": 0.5, "eps": 1e-6, "init_eta": 1e-3},
            {"lr": 1.0, "eps": 0.0},
        )),
        OptimizerInfo("ldog", LDoG, (), own_configs=(
            {"lr": 1.0},
            {"lr": 0.8, "reps_rel": 1e-4, "weight_decay": 0.1, "init_eta": 1e-3},
        )),
        OptimizerInfo("adamwschedulefree", AdamWScheduleFree, (), own_configs=(
            {"lr": 0.01},
            {"lr": 0.01, "warmup_steps": 5, "weight_decay": 0.1, "betas": (0.8, 0.99)},
            {"lr": 0.01, "r": 1.0, "weight_lr_power": 0.0, "eps": 1e-6},
            {"lr": 0.01, "bias_correction": "lr", "warmup_steps": 3},
        )),
        OptimizerInfo("sgdschedulefree", SGDScheduleFree, (), own_configs=(
            {"lr": 0.1},
            {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.1, "warmup_steps": 5},
            {"lr": 0.1, "r": 0.5, "weight_lr_power": 1.0},
        )),
        # adaptlr's own: tested against a float64 recomputation in tests/optimizers/test_auto.py
        OptimizerInfo("auto", Auto, (), own_configs=(
            {"lr": 1.0},
            {"lr": 1.0, "weight_decay": 0.1, "betas": (0.8, 0.99), "d0": 1e-4, "d_coef": 2.0},
            {"lr": 0.5, "growth_rate": 1.05, "beta3": 0.9, "r": 1.0, "weight_lr_power": 1.0},
        )),
        OptimizerInfo("radamschedulefree", RAdamScheduleFree, (), own_configs=(
            {"lr": 0.01},
            {"lr": 0.01, "silent_sgd_phase": False, "betas": (0.9, 0.99), "weight_decay": 0.1},
        )),
    ]
}  # fmt: skip
