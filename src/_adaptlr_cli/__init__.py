"""The ``adaptlr`` console script's entry point, outside the ``adaptlr`` package on purpose.

Importing any ``adaptlr.*`` module first runs ``adaptlr/__init__.py``, which imports torch (seconds)
and must: importing ``adaptlr.schedules`` registers the schedule classes with
``torch.load(weights_only=True)``, and ``import adaptlr`` promises that. ``adaptlr --help`` and
``adaptlr --version`` need none of it, so this entry point loads ``adaptlr/cli.py`` as the module
``adaptlr.cli`` without running the package's ``__init__``; the command handlers' imports (all
inside functions) then import the whole package, as ``import adaptlr`` does, once they run.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from types import ModuleType

__all__ = ["main"]


def main() -> int:
    """Run the ``adaptlr`` command line on ``sys.argv``; returns the exit code."""
    if "adaptlr" in sys.modules:  # the package is loaded already: nothing to save
        from adaptlr.cli import main as run
    else:
        run = (sys.modules.get("adaptlr.cli") or _cli_alone()).main
    return run()


def _cli_alone() -> ModuleType:
    """``adaptlr/cli.py``, executed as ``adaptlr.cli`` with the package left unimported."""
    package = importlib.util.find_spec("adaptlr")  # finds the package, runs none of it
    locations = package.submodule_search_locations if package is not None else None
    spec = importlib.machinery.PathFinder.find_spec("adaptlr.cli", list(locations or []))
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError("No module named 'adaptlr.cli'", name="adaptlr.cli")
    module = importlib.util.module_from_spec(spec)
    sys.modules["adaptlr.cli"] = module
    spec.loader.exec_module(module)
    return module
