"""The generated Triton step compiles to 128-bit memory accesses on a GPU target.

A step moves every byte once; on a GPU it reaches the copy bandwidth only with wide
accesses. ``step_full`` (chunks of exactly ``BLOCK`` elements, no mask) declares its chunk
start, state offset and, with ``ALIGNED``, parameter and gradient addresses as multiples of
16 bytes, which is what lets Triton emit ``ld.global.v4`` / ``st.global.v4``. Compiling for
sm_90 needs no GPU (Triton ships ``ptxas``), so the PTX is checked here, in a child process
with ``TRITON_INTERPRET=0`` (the interpreter tests set it to 1 in this one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

CHILD = r"""
import importlib.util, json, os, re, sys, tempfile
from collections import Counter
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from adaptlr.kernels import codegen, program_for
from adaptlr.optimizers.registry import REGISTRY

def ptx_counts(mod, name, consts, pd, sd):
    fn = getattr(mod, name)
    sig, attrs = {}, {}
    for i, n in enumerate(fn.arg_names):
        if n in consts:
            sig[n] = "constexpr"
            continue
        if n in ("coef", "konst"):
            sig[n] = "*fp64"
        elif re.fullmatch(r"b\d+", n):
            sig[n] = "*" + {"float32": "fp32", "bfloat16": "bf16"}[sd]
        else:
            sig[n] = "*i64"
        attrs[(i,)] = [["tt.divisibility", 16]]  # as the launcher specialises aligned tensors
    k = triton.compile(
        ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs),
        target=GPUTarget("cuda", 90, 32), options={"enable_fp_fusion": False},
    )
    return Counter(re.findall(r"(?:ld|st)\.global(?:\.\w+)*", k.asm["ptx"]))

out = {}
d = tempfile.mkdtemp()
for name, info in REGISTRY.items():
    for pd, sd in (("float32", "float32"), ("bfloat16", "float32")):
        opt = info.cls([torch.zeros(1, requires_grad=True)], **info.all_configs[0])
        prog = program_for(opt.transform_for(opt.param_groups[0]))
        path = os.path.join(d, f"{name}_{pd}.py")
        with open(path, "w") as f:
            f.write(codegen.triton_source(prog, pd, sd, cuda=True))
        spec = importlib.util.spec_from_file_location(f"k_{name}_{pd}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        consts = {"NCOEF": max(len(prog.coef_keys), 1), "BLOCK": 1024}
        out[f"{name}/{pd}"] = {
            "full": ptx_counts(mod, "step_full", {**consts, "ALIGNED": True}, pd, sd),
            "full_unaligned": ptx_counts(mod, "step_full", {**consts, "ALIGNED": False}, pd, sd),
            "masked": ptx_counts(mod, "step", consts, pd, sd),
        }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def ptx() -> dict:
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "src"), env.get("PYTHONPATH")]))
    res = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _narrow(counts: dict) -> int:
    """Per-element accesses of 32 bits or less (the tables' 64-bit loads are not counted)."""
    return sum(
        v
        for k, v in counts.items()
        if ".v2." not in k and ".v4." not in k and k.endswith((".b32", ".b16", ".u16", ".f32"))
    )


def test_full_chunks_use_only_128_bit_accesses(ptx):
    for kernel, c in ptx.items():
        full = c["full"]
        assert _narrow(full) == 0, (kernel, full)
        assert full.get("ld.global.v4.b32", 0) > 0 and full.get("st.global.v4.b32", 0) > 0, (
            kernel,
            full,
        )


def test_without_the_alignment_flag_or_with_a_mask_accesses_stay_narrow(ptx):
    # the control: the flag and the unmasked chunk are what make the accesses wide
    for kernel, c in ptx.items():
        assert _narrow(c["full_unaligned"]) > 0, (kernel, c["full_unaligned"])
        assert _narrow(c["masked"]) > 0, (kernel, c["masked"])
