"""Identities between parts: the same rule reached by two compositions."""

from __future__ import annotations

import torch

from adaptlr import core


def run(transform, steps=25, seed=0):
    gen = torch.Generator().manual_seed(seed)
    p = [torch.randn(4, 3, generator=gen, dtype=torch.float64)]
    state = transform.init(p)
    for t in range(steps):
        g = [torch.randn(4, 3, generator=gen, dtype=torch.float64)]
        u, state = transform.update(g, state, p, count=t)
        p = [p[0] + u[0]]
    return p[0], state


def test_debiased_ema_magnitude_is_adam_with_b1_zero():
    alone = core.chain(core.ema_sq(0.99, eps=1e-8, debias=True), core.scale_by_learning_rate(0.1))
    adam_b1_0 = core.chain(
        core.rule(core.ema(0.0), core.ema_sq(0.99, eps=1e-8, debias=True)),
        core.scale_by_learning_rate(0.1),
    )
    a, _ = run(alone)
    b, _ = run(adam_b1_0)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_rule_without_direction_is_the_magnitude_alone():
    a, _ = run(core.chain(core.sum_sq(), core.scale(-0.1)))
    b, _ = run(core.chain(core.rule(None, core.sum_sq()), core.scale(-0.1)))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_first_gradient_init_equals_zero_init_with_debias_at_step_one():
    """v_1 = g_1^2 is what a zero-started average gives after bias correction at t = 1."""
    g = [torch.tensor([3.0, -4.0], dtype=torch.float64)]
    p = [torch.zeros(2, dtype=torch.float64)]
    lecture = core.chain(core.ema_sq(0.9, eps=0.0, init="first_gradient"))
    debiased = core.chain(core.ema_sq(0.9, eps=0.0, debias=True))
    ua, _ = lecture.update(g, lecture.init(p), p)
    ub, _ = debiased.update(g, debiased.init(p), p)
    torch.testing.assert_close(ua[0], ub[0], rtol=1e-14, atol=0)
    torch.testing.assert_close(ua[0], torch.tensor([1.0, -1.0], dtype=torch.float64))


def test_rms_is_the_running_mean_of_squares():
    t = core.chain(core.mean_sq(eps=0.0))
    _, state = run(t, steps=7, seed=4)
    gen = torch.Generator().manual_seed(4)
    torch.randn(4, 3, generator=gen, dtype=torch.float64)  # the parameter's draw
    squares = [torch.randn(4, 3, generator=gen, dtype=torch.float64) ** 2 for _ in range(7)]
    torch.testing.assert_close(state[0]["mean_square"], sum(squares) / 7, rtol=1e-12, atol=0)


def test_clipping_matches_torch_utilities():
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(5, generator=gen) * 3, torch.randn(2, 2, generator=gen) * 3]
    params = [torch.zeros_like(g) for g in grads]
    for part, torch_clip in [
        (core.clip_by_global_norm(1.5), lambda ps: torch.nn.utils.clip_grad_norm_(ps, 1.5)),
        (core.clip_by_value(0.7), lambda ps: torch.nn.utils.clip_grad_value_(ps, 0.7)),
    ]:
        t = core.chain(part)
        ours, _ = t.update(grads, t.init(params), params)
        ps = [torch.zeros_like(g, requires_grad=True) for g in grads]
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        torch_clip(ps)
        for a, p in zip(ours, ps):
            torch.testing.assert_close(a, p.grad, rtol=1e-6, atol=1e-7)


def test_update_is_pure():
    t = core.chain(core.rule(core.ema(0.9), core.ema_sq(0.999, debias=True)), core.scale(-1.0))
    p = [torch.ones(3)]
    state = t.init(p)
    before = {k: v.clone() for k, v in state[0].items()}
    t.update([torch.ones(3)], state, p)
    for k, v in state[0].items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(p[0], torch.ones(3))


def test_same_buffer_name_twice_in_a_chain_keeps_both():
    t = core.chain(core.momentum(0.9), core.momentum(0.5), core.scale(-1.0))
    assert t.state_keys == ("step", "momentum_buffer", "momentum_buffer_1")
