"""Running a test's script in a new Python process that imports this checkout's tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    """``python -c code`` from the repository root, ``tests`` importable, ``env`` added."""
    full = dict(os.environ, **env)
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT), full.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", code], env=full, cwd=ROOT, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
