"""Property tests (Hypothesis) over every optimizer of the registry and every config of it.

Drawn: the optimizer and one of its ``info.all_configs`` (with its lr scaled by 0.1, 1 or 3),
1 to 3 parameters of shapes including scalars and zero-size tensors, the parameter dtype
(float32, float64, bfloat16, float16; optionally a ``state_dtype=`` override) and, per step
and tensor, the kind of gradient: ordinary (N(0, 1)), huge (1e30, or the largest order the
dtype holds), tiny (1e-30), zero, or a mix of those elementwise. Properties:

- parameters stay finite when the gradients are finite (with the honest exceptions listed at
  :func:`may_overflow`);
- parameters keep their shape, dtype and identity; every state buffer has the parameter's
  shape and the documented dtype (``state_dtype``, else float32 for bf16/fp16 parameters,
  else the parameter's), scalar state is 0-d;
- the fused path (default) equals the reference path (``fused=False``) over 10 steps,
  parameters and state: float32/float64 to 1e-6 relative (elementwise, with an absolute floor
  of 1e-6 times the tensor's largest magnitude so that elements near zero are judged on the
  tensor's scale), and the fused kernel must really have run (no ``FusedFallbackWarning``)
  where numba is installed; bf16/fp16 parameters may make the fused path fall back with a
  ``FusedFallbackWarning`` (not a failure: then both ran the same code and must be equal),
  and where a fused low-precision kernel runs, parameters agree to 2 ulps of their dtype and
  the float32 state to 1e-5 relative;
- a step where every gradient is ``None`` changes nothing (parameters, state, group counters),
  and a parameter whose gradient is ``None`` is not touched while the others step.
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from adaptlr.core.base import LOW_PRECISION, default_state_dtype, scalar_dtype
from adaptlr.kernels import FusedFallbackWarning, backends
from adaptlr.optimizers.registry import REGISTRY

CASES = [(name, i) for name, info in sorted(REGISTRY.items()) for i in range(len(info.all_configs))]
SHAPES = [(), (0,), (2, 0, 3), (1,), (5,), (3, 4), (2, 1, 3)]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
KINDS = ["normal", "huge", "tiny", "zero", "mixed"]
STEPS = 10

PROPS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NUMBA = backends.numba_available()


def huge_for(dtype: torch.dtype) -> float:
    """1e30, or for float16 (largest finite 65504) the largest order that stays finite."""
    return min(1e30, torch.finfo(dtype).max / 4)


@st.composite
def setups(draw, dtypes=DTYPES):
    name, ci = draw(st.sampled_from(CASES))
    info = REGISTRY[name]
    cfg = dict(info.all_configs[ci])
    cfg["lr"] = cfg["lr"] * draw(st.sampled_from([0.1, 1.0, 3.0]))
    dtype = draw(st.sampled_from(dtypes))
    # state_dtype: mostly the default; sometimes float32/float64 explicitly (and, for the
    # low-precision dtypes, the parameter's own dtype)
    choices = [None, None, None, torch.float32, torch.float64]
    if dtype in LOW_PRECISION:
        choices.append(dtype)
    state_dtype = draw(st.sampled_from(choices))
    shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=3))
    kinds = draw(
        st.lists(
            st.lists(st.sampled_from(KINDS), min_size=len(shapes), max_size=len(shapes)),
            min_size=STEPS,
            max_size=STEPS,
        )
    )
    seed = draw(st.integers(0, 2**31 - 1))
    return name, cfg, dtype, state_dtype, shapes, kinds, seed


def make_params(shapes, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]


def make_grads(shapes, dtype, kinds_at_step, gen):
    """Finite gradients of the drawn kinds, built in float64 and cast to ``dtype``."""
    huge = huge_for(dtype)
    out = []
    for shape, kind in zip(shapes, kinds_at_step):
        g = torch.randn(shape, generator=gen, dtype=torch.float64)
        if kind == "huge":
            g = g.clamp(-3, 3) * huge / 3
        elif kind == "tiny":
            g = g * 1e-30
        elif kind == "zero":
            g = torch.zeros(shape, dtype=torch.float64)
        elif kind == "mixed":
            scale = torch.tensor([1.0, huge / 3, 1e-30, 0.0], dtype=torch.float64)
            pick = torch.randint(0, 4, shape, generator=gen)
            g = g.clamp(-3, 3) * scale[pick]
        g = g.to(dtype)
        assert torch.isfinite(g).all()
        out.append(g)
    return out


def start(cfg, dtype, state_dtype, shapes, seed, fused):
    """Fresh parameters, the optimizer's keyword arguments and the gradients' generator."""
    params = [p.requires_grad_() for p in make_params(shapes, dtype, seed)]
    kw = dict(cfg, state_dtype=state_dtype)
    if fused is False:
        kw["fused"] = False
    return params, kw, torch.Generator().manual_seed(seed + 1)


def run(name, cfg, dtype, state_dtype, shapes, kinds, seed, fused):
    """``STEPS`` steps; returns the parameters, the optimizer and the warnings raised."""
    info = REGISTRY[name]
    params, kw, gen = start(cfg, dtype, state_dtype, shapes, seed, fused)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = info.cls(params, **kw)
        for step in range(STEPS):
            for p, g in zip(params, make_grads(shapes, dtype, kinds[step], gen)):
                p.grad = g
            opt.step()
    return params, opt, caught


def state_dtype_of(dtype, state_dtype):
    return state_dtype or default_state_dtype(dtype)


def may_overflow(name, cfg, dtype, state_dtype, kinds) -> bool:
    """Where finite gradients may legitimately give non-finite parameters.

    - float16 parameters (largest finite 65504) with optimizers whose step is not normalised
      by a magnitude (SGD: the step is lr·g amplified by momentum up to 1/(1 - momentum)):
      with gradients of ~2e4 the exact parameter leaves float16's range within 10 steps, so
      inf is the correctly rounded result, not a bug.
    - a float32 second-moment buffer (the default for fp32, bf16 and fp16 parameters) and
      |g| = 1e30: g² = 1e60 is not a float32. Adam, NAdam, RAdam, AMSGrad, Adagrad and plain
      RMSprop then hold inf in the buffer and divide by it (a zero step, as torch.optim does),
      but centered RMSprop forms square_avg − grad_avg² = inf − inf = NaN (torch.optim.RMSprop
      does exactly the same). RootMeanSquare keeps inf too (its running mean is written
      (1 − 1/t)·v + g²/t: test_rms_huge_gradients_with_float32_state).
    """
    sdt = state_dtype_of(dtype, state_dtype)
    huge = any(k in ("huge", "mixed") for row in kinds for k in row)
    if not huge:
        return False
    if dtype == torch.float16 and name == "sgd":
        return True
    # g² is formed in the state's dtype (float32 for float16 parameters): float32 overflows
    # for |g| > 1.8e19
    if huge_for(dtype) ** 2 > torch.finfo(sdt).max:
        if cfg.get("centered"):
            return True
    return False


def low_precision_state_may_fail(dtype, state_dtype) -> bool:
    """float16 *state* (``state_dtype=torch.float16``, an explicit opt-out of the float32
    default, which exists because such moments underflow): eps = 1e-8 or 1e-10 rounds to 0 in
    float16 (smallest subnormal 6e-8), so a zero or underflowed gradient gives 0/(0 + 0) = NaN,
    exactly as torch.optim does for float16 parameters. Finiteness is not promised there."""
    return state_dtype_of(dtype, state_dtype) == torch.float16


def fused_was_taken(dtype, caught) -> bool:
    return not any(issubclass(w.category, FusedFallbackWarning) for w in caught)


def identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape, dtype and values (NaN equal to NaN)."""
    return (
        a.shape == b.shape
        and a.dtype == b.dtype
        and bool(torch.isclose(a, b, rtol=0, atol=0, equal_nan=True).all())
    )


def assert_rel_close(a: torch.Tensor, b: torch.Tensor, rel: float, what: str) -> None:
    a, b = a.detach().double(), b.detach().double()
    assert a.shape == b.shape, what
    if a.numel() == 0:
        return
    both_inf = torch.isinf(a) & torch.isinf(b) & (torch.sign(a) == torch.sign(b))
    both_nan = torch.isnan(a) & torch.isnan(b)
    same = both_inf | both_nan
    fa, fb = a[~same], b[~same]
    if fa.numel() == 0:
        return
    assert torch.isfinite(fa).all() and torch.isfinite(fb).all(), f"{what}: {a} vs {b}"
    floor = rel * float(fb.abs().max())
    err = (fa - fb).abs()
    bound = rel * fb.abs() + floor
    bad = err > bound
    assert not bad.any(), (
        f"{what}: max error {float(err.max()):.3g} (at ref {float(fb[bad][0]):.6g}), "
        f"tolerance {rel:g} relative"
    )


# -- properties ---------------------------------------------------------------------------------
@PROPS
@given(setups())
def test_parameters_stay_finite_and_keep_shape_and_dtype(setup):
    name, cfg, dtype, state_dtype, shapes, kinds, seed = setup
    for fused in (None, False):
        params, opt, _ = run(name, cfg, dtype, state_dtype, shapes, kinds, seed, fused)
        for p, shape in zip(params, shapes):
            assert p.shape == torch.Size(shape)
            assert p.dtype == dtype
            assert p.requires_grad
            if not (
                may_overflow(name, cfg, dtype, state_dtype, kinds)
                or low_precision_state_may_fail(dtype, state_dtype)
            ):
                assert torch.isfinite(p).all(), (name, cfg, dtype, state_dtype, fused, p)
        assert opt.param_groups[0]["applied_steps"] == STEPS


@PROPS
@given(setups())
def test_state_buffers_have_the_param_shape_and_the_documented_dtype(setup):
    name, cfg, dtype, state_dtype, shapes, kinds, seed = setup
    for fused in (False, None):
        params, opt, _ = run(name, cfg, dtype, state_dtype, shapes, kinds, seed, fused)
        t = opt.transform_for(opt.param_groups[0])
        buffers = {s.names[b.name] for s in t.slots for b in s.part.buffers}
        want = state_dtype_of(dtype, state_dtype)
        for p in params:
            st_ = opt.state[p]
            assert set(st_) == set(t.state_keys), (name, sorted(st_))
            for key, value in st_.items():
                if key in buffers:
                    assert value.shape == p.shape, (name, key, value.shape, p.shape)
                    assert value.dtype == want, (name, key, value.dtype, want, fused)
                else:  # step and per-tensor scalars (NAdam's mu_product)
                    assert value.dim() == 0, (name, key)
                    # torch's scalar dtype, unless the part asks for its own (LDoG's float64 G)
                    declared = {
                        s.names[sc.name]: sc.dtype for s in t.slots for sc in s.part.scalars
                    }
                    assert value.dtype == (declared.get(key) or scalar_dtype()), (
                        name,
                        key,
                        value.dtype,
                    )
            assert int(st_["step"]) == STEPS


@PROPS
@given(setups())
def test_fused_path_equals_reference_path(setup):
    name, cfg, dtype, state_dtype, shapes, kinds, seed = setup
    pa, fused, caught = run(name, cfg, dtype, state_dtype, shapes, kinds, seed, None)
    pb, ref, _ = run(name, cfg, dtype, state_dtype, shapes, kinds, seed, False)
    if dtype not in LOW_PRECISION and NUMBA:
        # the equality must not be trivial: float32/float64 really take the fused kernel
        assert fused_was_taken(dtype, caught), [str(w.message) for w in caught]
    rel = rel_state = 1e-6
    if dtype in LOW_PRECISION:
        if fused_was_taken(dtype, caught):
            # a fused low-precision kernel: float32 state may differ by an ulp where torch's CPU
            # sqrt is not correctly rounded (~1e-7, grown over 10 steps), and a parameter may
            # then round to the neighbouring bf16/fp16 value: 2 ulps of the parameter's dtype
            rel, rel_state = 2 * torch.finfo(dtype).eps, 1e-5
        else:
            # fell back with a FusedFallbackWarning (not a failure): the same code ran twice
            rel = rel_state = 0.0
    for i, (a, b) in enumerate(zip(pa, pb)):
        assert a.dtype == b.dtype == dtype
        assert_rel_close(a, b, rel, f"{name} {cfg} {dtype} param {i}")
        sa, sb = fused.state[a], ref.state[b]
        assert set(sa) == set(sb)
        for key in sa:
            assert sa[key].dtype == sb[key].dtype, (name, key)
            assert_rel_close(sa[key], sb[key], rel_state, f"{name} state {key}")


@PROPS
@given(setups(), st.integers(0, 3), st.booleans())
def test_a_step_with_all_none_gradients_changes_nothing(setup, warm, fused_flag):
    name, cfg, dtype, state_dtype, shapes, kinds, seed = setup
    fused = None if fused_flag else False
    info = REGISTRY[name]
    params, kw, gen = start(cfg, dtype, state_dtype, shapes, seed, fused)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FusedFallbackWarning)
        opt = info.cls(params, **kw)
        for step in range(warm):
            for p, g in zip(params, make_grads(shapes, dtype, kinds[step], gen)):
                p.grad = g
            opt.step()
        opt.zero_grad(set_to_none=True)
        before_p = [p.detach().clone() for p in params]
        before_state = {i: copy.deepcopy(dict(opt.state[p])) for i, p in enumerate(params)}
        before_groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        opt.step()
    for a, b in zip(params, before_p):
        assert identical(a.detach(), b)
    for i, p in enumerate(params):
        now = opt.state[p] if p in opt.state else {}
        assert set(now) == set(before_state[i])
        for key, value in before_state[i].items():
            assert identical(now[key], value), key
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    t = opt.transform_for(opt.param_groups[0])
    if t.counts_empty_steps:
        # as their reference packages do (tests/optimizers/test_lr_free_groups.py), the step
        # counts and the group's shared scalars advance; nothing else in the group changes
        assert opt.param_groups[0]["applied_steps"] == warm + 1
        changed = {k for g, b in zip(groups, before_groups) for k in g if g[k] != b.get(k)}
        assert changed <= {"applied_steps", *t.shared_keys}, changed
    else:
        assert groups == before_groups
        assert opt.param_groups[0]["applied_steps"] == warm


@PROPS
@given(setups(), st.booleans())
def test_parameters_without_gradient_are_untouched_while_others_step(setup, fused_flag):
    name, cfg, dtype, state_dtype, shapes, kinds, seed = setup
    assume(len(shapes) >= 2)
    info = REGISTRY[name]
    params, kw, gen = start(cfg, dtype, state_dtype, shapes, seed, None if fused_flag else False)
    frozen = params[0]
    before = frozen.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FusedFallbackWarning)
        opt = info.cls(params, **kw)
        for step in range(3):
            grads = make_grads(shapes, dtype, kinds[step], gen)
            for p, g in zip(params[1:], grads[1:]):
                p.grad = g
            opt.step()
    assert torch.equal(frozen.detach(), before)
    assert len(opt.state.get(frozen, {})) == 0


# -- focused cases found while writing the properties ------------------------------------------
@pytest.mark.skipif(not NUMBA, reason="fused CPU path needs numba")
@pytest.mark.parametrize(
    "pdtype, sdtype", [(torch.float32, torch.float64), (torch.float64, torch.float32)]
)
def test_fused_path_honours_state_dtype(pdtype, sdtype):
    """Regression: the fused path once kept its flat state in the parameter's dtype."""
    import adaptlr

    p = torch.randn(3, dtype=pdtype, requires_grad=True)
    opt = adaptlr.Adam([p], lr=0.1, state_dtype=sdtype)
    p.grad = torch.ones(3, dtype=pdtype)
    opt.step()
    assert opt.state[p]["exp_avg"].dtype == sdtype
    assert opt.state[p]["exp_avg_sq"].dtype == sdtype


@pytest.mark.parametrize("fused", [None, False])
def test_rms_huge_gradients_with_float32_state(fused):
    """g² overflows the float32 state: the running mean holds inf (no inf − inf), a zero step."""
    import adaptlr

    p = torch.zeros(2, requires_grad=True)
    opt = adaptlr.RootMeanSquare([p], lr=0.01, fused=fused)
    for _ in range(3):
        p.grad = torch.full((2,), 1e30)
        opt.step()
    assert torch.isfinite(p).all(), p


def test_huge_gradients_with_float64_state_move_normalised_optimizers_by_about_lr():
    """With float64 state, |g| = 1e30 is ordinary for the normalised rules: steps ≈ lr."""
    for name in ("adam", "adamw", "nadam", "rootmeansquare", "adagrad", "rmsprop"):
        info = REGISTRY[name]
        p = torch.zeros(4, dtype=torch.float64, requires_grad=True)
        opt = info.cls([p], lr=0.01)
        for _ in range(5):
            p.grad = torch.full((4,), 1e30, dtype=torch.float64)
            opt.step()
        assert torch.isfinite(p).all(), name
        # 5 steps of about lr each (RMSprop's first steps are ~10·lr: σ = sqrt(1 − α)·|g|)
        assert 0 < float(-p.detach()[0]) < 5 * 0.01 * 20, (name, p)
        assert math.isfinite(float(opt.state[p]["step"]))


@pytest.mark.parametrize("fused", [None, False], ids=["fused", "reference"])
def test_centered_rmsprop_tiny_gradient_with_wider_state(fused):
    """g² is formed in the float64 state, not in float32 where 1e-30² underflows to 0 while
    grad_avg keeps (1 − α)·1e-30 (then square_avg − grad_avg² < 0 and its root is NaN)."""
    import adaptlr

    p = torch.tensor(0.5, requires_grad=True)
    opt = adaptlr.RMSprop(
        [p], lr=0.001, centered=True, momentum=0.5, state_dtype=torch.float64, fused=fused
    )
    for g in (1e-30, 0.5, -1.0):
        p.grad = torch.tensor(g)
        opt.step()
    assert torch.isfinite(p).all(), p


@pytest.mark.parametrize("fused", [None, False], ids=["fused", "reference"])
@pytest.mark.parametrize("name", ["adam", "rootmeansquare"])
def test_float16_square_fits_float32_state(name, fused):
    """float16 parameters keep float32 state, and g² is formed there: in float16 a gradient of
    300 squares to inf (max 65504), which would stop Adam for good and make RootMeanSquare NaN."""
    p = torch.tensor([0.5], dtype=torch.float16, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FusedFallbackWarning)
        opt = REGISTRY[name].cls([p], lr=0.001, fused=fused)
        for g in (1.0, 300.0, 1.0):
            p.grad = torch.tensor([g], dtype=torch.float16)
            opt.step()
    for key, value in opt.state[p].items():
        assert torch.isfinite(value).all(), (key, value)
    assert torch.isfinite(p).all(), p
    if name == "adam":
        # v_t = β₂·v_{t-1} + (1 − β₂)·g², by hand in float64
        v = 0.0
        for g in (1.0, 300.0, 1.0):
            v = 0.999 * v + 0.001 * g * g
        got = float(opt.state[p]["exp_avg_sq"])
        assert got == pytest.approx(v, rel=1e-6)
