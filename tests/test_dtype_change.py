"""A parameter whose dtype changes after training started keeps state by the precision rule.

``model.double()`` after some float32 steps: torch.optim raises; adaptlr gives the parameter
float64 moments (the float32 values widened, exactly) and continues in float64. The reference
is torch.optim itself, resumed in float64 from the widened state.
"""

from __future__ import annotations

import pytest
import torch

import adaptlr


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1))


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    for _ in range(steps):
        x = torch.randn(16, 5, generator=gen).to(dtype)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


CASES = {
    "Adam": (adaptlr.Adam, torch.optim.Adam, {"lr": 0.01, "amsgrad": True}),
    "AdamW": (adaptlr.AdamW, torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    "RMSprop": (adaptlr.RMSprop, torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.5}),
    "SGD": (adaptlr.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
}


@pytest.mark.parametrize("fused", [None, False])
@pytest.mark.parametrize("name", sorted(CASES))
def test_model_double_after_training_started_continues_in_float64(name, fused):
    ours, theirs, cfg = CASES[name]
    model = _model()
    opt = ours(model.parameters(), fused=fused, **cfg)
    _train(model, opt, 5, seed=1)
    # torch.optim in float64 from here, from the same values widened
    ref_model = _model().double()
    ref_model.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    ref = theirs(ref_model.parameters(), foreach=False, **cfg)
    sd = opt.state_dict()
    ref.load_state_dict(
        {
            "state": {
                i: {k: v.double() if k != "step" else v for k, v in st.items()}
                for i, st in sd["state"].items()
            },
            "param_groups": [
                {k: v for k, v in g.items() if k in ref.param_groups[0]} for g in sd["param_groups"]
            ],
        }
    )

    model.double()
    _train(model, opt, 6, seed=2)
    _train(ref_model, ref, 6, seed=2)
    for p in model.parameters():
        for k, v in opt.state[p].items():
            if k != "step" and v.dim() > 0:
                assert v.dtype == torch.float64, (k, v.dtype)
    for a, b in zip(model.parameters(), ref_model.parameters()):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("fused", [None, False])
@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_narrowing_a_float64_model_keeps_float32_state(low, fused):
    model = _model().double()
    opt = adaptlr.Adam(model.parameters(), lr=0.01, fused=fused)
    _train(model, opt, 3, seed=1)
    model.to(low)
    _train(model, opt, 2, seed=2)
    for p in model.parameters():
        assert p.dtype == low
        assert opt.state[p]["exp_avg"].dtype == torch.float32
        assert opt.state[p]["exp_avg_sq"].dtype == torch.float32


def test_an_explicit_state_dtype_is_kept_across_a_change():
    model = _model()
    opt = adaptlr.Adam(model.parameters(), lr=0.01, state_dtype=torch.bfloat16)
    _train(model, opt, 2, seed=1)
    model.double()
    _train(model, opt, 2, seed=2)
    for p in model.parameters():
        assert opt.state[p]["exp_avg"].dtype == torch.bfloat16
