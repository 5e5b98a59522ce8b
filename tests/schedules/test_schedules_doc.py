"""The Python blocks of docs/schedules.md run as written."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "schedules.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_doc_has_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_doc_block_runs(i):
    exec(compile(BLOCKS[i], f"{DOC.name}[{i}]", "exec"), {"__name__": f"doc_block_{i}"})
