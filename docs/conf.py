"""Sphinx configuration of adaptlr's documentation site.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (``pip install -e ".[docs]"`` first).
The pages need no network: math is rendered to MathML at build time (``_ext/mathml.py``) and
the lecture's figures are computed at build time by the lab (``_ext/lecture.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import adaptlr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "adaptlr"
author = "adaptlr authors"
copyright = "adaptlr authors"  # noqa: A001 (Sphinx's name)
release = version = adaptlr.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_parser",
    "mathml",
    "lecture",
    "plain_bars",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# -- MyST: the existing docs/*.md pages are read as they are --------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
# the benchmark pages are written by benchmarks/*.py with "#" then "###" headings, and
# scheduler_overhead.md starts at "##": read as they are rather than rewritten
suppress_warnings = ["myst.header"]

# -- autodoc: Google-style "Args:" sections (napoleon), signatures as written ----------------
# undocumented public members are listed too: a missing docstring shows as a bare entry
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autoclass_content = "both"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# "Attributes:" as fields of the class, not as entries of their own: with undoc-members, a
# dataclass field would otherwise be described twice
napoleon_use_ivar = True

# -- math: MathML made at build time, so no page loads a script from a CDN -----------------
math_renderer = "mathml"
# no sphinx.ext.viewcode: its ~60 pages of highlighted source would add to the build and to
# the pages the test opens in Chromium, and the source is in the repository

# -- HTML ----------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"adaptlr {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
