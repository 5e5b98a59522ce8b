"""Shared recipe of the parity tests: the fused step against the reference path (fused=False).

torch's ``test_foreach_matches_forloop`` recipe: many steps, a zero-size parameter, steps where
a gradient is None (one parameter has none for the first steps, so tensors of one group have
different step counts), two groups with different hyperparameters.
"""

from __future__ import annotations

import warnings

import torch

import adaptlr
from adaptlr import core
from adaptlr.kernels import FusedFallbackWarning

SHAPES = [(3, 4), (5,), (0,), (2, 3, 2), (), (37,)]
NONE_AT = {7: 1, 20: 3}  # step -> index of the parameter whose gradient is None that step
LATE = 4  # this parameter has no gradient before step 10 (its step count lags behind)


def make_params(dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in SHAPES]


def make_strided_params(dtype=torch.float32, seed=0):
    """Dense parameters that are not contiguous (channels_last, channels_last_3d, a transposed
    matrix, a permuted tensor), an empty channels_last one and a contiguous one."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(shape, generator=gen, dtype=dtype)

    out = [
        rnd(4, 3, 3, 5).contiguous(memory_format=torch.channels_last),
        rnd(2, 3, 2, 3, 4).contiguous(memory_format=torch.channels_last_3d),
        rnd(6, 5).t(),
        rnd(3, 4, 5).permute(2, 0, 1),
        rnd(0, 3, 2, 2).contiguous(memory_format=torch.channels_last),
        rnd(37),
    ]
    return [p.requires_grad_() for p in out]


def set_grads_in_layout(params, step, like_param=True):
    """Gradients laid out as their parameters (as autograd makes them), or contiguous (as a
    user may assign them)."""
    gen = torch.Generator().manual_seed(100 + step)
    for p in params:
        noise = torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
        g = 0.5 * p.detach() + noise
        p.grad = torch.empty_like(p).copy_(g) if like_param else g.contiguous()


def step_side_by_side(fused, ref, pa, pb, steps, grad):
    """Step both optimizers ``steps`` times, the fast path required (a fallback warning is an
    error); ``grad(p, gen, step)`` makes a parameter's gradient from a generator seeded alike
    for both sides."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FusedFallbackWarning)
        for step in range(steps):
            for opt, ps in ((fused, pa), (ref, pb)):
                gen = torch.Generator().manual_seed(100 + step)
                for p in ps:
                    p.grad = grad(p, gen, step)
                opt.step()


def set_grads(params, step, seed=1):
    """Gradients that depend on the parameters (so trajectories matter) plus fixed noise."""
    gen = torch.Generator().manual_seed(seed + step)
    for i, p in enumerate(params):
        noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        skip = NONE_AT.get(step) == i or (i == LATE and step < 10)
        p.grad = None if skip else (0.5 * p.detach() + noise)


def rel_err(a: torch.Tensor, b: torch.Tensor, start: torch.Tensor | None = None) -> float:
    """Largest difference relative to the largest value (of ``b`` or of ``start``, where a
    parameter began: one that walked to near zero is compared on the scale it moved on)."""
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    if a.numel() == 0:
        return 0.0
    scale = b.abs().max().clamp_min(1e-30)
    if start is not None:
        start = start.detach()
        start = torch.view_as_real(start) if start.is_complex() else start
        scale = torch.maximum(scale, start.abs().max())
    return float((a.double() - b.double()).abs().max() / scale)


def other_lr(kind, cfg, factor):
    """The lr of a second group: ``factor`` times the first's, or the same lr for the
    optimizers whose one estimate of d serves every group (they refuse another lr)."""
    lr = cfg.get("lr", 0.01)
    return lr if getattr(kind, "same_in_every_group", None) is not None else lr * factor


def two_groups(kind, params, cfg):
    return [{"params": params[:3]}, {"params": params[3:], "lr": other_lr(kind, cfg, 3)}]


def make(kind, params, cfg, fused):
    """An optimizer: a registry class, or a user chain (kind is a Transform)."""
    if isinstance(kind, core.Transform):
        return adaptlr.Optimizer(params, kind, fused=fused)
    return kind(two_groups(kind, params, cfg), **cfg, fused=fused)


def run_pair(kind, cfg, steps=100, dtype=torch.float32):
    """Train the same parameters with the fused and the reference step; return both."""
    pa, pb = make_params(dtype), make_params(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FusedFallbackWarning)  # the fast path must hold
        fused = make(kind, pa, cfg, None)
        ref = make(kind, pb, cfg, False)
        for step in range(steps):
            set_grads(pa, step)
            set_grads(pb, step)
            fused.step()
            ref.step()
    return fused, ref, pa, pb


def assert_same(fused, ref, pa, pb, tol, starts=None):
    starts = starts if starts is not None else make_params(pa[0].dtype)
    for i, (a, b, s) in enumerate(zip(pa, pb, starts)):
        assert rel_err(a.detach(), b.detach(), s) <= tol, f"parameter {i}"
    for i, (a, b) in enumerate(zip(pa, pb)):
        sa, sb = fused.state[a], ref.state[b]
        assert sa.keys() == sb.keys()
        for key, vb in sb.items():
            va = sa[key]
            assert va.shape == vb.shape and va.dtype == vb.dtype, key
            assert rel_err(va, vb) <= tol, f"parameter {i}, state {key!r}"


def user_chain():
    return core.chain(
        core.clip_by_value(1.0),
        core.rule(core.momentum(0.9), core.mean_sq()),
        core.scale_by_learning_rate(0.01),
    )


def norm_chain():
    return core.chain(
        core.clip_by_global_norm(1.0),
        core.rule(core.ema(0.9), core.rectified(0.99)),
        core.add_decayed_weights(0.01),
        core.scale_by_learning_rate(0.05),
    )


def measured_pair(kind, cfg, steps, measure_at=None, params=make_params):
    """A fused and a reference optimizer stepped side by side for ``steps`` steps, the step
    ``measure_at`` measured (``request_stats``: the measuring kernels); both parameter lists."""
    pa, pb = params(), params()
    fused, ref = make(kind, pa, cfg, None), make(kind, pb, cfg, False)
    for step in range(steps):
        for opt, ps in ((fused, pa), (ref, pb)):
            if step == measure_at:
                opt.request_stats()
            set_grads(ps, step)
            opt.step()
    return pa, pb


def worst_rel_err(pa, pb) -> float:
    return max(rel_err(a.detach(), b.detach()) for a, b in zip(pa, pb))
