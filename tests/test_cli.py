"""The adaptlr CLI: exit codes, one-line errors that list what is allowed, real outputs."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adaptlr.cli import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _nonblank_png(path: Path) -> None:
    img = Image.open(path)
    assert img.size[0] >= 300
    assert len(np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)) > 20


def test_lab_surfaces(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["lab", "surfaces"], capsys)
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == ["elongated", "rosenbrock", "beale", "himmelblau", "saddle", "rastrigin"]


def test_lab_run_writes_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fig = tmp_path / "fig.png"
    code, out, err = _run(
        [
            "lab", "run", "--surface", "rosenbrock",
            "--optimizer", "adam:lr=0.1", "--optimizer", "rmsprop",
            "--schedule", "warmup_cosine:warmup=50,total_steps=500",
            "--steps", "500", "--out", str(fig),
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "adam(lr=0.1) + warmup_cosine: final loss" in out
    assert "rmsprop + warmup_cosine" in out
    _nonblank_png(fig)


def test_schedule_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fig = tmp_path / "s.png"
    code, out, _ = _run(
        ["schedule", "plot", "warmup_cosine:warmup=50,total_steps=500", "--steps", "500",
         "--out", str(fig)],
        capsys,
    )  # fmt: skip
    assert code == 0 and "wrote" in out
    _nonblank_png(fig)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["lab", "run", "--surface", "moon"], "allowed: elongated, rosenbrock, beale"),
        (["lab", "run", "--optimizer", "adamm"], "allowed: sgd, momentum, nesterov"),
        (["lab", "run", "--optimizer", "adam:beta=1"], "allowed: lr, betas, eps"),
        (["lab", "run", "--optimizer", "adam:lr"], "expected 'name' or 'name:key=value"),
        (["lab", "run", "--schedule", "cosinus"], "allowed: constant, cosine"),
        (["lab", "run", "--start", "1;2"], "expected 'x,y'"),
        (["lab", "run", "--steps", "x"], "invalid int value"),
        (["schedule", "plot", "cosine:total_steps=10,foo=1"], "allowed: lr, total_steps"),
        (["bogus"], "choose from 'demo', 'lab', 'schedule', 'monitor', 'lr-find'"),
        (["lab", "nope"], "choose from 'surfaces', 'run'"),
        (["monitor", "report", "/no/such/log.jsonl"], "no such log file"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("adaptlr")
    assert expected in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import adaptlr

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"adaptlr {adaptlr.__version__}"


def test_help_lists_names_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from adaptlr.lab import OPTIMIZERS, SURFACES

    with pytest.raises(SystemExit):
        main(["lab", "run", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: elongated); names: " + ", ".join(SURFACES) in text
    assert "names: " + ", ".join(OPTIMIZERS) in text
    assert "steps of each optimizer (default: 500)" in text
    assert "(default: None)" not in text


def _console_script() -> Path:
    """The ``adaptlr`` script pip wrote for this environment's entry point."""
    script = Path(sysconfig.get_path("scripts")) / "adaptlr"
    assert script.is_file(), f"no console script at {script}: pip install -e ."
    return script


def test_console_script_entry_point_and_module() -> None:
    for cmd in (
        [sys.executable, "-m", "adaptlr", "lab", "surfaces"],
        [str(_console_script()), "lab", "run", "--surface", "x"],
    ):
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if cmd[-1] == "surfaces":
            assert res.returncode == 0 and "rastrigin" in res.stdout
        else:
            assert res.returncode == 2 and "unknown surface 'x'" in res.stderr


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_no_torch(flag: str) -> None:
    """``adaptlr --help`` and ``--version`` answer without importing torch, numpy or the package
    body (its ``__init__`` imports torch: seconds); read from ``python -X importtime``, which lists
    every module the console script imported. Costs about 0.1 s a flag."""
    res = subprocess.run(
        [sys.executable, "-X", "importtime", str(_console_script()), flag],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in res.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "argparse" in imported  # the report was read (argparse builds the help)
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "numpy", "adaptlr"))
    assert heavy == [], f"adaptlr {flag} imported {len(heavy)} such modules: {heavy[:5]}..."
    if flag == "--version":  # the number of the installed distribution
        assert res.stdout == f"adaptlr {metadata.version('adaptlr')}\n"
    else:
        assert res.stdout.startswith("usage: adaptlr") and "--version" in res.stdout
