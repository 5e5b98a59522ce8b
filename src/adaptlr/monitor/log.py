"""Append-only JSON Lines log of monitor records.

Each record is one line, written and flushed at once, so a run that crashes (or a file that is
copied while being written) leaves every complete line readable; `load_log` drops only a torn
last line. Non-finite floats are written as the strings ``"nan"``, ``"inf"``, ``"-inf"`` so that
every line is strict JSON (readable by jq, JavaScript, pandas) and read back as floats.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _encode(value: Any) -> Any:
    """Replace non-finite floats by strings, recursively, so the line stays strict JSON."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    """Inverse of `_encode`."""
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def dumps_record(record: dict[str, Any]) -> str:
    """One record as one strict-JSON line (without the newline)."""
    return json.dumps(_encode(record), allow_nan=False, separators=(",", ":"))


class JsonlLog:
    """Append-only JSON Lines writer; every line is flushed as soon as it is written."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        # A previous run may have been killed mid-line: start on a fresh line so that our first
        # record is not glued to the torn one (which would make both unreadable).
        if self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._file.write("\n")

    def write(self, record: dict[str, Any]) -> None:
        """Append one record and flush it to the OS."""
        if self._file is None:
            return
        self._file.write(dumps_record(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file; later writes are ignored."""
        if self._file is not None:
            self._file.close()
            self._file = None


def load_log(path: str | os.PathLike[str], types: tuple[str, ...] | None = None) -> list[dict]:
    """Read a monitor log, tolerating a truncated last line.

    Args:
        path: the ``.jsonl`` file written by `Monitor(log=...)`.
        types: keep only records whose ``"type"`` is in this tuple (e.g. ``("step",)``);
            ``None`` keeps every record (``"meta"``, ``"step"``, ``"diagnosis"``).

    Returns:
        The complete records in file order. A torn last line (a crash mid-write) is dropped
        silently; an unreadable line elsewhere is skipped with a warning.
    """
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    records: list[dict] = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        last = i == len(lines) - 1  # no newline after it: possibly torn
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            if not last:
                warnings.warn(f"{path}: skipping unreadable line {i + 1}", stacklevel=2)
            continue
        if not isinstance(rec, dict):
            continue
        rec = _decode(rec)
        if types is None or rec.get("type") in types:
            records.append(rec)
    return records


@dataclass
class Run:
    """One run of a monitor log, as `split_runs` reads it.

    Attributes:
        label: ``"run 1"``, ``"run 2"``, ... in the order the runs began.
        steps: its step records, in step order, one per step.
        meta: its ``"meta"`` line (empty when the log holds none for it).
        resumed_at: the steps at which it was resumed from a checkpoint.
        superseded: step records dropped because a resume went back before them (written
            after the checkpoint the run was resumed from, by a process that then stopped).
        diagnoses: its ``"diagnosis"`` lines.
        run_id: the ``run_id`` of its ``"meta"`` line (None when the log names none).
    """

    label: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    resumed_at: list[int] = field(default_factory=list)
    superseded: int = 0
    diagnoses: list[dict[str, Any]] = field(default_factory=list)
    run_id: str | None = None

    @property
    def span(self) -> str:
        """``"steps 0-59"`` (or ``"no steps"``)."""
        if not self.steps:
            return "no steps"
        return f"steps {self.steps[0].get('step')}-{self.steps[-1].get('step')}"


def split_runs(records: list[dict[str, Any]]) -> list[Run]:
    """The runs a log holds, each one continued run, never a line that jumps back.

    A monitor writes a ``"meta"`` line when it starts, with its ``run_id``;
    `Monitor.load_state_dict` writes a ``"resume"`` line with the saved run's id and step. A
    resume continues that run (its records from the resume step on, if any, are superseded:
    the run went back to its checkpoint); a step record whose step is not after the current
    run's last one, with no resume before it, starts a new run (a second run appended to the
    same log without the monitor's state). Runs without steps are left out.

    Args:
        records: the log's lines, as :func:`load_log` returns them (dicts, in file order).
    """
    runs: list[Run] = []
    current: Run | None = None
    fresh: dict[str, Any] | None = None  # a meta line whose run has not recorded yet

    def start(meta: dict[str, Any]) -> Run:
        run = Run(f"run {len(runs) + 1}", meta=meta, run_id=meta.get("run_id"))
        runs.append(run)
        return run

    for rec in records:
        kind = rec.get("type", "step")
        if kind == "meta":
            fresh = rec
        elif kind == "resume":
            step = rec.get("step")
            rid = rec.get("run_id")
            found = next((r for r in reversed(runs) if rid and r.run_id == rid), None)
            current = found or start({**(fresh or {}), "run_id": rid})
            fresh = None
            if isinstance(step, int):
                kept = [r for r in current.steps if r.get("step", -1) < step]
                current.superseded += len(current.steps) - len(kept)
                current.steps = kept
                current.resumed_at.append(step)
        elif kind == "step":
            last = current.steps[-1].get("step") if current and current.steps else None
            back = last is not None and not rec.get("step", 0) > last
            if current is None or fresh is not None or back:
                current = start(fresh or {})
                fresh = None
            current.steps.append(rec)
        elif kind == "diagnosis" and current is not None:
            current.diagnoses.append(rec)
    runs = [r for r in runs if r.steps]
    for i, r in enumerate(runs):
        r.label = f"run {i + 1}"
    return runs
