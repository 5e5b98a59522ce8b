"""The documentation site: built with warnings as errors, every page opened in headless Chromium.

The site is built (``sphinx-build -W``, as the README says) into a temporary directory by
``tests/lab/test_demo_report.py``, from the report of the ``adaptlr demo`` it runs (the lab runs
once for both; ``docs/_ext/lecture.py``), and checked by :func:`check_site`: one Chromium
process opens every page in turn in a frame and reports, per page, the images that did not
load; console errors and uncaught exceptions are read from Chromium's log. Chromium is started
with ``tests/lab/test_demo_report.py``'s helper. The test here shows the checks can fail.
"""

from __future__ import annotations

import html.parser
import importlib.util
import json
import re
import sys
import time
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _demo_report_test() -> ModuleType:
    """tests/lab/test_demo_report.py, for its Chromium helper (tests/ is not a package)."""
    path = ROOT / "tests" / "lab" / "test_demo_report.py"
    spec = importlib.util.spec_from_file_location("_adaptlr_demo_report_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# opens each page in a frame, one after another; when every frame has loaded, writes what it
# found into <body data-probe=...> (the frames are file: URLs, which the helper's
# --allow-file-access-from-files lets this page read)
PROBE = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><script>
const pages = %s;
const results = [];
(async () => {
  for (const page of pages) {
    const frame = document.createElement('iframe');
    frame.width = 1280; frame.height = 2000;
    const loaded = new Promise(r => frame.addEventListener('load', r, {once: true}));
    frame.src = page;
    document.body.appendChild(frame);
    await loaded;  // after every image has loaded or failed (none is marked lazy)
    try {
      const imgs = Array.from(frame.contentDocument.images);
      const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0));
      results.push({page, images: imgs.length, bad: bad.map(i => i.getAttribute('src'))});
    } catch (e) {
      results.push({page, error: String(e)});
    }
    frame.remove();
    // after every page, so that a probe that stops says where
    document.body.setAttribute('data-probe', JSON.stringify({done: false, results}));
  }
  document.body.setAttribute('data-probe', JSON.stringify({done: true, results}));
})();
</script></body></html>"""

#: a console message of any frame in Chromium's log: "INFO:CONSOLE:12]" (Chromium 156),
#: "CONSOLE(12)]" (older). The log gives every message the level INFO, so an error cannot be
#: told from a log line: the site must write none at all (its pages write nothing)
CONSOLE = re.compile(r"CONSOLE(:\d+|\(\d+\))\]")


def open_pages(site: Path, pages: list[str], tmp: Path) -> tuple[list[dict], list[str]]:
    """Open ``pages`` (paths relative to ``site``) in headless Chromium.

    Returns one dict per page (``page``, ``images``: how many, ``bad``: the ``src`` of those
    that did not load, or ``error``) and the log lines of console messages (uncaught
    exceptions included).
    """
    chromium = _demo_report_test()._chromium
    probe = site.resolve() / "_probe.html"
    probe.write_text(PROBE % json.dumps(pages), encoding="utf-8")
    try:
        res = chromium(
            tmp,
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=120000",
            "--dump-dom",
            probe.as_uri(),
        )
    finally:
        probe.unlink()
    assert res.returncode == 0, res.stderr[-2000:]
    marker = re.search(r'data-probe="([^"]*)"', res.stdout)
    assert marker is not None, f"the probe opened no page: {res.stdout[:500]}"
    probed = json.loads(html.unescape(marker.group(1)))
    results = probed["results"]
    assert probed["done"], f"the probe stopped after {len(results)} of {len(pages)} pages"
    messages = [ln for ln in res.stderr.splitlines() if CONSOLE.search(ln)]
    return results, messages


class _Links(html.parser.HTMLParser):
    """Every ``src`` and ``href`` of a page, and whether each is a resource it loads."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, bool]] = []  # (tag, url, loaded by the page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                loaded = tag in ("img", "script", "iframe") or (
                    tag == "link" and dict(attrs).get("rel") not in ("canonical", "index")
                )
                self.links.append((tag, value, loaded))


def broken_links(site: Path, pages: list[str]) -> list[str]:
    """Local links that point at no file, and resources a page would load from the network."""
    out = []
    for page in pages:
        parser = _Links()
        parser.feed((site / page).read_text(encoding="utf-8"))
        for tag, url, loaded in parser.links:
            parts = urlsplit(url)
            if parts.scheme in ("http", "https", "mailto") or url.startswith("//"):
                if loaded:  # a CDN: the CI machine and many readers have no network
                    out.append(f"{page}: <{tag}> loads {url}")
                continue
            if parts.scheme or not parts.path:  # data:, javascript:, or "#anchor"
                continue
            if not ((site / page).parent / unquote(parts.path)).exists():
                out.append(f"{page}: <{tag}> {url} points at no file")
    return out


def _public_names() -> list[str]:
    """``adaptlr.X`` for every class and function of ``adaptlr.__all__``, and the same for the
    ``__all__`` of the modules the reference documents whole."""
    import inspect

    import adaptlr

    names = []
    for module in (adaptlr, adaptlr.core, adaptlr.schedules, adaptlr.monitor):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                names.append(f"{module.__name__}.{name}")
    return names


def build_site(tmp: Path, demo: Path | None = None) -> Path:
    """Build the site into ``tmp / "html"`` with the README's command (in this process; -W
    turns every warning into a failure). ``demo``: a folder ``adaptlr demo`` wrote, which the
    lecture's pages are made from instead of running the lab again."""
    import os

    from sphinx.cmd.build import build_main

    out, warnings_file = tmp / "html", tmp / "warnings.txt"
    t0 = time.perf_counter()
    before = os.environ.get("ADAPTLR_DEMO_REPORT")
    if demo is not None:
        os.environ["ADAPTLR_DEMO_REPORT"] = str(demo)
    try:
        rc = build_main(
            ["-W", "--keep-going", "-q", "-b", "html", "-d", str(tmp / "doctrees")]
            + ["-w", str(warnings_file), str(DOCS), str(out)]
        )
    finally:
        if before is None:
            os.environ.pop("ADAPTLR_DEMO_REPORT", None)
        else:
            os.environ["ADAPTLR_DEMO_REPORT"] = before
    sys.stderr.write(f"\ndocs build: {time.perf_counter() - t0:.1f} s\n")
    assert rc == 0, warnings_file.read_text(encoding="utf-8")[-4000:]
    return out


def check_site(site: Path, tmp_path: Path) -> None:
    """Every part of the site is there, every public name has an entry, no link is broken,
    and every page opens in Chromium with every image loaded and no console message.

    Run by ``tests/lab/test_demo_report.py``, which builds the site from the demo it runs:
    the lab runs once for both.
    """
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    # every part of the site is there: API, how-to, the lecture, the copied lab report
    for page in [
        "index.html",
        "api/optimizers.html",
        "api/core.html",
        "api/schedules.html",
        "howto/replace_torch_optim.html",
        "howto/schedules.html",
        "howto/compose.html",
        "howto/monitor.html",
        "howto/checkpoints.html",
        "howto/distributed.html",
        "howto/speed.html",
        "lecture/index.html",
        "lab-report/index.html",
    ]:
        assert page in pages, page
    # every public name of the package and of its documented modules has an entry
    api = "".join(p.read_text(encoding="utf-8") for p in (site / "api").glob("*.html"))
    for name in _public_names():
        assert f'id="{name}"' in api, f"{name} is missing from the API reference"
    for module in (ROOT / "src" / "adaptlr" / "lab").glob("[!_]*.py"):
        if module.stem != "cli_support":  # the command line's helpers
            assert f'id="module-adaptlr.lab.{module.stem}"' in api, f"lab.{module.stem}"
    lecture = (site / "lecture" / "index.html").read_text(encoding="utf-8")
    assert "100,000" in lecture and lecture.count("<img") >= 17
    assert "<math" in (site / "api" / "schedules.html").read_text(encoding="utf-8")

    assert broken_links(site, pages) == []
    t0 = time.perf_counter()
    results, messages = open_pages(site, pages, tmp_path)
    sys.stderr.write(f"chromium, {len(pages)} pages: {time.perf_counter() - t0:.1f} s\n")
    assert [r["page"] for r in results] == pages
    assert [r for r in results if r.get("error") or r["bad"]] == []
    assert sum(r["images"] for r in results) >= 30
    assert messages == []


def test_the_check_finds_a_broken_image_and_a_script_error(tmp_path: Path) -> None:
    # a site of four pages, three of them broken: the checks above must report each
    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (4, 4), "red").save(site / "ok.png")
    (site / "good.html").write_text('<html><body><img src="ok.png"></body></html>')
    (site / "sub" / "image.html").write_text('<html><body><img src="../missing.png"></body></html>')
    (site / "script.html").write_text(
        "<html><body><script>undefinedFunction();</script>"
        '<script src="https://cdn.example.invalid/x.js"></script></body></html>'
    )
    (site / "console.html").write_text('<html><body><script>console.error("bad")</script>')
    pages = ["console.html", "good.html", "script.html", "sub/image.html"]
    results, messages = open_pages(site, pages, tmp_path)
    by_page = {r["page"]: r for r in results}
    assert by_page["good.html"] == {"page": "good.html", "images": 1, "bad": []}
    assert by_page["sub/image.html"]["bad"] == ["../missing.png"]
    assert any("Uncaught ReferenceError: undefinedFunction" in m for m in messages), messages
    assert any('"bad", source: file://' in m for m in messages), messages
    assert broken_links(site, pages) == [
        "script.html: <script> loads https://cdn.example.invalid/x.js",
        "sub/image.html: <img> ../missing.png points at no file",
    ]
