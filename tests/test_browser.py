"""The committed edition as a reader sees it: every page in headless Chromium, with the network cut off.

The book is built from the committed chapters (``make html``'s steps, into a
temporary folder) and served on localhost; every request to another host is
blocked and counted. A page fails when it still shows raw TeX (typeset or left as
``$...$`` / ``\\(`` in its text), an image does not load, the console reports an
error, a traceback, a Python repr (``PosixPath(``, ``<matplotlib ...>``) or a
kernel's stderr is printed, a table is wider than its column without a scroll
container, its title is nested in parentheses or another page's, it weighs more than
:data:`MAX_PAGE_BYTES` with its images, or an internal link points at nothing.

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
PROBE = r"""() => {
  const math = [...document.querySelectorAll('div.math, span.math')];
  const raw = math.filter(m => !m.querySelector('mjx-container'));
  const imgs = [...document.images];
  return {
    math: math.length,
    raw: raw.map(m => m.textContent.slice(0, 60)),
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
    local_images: [...new Set(imgs.map(i => i.getAttribute('src')).filter(s => s && !s.startsWith('data:')
                                                                           && !/^[a-z]+:/.test(s)))],
    // an executed cell's error output (a docstring's doctest example on the API page is not one)
    traceback: document.querySelectorAll('.cell_output .traceback, .output.traceback').length > 0 ||
      [...document.querySelectorAll('.cell_output')].some(o => o.innerText.includes('Traceback')),
    explorers: document.querySelectorAll('.salve-explorer').length,
    title: (document.querySelector('article h1') || {innerText: ''}).innerText.replace(/[#¶]\s*$/, '').trim(),
    // what a reader must never see: TeX that no one typeset, Python reprs, a kernel's stderr
    texts: (() => {
      const article = document.querySelector('article') || document.body;
      const copy = article.cloneNode(true);
      copy.querySelectorAll('pre, code, script, style, .math, mjx-container, .salve-explorer').forEach(e => e.remove());
      return copy.textContent;
    })(),
    reprs: [...document.querySelectorAll('.cell_output, .output')]
      .map(o => (o.innerText.match(/PosixPath\(|<matplotlib[^>]*>|<Figure size[^>]*>|object at 0x[0-9a-f]+/) || [])[0])
      .filter(Boolean),
    stderr: document.querySelectorAll('.cell_output .stderr, .output.stderr, .output_stderr').length,
    // a table wider than its column must sit in something that scrolls (itself or an ancestor up to the column)
    overflowing: (() => {
      const column = document.querySelector('article') || document.body;
      const width = column.clientWidth;
      const scrolls = e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX) && e.clientWidth <= width + 1;
      return [...column.querySelectorAll('table')].filter(t => {
        if (t.getBoundingClientRect().width <= width + 1 && t.scrollWidth <= t.clientWidth + 1) { return false; }
        for (let e = t; e && e !== column; e = e.parentElement) { if (scrolls(e)) { return false; } }
        return true;
      }).map(t => `${Math.round(t.getBoundingClientRect().width)} px in ${width} px`);
    })(),
    tables: document.querySelectorAll('article table').length,
  };
}"""

#: TeX delimiters left in a page's text after MathJax ran (code blocks excluded).
RAW_TEX = re.compile(r"\$[^$\s][^$\n]{0,80}?\$|\\\(|\\\[")
#: The heaviest a page may be: its HTML plus the images it shows (the site's own assets excluded).
MAX_PAGE_BYTES = 6 * 2**20

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
              "explorer_moves": 0, "tables": 0, "heaviest_page_kib": 0}
    titles: dict[str, str] = {}
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
            if name == "book/api.html":
                totals["api_math"] = found["math"]  # the docstrings' equations, typeset
            totals["images"] += found["images"]
            for text in found["raw"]:
                problems.append(f"{name}: raw TeX {text!r}")
            for src in found["broken"]:
                problems.append(f"{name}: image does not load: {src}")
            if found["traceback"]:
                problems.append(f"{name}: shows a traceback")
            raw_tex = RAW_TEX.findall(found["texts"])
            problems += [f"{name}: raw TeX in the text {t!r}" for t in raw_tex[:3]]
            problems += [f"{name}: shows a Python repr {r!r}" for r in found["reprs"]]
            if found["stderr"]:
                problems.append(f"{name}: shows {found['stderr']} stderr block(s)")
            problems += [f"{name}: a table overflows its column without a scroll container ({o})"
                         for o in found["overflowing"]]
            totals["tables"] += found["tables"]
            title = found["title"]
            if re.search(r"\([^()]*\(", title) or (title.startswith("(") and title.endswith(")")):
                problems.append(f"{name}: parenthesised title {title!r}")
            if title and title in titles:
                problems.append(f"{name}: the title {title!r} is also {titles[title]}'s")
            titles.setdefault(title, name)
            weight = len(html.encode()) + sum((site / Path(name).parent / src).stat().st_size
                                              for src in found["local_images"]
                                              if (site / Path(name).parent / src).is_file())
            totals["heaviest_page_kib"] = max(totals["heaviest_page_kib"], weight // 1024)
            if weight > MAX_PAGE_BYTES:
                problems.append(f"{name}: weighs {weight / 2**20:.1f} MiB with its images (at most "
                                f"{MAX_PAGE_BYTES / 2**20:.0f} MiB)")
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
    assert totals.get("api_math", 0) >= 27, "the API page typesets its docstrings' 27 equation blocks"
    assert totals["explorers"] >= 2, "the control and α_crit chapters each carry an explorer"
    assert not problems, "\n".join(problems[:40])


@pytest.mark.slow
def test_the_probe_sees_what_a_reader_must_not() -> None:
    """The page probe has teeth: a repr, raw TeX, a stderr block, an unscrolled wide table, a nested title."""
    if CHROMIUM is None:
        _skip_or_fail("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    bad = """<html><body><article style="width: 600px"><h1>Control (Planted (ResNet-18))</h1>
      <p>the edit at $\\alpha_{crit}$ and \\(b\\)</p>
      <div class="cell_output"><pre>PosixPath('/tmp/x.json')</pre></div>
      <div class="output stderr">UserWarning: Tight layout not applied</div>
      <table style="width: 2000px"><tr><td>wide</td></tr></table>
      <div style="overflow-x: auto; width: 600px"><table style="width: 2000px"><tr><td>scrolls</td></tr></table></div>
    </article></body></html>"""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.set_content(bad)
        found = page.evaluate(PROBE)
        browser.close()
    assert found["reprs"] == ["PosixPath("]
    assert found["stderr"] == 1
    assert found["overflowing"] == ["2000 px in 600 px"]  # the one in a scroll container passes
    assert len(RAW_TEX.findall(found["texts"])) == 2
    assert found["title"] == "Control (Planted (ResNet-18))"
