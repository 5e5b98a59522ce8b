"""Optimizers from text: ``"adam:lr=0.1,betas=0.9/0.99"`` -> an adaptlr optimizer factory.

The registry maps lab names to adaptlr's own optimizer classes (the lab has no optimizer math
of its own); the allowed keys of each name are read from the class's signature, so they
cannot drift from the optimizers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

import adaptlr
from adaptlr.schedules.spec import parse_items
from adaptlr.torch_optim import IMPLEMENTATION_KEYS

__all__ = ["OPTIMIZERS", "OptimizerSpec", "parse_optimizer", "parse_schedule", "allowed_keys"]


@dataclass(frozen=True)
class _Entry:
    cls_name: str  # attribute of the adaptlr package
    defaults: dict[str, Any]  # what the lab name adds to the class defaults
    doc: str


#: lab name -> adaptlr class and the keyword arguments the name implies
OPTIMIZERS: dict[str, _Entry] = {
    "sgd": _Entry("SGD", {}, "gradient descent"),
    "momentum": _Entry("SGD", {"momentum": 0.9}, "SGD with momentum 0.9"),
    "nesterov": _Entry("SGD", {"momentum": 0.9, "nesterov": True}, "SGD with Nesterov momentum"),
    "adagrad": _Entry("Adagrad", {}, "Adagrad: sigma = sqrt(sum of g^2) (torch's form)"),
    "rms": _Entry("RootMeanSquare", {}, "the lecture's root mean square: sqrt(mean of g^2)"),
    "rmsprop": _Entry("RMSprop", {}, "RMSprop as torch.optim (average starts at 0)"),
    "rmsprop_lecture": _Entry(
        "RMSprop", {"init": "first_gradient"}, "the lecture's RMSProp: sigma_0 = |g_0|"
    ),
    "adam": _Entry("Adam", {}, "Adam (Kingma & Ba)"),
    "adamw": _Entry("AdamW", {}, "Adam with decoupled weight decay"),
    "nadam": _Entry("NAdam", {}, "Adam with Nesterov momentum"),
    "radam": _Entry("RAdam", {}, "Adam with rectified variance (Liu et al., 2019)"),
    "adabound": _Entry("AdaBound", {}, "Adam's η/σ clipped to bounds closing on final_lr"),
    "amsbound": _Entry("AMSBound", {}, "AdaBound with AMSGrad's σ"),
    "swats": _Entry("SWATS", {}, "Adam, then SGD at the step size it estimated"),
}

# implementation switches of torch-compatible signatures; they change nothing in the lab.
# nonfinite stays: skipping or stopping at a NaN gradient changes a run.
_HIDDEN = {"self", "params", *IMPLEMENTATION_KEYS} - {"nonfinite"}

_FORM = "expected 'name' or 'name:key=value,key=value' (tuples as 0.9/0.99)"


def _cls(entry: _Entry) -> type[torch.optim.Optimizer]:
    return getattr(adaptlr, entry.cls_name)


def allowed_keys(name: str) -> list[str]:
    """Keyword arguments accepted by the lab optimizer ``name``."""
    sig = inspect.signature(_cls(OPTIMIZERS[name]).__init__)
    return [k for k in sig.parameters if k not in _HIDDEN]


@dataclass(frozen=True)
class OptimizerSpec:
    """A named adaptlr optimizer with keyword arguments; ``build(params)`` makes one.

    ``schedule`` (a callable ``step -> lr``, e.g. from :mod:`adaptlr.schedules`) replaces
    ``lr``: adaptlr optimizers evaluate it at their own applied-step count.

    Attributes:
        name: the optimizer's name, a key of :data:`OPTIMIZERS` (``"adam"``, ``"sgd"``, ...).
        kwargs: keyword arguments of its class, over the entry's defaults (default: none).
        schedule: None, or a callable step -> lr that replaces ``lr``.
        schedule_name: the schedule's name in :attr:`label`; None: its class's name.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    schedule: Callable[[int], float] | None = None
    schedule_name: str | None = None

    @property
    def lr(self) -> float:
        """The constant lr of this spec (the class default when not given)."""
        if "lr" in self.kwargs:
            return float(self.kwargs["lr"])
        default = inspect.signature(_cls(OPTIMIZERS[self.name]).__init__).parameters["lr"].default
        return float(default)

    @property
    def label(self) -> str:
        """A short legend label, e.g. ``adam(lr=0.1) + cosine``."""
        args = ",".join(f"{k}={_fmt(v)}" for k, v in self.kwargs.items())
        text = f"{self.name}({args})" if args else self.name
        if self.schedule is not None:
            text += f" + {self.schedule_name or type(self.schedule).__name__.lower()}"
        return text

    def with_schedule(
        self, schedule: Callable[[int], float], name: str | None = None
    ) -> OptimizerSpec:
        """The same optimizer with ``lr`` replaced by ``schedule``.

        Args:
            schedule: a callable step -> lr (an :class:`adaptlr.schedules.Schedule`).
            name: the schedule's name in :attr:`label`; None: its class's name.
        """
        return OptimizerSpec(self.name, dict(self.kwargs), schedule, name)

    def build(self, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
        """Construct the adaptlr optimizer over ``params``.

        Args:
            params: the tensors to optimize (or param-group dicts), as torch.optim takes them.
        """
        entry = OPTIMIZERS[self.name]
        kwargs = {**entry.defaults, **self.kwargs}
        if self.schedule is not None:
            kwargs["lr"] = self.schedule
        return _cls(entry)(params, **kwargs)


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return "/".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def parse_optimizer(spec: str) -> OptimizerSpec:
    """Parse ``"name"`` or ``"name:key=value,..."``; ``ValueError`` says what is allowed.

    Args:
        spec: ``"name"`` or ``"name:key=value,..."``: a name of :data:`OPTIMIZERS` and keyword
            arguments of its class (a tuple written ``a/b``, as ``betas=0.9/0.99``).

    >>> parse_optimizer("adam:lr=0.1,betas=0.9/0.99").kwargs
    {'lr': 0.1, 'betas': (0.9, 0.99)}
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty optimizer spec; {_FORM}; names: {', '.join(OPTIMIZERS)}")
    name, _, body = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
    keys = allowed_keys(name)
    kwargs = parse_items(name, spec, body, keys, _FORM)
    out = OptimizerSpec(name, kwargs)
    # build once on a dummy parameter: the optimizer's own checks (lr < 0, betas out of
    # range, wrong types) then fail here, with the spec in the message
    try:
        out.build([torch.zeros(1, requires_grad=True)])
    except (ValueError, TypeError) as err:
        # the class names itself ("Adam: lr must be ..."): the spec's name says it once
        msg = str(err).splitlines()[0]
        own = f"{_cls(OPTIMIZERS[name]).__name__}: "
        raise ValueError(f"{name}: {msg.removeprefix(own)}") from None
    return out


def parse_schedule(spec: str, lr: float) -> Callable[[int], float]:
    """A schedule from ``adaptlr.schedules.from_spec``, with ``lr`` as its default peak.

    Args:
        spec: a schedule spec such as ``"warmup_cosine:warmup=50,total_steps=500"`` (see
            :func:`adaptlr.schedules.from_spec`).
        lr: the peak lr where the spec gives none; a finite number >= 0.
    """
    from adaptlr import schedules

    return schedules.from_spec(spec, lr=lr)
