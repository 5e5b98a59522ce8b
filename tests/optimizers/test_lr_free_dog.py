"""DoG, LDoG and the polynomial-decay averager against dog-optimizer 1.0.3 itself, in float64.

Where the package cannot run (a None gradient, a step size around another direction) the
reference is a float64 recomputation of the formulas written out here.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
from collections.abc import Callable, Iterator

import pytest
import torch

import adaptlr
from adaptlr import core

dog_ref = pytest.importorskip("dog")

STEPS = 50
TOL = 1e-10
SHAPES = ((5, 3), (4,), (2, 3, 2))
KINDS = {"DoG": (adaptlr.DoG, dog_ref.DoG), "LDoG": (adaptlr.LDoG, dog_ref.LDoG)}
#: every argument of the package, alone and together
CONFIGS = (
    {},
    {"reps_rel": 1e-4},
    {"lr": 0.5},
    {"eps": 1e-2},
    {"eps": 0.0},  # the paper's Algorithm 1
    {"init_eta": 1e-3},
    {"weight_decay": 0.1},
    {"reps_rel": 1e-3, "lr": 0.8, "weight_decay": 0.01, "eps": 1e-6, "init_eta": 2e-3},
)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """LDoG keeps its per-tensor r̄, G, η as per-tensor scalars, which adaptlr makes in the
    default dtype's scalar dtype: float64 here so that 1e-10 is attainable (see
    ``test_ldog_float64_under_float32_default``)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def scope(kind: str) -> contextlib.AbstractContextManager[None]:
    return default_dtype(torch.float64) if kind == "LDoG" else contextlib.nullcontext()


def make_params(seed: int = 0, shapes: tuple[tuple[int, ...], ...] = SHAPES) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]


def gradient(p: torch.Tensor, i: int, t: int) -> torch.Tensor:
    """∇ of a nonconvex loss, Σ w·sin(a_t x + i) + 0.3‖x‖², whose gradients change with the
    step t (in closed form: no autograd in the loop)."""
    w = torch.linspace(-1.0, 2.0, p.numel(), dtype=p.dtype).reshape(p.shape)
    a = 1.0 + 0.05 * t
    return a * w * torch.cos(a * p + i) + 0.6 * p


def set_grads(params: list[torch.Tensor], t: int, active: Callable[[int], set[int]] | None = None):
    for i, p in enumerate(params):
        on = active is None or i in active(t)
        p.grad = gradient(p.detach(), i, t) if on else None


def leaves(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.clone().requires_grad_() for p in params]


def rel(a: torch.Tensor | float, b: torch.Tensor | float) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.numel() == 0:
        return 0.0
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def assert_state_equal(kind: str, ours, ref) -> None:
    """Parameters and state: x0 = init_buffer; r̄, G, η per group (DoG) or per tensor (LDoG)."""
    for og, rg in zip(ours.param_groups, ref.param_groups, strict=True):
        for i, (p, q) in enumerate(zip(og["params"], rg["params"], strict=True)):
            assert rel(p.detach(), q.detach()) <= TOL, (i, rel(p.detach(), q.detach()))
            assert torch.equal(ours.state[p]["x0"], rg["init_buffer"][i])
            if kind == "LDoG":
                for k in ("rbar", "G"):
                    assert rel(ours.state[p][k], rg[k][i]) <= TOL, (k, i)
                assert rel(ours.state[p]["eta"], rg["eta"][i]) <= TOL
        if kind == "DoG":
            for k in ("rbar", "G"):
                assert rel(og[k], rg[k]) <= TOL, k
            assert all(rel(og["eta"], e) <= TOL for e in rg["eta"])


def run_both(kind: str, groups: Callable[[list[torch.Tensor]], list], fused=None, **hp):
    ours_cls, ref_cls = KINDS[kind]
    start = make_params()
    a, b = leaves(start), leaves(start)
    ours = ours_cls(groups(a), fused=fused, **hp)
    ref = ref_cls(groups(b), **hp)
    for t in range(STEPS):
        for params, opt in ((a, ours), (b, ref)):
            set_grads(params, t)
            opt.step()
        if t % 5 and t != 1:  # the first steps, and every fifth
            continue
        assert_state_equal(kind, ours, ref)
        # effective_lr is η_t at every element (DoG has no σ)
        for og, rg, effs in zip(ours.param_groups, ref.param_groups, ours.effective_lr()):
            for p, e, eta in zip(og["params"], effs, rg["eta"]):
                assert e.shape == p.shape
                assert rel(e, torch.full_like(e, float(eta))) <= TOL
    return ours, ref


@pytest.mark.parametrize("hp", CONFIGS, ids=lambda hp: ",".join(f"{k}={v}" for k, v in hp.items()))
@pytest.mark.parametrize("kind", KINDS)
def test_equal_to_the_package(kind: str, hp: dict) -> None:
    with scope(kind):
        run_both(kind, lambda ps: ps, **hp)


@pytest.mark.parametrize("hp", CONFIGS[::7], ids=["default", "all"])
@pytest.mark.parametrize("kind", KINDS)
def test_reference_path_equal_to_the_package(kind: str, hp: dict) -> None:
    """The same on the reference path (a chain of torch operations), the fused path's
    reference."""
    with scope(kind):
        run_both(kind, lambda ps: ps, fused=False, **hp)


@pytest.mark.parametrize("kind", KINDS)
def test_two_groups(kind: str) -> None:
    def groups(ps):
        return [
            {"params": ps[:2]},
            {"params": ps[2:], "weight_decay": 0.05, "reps_rel": 1e-3, "eps": 1e-4},
        ]

    with scope(kind):
        ours, _ = run_both(kind, groups, lr=0.9)
    # each group keeps its own r̄, G, η
    if kind == "DoG":
        assert ours.param_groups[0]["G"] != ours.param_groups[1]["G"]


@pytest.mark.parametrize("kind", KINDS)
def test_zero_size_parameter(kind: str) -> None:
    """The package steps a zero-size parameter (its norms are 0); so does adaptlr."""
    start = make_params() + [torch.zeros(0, 3, dtype=torch.float64)]
    ours_cls, ref_cls = KINDS[kind]
    with scope(kind):
        a, b = leaves(start), leaves(start)
        ours, ref = ours_cls(a), ref_cls(b)
        for t in range(STEPS):
            for params, opt in ((a, ours), (b, ref)):
                set_grads(params, t)
                opt.step()
        assert_state_equal(kind, ours, ref)


def recompute(
    start: list[torch.Tensor],
    active: Callable[[int], set[int]],
    layerwise: bool,
    lr: float = 1.0,
    reps_rel: float = 1e-6,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    direction: Callable[[int, torch.Tensor, dict], torch.Tensor] | None = None,
) -> tuple[list[torch.Tensor], dict]:
    """DoG by its formulas, in float64, as adaptlr defines it where the package cannot run: a
    tensor without a gradient takes no part in the step; its x0 is its value at its first
    update; LDoG starts each tensor's r̄ at its own first update. ``direction`` maps the
    (decayed) gradient to what η multiplies (and G sums)."""
    xs = [p.clone() for p in start]
    x0: dict[int, torch.Tensor] = {}
    rbar: dict[object, float] = {}
    big_g: dict[object, float] = {}
    memory: dict = {}
    for t in range(STEPS):
        act = sorted(active(t))
        us = {}
        for i in act:
            g = gradient(xs[i], i, t) + weight_decay * xs[i]
            us[i] = g if direction is None else direction(i, g, memory)
            x0.setdefault(i, xs[i].clone())
        blocks = [[i] for i in act] if layerwise else [act]
        for block in blocks:
            key = block[0] if layerwise else "group"
            g2 = sum(float((us[i] ** 2).sum()) for i in block)
            if key not in rbar:
                p2 = sum(float((x0[i] ** 2).sum()) for i in block)
                rbar[key], big_g[key] = reps_rel * (1 + math.sqrt(p2)), g2 + eps
            else:
                d2 = sum(float(((xs[i] - x0[i]) ** 2).sum()) for i in block)
                rbar[key] = max(rbar[key], math.sqrt(d2))
                big_g[key] += g2
            eta = lr * rbar[key] / math.sqrt(big_g[key])
            for i in block:
                xs[i] = xs[i] - eta * us[i]
    return xs, {"rbar": rbar, "G": big_g}


@pytest.mark.parametrize("kind", KINDS)
def test_none_gradient(kind: str) -> None:
    """The package fails on a None gradient (it reads every p.grad); adaptlr leaves the tensor
    out of that step's sums and update, and starts its x0 at its first update."""

    def active(t: int) -> set[int]:
        late = {1} if t >= 3 and t != 10 else set()  # no gradient until step 3, none at 10
        return {0} | late | ({2} if t % 7 else set())

    hp = {"reps_rel": 1e-4, "weight_decay": 0.01}
    start = make_params()
    with scope(kind):
        a = leaves(start)
        opt = KINDS[kind][0](a, **hp)
        for t in range(STEPS):
            set_grads(a, t, active)
            opt.step()
        want, scalars = recompute(start, active, kind == "LDoG", **hp)
    for p, w in zip(a, want):
        assert rel(p.detach(), w) <= TOL
    if kind == "DoG":
        g = opt.param_groups[0]
        assert rel(g["rbar"], scalars["rbar"]["group"]) <= TOL
        assert rel(g["G"], scalars["G"]["group"]) <= TOL
    else:
        for i, p in enumerate(a):
            assert rel(opt.state[p]["rbar"], scalars["rbar"][i]) <= TOL

    # and the package indeed cannot take one
    b = leaves(start)
    ref = KINDS[kind][1](b, **hp)
    set_grads(b, 0, active)
    with pytest.raises((TypeError, AttributeError)):
        ref.step()


@pytest.mark.parametrize("kind", KINDS)
def test_eps_zero_is_the_papers_algorithm(kind: str) -> None:
    """eps=0: r̄_t = max(r_ε, max_i ‖x_i − x_0‖), η_t = r̄_t / √(Σ‖g_i‖²), x ← x − η_t g_t."""
    start = make_params()
    with scope(kind):
        a = leaves(start)
        opt = KINDS[kind][0](a, eps=0.0, reps_rel=1e-3)
        for t in range(STEPS):
            set_grads(a, t)
            opt.step()
        want, _ = recompute(start, lambda t: {0, 1, 2}, kind == "LDoG", reps_rel=1e-3, eps=0.0)
    for p, w in zip(a, want):
        assert rel(p.detach(), w) <= TOL


def test_zero_gradients_with_eps_zero_and_grad_untouched() -> None:
    """While G = 0 (only zero gradients so far, eps=0) η is 0, where the package stops on an
    assertion; weight decay does not write into p.grad (the package's does)."""
    (w,) = leaves(make_params(shapes=((3,),)))
    x0 = w.detach().clone()
    opt = adaptlr.DoG([w], eps=0.0, reps_rel=1e-2)
    w.grad = torch.zeros(3, dtype=torch.float64)
    opt.step()
    assert torch.equal(w.detach(), x0) and opt.param_groups[0]["eta"] == 0.0
    g = torch.tensor([1.0, -2.0, 2.0], dtype=torch.float64)
    w.grad = g.clone()
    opt.step()  # r̄ = r_ε still (no movement yet), G = ‖g‖² = 9
    eta = 1e-2 * (1 + float(x0.norm())) / 3.0
    assert rel(opt.param_groups[0]["eta"], eta) <= TOL
    assert rel(w.detach(), x0 - eta * g) <= TOL

    (v,) = leaves(make_params(shapes=((3,),)))
    opt = adaptlr.DoG([v], weight_decay=0.5)
    v.grad = g.clone()
    opt.step()
    assert torch.equal(v.grad, g)


@pytest.mark.parametrize("layerwise", [False, True])
def test_step_size_around_momentum(layerwise: bool) -> None:
    """core.dog multiplies whatever reaches it: here heavy-ball momentum, whose norms G sums."""

    def heavy_ball(i: int, g: torch.Tensor, memory: dict) -> torch.Tensor:
        memory[i] = g.clone() if i not in memory else 0.9 * memory[i] + g
        return memory[i]

    start = make_params()
    with default_dtype(torch.float64):
        a = leaves(start)
        rule = core.chain(core.momentum(0.9), core.dog(reps_rel=1e-3, layerwise=layerwise))
        opt = adaptlr.Optimizer(a, rule)
        for t in range(STEPS):
            set_grads(a, t)
            opt.step()
        want, _ = recompute(start, lambda t: {0, 1, 2}, layerwise, 1.0, 1e-3, direction=heavy_ball)
    for p, w in zip(a, want):
        assert rel(p.detach(), w) <= TOL


def test_ldog_float64_under_float32_default() -> None:
    run_both("LDoG", lambda ps: ps)


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_resume_is_bit_identical(kind: str) -> None:
    cls = KINDS[kind][0]
    hp = {"weight_decay": 0.01, "reps_rel": 1e-4}
    start = make_params()
    with scope(kind):
        straight = leaves(start)
        opt = cls(straight, **hp)
        for t in range(STEPS):
            set_grads(straight, t)
            opt.step()

        first = leaves(start)
        half = cls(first, **hp)
        for t in range(STEPS // 2):
            set_grads(first, t)
            half.step()
        buf = io.BytesIO()
        torch.save(half.state_dict(), buf)
        buf.seek(0)
        for sd in (half.state_dict(), torch.load(buf, weights_only=True)):
            resumed = leaves([p.detach() for p in first])
            again = cls(resumed, **hp)
            again.load_state_dict(sd)
            for t in range(STEPS // 2, STEPS):
                set_grads(resumed, t)
                again.step()
            for p, q in zip(resumed, straight):
                assert torch.equal(p, q)
                assert again.state[p].keys() == opt.state[q].keys()
                for k in opt.state[q]:
                    assert torch.equal(again.state[p][k], opt.state[q][k]), k
            for k in ("rbar", "G", "eta", "applied_steps"):
                assert again.param_groups[0].get(k) == opt.param_groups[0].get(k), k


def test_signature_matches_the_package() -> None:
    for ours, ref in KINDS.values():
        want = list(inspect.signature(ref.__init__).parameters.values())[1:]
        got = list(inspect.signature(ours).parameters.values())[: len(want)]
        assert [(p.name, p.default) for p in got] == [(p.name, p.default) for p in want]


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"lr": 0.0}, ValueError, "lr"),
        ({"lr": -1.0}, ValueError, "lr"),
        ({"lr": "1"}, TypeError, "lr"),
        ({"reps_rel": -1e-6}, ValueError, "reps_rel"),
        ({"reps_rel": 0.0}, ValueError, "reps_rel"),
        ({"init_eta": 0.0}, ValueError, "init_eta"),
        ({"init_eta": "big"}, TypeError, "init_eta"),
        ({"weight_decay": -0.1}, ValueError, "weight_decay"),
        ({"eps": -1e-8}, ValueError, "eps"),
        ({"eps": math.nan}, ValueError, "eps"),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_bad_arguments(kind: str, kwargs: dict, error: type, name: str) -> None:
    cls = KINDS[kind][0]
    with pytest.raises(error, match=name):
        cls(make_params(), **kwargs)
    # a bad group is never half-added
    opt = cls(leaves(make_params()[:1]))
    with pytest.raises(error, match=name):
        opt.add_param_group({"params": leaves(make_params()[1:]), **kwargs})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"lr": 0.0}, ValueError, "lr"),
        ({"reps_rel": 0.0}, ValueError, "reps_rel"),
        ({"reps_rel": -1.0, "init_eta": 0.1}, ValueError, "reps_rel"),
        ({"init_eta": -1.0}, ValueError, "init_eta"),
        ({"eps": -1.0}, ValueError, "eps"),
        ({"layerwise": 1}, TypeError, "layerwise"),
    ],
)
def test_part_bad_arguments(kwargs: dict, error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        core.dog(**kwargs)


def test_reps_rel_zero_is_fine_with_init_eta() -> None:
    """The package ignores reps_rel when init_eta is given (it sets it to 0)."""
    a, b = leaves(make_params()), leaves(make_params())
    ours = adaptlr.DoG(a, reps_rel=0.0, init_eta=1e-3)
    ref = dog_ref.DoG(b, reps_rel=0.0, init_eta=1e-3)
    for t in range(5):
        for params, opt in ((a, ours), (b, ref)):
            set_grads(params, t)
            opt.step()
    assert_state_equal("DoG", ours, ref)


# -- the averager ---------------------------------------------------------------------------
def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(), torch.nn.Linear(4, 1)
    ).double()


@pytest.mark.parametrize("gamma", [8.0, 0.0, 2.5])
def test_averager_equal_to_the_package(gamma: float) -> None:
    model = make_model()
    ours = adaptlr.PolynomialDecayAverager(model, gamma=gamma)
    ref = dog_ref.PolynomialDecayAverager(model, gamma=gamma)
    g = torch.Generator().manual_seed(1)
    history = []
    for _ in range(STEPS):
        with torch.no_grad():  # new weights and statistics, as training would write them
            for v in model.state_dict().values():
                if v.is_floating_point():
                    v.copy_(v + 0.1 * torch.randn(v.shape, generator=g, dtype=v.dtype))
                else:
                    v.add_(1)
        ours.step()
        ref.step()
        history.append(model.state_dict()["3.weight"].clone())
        got, want = ours.averaged_model.state_dict(), ref.averaged_model.state_dict()
        assert got.keys() == want.keys()
        for k in want:
            assert torch.equal(got[k], want[k]), k
    assert got["1.num_batches_tracked"] == STEPS
    if gamma == 0.0:  # the uniform average, in closed form
        assert rel(got["3.weight"], torch.stack(history).mean(0)) <= 1e-12
    assert ours.base_model is model and ours.averaged_model is not model
    # its state dict is the package's, and loads both ways
    sd = ours.state_dict()
    assert sd["t"] == ref.state_dict()["t"] == STEPS + 1
    other = adaptlr.PolynomialDecayAverager(make_model(), gamma=gamma)
    other.load_state_dict(ref.state_dict())
    assert all(torch.equal(v, sd["av_model"][k]) for k, v in other.state_dict()["av_model"].items())
    ours.reset()
    ours.step()  # after reset, the average is the model
    for k, v in model.state_dict().items():
        assert torch.equal(ours.averaged_model.state_dict()[k], v), k


def test_averager_bad_arguments() -> None:
    with pytest.raises(ValueError, match="gamma"):
        adaptlr.PolynomialDecayAverager(make_model(), gamma=-1.0)
    with pytest.raises(TypeError, match="gamma"):
        adaptlr.PolynomialDecayAverager(make_model(), gamma="8")
    with pytest.raises(TypeError, match="model"):
        adaptlr.PolynomialDecayAverager([torch.zeros(2)])
    avg = adaptlr.PolynomialDecayAverager(make_model())
    with pytest.raises(ValueError, match="t"):
        avg.load_state_dict({"t": 0, "av_model": avg.averaged_model.state_dict()})
    assert avg.t == 1
