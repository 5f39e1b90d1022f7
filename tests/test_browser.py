"""The committed edition as a reader sees it: every page in headless Chromium, with the network cut off.

The book is built from the committed chapters (``make html``'s steps, into a
temporary folder) and served on localhost; every request to another host is
blocked and counted. A page fails when it still shows raw TeX, an image does not
load, the console reports an error, a traceback is printed, or an internal link
points at nothing.

Chromium comes from Debian (``apt-get install chromium``; ``.ci/run`` installs it)
and is driven by Playwright. Without it the test skips and says so, except where
``SALVE_REQUIRE_BROWSER=1`` (CI) makes a missing browser a failure.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

from salve_utils import pipeline

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("SALVE_REQUIRE_BROWSER") == "1"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (SALVE_REQUIRE_BROWSER=1: CI must run the browser test)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The committed reference edition, built as `make html` builds it."""
    if CHROMIUM is None:
        _skip_or_fail("Chromium is not installed (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        _skip_or_fail("Playwright is not installed (pip install -e '.[dev]')")
    if shutil.which("npm") is None and not (ROOT / "_assets/mathjax/tex-chtml-full.js").is_file():
        _skip_or_fail("npm is needed once to install MathJax (make html)")
    subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "_assets/mathjax/tex-chtml-full.js"], check=True,
                   capture_output=True)
    out = tmp_path_factory.mktemp("site")
    toc = pipeline.write_toc("cpu", out / "toc.yml", ROOT)
    build = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT), "--toc", str(toc),
                            "--path-output", str(out), "--warningiserror", "--keep-going", "--quiet"],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def server(site: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args, **kwargs: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


#: Counts a page's maths, typeset or not, its images and its links, in the page itself.
PROBE = """() => {
  const math = [...document.querySelectorAll('div.math, span.math')];
  const raw = math.filter(m => !m.querySelector('mjx-container'));
  const imgs = [...document.images];
  return {
    math: math.length,
    raw: raw.map(m => m.textContent.slice(0, 60)),
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
    // an executed cell's error output (a docstring's doctest example on the API page is not one)
    traceback: document.querySelectorAll('.cell_output .traceback, .output.traceback').length > 0 ||
      [...document.querySelectorAll('.cell_output')].some(o => o.innerText.includes('Traceback')),
    explorers: document.querySelectorAll('.salve-explorer').length,
  };
}"""

#: Moves every control of explorer ``i`` to its last setting; returns the bars' heights before and after each move.
MOVE = """(i) => {
  const root = document.querySelectorAll('.salve-explorer')[i];
  const heights = () => [...root.querySelectorAll('rect.bar')].map(b => b.getAttribute('height')).join(',');
  const moves = [];
  for (const c of root.querySelectorAll('[data-axis]')) {
    const before = heights(), state = root.getAttribute('data-state');
    const last = c.tagName === 'SELECT' ? String(c.options.length - 1) : c.max;
    if (c.value === last) { continue; }
    c.value = last;
    c.dispatchEvent(new Event('input', {bubbles: true}));
    moves.push({control: c.tagName, changed: heights() !== before, state: root.getAttribute('data-state') !== state});
  }
  return moves;
}"""


@pytest.mark.slow
def test_every_page_renders_offline(site: Path, server: str) -> None:
    from playwright.sync_api import sync_playwright

    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                   if not p.relative_to(site).as_posix().startswith(("_static/", "mathjax/")))
    assert len(pages) >= 10
    problems: list[str] = []
    totals = {"pages": 0, "math": 0, "images": 0, "links": 0, "external_blocked": 0, "explorers": 0,
              "explorer_moves": 0}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context()

        def route(r):
            if r.request.url.startswith(server):
                return r.continue_()
            totals["external_blocked"] += 1
            problems.append(f"external request: {r.request.url}")
            return r.abort()

        context.route("**/*", route)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        for name in pages:
            html = (site / name).read_text(errors="replace")
            redirect = re.search(r'http-equiv="refresh" content="\d+;\s*url=([^"]+)"', html, re.IGNORECASE)
            if redirect:  # e.g. index.html: only its target has to exist
                if not (site / Path(name).parent / redirect.group(1)).is_file():
                    problems.append(f"{name}: redirects to a missing page {redirect.group(1)}")
                continue
            errors.clear()
            page.goto(server + name, wait_until="load")
            if page.locator("div.math, span.math").count():
                page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
                page.evaluate("() => MathJax.startup.promise")
            found = page.evaluate(PROBE)
            totals["pages"] += 1
            totals["math"] += found["math"]
            totals["images"] += found["images"]
            for text in found["raw"]:
                problems.append(f"{name}: raw TeX {text!r}")
            for src in found["broken"]:
                problems.append(f"{name}: image does not load: {src}")
            if found["traceback"]:
                problems.append(f"{name}: shows a traceback")
            for i in range(found["explorers"]):  # a kernel-free explorer must redraw when a control moves
                moves = page.evaluate(MOVE, i)
                totals["explorers"] += 1
                totals["explorer_moves"] += len(moves)
                if not moves or not any(m["changed"] for m in moves) or not all(m["state"] for m in moves):
                    problems.append(f"{name}: explorer {i} does not change when its controls move: {moves}")
            problems += [f"{name}: console: {e}" for e in errors]
            for href in found["links"]:
                target = urlparse(urljoin(server + name, href))
                if target.netloc != urlparse(server).netloc:
                    continue  # an external link: the reader's browser, not this site
                totals["links"] += 1
                path = site / unquote(target.path).lstrip("/")
                if path.is_dir():
                    path = path / "index.html"
                if not path.is_file():
                    problems.append(f"{name}: broken link {href}")
        browser.close()
    print(f"browser: {totals}")
    assert totals["math"] >= 10, "the method page alone has more formulas than that"
    assert totals["explorers"] >= 2, "the control and α_crit chapters each carry an explorer"
    assert not problems, "\n".join(problems[:40])
