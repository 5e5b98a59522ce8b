r"""The parts of θ_{t+1} = θ_t − (η_t/σ_t)·m_t, composed with :func:`chain`.

- directions m_t: :class:`momentum` (heavy ball, Nesterov), :class:`ema`, :class:`nesterov_ema`
- magnitudes σ_t: :class:`sum_sq` (Adagrad), :class:`mean_sq` (the lecture's mean), :class:`ema_sq`
  (RMSProp / Adam / AMSGrad / centered), :class:`rectified` (RAdam); :class:`rule` divides a
  direction by a magnitude
- η_t and friends: :class:`scale_by_learning_rate`, :class:`scale_by_lr_decay`, :class:`scale`,
  :class:`negate`, :class:`add_decayed_weights`, :class:`add_constant`, :class:`clip_by_value`,
  :class:`clip_by_global_norm`; :class:`bound` clips η_t/σ_t between bounds (AdaBound);
  :class:`switch_to_sgd` takes Adam steps until their SGD step size settles, then SGD (SWATS)
- learning-rate-free step sizes: :class:`dog` (DoG / LDoG); the distance estimate d of
  D-Adaptation and Prodigy around any rule, :class:`scale_by_distance`, and the packages' own
  forms :class:`prodigy`, :class:`dadapt_adam`, :class:`dadapt_sgd`, :class:`dadapt_adagrad`
- averaging instead of a schedule: :class:`schedule_free` (with :class:`group_clock`), and
  :class:`schedule_free_distance`, its step size Prodigy's estimate (:class:`adaptlr.Auto`)
"""

from .base import (
    Buffer,
    Context,
    Part,
    Scalar,
    State,
    Sum,
    TorchOps,
    Transform,
    chain,
    resolve,
)
from .bounds import bound
from .direction import ema, momentum, nesterov_ema
from .distance import dadapt_adagrad, dadapt_adam, dadapt_sgd, prodigy, scale_by_distance
from .dog import dog
from .magnitude import Magnitude, ema_sq, mean_sq, rectified, rule, sum_sq
from .scaling import (
    add_constant,
    add_decayed_weights,
    clip_by_global_norm,
    clip_by_value,
    negate,
    scale,
    scale_by_learning_rate,
    scale_by_lr_decay,
)
from .schedule_free import group_clock, schedule_free, schedule_free_distance
from .switch import switch_to_sgd

__all__ = [
    "Buffer",
    "Context",
    "Magnitude",
    "Part",
    "Scalar",
    "State",
    "Sum",
    "TorchOps",
    "Transform",
    "add_constant",
    "add_decayed_weights",
    "bound",
    "chain",
    "clip_by_global_norm",
    "clip_by_value",
    "dadapt_adagrad",
    "dadapt_adam",
    "dadapt_sgd",
    "dog",
    "ema",
    "ema_sq",
    "group_clock",
    "mean_sq",
    "momentum",
    "negate",
    "prodigy",
    "nesterov_ema",
    "rectified",
    "resolve",
    "rule",
    "scale",
    "scale_by_distance",
    "scale_by_learning_rate",
    "scale_by_lr_decay",
    "schedule_free",
    "schedule_free_distance",
    "sum_sq",
    "switch_to_sgd",
]

#: names of earlier releases, kept for one release: ``rss`` and ``rms`` differed by one letter
#: for a sum and a mean
_RENAMED = {"rss": "sum_sq", "rms": "mean_sq"}


def __getattr__(name: str) -> object:
    if name in _RENAMED:
        import warnings

        new = _RENAMED[name]
        warnings.warn(
            f"adaptlr.core.{name} is renamed adaptlr.core.{new}; the old name goes in the next "
            f"release",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
