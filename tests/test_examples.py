"""Every docstring example of the optimizers and the parts runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import adaptlr.core
import adaptlr.optimizers

MODULES = sorted(
    f"{pkg.__name__}.{info.name}"
    for pkg in (adaptlr.optimizers, adaptlr.core)
    for info in pkgutil.iter_modules(pkg.__path__)
    if info.name != "lecture"  # (a deprecated alias of root_mean_square)
) + ["adaptlr.torch_optim", "adaptlr.checkpoint", "adaptlr.lr_finder"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_every_public_optimizer_has_an_example():
    missing = [
        name
        for name in adaptlr.optimizers.__all__
        if ">>>" not in (getattr(adaptlr.optimizers, name).__doc__ or "")
    ]
    assert not missing, f"public optimizers without a docstring example: {missing}"
