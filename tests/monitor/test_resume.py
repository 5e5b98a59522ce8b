"""The monitor across a resume: its state saved with the checkpoint, the run continued in a
second process, and the log read back as one run (or as labelled runs when not resumed)."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import warnings

import pytest
import torch

import adaptlr
from adaptlr import checkpoint
from adaptlr.monitor import Monitor, load_log, split_runs, write_report

N, EXTRA, M, WINDOW = 12, 3, 8, 10  # steps before the checkpoint, after it (lost), resumed

# One training loop for the child processes and the uninterrupted reference: a 4-3 linear
# model on fixed data, SGD with momentum (its buffer must survive the resume too).
TRAIN = """
import json, sys, warnings
import torch
from adaptlr import checkpoint
from adaptlr.monitor import Monitor

def setup():
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 4, generator=gen), torch.randn(16, 3, generator=gen)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return model, opt, x, y

def train(model, opt, mon, x, y, steps, save=None, at=None):
    for i in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.record(loss)
        if save is not None and i + 1 == at:
            sd = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                  "monitor": mon.state_dict()}
            checkpoint.save(sd, save)

if __name__ == "__main__":
    mode, log, ckpt, n, extra, m, window = sys.argv[1:]
    n, extra, m, window = int(n), int(extra), int(m), int(window)
    model, opt, x, y = setup()
    mon = Monitor(opt, log=log, window=window)
    if mode == "first":  # checkpoint after n steps, then run on and stop (a crash)
        train(model, opt, mon, x, y, n + extra, save=ckpt, at=n)
    elif mode == "resume":
        sd = checkpoint.load(ckpt)  # torch.load(weights_only=True)
        model.load_state_dict(sd["model"])
        opt.load_state_dict(sd["optimizer"])
        mon.load_state_dict(sd["monitor"])
        train(model, opt, mon, x, y, m)
    else:  # the reference: one uninterrupted run
        train(model, opt, mon, x, y, n + m)
    d = mon.diagnose()
    mon.close()
    print(json.dumps({"steps": mon.steps, "evidence": d.evidence}))
"""


def _child(tmp_path, mode, log, ckpt):
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    args = [mode, str(log), str(ckpt), str(N), str(EXTRA), str(M), str(WINDOW)]
    out = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


FIGURES = ("loss", "grad_norm", "update_norm", "param_norm", "update_ratio", "cos")


def test_resume_in_a_second_process_continues_the_run_and_its_report(tmp_path):
    log, ckpt = tmp_path / "run.jsonl", tmp_path / "ckpt.pt"
    _child(tmp_path, "first", log, ckpt)
    resumed = _child(tmp_path, "resume", log, ckpt)
    # the reference, in this process: the same loop, uninterrupted
    ref_log = tmp_path / "ref.jsonl"
    loop = runpy.run_path(str(tmp_path / "train.py"), run_name="reference")
    model, opt, x, y = loop["setup"]()
    threads = torch.get_num_threads()
    try:
        with Monitor(opt, log=ref_log, window=WINDOW) as mon:
            loop["train"](model, opt, mon, x, y, N + M)
            straight = {"steps": mon.steps, "evidence": mon.diagnose().evidence}
    finally:
        torch.set_num_threads(threads)
    assert resumed["steps"] == straight["steps"] == N + M

    runs = split_runs(load_log(log))
    assert len(runs) == 1, [r.span for r in runs]
    run = runs[0]
    assert [r["step"] for r in run.steps] == list(range(N + M))
    assert run.resumed_at == [N] and run.superseded == EXTRA  # the steps lost after the save
    # The continued run is the uninterrupted one, figure for figure (the cosine across the
    # resume included: the monitor's copy of the previous gradient was saved).
    ref = split_runs(load_log(ref_log))[0].steps
    for a, b in zip(run.steps, ref, strict=True):
        for key in FIGURES:
            expected = b[key] if b[key] is None else pytest.approx(b[key], rel=1e-12, abs=1e-15)
            assert a[key] == expected, (a["step"], key)
    assert run.steps[N]["cos"] is not None
    # The resumed monitor diagnosed its last window over records of both processes.
    ev = resumed["evidence"]
    assert (ev["first_step"], ev["last_step"], ev["records"]) == (N + M - WINDOW, N + M - 1, 10)
    assert ev == pytest.approx(straight["evidence"], rel=1e-12)

    write_report(log, tmp_path / "report", window=WINDOW)
    text = (tmp_path / "report" / "diagnosis.txt").read_text()
    span = f"steps {N + M - WINDOW}-{N + M - 1} ({WINDOW} records)"
    assert span in text and "run 2" not in text, text


def _lines_of(monkeypatch, draw):
    """The x data of every line drawn by `draw()` (a dashboard) and the legend texts."""
    from matplotlib.figure import Figure

    figs = []
    real = Figure.savefig

    def keep(self, *a, **k):
        figs.append(self)
        return real(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", keep)
    draw()
    (fig,) = figs
    xs = [list(line.get_xdata()) for ax in fig.axes for line in ax.get_lines() if line.get_label()]
    legends = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts]
    return xs, legends


def _plain_run(log, steps):
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = torch.optim.SGD([p], lr=0.1)
    with Monitor(opt, log=log) as mon:
        for _ in range(steps):
            loss = (p**2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.record(loss)


def test_a_log_with_two_runs_without_resume_reads_as_two_labelled_runs(tmp_path, monkeypatch):
    log = tmp_path / "run.jsonl"
    _plain_run(log, 12)
    _plain_run(log, 8)  # a restart from step 0 appended to the same log, state not restored
    runs = split_runs(load_log(log))
    assert [r.label for r in runs] == ["run 1", "run 2"]
    assert [[r["step"] for r in run.steps] for run in runs] == [list(range(12)), list(range(8))]
    assert all(not r.resumed_at for r in runs)

    xs, legends = _lines_of(monkeypatch, lambda: write_report(log, tmp_path / "rep", window=5))
    assert xs and all(x == sorted(set(x)) for x in xs)  # no line ever goes back
    assert any("run 1 (steps 0-11)" in t for t in legends)
    assert any("run 2 (steps 0-7)" in t for t in legends)
    text = (tmp_path / "rep" / "diagnosis.txt").read_text()
    assert text.startswith("run 1 (steps 0-11): ") and "\n\nrun 2 (steps 0-7): " in text
    assert "steps 3-7 (5 records)" in text  # run 2's last window, its own records only


def test_state_dict_loads_with_weights_only_and_bad_input_changes_nothing(tmp_path):
    # adaptlr's optimizers measure their own step: the step count and the records continue,
    # and the first step after the resume records no cosine (the optimizer's previous
    # gradient sample is not in its state dict).
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = adaptlr.Adam([p], lr=0.01, fused=False)
    mon = Monitor(opt, sample=None)
    for _ in range(5):
        loss = (p**2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.record(loss)
    checkpoint.save({"monitor": mon.state_dict()}, tmp_path / "m.pt")
    sd = torch.load(tmp_path / "m.pt", weights_only=True)["monitor"]

    mon2 = Monitor(opt)
    for bad, exc in ((None, TypeError), ({"step": 3}, ValueError), ({**sd, "step": -1}, ValueError),
                     ({**sd, "prev_params": [7]}, ValueError)):  # fmt: skip
        with pytest.raises(exc):
            mon2.load_state_dict(bad)
        assert mon2.steps == 0 and mon2.records == []
    mon.close()
    mon2.load_state_dict(sd)
    assert mon2.steps == 5 and mon2.run_id == mon.run_id
    assert mon2.records == mon.records
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = (p**2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon2.record(loss)
    assert [r["step"] for r in mon2.records] == list(range(6))
    assert mon2.records[-1]["cos"] is None
