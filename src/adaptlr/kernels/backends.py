"""Compiling generated kernels (written to a cache directory, imported, cached on disk), and
which backend runs a device's tensors: numba on the CPU, Triton on CUDA (and on the CPU under
:func:`use_triton_on_cpu`, for tests).

The source of each kernel is a file named after the hash of its text, so that numba's
``cache=True`` (keyed on the file) and Triton's own cache make a second process fast. A file
is never rewritten once it exists: numba invalidates its cache when the file's time stamp
changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from . import codegen
from .trace import Program

_modules: dict[str, ModuleType] = {}


def cache_dir() -> Path:
    """Where generated kernels live: ``$ADAPTLR_CACHE_DIR``, else ``~/.cache/adaptlr/kernels``."""
    env = os.environ.get("ADAPTLR_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "adaptlr" / "kernels"


def _load(source: str, tag: str) -> ModuleType:
    digest = hashlib.sha256(source.encode()).hexdigest()[:24]
    name = f"adaptlr_{tag}_{digest}"
    mod = _modules.get(name)
    if mod is not None:
        return mod
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.py"
        if not path.exists() or path.read_text() != source:
            # write then rename, so a concurrent process never imports half a file
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(source)
            os.replace(tmp, path)
    except OSError:  # read-only home: a private temporary directory (no cache across runs)
        folder = Path(tempfile.mkdtemp(prefix="adaptlr-kernels-"))
        path = folder / f"{name}.py"
        path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # Triton and numba look functions up by module
    spec.loader.exec_module(mod)
    _modules[name] = mod
    return mod


_by_program: dict[tuple[int, str, str], tuple[Program, ModuleType]] = {}


def _cached(prog: Program, dtype: str, backend: str, make: Any) -> ModuleType:
    key = (id(prog), dtype, backend)
    hit = _by_program.get(key)
    if hit is not None and hit[0] is prog:
        return hit[1]
    mod = make()
    _by_program[key] = (prog, mod)  # holding prog keeps its id from being reused
    return mod


def numba_module(prog: Program, dtype: str, state_dtype: str | None = None) -> ModuleType:
    """The compiled-on-first-call numba kernels of ``prog`` for parameters of ``dtype``
    (float32/64, bfloat16, float16) and state of ``state_dtype`` (default: ``dtype``)."""
    sd = state_dtype or dtype
    return _cached(
        prog,
        f"{dtype}/{sd}",
        "numba",
        lambda: _load(codegen.numba_source(prog, dtype, sd), f"nb_{dtype}_{sd}"),
    )


def triton_module(prog: Program, dtype: str, state_dtype: str | None = None) -> ModuleType:
    """The Triton kernels of ``prog`` for ``dtype``/``state_dtype``; interpreted under
    ``TRITON_INTERPRET=1``."""
    sd = state_dtype or dtype
    interp = os.environ.get("TRITON_INTERPRET", "0") == "1"
    tag = f"tr{'i' if interp else ''}_{dtype}_{sd}"
    return _cached(
        prog,
        f"{dtype}/{sd}",
        tag,
        lambda: _load(codegen.triton_source(prog, dtype, sd, cuda=not interp), tag),
    )


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except Exception:
        return False
    return True


def numba_jit_disabled() -> bool:
    """``NUMBA_DISABLE_JIT=1``: numba's decorators give back plain Python functions, which
    cannot run the generated kernels (their raw-address intrinsics exist only compiled)."""
    import numba

    return bool(numba.config.DISABLE_JIT)


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def describe(mod: Any) -> str:
    return getattr(mod, "__file__", "?")


#: set by :func:`use_triton_on_cpu`: CPU tensors go to the (interpreted) Triton kernels
_FORCE_TRITON = [False]


def triton_on_cpu() -> bool:
    """Whether CPU tensors run the Triton kernels (inside :func:`use_triton_on_cpu`)."""
    return _FORCE_TRITON[0]


def uses_numba(device: Any) -> bool:
    """Whether tensors on ``device`` (a ``torch.device``) run the numba kernels."""
    return device.type == "cpu" and not _FORCE_TRITON[0]


@contextlib.contextmanager
def use_triton_on_cpu() -> Iterator[None]:
    """Run the Triton kernels on CPU tensors (needs ``TRITON_INTERPRET=1``; for tests)."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("use_triton_on_cpu: set TRITON_INTERPRET=1 before importing triton")
    old = _FORCE_TRITON[0]
    _FORCE_TRITON[0] = True
    try:
        yield
    finally:
        _FORCE_TRITON[0] = old
