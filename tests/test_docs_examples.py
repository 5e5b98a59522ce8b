"""The documentation's own examples run as written.

Every ```python block of ``docs/*.md`` and ``docs/howto/*.md`` (README's are
``tests/test_readme.py``'s) runs verbatim in a fresh interpreter, in a temporary directory, so
each must be self-contained; blocks added to those pages are picked up by themselves.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([*(ROOT / "docs").glob("*.md"), *(ROOT / "docs" / "howto").glob("*.md")])


def _blocks() -> list[tuple[str, int, str]]:
    """(page, line number, text) of every ```python block of the pages."""
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in re.finditer(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, re.S | re.M):
            out.append(
                (page.relative_to(ROOT).as_posix(), text.count("\n", 0, m.start()) + 1, m.group(1))
            )
    return out


BLOCKS = _blocks()


def test_the_pages_have_examples() -> None:
    """The glob finds the pages (a moved folder would silently test nothing)."""
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("page, line, code", BLOCKS, ids=[f"{p}:{n}" for p, n, _ in BLOCKS])
def test_block_runs(page: str, line: int, code: str, tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, f"{page}:{line} failed:\n{res.stderr[-3000:]}"
