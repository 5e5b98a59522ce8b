"""Sphinx math renderer: LaTeX to MathML at build time (``latex2mathml``), no script, no CDN.

Browsers draw MathML Core themselves (Chromium since 109, Firefox, Safari), so a page with
math loads nothing from the network; a formula latex2mathml cannot convert is a build
warning (an error under ``-W``), naming the document and the formula.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.math import get_node_equation_number

logger = logging.getLogger(__name__)


def _mathml(self: Any, node: nodes.Element, latex: str, display: str) -> str:
    try:
        return convert(latex.strip(), display=display)
    except Exception as exc:  # latex2mathml raises several kinds; each is a bad formula
        logger.warning("cannot render math %r: %s", latex, exc, location=node)
        return f"<code>{self.encode(latex)}</code>"


def visit_math(self: Any, node: nodes.math) -> None:
    self.body.append(self.starttag(node, "span", "", CLASS="math notranslate"))
    self.body.append(_mathml(self, node, node.astext(), "inline") + "</span>")
    raise nodes.SkipNode


def visit_displaymath(self: Any, node: nodes.math_block) -> None:
    self.body.append(self.starttag(node, "div", CLASS="math notranslate"))
    if node["number"]:
        number = get_node_equation_number(self, node)
        self.body.append(f'<span class="eqno">({number})</span>')
    # blank lines separate equations (as in Sphinx's other renderers): one block each
    for part in (p for p in node.astext().split("\n\n") if p.strip()):
        self.body.append(_mathml(self, node, part, "block"))
    self.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_html_math_renderer(
        "mathml", inline_renderers=(visit_math, None), block_renderers=(visit_displaymath, None)
    )
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
