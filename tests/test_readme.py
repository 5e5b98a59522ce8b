"""README.md runs as written.

Every ```python block runs verbatim in a fresh interpreter (so each must be self-contained);
every line of every ```bash block is either `.ci/run`'s command, verbatim, or made of
environment setup (venv, pip) and ``adaptlr`` commands that run here, verbatim, through the
shell; ``adaptlr demo`` is run by ``tests/lab/test_demo_report.py``. Blocks added to the README
are picked up by themselves.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ._markdown import fenced_blocks

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")

#: the ``adaptlr`` commands another test runs (they take minutes), and the test that runs them
RUN_ELSEWHERE = {"adaptlr demo --out report": ROOT / "tests" / "lab" / "test_demo_report.py"}
#: the ``adaptlr`` commands slow enough for ``@pytest.mark.slow``
SLOW = ("adaptlr lab run",)
#: the first word of what a bash line may do besides ``adaptlr`` commands: make a fresh
#: environment and install into it (the same steps `.ci/run`'s line takes)
SETUP = ("python3 -m venv ", ". .venv/bin/activate", "pip install ")


def _blocks(lang: str) -> list[tuple[int, str]]:
    """(line number, text) of every fenced block of ``lang`` in the README."""
    return fenced_blocks(TEXT, lang)


def _shell_lines() -> list[tuple[int, str]]:
    """Every command line of the bash blocks, backslash continuations joined."""
    lines = []
    for start, body in _blocks("bash"):
        for m in re.finditer(r"(?:[^\n]*\\\n)*[^\n]+", body):
            text = re.sub(r"\s*\\\n\s*", " ", m.group(0)).strip()
            if text and not text.startswith("#"):
                lines.append((start + 1 + body.count("\n", 0, m.start()), text))
    return lines


def _ci_command() -> str:
    """The one line of `.ci/run` that installs and tests."""
    cmds = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in ln]
    assert len(cmds) == 1, cmds
    return cmds[0].strip()


def _adaptlr_commands() -> list[tuple[int, str]]:
    """(line, command) of the ``adaptlr`` commands of the README's shell lines (the rest
    checked by ``test_every_shell_line_is_run``)."""
    ci = _ci_command()
    out = []
    for line, text in _shell_lines():
        if text == ci:
            continue
        for part in (p.strip() for p in text.split("&&")):
            if part.startswith("adaptlr "):
                out.append((line, part))
    return out


def _run(args: list[str] | str, cwd: Path, shell: bool = False) -> subprocess.CompletedProcess[str]:
    # this interpreter's directory first, so that `adaptlr` is this environment's console script
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, PATH=path)
    return subprocess.run(
        args, cwd=cwd, env=env, shell=shell, capture_output=True, text=True, timeout=600
    )


def _assert_clean(res: subprocess.CompletedProcess[str], what: str) -> None:
    assert res.returncode == 0, f"{what} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    # a warning printed by a README example is one every reader sees; a block that shows one
    # on purpose catches it (warnings.catch_warnings(record=True)) and prints what it caught
    assert "Warning" not in res.stderr, f"{what} printed a warning:\n{res.stderr[-4000:]}"


PYTHON_BLOCKS = _blocks("python")


def test_readme_has_the_blocks_it_should() -> None:
    assert len(PYTHON_BLOCKS) >= 3 and len(_shell_lines()) >= 5


@pytest.mark.parametrize(
    "code", [b for _, b in PYTHON_BLOCKS], ids=[f"README.md:{n}" for n, _ in PYTHON_BLOCKS]
)
def test_python_block_runs(code: str, tmp_path: Path) -> None:
    # in a fresh interpreter with an empty working directory: nothing but the block itself
    _assert_clean(_run([sys.executable, "-c", code], cwd=tmp_path), "this README block")


def test_every_shell_line_is_run() -> None:
    ci = _ci_command()
    assert ci in {text for _, text in _shell_lines()}, ".ci/run's command is not in the README"
    for line, text in _shell_lines():
        if text == ci:
            continue
        for part in (p.strip() for p in text.split("&&")):
            assert part.startswith(SETUP) or part.startswith("adaptlr "), (
                f"README.md:{line}: {part!r} is run by no test; make it an adaptlr command "
                "(run by tests/test_readme.py) or part of .ci/run's line"
            )
    for cmd, test in RUN_ELSEWHERE.items():
        # the other test passes the README's arguments to adaptlr.cli.main, the output in tmp
        call = "main([" + ", ".join(f'"{a}"' for a in shlex.split(cmd)[1:-1])
        assert call in test.read_text(), f"{test} no longer runs {cmd!r} ({call})"


def _params(slow: bool) -> list[object]:
    out: list[object] = []
    for line, cmd in _adaptlr_commands():
        if cmd in RUN_ELSEWHERE or cmd.startswith(SLOW) != slow:
            continue
        marks = [pytest.mark.slow] if slow else []
        out.append(
            pytest.param(cmd, id=f"README.md:{line}:{' '.join(cmd.split()[:3])}", marks=marks)
        )
    return out


def _check_command(cmd: str, tmp_path: Path) -> None:
    _assert_clean(_run(cmd, cwd=tmp_path, shell=True), cmd)
    args = shlex.split(cmd)
    if "--out" in args:
        out = tmp_path / args[args.index("--out") + 1]
        assert out.exists() and (out.is_dir() or out.stat().st_size > 1000), cmd


@pytest.mark.parametrize("cmd", _params(slow=False))
def test_adaptlr_command_runs(cmd: str, tmp_path: Path) -> None:
    _check_command(cmd, tmp_path)


@pytest.mark.parametrize("cmd", _params(slow=True))
def test_slow_adaptlr_command_runs(cmd: str, tmp_path: Path) -> None:
    _check_command(cmd, tmp_path)


def test_printed_transform_is_as_shown() -> None:
    # "`print(EXPR)` prints" followed by an indented block: the text it prints (line breaks
    # in the README are added, so whitespace is compared loosely)
    shown = re.findall(r"`print\((.+?)\)` prints\s*\n\n((?:    .*\n)+)", TEXT)
    assert shown, "the README no longer shows what a print prints"
    for expr, block in shown:
        out = _run([sys.executable, "-c", f"import adaptlr\nprint({expr})"], cwd=ROOT)
        _assert_clean(out, expr)
        assert " ".join(out.stdout.split()) == " ".join(block.split()), expr
