"""``adaptlr demo``: the whole report, its wall time, the page in headless Chromium, and the
documentation site built from that report."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from adaptlr.cli import main

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-file-access-from-files",
]

# set a marker on <body> once every image has loaded (complete and with a natural size)
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
  const probe = bad.length ? 'bad:' + bad.join(',') : 'ok:' + imgs.length;
  document.body.setAttribute('data-probe', probe);
});
</script>"""


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _docs_site_test() -> ModuleType:
    """tests/test_docs_site.py, for its site build and checks (tests/ is not a package)."""
    path = Path(__file__).resolve().parents[1] / "test_docs_site.py"
    spec = importlib.util.spec_from_file_location("_adaptlr_docs_site_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Sphinx 9's napoleon and myst-parser 5.2 call Sphinx APIs deprecated for Sphinx 11, hundreds of
# times a build; none of docs/_ext does
@pytest.mark.filterwarnings("ignore::sphinx.deprecation.RemovedInSphinx11Warning")
@pytest.mark.slow
def test_demo_report_and_the_docs_site_in_chromium(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``adaptlr demo`` once; its page in Chromium; then the documentation site built from
    that report (the lecture's pages are made of it) and every page of the site in Chromium."""
    out = tmp_path / "demo"
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["demo", "--out", str(out)]) == 0
    wall = time.perf_counter() - t0
    # the demo prints no warning (a missing numba once printed six FusedFallbackWarnings)
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]
    out_text, err = capsys.readouterr()
    assert "Warning" not in err, err[-2000:]
    # stderr is not a terminal here: tqdm's bar stays quiet; the closing line is printed
    assert "adaptlr demo" not in err, err[-2000:]
    assert re.search(r"wrote \S*index\.html in \d+\.\d s", out_text), out_text[-2000:]
    sys.stderr.write(f"\ndemo wall time: {wall:.1f} s\n")

    index = out / "index.html"
    page = index.read_text(encoding="utf-8")
    ids = re.findall(r"""\bid=["']([^"']+)["']""", page)
    lecture = ["stuck", "tiny_lr", "burst", "decay", "warmup", "summary"]
    keys = [*lecture, "adabound", "lookahead", "swats", "monitor", "lr_find", "time_to_target"]
    assert ids == keys  # every section once, in order, no id twice
    headings = re.findall(r"<h2>(\d+)\. ", page)
    assert headings == [str(i) for i in range(1, len(keys) + 1)]  # numbered 1, 2, ...
    imgs = re.findall(r"""<img\b[^>]*\bsrc=["']([^"']+)["']""", page)
    assert len(imgs) >= 15 and any(i.endswith(".gif") for i in imgs)
    assert all((out / i).stat().st_size > 1000 for i in imgs)
    assert page.count("<table>") >= 2

    # the probe page sits beside index.html so that relative image paths resolve
    probe = out / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _chromium(
        tmp_path,
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probe.as_uri(),
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    marker = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert marker is not None, dom.stdout[:500]
    assert marker.group(1) == f"ok:{len(imgs)}", marker.group(1)[:500]
    assert "Uncaught" not in dom.stderr
    # Chromium 156 logs "INFO:CONSOLE:12]" (older ones "CONSOLE(12)]"), every message at
    # level INFO: the page must log nothing at all
    assert not re.search(r"CONSOLE(:\d+|\(\d+\))\]", dom.stderr), dom.stderr[-2000:]

    shot = tmp_path / "report.png"
    res = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", index.as_uri())
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    arr = np.asarray(Image.open(shot).convert("RGB"))
    assert arr.shape[:2] == (2400, 1280)
    assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 200  # not a blank page
    # the screenshot stays in the pytest tmp dir as the artifact; say where
    sys.stderr.write(f"report screenshot: {shot}\n")

    docs = _docs_site_test()
    site = docs.build_site(tmp_path / "docs", demo=out)
    docs.check_site(site, tmp_path)
