"""Pure learning-rate schedules: ``step -> lr`` functions, ``join``, and a torch adapter.

A schedule is a frozen dataclass called with the 0-based step count ``t`` (updates already
applied); ``schedule(t)`` is the learning rate of update ``t + 1``. One closed form each, so
resuming, joining and skipping steps cannot drift.

>>> from adaptlr.schedules import join, linear_warmup, cosine, sample
>>> s = join([linear_warmup(0.1, warmup=10), cosine(0.1, total_steps=90)], boundaries=[10])
>>> round(s(5), 6), s(10), round(s(100), 6)
(0.05, 0.1, 0.0)
"""

from .base import Schedule, sample
from .hf import from_hf
from .shapes import (
    constant,
    cosine,
    cosine_hard_restarts,
    cosine_restarts,
    cosine_wave,
    cyclic,
    exponential,
    inverse_sqrt,
    inverse_time,
    join,
    linear_warmup,
    multi_step,
    one_cycle,
    polynomial,
    shift,
    step_decay,
    transformer,
    warmup_cosine,
    warmup_linear,
    warmup_stable_decay,
)
from .spec import SCHEDULES, from_spec
from .torch_adapter import ScheduleLR, to_torch

__all__ = [
    "Schedule",
    "ScheduleLR",
    "SCHEDULES",
    "constant",
    "cosine",
    "cosine_hard_restarts",
    "cosine_restarts",
    "cosine_wave",
    "cyclic",
    "exponential",
    "from_hf",
    "from_spec",
    "inverse_sqrt",
    "inverse_time",
    "join",
    "linear_warmup",
    "multi_step",
    "one_cycle",
    "polynomial",
    "sample",
    "shift",
    "step_decay",
    "to_torch",
    "transformer",
    "warmup_cosine",
    "warmup_linear",
    "warmup_stable_decay",
]
