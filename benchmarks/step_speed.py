"""One optimizer step, side by side: adaptlr's fused step against torch.optim's implementations.

Measures in one run, on one machine:

- the streaming bandwidth (a large in-place copy: bytes read + written per second);
- for each algorithm: adaptlr's step (fused, the default) and torch.optim's for-loop,
  foreach and fused steps where torch has them, in milliseconds, as a ratio to the algorithm's
  own bandwidth floor (bytes it must move / bandwidth) and to torch's fastest;
- for three shapes: 48M parameters in 96 tensors, 10,000 tensors x 1,000, 200 tensors x 10;
  and Adam alone for 48M parameters in 96 convolution weights laid out ``channels_last``
  (dense but not contiguous, as in a model moved with ``.to(memory_format=...)``);
- the peak extra memory of one step (48M parameters; CPU: a child process per implementation,
  peak RSS with glibc's mmap threshold fixed so that freed blocks are returned; CUDA:
  ``max_memory_allocated``);
- the first step's compile time in a fresh kernel cache and in a second process;
- the learning-rate-free optimizers (Prodigy, D-Adaptation, DoG, Schedule-Free) against their
  floors (the bytes of every pass: the reductions before the update, and the update) and
  against their reference packages' own steps, in a table of their own per shape.

Usage::

    python benchmarks/step_speed.py                 # CPU, writes docs/benchmarks.md
    python benchmarks/step_speed.py --device cuda --big 1e9 --out docs/benchmarks-cuda.md
    python benchmarks/step_speed.py --quick         # small sizes, a smoke test
    python benchmarks/step_speed.py --lr-free       # those tables only: docs/benchmarks-lr-free.md
    python benchmarks/step_speed.py --lr-free --only DoG,Prodigy --out /tmp/lr.md
    python benchmarks/step_speed.py --course        # AdaBound, AMSBound, SGDW, SWATS: course.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import adaptlr
from adaptlr import core
from adaptlr.kernels import program_for

ROOT = Path(__file__).resolve().parents[1]
#: wall-clock time (time.time()) after which no further rows are measured (gpu_check sets it)
DEADLINE: float | None = None


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this checkout's ``src`` importable (adaptlr need
    not be installed, e.g. on a lent GPU machine)."""
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, **extra)


def past_deadline() -> bool:
    return DEADLINE is not None and time.time() > DEADLINE


@dataclass
class Algo:
    name: str
    ours: Callable[..., torch.optim.Optimizer]
    torch_cls: type | None
    cfg: dict[str, Any]
    torch_fused: bool = False  # torch has fused=True for it on this device
    #: a learning-rate-free optimizer's reference package and class ("module:Class"), whose
    #: own step is timed beside adaptlr's where the package is installed
    reference: str | None = None
    #: what the reference class takes besides ``cfg`` (AMSBound is adabound's amsbound=True)
    reference_cfg: dict[str, Any] = field(default_factory=dict)


def user_chain() -> core.Transform:
    return core.chain(
        core.clip_by_value(1.0),
        core.rule(core.momentum(0.9), core.mean_sq()),
        core.scale_by_learning_rate(0.01),
    )


def algorithms(device: str) -> list[Algo]:
    cuda = device == "cuda"
    return [
        Algo("Adam", adaptlr.Adam, torch.optim.Adam, {"lr": 1e-3}, True),
        Algo("AdamW", adaptlr.AdamW, torch.optim.AdamW, {"lr": 1e-3}, True),
        Algo("SGD momentum", adaptlr.SGD, torch.optim.SGD, {"lr": 0.01, "momentum": 0.9}, True),
        Algo("Adagrad", adaptlr.Adagrad, torch.optim.Adagrad, {"lr": 0.01}, not cuda),
        Algo("RMSprop", adaptlr.RMSprop, torch.optim.RMSprop, {"lr": 0.01}),
        Algo("NAdam", adaptlr.NAdam, torch.optim.NAdam, {"lr": 1e-3}),
        Algo("RAdam", adaptlr.RAdam, torch.optim.RAdam, {"lr": 1e-3}),
        Algo("RootMeanSquare", adaptlr.RootMeanSquare, None, {"lr": 0.01}),
        Algo("chain of three parts", _user, None, {}),
    ]


def lr_free_algorithms() -> list[Algo]:
    """The learning-rate-free optimizers, each with its package's defaults (lr 1.0 where the
    package's default is 1.0: Prodigy, D-Adaptation, DoG, SGDScheduleFree; 0.0025 for the
    other Schedule-Free ones), against that package's own step; and adaptlr.Auto."""
    return [
        Algo("Prodigy", adaptlr.Prodigy, None, {"lr": 1.0}, reference="prodigyopt:Prodigy"),
        Algo(
            "DAdaptAdam", adaptlr.DAdaptAdam, None, {"lr": 1.0},
            reference="dadaptation:DAdaptAdam",
        ),
        Algo("DAdaptSGD", adaptlr.DAdaptSGD, None, {"lr": 1.0}, reference="dadaptation:DAdaptSGD"),
        Algo(
            "DAdaptAdaGrad", adaptlr.DAdaptAdaGrad, None, {"lr": 1.0},
            reference="dadaptation:DAdaptAdaGrad",
        ),
        Algo("DoG", adaptlr.DoG, None, {"lr": 1.0}, reference="dog:DoG"),
        Algo("LDoG", adaptlr.LDoG, None, {"lr": 1.0}, reference="dog:LDoG"),
        Algo(
            "AdamWScheduleFree", adaptlr.AdamWScheduleFree, None, {"lr": 0.0025},
            reference="schedulefree:AdamWScheduleFree",
        ),
        Algo(
            "SGDScheduleFree", adaptlr.SGDScheduleFree, None, {"lr": 1.0},
            reference="schedulefree:SGDScheduleFree",
        ),
        Algo(
            "RAdamScheduleFree", adaptlr.RAdamScheduleFree, None, {"lr": 0.0025},
            reference="schedulefree:RAdamScheduleFree",
        ),
        Algo("Auto", adaptlr.Auto, None, {"lr": 1.0}),  # adaptlr's own: no package to compare
    ]  # fmt: skip


def course_algorithms() -> list[Algo]:
    """The course's optimizers after Adam (issue 19), with their packages' defaults, against
    those packages' steps: AdaBound and AMSBound (adabound), SGDW (torch-optimizer, with
    momentum 0.9 and weight decay 1e-2: decoupled decay is what it adds to SGD) and SWATS
    (torch-optimizer)."""
    return [
        Algo("AdaBound", adaptlr.AdaBound, None, {"lr": 1e-3}, reference="adabound:AdaBound"),
        Algo(
            "AMSBound", adaptlr.AMSBound, None, {"lr": 1e-3},
            reference="adabound:AdaBound", reference_cfg={"amsbound": True},
        ),
        Algo(
            "SGDW", adaptlr.SGDW, None, {"lr": 1e-2, "momentum": 0.9, "weight_decay": 1e-2},
            reference="torch_optimizer:SGDW",
        ),
        # in its Adam phase (the switch needs the estimate to settle, which 48M random
        # gradients never let it): a reduction pass for the projection, then the update
        Algo("SWATS", adaptlr.SWATS, None, {"lr": 1e-3}, reference="torch_optimizer:SWATS"),
    ]  # fmt: skip


def reference_class(algo: Algo) -> type | None:
    """The reference package's optimizer class, or ``None`` where the package is missing."""
    if algo.reference is None:
        return None
    module, name = algo.reference.split(":")
    try:
        return getattr(__import__(module), name)
    except ImportError:
        return None


def _user(params: Any, **kw: Any) -> torch.optim.Optimizer:
    return adaptlr.Optimizer(params, user_chain(), **kw)


def floor_bytes(algo: Algo, itemsize: int) -> int:
    """Bytes per parameter the algorithm must move: what the traced program's passes load and
    store. Each reduction (a pass before the update, for a global norm or a part's sums)
    loads what its terms read; the update pass loads what the new parameter and buffers read
    and stores the parameter and every buffer it changes."""
    opt = algo.ours([torch.zeros(1, requires_grad=True)], **algo.cfg)
    t = opt.transform_for(opt.param_groups[0])
    prog = program_for(t)
    roots = [prog.new_param, *prog.stores.values()]
    moved = len(prog.loads(*roots)) + 1 + len(prog.stores)
    moved += sum(len(prog.loads(*red.terms)) for red in prog.reductions)
    return moved * itemsize


def passes(algo: Algo) -> str:
    """The passes of the algorithm's fused step, as the floor counts them: per pass the
    float32 words per parameter it loads (+ stores)."""
    opt = algo.ours([torch.zeros(1, requires_grad=True)], **algo.cfg)
    prog = program_for(opt.transform_for(opt.param_groups[0]))
    words = [str(len(prog.loads(*red.terms))) for red in prog.reductions]
    roots = [prog.new_param, *prog.stores.values()]
    words.append(f"{len(prog.loads(*roots))}+{1 + len(prog.stores)}")
    return ", ".join(words)


# -- measurement ---------------------------------------------------------------------------
def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timeit(fn: Callable[[], Any], device: str, reps: int, warmup: int = 2) -> float:
    """Median milliseconds of ``fn`` (CUDA events on a GPU); fewer repetitions when slow."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    sync(device)
    if (time.perf_counter() - t0) / warmup > 0.5:
        reps = 2
    times = []
    for _ in range(reps):
        if device == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bandwidth(device: str, n: int) -> float:
    """Streaming bandwidth: bytes read + written per second, the best of an out-of-place copy
    and an in-place scaling of ``n`` float32 (each the median of 10)."""
    a = torch.randn(n, device=device)
    b = torch.zeros_like(a)
    copy_ms = timeit(lambda: b.copy_(a), device, reps=10)
    scale_ms = timeit(lambda: a.mul_(1.0000001), device, reps=10)
    return 2 * a.numel() * a.element_size() / (min(copy_ms, scale_ms) * 1e-3)


#: the shape of the convolution weights of the channels_last case, for n elements per tensor
def conv_shape(n: int) -> tuple[int, int, int, int]:
    return (n // 16, 4, 2, 2)


def make_params(
    total: int, count: int, device: str, channels_last: bool = False
) -> list[torch.Tensor]:
    size = total // count
    if channels_last:
        cl = torch.channels_last
        ps = [torch.randn(conv_shape(size), device=device).contiguous(memory_format=cl)]
        ps += [torch.empty_like(ps[0]).normal_() for _ in range(count - 1)]
        ps = [p.requires_grad_() for p in ps]
    else:
        ps = [torch.randn(size, device=device).requires_grad_() for _ in range(count)]
    for p in ps:
        p.grad = torch.randn_like(p) * 1e-2  # (laid out as p, as autograd does)
    return ps


REFERENCE = "reference package"


def _in_train_mode(opt: Any) -> Any:
    """Schedule-Free's optimizers step in train mode only (the packages start in eval)."""
    if hasattr(opt, "train"):
        opt.train()
    return opt


def implementations(algo: Algo) -> list[tuple[str, Callable[[list], Any]]]:
    impls: list[tuple[str, Callable[[list], Any]]] = [
        ("adaptlr", lambda ps: _in_train_mode(algo.ours(ps, **algo.cfg)))
    ]
    ref = reference_class(algo)
    if ref is not None:
        impls.append(
            (REFERENCE, lambda ps: _in_train_mode(ref(ps, **algo.cfg, **algo.reference_cfg)))
        )
    if algo.torch_cls is not None:
        cls = algo.torch_cls
        impls.append(("torch for-loop", lambda ps: cls(ps, **algo.cfg, foreach=False)))
        impls.append(("torch foreach", lambda ps: cls(ps, **algo.cfg, foreach=True)))
        if algo.torch_fused:
            impls.append(("torch fused", lambda ps: cls(ps, **algo.cfg, fused=True)))
    return impls


def time_step(make: Callable[[list], Any], ps: list, device: str, reps: int) -> float:
    opt = make(ps)
    try:
        return timeit(opt.step, device, reps=reps)
    finally:
        del opt


FLOOR = "floor"


def time_interleaved(
    impls: list[tuple[str, Callable[[list], Any]]],
    total: int,
    count: int,
    reps: int,
    floor_bytes: int = 0,
    channels_last: bool = False,
) -> tuple[dict[str, float | None], dict[str, float]]:
    """CPU: every implementation on its own parameters, one step of each per round.

    Returns each one's median milliseconds and, as medians over rounds of ratios within a
    round, adaptlr's time over torch's fastest implementation's (``"fastest"``) and over the
    floor (``"floor"``). With ``floor_bytes``, each round also times the floor itself: an
    in-place scaling of a float32 tensor that reads and writes that many bytes (its median
    is ``times["floor"]``). On this noisy 2-core machine a neighbour's load shifts times by
    tens of percent within seconds: timing the implementations one after another, each for a
    few steps, moved the Adam ratio from 1.01 to 1.16 between two runs, and a bandwidth probed
    once before the table put adaptlr at 0.58 of its floor; steps taken side by side in rounds
    share the noise. An implementation whose step takes over half a second (a reference
    package's for-loop over 48M parameters can take seconds) steps in every k-th round only,
    at least 5 times; its ratio is over the rounds it stepped in.
    """
    opts: dict[str, Any] = {}
    every: dict[str, int] = {}
    if floor_bytes:
        probe = torch.randn(floor_bytes // 8)
        opts[FLOOR] = type("Probe", (), {"step": lambda self: probe.mul_(1.0000001)})()
    for impl, make in impls:
        try:
            opts[impl] = make(make_params(total, count, "cpu", channels_last))
            for _ in range(2):  # warm-up: state allocated, kernels compiled
                t0 = time.perf_counter()
                opts[impl].step()
            slow = time.perf_counter() - t0 > 0.5
            every[impl] = max(1, reps // 5) if slow else 1
        except Exception as exc:  # e.g. a torch implementation refused
            print(f"  {impl}: {type(exc).__name__}: {exc}", file=sys.stderr)
            opts.pop(impl, None)
    # per implementation, its milliseconds by round (the rounds it stepped in)
    times: dict[str, dict[int, float]] = {k: {} for k in opts}
    names = list(opts)
    for r in range(reps):
        # the order rotates: no implementation always runs right after the same other one
        for impl in names[r % len(names) :] + names[: r % len(names)]:
            if r % every.get(impl, 1):
                continue
            t0 = time.perf_counter()
            opts[impl].step()
            times[impl][r] = (time.perf_counter() - t0) * 1e3
    med: dict[str, float | None] = {k: statistics.median(v.values()) for k, v in times.items()}
    for impl, _ in impls:
        med.setdefault(impl, None)
    ratios: dict[str, float] = {}
    ours = times.get("adaptlr")
    theirs = [k for k in times if k not in ("adaptlr", FLOOR)]

    def paired(other: dict[int, float]) -> float:
        assert ours is not None
        return statistics.median(ours[r] / other[r] for r in other if r in ours)

    if ours and theirs:
        fastest = min(theirs, key=lambda k: med[k] or float("inf"))
        ratios["fastest"] = paired(times[fastest])
    if ours and FLOOR in times:
        ratios["floor"] = paired(times[FLOOR])
    return med, ratios


# -- peak memory (CPU: a child process per implementation) --------------------------------
CHILD = r"""
import os, sys, json, torch
sys.path.insert(0, {bench!r})
import step_speed as s
algo = [a for a in s.algorithms("cpu") if a.name == {algo!r}][0]
make = dict(s.implementations(algo))[{impl!r}]
ps = s.make_params({total}, {count}, "cpu")
opt = make(ps)
opt.step(); opt.step()
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
before = rss("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM)
opt.step()
print(json.dumps(max(0, rss("VmHWM:") - before)))
"""


def peak_extra_cpu(algo: Algo, impl: str, total: int, count: int) -> int | None:
    env = child_env(MALLOC_MMAP_THRESHOLD_="65536")
    code = CHILD.format(
        bench=str(Path(__file__).parent), algo=algo.name, impl=impl, total=total, count=count
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
        )
        return int(json.loads(out.stdout.strip().splitlines()[-1]))
    except Exception:
        return None


def peak_extra_cuda(make: Callable[[list], Any], ps: list) -> int:
    opt = make(ps)
    opt.step()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    opt.step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


# -- compile time --------------------------------------------------------------------------
COMPILE = r"""
import time, torch, adaptlr
ps = [torch.randn(1000, device={device!r}).requires_grad_() for _ in range(4)]
for p in ps:
    p.grad = torch.randn_like(p)
opt = adaptlr.Adam(ps, lr=1e-3)
t0 = time.perf_counter()
opt.step()
if {device!r} == "cuda":
    torch.cuda.synchronize()
print(time.perf_counter() - t0)
"""


def compile_times(device: str) -> tuple[float, float] | None:
    with tempfile.TemporaryDirectory() as d:
        env = child_env(ADAPTLR_CACHE_DIR=d)
        if device == "cuda":
            env["TRITON_CACHE_DIR"] = os.path.join(d, "triton")
        try:
            first, second = (
                float(
                    subprocess.run(
                        [sys.executable, "-c", COMPILE.format(device=device)],
                        env=env, capture_output=True, text=True, timeout=600, check=True,
                    ).stdout.strip().splitlines()[-1]
                )
                for _ in range(2)
            )  # fmt: skip
            return first, second
        except Exception:
            return None


# -- the report ----------------------------------------------------------------------------
TORCH_HEAD = [
    "| algorithm | floor ms | adaptlr ms | torch for-loop | torch foreach | torch fused "
    "| adaptlr / floor | adaptlr / torch's fastest |",
    "|---|---|---|---|---|---|---|---|",
]
LR_FREE_HEAD = [
    "| algorithm | passes: words per parameter | floor ms | adaptlr ms | reference package ms "
    "| adaptlr / floor | adaptlr / reference |",
    "|---|---|---|---|---|---|---|",
]


def measure(
    algo: Algo, count: int, per: int, reps: int, bw: float, device: str, channels_last: bool
) -> tuple[float, dict[str, float | None], dict[str, float]]:
    """One algorithm on one shape: its floor (ms), each implementation's median ms, and
    adaptlr's ratios to the floor (``"floor"``) and to the fastest other (``"fastest"``)."""
    nbytes = floor_bytes(algo, 4) * count * per
    floor_ms = nbytes / bw * 1e3
    res: dict[str, float | None] = {}
    paired: dict[str, float] = {}
    if device == "cpu":
        # a large floor is timed in the rounds; a small one (a few µs) from bandwidth
        probe = nbytes if nbytes >= 1e8 else 0
        res, paired = time_interleaved(
            implementations(algo), count * per, count, reps, probe, channels_last
        )
        floor_ms = res.pop(FLOOR, None) or floor_ms
    else:  # CUDA events time the device alone; one implementation's memory at a time
        for impl, make in implementations(algo):
            ps = make_params(count * per, count, device, channels_last)
            try:
                res[impl] = time_step(make, ps, device, reps)
            except Exception as exc:  # e.g. a torch implementation refused
                print(f"  {algo.name} {impl}: {type(exc).__name__}: {exc}", file=sys.stderr)
                res[impl] = None
            del ps
    ours = res.get("adaptlr")
    theirs = [v for k, v in res.items() if k != "adaptlr" and v is not None]
    fastest = min(theirs) if theirs else None
    if ours is not None and fastest is not None:
        paired.setdefault("fastest", ours / fastest)
    if ours is not None:
        paired.setdefault("floor", ours / floor_ms)
    return floor_ms, res, paired


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _ratio(paired: dict[str, float], key: str) -> str:
    return f"{paired[key]:.2f}" if key in paired else "—"


def pass_table(algos: list[Algo], total: int, count: int, reps: int) -> list[str]:
    """CPU: where each learning-rate-free optimizer's fused step spends its time, pass by pass
    (each kernel launch timed), against the pass's share of the floor (the in-place probe
    moving the whole step's bytes, timed in the same round, times the pass's share of the
    bytes); and for each reduction pass, torch's own ``sum`` reading the same bytes (a
    read-only pass on this machine is slower per byte than the in-place probe)."""
    from adaptlr.kernels import launch, step

    lines = [
        f"### Pass by pass: {count:,} tensors x {total // count:,}, learning-rate-free optimizers",
        "",
        "| algorithm | pass | words per parameter | ms | floor share ms | ms / floor share "
        "| torch sum of the same bytes ms |",
        "|---|---|---|---|---|---|---|",
    ]
    real = launch.run_kernel
    spent: dict[str, float] = {}

    def timed(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            spent[a[6]] = spent.get(a[6], 0.0) + (time.perf_counter() - t0) * 1e3

    step.launch.run_kernel = timed  # type: ignore[assignment]
    try:
        for algo in algos:
            opt = implementations(algo)[0][1](make_params(total, count, "cpu"))
            prog = program_for(opt.transform_for(opt.param_groups[0]))
            words = {f"reduce{k}": len(prog.loads(*r.terms)) for k, r in enumerate(prog.reductions)}
            roots = [prog.new_param, *prog.stores.values()]
            words["step"] = len(prog.loads(*roots)) + 1 + len(prog.stores)
            probe = torch.randn(floor_bytes(algo, 4) * total // 8)
            sums = {k: torch.randn(w * total) for k, w in words.items() if k != "step"}
            for _ in range(2):
                opt.step()
            kernel: dict[str, list[float]] = {k: [] for k in words}
            share: dict[str, list[float]] = {k: [] for k in words}
            read: dict[str, list[float]] = {k: [] for k in sums}
            for _ in range(reps):
                spent.clear()
                opt.step()
                t0 = time.perf_counter()
                probe.mul_(1.0000001)
                floor_ms = (time.perf_counter() - t0) * 1e3
                for k, w in words.items():
                    kernel[k].append(spent.get(k, 0.0))
                    share[k].append(floor_ms * w / sum(words.values()))
                for k, x in sums.items():
                    t0 = time.perf_counter()
                    x.sum()
                    read[k].append((time.perf_counter() - t0) * 1e3)
            for k, w in words.items():
                ms, fl = statistics.median(kernel[k]), statistics.median(share[k])
                ratio = statistics.median(a / b for a, b in zip(kernel[k], share[k]))
                ro = f"{statistics.median(read[k]):.1f}" if k in read else "—"
                what = "update" if k == "step" else f"reduction ({k})"
                cells = [algo.name, what, str(w), f"{ms:.1f}", f"{fl:.1f}", f"{ratio:.2f}", ro]
                lines.append("| " + " | ".join(cells) + " |")
                print(lines[-1], flush=True)
            del opt, probe, sums
    finally:
        step.launch.run_kernel = real  # type: ignore[assignment]
    return lines + [""]


def run(args: argparse.Namespace) -> str:
    device = args.device
    big = int(float(args.big))
    # (gpu_check.py builds its own Namespace, without the newer options)
    args.lr_free = getattr(args, "lr_free", False)
    args.counts = getattr(args, "counts", "")
    args.passes = getattr(args, "passes", False)
    shapes = [(big, 96, False), (10_000_000, 10_000, False), (2_000, 200, False)]
    if args.quick:
        shapes = [(960_000, 96, False), (100_000, 1_000, False), (2_000, 200, False)]
    if not args.lr_free:
        shapes.append((shapes[0][0], 96, True))
    if args.counts:
        counts = [int(c) for c in args.counts.split(",")]
        shapes = [s for s in shapes if s[1] in counts]
    bw = bandwidth(device, min(big, 1 << 27) if device == "cuda" else 1 << 26)
    args.course = getattr(args, "course", False)
    algos = [] if args.lr_free or args.course else algorithms(device)
    lr_free = course_algorithms() if args.course else lr_free_algorithms()
    suffix = ", the course's optimizers" if args.course else ", learning-rate-free optimizers"
    if args.only:
        names = args.only.split(",")
        algos = [a for a in algos if a.name in names]
        lr_free = [a for a in lr_free if a.name in names]
    lines = [
        f"Device: {describe(device)}; torch {torch.__version__}; "
        f"streaming bandwidth {bw / 1e9:.1f} GB/s (bytes read + written); "
        f"load average at the start {load()}.",
        "",
    ]
    comp = compile_times(device) if not (args.quick or args.lr_free) else None
    if comp:
        lines.append(
            f"First Adam step, fresh kernel cache: {comp[0]:.2f} s; the same step in a second "
            f"process (kernels loaded from the on-disk cache): {comp[1]:.2f} s (process "
            "start and `import torch` not included; importing numba is)."
        )
        lines.append("")
    for total, count, channels_last in shapes:
        per = total // count
        reps = 5 if total * 4 >= 1e8 else 20
        if device == "cpu":
            reps = 25 if total * 4 >= 1e8 else 30
        title = f"### {count:,} tensors x {per:,} = {count * per / 1e6:g}M fp32 parameters"
        if channels_last:
            per = 16 * (per // 16)
            title = (
                f"### {count:,} convolution weights of shape {conv_shape(per)} in channels_last"
                f" = {count * per / 1e6:g}M fp32 parameters (Adam)"
            )
        tables = [(algos, TORCH_HEAD, title)]
        if not channels_last:
            tables.append((lr_free, LR_FREE_HEAD, title + suffix))
        for table_algos, head, heading in tables:
            if channels_last:
                table_algos = [a for a in table_algos if a.name == "Adam"]
            if not table_algos:
                continue
            lines += [heading, "", *head]
            for algo in table_algos:
                if past_deadline():
                    lines.append("| (deadline reached: remaining rows not measured) |")
                    break
                floor_ms, res, paired = measure(algo, count, per, reps, bw, device, channels_last)
                if head is TORCH_HEAD:
                    cells = [
                        f"{floor_ms:.3g}",
                        _fmt(res.get("adaptlr")),
                        *(_fmt(res.get(k)) for k in ("torch for-loop", "torch foreach")),
                        _fmt(res.get("torch fused")),
                        _ratio(paired, "floor"),
                        _ratio(paired, "fastest"),
                    ]
                else:
                    cells = [
                        passes(algo),
                        f"{floor_ms:.3g}",
                        _fmt(res.get("adaptlr")),
                        _fmt(res.get(REFERENCE)),
                        _ratio(paired, "floor"),
                        _ratio(paired, "fastest"),
                    ]
                lines.append("| " + " | ".join([algo.name, *cells]) + " |")
                print(lines[-1], flush=True)
            lines.append("")
    if args.passes and device == "cpu":
        lines += pass_table(lr_free, shapes[0][0], shapes[0][1], 12)
    if not args.quick and not args.no_memory and algos:
        lines += mem_table(algos, big, device)
    lines.append(f"Load average at the end: {load()}.")
    return "\n".join(lines) + "\n"


def mem_table(algos: list[Algo], big: int, device: str) -> list[str]:
    lines = [
        f"### Peak extra memory during one step ({big / 1e6:g}M fp32 parameters in 96 tensors)",
        "",
        "| algorithm | implementation | peak extra MB | % of parameters |",
        "|---|---|---|---|",
    ]
    pbytes = big * 4
    for algo in algos:
        if past_deadline():
            break
        if algo.name not in ("Adam", "RAdam", "chain of three parts"):
            continue
        for impl, make in implementations(algo):
            if device == "cuda":
                ps = make_params(big, 96, device)
                try:
                    extra: int | None = peak_extra_cuda(make, ps)
                except Exception:
                    extra = None
                del ps
            else:
                extra = peak_extra_cpu(algo, impl, big, 96)
            cell = "—" if extra is None else f"{extra / 1e6:.1f}"
            pct = "—" if extra is None else f"{100 * extra / pbytes:.2f}"
            lines.append(f"| {algo.name} | {impl} | {cell} | {pct} |")
            print(lines[-1], flush=True)
    lines.append("")
    return lines


def load() -> str:
    """The 1-minute load average (other processes competing for the cores skew CPU times)."""
    try:
        return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:
        return "unknown"


def describe(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


NOTES = """\
*adaptlr* is the default step of each optimizer: the kernel generated from the chain's parts
(numba on CPU, Triton on CUDA) over flat state buffers, parameters and gradients read in place.
The *floor* is the time to move the bytes the algorithm must move (parameters, gradients and
state read, new parameters and state written: counted from the traced kernel).
*adaptlr / torch's fastest* below 1 means adaptlr is faster. *Peak extra memory* is what one
step allocates on top of parameters, gradients and state.

On the CPU the implementations of one algorithm are timed side by side: each holds its own
parameters, and every round takes one step of each (25 rounds with 48M parameters, else 30,
after 2 warm-up steps). Where the algorithm moves at least 100 MB a step (48M and 10M
parameters) each round also times the floor itself: an in-place scaling of a float32 tensor
moving the same bytes. Times are medians over rounds; the two ratio columns are medians over
rounds of the ratio within a round. For the smallest shape, and on CUDA, the floor is the
bytes divided by the bandwidth above; on CUDA each implementation is timed on its own (CUDA
events, medians). The last table times Adam alone on convolution weights laid out
channels_last (dense, not contiguous), with gradients laid out alike, as autograd makes them.
"""

LR_FREE_NOTES = """\
The learning-rate-free optimizers (adaptlr's parts with sums or shared scalars), each with its
reference package's defaults, against that package's own step (*reference package*: prodigyopt,
dadaptation, dog, schedulefree; "—" where it is not installed, and for adaptlr.Auto, which
has none; Schedule-Free's optimizers are put in train mode first). Where a part needs sums
over many elements (Prodigy's and D-Adaptation's ⟨g, x₀ − x⟩ and ‖s‖₁, DoG's Σ‖g‖² and
‖x − x₀‖), the fused step makes a reduction pass over the group's elements before the update
pass, and reads its totals back once.
*passes* lists, per pass, the float32 words per parameter it moves, counted from the traced
program: each reduction's loads, then the update's loads + stores. The *floor* moves the
bytes of every pass. *adaptlr / reference* below 1 means adaptlr is faster.
"""


COURSE_NOTES = """\
The course's optimizers after Adam, each with its package's defaults (SGDW with momentum 0.9 and
weight decay 1e-2), against that package's own step (*reference package*: adabound 0.0.5's
`AdaBound`, with `amsbound=True` for AMSBound; torch-optimizer 0.3.0's `SGDW` and `SWATS`).
SWATS is timed in its Adam phase (random gradients never let its estimate settle): a reduction
pass for the projection of the Adam step on the gradient, then the update. Timed side by
side in rounds, as the other tables (see docs/benchmarks.md). *passes* lists the float32 words
per parameter the fused step loads + stores, counted from the traced program; the *floor*
moves those bytes at the streaming bandwidth. *adaptlr / reference* below 1 means adaptlr is
faster.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--big", default="48e6", help="parameters of the 96-tensor case")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--only", default="", help="comma-separated algorithm names")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument(
        "--passes",
        action="store_true",
        help="CPU: also time the learning-rate-free optimizers' passes one by one (first shape)",
    )
    ap.add_argument(
        "--counts", default="", help="comma-separated tensor counts of the shapes to measure"
    )
    ap.add_argument(
        "--lr-free",
        action="store_true",
        help="the learning-rate-free optimizers' tables only (default out "
        "docs/benchmarks-lr-free.md)",
    )
    ap.add_argument(
        "--course",
        action="store_true",
        help="AdaBound, AMSBound, SGDW and SWATS against their packages only (default out "
        "docs/benchmarks-course.md)",
    )
    ap.add_argument("--out", default=None, help="markdown file (default docs/benchmarks.md)")
    args = ap.parse_args()
    table = run(args)
    cmd = "python benchmarks/step_speed.py " + " ".join(sys.argv[1:])
    default = "docs/benchmarks.md"
    title, notes = "Step speed", NOTES + "\n" + LR_FREE_NOTES
    if args.lr_free:
        default, title = (
            "docs/benchmarks-lr-free.md",
            "Step speed of the learning-rate-free optimizers",
        )
        notes = LR_FREE_NOTES
    if args.course:
        default, title = "docs/benchmarks-course.md", "Step speed of the course's optimizers"
        notes = COURSE_NOTES
    out = Path(args.out) if args.out else (None if args.quick else ROOT / default)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            f"# {title}\n\nMeasured with `" + cmd.strip() + "` (one run, side by side; "
            "times are medians).\n\n" + notes + "\n" + table
        )
        print(f"wrote {out}")
    else:
        print(table)


if __name__ == "__main__":
    main()
