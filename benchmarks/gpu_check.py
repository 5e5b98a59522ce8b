"""One prepared check for a lent GPU (run once; about 8 minutes at most).

1. Triton parity, natively on CUDA: every registered optimizer and hyperparameter set, and two
   user chains, fused (generated Triton kernels) against the reference path, fp32, 100 steps,
   with a zero-size parameter, None gradients and two groups (``tests/kernels/_parity.py``),
   with Triton blocks of 16 elements (full chunks: the unmasked ``step_full`` kernel with
   128-bit accesses) and of 1024, and with misaligned parameters (``ALIGNED=False``);
   1b. bf16/fp16 parameters; 1c. step statistics (``request_stats``, the ``step_stats``
   kernel) against float64 recomputations; 1d. ``benchmarks/monitor_overhead.py --device
   cuda`` for a few rounds; 1e. Adam's step for Triton blocks of 1024-4096 elements and 4 or 8
   warps, against a copy of the same bytes.
2. First-step compile time, fresh caches, then in a second process.
3. ``benchmarks/step_speed.py --device cuda``: bandwidth, adaptlr against torch for-loop /
   foreach / fused, 1B fp32 parameters in 96 tensors if memory allows (else 256M) and
   10,000 x 1,000; peak extra memory.

Every section catches and prints its own errors and respects a global deadline, so the run
always ends with a table. The report is printed and written to ``$OUT/gpu_check.md`` (and
``docs/benchmarks-cuda.md`` when ``$OUT`` is not set).

Usage: ``python benchmarks/gpu_check.py [--minutes 8]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

REPORT: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    REPORT.append(line)


def section(name: str, deadline: float, fn) -> None:  # type: ignore[no-untyped-def]
    left = deadline - time.time()
    say(f"\n## {name}\n")
    if left < 20:
        say(f"skipped: {left:.0f} s left before the deadline")
        return
    t0 = time.time()
    try:
        fn(deadline)
    except Exception:
        say("```\n" + traceback.format_exc() + "```")
    say(f"\n({time.time() - t0:.1f} s)")


def parity(deadline: float) -> None:
    import contextlib
    import warnings

    from kernels import _parity as P

    import adaptlr  # noqa: F401
    from adaptlr import kernels
    from adaptlr.kernels import FusedFallbackWarning, plan
    from adaptlr.optimizers.registry import REGISTRY

    dev = os.environ.get("ADAPTLR_CHECK_DEVICE", "cuda")  # (cpu: a dry run, Triton interpreted)

    def make_params(misaligned=False, strided=False):
        if strided:  # channels_last, transposed, permuted (dense, not contiguous)
            return [p.detach().to(dev).requires_grad_() for p in P.make_strided_params()]
        if not misaligned:
            return [p.detach().to(dev).requires_grad_() for p in P.make_params()]
        # each parameter one element past an aligned address: step_full runs with
        # ALIGNED=False (its gradients stay aligned; the flag needs both)
        out = []
        for p in P.make_params():
            buf = torch.empty(p.numel() + 1, device=dev)
            out.append(buf[1:].view(p.shape).copy_(p.detach()).requires_grad_())
        return out

    def set_grads(params, step, strided=False):
        """_parity's gradients (None at the same steps), made on the GPU; for strided
        parameters, laid out as them (every tenth from the 7th contiguous: copied)."""
        if strided:
            P.set_grads_in_layout(params, step, like_param=step % 10 != 7)
            return
        gen = torch.Generator().manual_seed(1 + step)
        for i, p in enumerate(params):
            noise = torch.randn(p.shape, generator=gen).to(dev)
            skip = P.NONE_AT.get(step) == i or (i == P.LATE and step < 10)
            p.grad = None if skip else 0.5 * p.detach() + noise

    # Triton blocks of 16 elements: the 37-element parameter makes two full chunks (the
    # unmasked ``step_full`` kernel, ALIGNED) and a tail; blocks of 1024: tails only, as a
    # small model runs. Then one case each with misaligned parameters (ALIGNED=False).
    cases = [
        (f"{name}-{i} block {block}", info.cls, cfg, block, False, False)
        for block in (16, 1024)
        for name, info in REGISTRY.items()
        for i, cfg in enumerate(info.all_configs)
    ]
    cases += [
        (f"{name} block {block}", chain, {}, block, False, False)
        for block in (16, 1024)
        for name, chain in (
            ("chain-three-parts", P.user_chain()),
            ("chain-global-norm", P.norm_chain()),
        )
    ]
    cases += [
        (f"{name}-0 block 16, misaligned", info.cls, info.all_configs[0], 16, True, False)
        for name, info in REGISTRY.items()
    ]
    cases += [
        (f"{name}-0 block 16, channels_last etc.", info.cls, info.all_configs[0], 16, False, True)
        for name, info in REGISTRY.items()
    ]
    say("| case | max relative difference (params and state) | result |")
    say("|---|---|---|")
    failures = 0
    for name, kind, cfg, block, misaligned, strided in cases:
        if time.time() > deadline - 60:
            say(f"| {name} | — | not run (deadline) |")
            continue
        interpret = kernels.use_triton_on_cpu() if dev == "cpu" else contextlib.nullcontext()
        default_block, plan.TRITON_BLOCK = plan.TRITON_BLOCK, block
        try:
            pa, pb = make_params(misaligned, strided), make_params(misaligned, strided)
            with warnings.catch_warnings(), interpret:
                warnings.simplefilter("error", FusedFallbackWarning)
                fused = P.make(kind, pa, cfg, None)
                ref = P.make(kind, pb, cfg, False)
                for step in range(100 if dev == "cuda" else 3):
                    set_grads(pa, step, strided)
                    set_grads(pb, step, strided)
                    fused.step()
                    ref.step()
            starts = [p.to(dev) for p in (P.make_strided_params if strided else P.make_params)()]
            worst = 0.0
            for a, b, s in zip(pa, pb, starts):
                worst = max(worst, P.rel_err(a.detach(), b.detach(), s))
                for key, vb in ref.state[b].items():
                    worst = max(worst, P.rel_err(fused.state[a][key].cpu(), vb.cpu()))
            ok = worst <= 1e-6
            failures += not ok
            say(f"| {name} | {worst:.2e} | {'ok' if ok else 'FAIL'} |")
        except Exception as exc:
            failures += 1
            say(f"| {name} | — | ERROR {type(exc).__name__}: {str(exc)[:200]} |")
        finally:
            plan.TRITON_BLOCK = default_block
    say(f"\n{len(cases) - failures} of {len(cases)} cases within 1e-6.")


def low_precision(deadline: float) -> None:
    """bf16/fp16 parameters (float32 state, and bf16 state on request) against the reference
    path on CUDA, 20 steps: parameter elements that differ and the largest difference in
    units of the parameters' last place; state relative difference."""
    import warnings

    from kernels import _parity as P

    from adaptlr.kernels import FusedFallbackWarning
    from adaptlr.optimizers.registry import REGISTRY

    dev = os.environ.get("ADAPTLR_CHECK_DEVICE", "cuda")  # (cpu: a dry run of this script)
    combos = [(torch.bfloat16, None), (torch.float16, None), (torch.bfloat16, torch.bfloat16)]
    cases = [
        (f"{name}-{i}", info.cls, cfg)
        for name, info in REGISTRY.items()
        for i, cfg in enumerate(info.all_configs)
    ] + [("chain-global-norm", P.norm_chain(), {})]
    say("| case | params, state | params differing (of 78) | max ulps | state rel |")
    say("|---|---|---|---|---|")
    for name, kind, cfg in cases:
        for dt, sdt in combos:
            if time.time() > deadline - 30:
                say(f"| {name} | {dt}, {sdt} | not run (deadline) | | |")
                continue
            try:
                extra = {} if sdt is None else {"state_dtype": sdt}
                c = {**cfg, **extra}

                def params(dt=dt):
                    return [p.detach().to(dev, dt).requires_grad_() for p in P.make_params()]

                pa, pb = params(), params()
                with warnings.catch_warnings():
                    warnings.simplefilter("error", FusedFallbackWarning)
                    fused, ref = P.make(kind, pa, c, None), P.make(kind, pb, c, False)
                    for step in range(20):
                        gen = torch.Generator().manual_seed(1 + step)
                        for pp in (pa, pb):
                            for i, p in enumerate(pp):
                                noise = torch.randn(p.shape, generator=gen).to(dev, dt)
                                skip = P.NONE_AT.get(step) == i or (i == P.LATE and step < 10)
                                p.grad = None if skip else 0.5 * p.detach() + noise
                            gen = torch.Generator().manual_seed(1 + step)
                        fused.step()
                        ref.step()
                differ = sum(int((a != b).sum()) for a, b in zip(pa, pb))
                eps = torch.finfo(dt).eps
                ulps = max(
                    float(
                        (
                            (a.float() - b.float()).abs()
                            / (b.detach().float().abs() * eps).clamp_min(torch.finfo(dt).tiny)
                        ).max()
                    )
                    if a.numel()
                    else 0.0
                    for a, b in zip(pa, pb)
                )
                srel = max(
                    P.rel_err(fused.state[a][k].cpu(), v.cpu())
                    for a, b in zip(pa, pb)
                    for k, v in ref.state[b].items()
                )
                say(
                    f"| {name} | {str(dt)[6:]}, {str(sdt or 'float32').replace('torch.', '')} "
                    f"| {differ} | {ulps:.2g} | {srel:.2e} |"
                )
            except Exception as exc:
                say(f"| {name} | {dt}, {sdt} | ERROR {type(exc).__name__}: {str(exc)[:200]} | | |")


def step_stats(deadline: float) -> None:
    """``request_stats()`` on the device: every registered optimizer's measured step (the
    Triton ``step_stats`` kernel) against float64 recomputations from copies of the tensors:
    the sums of squares, η_t/σ_t at the sampled elements against ``effective_lr()``, and the
    sample's product with the previous step's."""
    import contextlib
    import math

    from adaptlr import kernels
    from adaptlr.kernels.codegen import ALIGN
    from adaptlr.optimizers.registry import REGISTRY

    dev = os.environ.get("ADAPTLR_CHECK_DEVICE", "cuda")  # (cpu: a dry run, Triton interpreted)
    shapes = [(37,), (3, 4), (0,), (), (2, 5, 3), (1000,)]

    def rel(a: float, b: float) -> float:
        return abs(a - b) / max(abs(b), 1e-300)

    def at_sample(tensors: list[torch.Tensor], stride: int) -> torch.Tensor:
        """Every stride-th element of the flat state (each tensor padded to ALIGN)."""
        out, pos = [], 0
        for t in tensors:
            out.append(t.detach().reshape(-1).double().cpu()[(-pos) % stride :: stride])
            pos += -(-t.numel() // ALIGN) * ALIGN
        return torch.cat(out)

    say("| optimizer | sums (rel) | gradient sample (max abs) | η/σ (rel) | products (rel) |")
    say("|---|---|---|---|---|")
    ctx = kernels.use_triton_on_cpu() if dev == "cpu" else contextlib.nullcontext()
    with ctx:
        for name in sorted(REGISTRY):
            if time.time() > deadline - 10:
                say(f"| {name} | not run (deadline) | | | |")
                continue
            try:
                gen = torch.Generator().manual_seed(0)
                params = [torch.randn(s, generator=gen).to(dev).requires_grad_() for s in shapes]
                opt = REGISTRY[name].cls(params, **REGISTRY[name].all_configs[0])
                sums = sample = eff = dot = 0.0
                last = None
                for step in range(3):
                    gen = torch.Generator().manual_seed(100 + step)
                    for p in params:
                        p.grad = torch.randn(p.shape, generator=gen).to(dev)
                    before = [p.detach().double().clone() for p in params]
                    opt.request_stats(sample=50)
                    opt.step()
                    st = opt.last_stats[0]
                    assert st is not None and st.fused, "the step did not measure itself"
                    g = [p.grad.double() for p in params]
                    new = [p.detach().double() for p in params]
                    want = [
                        sum(float((x * x).sum()) for x in g),
                        sum(float(((n - o) ** 2).sum()) for n, o in zip(new, before)),
                        sum(float((n * n).sum()) for n in new),
                    ]
                    got = [st.grad_sq, st.update_sq, st.param_sq]
                    sums = max(sums, *(rel(a, b) for a, b in zip(got, want)))
                    stride = math.ceil(sum(p.numel() for p in params) / 50)
                    gs = at_sample([p.grad for p in params], stride)
                    sample = max(sample, float((st.grad_sample - gs).abs().max()))
                    full = [e for e in opt.effective_lr()[0]]
                    if st.eff_lr is not None and all(e is not None for e in full):
                        es = at_sample(full, stride)
                        eff = max(eff, float(((st.eff_lr - es).abs() / es.abs()).max()))
                    if last is not None:
                        d = float((st.grad_sample * last.grad_sample).sum())
                        dot = max(dot, rel(st.sample_dot_prev, d))
                    last = st
                ok = sums <= 1e-5 and sample == 0.0 and eff <= 1e-5 and dot <= 1e-12
                say(
                    f"| {name} | {sums:.1e} | {sample:.1e} | {eff:.1e} | {dot:.1e} "
                    f"{'ok' if ok else 'FAIL'} |"
                )
            except Exception as exc:
                say(f"| {name} | ERROR {type(exc).__name__}: {str(exc)[:200]} | | | |")


def monitor_cost(deadline: float) -> None:
    """``benchmarks/monitor_overhead.py --device cuda`` (48M parameters, a few rounds)."""
    import contextlib
    import io

    import monitor_overhead

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        monitor_overhead.main(["--device", "cuda", "--rounds", "10"])
    say(buf.getvalue())


def block_sweep(deadline: float) -> None:
    """Adam's step (fp32, 96 tensors) for Triton blocks of 1024/2048/4096 elements and 4 or 8
    warps, against the device's copy bandwidth: which launch shape reaches it (the defaults
    are ``kernels.plan.TRITON_BLOCK`` and ``kernels.launch.TRITON_WARPS``)."""
    import contextlib

    import step_speed

    import adaptlr
    from adaptlr import kernels
    from adaptlr.kernels import launch, plan

    dev = os.environ.get("ADAPTLR_CHECK_DEVICE", "cuda")  # (cpu: a dry run, Triton interpreted)
    if dev == "cuda":
        free, _ = torch.cuda.mem_get_info()
        # the copy of 28 bytes per parameter, then parameters, gradients and Adam's state
        n = int(1e9) if free > 30 * 1e9 * 1.2 else int(256e6)
    else:
        n = 96 * 5000

    def copy_time() -> float:  # a copy moving Adam's 28 bytes per parameter
        src = torch.randn(n * 28 // 8, device=dev)
        dst = torch.empty_like(src)
        return step_speed.timeit(lambda: dst.copy_(src), dev, reps=10)

    copy_ms = copy_time()
    if dev == "cuda":
        torch.cuda.empty_cache()
    ps = [torch.randn(n // 96, device=dev).requires_grad_() for _ in range(96)]
    for p in ps:
        p.grad = torch.randn_like(p) * 1e-2
    say(f"{n / 1e6:g}M parameters; a copy of the same bytes: {copy_ms:.3f} ms")
    say("")
    say("| block | warps | Adam step ms | copy / step (fraction of copy bandwidth) |")
    say("|---|---|---|---|")
    default = plan.TRITON_BLOCK, launch.TRITON_WARPS
    try:
        for block in (1024, 2048, 4096):
            for warps in (4, 8):
                if time.time() > deadline - 15:
                    say(f"| {block} | {warps} | not run (deadline) | |")
                    continue
                plan.TRITON_BLOCK, launch.TRITON_WARPS = block, warps
                ctx = kernels.use_triton_on_cpu() if dev == "cpu" else contextlib.nullcontext()
                with ctx:
                    opt = adaptlr.Adam(ps, lr=1e-3)
                    opt.step()  # compile, state; then step_speed.timeit's two warm-up steps
                    ms = step_speed.timeit(opt.step, dev, reps=20 if dev == "cuda" else 2)
                del opt
                say(f"| {block} | {warps} | {ms:.3f} | {copy_ms / ms:.3f} |")
    finally:
        plan.TRITON_BLOCK, launch.TRITON_WARPS = default


def compile_time(deadline: float) -> None:
    import step_speed

    res = step_speed.compile_times("cuda")
    if res is None:
        say("compile-time measurement failed")
    else:
        say(f"first Adam step, fresh caches: {res[0]:.2f} s; in a second process: {res[1]:.2f} s")


def bench(deadline: float) -> None:
    import step_speed

    free, _ = torch.cuda.mem_get_info()
    # Adam with torch's foreach needs ~6 copies of the parameters at peak: size to fit
    big = 1e9 if free > 6 * 4 * 1e9 * 1.1 else 256e6
    say(f"free GPU memory {free / 2**30:.1f} GiB -> {big / 1e6:g}M parameters in 96 tensors")
    args = argparse.Namespace(
        device="cuda", big=str(big), quick=False, only="", no_memory=False, out=None
    )
    step_speed.DEADLINE = deadline - 30
    say(step_speed.run(args))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--skip-parity", action="store_true")
    ap.add_argument("--parity-only", action="store_true")
    args = ap.parse_args()
    deadline = time.time() + 60 * args.minutes
    say("# adaptlr GPU check")
    say("")
    if not torch.cuda.is_available():
        say("no CUDA device: nothing to check")
        return
    try:
        import triton

        tv = triton.__version__
    except Exception as exc:
        tv = f"not importable ({exc})"
    say(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}; triton {tv}")
    if not args.skip_parity:
        end = deadline if args.parity_only else deadline - 240
        section("1. Triton parity on CUDA (fp32, 100 steps)", end - 60, parity)
        section("1b. bf16/fp16 parameters on CUDA (20 steps)", end, low_precision)
    if not args.parity_only:
        section("1c. Step statistics on CUDA (request_stats)", deadline - 230, step_stats)
        section("1d. Monitor overhead on CUDA", deadline - 210, monitor_cost)
        section("1e. Triton block and warps (Adam)", deadline - 205, block_sweep)
        section("2. First-step compile time", deadline - 200, compile_time)
        section("3. Benchmark (benchmarks/step_speed.py --device cuda)", deadline, bench)
    text = "\n".join(REPORT) + "\n"
    out = os.environ.get("OUT")
    path = Path(out) / "gpu_check.md" if out else ROOT / "docs" / "benchmarks-cuda.md"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    except OSError as exc:
        print(f"could not write {path}: {exc}")


if __name__ == "__main__":
    main()
