"""Checkpoints that survive a crash, state dicts that are checked, and torch.optim migration.

- :func:`save` / :func:`load`: ``torch.save`` to a temporary file in the target's directory,
  flushed and fsynced, then ``os.replace``: a run killed while writing leaves the previous
  checkpoint intact (the rename is atomic on POSIX and Windows).
- :func:`to_torch_state_dict` / :func:`from_torch_state_dict`: adaptlr's state dicts already
  use torch.optim's buffer names; what differs is the group counter ``applied_steps``, the
  per-parameter ``step`` (adaptlr keeps one for every optimizer, torch.optim not for all),
  hyperparameters the torch class does not take and schedules given as ``lr`` (torch takes
  numbers only). What is particular to one optimizer lives beside it: its ``torch_class`` and
  its :meth:`~adaptlr.Optimizer.prepare_torch_state_dict` hook.
- :func:`check_state_dict`: what :meth:`adaptlr.Optimizer.load_state_dict` runs before it
  changes anything.

This module imports nothing of adaptlr's optimizers (:mod:`adaptlr.torch_optim` imports it):
it reaches an optimizer's class through the optimizer it is given.
"""

from __future__ import annotations

import copy
import inspect
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ._group_keys import IMPLEMENTATION_KEYS, SCHEDULE_KEY
from .core.base import scalar_dtype

if TYPE_CHECKING:
    from .torch_optim import Optimizer

StateDict = dict[str, Any]

#: Group keys that only bookkeep (never a hyperparameter of a chain).
_BOOKKEEPING = ("params", "param_names", "applied_steps", "skipped_steps")

#: Hyperparameters a state dict may lack (written by torch.optim, or by an older version): the
#: loading optimizer's default for each leaves the math as torch.optim has it, the same rule
#: torch's own ``__setstate__`` follows when it fills keys added in later releases. Those its
#: ``torch_class`` does not take may be missing too (:func:`_may_be_missing`).
_MAY_BE_MISSING = (*IMPLEMENTATION_KEYS, "maximize", "amsgrad", "decoupled_weight_decay")


# -- atomic files -----------------------------------------------------------------------------
def save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)``, atomically: ``path`` is either the old file or the new one.

    Writes a temporary file in the same directory (a rename across file systems is not
    atomic), flushes and fsyncs it, renames it over ``path`` and fsyncs the directory so that
    the rename itself survives a power loss. On any error the temporary file is removed and
    ``path`` is untouched.

    Args:
        obj: what to save, anything ``torch.save`` takes (a dict of state dicts, typically).
        path: the file to write (str or path-like); its directory must exist.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint.save: directory {str(directory)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a half-written temporary behind.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    # Directories cannot be opened for fsync on Windows; there the rename is already durable.
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path: str | os.PathLike[str], **torch_load_kwargs: Any) -> Any:
    """``torch.load(path, **torch_load_kwargs)`` of a file written by :func:`save`.

    torch loads with ``weights_only=True`` by default: plain state dicts load as they are; a
    state dict whose ``lr`` is a schedule object needs the schedule's class registered with
    ``torch.serialization.add_safe_globals`` (every :class:`adaptlr.schedules.Schedule`
    subclass registers itself when its module is imported; ``import adaptlr`` imports the
    built-in ones) or ``weights_only=False`` (trusted files only).

    Args:
        path: the file to read (str or path-like).
        **torch_load_kwargs: passed to ``torch.load`` as they are (``weights_only``,
            ``map_location``, ...).
    """
    return torch.load(path, **torch_load_kwargs)


# -- torch.optim <-> adaptlr ------------------------------------------------------------------
def _state_dict_of(source: Any, fn: str) -> StateDict:
    if isinstance(source, torch.optim.Optimizer):
        return source.state_dict()
    if isinstance(source, Mapping) and "state" in source and "param_groups" in source:
        return dict(source)
    raise TypeError(
        f"{fn}: expected an optimizer or a state dict with 'state' and 'param_groups', "
        f"got {type(source).__name__}"
    )


def _parameters(cls: type) -> set[str]:
    """The names ``cls(...)`` takes as hyperparameters (not ``params``, not ``*``/``**``)."""
    return {
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name not in ("self", "params") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def _adaptlr_classes() -> list[type]:
    """Every adaptlr optimizer class defined so far: the subclasses of ``torch.optim.Optimizer``
    with a ``torch_class`` (``adaptlr.Optimizer`` declares it, ``import adaptlr`` imports all
    the named ones), found without importing them: they import this module."""
    found, todo = [], [torch.optim.Optimizer]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.append(sub)
                todo.append(sub)
    return [c for c in found if hasattr(c, "torch_class")]


def _counterpart_of(torch_cls: type, fn: str) -> type | None:
    """The adaptlr class whose ``torch_class`` is ``torch_cls`` (``None`` if none is)."""
    declaring = [c for c in _adaptlr_classes() if vars(c).get("torch_class") is torch_cls]
    hooks = {c.prepare_torch_state_dict.__func__ for c in declaring}
    if len(hooks) > 1:
        raise ValueError(
            f"{fn}: {sorted(c.__qualname__ for c in declaring)} all declare torch_class "
            f"{torch_cls.__name__}; pass the optimizer itself instead of its state dict"
        )
    return declaring[0] if declaring else None


def to_torch_state_dict(
    source: Optimizer | StateDict, torch_cls: type[torch.optim.Optimizer] | None = None
) -> StateDict:
    """A state dict that ``torch_cls`` (e.g. ``torch.optim.Adam``) loads and resumes exactly.

    ``source`` is an adaptlr optimizer (then ``torch_cls`` defaults to its class's
    ``torch_class``) or its state dict (then ``torch_cls`` is needed: a dict does not say which
    optimizer wrote it). Drops ``applied_steps`` and the hyperparameters ``torch_cls`` does not
    take; the optimizer's :meth:`~adaptlr.Optimizer.prepare_torch_state_dict` does the rest
    (SGD drops its per-parameter ``step``). Raises ``ValueError`` for what torch cannot
    express: a schedule as ``lr`` (torch takes a number; use a torch lr_scheduler after
    loading), RMSprop's ``init="first_gradient"``. The source is not modified.

    Args:
        source: an adaptlr optimizer, or the ``state_dict()`` of one.
        torch_cls: the ``torch.optim`` class to load the result (e.g. ``torch.optim.Adam``);
            None: the optimizer's ``torch_class`` (required when ``source`` is a dict).
    """
    fn = "to_torch_state_dict"
    if isinstance(source, Mapping):
        if torch_cls is None:
            raise TypeError(
                f"{fn}: give torch_cls (e.g. torch.optim.Adam) with a state dict; an optimizer "
                f"knows its torch counterpart, a state dict does not"
            )
        cls = _counterpart_of(torch_cls, fn)
    else:
        cls = type(source)
        if torch_cls is None:
            torch_cls = getattr(cls, "torch_class", None)
    sd = copy.deepcopy(_state_dict_of(source, fn))
    for gi, group in enumerate(sd["param_groups"]):
        sched = group.get(SCHEDULE_KEY) or (group["lr"] if callable(group.get("lr")) else None)
        if sched is not None:
            raise ValueError(
                f"{fn}: param group {gi} has a schedule ({sched!r}); torch.optim takes a "
                f"number as lr. Drive the group's lr with a torch.optim.lr_scheduler instead "
                f"(adaptlr.schedules.ScheduleLR runs an adaptlr schedule as one)"
            )
    if cls is not None and hasattr(cls, "prepare_torch_state_dict"):
        try:
            cls.prepare_torch_state_dict(sd)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{fn}: {e}") from e
    accepted = None if torch_cls is None else _parameters(torch_cls)
    for group in sd["param_groups"]:
        group.pop("applied_steps", None)
        group.pop("skipped_steps", None)
        if accepted is not None:
            for key in [k for k in group if k not in accepted and k not in _BOOKKEEPING]:
                del group[key]
    # Copy the tensors: torch's load keeps same-dtype tensors as they are, so without this the
    # optimizer would share memory with the dict (or with the optimizer it came from), and
    # in-place updates (adaptlr's fused path, torch's foreach/fused) would write through.
    sd["state"] = {
        idx: {k: v.detach().clone() for k, v in st.items()} for idx, st in sd["state"].items()
    }
    return sd


def from_torch_state_dict(
    source: torch.optim.Optimizer | StateDict, applied_steps: int | None = None
) -> StateDict:
    """An adaptlr state dict from a torch.optim one (an optimizer or its ``state_dict()``).

    Each group gets ``applied_steps`` (the count schedules are evaluated at): the given
    number, or else the largest per-parameter ``step`` of the group (0 if none). adaptlr keeps
    a ``step`` for every parameter with state, torch.optim not for every optimizer (SGD): a
    parameter with state and no ``step`` has stepped at least once and gets ``step =
    max(applied_steps, 1)`` (SGD's momentum only reads whether a step is its first). Missing
    hyperparameters torch lacks (RMSprop's ``init``, ``fused``) are filled by
    :meth:`adaptlr.Optimizer.load_state_dict` from the loading optimizer's defaults.
    ``load_state_dict`` also calls this itself when given a torch.optim state dict.

    Args:
        source: a ``torch.optim`` optimizer, or its ``state_dict()``.
        applied_steps: the updates already applied by every group; None: read from the
            per-parameter ``step`` as above; else an int >= 0.
    """
    fn = "from_torch_state_dict"
    sd = copy.deepcopy(_state_dict_of(source, fn))
    if applied_steps is not None and (
        not isinstance(applied_steps, int) or isinstance(applied_steps, bool) or applied_steps < 0
    ):
        raise ValueError(f"{fn}: applied_steps must be an int >= 0, got {applied_steps!r}")
    state = sd["state"]
    for group in sd["param_groups"]:
        if "applied_steps" in group:
            continue  # already adaptlr's
        steps = [int(state[i]["step"]) for i in group["params"] if "step" in state.get(i, {})]
        count = applied_steps if applied_steps is not None else max(steps, default=0)
        group["applied_steps"] = count
        for i in group["params"]:
            st = state.get(i)
            if st and "step" not in st:
                st["step"] = torch.tensor(float(max(count, 1)), dtype=scalar_dtype())
    # Copy the tensors: torch's load keeps same-dtype tensors as they are, so without this the
    # optimizer would share memory with the dict (or with the optimizer it came from), and
    # in-place updates (adaptlr's fused path, torch's foreach/fused) would write through.
    sd["state"] = {
        idx: {k: v.detach().clone() for k, v in st.items()} for idx, st in sd["state"].items()
    }
    return sd


# -- validation before load_state_dict ---------------------------------------------------------
def _other_optimizers_hyperparameters() -> set[str]:
    """Every hyperparameter name of an adaptlr optimizer or of its torch counterpart."""
    names: set[str] = set()
    for cls in _adaptlr_classes():
        names |= _parameters(cls)
        if cls.torch_class is not None:
            names |= _parameters(cls.torch_class)
    # Keys torch's lr schedulers or users add to groups are not in any signature.
    return names


def _may_be_missing(optimizer: Optimizer) -> set[str]:
    """Hyperparameters of ``optimizer`` that a state dict may lack: the common ones, and those
    its torch counterpart does not take (a torch.optim.RMSprop state dict has no ``init``)."""
    torch_cls = getattr(type(optimizer), "torch_class", None)
    lacking = set() if torch_cls is None else set(optimizer.defaults) - _parameters(torch_cls)
    return {*_MAY_BE_MISSING, *lacking}


def _expected_keys(optimizer: Optimizer, group: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(buffer keys shaped like the parameter, scalar keys) of ``group``'s chain."""
    t = optimizer.transform_for(group)
    buffers = {s.names[b.name] for s in t.slots for b in s.part.buffers}
    scalars = {"step"} | {s.names[c.name] for s in t.slots for c in s.part.scalars}
    return buffers, scalars


def check_state_dict(optimizer: Optimizer, state_dict: Any) -> StateDict:
    """Check that ``state_dict`` fits ``optimizer``; return it completed, ready for torch.

    Raises ``ValueError`` (``TypeError`` for a wrong type) naming the group, the parameter
    index, the key and expected against found, for: a different number of groups or of
    parameters in a group, a state entry for an unknown parameter, hyperparameters that the
    optimizer's check rejects or that it needs and the state dict lacks, state keys its chain
    does not have (another optimizer's state dict) or lacks, and state tensors whose shape
    differs from their parameter's. Neither ``optimizer`` nor ``state_dict`` is modified; the
    returned dict holds copies of the state tensors (so loading never aliases memory).

    Args:
        optimizer: the adaptlr optimizer the state dict is for.
        state_dict: the state dict to check: a dict with ``"state"`` and ``"param_groups"``.
    """
    name = type(optimizer).__name__
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{name}.load_state_dict: expected a dict, got {type(state_dict).__name__}")
    for key in ("state", "param_groups"):
        if key not in state_dict:
            raise ValueError(f"{name}.load_state_dict: the state dict has no {key!r} entry")
    if not isinstance(state_dict["param_groups"], (list, tuple)) or not isinstance(
        state_dict["state"], Mapping
    ):
        raise TypeError(f"{name}.load_state_dict: 'param_groups' must be a list and 'state' a dict")
    # Shallow copies: the tensors are shared, the containers we complete are ours.
    sd = {
        **state_dict,
        "state": {
            k: dict(v) if isinstance(v, Mapping) else v for k, v in state_dict["state"].items()
        },
        "param_groups": [dict(g) for g in state_dict["param_groups"]],
    }
    groups, saved_groups = optimizer.param_groups, sd["param_groups"]
    if len(groups) != len(saved_groups):
        raise ValueError(
            f"{name}.load_state_dict: the state dict has {len(saved_groups)} parameter "
            f"group(s), this optimizer {len(groups)}"
        )
    for gi, (g, s) in enumerate(zip(groups, saved_groups)):
        if len(g["params"]) != len(s.get("params", ())):
            raise ValueError(
                f"{name}.load_state_dict: param group {gi} has {len(s.get('params', ()))} "
                f"parameter(s) in the state dict, {len(g['params'])} in this optimizer"
            )
    if any("applied_steps" not in s for s in saved_groups):
        sd = from_torch_state_dict(sd)  # a torch.optim state dict: migrate it
        saved_groups = sd["param_groups"]

    index_to_param: dict[Any, tuple[int, int, Tensor]] = {}
    hyper = set(optimizer.defaults)
    may_be_missing = _may_be_missing(optimizer)
    for gi, (g, s) in enumerate(zip(groups, saved_groups)):
        if SCHEDULE_KEY in hyper:
            # a saved group without a schedule keeps its own lr, not this optimizer's schedule
            s.setdefault(SCHEDULE_KEY, None)
        missing = [
            k for k in hyper if k not in s and k not in may_be_missing and k not in _BOOKKEEPING
        ]
        if missing:
            raise ValueError(
                f"{name}.load_state_dict: param group {gi} of the state dict lacks "
                f"{sorted(missing)}, which {name} needs: is it another optimizer's state dict?"
            )
        foreign = sorted((set(s) & _other_optimizers_hyperparameters()) - hyper - set(g))
        if hyper and foreign:
            raise ValueError(
                f"{name}.load_state_dict: param group {gi} of the state dict has "
                f"{foreign}, which {name} does not take: is it another optimizer's state dict?"
            )
        for k in hyper:
            s.setdefault(k, optimizer.defaults[k])
        count = s["applied_steps"]
        if isinstance(count, Tensor):
            count = int(count.item())
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(
                f"{name}.load_state_dict: param group {gi} has applied_steps={count!r}; "
                f"expected an int >= 0"
            )
        s["applied_steps"] = count
        try:
            optimizer.check_group(s)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{name}.load_state_dict: param group {gi}: {e}") from e
        for pi, (idx, p) in enumerate(zip(s["params"], g["params"])):
            index_to_param[idx] = (gi, pi, p)

    expected = [_expected_keys(optimizer, s) for s in saved_groups]
    for idx, st in sd["state"].items():
        if idx not in index_to_param:
            raise ValueError(
                f"{name}.load_state_dict: the state dict has state for parameter {idx!r}, "
                f"which none of its param groups lists"
            )
        gi, pi, p = index_to_param[idx]
        where = f"param group {gi}, parameter {pi}"
        if not isinstance(st, Mapping):
            raise TypeError(
                f"{name}.load_state_dict: {where}: state must be a dict, got {type(st).__name__}"
            )
        if not st:
            continue  # a parameter that never stepped
        buffers, scalars = expected[gi]
        unknown = sorted(set(st) - buffers - scalars)
        lacking = sorted((buffers | scalars) - set(st))
        if unknown or lacking:
            raise ValueError(
                f"{name}.load_state_dict: {where}: state keys {sorted(st)} do not match this "
                f"optimizer's {sorted(buffers | scalars)} (unknown {unknown}, missing "
                f"{lacking}): is it another optimizer's state dict, or other hyperparameters?"
            )
        for key in sorted(st):
            v = st[key]
            if not isinstance(v, Tensor):
                raise TypeError(
                    f"{name}.load_state_dict: {where}: state {key!r} must be a tensor, "
                    f"got {type(v).__name__}"
                )
            want = tuple(p.shape) if key in buffers else ()
            if tuple(v.shape) != want:
                raise ValueError(
                    f"{name}.load_state_dict: {where}: state {key!r} has shape "
                    f"{tuple(v.shape)}, expected {want}"
                    + (" (the parameter's)" if key in buffers else " (a scalar)")
                )
            if key in buffers and v.is_complex() != p.is_complex():
                raise ValueError(
                    f"{name}.load_state_dict: {where}: state {key!r} is "
                    f"{'complex' if v.is_complex() else 'real'} but the parameter is not"
                )
    # Copy the tensors: torch's load keeps same-dtype tensors as they are, so without this the
    # optimizer would share memory with the dict (or with the optimizer it came from), and
    # in-place updates (adaptlr's fused path, torch's foreach/fused) would write through.
    sd["state"] = {
        idx: {k: v.detach().clone() for k, v in st.items()} for idx, st in sd["state"].items()
    }
    return sd
