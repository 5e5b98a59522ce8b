"""CPU threads of the numba kernels: a process forked after its parent ran parallel kernels.

(How many threads a step uses, torch's thread count included, is checked with the parity
tests: ``test_fused_parity.test_serial_and_parallel_kernels_equal_reference``.)
"""

from __future__ import annotations

import os

import pytest

from ._child import run_python

pytest.importorskip("numba")


FORK = r"""
import multiprocessing as mp
import numba, torch
from adaptlr.kernels import launch
from tests.kernels._parity import measured_pair, norm_chain, worst_rel_err
from adaptlr.optimizers.registry import REGISTRY

launch.PARALLEL_GRAIN = 1  # the tests' small tensors go to the parallel kernels
kinds = [(REGISTRY["adam"].cls, REGISTRY["adam"].all_configs[0]), (norm_chain(), {})]


def run():
    return max(worst_rel_err(*measured_pair(kind, cfg, 5, measure_at=3)) for kind, cfg in kinds)


assert run() <= 1e-6  # the parent starts numba's thread pool
print("layer", numba.threading_layer(), flush=True)


def child(q):
    q.put(run())


q = mp.get_context("fork").Queue()
p = mp.get_context("fork").Process(target=child, args=(q,))
p.start()
p.join(120)
if p.exitcode is None:
    p.kill()
print("child", p.exitcode, q.get(timeout=5) if p.exitcode == 0 else None, flush=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_process_forked_after_parallel_steps_still_steps():
    """GNU OpenMP's pool does not survive a fork: numba terminates a child that runs a
    parallel kernel on the pool its parent started. Such a child steps on one thread
    (plain, measured and global-norm kernels) and as the reference path does."""
    out = run_python(FORK)
    assert out.returncode == 0, out.stderr[-4000:]
    child = out.stdout.strip().splitlines()[-1].split()
    assert child[:2] == ["child", "0"], out.stdout + out.stderr[-2000:]
    assert float(child[2]) <= 1e-6
