"""Docstrings write norms and absolute values as ``|x|``: text, not reST substitutions.

reST reads ``|Δθ|`` as a reference to a substitution named ``Δθ``; none is defined, so
docutils reports an error. This transform runs before docutils resolves substitutions
(priority 220) and turns each reference to an undefined substitution back into the text
``|name|``; defined substitutions, literals and math are left as they are.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.transforms import Transform
from sphinx.application import Sphinx


class PlainBars(Transform):
    default_priority = 219  # just before docutils.transforms.references.Substitutions

    def apply(self, **kwargs: Any) -> None:
        defined = self.document.substitution_defs
        for ref in list(self.document.findall(nodes.substitution_reference)):
            if ref["refname"] not in defined and ref["refname"].lower() not in defined:
                ref.replace_self(nodes.Text(f"|{ref.astext()}|"))


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_transform(PlainBars)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
