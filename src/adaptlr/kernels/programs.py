"""The traced :class:`~.trace.Program` of a transform, cached so that a transform seen again,
or one that differs only in its coefficients, reuses the program and its compiled kernels."""

from __future__ import annotations

from ..core.base import Transform
from .trace import Program, TraceError, trace

_programs: dict[str, Program | str] = {}
#: one Program object per distinct program, so that the compiled kernels and flat plans keyed
#: on it are reused when only a coefficient (e.g. an lr written by a scheduler) changed
_by_signature: dict[str, Program] = {}


#: the last transforms asked for, by identity: their text is not rebuilt on every step
_by_object: dict[int, tuple[Transform, Program | str]] = {}


def program_for(transform: Transform) -> Program:
    """The traced program of ``transform`` (cached on its text; raises :class:`TraceError`).

    Args:
        transform: the chain to trace (a :class:`~adaptlr.core.Transform`).
    """
    hit = _by_object.get(id(transform))
    if hit is not None and hit[0] is transform:
        prog = hit[1]
        if isinstance(prog, str):
            raise TraceError(prog)
        return prog
    if len(_by_object) > 256:
        _by_object.clear()
    key = repr(transform)
    prog = _programs.get(key)
    if prog is None:
        if len(_programs) > 256:  # a scheduler makes a new text every step: stay bounded
            _programs.clear()
        try:
            prog = trace(transform)
        except TraceError as exc:
            _programs[key] = str(exc)
            raise
        prog = _by_signature.setdefault(prog.signature(), prog)
        _programs[key] = prog
    _by_object[id(transform)] = (transform, prog)  # holding it keeps its id from being reused
    if isinstance(prog, str):
        raise TraceError(prog)
    return prog
