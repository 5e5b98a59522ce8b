"""The numba kernels' NaN-propagating max and min, against torch.maximum and torch.minimum.

The generated kernels inline ``_numba_support.nanmax``/``nanmin`` wherever a part uses
``ops.maximum``/``ops.minimum`` (AMSGrad's running maximum, AdaBound's clamp), and the reference
path runs torch's. Every pair of special values (NaN, ±inf, ±0, ordinary numbers) is compared
bit for bit, in a loop LLVM vectorises and one element at a time.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from pathlib import Path

import numba
import numpy as np
import pytest
import torch

import adaptlr
from adaptlr.kernels import _numba_support, codegen
from adaptlr.kernels._numba_support import nanmax, nanmin
from adaptlr.kernels.programs import program_for

SPECIAL = [math.nan, -math.inf, -1.5, -0.0, 0.0, 1e-30, 1.5, 2.5, math.inf]


@numba.njit
def _loop(a, b, out_max, out_min):  # type: ignore[no-untyped-def]
    for i in range(a.shape[0]):
        out_max[i] = nanmax(a[i], b[i])
        out_min[i] = nanmin(a[i], b[i])


@numba.njit
def _one(a, b):  # type: ignore[no-untyped-def]
    return nanmax(a, b), nanmin(a, b)


def _same(got: torch.Tensor, want: torch.Tensor, tie: torch.Tensor) -> bool:
    """NaN where ``want`` has NaN (its payload is torch's business: its vectorised maximum
    writes all-ones), the same bits elsewhere (so -0 and +0 differ), except where ``tie``:
    torch gives either zero for max(+0, -0) (its vectorised loop the second, its scalar
    one the first), so there only the value is compared."""
    nan = want.isnan()
    if not torch.equal(got.isnan(), nan):
        return False
    ints = torch.int32 if got.dtype == torch.float32 else torch.int64
    exact = ~nan & ~tie
    return torch.equal(got[exact].view(ints), want[exact].view(ints)) and torch.equal(
        got[tie], want[tie]
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nanmax_and_nanmin_are_torch_maximum_and_minimum_bit_for_bit(dtype) -> None:
    pairs = list(itertools.product(SPECIAL, SPECIAL))
    # 40 copies: long enough for the vectorised loop body, not only its scalar remainder
    a = torch.tensor([x for x, _ in pairs] * 40, dtype=dtype)
    b = torch.tensor([y for _, y in pairs] * 40, dtype=dtype)
    tie = (a == 0) & (b == 0)
    out_max, out_min = torch.empty_like(a), torch.empty_like(a)
    _loop(a.numpy(), b.numpy(), out_max.numpy(), out_min.numpy())
    assert _same(out_max, torch.maximum(a, b), tie)
    assert _same(out_min, torch.minimum(a, b), tie)
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    for x, y in pairs:
        hi, lo = _one(np_dtype(x), np_dtype(y))
        want_hi = torch.maximum(torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype))
        want_lo = torch.minimum(torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype))
        got = torch.tensor([hi, lo], dtype=dtype)
        tie = torch.tensor([x == 0 and y == 0] * 2)
        assert _same(got, torch.stack([want_hi, want_lo]), tie), (x, y)


def test_amsgrad_with_nonfinite_gradients_keeps_torchs_nan_and_inf() -> None:
    # the running maximum of AMSGrad meets NaN and inf: the fused step (nanmax) has NaN and
    # inf where torch.optim.Adam has them, and its other values (to rounding)
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(3000, generator=gen)
    grads = [torch.randn(3000, generator=gen) for _ in range(4)]
    grads[1][::7] = math.nan
    grads[2][::11] = math.inf
    grads[3][::13] = -math.inf
    ours_p, theirs_p = theta.clone().requires_grad_(), theta.clone().requires_grad_()
    ours = adaptlr.Adam([ours_p], lr=1e-2, amsgrad=True, fused=True)
    theirs = torch.optim.Adam([theirs_p], lr=1e-2, amsgrad=True, foreach=False)
    for g in grads:
        ours_p.grad, theirs_p.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(ours_p.detach(), theirs_p.detach(), equal_nan=True)
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        torch.testing.assert_close(
            ours.state[ours_p][key], theirs.state[theirs_p][key], equal_nan=True, msg=key
        )
    assert ours.state[ours_p]["max_exp_avg_sq"].isnan().any()
    assert ours.state[ours_p]["max_exp_avg_sq"].isinf().any()


def test_generated_source_names_the_helpers_it_inlines() -> None:
    # the kernel cache is keyed on the generated source: a change to the helpers must change
    # it, or a cache written before the change would run the old helpers
    digest = hashlib.sha256(Path(_numba_support.__file__).read_bytes()).hexdigest()[:16]
    opt = adaptlr.Adam([torch.zeros(1, requires_grad=True)], amsgrad=True)
    source = codegen.numba_source(program_for(opt.transform_for(opt.param_groups[0])), "float32")
    assert digest in source
