"""Every public class and function documents each of its arguments by name.

The public API is what the package exports: ``adaptlr.__all__`` and the ``__all__`` of the
submodules it names (and of ``adaptlr.lab``, ``adaptlr.lr_finder``, ``adaptlr.optimizers``),
followed into submodules; modules without ``__all__`` give their public names defined there. For
each public function, each public method of a public class (inherited ones included, where
adaptlr defines them) and each public class's constructor, every parameter of
``inspect.signature`` must be an entry of a Google-style section (``Args:``; a class's fields may
be ``Attributes:``) of the docstring ``help()`` shows, and every ``Args:`` entry must name a
parameter. Walking the API and parsing the docstrings takes about 0.15 s once adaptlr,
``adaptlr.lab`` and ``adaptlr.monitor`` are imported (which other tests do anyway).
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from types import FunctionType, ModuleType
from typing import Any

import pytest

#: modules whose ``__all__`` (or public names) are the API, besides those ``adaptlr.__all__``
#: names (``lab`` is left out of it only so that ``from adaptlr import *`` needs no matplotlib)
ROOTS = (
    "adaptlr",
    "adaptlr.cli",
    "adaptlr.core",
    "adaptlr.lab",
    "adaptlr.lr_finder",
    "adaptlr.optimizers",
    "adaptlr.torch_optim",
)

#: Google-style section headers whose entries name arguments (``Attributes`` only for a class)
ARG_SECTIONS = ("Args", "Arguments", "Keyword Args", "Keyword Arguments", "Other Parameters")
_HEADER = re.compile(r"^(\s*)([A-Z][A-Za-z ]*):\s*$")
#: an entry: ``name (type): text``, ``name: text``, ``*args: text`` or ``a, b: text``
_ENTRY = re.compile(r"^\*{0,2}(\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?:\(.*\))?\s*:(?:\s|$)")


def documented(doc: str, sections: tuple[str, ...]) -> set[str]:
    """The names the entries of ``sections`` of the Google-style docstring ``doc`` give."""
    names: set[str] = set()
    lines = inspect.cleandoc(doc).splitlines()
    i = 0
    while i < len(lines):
        m = _HEADER.match(lines[i])
        i += 1
        if not m or m.group(2) not in sections:
            continue
        header_indent, entry_indent = len(m.group(1)), None
        while i < len(lines):
            line = lines[i]
            indent = len(line) - len(line.lstrip())
            if line.strip() and indent <= header_indent:
                break  # the section ends where the text comes back to the header's column
            if line.strip() and entry_indent is None:
                entry_indent = indent
            if line.strip() and indent == entry_indent:
                e = _ENTRY.match(line.strip())
                if e:
                    names.update(n.strip().lstrip("*") for n in e.group(1).split(","))
            i += 1
    return names


def test_documented_reads_google_sections() -> None:
    """The parser against docstrings written here: entries, types with parentheses, several
    names, stars, continuation lines and the section's end."""
    doc = """Summary.

    Args:
        a (tuple[float, float], default (0.9, 0.999)): text: with a colon
            continued: not_an_entry: still text
        b, c: two at once
        *args: rest
        **kwargs: the rest

    Returns:
        d: not an argument
    """
    assert documented(doc, ARG_SECTIONS) == {"a", "b", "c", "args", "kwargs"}
    assert documented("No sections.\n\n    x: y", ARG_SECTIONS) == set()


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def _defined_in_adaptlr(obj: Any) -> bool:
    return (getattr(obj, "__module__", None) or "").startswith("adaptlr")


def _public_objects() -> Iterator[tuple[str, Any]]:
    """(qualified name, object) for every public class and function, each once."""
    seen_modules: set[str] = set()
    seen: set[int] = set()
    todo = list(ROOTS)
    while todo:
        mod = _module(todo.pop())
        if mod.__name__ in seen_modules:
            continue
        seen_modules.add(mod.__name__)
        names = getattr(mod, "__all__", None)
        if names is None:
            names = [
                n
                for n, v in vars(mod).items()
                if not n.startswith("_") and getattr(v, "__module__", None) == mod.__name__
            ]
        for name in names:
            obj = getattr(mod, name)
            if isinstance(obj, ModuleType):
                if obj.__name__.startswith("adaptlr."):
                    todo.append(obj.__name__)
                continue
            if not (inspect.isclass(obj) or inspect.isroutine(obj)) or id(obj) in seen:
                continue
            if not _defined_in_adaptlr(obj):
                continue
            seen.add(id(obj))
            yield f"{obj.__module__}.{obj.__qualname__}", obj


def _params(fn: Callable[..., Any], *, bound: bool) -> list[str]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    names = [p.name for p in sig.parameters.values()]
    if bound and names and names[0] in ("self", "cls"):
        names = names[1:]
    return [n for n in names if not n.startswith("_")]


def _constructor(cls: type) -> Callable[..., Any] | None:
    """The ``__init__`` (or, where there is none, ``__new__``: a NamedTuple's) that an adaptlr
    class defines or generates (a dataclass) for ``cls``; None where it is torch's or Python's."""
    for attr in ("__init__", "__new__"):
        owner = next(k for k in cls.__mro__ if attr in vars(k))
        if owner is not object:
            if not _defined_in_adaptlr(owner):
                return None
            fn = vars(owner)[attr]
            return getattr(fn, "__func__", fn)
    return None


def _methods(cls: type) -> Iterator[tuple[str, FunctionType, list[type]]]:
    """Public methods of ``cls`` that adaptlr defines, on it or on a base class, each with the
    adaptlr classes that define it (an override, then what it overrides)."""
    done: set[str] = set()
    for klass in cls.__mro__:
        for name, raw in vars(klass).items():
            if name in done or (name.startswith("_") and name != "__call__"):
                continue
            done.add(name)
            fn = getattr(raw, "__func__", raw)
            if isinstance(fn, FunctionType) and fn.__module__.startswith("adaptlr"):
                owners = [k for k in cls.__mro__ if name in vars(k) and _defined_in_adaptlr(k)]
                yield name, fn, owners


def _missing() -> tuple[list[str], list[str], set[str]]:
    """(undocumented parameters, ``Args`` entries naming no parameter, what was checked)."""
    undocumented: list[str] = []
    stale: list[str] = []
    checked: set[int] = set()
    labels: set[str] = set()

    def check(label: str, fn: Callable[..., Any], doc: str, params: list[str], cls: bool) -> None:
        labels.add(label)
        sections = ARG_SECTIONS + (("Attributes",) if cls else ())
        names = documented(doc, sections)
        lost = [p for p in params if p not in names]
        if lost:
            undocumented.append(f"{label}: {', '.join(lost)}")
        extra = sorted(documented(doc, ARG_SECTIONS) - set(params))
        if extra and params and not _takes_any_keyword(fn):
            stale.append(f"{label}: {', '.join(extra)}")

    for label, obj in _public_objects():
        if inspect.isclass(obj):
            ctor = _constructor(obj)
            if ctor is not None:
                # documented in the class's docstring (or its __init__'s: both are shown)
                doc = (inspect.getdoc(obj) or "") + "\n\n" + (inspect.getdoc(ctor) or "")
                check(label, ctor, doc, _params(ctor, bound=True), True)
            for name, fn, owners in _methods(obj):
                if id(fn) in checked:
                    continue  # (a method of a pending module's class is documented there)
                checked.add(id(fn))
                is_static = isinstance(inspect.getattr_static(obj, name), staticmethod)
                # an override's arguments may be documented once, where the method is declared
                docs = [inspect.getdoc(getattr(obj, name)) or ""]
                docs += [getattr(vars(k)[name], "__doc__", None) or "" for k in owners]
                doc = "\n\n".join(inspect.cleandoc(d) for d in docs)
                check(f"{label}.{name}", fn, doc, _params(fn, bound=not is_static), False)
        else:
            check(label, obj, inspect.getdoc(obj) or "", _params(obj, bound=False), False)
    return undocumented, stale, labels


def _takes_any_keyword(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


Missing = tuple[list[str], list[str], set[str]]

#: a few of the API's names: a walk that lost its way would check nothing and pass
LANDMARKS = (
    "adaptlr.optimizers.adam.Adam",
    "adaptlr.torch_optim.Optimizer.step",
    "adaptlr.core.magnitude.ema_sq",
    "adaptlr.schedules.shapes.warmup_cosine",
    "adaptlr.schedules.torch_adapter.ScheduleLR",
    "adaptlr.monitor.monitor.Monitor.load_state_dict",
    "adaptlr.lab.runs.run",
    "adaptlr.checkpoint.save",
    "adaptlr.lr_finder.lr_find",
    "adaptlr.stats.StepStats",
    "adaptlr.cli.main",
)


@pytest.fixture(scope="module")
def missing() -> Missing:
    return _missing()


def test_the_walk_finds_the_api(missing: Missing) -> None:
    _, _, checked = missing
    assert len(checked) > 150, len(checked)
    assert not [name for name in LANDMARKS if name not in checked]


def test_every_public_argument_is_documented(missing: Missing) -> None:
    undocumented, _, _ = missing
    assert not undocumented, "arguments without an entry in Args:\n  " + "\n  ".join(undocumented)


def test_no_args_entry_names_a_missing_argument(missing: Missing) -> None:
    _, stale, _ = missing
    assert not stale, "Args: entries that name no argument:\n  " + "\n  ".join(stale)
