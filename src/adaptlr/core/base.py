"""The parts of the rule θ ← θ − (η_t/σ_t)·m_t and how they compose.

A *part* is pure and elementwise: it turns an incoming update ``u`` (at first the gradient)
into a new one, reading and returning its own per-element buffers (``exp_avg``,
``exp_avg_sq``, …). Everything that depends only on the step number (bias corrections,
schedules, RAdam's rectification) is computed once per tensor in plain Python by
:meth:`Part.coefficients`; :meth:`Part.apply` then does only elementwise arithmetic through an
``ops`` namespace and never branches on those coefficients. That discipline is what lets
``adaptlr.kernels`` generate a fused kernel from the same ``apply`` instead of rewriting the
math (see ``docs/architecture.md``).

:class:`Transform` (what :func:`chain` returns) is the functional API, in the style of
optax's ``GradientTransformation``: ``init(params) -> state`` and
``update(grads, state, params, count) -> (updates, new_state)``; ``params + updates`` is the
new parameter. ``state`` is one dict per tensor, with torch.optim's buffer names, so that a
state dict of an adaptlr optimizer reads like torch's.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import _checks

# A hyperparameter that may change with time: a number or a schedule ``step -> value``.
Value = float | Callable[[int], float]


def resolve(value: Value, step: int) -> float:
    """The value of a number or a schedule at ``step``.

    Args:
        value: a number, or a callable of the step (a schedule, a param group's live value).
        step: the count the callable is evaluated at (ignored for a number).
    """
    return float(value(step)) if callable(value) else float(value)


#: parameter dtypes whose optimizer state is kept in float32 unless asked otherwise
LOW_PRECISION = (torch.bfloat16, torch.float16)


def all_reduce_many(values: Sequence[float], process_group: Any) -> list[float]:
    """Each of ``values`` summed over the processes of ``process_group`` (``"world"``: all of
    them), in float64, in one collective on the device the group's backend reduces on."""
    import torch.distributed as dist  # late: most processes never reduce

    group = None if process_group == "world" else process_group
    device = "cuda" if dist.get_backend(group) == "nccl" else "cpu"
    total = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(total, group=group)
    return [float(v) for v in total.cpu()]


class ProcessGroupArg(_checks.Allowed):
    """A ``process_group`` argument: None, ``"world"`` or a ``torch.distributed`` group."""

    def __str__(self) -> str:
        return "None, 'world' or a torch.distributed ProcessGroup"

    def check(self, owner: str, name: str, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value == "world"):
            return value
        group_class = getattr(torch.distributed, "ProcessGroup", None)  # None: no distributed
        if group_class is not None and isinstance(value, group_class):
            return value
        if isinstance(value, str):
            _checks.fail_value(owner, name, self, value)
        _checks.fail_type(owner, name, self, value)


#: the check of every ``process_group``, of parts and named optimizers alike
PROCESS_GROUP = ProcessGroupArg()


def default_state_dtype(param_dtype: torch.dtype) -> torch.dtype:
    """float32 state for bf16/fp16 parameters (their moments underflow), else the param's."""
    return torch.float32 if param_dtype in LOW_PRECISION else param_dtype


def scalar_dtype() -> torch.dtype:
    """The dtype torch.optim uses for ``step`` and other scalar state (mirrored for parity)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class TorchOps:
    """The elementwise vocabulary a part may use, on torch tensors (the reference path).

    Operands are tensors or Python floats; conditions of :meth:`where` may be plain bools
    (when they depend only on coefficients).
    """

    @staticmethod
    def sqrt(x: Any) -> Any:
        """√x, elementwise.

        Args:
            x: a tensor or a Python float.
        """
        return torch.sqrt(x) if isinstance(x, Tensor) else math.sqrt(x)

    @staticmethod
    def abs(x: Any) -> Any:
        """|x|, elementwise.

        Args:
            x: a tensor or a Python float.
        """
        return torch.abs(x) if isinstance(x, Tensor) else abs(x)

    @staticmethod
    def maximum(a: Any, b: Any) -> Any:
        """The larger of ``a`` and ``b``, elementwise.

        Args:
            a: a tensor or a Python float.
            b: a tensor or a Python float.
        """
        if isinstance(a, Tensor) and isinstance(b, Tensor):
            return torch.maximum(a, b)
        if isinstance(a, Tensor):
            return torch.clamp(a, min=b)
        if isinstance(b, Tensor):
            return torch.clamp(b, min=a)
        return max(a, b)

    @staticmethod
    def minimum(a: Any, b: Any) -> Any:
        """The smaller of ``a`` and ``b``, elementwise.

        Args:
            a: a tensor or a Python float.
            b: a tensor or a Python float.
        """
        if isinstance(a, Tensor) and isinstance(b, Tensor):
            return torch.minimum(a, b)
        if isinstance(a, Tensor):
            return torch.clamp(a, max=b)
        if isinstance(b, Tensor):
            return torch.clamp(b, max=a)
        return min(a, b)

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> Any:
        """``a`` where ``cond`` holds, else ``b``, elementwise.

        Args:
            cond: a boolean tensor, or a plain bool when it depends on coefficients only
                (then only the chosen operand is returned).
            a: a tensor or a Python float.
            b: a tensor or a Python float.
        """
        if isinstance(cond, (bool, int, float)):
            return a if cond else b
        return torch.where(cond, a, b)


@dataclass(frozen=True)
class Buffer:
    """A per-element state tensor of a part, shaped like the parameter.

    Args:
        name: its name in the part (and, unless two parts share one, its state key); torch.optim's
            where an equivalent exists.
        fill: its initial value: a number, or a param group's live value read at creation.
        from_param: start as a copy of the parameter instead (the initial point x_0 that
            D-Adaptation, Prodigy and DoG measure distances from, Schedule-Free's ``z``).
    """

    name: str
    fill: Value = 0.0
    from_param: bool = False


@dataclass(frozen=True)
class Scalar:
    """A scalar state: per tensor (NAdam's ``mu_product``, a 0-d tensor in each tensor's
    state) when listed in :attr:`Part.scalars`, or one per param group (Prodigy's ``d``, a
    float in the group, where the reference packages keep it) in :attr:`Part.shared`.

    Args:
        name: its state key (a per-tensor scalar) or its param-group key (a shared one).
        initial: its initial value: a number, or a group's live value (Prodigy's ``d`` starts
            at ``d0``).
        dtype: the dtype of a per-tensor scalar's 0-d tensor; ``None``: torch.optim's scalar
            dtype (float32 unless the default dtype is float64), as ``step`` is kept. A running
            sum compared with a float64 reference (LDoG's G) asks for float64.
    """

    name: str
    initial: Value
    #: the dtype of a per-tensor scalar's 0-d tensor; ``None``: torch.optim's scalar dtype
    #: (float32 unless the default dtype is float64), as ``step`` is kept. A running sum
    #: compared with a float64 reference (LDoG's G) asks for float64.
    dtype: torch.dtype | None = None


#: the scopes of a :class:`Sum`
SUM_SCOPES = ("tensor", "group", "optimizer")


@dataclass(frozen=True)
class Sum:
    """A sum a part needs over many elements before it can make its coefficients.

    The part's :meth:`Part.sum_terms` gives the elementwise terms; they are summed in float64
    over every element of one tensor (``scope="tensor"``: LDoG's per-layer norms), of every
    tensor of the param group that has a gradient (``"group"``: DoG), or of every group of
    the optimizer (``"optimizer"``: D-Adaptation's and Prodigy's ⟨g, x_0 − x⟩ and ‖s‖₁, whose
    reference implementations keep one estimate for all groups), and, for a part with a
    ``process_group``, over every process (:meth:`Part.reduce_sums`). The result reaches
    :meth:`Part.coefficients` as ``ctx.sums[name]``.

    Args:
        name: the key of the sum in ``ctx.sums`` and in :meth:`Part.sum_terms`' result.
        scope: ``"tensor"``, ``"group"`` (the default) or ``"optimizer"``, as above.
    """

    name: str
    scope: str = "group"

    def __post_init__(self) -> None:
        if self.scope not in SUM_SCOPES:
            raise ValueError(f"Sum: scope must be one of {SUM_SCOPES}, got {self.scope!r}")


@dataclass(frozen=True)
class Context:
    """What a part may know of time when it computes its coefficients.

    ``step`` is this tensor's own count of updates *including* the current one (1 on the first
    update; torch.optim's per-parameter ``step``), ``count`` the group's number of updates
    applied *before* this one (0 on the first; what schedules are evaluated at).

    Args:
        step: the tensor's own update count, this update included (>= 1).
        count: the group's applied updates before this one (>= 0).
        sums: the part's :class:`Sum` totals by name, or ``None`` on the first of a summing
            part's two calls.
    """

    step: int
    count: int
    #: the part's :class:`Sum` values by name; ``None`` on the first of the two calls a part
    #: with sums gets (whose coefficients feed :meth:`Part.sum_terms`)
    sums: Mapping[str, float] | None = None


class Part:
    """One pure, elementwise factor of the update rule.

    Subclasses set :attr:`buffers`, :attr:`scalars` and override :meth:`coefficients` and
    :meth:`apply`. ``apply`` must use only arithmetic operators and ``ops`` on its inputs, and
    must not branch in Python on ``c`` (it is traced to generate fused kernels).
    """

    buffers: tuple[Buffer, ...] = ()
    scalars: tuple[Scalar, ...] = ()
    #: scalar state kept once per param group (under its name, in the group's dict), the
    #: same for every tensor: new values must depend on ``ctx.count``, ``ctx.sums`` and these
    #: values only, never on ``ctx.step``
    shared: tuple[Scalar, ...] = ()
    #: sums over many elements the part needs (a reduction barrier); see :class:`Sum`
    sums: tuple[Sum, ...] = ()
    #: the part's factor of η (learning-rate parts), for :meth:`Transform.effective_lr`
    is_scale: bool = False
    #: its new :attr:`shared` values apply at once, to the group's later tensors of the same
    #: step (in the group's order), not after the step: torch-optimizer's SWATS switches its
    #: group's phase in the middle of a step. Such values may depend on the tensor's own state
    sequential: bool = False

    def __post_init__(self) -> None:
        # Hyperparameters are checked where they are given, not found as NaN many steps later.
        self._check_fields()

    def _check_fields(self, **allowed: _checks.Allowed) -> None:
        """Check every field: by ``allowed[name]`` where given, else by its annotation
        (``float``/``Value``: a finite number; ``bool``: True or False).

        A callable given for a number (a schedule, or a live value that reads a param group)
        is accepted unchecked: it is checked where it enters (the param group).
        """
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            rule = allowed.get(f.name) or _BY_ANNOTATION.get(str(f.type))
            value = getattr(self, f.name)
            if rule is None or (isinstance(rule, _checks.Number) and _checks.is_live(value)):
                continue
            rule.check(type(self).__name__, f.name, value)

    def coefficients(
        self, ctx: Context, scalars: Mapping[str, float]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Per-tensor numbers for this step, and the new scalar state.

        Args:
            ctx: the tensor's step, the group's count and (second call) the sums.
            scalars: the part's per-tensor :attr:`scalars` and group :attr:`shared` values by
                name, as the previous step left them.

        Returns:
            The coefficients by name (floats that :meth:`apply` reads from ``c``; the same
            names on every call) and the new values of ``scalars`` by name.
        """
        return {}, {}

    def apply(
        self, u: Any, p: Any, buf: Mapping[str, Any], c: Mapping[str, Any], ops: Any
    ) -> tuple[Any, dict[str, Any]]:
        """The new update and the new buffers, elementwise.

        Args:
            u: the update coming in (the gradient, or what the parts before made of it).
            p: the parameter before the step.
            buf: the part's buffers by name, before the step.
            c: the coefficients :meth:`coefficients` returned for this tensor and step.
            ops: the elementwise vocabulary (:class:`TorchOps` on tensors, symbols when
                traced for the kernels).

        Returns:
            The update going out, and the new value of each buffer that changes, by name.
        """
        raise NotImplementedError

    def sum_terms(
        self, u: Any, p: Any, buf: Mapping[str, Any], c: Mapping[str, Any], ops: Any
    ) -> dict[str, Any]:
        """The elementwise terms of each of :attr:`sums`, by name, as ``apply`` would see the
        element (the same rules: ``ops`` and arithmetic only). ``c`` comes from the first
        call of :meth:`coefficients`, made with ``ctx.sums`` ``None``.

        Args:
            u: the update coming in, in float64.
            p: the parameter before the step, in float64.
            buf: the part's buffers before the step, in float64.
            c: the coefficients of the first call.
            ops: the elementwise vocabulary, as for :meth:`apply`.
        """
        return {}

    def needs_sums(self, shared: Mapping[str, float]) -> bool:
        """Whether this step needs :attr:`sums`, given the group's :attr:`shared` values
        (``shared``, by name). A part whose sums matter in one phase only (SWATS's estimate,
        before its switch) says no for the others: no pass over the elements is made, and its
        second :meth:`coefficients` call sees every sum as 0.

        Args:
            shared: the group's shared values by name, before the step.
        """
        return True

    def reduce_sums(self, local: Mapping[str, float]) -> dict[str, float]:
        """Combine this process's :attr:`sums` across processes: the identity here; a part
        with a ``process_group`` (ZeRO: each process holds other parameters) adds them up.

        Args:
            local: this process's totals by name.
        """
        group = getattr(self, "process_group", None)
        if group is None or not local:
            return dict(local)
        names = list(local)
        totals = all_reduce_many([local[n] for n in names], group)
        return dict(zip(names, totals))

    # Magnitudes override these two; see core/magnitude.py.
    def sigma(self, buf: Mapping[str, Any], c: Mapping[str, Any], ops: Any) -> Any:
        """σ_t from the state (only for magnitude parts; ``None`` for the others).

        Args:
            buf: the part's buffers by name (after the step, for the effective lr).
            c: the part's coefficients.
            ops: the elementwise vocabulary.
        """
        return None

    def scale(self, c: Mapping[str, float]) -> float:
        """This part's factor of η_t (only for learning-rate parts; 1 for the others).

        Args:
            c: the part's coefficients.
        """
        return 1.0

    def __repr__(self) -> str:
        fields = getattr(self, "__dataclass_fields__", {})
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in fields)
        return f"{type(self).__name__}({args})"


class State(list):  # type: ignore[type-arg]
    """The state of a transform: one dict per tensor (a list, as it always was), and
    :attr:`shared`, the scalars a chain keeps once per param group (:attr:`Part.shared`).

    Example:
        >>> from adaptlr.core import State
        >>> st = State([{}], shared={"d": 1e-6})
        >>> len(st), st.shared
        (1, {'d': 1e-06})

    Args:
        items: the per-tensor state dicts.
        shared: the scalars kept once per param group, by name (none by default).
    """

    def __init__(self, items: Any = (), shared: Mapping[str, float] | None = None) -> None:
        super().__init__(items)
        self.shared: dict[str, float] = dict(shared or {})

    def __repr__(self) -> str:
        inner = super().__repr__()
        return f"State({inner}, shared={self.shared!r})" if self.shared else inner


#: the check of a part's field that no ``allowed`` names, by its annotation
_BY_ANNOTATION: dict[str, _checks.Allowed] = {
    "float": _checks.FINITE,
    "Value": _checks.FINITE,
    "bool": _checks.FLAG,
}


@dataclass(frozen=True)
class _Slot:
    """A part inside a transform, and where its buffers live in the per-tensor state."""

    part: Part
    names: dict[str, str]  # part's buffer/scalar name -> state key


class Transform:
    """A sequence of parts applied one after the other: what :func:`chain` returns.

    Example:
        >>> import torch
        >>> from adaptlr import core
        >>> adam = core.chain(core.rule(core.ema(0.9), core.ema_sq(0.999, debias=True)),
        ...                   core.scale_by_learning_rate(0.1))
        >>> p = [torch.tensor([1.0, -2.0])]
        >>> state = adam.init(p)
        >>> updates, state = adam.update([torch.tensor([0.5, -4.0])], state, p)
        >>> updates[0]  # the first Adam step is -lr·sign(g) up to eps
        tensor([-0.1000,  0.1000])

    Args:
        parts: the parts, applied in order (:func:`chain` also flattens transforms).
    """

    def __init__(self, parts: Sequence[Part]):
        slots: list[_Slot] = []
        taken: set[str] = {"step"}
        shared: dict[str, Scalar] = {}
        for part in parts:
            if not isinstance(part, Part):
                raise TypeError(f"chain: expected adaptlr.core parts, got {type(part).__name__}")
            for sc in part.shared:
                # a group key that users read (group["d"]): two parts may not share one name
                if sc.name in shared:
                    raise ValueError(
                        f"chain: two parts keep a shared scalar named {sc.name!r}; a param "
                        f"group holds one"
                    )
                shared[sc.name] = sc
            names = {}
            for name in [b.name for b in part.buffers] + [s.name for s in part.scalars]:
                key, k = name, 1
                while key in taken:  # two parts with a buffer of the same name: keep both
                    key, k = f"{name}_{k}", k + 1
                taken.add(key)
                names[name] = key
            slots.append(_Slot(part, names))
        self.slots: tuple[_Slot, ...] = tuple(slots)
        self._shared: dict[str, Scalar] = shared
        wide = [i for i, s in enumerate(slots) if any(x.scope == "optimizer" for x in s.part.sums)]
        if len(wide) > 1:
            raise ValueError(
                "chain: at most one part may need sums over every group of the optimizer"
            )
        #: the slot whose sums run over every group of an optimizer (``None``: none)
        self.optimizer_sums_slot: int | None = wide[0] if wide else None

    @property
    def has_sums(self) -> bool:
        """Whether a part of the chain needs a :class:`Sum`."""
        return any(s.part.sums for s in self.slots)

    @property
    def counts_empty_steps(self) -> bool:
        """Whether a step in which the group has no gradient still counts, advancing its
        shared scalars (Schedule-Free's weights, Prodigy's and D-Adaptation's estimate, whose
        packages count it): the chain keeps scalars per group, and the parts that keep them sum
        nothing per tensor or per group (DoG's sums over a group without gradients have no
        elements)."""
        return bool(self._shared) and all(
            x.scope == "optimizer"
            for slot in self.slots
            if slot.part.shared
            for x in slot.part.sums
        )

    @property
    def sequential(self) -> bool:
        """Whether a part's new shared values apply within the step (:attr:`Part.sequential`):
        then the tensors' coefficients are made one after another, in the group's order."""
        return any(s.part.sequential for s in self.slots)

    @property
    def shared_keys(self) -> tuple[str, ...]:
        """The names of the scalars kept once per param group (:attr:`Part.shared`)."""
        return tuple(self._shared)

    def init_shared(self) -> dict[str, float]:
        """The initial value of each scalar kept once per param group."""
        return {name: resolve(sc.initial, 0) for name, sc in self._shared.items()}

    @property
    def collective(self) -> bool:
        """Whether an update takes part in a collective (every process must call it)."""
        return any(getattr(p, "process_group", None) is not None for p in self.parts)

    def over_dtensors(self) -> Transform:
        """The chain that steps DTensor parameters (FSDP2), whose sums are already over every
        shard (``full_tensor``): this one without its parts' ``process_group``, since adding
        the sums across processes again would count each element once per process. The same
        object each time (kernels are cached by chain)."""
        if not self.collective:
            return self
        local = self.__dict__.get("_over_dtensors")
        if local is None:
            local = self._over_dtensors = Transform(
                [
                    dataclasses.replace(p, process_group=None)  # type: ignore[type-var]
                    if getattr(p, "process_group", None) is not None
                    else p
                    for p in self.parts
                ]
            )
        return local

    @property
    def state_keys(self) -> tuple[str, ...]:
        """The keys of a tensor's state: ``step`` and every buffer and scalar."""
        return ("step",) + tuple(k for s in self.slots for k in s.names.values())

    @property
    def buffer_keys(self) -> tuple[str, ...]:
        """The state keys of the per-element buffers, in chain order."""
        return tuple(s.names[b.name] for s in self.slots for b in s.part.buffers)

    @property
    def parts(self) -> tuple[Part, ...]:
        return tuple(s.part for s in self.slots)

    def __repr__(self) -> str:
        return "chain(" + ", ".join(repr(p) for p in self.parts) + ")"

    # -- functional API -------------------------------------------------------------------
    def init_one(self, p: Tensor, state_dtype: torch.dtype | None = None) -> dict[str, Tensor]:
        """The initial state of one tensor (``step`` 0, buffers filled, scalars set).

        Args:
            p: the parameter (its shape, layout and dtype; its values for ``from_param``
                buffers).
            state_dtype: the buffers' dtype; ``None``: :func:`default_state_dtype` of ``p``.
        """
        dtype = state_dtype or default_state_dtype(p.dtype)
        state: dict[str, Tensor] = {"step": torch.tensor(0.0, dtype=scalar_dtype())}
        for slot in self.slots:
            for b in slot.part.buffers:
                buf = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                fill = resolve(b.fill, 0)  # a number, or a group's live value
                if b.from_param:
                    buf.copy_(p.detach())
                elif fill != 0.0:
                    buf.fill_(complex(fill, fill) if p.is_complex() else fill)
                state[slot.names[b.name]] = buf
            for s in slot.part.scalars:
                state[slot.names[s.name]] = torch.tensor(
                    resolve(s.initial, 0), dtype=s.dtype or scalar_dtype()
                )
        return state

    def conform_one(
        self, st: dict[str, Tensor], p: Tensor, state_dtype: torch.dtype | None = None
    ) -> None:
        """Give ``p``'s existing buffers the dtype :meth:`init_one` would give them now.

        A parameter whose dtype changed after its state was made (``model.double()``,
        ``model.half()``) then keeps state by the same rule as a new one: float64 moments for
        float64 parameters (widening is exact), float32 for bf16/fp16 ones, never silently
        narrower than the rule.

        Args:
            st: the tensor's state dict, changed in place.
            p: its parameter, as it is now.
            state_dtype: the group's ``state_dtype``, or ``None`` (the rule's default).
        """
        for k in self._off_rule(st, p, state_dtype):
            st[k] = st[k].to(self._rule_dtype(p, state_dtype))

    def conforms(
        self, st: dict[str, Tensor], p: Tensor, state_dtype: torch.dtype | None = None
    ) -> bool:
        """Whether ``p``'s buffers have the dtype :meth:`conform_one` would give them.

        Args:
            st: the tensor's state dict.
            p: its parameter, as it is now.
            state_dtype: the group's ``state_dtype``, or ``None`` (the rule's default).
        """
        return not self._off_rule(st, p, state_dtype)

    @staticmethod
    def _rule_dtype(p: Tensor, state_dtype: torch.dtype | None) -> torch.dtype:
        dtype = state_dtype or default_state_dtype(p.dtype)
        # a real state_dtype for a complex parameter: its own
        return p.dtype if dtype.is_complex != p.is_complex() else dtype

    def _off_rule(
        self, st: dict[str, Tensor], p: Tensor, state_dtype: torch.dtype | None
    ) -> list[str]:
        dtype = self._rule_dtype(p, state_dtype)
        return [
            k
            for k in self.buffer_keys
            if isinstance(st.get(k), Tensor)
            and st[k].dtype != dtype
            and st[k].is_complex() == p.is_complex()
        ]

    def init(self, params: Sequence[Tensor]) -> State:
        """The initial state of each tensor in ``params``.

        Args:
            params: a sequence of tensors (not one tensor).
        """
        items = [params] if isinstance(params, Tensor) else _seq(params)
        if isinstance(params, Tensor) or not all(isinstance(p, Tensor) for p in items):
            raise TypeError(f"init: params must be a sequence of tensors, got {params!r:.80}")

        return State([self.init_one(p) for p in items], shared=self.init_shared())

    def update(
        self,
        grads: Sequence[Tensor],
        state: State,
        params: Sequence[Tensor],
        count: int = 0,
        sums: Mapping[int, Mapping[str, float]] | None = None,
    ) -> tuple[list[Tensor], State]:
        """Updates to *add* to ``params``, and the new state; nothing is modified in place.

        ``count`` is the number of updates applied before this one, at which schedules are
        evaluated; each tensor's own ``step`` in ``state`` drives bias corrections. A chain
        with scalars kept per group reads them from ``state.shared`` (a :class:`State`, as
        :meth:`init` returns) and returns the new ones in the new state's. ``sums`` gives, by
        slot, totals made elsewhere (by an optimizer, over all of its groups, from
        :meth:`partial_sums`) instead of over ``grads`` alone.

        Args:
            grads: one gradient per tensor, shaped as its parameter.
            state: what :meth:`init` or the previous :meth:`update` returned.
            params: the parameters before the step.
            count: the group's updates applied before this one (an int >= 0).
            sums: by slot index, totals to use instead of summing over ``grads``.
        """
        return self._run(grads, state, params, count, sums, partial=False)  # type: ignore[return-value]

    def partial_sums(
        self, grads: Sequence[Tensor], state: State, params: Sequence[Tensor], count: int = 0
    ) -> dict[str, float]:
        """This group's share of the sums of the part whose sums run over every group
        (:attr:`optimizer_sums_slot`), not yet added across processes; an optimizer adds the
        shares of its groups and hands the totals to :meth:`update`.

        Args:
            grads: one gradient per tensor, as for :meth:`update`.
            state: the state, as for :meth:`update`.
            params: the parameters before the step.
            count: the group's updates applied before this one.
        """
        return self._run(grads, state, params, count, None, partial=True)  # type: ignore[return-value]

    def _run(
        self,
        grads: Sequence[Tensor],
        state: State,
        params: Sequence[Tensor],
        count: int,
        given: Mapping[int, Mapping[str, float]] | None,
        partial: bool,
    ) -> tuple[list[Tensor], State] | dict[str, float]:
        if not (len(grads) == len(state) == len(params)):
            raise ValueError(
                f"update: grads, state and params must have the same length, got "
                f"{len(grads)}, {len(state)} and {len(params)}"
            )
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"update: count must be a non-negative int, got {count!r}")
        for i, (g, p) in enumerate(zip(grads, params)):
            if g.shape != p.shape:
                raise ValueError(
                    f"update: gradient {i} has shape {tuple(g.shape)}, its parameter "
                    f"{tuple(p.shape)}"
                )
        shared = self._shared_of(state)
        new_state = State([dict(s) for s in state])
        new_state.shared = shared  # (the same dict: each slot's new values land in it)
        steps = [int(s["step"].item()) + 1 for s in state]
        for s, step in zip(new_state, steps):
            s["step"] = torch.tensor(float(step), dtype=s["step"].dtype, device=s["step"].device)
        # Complex numbers are updated as pairs of reals, as torch.optim does.
        us = [_real(g) for g in grads]
        ps = [_real(p) for p in params]
        keys = self.buffer_keys
        for i, st in enumerate(new_state):
            # The update is formed in the state's dtype where that is wider than the gradient's:
            # a float16 gradient of 300 squares to inf in float16, not in its float32 state.
            if keys and keys[0] in st:
                wide = torch.promote_types(us[i].dtype, _real(st[keys[0]]).dtype)
                if wide != us[i].dtype:
                    us[i] = us[i].to(wide)
        for si, slot in enumerate(self.slots):
            part = slot.part
            per_tensor: list[Mapping[str, float] | None] = [None] * len(us)
            wide_sums: dict[str, float] | None = None
            if part.sums and not part.needs_sums(shared):
                wide_sums = {x.name: 0.0 for x in part.sums if x.scope != "tensor"}
                own = {x.name: 0.0 for x in part.sums if x.scope == "tensor"}
                per_tensor = [{**wide_sums, **own} for _ in us]
            elif part.sums:
                wide_sums, per_tensor = self._local_sums(si, us, ps, new_state, steps, count)
                everywhere = {x.name for x in part.sums if x.scope == "optimizer"}
                if partial and si == self.optimizer_sums_slot:
                    return {k: v for k, v in wide_sums.items() if k in everywhere}
                if given is not None and si in given:
                    # the optimizer's totals over all its groups and processes
                    wide_sums = {k: v for k, v in wide_sums.items() if k not in everywhere}
                    wide_sums = {**part.reduce_sums(wide_sums), **given[si]}
                else:
                    wide_sums = part.reduce_sums(wide_sums)
                per_tensor = [{**wide_sums, **(t or {})} for t in per_tensor]
            new_shared: dict[str, float] = {}
            if not us and part.shared and self.counts_empty_steps:
                # a group with no gradient: its scalars advance as the packages' do (no sum of
                # a tensor or of the group is involved: those need elements)
                c, new_scal = self.slot_coefficients(si, count + 1, count, shared, wide_sums)
                new_shared.update((k, v) for k, v in new_scal.items() if k in self._shared)
            for i, (u, p) in enumerate(zip(us, ps)):
                st = new_state[i]
                scal = {**st, **shared} if shared else st
                c, new_scal = self.slot_coefficients(si, steps[i], count, scal, per_tensor[i])
                buf = {b.name: _real(st[slot.names[b.name]]) for b in part.buffers}
                u, new_buf = part.apply(u, p, buf, c, TorchOps)
                us[i] = u
                for name, value in new_buf.items():
                    old = st[slot.names[name]]
                    st[slot.names[name]] = _like(value, old)
                for key, value in new_scal.items():
                    if key in self._shared:
                        (shared if part.sequential else new_shared)[key] = value
                        continue
                    old = st[key]
                    st[key] = torch.tensor(value, dtype=old.dtype, device=old.device)
            # every tensor saw the group's values as they were before this step
            shared.update(new_shared)
        if partial:
            raise ValueError("partial_sums: no part of this chain sums over every group")
        updates = [_like(u, g) for u, g in zip(us, grads)]
        return updates, new_state

    def _shared_of(self, state: Sequence[Mapping[str, Tensor]]) -> dict[str, float]:
        if not self._shared:
            return {}
        have = getattr(state, "shared", None)
        missing = [k for k in self._shared if have is None or k not in have]
        if missing:
            raise ValueError(
                f"update: this chain keeps {', '.join(map(repr, missing))} once per group; "
                f"pass the State that init() returned (state.shared), not a plain list"
            )
        return {k: float(have[k]) for k in self._shared}  # type: ignore[index]

    def _local_sums(
        self,
        si: int,
        us: Sequence[Tensor],
        ps: Sequence[Tensor],
        states: Sequence[Mapping[str, Tensor]],
        steps: Sequence[int],
        count: int,
    ) -> tuple[dict[str, float], list[dict[str, float]]]:
        """Slot ``si``'s sums over this process's tensors: the group- and optimizer-wide
        ones, and each tensor's own (scope ``"tensor"``), in float64."""
        slot = self.slots[si]
        part = slot.part
        shared = getattr(states, "shared", {})
        wide = {x.name: 0.0 for x in part.sums if x.scope != "tensor"}
        own_names = [x.name for x in part.sums if x.scope == "tensor"]
        per_tensor: list[dict[str, float]] = []
        for i, (u, p) in enumerate(zip(us, ps)):
            st = states[i]
            scal = {**st, **shared} if shared else st
            c, _ = self.slot_coefficients(si, steps[i], count, scal, None)
            buf = {b.name: _wide(_real(st[slot.names[b.name]])) for b in part.buffers}
            # the terms in float64 (as the kernels form them): u² of a float32 1e20 is inf
            terms = part.sum_terms(_wide(u), _wide(p), buf, c, TorchOps)
            mine = {}
            for name, term in terms.items():
                total = _total(term, u)
                if name in wide:
                    wide[name] += total
                else:
                    mine[name] = total
            per_tensor.append({n: mine.get(n, 0.0) for n in own_names})
        return wide, per_tensor

    def slot_coefficients(
        self,
        si: int,
        step: int,
        count: int,
        scalars: Mapping[str, Any],
        sums: Mapping[str, float] | None = None,
    ) -> tuple[dict[str, float], dict[str, float]]:
        """The coefficients of slot ``si``'s part for one tensor, and its new scalar state.

        ``step`` is the tensor's own update count including this one, ``count`` the group's
        applied updates before it, ``scalars`` the tensor's scalar state by state key (0-d
        tensors or floats; a whole state dict will do), ``sums`` its :class:`Sum` values
        (``None``: the first call, whose coefficients feed :meth:`Part.sum_terms`); the scalars
        kept per group are read from ``scalars`` by name. The new scalars come back by state
        key (a shared one by its name). Every path (:meth:`update`, :meth:`effective_lr`, the
        kernels' coefficient table and tracing) makes its coefficients here.

        Args:
            si: the slot's index in :attr:`slots`.
            step: the tensor's own update count, this one included.
            count: the group's applied updates before this one.
            scalars: the scalar state by state key, and the shared values by name.
            sums: the part's sums by name; ``None`` for the first call.
        """
        slot = self.slots[si]
        part = slot.part
        own = {s.name: float(scalars[slot.names[s.name]]) for s in part.scalars}
        for sc in part.shared:
            own[sc.name] = float(scalars[sc.name])
        c, new = part.coefficients(Context(step=step, count=count, sums=sums), own)
        return c, {slot.names.get(name, name): value for name, value in new.items()}

    def coefficients(
        self,
        step: int,
        count: int,
        scalars: Mapping[str, Any],
        sums: Mapping[int, Mapping[str, float]] | None = None,
    ) -> tuple[list[dict[str, float]], dict[str, float]]:
        """Every slot's coefficients (see :meth:`slot_coefficients`), and the new scalars.

        Args:
            step: the tensor's own update count, this one included.
            count: the group's applied updates before this one.
            scalars: the scalar state by state key, and the shared values by name.
            sums: by slot index, that part's :class:`Sum` values (none given: first calls).
        """
        coefs: list[dict[str, float]] = []
        new: dict[str, float] = {}
        for si in range(len(self.slots)):
            c, ns = self.slot_coefficients(si, step, count, scalars, (sums or {}).get(si))
            coefs.append(c)
            new.update(ns)
        return coefs, new

    def effective_lr(self, state: State, count: int) -> list[Tensor | None]:
        """η_t/σ_t elementwise for each tensor of ``state``, as of its last update.

        As :meth:`update`, this takes the state of every tensor (what :meth:`init` and
        :meth:`update` return); ``count`` is the number of updates applied (the last one
        used ``count - 1``). ``None`` for a tensor not updated yet, or everywhere when no
        part of the chain divides by a magnitude. (One tensor's state dict alone, the form
        of earlier releases, still works for one release, with a ``DeprecationWarning``.)

        Args:
            state: every tensor's state (with ``.shared`` for a chain that keeps scalars per
                group).
            count: the group's applied updates (the last update used ``count - 1``).
        """
        if isinstance(state, Mapping):
            warnings.warn(
                "Transform.effective_lr(state_dict, count) is now effective_lr([state_dict, "
                "...], count), a list in and a list out, as init and update; the one-tensor "
                "form goes in the next release",
                DeprecationWarning,
                stacklevel=2,
            )
            return self.effective_lr_one(state, count)  # type: ignore[return-value]
        shared = getattr(state, "shared", None)
        return [self.effective_lr_one(st, count, shared) for st in state]

    def effective_lr_one(
        self, state: Mapping[str, Tensor], count: int, shared: Mapping[str, float] | None = None
    ) -> Tensor | None:
        """:meth:`effective_lr` of one tensor's state dict.

        Args:
            state: the tensor's state dict.
            count: the group's applied updates.
            shared: its group's scalars kept once per group, as of the last update.
        """
        step = int(state["step"].item())
        if step == 0:
            return None
        scal = {**state, **shared} if shared else state
        coefs, _ = self.coefficients(step, max(count - 1, 0), scal)
        buf = {k: _real(state[k]) for k in self.buffer_keys}
        out = self.eta_over_sigma(buf, coefs, TorchOps)
        if out is not None and not isinstance(out, Tensor):
            # σ independent of the state (RAdam's warm-up): the same value everywhere
            out = torch.full_like(buf[self.buffer_keys[0]], out)
        return out

    def eta_over_sigma(
        self, buf: Mapping[str, Any], coefs: Sequence[Mapping[str, Any]], ops: Any
    ) -> Any:
        """η_t/σ_t from the buffers (by state key) and each part's coefficients, with ``ops``.

        The one definition of the effective learning rate: :meth:`effective_lr` runs it on
        tensors, and the kernels trace it to measure it in the step (``adaptlr.stats``).
        ``None`` where no part of the chain divides by a magnitude.

        Args:
            buf: every buffer by state key.
            coefs: each slot's coefficients, in slot order.
            ops: the elementwise vocabulary (:class:`TorchOps`, or symbols when traced).
        """
        eta: Any = 1.0
        sigma = None
        for slot, c in zip(self.slots, coefs, strict=True):
            part = slot.part
            eta = eta * ops.abs(part.scale(c))
            s = part.sigma({b.name: buf[slot.names[b.name]] for b in part.buffers}, c, ops)
            if s is not None:
                sigma = s if sigma is None else sigma * s
        return None if sigma is None else eta / sigma


def _seq(x: Any) -> Sequence[Any]:
    try:
        return list(x)
    except TypeError:
        raise TypeError(f"init: params must be a sequence of tensors, got {x!r:.80}") from None


def _real(t: Tensor) -> Tensor:
    """A complex tensor as pairs of reals; a lazily conjugated one (``x.conj()``, which cannot
    be viewed so) through a resolved copy."""
    return torch.view_as_real(t.resolve_conj()) if t.is_complex() else t


def _wide(t: Tensor) -> Tensor:
    """``t`` in float64 (a copy unless it already is): what sum terms are formed in."""
    return t.to(torch.float64) if t.is_floating_point() else t


def _like(value: Any, ref: Tensor) -> Tensor:
    """``value`` (a result of ``apply``) as a tensor of ``ref``'s shape, dtype and layout."""
    if not isinstance(value, Tensor):
        value = torch.full_like(_real(ref), float(value))
    if ref.is_complex():
        value = torch.view_as_complex(value.contiguous())
    if value.dtype != ref.dtype:
        value = value.to(ref.dtype)
    return value


def _total(term: Any, like: Tensor) -> float:
    """The sum of a part's sum term over a tensor's elements, in float64 (a number for a term
    that does not vary by element: that number times the element count)."""
    if isinstance(term, Tensor):
        if not term.numel():
            return 0.0
        total = term.double().sum()
        # a DTensor's sum (FSDP2) is a partial one on each process: over every shard
        full = getattr(total, "full_tensor", None)
        return float(full() if full is not None else total)
    return float(term) * like.numel()


def chain(*parts: Part | Transform) -> Transform:
    """Compose parts left to right: the output update of one is the input of the next.

    Args:
        parts: parts, or transforms (flattened into their parts).
    """
    flat: list[Part] = []
    for p in parts:
        flat.extend(p.parts if isinstance(p, Transform) else [p])
    return Transform(flat)
