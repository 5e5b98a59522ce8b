"""The lecture, runnable: the lab's scenarios run when the site is built.

When the builder starts, ``adaptlr.lab.report.write_demo`` runs every scenario of
``adaptlr.lab.scenarios.SCENARIOS`` (and the report's other sections), writing the figures,
the report ``adaptlr demo`` writes and its ``results.json`` (each scenario's text, table,
numbers and figure names); with ``$ADAPTLR_DEMO_REPORT`` naming a folder ``adaptlr demo``
wrote, that report is used instead of running the lab again. The ``lecture`` directive puts one
scenario on a page; the whole report is copied into the site as ``lab-report/index.html``.

The results are cached under ``docs/_build/lecture/<hash>``, the hash taken over adaptlr's
code (its syntax trees, docstrings left out) and this file: a rebuild with unchanged code
reuses them, any change of code reruns the lab, a change of docstrings or comments does not.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

import adaptlr

logger = logging.getLogger(__name__)

#: where the site links the copied report, relative to the output directory
REPORT = "lab-report"


def _code(path: Path) -> str:
    """The syntax tree of a source file without its docstrings (comments are not in it)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.dump(tree)


def _source_hash() -> str:
    root = Path(adaptlr.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted([*root.rglob("*.py"), Path(__file__).resolve()]):
        h.update(path.relative_to(path.parent.parent).as_posix().encode())
        h.update(_code(path).encode())
    return h.hexdigest()[:16]


#: a folder ``adaptlr demo`` wrote (``index.html``, its figures and ``results.json``) to use
#: instead of running the lab again (the test suite runs the demo once for both)
GIVEN = "ADAPTLR_DEMO_REPORT"


def _run_lab(out: Path) -> dict[str, Any]:
    """The report of ``adaptlr demo`` in ``out / "report"`` (run now, or the one named by
    ``$ADAPTLR_DEMO_REPORT``), and its ``results.json``."""
    given = os.environ.get(GIVEN)
    if given:
        shutil.copytree(given, out / "report")
    else:
        from adaptlr.lab.report import write_demo

        write_demo(out / "report")
    results = json.loads((out / "report" / "results.json").read_text("utf-8"))
    from adaptlr.lab.scenarios import SCENARIOS

    missing = [k for k in SCENARIOS if k not in results["scenarios"]]
    if missing:
        raise RuntimeError(f"lecture: the lab's results lack the scenarios {missing}")
    (out / "results.json").write_text(json.dumps(results, indent=1), "utf-8")
    return results


def _load(app: Sphinx) -> None:
    # inside the source directory, so that the figures are images Sphinx can copy
    base = Path(app.srcdir) / "_build" / "lecture"
    key = _source_hash() if not os.environ.get(GIVEN) else "given"
    cache = base / key
    if key == "given":
        shutil.rmtree(cache, ignore_errors=True)  # the given report, whatever ran before
    if (cache / "results.json").exists():
        logger.info("lecture: reusing the lab's results in %s", cache)
    else:
        base.mkdir(parents=True, exist_ok=True)
        for old in base.iterdir():
            # results of other code; a build's unfinished directory once it is an hour old
            stale = old.suffix != ".tmp" or time.time() - old.stat().st_mtime > 3600
            if old.name != key and not old.name.startswith(key + ".") and stale:
                shutil.rmtree(old, ignore_errors=True)
        logger.info("lecture: running the lab's scenarios into %s", cache)
        # a directory of this build's own, renamed when complete: a build stopped half-way
        # leaves no results, and two builds at once do not write into one directory
        tmp = Path(tempfile.mkdtemp(prefix=key + ".", suffix=".tmp", dir=base))
        results = _run_lab(tmp)
        try:
            tmp.rename(cache)
        except OSError:  # another build finished first: its results are the same code's
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("lecture: the lab ran in %.1f s", results["elapsed_s"])
    app.env.lecture_dir = str(cache)  # type: ignore[attr-defined]


def _copy_report(app: Sphinx, exc: Exception | None) -> None:
    if exc is None and app.builder.format == "html":
        src = Path(app.env.lecture_dir) / "report"  # type: ignore[attr-defined]
        shutil.copytree(src, Path(app.outdir) / REPORT, dirs_exist_ok=True)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(rows: list[list[str]], header: list[str]) -> nodes.table:
    table = nodes.table(classes=["lecture-numbers"])
    group = nodes.tgroup(cols=len(header))
    table += group
    group += [nodes.colspec(colwidth=1) for _ in header]

    def row(cells: list[str]) -> nodes.row:
        r = nodes.row()
        for cell in cells:
            r += nodes.entry("", nodes.paragraph(text=cell))
        return r

    group += nodes.thead("", row(header))
    group += nodes.tbody("", *[row(r) for r in rows])
    return table


class LectureDirective(SphinxDirective):
    """``.. lecture:: KEY``: the measured text, table, figures and numbers of one scenario.

    Option ``:report:`` instead links the whole report of ``adaptlr demo``.
    """

    optional_arguments = 1
    option_spec = {"report": directives.flag}

    def run(self) -> list[nodes.Node]:
        cache = Path(self.env.lecture_dir)  # type: ignore[attr-defined]
        results_path = cache / "results.json"
        self.env.note_dependency(str(results_path))
        results = json.loads(results_path.read_text("utf-8"))
        if "report" in self.options:
            up = "../" * self.env.docname.count("/")
            link = nodes.reference("", "the whole report", refuri=f"{up}{REPORT}/index.html")
            para = nodes.paragraph()
            para += [
                nodes.Text("The lab ran in "),
                nodes.strong(text=f"{results['elapsed_s']:.1f} s"),
                nodes.Text(" when this site was built; "),
                link,
                nodes.Text(" that "),
                nodes.literal(text="adaptlr demo"),
                nodes.Text(" writes was copied into the site as it is."),
            ]
            return [para]
        if not self.arguments:
            raise self.error("lecture: give a scenario key or the :report: option")
        key = self.arguments[0]
        scenarios = results["scenarios"]
        if key not in scenarios:
            raise self.error(f"lecture: no scenario {key!r}; there are {sorted(scenarios)}")
        sc = scenarios[key]
        out: list[nodes.Node] = [nodes.paragraph(text=sc["text"])]
        if sc["table"]:
            header = list(sc["table"][0])
            rows = [[_number(r[h]) for h in header] for r in sc["table"]]
            out.append(_table(rows, header))
        rel = Path(cache).resolve().relative_to(Path(self.env.srcdir).resolve()).as_posix()
        for fname in sc["figures"]:
            out.append(
                nodes.image(
                    uri=f"/{rel}/report/{fname}", alt=f"{sc['title']}: {fname}", candidates={}
                )
            )
        numbers = [[name, _number(v)] for name, v in sc["metrics"].items()]
        details = nodes.container(classes=["lecture-metrics"])
        details += nodes.rubric(text=f"Every number measured ({key}.metrics)")
        details += _table(numbers, ["metric", "value"])
        out.append(details)
        return out


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("lecture", LectureDirective)
    app.connect("builder-inited", _load)
    app.connect("build-finished", _copy_report)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
