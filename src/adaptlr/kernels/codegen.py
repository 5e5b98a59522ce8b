"""Source code of fused kernels, generated from a traced :class:`~.trace.Program`.

Both backends get the same arguments, describing a step over *chunks*: contiguous pieces of
one tensor each, all chunks of a step in one launch.

- ``pptr``, ``gptr``: per tensor, the address of its parameter and gradient (real view);
- ``soff``: per tensor, its offset in the flat state buffers;
- ``crow``: per tensor, its row in ``coef`` (tensors with the same step share a row);
- ``coef``: float64 ``[rows, columns]`` table of coefficients (``Program.coef_keys``);
- ``konst``: float64 constants of the traced graph;
- ``ck_t``, ``ck_lo``, ``ck_hi``: per chunk, its tensor and element range in that tensor;
- the flat state buffers, in ``Program.buffer_keys`` order.

Dtypes follow torch's rules operation by operation, as the reference path computes: ``p`` has
the parameters' dtype, ``g`` the promotion of the parameters' and the state's (the reference
casts the gradient up to a wider state before the first part, so that float16 gradients
square in float32), buffers the state's (float32 for bf16/fp16 parameters by default), an
operation on two tensors takes the promoted dtype and a Python float takes the tensor's.
bfloat16/float16 values are held in float32 (torch's "opmath") and rounded back after every
operation; which operand rounding torch's CPU kernels apply to a Python float with a
low-precision tensor is mirrored in :func:`_scalar_mode`. Kernels read and write
bf16/fp16 memory as uint16 bits (numba has no bfloat16).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch

from .. import stats as _stats
from .trace import Graph, Program, Reduction, Sym, walk

#: every tensor's state starts at a multiple of this many elements of the flat buffers (64
#: bytes in float32): the Triton kernels declare it, so that they may use vector accesses
ALIGN = 16

_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_CMP = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "eq": "==", "ne": "!="}
LOW = ("bfloat16", "float16")
_SHORT = {"bfloat16": "bf16", "float16": "f16"}


def _literal(value: float) -> str:
    if math.isnan(value):
        return "np.nan"
    if math.isinf(value):
        return "np.inf" if value > 0 else "(-np.inf)"
    return repr(value)


def compute_type(dtype: str) -> str:
    """The type a value of ``dtype`` is held and computed in (opmath: float32 for bf16/fp16)."""
    return "float64" if dtype == "float64" else "float32"


def _promote(a: str, b: str) -> str:
    return str(torch.promote_types(getattr(torch, a), getattr(torch, b))).replace("torch.", "")


def _scalar_mode(op: str, cuda: bool) -> str:
    """How torch takes a Python float operand of a bf16/fp16 tensor operation: ``"f32"``
    (kept in float32, "opmath") or ``"low"`` (rounded to the tensor's dtype first). Measured on
    CPU: add/sub round the scalar, mul/div/clamp do not; CUDA kernels take every scalar in
    opmath. ``torch.where`` makes the scalar a tensor of the other operand's dtype."""
    if op == "where" or (op in ("add", "sub") and not cuda):
        return "low"
    return "f32"


def _uniform_expr(n: Sym, name: dict[int, str], lang: str) -> str:
    """A per-chunk float64 expression (coefficients and constants only)."""
    a = [name[x.index] if isinstance(x, Sym) else None for x in n.args]
    if n.op == "coef":
        j = n.args[0]
        return f"coef[r, {j}]" if lang == "numba" else f"tl.load(coef + r * NCOEF + {j})"
    if n.op == "const":
        return f"konst[{n.args[0]}]" if lang == "numba" else f"tl.load(konst + {n.args[0]})"
    if n.op == "bool":
        return repr(n.args[0])
    return _op_expr(n.op, a, lang, uniform=True)


def _op_expr(op: str, a: list, lang: str, uniform: bool, t32: bool = False) -> str:
    if op in _INFIX:
        if op == "div" and lang == "triton" and t32 and not uniform:
            return f"tl.div_rn({a[0]}, {a[1]})"  # Triton's fp32 '/' is approximate
        return f"({a[0]} {_INFIX[op]} {a[1]})"
    if op in _CMP:
        return f"({a[0]} {_CMP[op]} {a[1]})"
    if op == "neg":
        return f"(-{a[0]})"
    if lang == "numba":
        if op == "sqrt":
            return f"np.sqrt({a[0]})"
        if op == "abs":
            return f"abs({a[0]})"
        if op in ("max", "min"):
            return f"nan{op}({a[0]}, {a[1]})"
        if op == "where":
            return f"({a[1]} if {a[0]} else {a[2]})"
    else:
        if op == "sqrt":
            return f"tl.sqrt_rn({a[0]})" if (t32 and not uniform) else f"tl.sqrt({a[0]})"
        if op == "abs":
            return f"tl.abs({a[0]})"
        if op == "max":
            return f"tl.maximum({a[0]}, {a[1]}, propagate_nan=tl.PropagateNan.ALL)"
        if op == "min":
            return f"tl.minimum({a[0]}, {a[1]}, propagate_nan=tl.PropagateNan.ALL)"
        if op == "where":
            return f"tl.where({a[0]}, {a[1]}, {a[2]})"
    raise ValueError(f"codegen: unknown op {op!r}")


class _Body:
    """Names of the nodes of one kernel: uniform ones per chunk, elementwise ones per element.

    ``pd`` and ``sd`` are the dtypes of the parameters (and gradients) and of the state;
    ``wide``: the operations computed in float64 whatever their operands' dtypes (a
    reduction's terms: :meth:`~.trace.Reduction.wide`).
    """

    def __init__(
        self,
        prog: Program,
        roots: list[Sym],
        lang: str,
        pd: str,
        sd: str,
        cuda: bool = False,
        wide: frozenset[int] = frozenset(),
    ) -> None:
        self.prog, self.lang, self.pd, self.sd, self.cuda = prog, lang, pd, sd, cuda
        self.wide = wide
        self.nodes = list(walk(roots))
        self.name: dict[int, str] = {}
        self.dtype: dict[int, str] = {}  # elementwise node -> its torch dtype (or "bool")
        self.cast: dict[tuple[int, str], str] = {}  # (uniform node, how) -> per-chunk name
        self.chunk_lines: list[str] = []
        self.elem_lines: list[str] = []
        self.buffers_read: list[str] = []
        self._emit()

    # -- conversions ---------------------------------------------------------------------
    def _to(self, expr: str, ct: str) -> str:
        """A float64 or float32 value as ``ct`` (a compute type)."""
        if self.lang == "numba":
            return f"np.{ct}({expr})"
        return f"({expr}).to(tl.{ct})"

    def _round(self, expr: str, dtype: str) -> str:
        """A float32 value rounded to bf16/fp16 (held in float32); others unchanged."""
        return f"round_{_SHORT[dtype]}({expr})" if dtype in LOW else expr

    def _load(self, ref: str, dtype: str) -> str:
        if self.lang == "numba":
            return f"{_SHORT[dtype]}_to_f32({ref})" if dtype in LOW else ref
        return f"({ref}).to(tl.float32)" if dtype in LOW else ref

    def _store(self, expr: str, dtype: str) -> str:
        """A value already of ``dtype`` (held in its compute type) as memory of ``dtype``."""
        if dtype not in LOW:
            return expr
        if self.lang == "numba":
            return f"f32_to_{_SHORT[dtype]}({expr})"
        return f"({expr}).to(tl.{dtype})"

    def _uniform(self, x: Sym, how: str) -> str:
        """Uniform ``x`` as an operand of an elementwise operation: ``how`` is a compute type,
        or ``"low:<dtype>"`` (rounded to a low-precision dtype)."""
        key = (x.index, how)
        if key not in self.cast:
            v = f"z{x.index}" + ("" if how == "float32" else "_" + how.replace(":", "_"))
            src = self.name[x.index]
            if how.startswith("low:"):
                expr = self._round(self._to(src, "float32"), how[4:])
            elif how.startswith("inv:"):  # 1 / s in float64, then rounded (measured, H200)
                expr = self._to(f"(1.0 / {src})", how[4:])
            else:
                expr = self._to(src, how)
            self.chunk_lines.append(f"{v} = {expr}")
            self.cast[key] = v
        return self.cast[key]

    def value_as(self, x: Sym, dtype: str) -> str:
        """``x`` converted to ``dtype`` as torch's ``.to(dtype)`` does, held in its compute
        type (what a store to a tensor of ``dtype`` writes)."""
        ct = compute_type(dtype)
        if x.uniform and not x.is_bool:
            return self._uniform(x, f"low:{dtype}" if dtype in LOW else ct)
        v = self.name[x.index]
        have = self.dtype[x.index]
        if compute_type(have) != ct:
            v = self._to(v, ct)
        if dtype in LOW and have != dtype:
            v = self._round(v, dtype)
        return v

    def _operand(self, x: Sym, node_dtype: str, op: str, position: int) -> str:
        if x.is_bool or not x.uniform:
            v = self.name[x.index]
            have = self.dtype.get(x.index)
            if have not in (None, "bool") and compute_type(have) != compute_type(node_dtype):
                v = self._to(v, compute_type(node_dtype))
            return v
        if node_dtype in LOW:
            mode = _scalar_mode(op, self.cuda)
            return self._uniform(x, f"low:{node_dtype}" if mode == "low" else "float32")
        return self._uniform(x, compute_type(node_dtype))

    # -- nodes ---------------------------------------------------------------------------
    def _node_dtype(self, n: Sym) -> str:
        if n.op == "g":
            # as the reference: the update is formed in the state's dtype where that is wider
            return _promote(self.pd, self.sd) if self.prog.buffer_keys else self.pd
        if n.op == "p":
            return self.pd
        if n.op in ("buf", "nbuf"):
            return self.sd
        if n.is_bool:
            return "bool"
        if n.index in self.wide:
            return "float64"
        args = n.args[1:] if n.op == "where" else n.args
        out = None
        for a in args:
            if isinstance(a, Sym) and not a.uniform:
                d = self.dtype[a.index]
                out = d if out is None else _promote(out, d)
        return out or "float32"  # torch.where(cond, float, float): the default dtype

    def _emit(self) -> None:
        buf_index = {k: j for j, k in enumerate(self.prog.buffer_keys)}
        numba = self.lang == "numba"
        for n in self.nodes:
            v = f"{'s' if n.uniform else 'e'}{n.index}"
            self.name[n.index] = v
            if n.uniform:
                self.chunk_lines.append(f"{v} = {_uniform_expr(n, self.name, self.lang)}")
                continue
            dt = self.dtype[n.index] = self._node_dtype(n)
            if n.op == "g":
                expr = self._load("G[i]" if numba else "tl.load(G + offs, mask=mask)", self.pd)
                if compute_type(self.pd) != compute_type(dt):
                    expr = self._to(expr, compute_type(dt))
            elif n.op == "p":
                expr = self._load("P[i]" if numba else "tl.load(P + offs, mask=mask)", dt)
            elif n.op == "buf":
                j = buf_index[n.args[0]]
                self.buffers_read.append(n.args[0])
                ref = f"B{j}[i]" if numba else f"tl.load(b{j} + so, mask=mask)"
                expr = self._load(ref, dt)
            elif n.op == "nbuf":  # a buffer after the step: read back at the sampled elements
                j = buf_index[n.args[0]]
                ref = f"B{j}[i]" if numba else f"tl.load(b{j} + so, mask=etaken, other=1.0)"
                expr = self._load(ref, dt)
            else:
                cmp_dtype = dt
                if n.is_bool:  # a comparison is made in its operands' promoted dtype
                    ds = [self.dtype[a.index] for a in n.args if not a.uniform]
                    cmp_dtype = ds[0] if len(ds) == 1 else _promote(*ds)
                args = [self._operand(a, cmp_dtype, n.op, i) for i, a in enumerate(n.args)]
                ct = compute_type(cmp_dtype)
                t32 = ct == "float32"
                if n.op == "div" and n.args[0].uniform:
                    # torch: s / x is x.reciprocal() * s (Tensor.__rtruediv__), rounded twice
                    one = f"np.{ct}(1.0)" if numba else f"tl.full([BLOCK], 1.0, tl.{ct})"
                    recip = _op_expr("div", [one, args[1]], self.lang, False, t32)
                    expr = self._round(f"({args[0]} * {self._round(recip, cmp_dtype)})", dt)
                elif n.op == "div" and n.args[1].uniform and self.cuda:
                    # torch's CUDA kernel: x / s is x * (1 / s), one rounding of the inverse
                    inv = self._uniform(n.args[1], f"inv:{ct}")
                    expr = self._round(f"({args[0]} * {inv})", dt)
                else:
                    expr = _op_expr(n.op, args, self.lang, uniform=False, t32=t32)
                    if n.op not in ("neg", "abs", "where", "max", "min") and not n.is_bool:
                        expr = self._round(expr, dt)
                    elif n.op in ("where", "max", "min"):
                        expr = self._round(expr, dt)  # a float32 scalar operand is rounded
            self.elem_lines.append(f"{v} = {expr}")

    def new_param(self) -> str:
        """``p + u`` as the reference computes it: ``u`` cast to the gradient's dtype, then
        added in the parameter's dtype."""
        node = self.prog.new_param
        p, u = node.args
        ct = compute_type(self.pd)
        expr = _op_expr("add", [self.name[p.index], self.value_as(u, self.pd)], self.lang, False)
        return self._round(expr, self.pd) if ct == "float32" else expr

    def store(self, node: Sym) -> str:
        """A buffer's new value, cast to the state dtype, as memory."""
        return self._store(self.value_as(node, self.sd), self.sd)


#: the measuring kernel's extra arguments (see ``adaptlr.kernels.measure.launch_stats``; the
#: numba kernel also adds up its chunks' sums into ``T``)
_STATS_ARGS = ", stats, S, Sp, E, stride, every, sbase"


def _columns() -> tuple[int, int]:
    """How many columns ``stats`` (a row per chunk) and ``T``'s totals have, one per statistic
    in the order of :data:`adaptlr.stats.STATISTICS`, and the column also summed per tensor."""
    names = [s.name for s in _stats.STATISTICS]
    return len(names), names.index(_stats.PER_TENSOR)


def _stat_terms(
    lang: str, leaves: dict[str, str], sampled: bool
) -> tuple[list[str], list[tuple[int, str, str, list[str]]]]:
    """The kernel lines of the statistics (:data:`adaptlr.stats.STATISTICS`) taken over every
    element (or, with ``sampled``, over the sampled ones), traced from their one definition.

    ``leaves`` names the kernel variable holding each leaf of :class:`adaptlr.stats.Leaves`
    that this part of the kernel has. Returns the lines computing the factors (each operation
    once) and per statistic its column, its two factors' names and the leaves they read (so
    a backend can give the sum its type)."""
    graph = Graph()
    syms = {k: graph.leaf("stat", k, False) for k in leaves}
    x = _stats.Leaves(**syms)
    lines: list[str] = []
    name = {s.index: leaves[k] for k, s in syms.items()}
    terms = []
    for j, stat in enumerate(_stats.STATISTICS):
        if stat.sampled != sampled:
            continue
        try:
            factors = [graph.lift(f) for f in stat.factors(x)]
        except Exception as exc:
            raise ValueError(
                f"codegen: statistic {stat.name!r} reads a leaf that the "
                f"{'sampled' if sampled else 'whole-step'} pass lacks (it has {sorted(leaves)})"
            ) from exc
        for n in walk(factors):
            if n.index in name:
                continue
            if n.op == "const":
                name[n.index] = _literal(graph.consts[n.args[0]])
                continue
            if n.uniform or n.is_bool or n.op == "where":
                raise ValueError(f"codegen: statistic {stat.name!r} uses {n.op!r}")
            v = f"x{n.index}"
            lines.append(f"{v} = {_op_expr(n.op, [name[a.index] for a in n.args], lang, False)}")
            name[n.index] = v
        read = sorted({n.args[0] for n in walk(factors) if n.op == "stat"})
        terms.append((j, name[factors[0].index], name[factors[1].index], read))
    return lines, terms


def _buffer_args(prog: Program) -> str:
    return ", ".join(f"b{j}" for j in range(len(prog.buffer_keys)))


def _numba_chunk(prog: Program) -> list[str]:
    """The head of a numba kernel's loop over chunks: one chunk's parameter, gradient and
    buffer views (shared by the step and the reduction kernels)."""
    return [
        "    isz = w.itemsize",
        "    for k in prange(ck_t.shape[0]):",
        "        t = ck_t[k]",
        "        lo = ck_lo[k]",
        "        n = ck_hi[k] - lo",
        "        P = carray(address_as(pptr[t] + lo * isz, w), n)",
        "        G = carray(address_as(gptr[t] + lo * isz, w), n)",
        "        o = soff[t] + lo",
        "        r = crow[t]",
        # slices, not b[o + i]: a non-negative index lets LLVM vectorise the loop
        *[f"        B{j} = b{j}[o : o + n]" for j in range(len(prog.buffer_keys))],
    ]


# The generated source is the key of the kernel cache (backends._load) and inlines these
# helpers: their digest in the source makes a change to them compile the kernels anew.
_HELPERS_DIGEST = hashlib.sha256(
    Path(__file__).with_name("_numba_support.py").read_bytes()
).hexdigest()[:16]


def numba_source(prog: Program, pd: str, sd: str | None = None) -> str:
    """A module defining ``step`` (the fused update), ``step_stats`` (the same update, also
    measuring it for the monitor) and one ``reduce{k}`` per reduction, each also as
    ``*_serial`` (on one thread, without numba's parallel runtime).

    ``pd`` is the parameters' dtype, ``sd`` the state's (default: ``pd``).
    """
    sd = sd or pd
    buffers = _buffer_args(prog)
    bufsig = (", " + buffers) if buffers else ""
    head = [
        "# Generated by adaptlr.kernels from the traced parts; do not edit.",
        f"# helpers: _numba_support.py {_HELPERS_DIGEST}",
        "import numpy as np",
        "from numba import prange, carray",
        "from adaptlr.kernels._numba_support import acc_add, acc_sq, address_as, cached_njit",
        "from adaptlr.kernels._numba_support import nanmax, nanmin",
        "from adaptlr.kernels._numba_support import bf16_to_f32, f32_to_bf16, round_bf16",
        "from adaptlr.kernels._numba_support import f16_to_f32, f32_to_f16, round_f16",
    ]
    roots = [prog.new_param, *prog.stores.values()]
    body = _Body(prog, roots, "numba", pd, sd)
    buf_index = {k: j for j, k in enumerate(prog.buffer_keys)}
    stores = [
        f"            B{buf_index[key]}[i] = {body.store(node)}"
        for key, node in prog.stores.items()
    ]
    old = body.name[prog.new_param.args[0].index]  # the parameter as loaded, before the step
    g = body._load("G[i]", pd)
    # the gradient as the update loaded it: a second load after the stores, which may alias
    # it as far as LLVM knows, cannot be merged with the first
    g_node = next((n for n in body.nodes if n.op == "g"), None)
    g_now = body.name[g_node.index] if g_node is not None else g
    # sums of squares per chunk in the compute type (float32 for float32 and narrower), so that
    # float64 lanes do not compete with the step's own arithmetic; the chunks' sums are then
    # added in float64
    ct_g = compute_type(body.dtype[g_node.index]) if g_node is not None else compute_type(pd)
    ct_p = compute_type(pd)
    types = {"g": ct_g, "p_old": ct_p, "p_new": ct_p}
    ns, pt = _columns()
    whole_lines, whole = _stat_terms("numba", {"g": g_now, "p_old": old, "p_new": "pn"}, False)
    sample_lines, sampled = _stat_terms("numba", {"g": "gs", "g_prev": "Sp[slot]"}, True)
    for j, a, b, _ in whole:
        if a != b:  # acc_sq is the one vectorised reduction _numba_support provides
            raise ValueError(
                f"codegen: statistic {_stats.STATISTICS[j].name!r} is taken over every element,"
                " which the numba kernel can only do for a sum of squares (factors a is b)"
            )
    eb, eff = _eff_body(prog, "numba", pd, sd)
    out: list[str] = []
    # each kernel ``k`` also as ``k_serial``, compiled without numba's parallel runtime
    # (``prange`` is then ``range``): for a step too small to share out (see
    # ``launch.PARALLEL_GRAIN``), which skips the thread-pool launch and the thread-count calls
    # around it, and for a process whose pool is unusable (see ``launch.threads_for``); numba
    # compiles a kernel on its first call, so an unused variant costs nothing
    for name in ("step", "step_serial", "step_stats", "step_stats_serial"):
        stats = name.startswith("step_stats")
        extra = _STATS_ARGS + ", T" if stats else ""
        parallel = not name.endswith("_serial")
        out += [
            "",
            "",
            f"@cached_njit(parallel={parallel}, nogil=True, error_model='numpy')",
            f"def {name}(pptr, gptr, soff, crow, coef, konst, ck_t, ck_lo, ck_hi, w{extra}"
            f"{bufsig}):",
            *_numba_chunk(prog),
        ]
        out += ["        " + line for line in body.chunk_lines]
        if stats:
            out += [
                f"        a{j} = np.{'float64' if 'float64' in map(types.get, read) else 'float32'}"
                "(0.0)"
                for j, _, _, read in whole
            ]
        out.append("        for i in range(n):")
        out += ["            " + line for line in body.elem_lines]
        out += stores
        out.append(f"            pn = {body.new_param()}")
        out.append(f"            P[i] = {body._store('pn', pd)}")
        if not stats:
            continue
        # the monitor's figures from the same pass: Σg², Σ(θ_new − θ_old)², Σθ_new²; at every
        # stride-th element of the flat state (a fixed sample) the gradient, into
        # S[sbase[t] + flat offset // stride], and its products with itself and with the
        # previous measured step's sample Sp at the same slot (the cosine between them); at
        # every `every`-th sampled slot η_t/σ_t, from the new buffers read back while the
        # chunk is in cache, into E[slot // every]
        out += [
            *["            " + line for line in whole_lines],
            *[f"            a{j} = acc_sq(a{j}, {a})" for j, a, _, _ in whole],
            *["        " + line for line in (eb.chunk_lines if eb else [])],
            *[f"        a{j} = 0.0" for j, *_ in sampled],
            "        for i in range((stride - o % stride) % stride, n, stride):",
            "            slot = sbase[t] + (o + i) // stride",
            f"            gs = np.float64({g})",
            "            S[slot] = gs",
            *["            " + line for line in sample_lines],
            *[f"            a{j} += {a} * {b}" for j, a, b, _ in sampled],
            *(
                [
                    "            if slot % every == 0:",
                    *["                " + line for line in eb.elem_lines],
                    f"                E[slot // every] = np.float64({eff})",
                ]
                if eb
                else []
            ),
            *[f"        stats[k, {j}] = np.float64(a{j})" for j, *_ in whole + sampled],
            # the chunks' sums added up here, in chunk order: the totals in T[0:ns] and each
            # tensor's Σg² in T[ns + t] (no reduction left for the step's Python)
            "    T[:] = 0.0",
            "    for k in range(ck_t.shape[0]):",
            f"        for j in range({ns}):",
            "            T[j] += stats[k, j]",
            f"        T[{ns} + ck_t[k]] += stats[k, {pt}]",
        ]
    for suffix in ("", "_serial"):
        for k, red in enumerate(prog.reductions):
            out += _numba_reduction(prog, k, red, suffix, pd, sd, bufsig)
    return "\n".join(head + out) + "\n"


def _terms(body: _Body, red: Reduction) -> list[tuple[str, bool]]:
    """Each term of ``red`` as ``body`` computes it: its value (in float64, but for a term
    that is the incoming update itself or a leaf, which is cast) and whether it is uniform."""
    out = []
    for node in red.terms:
        if node.uniform:
            out.append((body.name[node.index], True))  # float64, per chunk
        else:
            out.append((body.value_as(node, body.dtype[node.index]), False))
    return out


def _numba_reduction(
    prog: Program, k: int, red: Reduction, suffix: str, pd: str, sd: str, bufsig: str
) -> list[str]:
    """Kernel ``reduce{k}``: per chunk, each term of reduction ``k`` computed and summed in
    float64 into ``part[chunk, term]`` (the incoming update as the update pass computes it;
    a term the same for every element counts once per element, as the reference does)."""
    body = _Body(prog, list(red.terms), "numba", pd, sd, wide=red.wide())
    terms = _terms(body, red)
    lines = [
        "",
        "",
        f"@cached_njit(parallel={not suffix}, nogil=True, error_model='numpy')",
        f"def reduce{k}{suffix}(pptr, gptr, soff, crow, coef, konst, ck_t, ck_lo, ck_hi, w,"
        f" part{bufsig}):",
        *_numba_chunk(prog),
        *["        " + line for line in body.chunk_lines],
    ]
    elementwise = [(j, v) for j, (v, uniform) in enumerate(terms) if not uniform]
    if elementwise:
        lines += [f"        acc{j} = 0.0" for j, _ in elementwise]
        lines.append("        for i in range(n):")
        lines += ["            " + line for line in body.elem_lines]
        for j, v in elementwise:
            lines.append(f"            x{j} = np.float64({v})")
            # reassociated: the loop vectorises
            lines.append(f"            acc{j} = acc_add(acc{j}, x{j})")
    for j, (v, uniform) in enumerate(terms):
        if uniform:
            total = f"np.float64(n) * {v}"
            lines.append(f"        part[k, {j}] = {total}")
        else:
            lines.append(f"        part[k, {j}] = acc{j}")
    return lines


def _eff_body(
    prog: Program, lang: str, pd: str, sd: str, cuda: bool = False
) -> tuple[_Body | None, str]:
    """The lines computing η_t/σ_t (``prog.eff``) at a sampled element, and its value."""
    if prog.eff is None:
        return None, ""
    eb = _Body(prog, [prog.eff], lang, pd, sd, cuda)
    return eb, eb.value_as(prog.eff, eb.dtype.get(prog.eff.index, sd))


def _place_chunk_lines(lines: list[str], body: _Body, indent: str, before: str) -> list[str]:
    """Insert ``body``'s per-chunk lines just before the line ``before``."""
    i = lines.index(before)
    return lines[:i] + [indent + line for line in body.chunk_lines] + lines[i:]


_TRITON_HELPERS = [
    "@triton.jit",
    "def round_bf16(x):",
    "    # float32 -> nearest bfloat16 (ties to even) in bits: the interpreter's cast truncates",
    "    u = x.to(tl.uint32, bitcast=True)",
    "    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16",
    "    return tl.where(x != x, x, u.to(tl.float32, bitcast=True))",
    "",
    "",
    "@triton.jit",
    "def round_f16(x):",
    "    return x.to(tl.float16).to(tl.float32)",
    "",
    "",
]


def triton_source(prog: Program, pd: str, sd: str | None = None, cuda: bool = True) -> str:
    """A module defining Triton kernels ``step``, ``step_full``, ``step_stats`` and
    ``reduce{k}``: one program per chunk.

    ``step_full`` is ``step`` for chunks of exactly ``BLOCK`` elements: no mask, and with
    ``ALIGNED`` (the launcher checks that every parameter and gradient address is a multiple
    of 16 bytes) the parameter and gradient pointers are declared so. Only then does Triton
    emit 128-bit loads and stores (``ld.global.v4.b32`` in the PTX for sm_90, against one
    32-bit access per element for ``step``); a chunk's start is a multiple of ``BLOCK`` and a
    state offset of ``ALIGN`` elements, which every kernel declares.

    ``cuda`` chooses which of torch's kernels the rounding copies: CUDA's, or (for the
    interpreter, checked against CPU tensors) the CPU's."""
    sd = sd or pd
    buffers = _buffer_args(prog)
    bufsig = (", " + buffers) if buffers else ""
    head = [
        "# Generated by adaptlr.kernels from the traced parts; do not edit.",
        "import triton",
        "import triton.language as tl",
        "",
        "",
        *_TRITON_HELPERS,
    ]

    def chunk_head(mask: str) -> list[str]:
        return [
            "    k = tl.program_id(0)",
            "    t = tl.load(ck_t + k)",
            "    lo = tl.multiple_of(tl.load(ck_lo + k), BLOCK)",
            "    hi = tl.load(ck_hi + k)",
            "    offs = lo + tl.arange(0, BLOCK)",
            f"    mask = {mask}",
            f"    P = tl.load(pptr + t).to(tl.pointer_type(tl.{pd}))",
            f"    G = tl.load(gptr + t).to(tl.pointer_type(tl.{pd}))",
            f"    so = tl.multiple_of(tl.load(soff + t), {ALIGN}) + offs",
            "    r = tl.load(crow + t)",
        ]

    pre = chunk_head("offs < hi")
    full = chunk_head("None") + [
        "    if ALIGNED:",
        "        P = tl.multiple_of(P, 16)",
        "        G = tl.multiple_of(G, 16)",
    ]
    roots = [prog.new_param, *prog.stores.values()]
    body = _Body(prog, roots, "triton", pd, sd, cuda)
    buf_index = {k: j for j, k in enumerate(prog.buffer_keys)}
    stores = [
        f"    tl.store(b{buf_index[key]} + so, {body.store(node)}, mask=mask)"
        for key, node in prog.stores.items()
    ]
    stores.append(f"    pn = {body.new_param()}")
    stores.append(f"    tl.store(P + offs, {body._store('pn', pd)}, mask=mask)")
    old = body.name[prog.new_param.args[0].index]  # the parameter as loaded, before the step
    g = body._load("tl.load(G + offs, mask=mask)", pd)
    eb, eff = _eff_body(prog, "triton", pd, sd, cuda)
    # the statistics in float64, every leaf zero outside the chunk
    whole_lines, whole = _stat_terms("triton", {"g": "gv", "p_old": "ov", "p_new": "pv"}, False)
    sample_lines, sampled = _stat_terms("triton", {"g": "gv", "g_prev": "gp"}, True)
    ns, _ = _columns()
    out: list[str] = []
    for name in ("step", "step_full", "step_stats"):
        stats = name == "step_stats"
        extra = _STATS_ARGS if stats else ""
        consts = "NCOEF: tl.constexpr, BLOCK: tl.constexpr"
        if name == "step_full":
            consts += ", ALIGNED: tl.constexpr"
        out += [
            "",
            "",
            "@triton.jit",
            f"def {name}(pptr, gptr, soff, crow, coef, konst, ck_t, ck_lo, ck_hi{extra}{bufsig},",
            f"         {consts}):",
            *(full if name == "step_full" else pre),
            *["    " + line for line in body.chunk_lines],
            *["    " + line for line in body.elem_lines],
            *stores,
        ]
        if stats:
            # the monitor's figures from the same pass (see numba_source)
            out += [
                f"    gv = tl.where(mask, ({g}).to(tl.float64), 0.0)",
                "    pv = tl.where(mask, pn.to(tl.float64), 0.0)",
                f"    ov = tl.where(mask, ({old}).to(tl.float64), 0.0)",
                *["    " + line for line in whole_lines],
                *[
                    f"    tl.store(stats + k * {ns} + {j}, tl.sum({a} * {b}, axis=0))"
                    for j, a, b, _ in whole
                ],
                "    taken = mask & (so % stride == 0)",
                "    slot = tl.load(sbase + t) + so // stride",
                "    tl.store(S + slot, gv, mask=taken)",
                "    gp = tl.load(Sp + slot, mask=taken, other=0.0)",
                *["    " + line for line in sample_lines],
                *[
                    f"    tl.store(stats + k * {ns} + {j},"
                    f" tl.sum(tl.where(taken, {a} * {b}, 0.0), axis=0))"
                    for j, a, b, _ in sampled
                ],
                *(
                    [
                        "    etaken = taken & (slot % every == 0)",
                        *["    " + line for line in eb.chunk_lines + eb.elem_lines],
                        f"    tl.store(E + slot // every, ({eff}).to(tl.float64), mask=etaken)",
                    ]
                    if eb
                    else []
                ),
            ]
    for k, red in enumerate(prog.reductions):
        # each term of reduction k summed in float64 per chunk (see _numba_reduction)
        rb = _Body(prog, list(red.terms), "triton", pd, sd, cuda, red.wide())
        nt = len(red.terms)
        out += [
            "",
            "",
            "@triton.jit",
            f"def reduce{k}(pptr, gptr, soff, crow, coef, konst, ck_t, ck_lo, ck_hi, part{bufsig},",
            "            NCOEF: tl.constexpr, BLOCK: tl.constexpr):",
            *pre,
            *["    " + line for line in rb.chunk_lines],
            *["    " + line for line in rb.elem_lines],
        ]
        for j, (v, uniform) in enumerate(_terms(rb, red)):
            if uniform:
                x = f"(hi - lo).to(tl.float64) * {v}"
            else:
                out.append(f"    x{j} = tl.where(mask, ({v}).to(tl.float64), 0.0)")
                x = f"tl.sum(x{j}, axis=0)"
            out.append(f"    tl.store(part + k * {nt} + {j}, {x})")
    return "\n".join(head + out) + "\n"
