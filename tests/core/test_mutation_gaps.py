"""Tests written for the mutants of ``adaptlr.core`` that the core and equivalence tests let
survive (mutmut, see docs/mutation_testing.md). Each compares against an independent reference:
torch.optim, a torch utility, or a closed form computed here in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch

import adaptlr
from adaptlr import core

STEPS = 25


def _params(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(3, 4), (5,), ()]
    return [torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_() for s in shapes]


def _grads(params: list[torch.Tensor], step: int) -> None:
    gen = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = 0.5 * p.detach() + torch.randn(p.shape, generator=gen, dtype=p.dtype)


# The reference path (``group["fused"] = False``) against torch.optim: the tests of the
# registry run the fast path, whose kernels are traced from the same parts but whose ``ops``
# are symbolic; ``TorchOps`` (AMSGrad's maximum, RAdam's where) is only reached here.
REFERENCE_CASES = [
    ("Adam", {"lr": 0.05, "amsgrad": True}),
    ("Adam", {"lr": 0.05, "amsgrad": True, "maximize": True, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.1}),
    ("NAdam", {"lr": 0.05, "momentum_decay": 0.01}),
    ("RAdam", {"lr": 0.05}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.2}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.2}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
]


@pytest.mark.parametrize(
    "name, cfg", REFERENCE_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(REFERENCE_CASES)]
)
def test_reference_path_matches_torch_optim(name, cfg):
    pa, pb = _params(), _params()
    ours = getattr(adaptlr, name)(pa, **cfg)
    for group in ours.param_groups:
        group["fused"] = False
    theirs = getattr(torch.optim, name)(pb, **cfg, foreach=False)
    for step in range(STEPS):
        _grads(pa, step)
        _grads(pb, step)
        ours.step()
        theirs.step()
    for a, b in zip(pa, pb):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-10, atol=1e-12)
    assert not torch.equal(pa[0].detach(), _params()[0].detach())


# -- TorchOps: every operand combination against torch's own functions ----------------------
X = torch.tensor([-2.0, 0.5, 3.0], dtype=torch.float64)
Y = torch.tensor([1.0, 0.25, 4.0], dtype=torch.float64)


@pytest.mark.parametrize("a, b", [(X, Y), (X, 1.0), (1.0, X), (2.0, -3.0)], ids=str)
def test_torch_ops_maximum_and_minimum(a, b):
    ta = a if isinstance(a, torch.Tensor) else torch.tensor(a, dtype=torch.float64)
    tb = b if isinstance(b, torch.Tensor) else torch.tensor(b, dtype=torch.float64)
    for ours, theirs in [
        (core.TorchOps.maximum, torch.maximum),
        (core.TorchOps.minimum, torch.minimum),
    ]:
        out = ours(a, b)
        expected = theirs(*torch.broadcast_tensors(ta, tb))
        assert torch.equal(torch.as_tensor(out, dtype=torch.float64), expected)


def test_torch_ops_where_sqrt_abs():
    cond = X > 0
    assert torch.equal(core.TorchOps.where(cond, X, Y), torch.where(cond, X, Y))
    assert torch.equal(core.TorchOps.where(cond, X, 7.0), torch.where(cond, X, 7.0))
    assert core.TorchOps.where(True, 1.5, 2.5) == 1.5
    assert core.TorchOps.where(False, 1.5, 2.5) == 2.5
    assert torch.equal(core.TorchOps.sqrt(Y), torch.sqrt(Y))
    assert core.TorchOps.sqrt(6.25) == 2.5
    assert torch.equal(core.TorchOps.abs(X), torch.tensor([2.0, 0.5, 3.0], dtype=X.dtype))
    assert core.TorchOps.abs(-1.5) == 1.5


# -- scalings -------------------------------------------------------------------------------
def test_scale_multiplies():
    t = core.chain(core.scale(3.0))
    g, p = [X.clone()], [torch.zeros(3, dtype=torch.float64)]
    u, _ = t.update(g, t.init(p), p)
    assert torch.equal(u[0], 3.0 * X)


def _clip(max_norm: float, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    t = core.chain(core.clip_by_global_norm(max_norm))
    params = [torch.zeros_like(g) for g in grads]
    u, _ = t.update(grads, t.init(params), params)
    return u


def _torch_clip(max_norm: float, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    ps = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(ps, grads):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(ps, max_norm)
    return [p.grad for p in ps]


def test_clip_by_global_norm_leaves_small_updates_alone():
    grads = [X.clone(), Y.clone()]  # joint norm about 5.9, far below the limit
    for a, g in zip(_clip(100.0, grads), grads):
        assert torch.equal(a, g)


def test_clip_by_global_norm_adds_torch_epsilon_to_a_tiny_norm():
    """torch divides by ``norm + 1e-6``: visible where the norm is itself near 1e-6."""
    grads = [1e-6 * X, 1e-6 * Y]
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
    for a, b, g in zip(_clip(1e-7, grads), _torch_clip(1e-7, grads), grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
        torch.testing.assert_close(a, g * (1e-7 / (norm + 1e-6)), rtol=1e-12, atol=0)


@dataclass(frozen=True, repr=False)
class _NormProbe(core.Part):
    """A part that sums u·u over its group (a global norm) and records the norm it is given."""

    seen: list = field(default_factory=list, compare=False)
    sums = (core.Sum("sq", "group"),)

    def coefficients(self, ctx, scalars):
        if ctx.sums is not None:  # (the second call, with the totals)
            self.seen.append(math.sqrt(ctx.sums["sq"]))
        return {}, {}

    def sum_terms(self, u, p, buf, c, ops):
        return {"sq": u * u}

    def apply(self, u, p, buf, c, ops):
        return u, {}


def test_global_norm_of_empty_tensors_is_zero():
    probe = _NormProbe()
    t = core.chain(probe)
    params = [torch.zeros(0, dtype=torch.float64), torch.zeros(2, 0, dtype=torch.float64)]
    u, _ = t.update([p.clone() for p in params], t.init(params), params)
    assert [x.shape for x in u] == [p.shape for p in params]
    assert probe.seen == [0.0, 0.0]


def test_global_norm_given_to_a_part_is_the_joint_norm():
    probe = _NormProbe()
    t = core.chain(probe)
    grads = [X.clone(), torch.zeros(0, dtype=torch.float64), Y.clone()]
    params = [torch.zeros_like(g) for g in grads]
    t.update(grads, t.init(params), params)
    expected = math.sqrt(float((X * X).sum() + (Y * Y).sum()))
    assert probe.seen == pytest.approx([expected] * 3, rel=1e-15)


# -- η_t/σ_t, the one definition (Transform.effective_lr) against closed forms ----------------
def _steps(t: core.Transform, grads: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    p = [torch.zeros_like(grads[0])]
    state = t.init(p)
    for count, g in enumerate(grads):
        u, state = t.update([g], state, p, count=count)
        p = [p[0] + u[0]]
    return state[0]


GS = [
    torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64),
    torch.tensor([1.5, 0.25, -1.0], dtype=torch.float64),
    torch.tensor([-0.5, 1.0, 2.0], dtype=torch.float64),
]


def test_effective_lr_adagrad_with_lr_decay():
    lr, decay, eps, s0 = 0.1, 0.3, 1e-3, 0.2
    t = core.chain(
        core.sum_sq(eps=eps, initial_accumulator_value=s0),
        core.scale_by_lr_decay(decay),
        core.scale_by_learning_rate(lr),
    )
    state = _steps(t, GS)
    total = s0 + sum(g * g for g in GS)
    expected = (lr / (1 + (len(GS) - 1) * decay)) / (torch.sqrt(total) + eps)
    torch.testing.assert_close(t.effective_lr_one(state, len(GS)), expected, rtol=1e-14, atol=0)


def test_effective_lr_adam_is_lr_over_debiased_root():
    lr, b1, b2, eps = 0.01, 0.9, 0.99, 1e-3
    t = core.chain(
        core.rule(core.ema(b1), core.ema_sq(b2, eps=eps, debias=True)),
        core.scale_by_learning_rate(lr),
    )
    state = _steps(t, GS)
    v = sum((1 - b2) * b2 ** (len(GS) - 1 - k) * g * g for k, g in enumerate(GS))
    expected = lr / (torch.sqrt(v) / math.sqrt(1 - b2 ** len(GS)) + eps)
    torch.testing.assert_close(t.effective_lr_one(state, len(GS)), expected, rtol=1e-12, atol=0)


def test_effective_lr_schedule_is_read_at_the_last_steps_count():
    """The last update used count ``len(GS) - 1``: the schedule's value there."""
    t = core.chain(core.mean_sq(eps=0.0), core.scale_by_learning_rate(lambda k: 0.1 * (k + 1)))
    state = _steps(t, GS)
    rms = torch.sqrt(sum(g * g for g in GS) / len(GS))
    expected = 0.1 * len(GS) / rms
    torch.testing.assert_close(t.effective_lr_one(state, len(GS)), expected, rtol=1e-14, atol=0)


def test_effective_lr_is_none_before_a_step_and_without_a_magnitude():
    t = core.chain(core.mean_sq(), core.scale_by_learning_rate(0.1))
    p = [torch.zeros(3, dtype=torch.float64)]
    assert t.effective_lr_one(t.init(p)[0], 0) is None
    sgd = core.chain(core.momentum(0.9), core.scale_by_learning_rate(0.1))
    assert sgd.effective_lr_one(_steps(sgd, GS), len(GS)) is None


def test_effective_lr_of_radam_in_warm_up_is_lr_everywhere():
    """RAdam before ρ_t > 5: σ = 1 independent of the state, so η_t/σ_t is η at every element."""
    t = core.chain(
        core.rule(core.ema(0.9), core.rectified(0.999)), core.scale_by_learning_rate(0.3)
    )
    state = _steps(t, GS)
    out = t.effective_lr_one(state, len(GS))
    assert torch.equal(out, torch.full((3,), 0.3, dtype=torch.float64))


# -- the functional API's arguments ---------------------------------------------------------
def test_update_evaluates_schedules_at_count_zero_by_default():
    t = core.chain(core.scale_by_learning_rate(lambda k: 0.5 if k == 0 else 7.0))
    g, p = [X.clone()], [torch.zeros(3, dtype=torch.float64)]
    u, _ = t.update(g, t.init(p), p)
    assert torch.equal(u[0], -0.5 * X)


def test_init_refuses_a_tensor_or_a_sequence_of_non_tensors():
    t = core.chain(core.ema(0.9))
    for bad in (torch.zeros(3), torch.zeros(()), 5, [1.0, 2.0], [torch.zeros(2), "w"]):
        with pytest.raises(TypeError, match="params"):
            t.init(bad)


def test_update_refuses_mismatched_lengths_and_a_bad_count():
    t = core.chain(core.ema(0.9))
    p = [torch.zeros(3, dtype=torch.float64)]
    state = t.init(p)
    with pytest.raises(ValueError, match="same length"):
        t.update([X, Y], state, p)
    with pytest.raises(ValueError, match=r"gradient 0 has shape \(2,\), its parameter \(3,\)"):
        t.update([X[:2]], state, p)
    for bad in (-1, 1.5, True):
        with pytest.raises((TypeError, ValueError), match="count"):
            t.update([X], state, p, count=bad)


@pytest.mark.parametrize("name", ["Adam", "NAdam", "RMSprop"])
def test_reference_path_complex_parameters_match_torch_optim(name):
    gen = torch.Generator().manual_seed(3)
    pa = [torch.randn(4, 3, dtype=torch.complex128, generator=gen).requires_grad_()]
    pb = [pa[0].detach().clone().requires_grad_()]
    cfg = {"lr": 0.05, "weight_decay": 0.1}
    ours = getattr(adaptlr, name)(pa, **cfg)
    ours.param_groups[0]["fused"] = False
    theirs = getattr(torch.optim, name)(pb, **cfg, foreach=False)
    for _ in range(10):
        g = torch.randn(4, 3, dtype=torch.complex128, generator=gen)
        pa[0].grad, pb[0].grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(pa[0].detach(), pb[0].detach(), rtol=1e-10, atol=1e-12)


def test_update_keeps_the_dtype_of_step_and_scalar_state():
    """State loaded from elsewhere (float64 ``step`` and ``mu_product``) keeps its dtype."""
    t = core.chain(core.nesterov_ema(0.9))
    p = [torch.zeros(3, dtype=torch.float64)]
    state = t.init(p)
    state[0]["step"] = torch.tensor(0.0, dtype=torch.float64)
    state[0]["mu_product"] = torch.tensor(1.0, dtype=torch.float64)
    _, new = t.update([X], state, p)
    assert new[0]["step"].dtype == torch.float64 and float(new[0]["step"]) == 1.0
    assert new[0]["mu_product"].dtype == torch.float64
    mu = 0.9 * (1.0 - 0.5 * 0.96 ** (1 * 4e-3))
    assert float(new[0]["mu_product"]) == pytest.approx(mu, rel=1e-6)  # formed in float32


def test_a_low_precision_gradient_is_widened_to_its_state_first():
    """float16 gradient, float32 state: g² = 9e4 overflows float16 but not the state's float32,
    so σ = sqrt(0.1·g²) and u = g/σ = 1/sqrt(0.1), returned in the gradient's dtype."""
    t = core.chain(core.ema_sq(0.9, eps=0.0))
    p = [torch.zeros(2, dtype=torch.float16)]
    state = t.init(p)
    assert state[0]["exp_avg_sq"].dtype == torch.float32
    g = torch.tensor([300.0, -300.0], dtype=torch.float16)
    u, new = t.update([g], state, p)
    assert u[0].dtype == torch.float16
    expected = torch.tensor([1.0, -1.0], dtype=torch.float64) / math.sqrt(0.1)
    assert torch.equal(u[0], expected.to(torch.float16))
    assert torch.equal(new[0]["exp_avg_sq"], torch.full((2,), 9000.0, dtype=torch.float32))


@dataclass(frozen=True, repr=False)
class _Constant(core.Part):
    """A part whose update and buffer are plain numbers (allowed: ``apply`` may return them)."""

    buffers = (core.Buffer("level"),)

    def apply(self, u, p, buf, c, ops):
        return 0.25, {"level": 2.0}


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_numbers_returned_by_apply_become_tensors_like_their_reference(dtype):
    t = core.chain(_Constant())
    p = [torch.zeros(2, 3, dtype=dtype)]
    u, new = t.update([torch.ones(2, 3, dtype=dtype)], t.init(p), p)
    real = torch.float32
    if dtype.is_complex:
        expected_u = torch.complex(torch.full((2, 3), 0.25), torch.full((2, 3), 0.25))
        expected_level = torch.complex(torch.full((2, 3), 2.0), torch.full((2, 3), 2.0))
    else:
        expected_u, expected_level = torch.full((2, 3), 0.25, dtype=real), torch.full((2, 3), 2.0)
    assert u[0].dtype == dtype and torch.equal(u[0], expected_u)
    assert new[0]["level"].dtype == dtype and torch.equal(new[0]["level"], expected_level)


# -- parts alone and rule's checks -----------------------------------------------------------
def test_ema_without_debias_is_the_plain_average():
    t = core.chain(core.ema(0.9, debias=False))
    p = [torch.zeros(3, dtype=torch.float64)]
    u1, state = t.update([X], t.init(p), p)
    u2, _ = t.update([Y], state, p)
    torch.testing.assert_close(u1[0], 0.1 * X, rtol=1e-15, atol=0)
    torch.testing.assert_close(u2[0], 0.9 * 0.1 * X + 0.1 * Y, rtol=1e-15, atol=0)


def test_amsgrad_magnitude_alone_divides_by_the_running_maximum():
    b2 = 0.5
    t = core.chain(core.ema_sq(b2, eps=0.0, amsgrad=True))
    p = [torch.zeros(3, dtype=torch.float64)]
    big, small = 4.0 * Y, 0.5 * Y
    _, state = t.update([big], t.init(p), p)
    u, _ = t.update([small], state, p)
    v1 = (1 - b2) * big * big
    v2 = b2 * v1 + (1 - b2) * small * small
    torch.testing.assert_close(u[0], small / torch.sqrt(torch.maximum(v1, v2)), rtol=1e-15, atol=0)


def test_rule_without_direction_still_gets_its_magnitudes_coefficients():
    """rule(None, ema_sq(debias=True)) at step 1: g / sqrt(g²) = sign(g)."""
    t = core.chain(core.rule(None, core.ema_sq(0.99, eps=0.0, debias=True)))
    p = [torch.zeros(3, dtype=torch.float64)]
    u, _ = t.update([X], t.init(p), p)
    torch.testing.assert_close(u[0], torch.sign(X), rtol=1e-14, atol=0)


def test_rule_refuses_bad_parts_naming_them():
    with pytest.raises(TypeError, match="magnitude must be a magnitude part.*got ema"):
        core.rule(core.ema(0.9), core.ema(0.5))
    with pytest.raises(TypeError, match="direction must be a part, got str"):
        core.rule("ema", core.sum_sq())
    with pytest.raises(ValueError, match="share a buffer name"):
        core.rule(core.ema(0.9), core.ema_sq(0.99, name="exp_avg"))


def test_conforms_follows_the_state_dtype_rule():
    """float32 buffers conform to a float32 parameter, not to the same parameter made float64
    (whose rule is float64 moments) until ``conform_one`` widens them; a ``state_dtype`` given
    overrides the rule."""
    t = core.chain(core.ema(0.9))
    p = torch.zeros(3)
    st = t.init([p])[0]
    assert t.conforms(st, p)
    p64 = p.double()
    assert not t.conforms(st, p64)
    assert t.conforms(st, p64, torch.float32)
    t.conform_one(st, p64)
    assert st["exp_avg"].dtype == torch.float64
    assert t.conforms(st, p64)
    assert not t.conforms(st, p64, torch.float32)


def test_effective_lr_after_one_step_reads_the_schedule_at_zero():
    t = core.chain(core.mean_sq(eps=0.0), core.scale_by_learning_rate(lambda k: 0.1 * (k + 1)))
    state = _steps(t, GS[:1])
    torch.testing.assert_close(t.effective_lr_one(state, 1), 0.1 / GS[0].abs(), rtol=1e-14, atol=0)


def test_effective_lr_nadam_reads_its_scalar_state():
    """NAdam's direction keeps ``mu_product``; η/σ is Adam's, lr/(sqrt(v̂) + eps)."""
    lr, b2, eps = 0.02, 0.9, 1e-3
    t = core.chain(
        core.rule(core.nesterov_ema(0.9), core.ema_sq(b2, eps=eps, debias=True)),
        core.scale_by_learning_rate(lr),
    )
    state = _steps(t, GS)
    v = sum((1 - b2) * b2 ** (len(GS) - 1 - k) * g * g for k, g in enumerate(GS))
    expected = lr / (torch.sqrt(v) / math.sqrt(1 - b2 ** len(GS)) + eps)
    torch.testing.assert_close(t.effective_lr_one(state, len(GS)), expected, rtol=1e-12, atol=0)


def test_effective_lr_of_a_lone_rectified_magnitude_in_warm_up():
    t = core.chain(core.rectified(0.999), core.scale_by_learning_rate(0.3))
    state = _steps(t, GS)
    assert torch.equal(
        t.effective_lr_one(state, len(GS)), torch.full((3,), 0.3, dtype=torch.float64)
    )


def test_effective_lr_of_two_magnitudes_divides_by_both():
    t = core.chain(core.mean_sq(eps=0.5), core.sum_sq(eps=0.25), core.scale_by_learning_rate(0.1))
    state = _steps(t, GS)
    rms = torch.sqrt(sum(g * g for g in GS) / len(GS)) + 0.5
    # rss accumulates what rms passed on: g / σ_rms at each step
    seen, acc = [], torch.zeros(3, dtype=torch.float64)
    for k, g in enumerate(GS):
        acc = acc + g * g
        seen.append(g / (torch.sqrt(acc / (k + 1)) + 0.5))
    rss = torch.sqrt(sum(s * s for s in seen)) + 0.25
    torch.testing.assert_close(
        t.effective_lr_one(state, len(GS)), 0.1 / (rms * rss), rtol=1e-13, atol=0
    )


# -- initial state and its dtypes -------------------------------------------------------------
def test_init_fills_buffers_and_follows_the_state_dtype_rule():
    t = core.chain(core.sum_sq(initial_accumulator_value=1.0), core.ema(0.9))
    st = t.init([torch.zeros(2, 3, dtype=torch.bfloat16)])[0]
    assert st["sum"].dtype == st["exp_avg"].dtype == torch.float32
    assert torch.equal(st["sum"], torch.ones(2, 3))
    assert torch.equal(st["exp_avg"], torch.zeros(2, 3))
    assert st["step"].dtype == torch.float32 and float(st["step"]) == 0.0
    st64 = t.init([torch.zeros(3, dtype=torch.float64)])[0]
    assert st64["sum"].dtype == torch.float64
    wide = t.init_one(torch.zeros(3, dtype=torch.bfloat16), torch.float64)
    assert wide["sum"].dtype == torch.float64


def test_step_state_is_float64_under_a_float64_default_dtype():
    """torch.optim keeps ``step`` in the default dtype's precision (float64 if that is it)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        st = core.chain(core.nesterov_ema(0.9)).init([torch.zeros(3)])[0]
    finally:
        torch.set_default_dtype(before)
    assert st["step"].dtype == torch.float64
    assert st["mu_product"].dtype == torch.float64


def test_complex_parameter_keeps_complex_state_whatever_state_dtype_says():
    t = core.chain(core.ema(0.9))
    p = torch.zeros(3, dtype=torch.complex64)
    st = t.init([p])[0]
    assert st["exp_avg"].dtype == torch.complex64
    assert t.conforms(st, p, torch.float32)
    p128 = p.to(torch.complex128)
    assert not t.conforms(st, p128)
    t.conform_one(st, p128, torch.float32)
    assert st["exp_avg"].dtype == torch.complex128


def test_ema_sq_refuses_an_unknown_init_naming_the_choices():
    with pytest.raises(ValueError, match="init must be one of"):
        core.ema_sq(0.9, init="ones")


# -- a part's hyperparameters are checked where they are given ---------------------------------
@pytest.mark.parametrize(
    "make, err, name",
    [
        (lambda: core.ema("0.9"), TypeError, "b1"),
        (lambda: core.ema(True), TypeError, "b1"),
        (lambda: core.ema(math.nan), ValueError, "b1"),
        (lambda: core.ema_sq(0.99, eps=math.inf), ValueError, "eps"),
        (lambda: core.momentum(0.9, nesterov=1), TypeError, "nesterov"),
        (lambda: core.ema(0.9, debias="yes"), TypeError, "debias"),
        (lambda: core.scale_by_learning_rate("fast"), TypeError, "lr"),
        (lambda: core.scale_by_learning_rate(math.inf), ValueError, "lr"),
    ],
)
def test_part_hyperparameters_are_checked_naming_the_argument(make, err, name):
    with pytest.raises(err, match=rf"{name}\b"):
        make()


def test_conform_one_uses_the_state_dtype_it_is_given():
    t = core.chain(core.ema(0.9))
    p = torch.zeros(3, dtype=torch.bfloat16)
    st = t.init([p])[0]
    assert st["exp_avg"].dtype == torch.float32
    t.conform_one(st, p, torch.float64)
    assert st["exp_avg"].dtype == torch.float64


def test_chain_flattens_transforms_and_names_repeated_buffers_in_order():
    inner = core.chain(core.momentum(0.9), core.momentum(0.5))
    t = core.chain(inner, core.momentum(0.1), core.scale(2.0))
    assert len(t.parts) == 4
    assert t.state_keys == ("step", "momentum_buffer", "momentum_buffer_1", "momentum_buffer_2")
    with pytest.raises(TypeError, match="expected adaptlr.core parts, got str"):
        core.chain(core.scale(2.0), "sgd")


def test_initial_accumulator_of_a_complex_parameter_fills_both_halves():
    st = core.chain(core.sum_sq(initial_accumulator_value=0.5)).init(
        [torch.zeros(2, 2, dtype=torch.complex64)]
    )[0]
    assert torch.equal(st["sum"], torch.full((2, 2), 0.5 + 0.5j, dtype=torch.complex64))


def test_a_buffer_named_step_does_not_overwrite_the_step_count():
    """``step`` is the tensor's update count: a part's buffer of that name gets another key."""
    from dataclasses import dataclass

    @dataclass(frozen=True, repr=False)
    class counts_squares(core.Part):
        buffers = (core.Buffer("step"),)

        def apply(self, u, p, buf, c, ops):
            return u, {"step": buf["step"] + u * u}

    t = core.chain(counts_squares())
    assert t.state_keys == ("step", "step_1")
    p = [torch.zeros(2, dtype=torch.float64)]
    state = t.init(p)
    for _ in range(3):
        _, state = t.update([torch.tensor([1.0, 2.0], dtype=torch.float64)], state, p)
    assert float(state[0]["step"]) == 3.0
    assert state[0]["step_1"].tolist() == [3.0, 12.0]
