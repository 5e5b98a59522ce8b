"""The Triton kernels equal the reference path, run on the CPU by Triton's interpreter.

``TRITON_INTERPRET=1`` must be set before Triton is imported; this module sets it unless the
environment already chose (on a GPU machine, ``benchmarks/gpu_check.py`` runs the same
recipe natively on CUDA).
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from adaptlr import kernels  # noqa: E402
from adaptlr.kernels import flat  # noqa: E402
from adaptlr.optimizers.registry import REGISTRY  # noqa: E402

from ._parity import assert_same, norm_chain, run_pair, user_chain  # noqa: E402

pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("TRITON_INTERPRET is not 1 in this process", allow_module_level=True)

STEPS = 15  # the interpreter runs each program in Python: fewer steps than the numba tests

# one hyperparameter set per optimizer by default, every set when slow tests run
CASES = [
    pytest.param(info, cfg, id=f"{name}-{i}", marks=() if i == 0 else pytest.mark.slow)
    for name, info in REGISTRY.items()
    for i, cfg in enumerate(info.all_configs)
]


@pytest.fixture(autouse=True)
def triton_on_cpu(monkeypatch):
    monkeypatch.setattr(flat, "TRITON_BLOCK", 16)  # several programs per tensor, masked tails
    with kernels.use_triton_on_cpu():
        yield


@pytest.mark.parametrize("info, cfg", CASES)
def test_triton_equals_reference(info, cfg):
    fused, ref, pa, pb = run_pair(info.cls, cfg, steps=STEPS)
    assert_same(fused, ref, pa, pb, tol=1e-6)


@pytest.mark.parametrize("chain", [user_chain, norm_chain], ids=["three-parts", "global-norm"])
def test_triton_user_chains(chain):
    fused, ref, pa, pb = run_pair(chain(), {}, steps=STEPS)
    assert_same(fused, ref, pa, pb, tol=1e-6)
