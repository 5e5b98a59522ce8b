r"""The parts of θ_{t+1} = θ_t − (η_t/σ_t)·m_t, composed with :func:`chain`.

- directions m_t: :class:`momentum` (heavy ball, Nesterov), :class:`ema`, :class:`nesterov_ema`
- magnitudes σ_t: :class:`rss` (Adagrad), :class:`rms` (the lecture's mean), :class:`ema_sq`
  (RMSProp / Adam / AMSGrad / centered), :class:`rectified` (RAdam); :class:`rule` divides a
  direction by a magnitude
- η_t and friends: :class:`scale_by_learning_rate`, :class:`scale_by_lr_decay`, :class:`scale`,
  :class:`negate`, :class:`add_decayed_weights`, :class:`clip_by_value`,
  :class:`clip_by_global_norm`
"""

from .base import Buffer, Context, Part, Scalar, State, TorchOps, Transform, chain, resolve
from .direction import ema, momentum, nesterov_ema
from .magnitude import Magnitude, ema_sq, rectified, rms, rss, rule
from .scale import (
    add_decayed_weights,
    clip_by_global_norm,
    clip_by_value,
    negate,
    scale,
    scale_by_learning_rate,
    scale_by_lr_decay,
)

__all__ = [
    "Buffer",
    "Context",
    "Magnitude",
    "Part",
    "Scalar",
    "State",
    "TorchOps",
    "Transform",
    "add_decayed_weights",
    "chain",
    "clip_by_global_norm",
    "clip_by_value",
    "ema",
    "ema_sq",
    "momentum",
    "negate",
    "nesterov_ema",
    "rectified",
    "resolve",
    "rms",
    "rss",
    "rule",
    "scale",
    "scale_by_learning_rate",
    "scale_by_lr_decay",
]
