"""Checkpoints: atomic files, exact resume in a new process, migration to and from torch.optim."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import adaptlr
from adaptlr import checkpoint, schedules

#: The optimizers and paths of the resume test (the reference path and the default one).
RESUME_CASES = [
    ("Adam", {"lr": 0.01, "fused": False}),
    ("Adam", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5, "centered": True, "fused": False}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5, "centered": True}),
    # the learning-rate-free ones keep scalars per group (d, rbar, weight_sum) besides buffers
    ("Prodigy", {}),
    ("DAdaptAdam", {}),
    ("DAdaptSGD", {}),
    ("DAdaptAdaGrad", {"fused": False}),
    ("DoG", {}),
    ("LDoG", {"fused": False}),
    ("AdamWScheduleFree", {"lr": 0.01, "warmup_steps": 10}),
    ("SGDScheduleFree", {"lr": 0.1, "fused": False}),
    ("RAdamScheduleFree", {"lr": 0.01}),
]

# Run in this process and in a fresh one: a tiny model and data that depend only on the step.
TRAIN = r'''
import sys, torch, adaptlr

def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

def train(net, opt, start, stop):
    for t in range(start, stop):
        gen = torch.Generator().manual_seed(t)
        x = torch.randn(16, 5, generator=gen)
        y = torch.randn(16, 1, generator=gen)
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()

def resume(path, out, cases):
    """Load each case's checkpoint into a re-created model and optimizer, train 50 more."""
    from adaptlr import checkpoint
    results = []
    for i, (name, kw) in enumerate(cases):
        ck = checkpoint.load(f"{path}.{i}")
        net = model()
        opt = getattr(adaptlr, name)(net.parameters(), **kw)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        train(net, opt, 50, 100)
        results.append([p.detach().clone() for p in net.parameters()])
    checkpoint.save(results, out)
'''
_NS: dict = {}
exec(TRAIN, _NS)  # the same definitions here as in the child process
model, train = _NS["model"], _NS["train"]


def test_save_load_round_trip_and_no_temporary_left(tmp_path):
    path = tmp_path / "ck.pt"
    checkpoint.save({"a": torch.arange(3)}, path)
    checkpoint.save({"a": torch.arange(4)}, path)  # replaces
    assert torch.equal(checkpoint.load(path)["a"], torch.arange(4))
    assert sorted(os.listdir(tmp_path)) == ["ck.pt"]


def test_failed_save_leaves_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "ck.pt"
    checkpoint.save({"v": 1}, path)
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        checkpoint.save({"v": lambda: 2}, path)  # a lambda cannot be pickled
    assert checkpoint.load(path) == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["ck.pt"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.save({}, tmp_path / "missing" / "ck.pt")


KILL_CHILD = r"""
import sys, torch
from adaptlr import checkpoint, schedules
path = sys.argv[1]
checkpoint.save({"version": 1, "w": torch.ones(10)}, path)
print("saved", flush=True)
# ~256 MB in 64 tensors: long enough to be killed while it is being written
checkpoint.save({"version": 2, "w": [torch.full((1 << 20,), float(i)) for i in range(64)]}, path)
print("saved 2", flush=True)
"""


@pytest.mark.slow
def test_process_killed_while_writing_leaves_previous_checkpoint(tmp_path):
    path = tmp_path / "ck.pt"
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_CHILD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "saved"
        # Kill as soon as the second save's temporary file has data in it.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tmps = [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]
            if tmps and tmps[0].stat().st_size > 0:
                break
            time.sleep(0.0005)
        else:
            pytest.fail("the child never started writing the second checkpoint")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    leftover = [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]
    assert leftover, "the kill came after the rename: the test did not test anything"
    # the temporary is incomplete, yet the checkpoint is the previous one, intact
    ck = checkpoint.load(path)
    assert ck["version"] == 1 and torch.equal(ck["w"], torch.ones(10))


def _train_straight_and_half(tmp_path: Path):
    straight = []
    for i, (name, kw) in enumerate(RESUME_CASES):
        net = model()
        opt = getattr(adaptlr, name)(net.parameters(), **kw)
        train(net, opt, 0, 100)
        straight.append([p.detach().clone() for p in net.parameters()])
        net = model()
        opt = getattr(adaptlr, name)(net.parameters(), **kw)
        train(net, opt, 0, 50)
        checkpoint.save(
            {"model": net.state_dict(), "optimizer": opt.state_dict()}, f"{tmp_path}/ck.pt.{i}"
        )
    return straight


@pytest.mark.slow
def test_train_100_equals_train_50_save_resume_in_a_new_process_train_50(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        straight = _train_straight_and_half(tmp_path)
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "resumed.pt"
    # one thread, as the straight run had: matmul results may depend on the thread count
    code = "import torch\ntorch.set_num_threads(1)\n" + TRAIN
    code += f"\nresume({str(tmp_path / 'ck.pt')!r}, {str(out)!r}, {RESUME_CASES!r})\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    resumed = checkpoint.load(out)
    for (name, kw), want, got in zip(RESUME_CASES, straight, resumed):
        for a, b in zip(want, got):
            assert torch.equal(a, b), (name, kw)


# -- torch.optim <-> adaptlr ---------------------------------------------------------------------
MIGRATIONS = [
    (adaptlr.Adam, torch.optim.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    (adaptlr.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    (adaptlr.RMSprop, torch.optim.RMSprop, {"lr": 0.01, "centered": True, "momentum": 0.5}),
    (adaptlr.NAdam, torch.optim.NAdam, {"lr": 0.01}),
    (adaptlr.RAdam, torch.optim.RAdam, {"lr": 0.01}),
    (adaptlr.Adagrad, torch.optim.Adagrad, {"lr": 0.1, "lr_decay": 0.01}),
]


def _steps(w, opt, n, start=0):
    for t in range(start, start + n):
        opt.zero_grad()
        gen = torch.Generator().manual_seed(t)
        ((w - torch.randn(w.shape, generator=gen, dtype=w.dtype)) ** 2).sum().backward()
        opt.step()


@pytest.mark.parametrize("ours, theirs, kw", MIGRATIONS, ids=[m[1].__name__ for m in MIGRATIONS])
def test_torch_state_resumes_in_adaptlr_like_torch_continuing(ours, theirs, kw):
    gen = torch.Generator().manual_seed(0)  # (as below: not whatever earlier tests left)
    w, v = torch.randn(4, 3, dtype=torch.float64, generator=gen).requires_grad_(), None
    topt = theirs([w], foreach=False, **kw)
    _steps(w, topt, 5)
    v = w.detach().clone().requires_grad_()
    aopt = ours([v], fused=False, **kw)
    aopt.load_state_dict(checkpoint.from_torch_state_dict(topt))
    assert aopt.param_groups[0]["applied_steps"] == (0 if theirs is torch.optim.SGD else 5)
    _steps(w, topt, 5, start=5)
    _steps(v, aopt, 5, start=5)
    torch.testing.assert_close(v, w, rtol=1e-10, atol=1e-13)
    # loading torch's dict directly migrates it the same way
    direct = ours([w.detach().clone().requires_grad_()], fused=False, **kw)
    direct.load_state_dict(topt.state_dict())


@pytest.mark.parametrize("ours, theirs, kw", MIGRATIONS, ids=[m[1].__name__ for m in MIGRATIONS])
def test_adaptlr_state_resumes_in_torch_like_adaptlr_continuing(ours, theirs, kw):
    # seeded: with whatever numbers the tests before it left, an element near 0 once missed
    # atol=1e-13 by the last bits NAdam's order of operations differs in
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, dtype=torch.float64, generator=gen).requires_grad_()
    aopt = ours([w], fused=False, **kw)
    _steps(w, aopt, 5)
    v = w.detach().clone().requires_grad_()
    topt = theirs([v], foreach=False, **kw)
    sd = checkpoint.to_torch_state_dict(aopt)
    assert "applied_steps" not in sd["param_groups"][0]
    assert set(sd["param_groups"][0]) == set(topt.state_dict()["param_groups"][0])
    topt.load_state_dict(sd)
    _steps(w, aopt, 5, start=5)
    _steps(v, topt, 5, start=5)
    # the same math in another order of operations (NAdam's differs in the last bits)
    torch.testing.assert_close(v, w, rtol=1e-10, atol=1e-13)


def test_what_torch_cannot_express_is_refused_clearly():
    w = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="has a schedule"):
        checkpoint.to_torch_state_dict(adaptlr.Adam([w], lr=schedules.constant(0.1)))
    with pytest.raises(ValueError, match="init='first_gradient'"):
        checkpoint.to_torch_state_dict(adaptlr.RMSprop([w], init="first_gradient"))
    with pytest.raises(TypeError, match="expected an optimizer or a state dict"):
        checkpoint.to_torch_state_dict([1])
    with pytest.raises(ValueError, match="applied_steps must be an int"):
        checkpoint.from_torch_state_dict(torch.optim.SGD([w]), applied_steps=-1)


def test_sgd_migration_sets_step_from_the_momentum_buffer():
    w = torch.nn.Parameter(torch.ones(2))
    topt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = torch.ones(2)
    topt.step()
    sd = checkpoint.from_torch_state_dict(topt, applied_steps=7)
    assert sd["param_groups"][0]["applied_steps"] == 7
    assert int(sd["state"][0]["step"]) == 7
    assert "step" not in topt.state_dict()["state"][0]  # the source is untouched


def test_a_saved_state_dict_converts_for_the_torch_class_given():
    """A dict (no optimizer at hand) is converted by the adaptlr class whose ``torch_class`` is
    the one given: SGD drops its per-parameter ``step``, RMSprop refuses the lecture's init."""
    w = torch.randn(4, 3, dtype=torch.float64).requires_grad_()
    kw = {"lr": 0.05, "momentum": 0.9}
    aopt = adaptlr.SGD([w], fused=False, **kw)
    _steps(w, aopt, 5)
    sd = checkpoint.to_torch_state_dict(aopt.state_dict(), torch.optim.SGD)
    assert set(sd["state"][0]) == {"momentum_buffer"}
    assert "step" in aopt.state_dict()["state"][0]  # the source is untouched
    v = w.detach().clone().requires_grad_()
    topt = torch.optim.SGD([v], foreach=False, **kw)
    topt.load_state_dict(sd)
    _steps(w, aopt, 5, start=5)
    _steps(v, topt, 5, start=5)
    torch.testing.assert_close(v, w, rtol=1e-10, atol=1e-13)

    lecture = adaptlr.RMSprop([torch.nn.Parameter(torch.ones(2))], init="first_gradient")
    with pytest.raises(ValueError, match="init='first_gradient'"):
        checkpoint.to_torch_state_dict(lecture.state_dict(), torch.optim.RMSprop)
    with pytest.raises(TypeError, match="give torch_cls"):
        checkpoint.to_torch_state_dict(aopt.state_dict())


def test_two_classes_declaring_one_torch_class_make_a_dict_ambiguous():
    import gc

    class Other(adaptlr.SGD):
        torch_class = torch.optim.SGD

        @classmethod
        def prepare_torch_state_dict(cls, state_dict):
            pass

    opt = adaptlr.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    try:
        with pytest.raises(ValueError, match="all declare torch_class SGD"):
            checkpoint.to_torch_state_dict(opt.state_dict(), torch.optim.SGD)
        checkpoint.to_torch_state_dict(opt)  # the optimizer itself says which class it is
    finally:
        del Other
        gc.collect()  # subclasses are held weakly: later tests see SGD alone again
    checkpoint.to_torch_state_dict(opt.state_dict(), torch.optim.SGD)
