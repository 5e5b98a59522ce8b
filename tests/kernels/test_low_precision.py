"""bf16/fp16 parameters on the fused path: float32 state by default, bf16 state on request.

The kernels model torch's dtype rules operation by operation (bf16/fp16 values computed in
float32 and rounded after each operation, the update rounded to the gradient's dtype before
``p.add_``), so parameters come out bit-identical to the reference path; the float32 state
differs only where torch's own CPU ``sqrt`` is not correctly rounded (1 ulp, which the
kernels' IEEE ``sqrt`` does not copy): found ≤ 3e-6 relative over 20 steps.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (see test_triton_*)

import warnings  # noqa: E402

import pytest
import torch  # noqa: E402

import adaptlr  # noqa: E402
from adaptlr.kernels import FusedFallbackWarning, plan  # noqa: E402
from adaptlr.optimizers.registry import REGISTRY  # noqa: E402

from ._parity import make, make_params, norm_chain, rel_err, set_grads  # noqa: E402

STEPS = 20
STATE_TOL = 1e-5  # float32 state: torch's CPU sqrt is off by 1 ulp at times (see above)


def run_low(kind, cfg, dtype, state_dtype=None, steps=STEPS):
    extra = {} if state_dtype is None else {"state_dtype": state_dtype}
    pa = [p.detach().to(dtype).requires_grad_() for p in make_params()]
    pb = [p.detach().to(dtype).requires_grad_() for p in make_params()]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FusedFallbackWarning)
        fused = make(kind, pa, {**cfg, **extra}, None)
        ref = make(kind, pb, {**cfg, **extra}, False)
        for step in range(steps):
            set_grads(pa, step)
            set_grads(pb, step)
            fused.step()
            ref.step()
    return fused, ref, pa, pb


def assert_low_same(fused, ref, pa, pb, state_dtype):
    for i, (a, b) in enumerate(zip(pa, pb)):
        assert a.dtype == b.dtype
        assert torch.equal(a, b), f"parameter {i}: {rel_err(a.detach(), b.detach())}"
        sa, sb = fused.state[a], ref.state[b]
        assert sa.keys() == sb.keys()
        for key, vb in sb.items():
            va = sa[key]
            assert va.shape == vb.shape and va.dtype == vb.dtype, key
            if va.numel() == a.numel() > 1:  # a per-element buffer (not step, mu_product)
                assert va.dtype == state_dtype, key
            tol = 0.0 if state_dtype != torch.float32 else STATE_TOL
            assert rel_err(va, vb) <= tol, f"parameter {i}, state {key!r}"


# what each kind of part does with low precision: every magnitude, momentum, weight decay,
# amsgrad's max, NAdam/RAdam's scalar state and rectification, a global norm
# (each case is a fresh numba compile, about 2 s on an empty cache: a few chosen ones)
LOW_CASES = ["adam-1", "nadam-1", "radam-1", "rmsprop-3"]


def _case(cid):
    name, i = cid.rsplit("-", 1)
    info = REGISTRY[name]
    return info.cls, info.all_configs[int(i)]


@pytest.fixture(params=["numba", "triton"])
def backend(request, monkeypatch):
    if request.param == "numba":
        pytest.importorskip("numba")
        monkeypatch.setattr(plan, "CPU_CHUNK", 8)
        yield
        return
    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("the Triton interpreter needs TRITON_INTERPRET=1 before triton is imported")
    from adaptlr import kernels

    monkeypatch.setattr(plan, "TRITON_BLOCK", 16)
    with kernels.use_triton_on_cpu():
        yield


@pytest.mark.parametrize("cid", LOW_CASES)
def test_bf16_params_float32_state(backend, cid):
    cls, cfg = _case(cid)
    fused, ref, pa, pb = run_low(cls, cfg, torch.bfloat16)
    assert_low_same(fused, ref, pa, pb, torch.float32)


def test_bf16_global_norm_chain(backend):
    fused, ref, pa, pb = run_low(norm_chain(), {}, torch.bfloat16)
    assert_low_same(fused, ref, pa, pb, torch.float32)


def test_fp16_params_float32_state(backend):
    cls, cfg = _case("adam-1")
    fused, ref, pa, pb = run_low(cls, cfg, torch.float16)
    assert_low_same(fused, ref, pa, pb, torch.float32)


def test_bf16_state_on_request(backend):
    cls, cfg = _case("nadam-1")
    fused, ref, pa, pb = run_low(cls, cfg, torch.bfloat16, state_dtype=torch.bfloat16)
    assert_low_same(fused, ref, pa, pb, torch.bfloat16)


def test_bf16_state_dict_moves_between_fused_and_reference(backend):
    """A fused bf16 run's checkpoint (float32 state) resumes on the reference path, and the
    reference path's checkpoint resumes on the fused path, bit-identically."""
    cls, cfg = _case("adam-1")
    fused, ref, pa, pb = run_low(cls, cfg, torch.bfloat16, steps=6)
    pc = [p.detach().clone().requires_grad_() for p in pa]
    pd = [p.detach().clone().requires_grad_() for p in pb]
    ref_from_fused = make(cls, pc, cfg, False)
    ref_from_fused.load_state_dict(fused.state_dict())
    fused_from_ref = make(cls, pd, cfg, None)
    fused_from_ref.load_state_dict(ref.state_dict())
    assert ref_from_fused.state[pc[0]]["exp_avg"].dtype == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error", FusedFallbackWarning)
        for step in range(6, 12):
            for opt, ps in ((fused, pa), (ref, pb), (ref_from_fused, pc), (fused_from_ref, pd)):
                set_grads(ps, step)
                opt.step()
    for a, b, c, d in zip(pa, pb, pc, pd):
        assert torch.equal(a, b) and torch.equal(a, c) and torch.equal(a, d)
    assert isinstance(fused, adaptlr.Optimizer)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize(
    "cls, cfg",
    [
        (adaptlr.Adam, {"lr": 0.01, "eps": 0.1, "weight_decay": 0.3}),
        (adaptlr.RMSprop, {"lr": 0.01, "eps": 0.1, "momentum": 0.5}),
    ],
    ids=["adam", "rmsprop"],
)
def test_a_number_added_to_low_precision_state_is_rounded_as_torch_rounds_it(cls, cfg, dtype):
    """On the CPU torch rounds a Python float to a bf16/fp16 tensor's dtype before adding it
    (not before multiplying): σ + ε with ε = 0.1 in bf16 is σ + 0.10009765625. The kernels
    copy that rule (``codegen._scalar_mode``); without it these steps differ from torch's."""
    out = []
    for fused in (None, False):
        gen = torch.Generator().manual_seed(1)
        p = torch.nn.Parameter((torch.randn(4096, generator=gen) * 0.3).to(dtype))
        opt = cls([p], fused=fused, state_dtype=dtype, **cfg)
        with warnings.catch_warnings():
            warnings.simplefilter("error", FusedFallbackWarning)
            for _ in range(5):
                p.grad = (torch.randn(4096, generator=gen) * 0.01).to(dtype)
                opt.step()
        out.append(p.detach().clone())
    assert torch.equal(out[0], out[1])
