"""A second process loads the compiled kernels from the disk cache, and they step correctly.

``_numba_support.QuickLoadCache`` loads them without numba's refresh of its whole CPU target
(the refresh is most of a second process's first step). Each process here is new, as a
user's would be: the first compiles into an empty cache, the second must only load, and both
must step as the reference path does, through every kind of generated kernel (serial,
parallel, measuring, global norm, the reduction passes of summing parts) and with bfloat16
parameters. One optimizer per kind of kernel: test_fused_parity.py compares every registry
entry with the reference path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ._child import run_python

pytest.importorskip("numba")

CHILD = r"""
import json, math, sys
import numpy as np
import torch
from adaptlr.kernels import _numba_support, backends, launch
from adaptlr.optimizers.registry import REGISTRY
from tests.kernels._parity import make_params, measured_pair, norm_chain, user_chain
from tests.kernels._parity import worst_rel_err

worst = 0.0
# one optimizer per kind of generated kernel: the plain update, a bounded step, a sum over
# the optimizer with shared scalars, a group sum, a per-tensor sum, shared scalars without sums
kinds = [(REGISTRY[n].cls, REGISTRY[n].all_configs[0])
         for n in ("adam", "adabound", "prodigy", "dog", "ldog", "adamwschedulefree")]
kinds += [(user_chain(), {}), (norm_chain(), {})]
for grain in (launch.PARALLEL_GRAIN, 1):  # the serial kernels, then the parallel ones
    launch.PARALLEL_GRAIN = grain
    for kind, cfg in kinds:
        worst = max(worst, worst_rel_err(*measured_pair(kind, cfg, 6, measure_at=4)))
info = REGISTRY["adam"]
bf16 = lambda: [p.detach().bfloat16().requires_grad_() for p in make_params()]
pa, pb = measured_pair(info.cls, info.all_configs[0], 4, params=bf16)
bf16_equal = all(torch.equal(a, b) for a, b in zip(pa, pb))

hits = misses = 0
for mod in backends._modules.values():
    for obj in vars(mod).values():  # the module's own kernels, not the helpers it imports
        stats = getattr(obj, "stats", None)
        if stats is not None and obj.py_func.__module__ == mod.__name__:
            hits += sum(stats.cache_hits.values())
            misses += sum(stats.cache_misses.values())
# the full refresh imports numba's array-math registry; the quick load does not
refreshed = "numba.np.arraymath" in sys.modules

# the user's own numba code, compiled after the quick load, still gets a full target
import numba

@numba.njit
def users(a):
    return math.sqrt(np.sum(a * a)) + np.cos(0.0)

user_ok = abs(users(np.arange(4.0)) - (math.sqrt(14.0) + 1.0)) < 1e-12
print(json.dumps(dict(worst=worst, bf16_equal=bf16_equal, hits=hits, misses=misses,
                      refreshed=refreshed, quick=_numba_support.QUICK_LOAD, user_ok=user_ok)))
"""


def _run(cache: Path) -> dict:
    out = run_python(CHILD, ADAPTLR_CACHE_DIR=str(cache))
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_second_process_loads_every_kernel_and_steps_as_the_reference(tmp_path):
    first = _run(tmp_path)
    assert first["misses"] > 0 and first["refreshed"]  # compiled: numba's full target
    second = _run(tmp_path)
    assert second["quick"]
    assert second["misses"] == 0 and second["hits"] >= first["misses"]
    assert not second["refreshed"]
    for run in (first, second):
        assert run["worst"] <= 1e-6
        assert run["bf16_equal"]
        assert run["user_ok"]
