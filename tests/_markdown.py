"""Fenced code blocks of a Markdown page, for the tests that run the pages' examples."""

from __future__ import annotations

import re


def fenced_blocks(text: str, lang: str) -> list[tuple[int, str]]:
    """(line number of the opening fence, body) of every ```` ```lang ```` block of ``text``."""
    out = []
    for m in re.finditer(rf"^```{lang}[ \t]*\n(.*?)^```[ \t]*$", text, re.S | re.M):
        out.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    return out
