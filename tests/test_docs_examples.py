"""The documentation's own examples run as written.

Every ```python block of ``docs/*.md`` and ``docs/howto/*.md`` (README's are
``tests/test_readme.py``'s) runs verbatim, each in a namespace of its own (so each must be
self-contained), in one fresh interpreter in a temporary directory (one interpreter for all:
starting one and importing torch and adaptlr takes ~5 s here). Blocks added to those pages are
picked up by themselves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ._markdown import fenced_blocks

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([*(ROOT / "docs").glob("*.md"), *(ROOT / "docs" / "howto").glob("*.md")])

RUNNER = """
import json, sys, traceback
failed = []
for where, code in json.load(sys.stdin):
    try:
        exec(compile(code, where, "exec"), {"__name__": "__main__"})
    except BaseException:
        failed.append(where + ":\\n" + traceback.format_exc()[-3000:])
print(json.dumps(failed))
"""


def _blocks() -> list[tuple[str, str]]:
    """("page:line", text) of every ```python block of the pages."""
    out = []
    for page in PAGES:
        where = page.relative_to(ROOT).as_posix()
        for line, body in fenced_blocks(page.read_text(encoding="utf-8"), "python"):
            out.append((f"{where}:{line}", body))
    return out


def test_every_python_block_of_the_docs_runs(tmp_path: Path) -> None:
    blocks = _blocks()
    assert len(blocks) >= 6  # the glob finds the pages (a moved folder would test nothing)
    res = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(blocks),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    failed = json.loads(res.stdout.strip().splitlines()[-1])
    assert not failed, "\n\n".join(failed)


def test_a_failing_block_is_reported(tmp_path: Path) -> None:
    """The runner names a block that raises (the test above can fail)."""
    blocks = [("good:1", "x = 1\n"), ("bad:7", "y = x\n")]  # x is the other block's: NameError
    res = subprocess.run(
        [sys.executable, "-c", RUNNER], input=json.dumps(blocks), cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    failed = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(failed) == 1 and failed[0].startswith("bad:7") and "NameError" in failed[0]
