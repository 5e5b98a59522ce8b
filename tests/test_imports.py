"""No import circle inside adaptlr, read from the source.

The graph has an edge a -> b for every ``import``/``from ... import`` in module a that names
module b of the package: at module level and inside functions (a late import runs too, it only
runs later), relative or absolute. Imports under ``if TYPE_CHECKING:`` never run and are left
out. ``from x import y`` is an edge to ``x.y`` when that is a module, else to ``x``; importing a
submodule runs its parents' ``__init__`` too, but an edge to every parent would make each package
a circle with its own modules, so, as import-linter does, only the named module counts.

``python tests/test_imports.py`` prints the graph's strongly connected components.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "adaptlr"


def modules(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of ``package`` under ``src``: dotted name -> file."""
    found = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: all but the body of ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (see the module docstring)."""
    mods = modules(src, package)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        is_package = path.name == "__init__.py"
        # the package a relative import of this module starts from
        here = name.split(".") if is_package else name.split(".")[:-1]
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    base_name = ".".join(base + ([node.module] if node.module else []))
                else:
                    base_name = node.module or ""
                candidates = [
                    f"{base_name}.{a.name}" if f"{base_name}.{a.name}" in mods else base_name
                    for a in node.names
                ]
            for target in candidates:
                # `import adaptlr.core.base` names the deepest module that exists
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components (Tarjan), each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            components.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(components, key=lambda c: (-len(c), c))


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module that importing ``start`` may import, directly or not."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for m in graph[todo.pop()] - seen:
            seen.add(m)
            todo.append(m)
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected component of two or more modules (a circle of imports)."""
    return [c for c in strongly_connected(graph) if len(c) > 1]


def _edges_within(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    inside = set(component)
    return [f"{a} -> {b}" for a in component for b in sorted(graph[a] & inside)]


# -- the helpers themselves, on a made-up package -----------------------------------------------
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from . import a\nfrom .sub import c\n",
            "pkg/a.py": "def f():\n    from .b import x\n",
            "pkg/b.py": (
                "from typing import TYPE_CHECKING\nimport typing\n"
                "if TYPE_CHECKING:\n    from . import a\nelse:\n    import pkg.sub.c\n"
                "if typing.TYPE_CHECKING:\n    from .sub import d\n"
            ),
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": "from .. import b\nfrom ..a import f\nimport pkg.sub.d as d\n",
            "pkg/sub/d.py": "import os\nfrom pkg import sub\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph == {
        "pkg": {"pkg.a", "pkg.sub.c"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.b", "pkg.a", "pkg.sub.d"},
        "pkg.sub.d": {"pkg.sub"},
    }
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    assert reachable(graph, "pkg.sub.d") == {"pkg.sub"}
    assert reachable(graph, "pkg.a") == {"pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c", "pkg.sub.d"}


def test_strongly_connected_components() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert strongly_connected(graph) == [["a", "b", "c"], ["d", "e"], ["f"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# -- adaptlr ------------------------------------------------------------------------------------
def test_the_graph_covers_the_package() -> None:
    graph = import_graph()
    assert {"adaptlr", "adaptlr.torch_optim", "adaptlr.checkpoint"} <= set(graph)
    assert "adaptlr.core" in graph["adaptlr.torch_optim"]


def test_no_import_circle() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import circles in adaptlr:\n" + "\n".join(
        f"  {c}\n    edges: {_edges_within(graph, c)}" for c in found
    )


def test_checkpoint_imports_no_optimizer() -> None:
    """checkpoint reaches optimizers through the optimizer it is given (``torch_class`` and
    ``prepare_torch_state_dict``), so that the adapter can import it."""
    below = reachable(import_graph(), "adaptlr.checkpoint")
    upward = sorted(m for m in below if m.startswith(("adaptlr.optimizers", "adaptlr.torch_optim")))
    assert not upward, f"adaptlr.checkpoint imports {upward}"


if __name__ == "__main__":
    g = import_graph()
    for c in strongly_connected(g):
        if len(c) > 1:
            print(f"cycle of {len(c)}: {c}")
            for e in _edges_within(g, c):
                print(f"    {e}")
    print(f"{len(g)} modules, {sum(len(t) for t in g.values())} edges, {len(cycles(g))} cycle(s)")
