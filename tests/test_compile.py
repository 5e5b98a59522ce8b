"""torch.compile: a compiled ``opt.step`` and a compiled training step equal eager training.

``Optimizer.step`` is opaque to dynamo (``kernels.opaque_to_compile``): on either path the
step runs as in eager mode, between the compiled graphs, so compiled and eager training agree
bit for bit wherever the forward and backward do.

Every compiled run happens in a child process: the failures this guards against killed the
process (a segmentation fault) or left numba's compiler half-run, and a new process is also
the only way to start with numba kernels neither in memory nor on disk. One child runs many
checks and reports them as JSON, which the tests below read (a child costs seconds to start).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
import torch

#: compared with eager on both paths (the issue's three); the fast-path run adds the registry
CORE: dict[str, tuple[str, dict[str, Any]]] = {
    "adam": ("Adam", {"lr": 0.01}),
    "adamw": ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    "sgd_momentum": ("SGD", {"lr": 0.05, "momentum": 0.9}),
}
STEPS = 20


# -- what the children run ------------------------------------------------------------------


def _model(dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    layers = [torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2)]
    return torch.nn.Sequential(*layers).to(dtype)


def _train(
    make: Callable[..., torch.optim.Optimizer],
    how: str,
    dtype: torch.dtype = torch.float32,
    backend: str = "eager",
) -> list[torch.Tensor]:
    """Parameters after :data:`STEPS` steps: eager, ``opt.step`` compiled (``how="step"``),
    forward, backward, step and zero_grad compiled as one function (``how="train"``), or
    ``opt.step(closure)`` eager or compiled (``"eager_closure"``, ``"closure"``: the losses too).
    """
    model = _model(dtype)
    opt = make(model.parameters())
    xs = torch.randn(STEPS, 8, 5, generator=torch.Generator().manual_seed(1), dtype=dtype)

    def train(x: torch.Tensor) -> None:
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()

    if how == "eager":
        for x in xs:
            train(x)
    elif how == "step":
        step = torch.compile(opt.step, backend=backend)
        for x in xs:
            model(x).square().mean().backward()
            step()
            opt.zero_grad()
    elif how.endswith("closure"):  # compiled: the closure is traced, then the step runs
        step = torch.compile(opt.step, backend=backend) if how == "closure" else opt.step
        losses = []
        for x in xs:

            def closure(x: torch.Tensor = x) -> torch.Tensor:
                opt.zero_grad()
                loss = model(x).square().mean()
                loss.backward()
                return loss

            losses.append(step(closure).detach())
        return [p.detach().clone() for p in model.parameters()] + [torch.stack(losses)]
    else:
        compiled = torch.compile(train, backend=backend)
        for x in xs:
            compiled(x)
    return [p.detach().clone() for p in model.parameters()]


def _compare(a: list[torch.Tensor], b: list[torch.Tensor]) -> dict[str, Any]:
    return {
        "equal": all(torch.equal(x, y) for x, y in zip(a, b)),
        "diff": max(float((x - y).abs().max()) for x, y in zip(a, b)),
    }


def _maker(name: str, fused: bool) -> Callable[..., torch.optim.Optimizer]:
    import adaptlr
    from adaptlr.optimizers.registry import REGISTRY

    if name in CORE:
        cls, cfg = getattr(adaptlr, CORE[name][0]), CORE[name][1]
    else:
        cls, cfg = REGISTRY[name].cls, REGISTRY[name].all_configs[0]
    return lambda params: cls(params, **cfg, fused=fused)


def _child_fast() -> dict[str, Any]:
    from adaptlr.optimizers.registry import REGISTRY

    out: dict[str, Any] = {}
    for name in dict.fromkeys([*CORE, *REGISTRY]):
        make = _maker(name, True)
        out[f"step/{name}"] = _compare(_train(make, "eager"), _train(make, "step"))
    for name in CORE:  # dynamo's graphs run by eager kernels: the same gradients, bit for bit
        make = _maker(name, True)
        out[f"train/{name}"] = _compare(_train(make, "eager"), _train(make, "train"))
    for label, make in {
        "torch_fused_adam": lambda ps: torch.optim.Adam(ps, lr=0.01, fused=True),
        "adaptlr_adam": _maker("adam", True),
        "adaptlr_adam_reference": _maker("adam", False),
    }.items():
        out[f"breaks/{label}"] = {how: _graph_breaks(make, how) for how in ("step", "train")}
    make = _maker("adam", True)
    out["closure/adam"] = _compare(_train(make, "eager_closure"), _train(make, "closure"))
    # inductor's forward and backward round otherwise than eager: float64, near
    f64 = torch.float64
    out["train_inductor/adam"] = _compare(
        _train(make, "eager", f64), _train(make, "train", f64, backend="inductor")
    )
    return out


def _graph_breaks(make: Callable[..., torch.optim.Optimizer], how: str) -> int:
    """Graph breaks dynamo counted while compiling 4 steps (recompiles included)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = _model(torch.float32)
    opt = make(model.parameters())

    def train(x: torch.Tensor) -> None:
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()

    step = torch.compile(opt.step, backend="eager")
    compiled = torch.compile(train, backend="eager")
    for _ in range(4):
        x = torch.randn(8, 5)
        if how == "step":
            model(x).square().mean().backward()
            step()
            opt.zero_grad()
        else:
            compiled(x)
    return sum(counters["graph_break"].values())


def _child_reference() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in CORE:
        make = _maker(name, False)
        eager = _train(make, "eager")
        out[f"step/{name}"] = _compare(eager, _train(make, "step", backend="inductor"))
        out[f"train/{name}"] = _compare(eager, _train(make, "train"))
    return out


def _child_fullgraph() -> dict[str, Any]:
    import adaptlr

    out: dict[str, Any] = {}
    for fused in (True, False):
        model = _model(torch.float32)
        opt = adaptlr.Adam(model.parameters(), lr=0.01, fused=fused)
        model(torch.ones(3, 5)).sum().backward()
        before = [p.detach().clone() for p in model.parameters()]
        try:
            torch.compile(opt.step, fullgraph=True)()
            raised: dict[str, Any] = {"raised": None}
        except Exception as e:  # noqa: BLE001 - the error is what is reported
            raised = {"raised": type(e).__name__, "message": str(e)}
        after = list(model.parameters())
        untouched = all(torch.equal(x, y) for x, y in zip(before, after))
        out[f"fused={fused}"] = {**raised, "untouched": untouched, "groups": opt.param_groups[0]}
    return json.loads(json.dumps(out, default=repr))


def _child_cause() -> dict[str, Any]:
    """Numba kernels compiled during compiled steps, none of them in memory or on disk.

    Dynamo's frame hook stays on for what a graph-breaking call runs: numba's dispatcher, on a
    kernel it has not compiled, runs numba's compiler in Python, which dynamo then captured and
    rewrote (AssertionError on ``_compile_for_args``; parfor lowering run as a dynamo resume
    function, ``KeyError: 'parfor_index.N'``). Here the first step of a fresh process (serial
    kernel) and a group big enough for the parallel kernel are first stepped compiled, with new
    gradients every step and a parameter's data moved: what a traced step would have captured
    (addresses, numpy tables) goes stale.
    """
    import logging

    import adaptlr
    from adaptlr.kernels import launch

    traced: list[str] = []

    class Record(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = record.getMessage()
            if "start tracing" in msg:
                traced.append(msg)

    torch._logging.set_logs(dynamo=logging.INFO)
    logging.getLogger("torch._dynamo").addHandler(Record())

    def run(compiled: bool) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(2)
        small = torch.nn.Parameter(torch.randn(300, generator=gen))
        big = torch.nn.Parameter(torch.randn(3 * launch.PARALLEL_GRAIN, generator=gen))
        opt = adaptlr.SGD([small], lr=0.01, momentum=0.9)
        step = torch.compile(opt.step) if compiled else opt.step
        for i in range(7):
            if i == 3:  # a new group: its (parallel) kernel is compiled by this step
                opt.add_param_group({"params": [big]})
            if i == 5:  # the data moves under the flat plan (a stale address would be read)
                small.data = small.data.clone()
            for p in (small, big):  # new gradients, at new addresses, each step
                p.grad = torch.randn(p.shape, generator=gen)
            step()
        return [small.detach().clone(), big.detach().clone()]

    compiled = run(True)
    eager = run(False)
    numba_frames = [m for m in traced if f"{os.sep}numba{os.sep}" in m]
    return {**_compare(eager, compiled), "numba_frames": numba_frames, "traced": len(traced)}


CHILDREN = {
    "fast": _child_fast,
    "reference": _child_reference,
    "fullgraph": _child_fullgraph,
    "cause": _child_cause,
}


def child_main(which: str) -> None:
    print("RESULT " + json.dumps(CHILDREN[which]()), flush=True)


# -- the tests --------------------------------------------------------------------------------


@cache
def _results(which: str, fresh_cache: bool = False) -> dict[str, Any]:
    """What the child ``which`` reported; a crash or an error fails with its output."""
    # here, not at the top: the child imports tests.test_compile
    from tests.kernels._child import run_python

    with tempfile.TemporaryDirectory(prefix="adaptlr-compile-") as tmp:
        # fresh_cache: numba's kernels neither on disk nor (a new process) in memory
        env = {"ADAPTLR_CACHE_DIR": tmp} if fresh_cache else {}
        code = f"from tests.test_compile import child_main; child_main({which!r})"
        proc = run_python(code, timeout=600, **env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"child {which!r} ended with {proc.returncode} (negative: killed by that signal, "
            f"-11 a segmentation fault)\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.parametrize("name", [*CORE])
def test_compiled_step_fast_path_equals_eager_bitwise(name: str) -> None:
    got = _results("fast")[f"step/{name}"]
    assert got["equal"], got


@pytest.mark.parametrize("name", [*CORE])
def test_compiled_training_step_fast_path_equals_eager_bitwise(name: str) -> None:
    got = _results("fast")[f"train/{name}"]
    assert got["equal"], got


def test_compiled_step_fast_path_every_registered_optimizer() -> None:
    from adaptlr.optimizers.registry import REGISTRY

    res = _results("fast")
    bad = {n: res[f"step/{n}"] for n in REGISTRY if not res[f"step/{n}"]["equal"]}
    assert not bad


def test_compiled_step_with_closure_equals_eager_bitwise() -> None:
    got = _results("fast")["closure/adam"]
    assert got["equal"], got


@pytest.mark.parametrize("how", ["step", "train"])
def test_no_more_graph_breaks_than_torch_fused_adam(how: str) -> None:
    res = _results("fast")
    torch_fused = res["breaks/torch_fused_adam"][how]
    assert res["breaks/adaptlr_adam"][how] <= torch_fused, res
    assert res["breaks/adaptlr_adam_reference"][how] <= torch_fused, res


def test_compiled_training_step_inductor_close_to_eager() -> None:
    got = _results("fast")["train_inductor/adam"]
    assert got["diff"] < 1e-10, got


@pytest.mark.parametrize("name", [*CORE])
def test_compiled_reference_path_equals_eager_bitwise(name: str) -> None:
    res = _results("reference")
    assert res[f"step/{name}"]["equal"], res[f"step/{name}"]
    assert res[f"train/{name}"]["equal"], res[f"train/{name}"]


@pytest.mark.parametrize("fused", [True, False])
def test_fullgraph_says_why(fused: bool) -> None:
    """One error, adaptlr's, on either path, raised before anything changed; dynamo's
    ``capturable=True`` never reaches the groups."""
    got = _results("fullgraph")[f"fused={fused}"]
    assert got["raised"] == "Unsupported", got
    msg = got["message"]
    assert "adaptlr: an optimizer step runs outside torch.compile's graphs" in msg, msg
    assert "fullgraph=True" in msg, msg
    assert got["untouched"], got
    assert not got["groups"].get("capturable"), got["groups"]


def test_numba_is_never_run_under_dynamo() -> None:
    """The cause of the crashes: numba's compiler run as code dynamo had rewritten."""
    got = _results("cause", fresh_cache=True)
    assert got["traced"] > 0, "dynamo traced nothing: the check would not see numba frames"
    assert got["numba_frames"] == [], got["numba_frames"]
    assert got["equal"], got
