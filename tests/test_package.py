"""``import adaptlr``: what it gives, what it does not load, and what it costs over torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

#: CPU seconds `import adaptlr` may take after `import torch` (best of five fresh processes):
#: room for a loaded machine, but less than importing matplotlib (adaptlr.lab) or torch._dynamo
#: eagerly adds. CPU time, not wall time: other processes slow a wall clock far more.
IMPORT_BUDGET_S = 0.3

#: modules `import adaptlr` must leave unloaded: the lab's extra, the integrations, and dynamo
HEAVY = ("matplotlib", "PIL", "sklearn", "transformers", "lightning", "timm", "torch._dynamo")


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter and return its stdout (failing with its stderr)."""
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_submodules_are_attributes_of_the_package() -> None:
    out = _python(
        """
        import adaptlr
        adaptlr.schedules.warmup_cosine
        adaptlr.checkpoint.save
        adaptlr.monitor.Monitor
        adaptlr.lab.run
        adaptlr.stats.StepStats
        adaptlr.kernels.FastPath
        from adaptlr import lab, monitor
        assert lab is adaptlr.lab and monitor is adaptlr.monitor
        print(sorted({"checkpoint", "lab", "monitor", "schedules"} - set(dir(adaptlr))))
        """
    )
    assert out.split() == ["[]"]


def test_unknown_attribute_is_an_attribute_error() -> None:
    out = _python(
        """
        import adaptlr
        try:
            adaptlr.no_such_thing
        except AttributeError as e:
            print(e)
        print(hasattr(adaptlr, "nope"))
        """
    )
    assert "has no attribute 'no_such_thing'" in out and out.split()[-1] == "False"


def test_import_leaves_heavy_modules_unloaded() -> None:
    out = _python(
        f"""
        import json, sys
        import adaptlr
        from adaptlr import *
        print(json.dumps([m for m in {HEAVY!r} + ("adaptlr.lab",) if m in sys.modules]))
        """
    )
    loaded = json.loads(out)
    # e.g. torch.compiler.disable(...) at import time imports torch._dynamo
    assert loaded == [], f"import adaptlr loaded {loaded}: import them where they are used"


def test_lab_without_matplotlib_says_what_to_install() -> None:
    # None in sys.modules makes the import of matplotlib fail as if it were not installed
    out = _python(
        """
        import sys
        sys.modules["matplotlib"] = None
        import adaptlr
        for get in (lambda: adaptlr.lab, lambda: __import__("adaptlr.lab")):
            try:
                get()
            except ModuleNotFoundError as e:
                print(e.name, "|", e)
        """
    )
    lines = out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("matplotlib |") and "pip install 'adaptlr[lab]'" in line


def test_import_cost_over_torch() -> None:
    code = """
        import time, torch
        t = time.process_time()
        import adaptlr
        print(time.process_time() - t)
        """
    best = min(float(_python(code)) for _ in range(5))
    sys.stderr.write(f"\nimport adaptlr after import torch: {best * 1000:.0f} ms CPU\n")
    assert best < IMPORT_BUDGET_S, f"import adaptlr took {best:.3f} s of CPU after import torch"


def test_the_package_says_what_it_is() -> None:
    """The metadata pip shows (classifiers, the typing marker) and ``adaptlr --version``'s
    number, the one the package reports."""
    from importlib import metadata, resources

    import adaptlr

    meta = metadata.metadata("adaptlr")
    assert meta["Version"] == adaptlr.__version__
    classifiers = meta.get_all("Classifier") or []
    assert (
        "Typing :: Typed" in classifiers and "License :: OSI Approved :: MIT License" in classifiers
    )
    assert (resources.files("adaptlr") / "py.typed").is_file()
