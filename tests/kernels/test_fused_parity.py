"""The numba fused step equals the reference path, over the whole registry."""

from __future__ import annotations

import pytest
import torch

from adaptlr.kernels import launch, plan
from adaptlr.optimizers.registry import REGISTRY

from ._parity import assert_same, norm_chain, run_pair, set_grads, user_chain

pytest.importorskip("numba")

# The first hyperparameter set of each optimizer runs by default; the rest are slow only
# because each new graph is a fresh numba compile (about 2 s) on an empty kernel cache.
CASES = [
    pytest.param(info, cfg, id=f"{name}-{i}", marks=() if i == 0 else pytest.mark.slow)
    for name, info in REGISTRY.items()
    for i, cfg in enumerate(info.all_configs)
]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of 8 elements: tensors span several chunks, as large ones do."""
    monkeypatch.setattr(plan, "CPU_CHUNK", 8)


@pytest.mark.parametrize("info, cfg", CASES)
def test_fused_equals_reference(info, cfg):
    # A distance estimate (Prodigy, D-Adaptation) feeds every rounding difference of float32
    # back into d, and d into every element: over 100 float32 steps the two paths drift
    # apart by 1e-6 relative from last-bit differences alone. They are compared over 20
    # float32 steps here, and over 100 in float64 to 1e-12 (test_float64_is_exact_to_rounding).
    # SWATS's estimate divides by xᵀg, a sum that cancels: its λ drifts the same way (in
    # float64 it is compared with torch-optimizer in tests/optimizers/test_swats.py).
    one_estimate = getattr(info.cls, "same_in_every_group", None) is not None
    one_estimate = one_estimate or info.name == "swats"
    fused, ref, pa, pb = run_pair(info.cls, cfg, steps=20 if one_estimate else 100)
    assert_same(fused, ref, pa, pb, tol=1e-6)


@pytest.mark.parametrize("chain", [user_chain, norm_chain], ids=["three-parts", "global-norm"])
def test_user_chains(chain):
    fused, ref, pa, pb = run_pair(chain(), {})
    assert_same(fused, ref, pa, pb, tol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["adam", "nadam", "radam", "sgd", "prodigy", "dadapt_adam", "dog", "adamwschedulefree"]
)
def test_float64_is_exact_to_rounding(name):
    info = REGISTRY[name]
    fused, ref, pa, pb = run_pair(info.cls, info.all_configs[-1], dtype=torch.float64)
    assert_same(fused, ref, pa, pb, tol=1e-12)


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads", ["serial", "parallel", "torch-one-thread"])
@pytest.mark.parametrize(
    "kind, cfg",
    [pytest.param(info.cls, info.all_configs[0], id=name) for name, info in REGISTRY.items()]
    + [
        pytest.param(user_chain(), {}, id="three-parts"),
        pytest.param(norm_chain(), {}, id="global-norm"),
    ],
)
def test_serial_and_parallel_kernels_equal_reference(
    kind, cfg, threads, monkeypatch, torch_threads
):
    """A step too small to share out runs the kernels compiled without numba's thread pool
    (``step_serial``, ``step_stats_serial``, ``norm0_serial``); a larger one the parallel ones,
    unless torch was told to use one thread. The tests' tensors are small: a grain of 1
    element sends them to the parallel kernels."""
    from adaptlr.kernels import backends

    if threads != "serial":
        monkeypatch.setattr(launch, "PARALLEL_GRAIN", 1)
    if torch.get_num_threads() < 2 or launch.max_threads() < 2:
        pytest.skip("one thread: every kernel is the serial one")
    if threads == "torch-one-thread":
        torch_threads(1)
    used = []
    real = backends.numba_module

    class Spy:  # the generated module, recording which kernels a step calls
        def __init__(self, mod):
            self.mod = mod

        def __getattr__(self, name):
            fn = getattr(self.mod, name)
            return lambda *args: used.append(name) or fn(*args)

    monkeypatch.setattr(backends, "numba_module", lambda *a: Spy(real(*a)))
    fused, ref, pa, pb = run_pair(kind, cfg, steps=30)
    for opt, params in ((fused, pa), (ref, pb)):  # a measured step: the stats kernels
        opt.request_stats()
        set_grads(params, 30)
        opt.step()
    assert_same(fused, ref, pa, pb, tol=1e-6)
    assert "step_stats" in {name.removesuffix("_serial") for name in used}
    serial = [name.endswith("_serial") for name in used]
    assert all(serial) if threads != "parallel" else not any(serial)
