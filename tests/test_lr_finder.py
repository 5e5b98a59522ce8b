"""``adaptlr.lr_finder.lr_find``: the sweep, the smoothing, the stop, the suggestions against
hand-computed values, bit-identical restoration, bad input, and ``adaptlr lr-find``."""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import adaptlr
from adaptlr.cli import main
from adaptlr.lr_finder import (
    RECOMMENDED,
    LRFinderResult,
    half_drop,
    lr_find,
    suggest,
    valley,
)
from adaptlr.schedules import warmup_cosine

pytestmark = pytest.mark.usefixtures("one_thread")  # (tests/conftest.py)


# -- the suggestions on a recorded curve ---------------------------------------------------------
# 20 points, lr_i = 1e-5 * 10^(i/4). The suggestions read indices 2..14 (num_steps // 10 = 2 at
# the start, the last 5 dropped): 4.8 4.85 4.7 4.2 3.5 3.0 2.8 2.7 2.75 2.6 2.9 3.5 5.0
CURVE = [5.0, 4.9, 4.8, 4.85, 4.7, 4.2, 3.5, 3.0, 2.8, 2.7, 2.75, 2.6, 2.9, 3.5, 5.0, 8.0, 12.0,
         20.0, 30.0, 50.0]  # fmt: skip
LRS = [1e-5 * 10 ** (i / 4) for i in range(20)]


def test_suggestions_match_hand_computed_values() -> None:
    got = suggest(LRS, CURVE, num_steps=20)
    # steepest: the window's differences are +.05 -.15 -.5 -.7 -.5 ...; every log step is
    # equal, so the steepest segment is 4.2 -> 3.5, which starts at index 5
    assert got["steepest"] == pytest.approx(LRS[5], rel=1e-12)
    # the smallest value, 2.6, is at index 11
    assert got["minimum/10"] == pytest.approx(LRS[11] / 10, rel=1e-12)
    # half-drop: half-way from the window's first value 4.8 to its minimum 2.6 is 3.7; the
    # first value at or below it is 3.5, index 6
    assert got["half-drop"] == pytest.approx(LRS[6], rel=1e-12)
    # valley: the longest strictly decreasing subsequences ending at each window point are
    # 1 1 2 3 4 5 6 7 7 8 6 4 1; the longest (8) ends at window index 9, so b = 9 - 8 = 1,
    # d = 8/3, and the index is 1 + 2 + 1 = 4: global index 6
    assert got["valley"] == pytest.approx(LRS[6], rel=1e-12)


def test_half_drop_takes_the_first_point_at_or_below_half_way() -> None:
    assert half_drop([1.0, 2.0, 3.0, 4.0], [10.0, 9.0, 6.0, 2.0]) == 3.0  # (10 + 2) / 2 = 6
    assert half_drop([1.0, 2.0, 3.0], [10.0, 6.1, 2.0]) == 3.0
    assert half_drop([1.0, 2.0], [3.0, 3.0]) == 1.0  # a flat curve: its first point


def test_valley_on_a_curve_that_only_falls_stays_in_range() -> None:
    # L = 1, 2: b = 1 - 2 = -1, d = 2/3, index -1 (fastai wraps to the last point); here 0
    assert valley([1e-3, 1e-2], [5.0, 4.0]) == 1e-3


def test_suggestions_stop_before_the_first_non_finite_value() -> None:
    curve = [*CURVE[:12], math.nan, *CURVE[13:]]
    got = suggest(LRS, curve, num_steps=20)
    # window 2..11: the minimum 2.6 is its last point
    assert got["minimum/10"] == pytest.approx(LRS[11] / 10, rel=1e-12)


# -- the sweep ------------------------------------------------------------------------------------
def _quadratic() -> tuple[torch.nn.Module, Callable[..., torch.Tensor], list[Any]]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    batch = (torch.randn(64, 4), torch.randn(64, 1))
    return model, torch.nn.functional.mse_loss, [batch]


def test_lrs_are_the_exponential_sweep_and_smoothing_is_debiased_ema() -> None:
    model, loss, batches = _quadratic()
    res = lr_find(model, loss, batches, optimizer=lambda p: torch.optim.SGD(p, lr=1.0),
                  start_lr=1e-6, end_lr=1e-1, num_steps=30)  # fmt: skip
    assert not res.stopped_early and len(res.lrs) == 30
    np.testing.assert_allclose(res.lrs, np.geomspace(1e-6, 1e-1, 30), rtol=1e-12)
    # closed form: s_i = sum_j (1 - b) b^(i-j) l_j / (1 - b^(i+1)), in float64
    b, losses = 0.98, np.array(res.losses)
    for i in range(30):
        w = (1 - b) * b ** (i - np.arange(i + 1))
        assert res.smoothed[i] == pytest.approx((w @ losses[: i + 1]) / (1 - b ** (i + 1)))
    assert res.suggestion == res.suggestions[RECOMMENDED]


class _Blowup:
    """A loss of 1 while the optimizer's lr is below `at`, then `bad` (a known blow-up)."""

    def __init__(self, opt: torch.optim.Optimizer, at: float, bad: float) -> None:
        self.opt, self.at, self.bad = opt, at, bad

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        value = 1.0 if self.opt.param_groups[0]["lr"] < self.at else self.bad
        return 0.0 * out.sum() + value


@pytest.mark.parametrize("bad", [1e6, math.inf, math.nan])
def test_stops_at_the_step_whose_lr_blows_the_loss_up(bad: float) -> None:
    model, _, batches = _quadratic()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    res = lr_find(model, _Blowup(opt, 1e-2, bad), batches, optimizer=opt)
    # the first lr >= 1e-2 of the default sweep (1e-7 .. 10, 100 steps)
    first = int(np.argmax(np.geomspace(1e-7, 10.0, 100) >= 1e-2))
    assert len(res.lrs) == first + 1 and res.stopped_early
    assert res.lrs[-1] >= 1e-2 > res.lrs[-2]


def test_stops_where_sgd_diverges_on_a_quadratic() -> None:
    # f(w) = 50 w^2, float64: SGD multiplies w by 1 - 100 lr, so it diverges once lr > 2/100
    w = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = w

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 50 * self.w.square().sum() + 0 * x.sum()

    res = lr_find(Model(), lambda out, y: out, lambda: (torch.zeros(1), None),
                  optimizer=lambda p: torch.optim.SGD(p, lr=1.0))  # fmt: skip
    # the same sweep in closed form: losses 50 w_i^2, w_{i+1} = w_i (1 - 100 lr_i), the
    # debiased average, and the first i where it exceeds 4 times its running minimum
    lrs, wi, avg, best, stop = np.geomspace(1e-7, 10.0, 100), 1.0, 0.0, math.inf, None
    for i, lr in enumerate(lrs):
        avg = 0.98 * avg + 0.02 * 50 * wi * wi
        s = avg / (1 - 0.98 ** (i + 1))
        best = min(best, s)
        if s > 4 * best:
            stop = i
            break
        wi *= 1 - 100 * lr
    assert stop is not None and lrs[stop] > 0.02
    assert res.stopped_early and len(res.lrs) == stop + 1


def test_batches_cycle_and_callables_are_called() -> None:
    seen: list[int] = []

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(int(y))
        return out.sum() * 0 + 1.0

    model = torch.nn.Linear(1, 1)
    data = [(torch.zeros(1, 1), torch.tensor(k)) for k in range(3)]
    lr_find(model, loss, data, num_steps=7, optimizer=lambda p: torch.optim.SGD(p, lr=1.0))
    assert seen == [0, 1, 2, 0, 1, 2, 0]
    seen.clear()
    counter = iter(range(100))
    lr_find(model, loss, lambda: (torch.zeros(1, 1), torch.tensor(next(counter))), num_steps=4,
            optimizer=lambda p: torch.optim.SGD(p, lr=1.0))  # fmt: skip
    assert seen == [0, 1, 2, 3]


def test_groups_keep_their_lr_ratios() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    opt = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 1e-3},
         {"params": model[1].parameters(), "lr": 1e-2}], lr=0.1,
    )  # fmt: skip
    seen: list[tuple[float, float]] = []

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append((opt.param_groups[0]["lr"], opt.param_groups[1]["lr"]))
        return out.sum() * 0 + 1.0

    res = lr_find(model, loss, [(torch.zeros(1, 2), None)], optimizer=opt, num_steps=5)
    for (small, large), lr in zip(seen, res.lrs):
        assert large == pytest.approx(lr, rel=1e-12) and small == pytest.approx(lr / 10)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-2]


# -- restoration ----------------------------------------------------------------------------------
def _net() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Dropout(0.2),
        torch.nn.Linear(8, 3),
    )  # fmt: skip


def _tensors(obj: Any) -> list[Any]:
    """Every leaf of a nested state dict, in order (tensors and plain values)."""
    if isinstance(obj, dict):
        return [(k, v) for key in sorted(obj, key=str) for k, v in _keyed(key, obj[key])]
    return [("", obj)]


def _keyed(key: Any, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [(f"{key}/{k}", v) for k, v in _tensors(value)]
    if isinstance(value, list):
        return [(f"{key}[{i}]/{k}", v) for i, item in enumerate(value) for k, v in _tensors(item)]
    return [(str(key), value)]


def _assert_identical(a: Any, b: Any) -> None:
    la, lb = _tensors(a), _tensors(b)
    assert [k for k, _ in la] == [k for k, _ in lb]
    for (k, x), (_, y) in zip(la, lb):
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and torch.equal(x, y), k
        else:
            assert x == y, k


OPTIMIZERS = {
    "torch Adam": lambda p: torch.optim.Adam(p, lr=1e-3),
    "torch SGD momentum": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9),
    "adaptlr Adam": lambda p: adaptlr.Adam(p, lr=1e-3, fused=False),
    "adaptlr AdamW fused": lambda p: adaptlr.AdamW(p, lr=1e-3),
    "adaptlr AdamW schedule": lambda p: adaptlr.AdamW(p, lr=warmup_cosine(1e-2, 5, 50),
                                                      fused=False),
}  # fmt: skip


@pytest.mark.parametrize("raises", [False, True], ids=["completes", "raises mid-sweep"])
@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_model_and_optimizer_are_restored_bit_for_bit(
    make: Callable[..., Any], raises: bool
) -> None:
    model = _net()
    opt = make(model.parameters())
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    for _ in range(3):  # an optimizer that has stepped: state and BatchNorm statistics exist
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model[1].eval()  # a mix of modes, restored as it was
    params = list(model.parameters())
    model_before = {k: v.clone() for k, v in model.state_dict().items()}
    grads_before = [p.grad.clone() for p in params]
    opt_before = copy.deepcopy(opt.state_dict())
    calls = 0

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if raises and calls == 6:
            raise RuntimeError("boom")
        return torch.nn.functional.cross_entropy(out, target)

    batches = [(torch.randn(32, 6), torch.randint(0, 3, (32,))) for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ScheduleOverrideWarning either
        if raises:
            with pytest.raises(RuntimeError, match="boom"):
                lr_find(model, loss, batches, optimizer=opt, num_steps=20)
        else:
            res = lr_find(model, loss, batches, optimizer=opt, num_steps=20)
            assert len(res.lrs) > 5
    assert calls >= 6
    _assert_identical(model.state_dict(), model_before)
    for p, g in zip(params, grads_before):
        assert torch.equal(p.grad, g)
    assert list(model.parameters()) == params and all(
        a is b for a, b in zip(opt.param_groups[0]["params"], params)
    )
    assert [m.training for m in model.modules()] == [True, True, False, True, True, True]
    _assert_identical(opt.state_dict(), opt_before)
    # and it trains on exactly as it would have
    twin = copy.deepcopy(model)
    twin_opt = make(twin.parameters())
    twin_opt.load_state_dict(opt_before)
    for m, o in ((model, opt), (twin, twin_opt)):
        torch.manual_seed(5)
        o.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        o.step()
    _assert_identical(model.state_dict(), twin.state_dict())


def test_a_fresh_optimizer_leaves_the_model_as_it_was() -> None:
    model = _net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [(torch.randn(32, 6), torch.randint(0, 3, (32,)))]
    res = lr_find(model, torch.nn.functional.cross_entropy, batches, num_steps=10)
    assert len(res.lrs) == 10
    _assert_identical(model.state_dict(), before)
    assert all(p.grad is None for p in model.parameters())


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "exc", "words"),
    [
        ({"start_lr": 0.0}, ValueError, "start_lr must be a finite number > 0"),
        ({"start_lr": "1e-3"}, TypeError, "start_lr"),
        ({"end_lr": 1e-8}, ValueError, "end_lr must be a finite number > start_lr"),
        ({"end_lr": math.inf}, ValueError, "end_lr"),
        ({"num_steps": 1}, ValueError, "num_steps must be an integer >= 2"),
        ({"num_steps": 10.0}, TypeError, "num_steps"),
        ({"beta": 1.0}, ValueError, "beta must be a number in [0, 1)"),
        ({"divergence_factor": 1.0}, ValueError, "divergence_factor must be a finite number > 1"),
        ({"optimizer": 3}, TypeError, "optimizer must be a torch.optim.Optimizer"),
        ({"optimizer": lambda p: 3}, TypeError, "optimizer must be a callable returning"),
        ({"model": "net"}, TypeError, "model must be a torch.nn.Module"),
        ({"loss_fn": 3}, TypeError, "loss_fn must be a callable"),
        ({"batches": 3}, TypeError, "batches must be an iterable"),
        ({"batches": [torch.zeros(1, 2)]}, TypeError, "(input, target) pairs"),
        ({"batches": iter([])}, ValueError, "batches ran out after 0 batches"),
        ({"loss_fn": lambda o, y: o}, TypeError, "loss_fn must be a callable returning a scalar"),
    ],
)
def test_bad_input_names_the_argument(kw: dict[str, Any], exc: type, words: str) -> None:
    model = torch.nn.Linear(2, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args: dict[str, Any] = {
        "model": model,
        "loss_fn": torch.nn.functional.cross_entropy,
        "batches": [(torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64))],
        "optimizer": lambda p: torch.optim.SGD(p, lr=0.1),
        **kw,
    }
    with pytest.raises(exc) as err:
        lr_find(**args)
    assert str(err.value).startswith("lr_find: ") and words in str(err.value)
    _assert_identical(model.state_dict(), before)


def test_too_short_a_sweep_warns_and_suggests_nothing() -> None:
    model, _, batches = _quadratic()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with pytest.warns(RuntimeWarning, match="too few for a suggestion"):
        res = lr_find(model, _Blowup(opt, 0.0, math.nan), batches, optimizer=opt)
    assert res.suggestions == {} and math.isnan(res.suggestion) and len(res.lrs) == 1


# -- the plot and the command line ----------------------------------------------------------------
def _nonblank(path: Path) -> None:
    from PIL import Image

    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] > 200 and len(np.unique(img.reshape(-1, 3), axis=0)) > 20


def test_plot_to_a_path_and_to_axes(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    model, loss, batches = _quadratic()
    res = lr_find(model, loss, batches, optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    assert isinstance(res, LRFinderResult)
    out = res.plot(tmp_path / "lr.png")
    assert out == tmp_path / "lr.png"
    _nonblank(out)
    ax = Figure().add_subplot()
    assert res.plot(ax) is ax
    assert ax.get_xscale() == "log"
    assert len(ax.get_lines()) == 2 + len(res.suggestions)


def test_cli_lr_find_on_digits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "lr.png"
    assert main(["lr-find", "--task", "digits", "--out", str(png)]) == 0
    out = capsys.readouterr().out
    for name in ("steepest", "minimum/10", "valley", "half-drop", "recommended"):
        assert name in out
    _nonblank(png)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["lr-find", "--task", "mnist"], "unknown task 'mnist'; allowed: digits, charlm"),
        (["lr-find", "--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"),
        (["lr-find", "--seed", "-1"], "--seed must be >= 0"),
        (["lr-find", "--out", "lr.txt"], "--out 'lr.txt' must end in one of"),
    ],
)
def test_cli_lr_find_bad_arguments(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert err.startswith("adaptlr lr-find: ")
