"""What users do around a fused step: state views, state dicts, new groups, moved
parameters, missing gradients, unsupported cases (which fall back and warn once)."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch

import adaptlr
from adaptlr import core
from adaptlr.kernels import FusedFallbackWarning

from ._parity import assert_same, make_params, rel_err, set_grads, step_side_by_side

pytest.importorskip("numba")


def _pair(cls=adaptlr.Adam, **cfg):
    pa, pb = make_params(), make_params()
    return cls(pa, **cfg), cls(pb, **cfg, fused=False), pa, pb


def _steps(opts_params, start, n):
    for step in range(start, start + n):
        for opt, params in opts_params:
            set_grads(params, step)
            opt.step()


def test_state_entries_are_views_of_one_flat_buffer():
    fused, _, pa, _ = _pair(lr=0.01)
    _steps([(fused, pa)], 0, 12)
    bases = {fused.state[p]["exp_avg"].untyped_storage().data_ptr() for p in pa}
    assert len(bases) == 1
    assert all(fused.state[p]["exp_avg"].shape == p.shape for p in pa)
    assert fused.state[pa[0]]["step"].dim() == 0


def test_state_dict_round_trip_and_load_into_live_optimizer():
    fused, ref, pa, pb = _pair(lr=0.01, amsgrad=True)
    _steps([(fused, pa), (ref, pb)], 0, 15)
    saved = fused.state_dict()
    # a new optimizer over copies of the parameters, resumed from the state dict
    pc = [p.detach().clone().requires_grad_() for p in pa]
    resumed = adaptlr.Adam(pc, lr=0.01, amsgrad=True)
    resumed.load_state_dict(saved)
    # and the live one loads its own state dict back (entries stop being views)
    fused.load_state_dict(fused.state_dict())
    _steps([(fused, pa), (ref, pb), (resumed, pc)], 15, 15)
    assert_same(fused, ref, pa, pb, tol=1e-6)
    for a, c in zip(pa, pc):
        assert torch.equal(a, c)


def test_switching_between_fused_and_reference_steps():
    fused, ref, pa, pb = _pair(cls=adaptlr.NAdam, lr=0.01)
    for step in range(30):
        fused.param_groups[0]["fused"] = False if step % 7 in (3, 4) else None
        _steps([(fused, pa), (ref, pb)], step, 1)
    assert_same(fused, ref, pa, pb, tol=1e-6)


def test_add_param_group_and_replaced_parameter_data():
    fused, ref, pa, pb = _pair(cls=adaptlr.RAdam, lr=0.01)
    extra_a = [torch.randn(6, requires_grad=True)]
    extra_b = [extra_a[0].detach().clone().requires_grad_()]
    _steps([(fused, pa), (ref, pb)], 0, 8)
    fused.add_param_group({"params": extra_a, "lr": 0.02})
    ref.add_param_group({"params": extra_b, "lr": 0.02})
    # model.to(...)-like: the parameter's data is a new tensor
    with torch.no_grad():
        pa[0].data = pa[0].data.clone()
        pb[0].data = pb[0].data.clone()
    _steps([(fused, pa + extra_a), (ref, pb + extra_b)], 8, 12)
    assert_same(fused, ref, pa, pb, tol=1e-6)
    assert rel_err(extra_a[0].detach(), extra_b[0].detach()) <= 1e-6


def test_zero_grad_set_to_none_and_manual_non_contiguous_gradient():
    fused, ref, pa, pb = _pair(cls=adaptlr.SGD, lr=0.1, momentum=0.9)
    for step in range(10):
        for opt, params in ((fused, pa), (ref, pb)):
            opt.zero_grad(set_to_none=step % 2 == 0)
            gen = torch.Generator().manual_seed(step)
            g = torch.randn(4, 3, generator=gen).t()  # non-contiguous, shape (3, 4)
            params[0].grad = g
            opt.step()
    assert_same(fused, ref, pa, pb, tol=1e-6)


def test_mixed_dtypes_and_complex_in_one_group():
    def params():
        gen = torch.Generator().manual_seed(5)
        return [
            torch.randn(7, generator=gen).requires_grad_(),
            torch.randn(3, 2, dtype=torch.float64, generator=gen).requires_grad_(),
            torch.randn(4, dtype=torch.complex64, generator=gen).requires_grad_(),
        ]

    pa, pb = params(), params()
    fused, ref = adaptlr.AdamW(pa, lr=0.01), adaptlr.AdamW(pb, lr=0.01, fused=False)
    step_side_by_side(
        fused, ref, pa, pb, 20, lambda p, gen, _: torch.randn(p.shape, dtype=p.dtype, generator=gen)
    )
    for a, b in zip(pa, pb):
        assert rel_err(a.detach(), b.detach()) <= 1e-6


class _Branchy(core.Part):
    """A part whose apply branches in Python on a coefficient: cannot be traced."""

    def coefficients(self, ctx, scalars):
        return {"big": float(ctx.step > 2)}, {}

    def apply(self, u, p, buf, c, ops):
        return (2 * u if c["big"] else u), {}


def test_untraceable_part_falls_back_with_a_warning():
    chain = core.chain(_Branchy(), core.scale_by_learning_rate(0.1))
    pa, pb = make_params(), make_params()
    fused, ref = adaptlr.Optimizer(pa, chain), adaptlr.Optimizer(pb, chain, fused=False)
    with pytest.warns(FusedFallbackWarning, match="branches"):
        _steps([(fused, pa), (ref, pb)], 0, 5)
    for a, b in zip(pa, pb):
        assert torch.equal(a, b)


def test_the_fallback_warning_names_the_users_step_line():
    chain = core.chain(_Branchy(), core.scale_by_learning_rate(0.1))
    params = make_params()
    opt = adaptlr.Optimizer(params, chain)
    set_grads(params, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        opt.step()
    found = [w for w in caught if issubclass(w.category, FusedFallbackWarning)]
    assert len(found) == 1
    assert (found[0].filename, found[0].lineno) == (__file__, line)


def test_numba_jit_disabled_falls_back_with_a_warning(monkeypatch):
    """``NUMBA_DISABLE_JIT=1`` turns numba's decorators into plain Python, which cannot run
    the kernels: the reference path runs, after a warning saying why."""
    import numba

    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    fused, ref, pa, pb = _pair(lr=0.01)
    with pytest.warns(FusedFallbackWarning, match="NUMBA_DISABLE_JIT"):
        _steps([(fused, pa), (ref, pb)], 0, 3)
    for a, b in zip(pa, pb):
        assert torch.equal(a, b)


def test_effective_lr_reads_the_flat_state():
    fused, ref, pa, pb = _pair(lr=0.01)
    _steps([(fused, pa), (ref, pb)], 0, 5)
    for ea, eb in zip(fused.effective_lr()[0], ref.effective_lr()[0]):
        assert (ea is None) == (eb is None)
        if ea is not None:
            assert rel_err(ea, eb) <= 1e-5


def test_parameter_moved_to_another_dtype_rebuilds_the_plan():
    fused, ref, pa, pb = _pair(cls=adaptlr.SGD, lr=0.1, momentum=0.9)
    _steps([(fused, pa), (ref, pb)], 0, 5)
    for params, opt in ((pa, fused), (pb, ref)):
        with torch.no_grad():
            params[1].data = params[1].data.double()
        buf = opt.state[params[1]]["momentum_buffer"]
        opt.state[params[1]]["momentum_buffer"] = buf.double()
    _steps([(fused, pa), (ref, pb)], 5, 5)
    assert_same(fused, ref, pa, pb, tol=1e-6)
    assert fused.state[pa[1]]["momentum_buffer"].dtype == torch.float64


def test_loading_a_state_dict_frees_the_old_flat_buffers():
    fused, _, pa, _ = _pair(lr=0.01)
    _steps([(fused, pa)], 0, 3)
    fused.load_state_dict(fused.state_dict())  # new group dicts
    _steps([(fused, pa)], 3, 2)
    plans = fused._fast_path.plans
    assert len(plans) == 1
    assert next(iter(plans.values())).group is fused.param_groups[0]


def test_a_scheduler_changing_lr_every_step_reuses_one_program():
    """Only a coefficient changes: one traced program and one compiled kernel, not one a step."""
    import adaptlr
    from adaptlr.kernels import backends
    from adaptlr.kernels import programs as traced

    w = torch.nn.Parameter(torch.zeros(64))
    opt = adaptlr.Adam([w], lr=0.1, betas=(0.85, 0.995))  # a chain no other test traces
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.99)
    w.grad = torch.ones(64)
    opt.step()
    sched.step()
    programs, compiled = len(traced._by_signature), len(backends._by_program)
    for _ in range(20):
        w.grad = torch.ones(64)
        opt.step()
        sched.step()
    assert len(traced._by_signature) == programs
    assert len(backends._by_program) == compiled


@pytest.mark.parametrize("grads", ["contiguous", "as-the-parameter"])
def test_parameter_made_non_contiguous_at_the_same_address(grads):
    """``p.data = p.data.t()``: the same address, other strides. The fast path reads
    parameters by address, so it must notice, and still match the reference path: with
    contiguous gradients (read through copies), and with gradients laid out as the parameter
    (as autograd makes them: stepped in place)."""

    def params():
        gen = torch.Generator().manual_seed(7)
        return [torch.randn(3, 3, generator=gen).requires_grad_(), torch.randn(5, generator=gen)]

    pa, pb = params(), params()
    for p in pa + pb:
        p.requires_grad_()
    fused, ref = adaptlr.Adam(pa, lr=0.01), adaptlr.Adam(pb, lr=0.01, fused=False)
    for step in range(12):
        if step == 5:
            for ps in (pa, pb):
                ptr = ps[0].data_ptr()
                with torch.no_grad():
                    ps[0].data = ps[0].data.t()
                assert ps[0].data_ptr() == ptr and not ps[0].is_contiguous()
        for opt, ps in ((fused, pa), (ref, pb)):
            gen = torch.Generator().manual_seed(200 + step)
            for p in ps:
                g = torch.randn(p.shape, generator=gen)
                p.grad = g if grads == "contiguous" else torch.empty_like(p).copy_(g)
            with warnings.catch_warnings():
                warnings.simplefilter("error", FusedFallbackWarning)
                opt.step()
    for a, b in zip(pa, pb):
        assert rel_err(a.detach(), b.detach()) <= 1e-6


def _replace_exp_avg(how, opt, p):
    """Give ``p`` a new first moment (zeros) the way a user might, in place in its dict."""
    st = opt.state[p]
    z = torch.zeros_like(st["exp_avg"])
    if how == "setitem":
        st["exp_avg"] = z
    elif how == "update":
        st.update(exp_avg=z)
    elif how == "ior":
        st |= {"exp_avg": z}
    elif how == "pop-setdefault":
        st.pop("exp_avg")
        st.setdefault("exp_avg", z)
    elif how == "del-setitem":
        del st["exp_avg"]
        st["exp_avg"] = z
    elif how == "clear-update":
        kept = dict(st)
        st.clear()
        st.update(kept, exp_avg=z)
    elif how == "plain-dict-then-setitem":
        # the dict itself replaced by a plain copy holding the same views; changed later
        opt.state[p] = dict(st)
        return lambda: opt.state[p].__setitem__("exp_avg", z)
    return None


@pytest.mark.parametrize(
    "how",
    [
        "setitem",
        "update",
        "ior",
        "pop-setdefault",
        "del-setitem",
        "clear-update",
        "plain-dict-then-setitem",
    ],
)
def test_a_state_entry_replaced_in_its_dict_is_what_the_next_step_uses(how):
    """A step skips comparing the state entries while their dicts say nothing changed: every
    way of changing a dict must say so (else the kernel would go on updating the old flat
    buffer and the user's tensor would be ignored)."""
    fused, ref, pa, pb = _pair(lr=0.01)
    _steps([(fused, pa), (ref, pb)], 0, 4)
    later = [_replace_exp_avg(how, opt, ps[1]) for opt, ps in ((fused, pa), (ref, pb))]
    _steps([(fused, pa), (ref, pb)], 4, 2)
    for change in later:
        if change is not None:
            change()
    _steps([(fused, pa), (ref, pb)], 6, 3)
    assert_same(fused, ref, pa, pb, tol=1e-6)
    # the reference moments differ from the untouched run's: the replacement mattered
    untouched, _, pc, _ = _pair(lr=0.01)
    _steps([(untouched, pc)], 0, 9)
    assert rel_err(fused.state[pa[1]]["exp_avg"], untouched.state[pc[1]]["exp_avg"]) > 1e-3


def test_state_dict_holds_plain_dicts_and_loads_with_weights_only(tmp_path):
    import io

    fused, _, pa, _ = _pair(lr=0.01)
    _steps([(fused, pa)], 0, 3)
    sd = fused.state_dict()
    assert all(type(v) is dict for v in sd["state"].values())
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    assert loaded["state"]
    for i, st in loaded["state"].items():
        assert torch.equal(st["exp_avg"], fused.state[pa[i]]["exp_avg"])


def test_a_deep_copied_optimizer_steps_as_the_original_and_sees_its_own_changes():
    import copy

    fused, ref, pa, pb = _pair(lr=0.01)
    _steps([(fused, pa), (ref, pb)], 0, 3)
    twin = copy.deepcopy(fused)  # its parameters are copies too, in twin.param_groups
    pt = twin.param_groups[0]["params"]
    _steps([(fused, pa), (ref, pb), (twin, pt)], 3, 3)
    for a, b in zip(pa, pt):
        assert torch.equal(a, b)
    for opt, ps in ((twin, pt), (ref, pb)):
        opt.state[ps[2]]["exp_avg"] = torch.zeros_like(opt.state[ps[2]]["exp_avg"])
    _steps([(twin, pt), (ref, pb)], 6, 3)
    for a, b in zip(pt, pb):
        assert rel_err(a.detach(), b.detach()) <= 1e-6


def test_a_pickled_optimizer_steps_as_the_original():
    import pickle

    fused, ref, pa, pb = _pair(lr=0.01)
    _steps([(fused, pa), (ref, pb)], 0, 3)
    twin = pickle.loads(pickle.dumps(fused))
    pt = twin.param_groups[0]["params"]
    _steps([(fused, pa), (twin, pt)], 3, 3)
    for a, b in zip(pa, pt):
        assert torch.equal(a, b)


@pytest.mark.parametrize("when", ["before the first step", "after a load"])
def test_a_state_dict_held_across_a_fused_step_stays_the_optimizers(when):
    """The fast path needs watched state dicts; they are made where the state is made, so a
    dict a user holds is never replaced under them by the plan (it would go stale)."""
    fused, ref, pa, pb = _pair(lr=0.01)
    if when == "after a load":
        _steps([(fused, pa), (ref, pb)], 0, 3)
        fused.load_state_dict(fused.state_dict())
        ref.load_state_dict(ref.state_dict())
    held = fused.state[pa[0]]
    _steps([(fused, pa), (ref, pb)], 3, 2)
    assert fused.state[pa[0]] is held
    assert torch.equal(held["exp_avg"], ref.state[pb[0]]["exp_avg"])


def test_scalar_state_keeps_each_parameters_dtype_through_a_load():
    """``load_state_dict`` casts scalar state (NAdam's ``mu_product``) to a real parameter's
    dtype and leaves a complex one's float32, as torch.optim does; the fast path holds those
    scalars flat per bucket, and must keep each parameter's dtype (it gave the complex one the
    real one's float64)."""

    def params():
        gen = torch.Generator().manual_seed(9)
        return [
            torch.randn(3, dtype=torch.float64, generator=gen).requires_grad_(),
            torch.randn(3, dtype=torch.complex128, generator=gen).requires_grad_(),
        ]

    pa, pb, pt = params(), params(), params()
    opts = [
        adaptlr.NAdam(pa, lr=0.01),
        adaptlr.NAdam(pb, lr=0.01, fused=False),
        torch.optim.NAdam(pt, lr=0.01, foreach=False),
    ]
    for step in range(8):
        for opt, ps in zip(opts, (pa, pb, pt)):
            if step == 3:
                opt.load_state_dict(opt.state_dict())
            gen = torch.Generator().manual_seed(50 + step)
            for p in ps:
                p.grad = torch.randn(3, dtype=p.dtype, generator=gen)
            opt.step()
    want = [opts[2].state[p]["mu_product"].dtype for p in pt]
    assert want == [torch.float64, torch.float32]  # torch's own behaviour, as described
    for opt, ps in zip(opts[:2], (pa, pb)):
        assert [opt.state[p]["mu_product"].dtype for p in ps] == want
    for a, b in zip(pa, pb):
        assert rel_err(a.detach(), b.detach()) <= 1e-9


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_new_data_of_another_dtype_at_the_same_address(dtype):
    """Freed memory is reused: ``p.data = p.data.double()`` then ``.bfloat16()`` can put the
    new data where the stepped data was (the user-actions state machine hit it: a float32
    kernel stepped bfloat16 data). Made certain here with views of one buffer: the same
    address, another dtype. The fast path must notice, and step as the reference path."""

    def param():
        buf = torch.zeros(64, dtype=torch.uint8)  # (its bytes past the parameter stay 0)
        p = torch.empty(0).requires_grad_()
        with torch.no_grad():
            p.data = buf[:16].view(torch.float32).copy_(torch.tensor([1.0, -2.0, 3.0, 0.5]))
        return p, buf

    (pa, bufa), (pb, bufb) = param(), param()
    fused, ref = adaptlr.Adam([pa], lr=0.1), adaptlr.Adam([pb], lr=0.1, fused=False)
    for opt, p in ((fused, pa), (ref, pb)):
        for _ in range(3):
            p.grad = torch.ones(4)
            opt.step()
    for p, buf in ((pa, bufa), (pb, bufb)):
        ptr, size = p.data_ptr(), 4 * torch.empty(0, dtype=dtype).element_size()
        with torch.no_grad():
            p.data = buf[:size].view(dtype).copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        assert p.data_ptr() == ptr and p.dtype == dtype and p.shape == (4,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FusedFallbackWarning)
        for opt, p in ((fused, pa), (ref, pb)):
            for _ in range(3):
                p.grad = torch.ones(4, dtype=dtype)
                opt.step()
    assert torch.equal(pa, pb)
    assert torch.equal(bufa, bufb)  # nothing written past the parameter either


@pytest.mark.parametrize("n", [2, 3])
def test_new_data_of_another_size_at_the_same_address(n):
    """``p.data = p.data[:n]`` (or a resize): the same address, fewer elements. The fast path
    must not step the old extent (it wrote past the parameter); the reference path's error
    (the state no longer fits) is what both give."""
    pa, pb = (torch.tensor([1.0, -2.0, 3.0, 0.5], requires_grad=True) for _ in range(2))
    fused, ref = adaptlr.Adam([pa], lr=0.1), adaptlr.Adam([pb], lr=0.1, fused=False)
    for opt, p in ((fused, pa), (ref, pb)):
        for _ in range(3):
            p.grad = torch.ones(4)
            opt.step()
    whole = [p.detach().clone() for p in (pa, pb)]
    bases = [p.data for p in (pa, pb)]  # the old data, which still holds all 4 elements
    for p in (pa, pb):
        with torch.no_grad():
            p.data = p.data[:n]
    for opt, p in ((ref, pb), (fused, pa)):
        p.grad = torch.ones(n)
        with warnings.catch_warnings(), pytest.raises(RuntimeError, match="size"):
            warnings.simplefilter("ignore", FusedFallbackWarning)
            opt.step()
    for base, before in zip(bases, whole):
        assert torch.equal(base, before)  # nothing changed, past the parameter or in it


def _read_by_hand(params):
    """What a step must know of a group, read here one tensor at a time."""
    with_grad = [p for p in params if p.grad is not None]
    return (
        with_grad,
        [p.grad for p in with_grad],
        [p.data_ptr() for p in with_grad],
        [p.grad.data_ptr() for p in with_grad],
        [p.dtype for p in with_grad],
        [p.numel() for p in with_grad],
        [(i, p.stride()) for i, p in enumerate(with_grad) if not p.is_contiguous()],
    )


def _change(kind, ps):
    with torch.no_grad():
        if kind == "a gradient None":
            ps[3].grad = None
        elif kind == "a parameter moved":
            ps[1].data = ps[1].data.clone()
        elif kind == "another dtype at the same address":
            ps[0].data = ps[0].data.view(torch.complex64)  # float64's size: as many elements
        elif kind == "fewer elements at the same address":
            ps[2].data = ps[2].data.view(-1)[:1]
            ps[2].grad = torch.ones_like(ps[2])
        elif kind == "a transposed parameter and gradient":
            ps[4].data = ps[4].data.t()
            ps[4].grad = ps[4].grad.t()
        elif kind == "a gradient laid out otherwise":
            ps[4].grad = ps[4].grad.t().contiguous().t()


@pytest.mark.parametrize(
    "kind",
    [
        "nothing",
        "a gradient None",
        "a parameter moved",
        "another dtype at the same address",
        "fewer elements at the same address",
        "a transposed parameter and gradient",
        "a gradient laid out otherwise",
    ],
)
def test_gather_against_the_last_step_reads_what_the_tensors_hold(kind):
    """The usual step compares each parameter with the last step's active set as it reads it
    (``gather(params, expect)``); whatever changed since, what it returns must be what the
    tensors hold now, read here by hand, and the same as the full loop's."""
    from adaptlr.kernels.gather import gather

    ps = [torch.randn(5, 3, dtype=torch.float64).requires_grad_()]
    ps += [torch.randn(5, 3).requires_grad_() for _ in range(5)]
    opt = adaptlr.Adam(ps, lr=0.01)
    for p in ps:
        p.grad = torch.randn_like(p)
    opt.step()
    group = opt.param_groups[0]
    expect = opt._fast_path.last_active(group)
    assert expect is not None and len(expect.params) == len(ps)
    _change(kind, ps)
    if kind == "nothing":  # the usual step: compared as read, the last step's lists kept
        assert gather(group["params"], expect).pptrs is expect.pptrs
    for found in (gather(group["params"], expect), gather(group["params"])):
        got = (
            found.params,
            found.grads,
            found.pptrs,
            found.gptrs,
            found.dtypes,
            found.numels,
            found.strided,
        )
        want = _read_by_hand(group["params"])
        if kind == "a gradient laid out otherwise":  # strides differ: not dense, addresses unread
            assert not found.dense and found.pptrs is None
            got, want = got[:2], want[:2]
        else:
            assert found.dense
        for g, w in zip(got, want):
            assert len(g) == len(w)
            assert all(a is b or a == b for a, b in zip(g, w))
