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
from adaptlr.kernels import plan  # noqa: E402
from adaptlr.optimizers.registry import REGISTRY  # noqa: E402

from ._parity import (  # noqa: E402
    assert_same,
    make,
    make_strided_params,
    norm_chain,
    run_pair,
    set_grads_in_layout,
    user_chain,
)

pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("TRITON_INTERPRET is not 1 in this process", allow_module_level=True)

STEPS = 15  # the interpreter runs each program in Python: fewer steps than the numba tests

# one hyperparameter set per optimizer by default, every set when slow tests run; the
# learning-rate-free ones' other sets use no operation that the sets run here do not (checked
# over the traced programs when this was cut): they run on numba (test_fused_parity.py), and
# here their first set only (each set under the interpreter takes seconds)
LR_FREE = {"prodigy", "dadapt_adam", "dadapt_sgd", "dadapt_adagrad", "dog", "ldog",
           "adamwschedulefree", "sgdschedulefree", "radamschedulefree"}  # fmt: skip
CASES = [
    pytest.param(info, cfg, id=f"{name}-{i}", marks=() if i == 0 else pytest.mark.slow)
    for name, info in REGISTRY.items()
    for i, cfg in enumerate(info.all_configs)
    if i == 0 or name not in LR_FREE
]


@pytest.fixture(autouse=True)
def triton_on_cpu(monkeypatch):
    monkeypatch.setattr(plan, "TRITON_BLOCK", 16)  # several programs per tensor, masked tails
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


@pytest.mark.parametrize("kind", ["adam", "chain-global-norm"])
def test_triton_dense_parameters_in_other_layouts(kind):
    """channels_last, transposed and permuted parameters (see test_fused_layouts.py)."""
    import warnings

    import adaptlr
    from adaptlr.kernels import FusedFallbackWarning

    kind, cfg = (adaptlr.Adam, {"lr": 0.01}) if kind == "adam" else (norm_chain(), {})
    pa, pb = make_strided_params(), make_strided_params()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FusedFallbackWarning)
        fused, ref = make(kind, pa, cfg, None), make(kind, pb, cfg, False)
        for step in range(STEPS):
            for opt, ps in ((fused, pa), (ref, pb)):
                set_grads_in_layout(ps, step, like_param=step != 3)
                opt.step()
    assert_same(fused, ref, pa, pb, tol=1e-6, starts=make_strided_params())


@pytest.mark.parametrize("misaligned", [False, True], ids=["aligned", "misaligned"])
def test_full_chunks_and_the_alignment_flag(misaligned):
    """Chunks of exactly BLOCK elements run ``step_full``, whose ``ALIGNED`` variant declares
    parameter addresses as multiples of 16 bytes (128-bit accesses, which fault on a GPU at
    another address): the flag must follow the addresses, and both variants match the
    reference path."""
    import torch

    import adaptlr

    def params():
        gen = torch.Generator().manual_seed(3)
        out = []
        for n in (40, 37):
            buf = torch.empty(n + int(misaligned))
            p = buf[int(misaligned) :].copy_(torch.randn(n, generator=gen))
            out.append(p.requires_grad_())
        return out

    pa, pb = params(), params()
    assert all(bool(p.data_ptr() % 16) == misaligned for p in pa)
    fused, ref = adaptlr.Adam(pa, lr=0.01), adaptlr.Adam(pb, lr=0.01, fused=False)
    for step in range(5):
        gen = torch.Generator().manual_seed(100 + step)
        grads = [torch.randn(p.shape, generator=gen) for p in pa]
        for ps in (pa, pb):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
        fused.step()
        ref.step()
    for a, b in zip(pa, pb):
        assert torch.allclose(a, b, rtol=1e-6, atol=0)
    (group_plan,) = fused._fast_path.plans.values()
    (segment,) = group_plan.last.segments
    tables = segment.dev_tables
    assert tables.full[0].numel() == 4  # 40 = 16 + 16 + 8, 37 = 16 + 16 + 5
    assert bool(tables.pptr_aligned) == (not misaligned)
