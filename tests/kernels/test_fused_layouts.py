"""Parameters that are dense but not contiguous (a model in ``channels_last``, a transposed
weight) keep the fast path: their state views take their strides, and the kernels step each
as one block of memory. A parameter with gaps falls back, saying so."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

import adaptlr
from adaptlr.kernels import FusedFallbackWarning
from adaptlr.optimizers.registry import REGISTRY

from ._parity import (
    assert_same,
    make,
    make_strided_params,
    norm_chain,
    rel_err,
    set_grads_in_layout,
    step_side_by_side,
    user_chain,
)

pytest.importorskip("numba")

KINDS = [
    pytest.param(info.cls, info.all_configs[0], id=name) for name, info in REGISTRY.items()
] + [
    pytest.param(user_chain(), {}, id="chain-three-parts"),
    pytest.param(norm_chain(), {}, id="chain-global-norm"),
]


@pytest.mark.parametrize("kind, cfg", KINDS)
def test_dense_parameters_in_other_layouts_take_the_fast_path(kind, cfg):
    pa, pb = make_strided_params(), make_strided_params()
    assert sum(not p.is_contiguous() for p in pa) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error", FusedFallbackWarning)  # the fast path must hold
        fused, ref = make(kind, pa, cfg, None), make(kind, pb, cfg, False)
        for step in range(40):
            # every tenth step from the 7th: gradients assigned contiguous, read through a
            # copy laid out as the parameter; step 20 measured (the measuring kernels)
            like = step % 10 != 7
            for opt, ps in ((fused, pa), (ref, pb)):
                if step == 20:
                    opt.request_stats()
                set_grads_in_layout(ps, step, like)
                opt.step()
            if step == 20:
                for sf, sr in zip(fused.last_stats, ref.last_stats):
                    assert sf.fused and not sr.fused
                    for name in ("grad_sq", "update_sq", "param_sq"):
                        want = getattr(sr, name)
                        assert abs(getattr(sf, name) - want) <= 1e-6 * abs(want), name
    assert_same(fused, ref, pa, pb, tol=1e-6, starts=make_strided_params())
    for group in fused.param_groups:  # the state is the flat buffers', laid out as each param
        storages = set()
        for p in group["params"]:
            for key, v in fused.state[p].items():
                if v.dim() and p.numel():
                    assert v.stride() == p.stride(), key
                    storages.add((key, v.untyped_storage().data_ptr()))
        assert len(storages) == len({k for k, _ in storages})


def _convnet():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3), torch.nn.Flatten()
    )


def test_a_model_moved_to_channels_last_after_some_steps():
    """``model.to(memory_format=torch.channels_last)`` between steps: the weights move to new
    memory with other strides; the plan must be rebuilt with state laid out as them."""
    ma, mb = _convnet(), _convnet()
    x = torch.randn(4, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    fused = adaptlr.Adam(ma.parameters(), lr=0.01)
    ref = adaptlr.Adam(mb.parameters(), lr=0.01, fused=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FusedFallbackWarning)
        for step in range(20):
            if step == 8:
                ma.to(memory_format=torch.channels_last)
                mb.to(memory_format=torch.channels_last)
                xs = x.contiguous(memory_format=torch.channels_last)
            for opt, m in ((fused, ma), (ref, mb)):
                opt.zero_grad()
                m(x if step < 8 else xs).square().mean().backward()
                opt.step()
    weight = ma[0].weight
    assert not weight.is_contiguous() and weight.grad.stride() == weight.stride()
    assert fused.state[weight]["exp_avg"].stride() == weight.stride()
    for a, b in zip(ma.parameters(), mb.parameters()):
        assert rel_err(a.detach(), b.detach()) <= 1e-6
        for key, vb in ref.state[b].items():
            assert rel_err(fused.state[a][key], vb) <= 1e-6, key


def test_a_parameter_with_gaps_falls_back_with_a_warning():
    def params():
        gen = torch.Generator().manual_seed(2)
        return [
            torch.randn(4, 6, generator=gen)[:, ::2].requires_grad_(),
            torch.randn(5, generator=gen).requires_grad_(),
        ]

    pa, pb = params(), params()
    fused, ref = adaptlr.Adam(pa, lr=0.01), adaptlr.Adam(pb, lr=0.01, fused=False)
    with pytest.warns(FusedFallbackWarning, match="do not fill one block of memory"):
        for step in range(5):
            for opt, ps in ((fused, pa), (ref, pb)):
                gen = torch.Generator().manual_seed(10 + step)
                for p in ps:
                    p.grad = torch.randn(p.shape, generator=gen)
                opt.step()
    for a, b in zip(pa, pb):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.complex64])
def test_low_precision_and_complex_parameters_in_other_layouts(dtype):
    """bf16/fp16 weights in channels_last (float32 state): bit-equal to the reference path;
    complex parameters transposed and permuted (state views of the real flat buffers)."""

    def params():
        gen = torch.Generator().manual_seed(4)
        if dtype.is_complex:
            out = [
                torch.randn(6, 5, dtype=dtype, generator=gen).t(),
                torch.randn(3, 4, 5, dtype=dtype, generator=gen).permute(2, 0, 1),
            ]
        else:
            cl = torch.channels_last
            out = [
                torch.randn(4, 3, 3, 5, generator=gen).to(dtype).contiguous(memory_format=cl),
                torch.randn(6, 5, generator=gen).to(dtype).t(),
            ]
        return [p.requires_grad_() for p in out]

    pa, pb = params(), params()

    def grad(p, gen, step):  # laid out as p, but contiguous at step 4 (read through a copy)
        g = torch.randn(p.shape, generator=gen, dtype=torch.float32).to(dtype)
        return g if step == 4 else torch.empty_like(p).copy_(g)

    fused, ref = adaptlr.AdamW(pa, lr=0.01), adaptlr.AdamW(pb, lr=0.01, fused=False)
    step_side_by_side(fused, ref, pa, pb, 15, grad)
    for a, b in zip(pa, pb):
        assert fused.state[a]["exp_avg"].stride() == a.stride()
        if dtype.is_complex:
            assert rel_err(a.detach(), b.detach()) <= 1e-6
        else:
            assert torch.equal(a, b)


def test_a_saved_state_of_such_parameters_resumes_exactly():
    """The state dict of channels_last/transposed parameters, saved and loaded into a new
    optimizer over copies of them: the resumed run equals the uninterrupted one bit for bit
    (the loaded values are copied into the new flat buffers element by element)."""
    pa = make_strided_params()
    opt = adaptlr.Adam(pa, lr=0.01)
    for step in range(10):
        set_grads_in_layout(pa, step)
        opt.step()
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    pc = [p.detach().clone().requires_grad_() for p in pa]  # (clone keeps the strides)
    resumed = adaptlr.Adam(pc, lr=0.01)
    buf.seek(0)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FusedFallbackWarning)
        for step in range(10, 20):
            for o, ps in ((opt, pa), (resumed, pc)):
                set_grads_in_layout(ps, step)
                o.step()
    for a, c in zip(pa, pc):
        assert a.stride() == c.stride() or not a.numel()
        assert torch.equal(a, c)
        for key, v in opt.state[a].items():
            assert torch.equal(resumed.state[c][key], v), key


def _lazy_grads(params, step):
    """Gradients that are lazy views: x.conj() for complex parameters, x.conj().imag (a lazy
    negation) for a one-element real one; and their values, materialised."""
    gen = torch.Generator().manual_seed(300 + step)
    lazy, plain = [], []
    for p in params:
        if p.is_complex():
            g = torch.randn(p.shape, dtype=p.dtype, generator=gen).conj()
        else:
            g = torch.randn(p.shape, dtype=torch.complex64, generator=gen).conj().imag
        assert g.is_conj() or g.is_neg()
        lazy.append(g)
        plain.append(g.clone())  # (clone applies the conjugate or negation)
    return lazy, plain


@pytest.mark.parametrize("fused", [None, False], ids=["fused", "reference"])
def test_lazily_conjugated_gradients_step_as_their_values(fused):
    """``p.grad = g.conj()``: the fast path must read the conjugate, not the memory under it
    (torch.optim raises here; adaptlr steps it). Against torch's Adam on the values."""
    gen = torch.Generator().manual_seed(6)
    start = [torch.randn(4, 3, dtype=torch.complex64, generator=gen), torch.randn(1, generator=gen)]
    pa = [t.clone().requires_grad_() for t in start]
    pb = [t.clone().requires_grad_() for t in start]
    ours = adaptlr.Adam(pa, lr=0.01, fused=fused)
    theirs = torch.optim.Adam(pb, lr=0.01, foreach=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FusedFallbackWarning)
        for step in range(10):
            lazy, plain = _lazy_grads(pa, step)
            for p, g in zip(pa, lazy):
                p.grad = g
            for p, g in zip(pb, plain):
                p.grad = g
            ours.step()
            theirs.step()
    for a, b in zip(pa, pb):
        assert rel_err(a.detach(), b.detach()) <= 1e-6


@pytest.mark.parametrize("when", ["from-the-start", "p.data = p.data.conj()"])
def test_a_lazily_conjugated_parameter_falls_back_and_steps_its_values(when):
    """A parameter that is a lazy conjugate: the fast path would update the memory under it as
    if it were the value; it falls back (saying so), also when ``p.data = p.data.conj()``
    makes one at the same address after fused steps. Against torch's Adam on the values."""
    x = torch.randn(4, 3, dtype=torch.complex64, generator=torch.Generator().manual_seed(8))
    a = (x.conj() if when == "from-the-start" else x.clone()).requires_grad_()
    b = x.conj().resolve_conj().requires_grad_() if when == "from-the-start" else x.clone()
    b.requires_grad_()
    ours, theirs = adaptlr.Adam([a], lr=0.01), torch.optim.Adam([b], lr=0.01, foreach=False)
    with pytest.warns(FusedFallbackWarning, match="lazy conjugate"):
        for step in range(10):
            if step == 4 and when != "from-the-start":
                ptr = a.data_ptr()
                with torch.no_grad():
                    a.data = a.data.conj()
                    b.copy_(b.conj())
                assert a.data_ptr() == ptr and a.is_conj()
            gen = torch.Generator().manual_seed(400 + step)
            g = torch.randn(4, 3, dtype=torch.complex64, generator=gen)
            a.grad, b.grad = g, g.clone()
            ours.step()
            theirs.step()
    assert rel_err(a.detach().resolve_conj(), b.detach()) <= 1e-6
