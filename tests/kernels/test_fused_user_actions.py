"""What users do between steps, drawn at random (Hypothesis' stateful testing).

A fused optimizer (the default) and a reference one (``fused=False``) each hold their own
copies of the same parameters (float64 or complex128); every action is done to both: steps with
some gradients ``None``, gradients laid out as their parameter or contiguous, and lazy
conjugates (``g.conj()``), ``zero_grad()``, ``p.data`` replaced (a copy elsewhere, transposed
strides, ``channels_last``, single precision, bfloat16 and back, the same memory transposed), a
new param group, a new learning rate, a state entry replaced, the state dict saved and loaded
back. After every step parameters and state must agree: double precision to 1e-9 relative,
single (after ``p.data.float()``) to 1e-5, bfloat16 to 1e-2 (a layout or pairing error moves
values by their own size). A fallback of the fused path is allowed (it warns): only a
difference is a failure.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from adaptlr.kernels import FusedFallbackWarning
from adaptlr.optimizers.registry import REGISTRY

from ._parity import rel_err

pytest.importorskip("numba")

#: the shapes whose layout can change are listed twice: drawn twice as often
SHAPES = [(), (0,), (1,), (5,), (3, 3), (2, 3), (2, 3, 2, 2), (3, 3), (2, 3), (2, 3, 2, 2)]
NEW_DATA = ["copy", "transposed-strides", "channels_last", "contiguous", "float32", "float64",
            "bfloat16", "same-memory-transposed"]  # fmt: skip


def new_data(d: torch.Tensor, how: str) -> torch.Tensor | None:
    """``p.data`` made anew; ``None`` where ``how`` does not apply to its shape."""
    if how == "copy":
        return d.clone()
    if how == "transposed-strides":  # same shape and values, other memory order
        return d.transpose(0, 1).contiguous().transpose(0, 1) if d.dim() >= 2 else None
    if how == "channels_last":
        return d.contiguous(memory_format=torch.channels_last) if d.dim() == 4 else None
    if how == "contiguous":
        return d.contiguous()
    if how == "bfloat16":
        return None if d.is_complex() else d.to(torch.bfloat16)
    if how in ("float32", "float64"):
        single = how == "float32"
        if d.is_complex():
            return d.to(torch.complex64 if single else torch.complex128)
        return d.to(torch.float32 if single else torch.float64)
    if how == "same-memory-transposed":  # the same address, other strides (square only)
        ok = d.dim() == 2 and d.shape[0] == d.shape[1] and d.is_contiguous()
        return d.t() if ok else None
    raise AssertionError(how)


class UserActions(RuleBasedStateMachine):
    @initialize(
        name=st.sampled_from(sorted(REGISTRY)),
        shapes=st.lists(st.sampled_from(SHAPES), min_size=1, max_size=4),
        complex_=st.lists(st.booleans(), min_size=4, max_size=4),
        seed=st.integers(0, 2**16),
    )
    def build(self, name, shapes, complex_, seed):
        info = REGISTRY[name]
        self.cfg = info.all_configs[0]
        gen = torch.Generator().manual_seed(seed)
        dtypes = [torch.complex128 if c else torch.float64 for c in complex_]
        start = [torch.randn(s, generator=gen, dtype=dt) for s, dt in zip(shapes, dtypes)]
        self.pa = [t.clone().requires_grad_() for t in start]
        self.pb = [t.clone().requires_grad_() for t in start]
        self.fused = info.cls(self.pa, **self.cfg)
        self.ref = info.cls(self.pb, **self.cfg, fused=False)
        self.seed, self.steps = seed, 0

    def worlds(self):
        return ((self.fused, self.pa), (self.ref, self.pb))

    @rule(none=st.lists(st.booleans(), max_size=6), as_param=st.booleans(), conj=st.booleans())
    def step(self, none, as_param, conj):
        self._step(none, as_param, conj)

    @rule(as_param=st.booleans())
    def two_steps(self, as_param):
        """(steps are what every other action is judged by: two rules draw them)"""
        self._step([], as_param, False)
        self._step([], as_param, False)

    def _step(self, none, as_param, conj):
        self.steps += 1
        for opt, ps in self.worlds():
            gen = torch.Generator().manual_seed(self.seed + self.steps)
            for i, p in enumerate(ps):
                wide = torch.complex128 if p.is_complex() else torch.float64
                g = torch.randn(p.shape, generator=gen, dtype=wide).to(p.dtype)
                if as_param:
                    g = torch.empty_like(p).copy_(g)
                p.grad = None if i < len(none) and none[i] else (g.conj() if conj else g)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FusedFallbackWarning)
                opt.step()
        self.check()

    @rule(set_to_none=st.booleans())
    def zero_grad(self, set_to_none):
        for opt, ps in self.worlds():
            if opt.defaults.get("foreach") and not set_to_none:
                # torch's foreach zero_grad (schedulefree's default foreach=True) cannot zero a
                # lazily conjugated gradient in place: a torch limitation, not the step's
                for p in ps:
                    if p.grad is not None and p.grad.is_conj():
                        p.grad = p.grad.resolve_conj()
            opt.zero_grad(set_to_none=set_to_none)

    @rule(data=st.data(), how=st.sampled_from(NEW_DATA))
    def replace_data(self, data, how):
        fits = [i for i, p in enumerate(self.pa) if new_data(p.data, how) is not None]
        if not fits:
            return
        i = data.draw(st.sampled_from(fits))
        for _, ps in self.worlds():
            with torch.no_grad():
                ps[i].data = new_data(ps[i].data, how)
                ps[i].grad = None  # (a gradient of the old dtype would not fit)

    @precondition(lambda self: len(self.pa) < 6)
    @rule(shape=st.sampled_from(SHAPES), complex_=st.booleans(), seed=st.integers(0, 2**16))
    def add_param_group(self, shape, complex_, seed):
        gen = torch.Generator().manual_seed(seed)
        t = torch.randn(shape, generator=gen, dtype=torch.complex128 if complex_ else torch.float64)
        for opt, ps in self.worlds():
            p = t.clone().requires_grad_()
            ps.append(p)
            # (an optimizer with one estimate of d for all groups takes the current lr)
            one = getattr(type(opt), "same_in_every_group", None) is not None
            lr = opt.param_groups[0]["lr"] if one else self.cfg.get("lr", 0.01) * 2
            opt.add_param_group({"params": [p], "lr": lr})

    @rule(factor=st.sampled_from([0.1, 0.5, 2.0]))
    def set_lr(self, factor):
        for opt, _ in self.worlds():
            for g in opt.param_groups:
                g["lr"] = g["lr"] * factor

    @rule(data=st.data())
    def replace_a_state_entry(self, data):
        i = data.draw(st.integers(0, len(self.pa) - 1))
        keys = [k for k, v in self.ref.state[self.pb[i]].items() if v.dim() or k != "step"]
        if not keys:
            return
        key = data.draw(st.sampled_from(sorted(keys)))
        for opt, ps in self.worlds():
            st_ = opt.state[ps[i]]
            st_[key] = torch.zeros_like(st_[key]) + 0.25

    @rule()
    def save_and_load_the_state(self):
        for opt, _ in self.worlds():
            opt.load_state_dict(opt.state_dict())

    def check(self):
        for i, (a, b) in enumerate(zip(self.pa, self.pb)):
            sb = self.ref.state.get(b, {})
            # judged at the narrowest of the parameter's and its state's precisions, then and
            # at every earlier check (a parameter made float64 again gets float64 state, but
            # keeps what its float32 steps rounded)
            dtypes = self.__dict__.setdefault("seen", {}).setdefault(i, set())
            dtypes |= {b.dtype, *(v.dtype for k, v in sb.items() if v.dim() and k != "step")}
            wide = dtypes <= {torch.float64, torch.complex128}
            tol = 1e-9 if wide else 1e-2 if torch.bfloat16 in dtypes else 1e-5
            assert a.dtype == b.dtype and a.shape == b.shape
            assert rel_err(a.detach(), b.detach()) <= tol, f"parameter {i}"
            sa = self.fused.state.get(a, {})
            assert sorted(sa) == sorted(sb), f"parameter {i}"
            for key, vb in sb.items():
                assert sa[key].dtype == vb.dtype, f"parameter {i}, {key}"
                assert rel_err(sa[key], vb) <= tol, f"parameter {i}, {key}"


UserActions.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_user_actions = UserActions.TestCase
