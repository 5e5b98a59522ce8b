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
