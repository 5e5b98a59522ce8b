"""What the lab needs beyond adaptlr's own dependencies, checked when :mod:`adaptlr.lab` loads."""

from __future__ import annotations

import importlib.util

#: import name -> distribution: the lab draws with matplotlib and writes images with pillow
NEEDS = {"matplotlib": "matplotlib", "PIL": "pillow"}

missing = [dist for mod, dist in NEEDS.items() if importlib.util.find_spec(mod) is None]
if missing:
    raise ModuleNotFoundError(
        f"adaptlr.lab needs {' and '.join(missing)}, which the lab extra installs: "
        "pip install 'adaptlr[lab]'",
        name=missing[0],
    )
