"""The fused path of parts that declare sums (``Part.sums``) and keep scalars once per group
(``Part.shared``): against the reference path (``fused=False``), on numba and on Triton's
interpreter, with at most one host synchronisation per reduction and step.

The parts here are written for the test (the named optimizers have their own tests): a
DoG-like step size (group sums, shared scalars, an x0 buffer that starts as the parameter),
an LDoG-like one (per-tensor sums and scalars), a Schedule-Free-like interpolation (a z
buffer from the parameter, a shared weight sum, no sum) and a D-Adaptation-like estimate
whose sums run over every group of the optimizer.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from dataclasses import dataclass

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import adaptlr  # noqa: E402
from adaptlr import core, kernels  # noqa: E402
from adaptlr.core import Buffer, Part, Scalar, Sum  # noqa: E402
from adaptlr.kernels import FusedFallbackWarning, launch, plan  # noqa: E402
from adaptlr.kernels.programs import program_for  # noqa: E402

from ._parity import SHAPES, rel_err  # noqa: E402


@dataclass(frozen=True, repr=False)
class dog_like(Part):  # noqa: N801 - named as parts are
    """DoG's step size: η = r̄ / √G, r̄ = max ‖x − x0‖, G = Σ‖g‖² (group sums)."""

    reps_rel: float = 1e-6
    eps: float = 1e-8
    buffers = (Buffer("x0", from_param=True),)
    shared = (Scalar("rbar", 0.0), Scalar("G", 0.0))
    sums = (Sum("g2"), Sum("d2"), Sum("p2"))

    def coefficients(self, ctx, s):
        if ctx.sums is None:
            return {"eta": 0.0}, {}
        if ctx.count == 0:
            rbar = self.reps_rel * (1 + math.sqrt(ctx.sums["p2"]))
            big_g = ctx.sums["g2"] + self.eps
        else:
            rbar = max(s["rbar"], math.sqrt(ctx.sums["d2"]))
            big_g = s["G"] + ctx.sums["g2"]
        return {"eta": rbar / math.sqrt(big_g)}, {"rbar": rbar, "G": big_g}

    def sum_terms(self, u, p, buf, c, ops):
        d = p - buf["x0"]
        return {"g2": u * u, "d2": d * d, "p2": p * p}

    def apply(self, u, p, buf, c, ops):
        return -c["eta"] * u, {}


@dataclass(frozen=True, repr=False)
class ldog_like(Part):  # noqa: N801
    """LDoG: DoG per tensor (per-tensor sums and scalars), plus one group sum whose
    first-call coefficient (a per-tensor scalar) enters the term."""

    reps_rel: float = 1e-6
    eps: float = 1e-8
    buffers = (Buffer("x0", from_param=True),)
    scalars = (Scalar("rbar", 0.0), Scalar("G", 0.0))
    sums = (Sum("g2", "tensor"), Sum("d2", "tensor"), Sum("p2", "tensor"), Sum("w", "group"))

    def coefficients(self, ctx, s):
        if ctx.sums is None:
            return {"k": 1.0 / (1.0 + s["G"])}, {}
        if ctx.step == 1:
            rbar = self.reps_rel * (1 + math.sqrt(ctx.sums["p2"]))
            big_g = ctx.sums["g2"] + self.eps
        else:
            rbar = max(s["rbar"], math.sqrt(ctx.sums["d2"]))
            big_g = s["G"] + ctx.sums["g2"]
        eta = rbar / math.sqrt(big_g) / (1.0 + 1e-3 * ctx.sums["w"])
        return {"eta": eta}, {"rbar": rbar, "G": big_g}

    def sum_terms(self, u, p, buf, c, ops):
        d = p - buf["x0"]
        return {"g2": u * u, "d2": d * d, "p2": p * p, "w": c["k"] * ops.abs(u)}

    def apply(self, u, p, buf, c, ops):
        return -c["eta"] * u, {}


@dataclass(frozen=True, repr=False)
class schedule_free_like(Part):  # noqa: N801
    """Schedule-Free's z and averaging: z ← z − γ u, x ← (1 − c) x + c z, c = γ² / Σγ²
    (a buffer from the parameter, a shared weight sum, no sum)."""

    lr: float = 0.05
    buffers = (Buffer("z", from_param=True),)
    shared = (Scalar("weight_sum", 0.0),)

    def coefficients(self, ctx, s):
        ws = s["weight_sum"] + self.lr**2
        return {"lr": self.lr, "c": self.lr**2 / ws}, {"weight_sum": ws}

    def apply(self, u, p, buf, c, ops):
        z = buf["z"] - c["lr"] * u
        return (1.0 - c["c"]) * p + c["c"] * z - p, {"z": z}


@dataclass(frozen=True, repr=False)
class dadapt_like(Part):  # noqa: N801
    """A D-Adaptation-like distance estimate: d ← max(d, Σ d⟨g, x0 − x⟩ / ‖s‖₁), s ← s + d g,
    the sums over every group of the optimizer (shared d in every group)."""

    lr: float = 1.0
    buffers = (Buffer("x0", from_param=True), Buffer("s"))
    shared = (Scalar("d", 1e-3), Scalar("num", 0.0))
    sums = (Sum("gx", "optimizer"), Sum("s1", "optimizer"))

    def coefficients(self, ctx, s):
        d = s["d"]
        if ctx.sums is None:
            return {"d": d}, {}
        num = s["num"] + d * ctx.sums["gx"]
        d_new = max(d, num / ctx.sums["s1"]) if ctx.sums["s1"] > 0 else d
        return {"d": d, "dlr": d * self.lr}, {"d": d_new, "num": num}

    def sum_terms(self, u, p, buf, c, ops):
        return {"gx": u * (buf["x0"] - p), "s1": ops.abs(buf["s"] + c["d"] * u)}

    def apply(self, u, p, buf, c, ops):
        return -c["dlr"] * u, {"s": buf["s"] + c["d"] * u}


def dog_chain():
    return core.chain(dog_like())


def dog_after_adam():  # the sums read the update of the parts before (m/σ)
    return core.chain(core.rule(core.ema(0.9), core.ema_sq(0.999, debias=True)), dog_like())


def clipped_dog():  # two reductions: a global norm, then the sums
    return core.chain(core.clip_by_global_norm(1.0), dog_like())


def ldog_chain():
    return core.chain(core.momentum(0.5), ldog_like())


def schedule_free_chain():
    return core.chain(core.rule(core.momentum(0.0), core.mean_sq()), schedule_free_like())


def dadapt_chain():
    return core.chain(dadapt_like(), core.scale_by_learning_rate(0.5))


CHAINS = {
    "dog": dog_chain,
    "dog-after-adam": dog_after_adam,
    "clipped-dog": clipped_dog,
    "ldog": ldog_chain,
    "schedule-free": schedule_free_chain,
    "dadapt-two-groups": dadapt_chain,
}

#: many tensors of different sizes, one larger than a numba chunk (several chunks per tensor)
MANY = [(7, 13), (0, 3), (300,), (), (2, 2, 2), (40_000,), *[(n,) for n in range(1, 30, 3)]]


def make_params(shapes, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in shapes]


def make(chain, params, fused, groups):
    if groups == 1:
        return adaptlr.Optimizer(params, chain(), fused=fused)
    half = len(params) // 2
    return adaptlr.Optimizer(
        [{"params": params[:half]}, {"params": params[half:]}], chain(), fused=fused
    )


#: _parity.set_grads's events, sooner (each step of a comparison is a kernel launch per
#: bucket, and Triton's interpreter is slow): a None gradient at steps 3 and 7 (parameters 1
#: and 3), parameter 4's first gradient at step 5 (its step count lags behind), then a step
#: with every gradient
NONE_AT = {3: 1, 7: 3}
LATE, LATE_UNTIL = 4, 5
STEPS = 9


def set_grads(params, step, seed=1):
    """As _parity.set_grads (gradients that depend on the parameters, plus fixed noise), with
    the events of :data:`NONE_AT` and :data:`LATE_UNTIL`."""
    gen = torch.Generator().manual_seed(seed + step)
    for i, p in enumerate(params):
        noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        skip = NONE_AT.get(step) == i or (i == LATE and step < LATE_UNTIL)
        p.grad = None if skip else (0.5 * p.detach() + noise)


def run_pair(chain, shapes, dtype, steps, groups):
    """The same parameters trained fused (the fast path required: a fallback warning is an
    error) and on the reference path; gradients as :func:`set_grads` makes them (a None
    gradient on some steps, one parameter without any before step 5)."""
    pa, pb = make_params(shapes, dtype), make_params(shapes, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FusedFallbackWarning)
        fused, ref = make(chain, pa, True, groups), make(chain, pb, False, groups)
        for step in range(steps):
            for opt, ps in ((fused, pa), (ref, pb)):
                set_grads(ps, step)
                opt.step()
    return fused, ref, pa, pb


def assert_same(fused, ref, pa, pb, tol):
    starts = make_params([tuple(p.shape) for p in pa], pa[0].dtype)
    for i, (a, b, s) in enumerate(zip(pa, pb, starts)):
        assert rel_err(a.detach(), b.detach(), s) <= tol, f"parameter {i}"
        sa, sb = fused.state[a], ref.state[b]
        assert sa.keys() == sb.keys()
        for key, vb in sb.items():
            assert sa[key].dtype == vb.dtype and sa[key].shape == vb.shape, key
            assert rel_err(sa[key], vb) <= tol, f"parameter {i}, state {key!r}"
    for ga, gb in zip(fused.param_groups, ref.param_groups):
        for key in ref.transform_for(gb).shared_keys:  # the estimates, where users read them
            assert isinstance(ga[key], float), key
            assert abs(ga[key] - gb[key]) <= tol * max(abs(gb[key]), 1e-30), key
        assert ga["applied_steps"] == gb["applied_steps"]


def assert_took_fast_path(opt):
    """Every group stepped on flat buffers (their state entries are views of the plan's)."""
    assert len(opt._fast_path.plans) == len(opt.param_groups)
    for group in opt.param_groups:
        (p_plan,) = [pl for pl in opt._fast_path.plans.values() if pl.group is group]
        for p in group["params"]:
            if p.grad is not None and p.numel():
                st = opt.state[p]
                for key, view in p_plan.views[id(p)].items():
                    assert st[key] is view


TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(CHAINS))
def test_numba_equals_reference(name, dtype):
    """MANY in two groups: what _parity.SHAPES has (a zero-size, a 0-d and a 3-d tensor, a
    None gradient, a late one), plus a tensor of several chunks; the parts' kernels run per
    group (one group is Triton's case below, the same generated code)."""
    fused, ref, pa, pb = run_pair(CHAINS[name], MANY, dtype, STEPS, 2)
    assert_same(fused, ref, pa, pb, TOL[dtype])
    assert_took_fast_path(fused)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("name", list(CHAINS))
def test_low_precision_equals_reference(name, dtype):
    """bf16/fp16 parameters, float32 state: the terms computed as torch computes them."""
    fused, ref, pa, pb = run_pair(CHAINS[name], SHAPES, dtype, STEPS, 2)
    assert_same(fused, ref, pa, pb, 1e-6)


def test_a_measured_step_of_a_summing_chain():
    """request_stats on a fused DoG-like step: the measuring kernel runs after the sums."""
    pa, pb = make_params(SHAPES, torch.float64), make_params(SHAPES, torch.float64)
    fused, ref = make(dog_chain, pa, True, 2), make(dog_chain, pb, False, 2)
    for step in range(4):
        for opt, ps in ((fused, pa), (ref, pb)):
            if step == 3:
                opt.request_stats()
            set_grads(ps, step)
            opt.step()
    for a, b in zip(fused.last_stats, ref.last_stats):
        assert a.fused and not b.fused
        for key in ("grad_sq", "update_sq", "param_sq"):
            assert getattr(a, key) == pytest.approx(getattr(b, key), rel=1e-12), key
    assert_same(fused, ref, pa, pb, 1e-10)


def test_traced_reductions():
    """The sums are traced into reductions (terms and scopes, in slot order: the clipping's
    sum of squares before DoG's sums), and a from_param buffer's first-call coefficients get
    their own columns."""
    prog = program_for(clipped_dog())
    assert [(r.slot, r.names, r.scopes) for r in prog.reductions] == [
        (0, ("sq",), ("group",)),
        (1, ("g2", "d2", "p2"), ("group", "group", "group")),
    ]
    assert prog.pre_keys == [(1, "eta")] and (1, "eta") in prog.coef_keys
    ldog = program_for(ldog_chain()).reductions[0]
    assert ldog.scopes == ("tensor", "tensor", "tensor", "group")
    assert ldog.per_tensor == [0, 1, 2]


def test_programs_differ_by_the_scope_of_their_sums():
    """Two chains whose traced graphs are the same but whose sums run over other elements
    (DoG and LDoG) must not share a program: its reduction kernels sum differently."""

    @dataclass(frozen=True, repr=False)
    class per_tensor(dog_like):  # noqa: N801
        sums = (Sum("g2", "tensor"), Sum("d2", "tensor"), Sum("p2", "tensor"))

    group, tensor = program_for(dog_chain()), program_for(core.chain(per_tensor()))
    assert group is not tensor
    assert group.reductions[0].scopes == ("group",) * 3
    assert tensor.reductions[0].scopes == ("tensor",) * 3


def test_from_param_buffers_start_as_the_parameter():
    p = torch.randn(5, dtype=torch.float64, requires_grad=True)
    start = p.detach().clone()
    opt = adaptlr.Optimizer([p], dog_chain())
    p.grad = torch.ones_like(p)
    opt.step()
    assert torch.equal(opt.state[p]["x0"], start)  # the fused state: a view of the plan's
    assert not torch.equal(p.detach(), start)


def _float64_sums_case(shapes, fused=True):
    """Two DoG-like steps (fused, or on the reference path) of float32 parameters whose
    gradients are ~1e25 (their squares, ~1e50, overflow float32); returns the group's G and r̄
    and their values recomputed from float64 copies."""
    gen = torch.Generator().manual_seed(3)
    ps = [torch.randn(s, generator=gen).requires_grad_() for s in shapes]
    x0 = [p.detach().double() for p in ps]
    opt = adaptlr.Optimizer(ps, dog_chain(), fused=fused)
    part = dog_like()
    want_g, want_r = 0.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", FusedFallbackWarning)
        for step in range(2):
            grads = [torch.randn(p.shape, generator=gen) * 1e25 for p in ps]
            before = [p.detach().double() for p in ps]
            for p, g in zip(ps, grads):
                p.grad = g
            opt.step()
            g2 = sum(float((g.double() ** 2).sum()) for g in grads)
            if step == 0:
                p2 = sum(float((p**2).sum()) for p in before)
                want_r, want_g = part.reps_rel * (1 + math.sqrt(p2)), g2 + part.eps
            else:
                d2 = sum(float(((p - x) ** 2).sum()) for p, x in zip(before, x0))
                want_r, want_g = max(want_r, math.sqrt(d2)), want_g + g2
    if fused:
        assert_took_fast_path(opt)
    assert all(bool(torch.isfinite(p).all()) for p in ps)
    group = opt.param_groups[0]
    return (group["G"], group["rbar"]), (want_g, want_r)


def test_sum_terms_are_computed_in_float64_reference_path():
    """The reference path forms the terms in float64 too (``core.base``'s sums)."""
    got, want = _float64_sums_case([(300,), (7, 13)], fused=False)
    assert math.isfinite(got[0]) and want[0] > 1e50
    assert got == pytest.approx(want, rel=1e-12)


def test_sum_terms_are_computed_in_float64_numba():
    """A sum term is computed in float64 from the float32 values, not in float32 and then
    widened (u·u of a gradient of 1e25 would be inf): finite, and as float64 computes it."""
    got, want = _float64_sums_case([(300,), (7, 13), (40_000,)])  # (several chunks)
    assert math.isfinite(got[0]) and want[0] > 1e50
    assert got == pytest.approx(want, rel=1e-12)


class Syncs:
    """Counts the host reads adaptlr's own code makes of tensors (``.item()``, ``float()``,
    ``.cpu()``, ``.tolist()``): each waits for the device. Triton's interpreter reads its
    arguments itself; only calls from adaptlr's files count."""

    METHODS = ("item", "cpu", "tolist", "__float__")

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        self.readbacks = 0
        root = os.path.dirname(adaptlr.__file__)
        for name in self.METHODS:
            real = getattr(torch.Tensor, name)

            def spy(t, *a, _real=real, _name=name, **k):
                if sys._getframe(1).f_code.co_filename.startswith(root):
                    self.calls.append(_name)
                return _real(t, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, spy)
        read_back = launch.read_back

        def counted(values):
            self.readbacks += 1
            return read_back(values)

        monkeypatch.setattr(launch, "read_back", counted)
        from adaptlr.kernels import fastpath, step

        monkeypatch.setattr(step.launch, "read_back", counted)
        monkeypatch.setattr(fastpath, "read_back", counted)


def _steady_steps(chain, groups, count_from, steps, monkeypatch):
    """Step a fused optimizer (every gradient present, so no plan is rebuilt after the first
    step); return the host reads of the steps from ``count_from`` on."""
    ps = make_params([(40,), (3, 5), (0,), (17,)], torch.float32)
    opt = make(chain, ps, True, groups)
    syncs = None
    with warnings.catch_warnings():
        warnings.simplefilter("error", FusedFallbackWarning)
        for step in range(steps):
            if step == count_from:
                syncs = Syncs(monkeypatch)
            for i, p in enumerate(ps):
                p.grad = torch.full_like(p, 0.1 * (i + 1)) + 0.01 * step * p.detach()
            opt.step()
    assert_took_fast_path(opt)
    return syncs


# -- Triton's interpreter ---------------------------------------------------------------------

triton_only = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="TRITON_INTERPRET is not 1 here"
)


@pytest.fixture
def triton_on_cpu(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setattr(plan, "TRITON_BLOCK", 16)  # several programs per tensor, masked tails
    with kernels.use_triton_on_cpu():
        yield


@triton_only
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(CHAINS))
def test_triton_equals_reference(name, dtype, triton_on_cpu):
    groups = 2 if name.startswith("dadapt") else 1
    fused, ref, pa, pb = run_pair(CHAINS[name], SHAPES, dtype, STEPS, groups)
    assert_same(fused, ref, pa, pb, TOL[dtype])
    assert_took_fast_path(fused)


@triton_only
def test_sum_terms_are_computed_in_float64_triton(triton_on_cpu):
    """As test_sum_terms_are_computed_in_float64_numba, on Triton's kernels."""
    got, want = _float64_sums_case([(300,), (7, 13), (37,)])
    assert math.isfinite(got[0]) and want[0] > 1e50
    assert got == pytest.approx(want, rel=1e-12)


@triton_only
@pytest.mark.parametrize(
    "name, groups, per_step",
    [
        ("dog", 1, 1),
        ("ldog", 1, 1),  # per-tensor sums come back with the group's, in the same read
        ("schedule-free", 1, 0),  # shared scalars without a sum: nothing to read
        ("clipped-dog", 1, 2),  # two reductions, one after the other: one read each
        ("dadapt-two-groups", 2, 1),  # every group's share read back at once
    ],
)
def test_one_host_read_per_reduction(name, groups, per_step, triton_on_cpu, monkeypatch):
    steps, count_from = 6, 2
    syncs = _steady_steps(CHAINS[name], groups, count_from, steps, monkeypatch)
    counted = steps - count_from
    assert syncs.readbacks == per_step * counted
    # the reads back are the only host reads adaptlr makes in a step (one .cpu() each)
    assert syncs.calls == ["cpu"] * (per_step * counted)


def test_numba_reads_nothing_from_a_device(monkeypatch):
    """On the CPU the kernels' sums are host memory: no tensor is read per step."""
    syncs = _steady_steps(dog_chain, 1, 2, 6, monkeypatch)
    assert syncs.calls == []
    assert syncs.readbacks == 4  # one (free) read back per step, of numpy arrays


def test_fused_true_warns_when_it_cannot_fuse():
    """A part whose sum term cannot be traced: the reference path runs, with a warning (never
    silently), and the result is the reference's."""

    @dataclass(frozen=True, repr=False)
    class powered(dog_like):  # noqa: N801
        def sum_terms(self, u, p, buf, c, ops):
            terms = super().sum_terms(u, p, buf, c, ops)
            return {**terms, "g2": terms["g2"] ** 1.0}  # torch computes it; a kernel cannot

    pa = make_params([(4,), (3,)], torch.float64)
    pb = make_params([(4,), (3,)], torch.float64)
    fused = adaptlr.Optimizer(pa, core.chain(powered()), fused=True)
    ref = adaptlr.Optimizer(pb, core.chain(dog_like()), fused=False)
    for step in range(3):
        for ps, opt in ((pa, fused), (pb, ref)):
            set_grads(ps, 20 + step)
            if step == 0 and opt is fused:
                with pytest.warns(FusedFallbackWarning, match="exponent other than 2"):
                    opt.step()
            else:
                opt.step()
    assert fused._fast_path.plans == {}
    for a, b in zip(pa, pb):
        assert torch.equal(a, b)


# -- FSDP2: the sums over every rank's shard ----------------------------------------------------

WORLD_CHAINS = {"dog": dog_chain, "ldog": ldog_chain}


def _world_model() -> torch.nn.Module:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for _ in range(3):
        layers += [torch.nn.Linear(8, 8, bias=False), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers).double()


def _world_train(model, opt, rank: int, world: int, steps: int = 8) -> None:
    for t in range(steps):
        gen = torch.Generator().manual_seed(1000 + t)
        x = torch.randn(8, 8, generator=gen, dtype=torch.float64)
        y = torch.randn(8, 8, generator=gen, dtype=torch.float64)
        n = 8 // world
        opt.zero_grad()
        out = model(x[rank * n : (rank + 1) * n])
        torch.nn.functional.mse_loss(out, y[rank * n : (rank + 1) * n]).backward()
        opt.step()


def _world2(rank: int, port: int, out: str, cache: str) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # never leave this machine
    # this process's kernel cache (written atomically): the ranks load the kernels the tests
    # before compiled instead of compiling them again, each
    os.environ["ADAPTLR_CACHE_DIR"] = cache
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        results = {}
        for name, chain in WORLD_CHAINS.items():
            mesh = dist.device_mesh.init_device_mesh("cpu", (2,))
            model = _world_model()
            for m in model:
                if isinstance(m, torch.nn.Linear):
                    fully_shard(m, mesh=mesh)
            fully_shard(model, mesh=mesh)
            with warnings.catch_warnings():
                warnings.simplefilter("error", FusedFallbackWarning)
                opt = adaptlr.Optimizer(model.parameters(), chain(), fused=True)
                _world_train(model, opt, rank, 2)
            full = [p.full_tensor().detach().clone() for p in model.parameters()]
            group = {k: opt.param_groups[0][k] for k in chain().shared_keys}
            results[name] = (full, group, len(opt._fast_path.plans))
        if rank == 0:
            torch.save(results, f"{out}/world2.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_fsdp2_sums_over_every_shard_equal_one_process(tmp_path):
    """DTensor (FSDP2) parameters: each rank's kernels sum its shard, and the group's (and
    each tensor's) sums are added over the mesh, so that every rank keeps the estimate one
    process would (against the reference path in one process)."""
    import socket

    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_gloo_available():
        pytest.skip("torch built without gloo")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from adaptlr.kernels import backends

    cache = str(backends.cache_dir())
    mp.spawn(_world2, args=(port, str(tmp_path), cache), nprocs=2, join=True)
    got = torch.load(tmp_path / "world2.pt")
    for name, chain in WORLD_CHAINS.items():
        model = _world_model()
        opt = adaptlr.Optimizer(model.parameters(), chain(), fused=False)
        _world_train(model, opt, 0, 1)
        full, group, plans = got[name]
        assert plans == 1, name  # the fast path held on the shards
        for a, b in zip(full, model.parameters()):
            assert rel_err(a, b.detach()) <= 1e-12, name
        for key, value in group.items():
            assert value == pytest.approx(opt.param_groups[0][key], rel=1e-12), (name, key)
