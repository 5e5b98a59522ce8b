"""Trace a chain's ``Part.apply`` into an expression graph, from which kernels are generated.

Each part's ``apply`` is run once on symbolic values (:class:`Sym`) with a symbolic ``ops``
namespace (:class:`SymOps`); operator overloading records every operation. The result is a
:class:`Program`: the expressions of the new parameter and of every new buffer element in
terms of the gradient ``g``, the parameter ``p``, the old buffers and the per-tensor
coefficients. Nothing of an optimizer's formula is written here: only the vocabulary.

Two kinds of nodes are kept apart, because they round differently in the reference path:

- *uniform* nodes depend only on coefficients and constants. In the reference path they are
  Python floats (double precision) until they meet a tensor, where torch casts them to the
  tensor's dtype. Kernels compute them once per chunk in float64 and cast them the same way.
- *elementwise* nodes depend on ``g``, ``p`` or a buffer and are computed in the state's
  dtype, operation by operation, as torch does.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.base import Transform


class TraceError(TypeError):
    """A part's ``apply`` did something that cannot be turned into a kernel."""


# op -> arity; "where" takes (cond, a, b)
OPS = {
    "add": 2, "sub": 2, "mul": 2, "div": 2, "neg": 1, "sqrt": 1, "abs": 1,
    "max": 2, "min": 2, "where": 3, "gt": 2, "ge": 2, "lt": 2, "le": 2, "eq": 2, "ne": 2,
}  # fmt: skip
COMPARISONS = ("gt", "ge", "lt", "le", "eq", "ne")


class Sym:
    """A node of the traced graph: a leaf or an operation on earlier nodes."""

    __slots__ = ("graph", "op", "args", "uniform", "index", "is_bool")

    def __init__(self, graph: Graph, op: str, args: tuple, uniform: bool, is_bool: bool = False):
        self.graph = graph
        self.op = op
        self.args = args
        self.uniform = uniform
        self.is_bool = is_bool
        self.index = -1

    # Branching in Python on a traced value would bake one branch into the kernel.
    def __bool__(self) -> bool:
        raise TraceError(
            "a part's apply branches in Python on a value (use ops.where): it cannot be fused"
        )

    __hash__ = object.__hash__

    def _bin(self, op: str, other: Any, reverse: bool = False) -> Sym:
        a, b = (other, self) if reverse else (self, other)
        return self.graph.op(op, a, b)

    def __add__(self, o):
        return self._bin("add", o)

    def __radd__(self, o):
        return self._bin("add", o, True)

    def __sub__(self, o):
        return self._bin("sub", o)

    def __rsub__(self, o):
        return self._bin("sub", o, True)

    def __mul__(self, o):
        return self._bin("mul", o)

    def __rmul__(self, o):
        return self._bin("mul", o, True)

    def __truediv__(self, o):
        return self._bin("div", o)

    def __rtruediv__(self, o):
        return self._bin("div", o, True)

    def __neg__(self):
        return self.graph.op("neg", self)

    def __pos__(self):
        return self

    def __gt__(self, o):
        return self._bin("gt", o)

    def __ge__(self, o):
        return self._bin("ge", o)

    def __lt__(self, o):
        return self._bin("lt", o)

    def __le__(self, o):
        return self._bin("le", o)

    def __eq__(self, o):  # type: ignore[override]
        return self._bin("eq", o)

    def __ne__(self, o):  # type: ignore[override]
        return self._bin("ne", o)

    def __pow__(self, o):
        if o == 2:  # x**2 is x*x in torch too (exact)
            return self * self
        raise TraceError("apply uses ** with an exponent other than 2: it cannot be fused")

    def __repr__(self) -> str:
        return f"Sym({self.op}, {self.args})"


class Graph:
    """Hash-consed nodes: the same operation on the same operands is one node."""

    def __init__(self) -> None:
        self.nodes: list[Sym] = []
        self._memo: dict[tuple, Sym] = {}
        self.consts: list[float] = []
        self._const_index: dict[tuple[float, bool], Sym] = {}

    def _add(self, key: tuple, make: Any) -> Sym:
        node = self._memo.get(key)
        if node is None:
            node = make()
            node.index = len(self.nodes)
            self.nodes.append(node)
            self._memo[key] = node
        return node

    def leaf(self, op: str, name: Any, uniform: bool) -> Sym:
        return self._add((op, name), lambda: Sym(self, op, (name,), uniform))

    def const(self, value: Any) -> Sym:
        if isinstance(value, bool):
            return self._add(("bool", value), lambda: Sym(self, "bool", (value,), True, True))
        if not isinstance(value, (int, float)):
            raise TraceError(f"apply mixes a traced value with {type(value).__name__}")
        value = float(value)

        def make() -> Sym:
            self.consts.append(value)
            return Sym(self, "const", (len(self.consts) - 1,), True)

        return self._add(("const", value.hex()), make)

    def lift(self, x: Any) -> Sym:
        if isinstance(x, Sym):
            if x.graph is not self:
                raise TraceError("values of two traces mixed")
            return x
        return self.const(x)

    def op(self, op: str, *args: Any) -> Sym:
        syms = tuple(self.lift(a) for a in args)
        if op == "where":
            cond = syms[0]
            if cond.op == "bool":  # a Python bool: TorchOps.where picks a branch too
                return syms[1] if cond.args[0] else syms[2]
        uniform = all(s.uniform for s in syms)
        is_bool = op in COMPARISONS
        if op in ("add", "sub", "mul", "div", "max", "min") and any(s.is_bool for s in syms):
            raise TraceError("arithmetic on a comparison result: it cannot be fused")
        key = (op,) + tuple(s.index for s in syms)
        return self._add(key, lambda: Sym(self, op, syms, uniform, is_bool))


class SymOps:
    """The ``ops`` vocabulary of :class:`adaptlr.core.TorchOps`, recording instead of computing."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def _maybe(self, op: str, *args: Any) -> Any:
        if not any(isinstance(a, Sym) for a in args):
            from ..core.base import TorchOps  # plain numbers: compute as the reference does

            return getattr(TorchOps, {"max": "maximum", "min": "minimum"}.get(op, op))(*args)
        return self.graph.op(op, *args)

    def sqrt(self, x: Any) -> Any:
        return self._maybe("sqrt", x)

    def abs(self, x: Any) -> Any:
        return self._maybe("abs", x)

    def maximum(self, a: Any, b: Any) -> Any:
        return self._maybe("max", a, b)

    def minimum(self, a: Any, b: Any) -> Any:
        return self._maybe("min", a, b)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        if isinstance(cond, (bool, int, float)) and not isinstance(cond, Sym):
            return a if cond else b
        return self.graph.op("where", cond, a, b)


@dataclass(frozen=True)
class Reduction:
    """The sums over many elements that a part needs before its coefficients: its
    :class:`~adaptlr.core.Sum` terms (:meth:`Part.sum_terms`, each computed and summed in
    float64; a global norm is a sum of u·u). The one kind of reduction the kernels know: each
    is a pass over the group's elements before the update pass (``reduce{k}``), returning each
    term's total per chunk."""

    slot: int
    #: the :class:`~adaptlr.core.Sum` names, in :attr:`Part.sums` order
    names: tuple[str, ...]
    #: each name's elementwise term
    terms: tuple[Sym, ...]
    #: each name's scope (``"tensor"``, ``"group"``, ``"optimizer"``)
    scopes: tuple[str, ...]
    #: the part's incoming update: computed as the update pass computes it, the rest of each
    #: term in float64 (:meth:`wide`)
    incoming: Sym | None = None

    @property
    def per_tensor(self) -> list[int]:
        """The terms summed per tensor (scope ``"tensor"``)."""
        return [j for j, s in enumerate(self.scopes) if s == "tensor"]

    def wide(self) -> frozenset[int]:
        """The elementwise operations of the terms that the kernels compute in float64: all but
        the incoming update's own (a float32 gradient of 1e25 squares to 1e50, which float32
        cannot hold; the reference path's float32 term would be inf)."""
        if self.incoming is None:
            return frozenset()
        upstream = {n.index for n in walk([self.incoming])}
        return frozenset(
            n.index
            for n in walk(list(self.terms))
            if n.index not in upstream and not n.uniform and n.op in OPS
        )


@dataclass
class Program:
    """What one fused step computes, as expressions of a :class:`Graph`.

    ``coef_keys[j]`` is ``(slot index, coefficient name)`` of column ``j`` of the coefficient
    table (the coefficients ``apply`` reads); then, from column ``len(coef_keys)`` on,
    ``pre_keys``: those of the first call a part with sums gets (``ctx.sums`` ``None``), which
    its :meth:`~adaptlr.core.Part.sum_terms` reads. ``stores`` maps a state key to its new
    value; ``reductions`` lists the passes before the update, in slot order.
    """

    graph: Graph
    coef_keys: list[tuple[int, str]]
    buffer_keys: list[str]  # state keys of every per-element buffer, in state order
    new_param: Sym
    stores: dict[str, Sym]
    reductions: list[Reduction] = field(default_factory=list)
    #: η_t/σ_t (:meth:`Transform.eta_over_sigma`) in terms of the buffers *after* the step
    #: (``("nbuf", key)`` leaves) and the step's coefficients; ``None`` where the chain has no
    #: magnitude, or its σ cannot be traced
    eff: Sym | None = None
    pre_keys: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ncoef(self) -> int:
        """Columns of the coefficient table (at least one: kernels index a 2-d table)."""
        return max(len(self.coef_keys) + len(self.pre_keys), 1)

    @functools.cached_property
    def pre_columns(self) -> dict[tuple[int, str], int]:
        """The column of each ``(slot index, name)`` of the first call of a part with sums."""
        base = len(self.coef_keys)
        return {k: base + j for j, k in enumerate(self.pre_keys)}

    @functools.cached_property
    def pre_counts(self) -> Counter[int]:
        """How many first-call coefficients each part with sums returns."""
        return Counter(si for si, _ in self.pre_keys)

    # what every step's launch needs about the program, computed once (it is shared by every
    # chain of the same signature; these depend on the program alone)
    @functools.cached_property
    def coef_columns(self) -> dict[tuple[int, str], int]:
        """The column of each ``(slot index, coefficient name)`` in the coefficient table."""
        return {k: j for j, k in enumerate(self.coef_keys)}

    @functools.cached_property
    def coef_counts(self) -> Counter[int]:
        """How many coefficients each slot's part contributes."""
        return Counter(si for si, _ in self.coef_keys)

    @functools.cached_property
    def konst(self) -> np.ndarray:
        """The graph's literal constants, as the kernels read them."""
        return np.array(self.graph.consts or [0.0], dtype=np.float64)

    def loads(self, *roots: Sym) -> set[tuple[str, Any]]:
        """The leaves (``("g",)``, ``("p",)``, ``("buf", key)``) that ``roots`` read."""
        return {(n.op, n.args[0]) for n in walk(roots) if n.op in ("g", "p", "buf")}

    def signature(self) -> str:
        """A stable text of the whole program (what kernels are cached under)."""
        lines = [f"consts {[c.hex() for c in self.graph.consts]}"]
        for n in self.graph.nodes:
            args = ",".join(str(a.index) if isinstance(a, Sym) else repr(a) for a in n.args)
            lines.append(f"{n.index}={n.op}({args})")
        lines.append(f"param={self.new_param.index}")
        lines.append(f"stores={[(k, v.index) for k, v in self.stores.items()]}")
        lines.append(
            "reductions="
            + repr(
                [
                    (
                        r.slot,
                        r.names,
                        [t.index for t in r.terms],
                        r.scopes,
                        None if r.incoming is None else r.incoming.index,
                    )
                    for r in self.reductions
                ]
            )
        )
        lines.append(f"eff={None if self.eff is None else self.eff.index}")
        lines.append(f"buffers={self.buffer_keys} coefs={self.coef_keys} pre={self.pre_keys}")
        return "\n".join(lines)

    def digest(self) -> str:
        return hashlib.sha256(self.signature().encode()).hexdigest()[:20]


def walk(roots: tuple[Sym, ...] | list[Sym]) -> Iterator[Sym]:
    """The nodes ``roots`` depend on, each once, operands before their users."""
    seen: set[int] = set()
    order: list[Sym] = []
    stack: list[tuple[Sym, bool]] = [(r, False) for r in reversed(list(roots))]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if node.index in seen:
            continue
        seen.add(node.index)
        stack.append((node, True))
        for a in reversed(node.args):
            if isinstance(a, Sym) and a.index not in seen:
                stack.append((a, False))
    return iter(order)


def trace(transform: Transform) -> Program:
    """Run every part's ``apply`` of ``transform`` on symbols; raise :class:`TraceError` if a
    part cannot be expressed as a kernel."""
    graph = Graph()
    ops = SymOps(graph)
    g = graph.leaf("g", "g", False)
    p = graph.leaf("p", "p", False)
    u: Any = g
    buffers: dict[str, Any] = {}
    buffer_keys: list[str] = []
    coef_keys: list[tuple[int, str]] = []
    reductions: list[Reduction] = []
    summing: list[tuple[int, Any, dict[str, Sym], dict[str, Any]]] = []
    stores: dict[str, Sym] = {}
    coefs: list[dict[str, Sym]] = []
    shared = transform.init_shared()
    for si, slot in enumerate(transform.slots):
        part = slot.part
        # the coefficient *names* are fixed by each part; their values are computed per step
        # (a part with sums: those of its second call, which apply reads; probe totals of 1)
        scal = {slot.names[s.name]: s.initial for s in part.scalars}
        scal.update(shared)
        probe = {x.name: 1.0 for x in part.sums} if part.sums else None
        names = _probe_names(transform, si, scal, probe)
        c = {}
        for name in names:
            c[name] = graph.leaf("coef", len(coef_keys), True)
            coef_keys.append((si, name))
        coefs.append(c)
        buf = {}
        for b in part.buffers:
            key = slot.names[b.name]
            buffer_keys.append(key)
            buffers[key] = graph.leaf("buf", key, False)
            buf[b.name] = buffers[key]
        if part.sums:
            summing.append((si, u, buf, scal))
        try:
            u, new = part.apply(u, p, buf, c, ops)
        except TraceError:
            raise
        except Exception as exc:
            raise TraceError(f"{part!r}: apply cannot be traced: {exc!r}") from exc
        for name, value in new.items():
            if name not in slot.names:
                raise TraceError(f"{part!r}: apply returned an unknown buffer {name!r}")
            value = graph.lift(value)
            if value.is_bool:
                raise TraceError(f"{part!r}: buffer {name!r} would hold a comparison")
            key = slot.names[name]
            if value is not buffers.get(key):
                stores[key] = value
    u = graph.lift(u)
    new_param = graph.op("add", p, u)
    if new_param.is_bool:
        raise TraceError("the update is a comparison")
    # the sum terms, from each summing part's incoming update and old buffers, with the
    # coefficients of its first call in columns after those apply reads
    pre_keys: list[tuple[int, str]] = []
    for si, u_in, buf, scal in summing:
        part = transform.slots[si].part
        pre = {}
        for name in _probe_names(transform, si, scal, None):
            pre[name] = graph.leaf("coef", len(coef_keys) + len(pre_keys), True)
            pre_keys.append((si, name))
        reductions.append(_trace_sums(si, part, graph, u_in, p, buf, pre, ops))
    return Program(
        graph, coef_keys, buffer_keys, new_param, stores, reductions,
        _trace_eff(transform, graph, coefs), pre_keys,
    )  # fmt: skip


def _probe_names(
    transform: Transform, si: int, scal: dict[str, Any], sums: dict[str, float] | None
) -> list[str]:
    """The names of slot ``si``'s coefficients, from a probe call (step 1, count 0)."""
    try:
        names, _ = transform.slot_coefficients(si, 1, 0, scal, sums)
    except Exception as exc:  # a schedule that cannot be evaluated at 0, ...
        part = transform.slots[si].part
        raise TraceError(f"{part!r}: coefficients failed on a probe step: {exc}") from exc
    return list(names)


def _trace_sums(
    si: int, part: Any, graph: Graph, u: Any, p: Sym, buf: dict[str, Sym], c: dict, ops: SymOps
) -> Reduction:
    """A part's :meth:`~adaptlr.core.Part.sum_terms` as a :class:`Reduction`."""
    try:
        terms = part.sum_terms(u, p, buf, c, ops)
    except TraceError:
        raise
    except Exception as exc:
        raise TraceError(f"{part!r}: sum_terms cannot be traced: {exc!r}") from exc
    if not isinstance(terms, dict):
        raise TraceError(f"{part!r}: sum_terms returned a {type(terms).__name__}, not a dict")
    declared = [x.name for x in part.sums]
    # as the reference path: a sum without a term is 0, a term of no declared sum is unused
    nodes = tuple(graph.lift(terms.get(n, 0.0)) for n in declared)
    for n, node in zip(declared, nodes):
        if node.is_bool:
            raise TraceError(f"{part!r}: the term of sum {n!r} is a comparison")
    scopes = tuple(x.scope for x in part.sums)
    return Reduction(si, tuple(declared), nodes, scopes, incoming=graph.lift(u))


def _trace_eff(transform: Transform, graph: Graph, coefs: list[dict[str, Sym]]) -> Sym | None:
    """η_t/σ_t as the step's kernel can measure it at sampled elements, from the new buffers."""
    new = {k: graph.leaf("nbuf", k, False) for k in transform.buffer_keys}
    try:
        eff = transform.eta_over_sigma(new, coefs, SymOps(graph))
    except Exception:  # noqa: BLE001 - an untraceable σ only costs the η/σ measurement
        return None
    if eff is None:
        return None
    eff = graph.lift(eff)
    return None if eff.is_bool else eff
