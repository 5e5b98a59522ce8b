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
"""

from __future__ import annotations

import math

from .trace import Program, Sym, walk

_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_CMP = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "eq": "==", "ne": "!="}


def _literal(value: float) -> str:
    if math.isnan(value):
        return "np.nan"
    if math.isinf(value):
        return "np.inf" if value > 0 else "(-np.inf)"
    return repr(value)


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
    """Names of the nodes of one kernel: uniform ones per chunk, elementwise ones per element."""

    def __init__(self, prog: Program, roots: list[Sym], lang: str, t32: bool) -> None:
        self.prog, self.lang, self.t32 = prog, lang, t32
        self.nodes = list(walk(roots))
        self.name: dict[int, str] = {}
        self.cast: dict[int, str] = {}  # uniform node -> its value in the state dtype
        self.chunk_lines: list[str] = []
        self.elem_lines: list[str] = []
        self.buffers_read: list[str] = []
        self._emit()

    def _arg(self, x: Sym) -> str:
        """``x`` as an operand of an elementwise operation (uniform values are cast, as torch
        casts a Python float to the tensor's dtype)."""
        if not x.uniform or x.is_bool:
            return self.name[x.index]
        if x.index not in self.cast:
            v = f"z{x.index}"
            src = self.name[x.index]
            self.chunk_lines.append(
                f"{v} = T({src})" if self.lang == "numba" else f"{v} = ({src}).to(T)"
            )
            self.cast[x.index] = v
        return self.cast[x.index]

    def _emit(self) -> None:
        buf_index = {k: j for j, k in enumerate(self.prog.buffer_keys)}
        for n in self.nodes:
            v = f"{'s' if n.uniform else 'e'}{n.index}"
            self.name[n.index] = v
            if n.uniform:
                self.chunk_lines.append(f"{v} = {_uniform_expr(n, self.name, self.lang)}")
                continue
            if n.op == "g":
                expr = "G[i]" if self.lang == "numba" else "tl.load(G + offs, mask=mask)"
            elif n.op == "p":
                expr = "P[i]" if self.lang == "numba" else "tl.load(P + offs, mask=mask)"
            elif n.op == "buf":
                j = buf_index[n.args[0]]
                self.buffers_read.append(n.args[0])
                expr = f"B{j}[i]" if self.lang == "numba" else f"tl.load(b{j} + so, mask=mask)"
            else:
                args = [self._arg(a) for a in n.args]
                expr = _op_expr(n.op, args, self.lang, uniform=False, t32=self.t32)
            self.elem_lines.append(f"{v} = {expr}")


def _buffer_args(prog: Program) -> str:
    return ", ".join(f"b{j}" for j in range(len(prog.buffer_keys)))


def numba_source(prog: Program, dtype: str) -> str:
    """A module defining ``step`` (the fused update) and one ``norm{k}`` per global norm."""
    buffers = _buffer_args(prog)
    bufsig = (", " + buffers) if buffers else ""
    head = [
        "# Generated by adaptlr.kernels from the traced parts; do not edit.",
        "import numpy as np",
        "from numba import njit, prange, carray",
        "from adaptlr.kernels._numba_support import address_as, nanmax, nanmin",
        f"T = np.{dtype}",
        "",
        "",
    ]
    roots = [prog.new_param, *prog.stores.values()]
    body = _Body(prog, roots, "numba", dtype == "float32")
    out = [
        "@njit(parallel=True, cache=True, nogil=True, error_model='numpy')",
        f"def step(pptr, gptr, soff, crow, coef, konst, ck_t, ck_lo, ck_hi, w{bufsig}):",
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
    buf_index = {k: j for j, k in enumerate(prog.buffer_keys)}
    stores = [
        f"            B{buf_index[key]}[i] = {body._arg(node)}" for key, node in prog.stores.items()
    ]
    stores.append(f"            P[i] = {body._arg(prog.new_param)}")
    out += ["        " + line for line in body.chunk_lines]
    out.append("        for i in range(n):")
    out += ["            " + line for line in body.elem_lines]
    out += stores
    for k, (_, node) in enumerate(prog.norms):
        nb = _Body(prog, [node], "numba", dtype == "float32")
        lines = [
            "",
            "",
            "@njit(parallel=True, cache=True, nogil=True, error_model='numpy')",
            f"def norm{k}(pptr, gptr, soff, crow, coef, konst, ck_t, ck_lo, ck_hi, w, part"
            f"{bufsig}):",
            "    isz = w.itemsize",
            "    for k in prange(ck_t.shape[0]):",
            "        t = ck_t[k]",
            "        lo = ck_lo[k]",
            "        n = ck_hi[k] - lo",
            "        P = carray(address_as(pptr[t] + lo * isz, w), n)",
            "        G = carray(address_as(gptr[t] + lo * isz, w), n)",
            "        o = soff[t] + lo",
            "        r = crow[t]",
            *[f"        B{j} = b{j}[o : o + n]" for j in range(len(prog.buffer_keys))],
            "        acc = 0.0",
            "        for i in range(n):",
        ]
        lines += ["            " + line for line in nb.elem_lines]
        # the reference squares the update in float64 (vector_norm of u.double())
        lines.append(f"            x = np.float64({nb._arg(node)})")
        lines.append("            acc += x * x")
        lines.append("        part[k] = acc")
        lines = _place_chunk_lines(lines, nb, "        ", "        acc = 0.0")
        out += lines
    return "\n".join(head + out) + "\n"


def _place_chunk_lines(lines: list[str], body: _Body, indent: str, before: str) -> list[str]:
    """Insert ``body``'s per-chunk lines just before the line ``before``."""
    i = lines.index(before)
    return lines[:i] + [indent + line for line in body.chunk_lines] + lines[i:]


_TRITON_T = {"float32": "tl.float32", "float64": "tl.float64"}


def triton_source(prog: Program, dtype: str) -> str:
    """A module defining Triton kernels ``step`` and ``norm{k}``: one program per chunk."""
    buffers = _buffer_args(prog)
    bufsig = (", " + buffers) if buffers else ""
    t = _TRITON_T[dtype]
    head = [
        "# Generated by adaptlr.kernels from the traced parts; do not edit.",
        "import triton",
        "import triton.language as tl",
        "",
        "",
    ]
    pre = [
        "    k = tl.program_id(0)",
        "    t = tl.load(ck_t + k)",
        "    lo = tl.load(ck_lo + k)",
        "    hi = tl.load(ck_hi + k)",
        "    offs = lo + tl.arange(0, BLOCK)",
        "    mask = offs < hi",
        f"    P = tl.load(pptr + t).to(tl.pointer_type({t}))",
        f"    G = tl.load(gptr + t).to(tl.pointer_type({t}))",
        "    so = tl.load(soff + t) + offs",
        "    r = tl.load(crow + t)",
        f"    T = {t}",
    ]
    roots = [prog.new_param, *prog.stores.values()]
    body = _Body(prog, roots, "triton", dtype == "float32")
    buf_index = {k: j for j, k in enumerate(prog.buffer_keys)}
    stores = [
        f"    tl.store(b{buf_index[key]} + so, {body._arg(node)}, mask=mask)"
        for key, node in prog.stores.items()
    ]
    stores.append(f"    tl.store(P + offs, {body._arg(prog.new_param)}, mask=mask)")
    out = [
        "@triton.jit",
        f"def step(pptr, gptr, soff, crow, coef, konst, ck_t, ck_lo, ck_hi{bufsig},",
        "         NCOEF: tl.constexpr, BLOCK: tl.constexpr):",
        *pre,
        *["    " + line for line in body.chunk_lines],
        *["    " + line for line in body.elem_lines],
        *stores,
    ]
    for k, (_, node) in enumerate(prog.norms):
        nb = _Body(prog, [node], "triton", dtype == "float32")
        val = nb._arg(node)
        out += [
            "",
            "",
            "@triton.jit",
            f"def norm{k}(pptr, gptr, soff, crow, coef, konst, ck_t, ck_lo, ck_hi, part{bufsig},",
            "          NCOEF: tl.constexpr, BLOCK: tl.constexpr):",
            *pre,
            *["    " + line for line in nb.chunk_lines],
            *["    " + line for line in nb.elem_lines],
            f"    x = tl.where(mask, ({val}).to(tl.float64), 0.0)",
            "    tl.store(part + k, tl.sum(x * x, axis=0))",
        ]
    return "\n".join(head + out) + "\n"
