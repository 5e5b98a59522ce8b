"""Hyperparameters as data: a named optimizer declares each argument once.

A :class:`Hyper` holds an argument's name, default, allowed values (the check) and a line of
documentation; a class deriving from :class:`Declared` lists them in torch.optim's order
(``"*"`` marks where the keyword-only ones begin) as ``hyperparameters`` and writes its chain
as ``_chain(h)``, reading ``h.lr``, ``h.betas``, .... Everything else follows from that:

- the constructor, generated as a real function (as :mod:`dataclasses` does), so that
  ``inspect.signature``, ``help()`` and positional calls see torch.optim's exact signature;
- the chain factory the adapter calls with each group's values (its parameters are the
  hyperparameters that are not implementation switches, see
  :data:`adaptlr.torch_optim.IMPLEMENTATION_KEYS`);
- :meth:`Declared.check_group`, and the "Args" section of the class docstring.

adaptlr's own switches (:data:`ADAPTLR_OPTIONS`) are appended, keyword-only, to every
declaration that does not list them.
"""

from __future__ import annotations

import dataclasses
import textwrap
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from .. import _checks
from ..core import Transform
from ..torch_optim import IMPLEMENTATION_KEYS, Optimizer
from ..torch_optim import NONFINITE as NONFINITE_MODES

#: what ``params`` may be, in every signature
PARAMS_DOC = "the tensors to optimize: an iterable of tensors, of (name, tensor) pairs, or of \
param-group dicts whose other keys override the defaults below for their tensors"


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter. ``Hyper(...)(default)`` is the same with another default."""

    name: str
    default: Any
    allowed: _checks.Allowed
    doc: str
    annotation: str = "float"
    keyword_only: bool = False

    def __call__(self, default: Any) -> Hyper:
        return dataclasses.replace(self, default=default)

    def check(self, owner: str, value: Any) -> Any:
        return self.allowed.check(owner, self.name, value)


@dataclass(frozen=True)
class Rule:
    """A condition between hyperparameters, checked after each one's own check."""

    holds: Callable[[Hyperparameters], bool]
    message: str


class Hyperparameters:
    """The values a chain is built from, as attributes (``h.lr``, ``h.betas``, ...)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def get(self, name: str, default: Any = None) -> Any:
        return self.__dict__.get(name, default)

    def __repr__(self) -> str:
        return "Hyperparameters(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"


_UNSUPPORTED = "adaptlr steps run outside autograd and CUDA graphs"

# -- the hyperparameters several optimizers share (each optimizer's own are in its file) -----
LR = Hyper(
    "lr",
    1e-3,
    _checks.LR,
    "η, the learning rate: a number, or an adaptlr.schedules.Schedule evaluated at each "
    "step's count (group['lr'] then holds its current value)",
    "float | Schedule",
)
BETAS = Hyper(
    "betas",
    (0.9, 0.999),
    _checks.Pair(_checks.UNIT_OPEN),
    "(β1, β2), the decay rates of the moving averages of the gradient and of its square",
    "tuple[float, float]",
)
EPS = Hyper("eps", 1e-8, _checks.NONNEGATIVE, "ε, added to σ for numerical stability")
WEIGHT_DECAY = Hyper(
    "weight_decay",
    0,
    _checks.NONNEGATIVE,
    "λ: λθ is added to the gradient (L2 regularisation), or to the update where decoupled",
)
DECOUPLED_WEIGHT_DECAY = Hyper(
    "decoupled_weight_decay",
    False,
    _checks.FLAG,
    "add λθ to the update, scaled by η but not divided by σ (AdamW), not to the gradient",
    "bool",
)
MOMENTUM = Hyper("momentum", 0, _checks.NONNEGATIVE, "μ, heavy-ball momentum (0: none)")
MAXIMIZE = Hyper("maximize", False, _checks.FLAG, "ascend instead of descend", "bool")
FOREACH = Hyper(
    "foreach",
    None,
    _checks.OptionalFlag(),
    "accepted for compatibility with torch.optim; selects nothing",
    "bool | None",
)
CAPTURABLE = Hyper(
    "capturable",
    False,
    _checks.Unsupported(_UNSUPPORTED),
    "accepted for compatibility with torch.optim",
    "bool",
)
DIFFERENTIABLE = dataclasses.replace(CAPTURABLE, name="differentiable")
FUSED = Hyper(
    "fused",
    None,
    _checks.OptionalFlag(),
    "False steps with the reference path (a chain of torch operations); None or True with "
    "the generated kernels (numba on CPU, Triton on CUDA) where they apply",
    "bool | None",
)
STATE_DTYPE = Hyper(
    "state_dtype",
    None,
    _checks.FloatDType(),
    "the dtype of the moment buffers; None: float32 for bf16/fp16 parameters, else the parameter's",
    "torch.dtype | None",
)
NONFINITE = Hyper(
    "nonfinite",
    "ignore",
    _checks.Choice(NONFINITE_MODES),
    "what a step does with a NaN/inf gradient: 'ignore' it, 'skip' the step, or 'raise' a "
    "FloatingPointError (both checked before anything changes)",
    "str",
)
#: adaptlr's own keyword-only switches, appended to every declaration that lacks them
ADAPTLR_OPTIONS = (FUSED, STATE_DTYPE, NONFINITE)


def resolve_declaration(items: Iterable[Hyper | str]) -> tuple[Hyper, ...]:
    """``items`` with ``"*"`` turned into ``keyword_only`` and :data:`ADAPTLR_OPTIONS` added."""
    out: list[Hyper] = []
    keyword_only = False
    for item in items:
        if item == "*":
            keyword_only = True
        elif isinstance(item, Hyper):
            out.append(dataclasses.replace(item, keyword_only=keyword_only or item.keyword_only))
        else:
            raise TypeError(f"a declaration lists Hyper objects and '*', got {item!r}")
    names = [h.name for h in out]
    if len(set(names)) != len(names) or "params" in names:
        raise ValueError(f"a declaration lists each name once (and not params): {names}")
    out += [
        dataclasses.replace(h, keyword_only=True) for h in ADAPTLR_OPTIONS if h.name not in names
    ]
    return tuple(out)


class Declared(Optimizer):
    """A named optimizer made from its declaration; subclasses set :attr:`hyperparameters`
    and ``_chain`` (and, where needed, :attr:`rules` and :attr:`fixed`)."""

    #: every argument after ``params``, in torch.optim's order (``"*"``: keyword-only follow)
    hyperparameters: ClassVar[tuple[Hyper, ...]] = ()
    #: conditions between hyperparameters (e.g. SGD's nesterov)
    rules: ClassVar[tuple[Rule, ...]] = ()
    #: group values that are not arguments (AdamW's ``decoupled_weight_decay=True``)
    fixed: ClassVar[dict[str, Any]] = {}

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not any(k in cls.__dict__ for k in ("hyperparameters", "rules", "fixed", "_chain")):
            return  # a user's subclass with its own __init__ keeps it
        cls.hyperparameters = resolve_declaration(cls.hyperparameters)
        chain_args = [h.name for h in cls.hyperparameters if h.name not in IMPLEMENTATION_KEYS]
        chain_args += [k for k in cls.fixed if k not in chain_args]
        cls._make_chain = staticmethod(_make_chain_factory(cls, chain_args))
        if "__init__" not in cls.__dict__:
            cls.__init__ = _make_init(cls)  # type: ignore[method-assign]
        if cls.__doc__ and "hyperparameters" in cls.__dict__:
            cls.__doc__ = _with_args_section(cls.__doc__, cls.hyperparameters)

    def check_group(self, group: dict[str, Any]) -> None:
        """Each declared hyperparameter the group holds, then the :attr:`rules`."""
        self.check_changed(group, None)

    def check_changed(self, group: dict[str, Any], names: list[str] | None) -> None:
        """The declared hyperparameters ``names`` (all of them for ``None``) that the group
        holds, then the :attr:`rules`: a scheduler writing ``betas`` every step (OneCycleLR)
        has only those checked."""
        owner = type(self).__name__
        for h in self.hyperparameters:
            if h.name in group and (names is None or h.name in names):
                h.check(owner, group[h.name])
        if self.rules:
            values = {h.name: group.get(h.name, h.default) for h in self.hyperparameters}
            h = Hyperparameters(values)
            for rule in self.rules:
                if not rule.holds(h):
                    raise ValueError(f"{owner}: {rule.message}")

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> Transform:
        """Deprecated: use :meth:`transform`, which applies the defaults and the checks.

        Args:
            *args: the hyperparameters' values in declaration order, used unchecked.
            **kwargs: the hyperparameters' values by name, used unchecked.
        """
        warnings.warn(
            f"{cls.__name__}.build is deprecated and will be removed in the next release; "
            f"use {cls.__name__}.transform(**hyperparameters), which applies the defaults and "
            f"the checks",
            DeprecationWarning,
            stacklevel=2,
        )
        return cls._make_chain(*args, **kwargs)


def _make_chain_factory(cls: type[Declared], names: list[str]) -> Callable[..., Transform]:
    """``f(lr, betas, ...)``: the chain for the given values, without defaults or checks (the
    adapter checks the group first); its parameters are what the adapter passes."""
    args = ", ".join(names)
    body = ", ".join(f"{n}={n}" for n in names)
    src = f"def _make_chain({args}):\n    return _cls._chain(_H(dict({body})))\n"
    return _compile(src, "_make_chain", cls, {"_cls": cls, "_H": Hyperparameters})


def _make_init(cls: type[Declared]) -> Callable[..., None]:
    """``__init__(self, params, <torch.optim's arguments>, *, <keyword-only ones>)``."""
    params, star = ["self", "params"], False
    for h in cls.hyperparameters:
        if h.keyword_only and not star:
            params.append("*")
            star = True
        params.append(f"{h.name}=_defaults[{h.name!r}]")
    passed = ", ".join(f"{h.name}={h.name}" for h in cls.hyperparameters)
    src = (
        f"def __init__({', '.join(params)}):\n"
        f"    _Optimizer.__init__(self, params, type(self)._make_chain, {passed}, **_fixed)\n"
    )
    fn = _compile(
        src,
        "__init__",
        cls,
        {
            "_defaults": {h.name: h.default for h in cls.hyperparameters},
            "_fixed": dict(cls.fixed),
            "_Optimizer": Optimizer,
        },
    )
    fn.__annotations__ = {
        "params": "Iterable[Any]",
        **{h.name: h.annotation for h in cls.hyperparameters},
        "return": "None",
    }
    return fn


def _compile(src: str, name: str, cls: type, namespace: dict[str, Any]) -> Any:
    exec(src, namespace)  # the only way to a real signature with these defaults and kinds
    fn = namespace[name]
    fn.__module__, fn.__qualname__ = cls.__module__, f"{cls.__qualname__}.{name}"
    return fn


def _with_args_section(doc: str, declared: tuple[Hyper, ...]) -> str:
    """The docstring with an "Args" section from the declaration, before its example."""
    entries = [f"params: {PARAMS_DOC}."] + [
        f"{h.name} ({h.annotation}, default {h.default!r}"
        f"{', keyword-only' if h.keyword_only else ''}): {h.doc}; {h.allowed}."
        for h in declared
    ]
    wrap = textwrap.TextWrapper(width=96, initial_indent=" " * 8, subsequent_indent=" " * 12)
    section = "    Args:\n" + "\n".join(wrap.fill(e) for e in entries) + "\n\n"
    head, sep, example = doc.partition("    Example:")
    return (
        head.rstrip() + "\n\n" + section + sep + example if sep else doc.rstrip() + "\n\n" + section
    )
