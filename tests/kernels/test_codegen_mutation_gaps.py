"""Tests written for the mutants of ``adaptlr.kernels.codegen`` that the kernel parity tests let
survive (mutmut, see docs/mutation_testing.md). The fast path (the default on CPU: generated numba
kernels) is compared with closed forms computed here in float64, never with its own output.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import pytest
import torch

import adaptlr
from adaptlr import core

pytest.importorskip("numba")

SHAPES = [(3, 4), (5,), (0,), (2, 3, 2), (37,)]


def _params(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_() for s in SHAPES]


def _grads(step: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    return [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]


def _fused_steps(opt: torch.optim.Optimizer, params: list[torch.Tensor], steps: int) -> None:
    """``steps`` steps on the fast path; a fallback to the reference path fails the test."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(steps):
            for p, g in zip(params, _grads(step)):
                p.grad = g
            opt.step()
    fallbacks = [w for w in caught if "Fallback" in w.category.__name__]
    assert not fallbacks, [str(w.message) for w in fallbacks]


def test_global_norm_of_a_scaled_update_on_the_fast_path():
    """A global norm whose operand needs per-chunk values (a constant factor before the clip):
    the norm kernel's chunk lines must be placed before its loop."""
    factor, max_norm, lr, steps = 2.5, 1.0, 0.1, 3
    params = _params()
    start = [p.detach().clone() for p in params]
    chain = core.chain(
        core.scale(factor), core.clip_by_global_norm(max_norm), core.scale_by_learning_rate(lr)
    )
    _fused_steps(adaptlr.Optimizer(params, chain), params, steps)
    expected = start
    for step in range(steps):
        u = [factor * g for g in _grads(step)]
        norm = math.sqrt(sum(float((x * x).sum()) for x in u))
        f = min(1.0, max_norm / (norm + 1e-6))
        expected = [p - lr * (f * x) for p, x in zip(expected, u)]
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-12, atol=1e-14)


@dataclass(frozen=True, repr=False)
class _Shift(core.Part):
    """``u - c`` (or ``c - u``): a Python float with a tensor in a subtraction."""

    c: float
    reverse: bool = False

    def apply(self, u, p, buf, c, ops):
        return (self.c - u if self.reverse else u - self.c), {}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("reverse", [False, True], ids=["u-c", "c-u"])
def test_a_number_subtracted_in_low_precision_is_rounded_first_as_torch_cpu_does(dtype, reverse):
    """torch's CPU kernels round the Python float of ``x - c`` to the tensor's dtype before
    subtracting (as for ``x + c``); the expected values are torch's own bf16/fp16 arithmetic."""
    gen = torch.Generator().manual_seed(5)
    p = (torch.randn(4096, generator=gen) * 4).to(dtype).requires_grad_()
    g = (torch.randn(4096, generator=gen) * 4).to(dtype)
    c = 0.3
    start = p.detach().clone()
    opt = adaptlr.Optimizer([p], core.chain(_Shift(c, reverse), core.scale_by_learning_rate(1.0)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p.grad = g.clone()
        opt.step()
    assert not [w for w in caught if "Fallback" in w.category.__name__]
    u = (c - g) if reverse else (g - c)
    expected = start + (-1.0 * u)
    assert expected.dtype == dtype
    assert torch.equal(p.detach(), expected)
