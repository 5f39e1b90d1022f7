"""The pipeline figure on the book's first page, drawn from notebooks/pipeline.yml by book/_ext/salve_site.py."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

from salve_utils import pipeline

ROOT = Path(__file__).resolve().parents[1]


def _salve_site():
    """The Sphinx extension, imported from its file (book/_ext is not a package)."""
    spec = importlib.util.spec_from_file_location("salve_site", ROOT / "book/_ext/salve_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pipeline_figure_names_every_node_and_is_byte_identical_across_saves() -> None:
    from matplotlib.text import Text

    site = _salve_site()
    graph = pipeline.load_graph(ROOT)
    fig = site.draw_pipeline(graph, ROOT / "notebooks")
    lines = [t.get_text() for t in fig.findobj(Text)]
    texts = set(lines)
    stages = {**graph.chain, **{k: v for k, v in graph.report.items() if v.get("part") != "front"}}
    for name in stages:
        assert name in texts, f"no box for {name!r}"
    assert not any(v.get("part") == "front" and k in texts for k, v in graph.report.items())  # pages, not stages
    for name, body in stages.items():  # each box carries its notebook's title
        title = site.notebook_title(ROOT / "notebooks" / body["notebook"])
        assert title and title in " ".join(lines), (name, title)
    assert any("planted" in t for t in texts), "the datasets: limit of known_answers is not shown"
    assert any("once per edition" in t for t in texts)

    first, second = io.BytesIO(), io.BytesIO()
    site.save_svg(fig, first)
    site.save_svg(site.draw_pipeline(graph, ROOT / "notebooks"), second)
    assert first.getvalue() == second.getvalue()
    assert first.getvalue().lstrip().startswith(b"<?xml") and b"<dc:date>" not in first.getvalue()


def test_book_intro_includes_the_figure_the_extension_writes() -> None:
    site = _salve_site()
    intro = (ROOT / "book/intro.md").read_text()
    rel = site.PIPELINE_SVG.relative_to(ROOT / "book").as_posix()
    assert f"```{{figure}} {rel}" in intro


def test_the_landing_page_draws_the_summarys_verdicts_and_says_when_there_are_none(tmp_path: Path) -> None:
    import pandas as pd

    site = _salve_site()
    assert site.VERDICT_GRID_MARKER in (ROOT / "book/intro.md").read_text()
    claims = pd.DataFrame({"edition": ["a", "a", "b"], "claim": ["suppress", "seeds", "suppress"],
                           "verdict": ["partly", "does not hold: 2 of 10", "holds"]})
    wide = site.verdict_grid_table(claims, {"a": "A", "b": "B"})
    assert wide.to_dict("list") == {"claim": ["suppress", "seeds"], "A: verdict": ["partly", "does not hold: 2 of 10"],
                                    "B: verdict": ["holds", "—"]}
    svg = tmp_path / "verdicts.svg"
    assert not site.write_verdict_grid("nothing", tmp_path, svg) and not svg.exists()
    assert site.verdict_grid_markdown("nothing", tmp_path) == ""
    assert site.write_verdict_grid("cpu", ROOT, svg)  # the committed reference edition's summary
    first = svg.read_bytes()
    assert site.write_verdict_grid("cpu", ROOT, svg) and svg.read_bytes() == first  # byte-identical redraw

def test_chapters_link_the_tables_their_node_wrote(tmp_path: Path) -> None:
    """The download list comes from the chapter's metadata (a fresh clone has no data/artifacts/)."""
    site = _salve_site()
    results = tmp_path / "data/results/p/e"
    results.mkdir(parents=True)
    (results / "curves.csv").write_text("a,b\n1,2\n")
    text = site.table_links("book/chapters/p/e/control", {"curves": "h1", "big": "h2"}, tmp_path)
    assert "{download}`curves.csv <../../../../data/results/p/e/curves.csv>`" in text
    assert "`big.csv` (not in the repository" in text and "{download}`big.csv" not in text
    assert site.table_links("book/chapters/p/e/verify", {}, tmp_path) == ""  # wrote no table: nothing to list
    assert site.table_links("book/intro", {"curves": "h"}, tmp_path) == ""
    (results / "sweep.parquet").write_bytes(b"PAR1")  # a large table, written as Parquet
    text = site.table_links("book/chapters/p/e/control", {"sweep": "h3"}, tmp_path)
    assert "{download}`sweep.parquet <../../../../data/results/p/e/sweep.parquet>`" in text and "read_parquet" in text
    (tmp_path / "data/results/p/claims.csv").write_text("a\n")  # a report node's table, one level up
    assert "<../../../data/results/p/claims.csv>" in site.table_links("book/chapters/p/summary", ["claims"], tmp_path)


def test_site_extension_doctests() -> None:
    """The buttons follow repository.url: none when it is empty (no invented links)."""
    import doctest

    result = doctest.testmod(_salve_site())
    assert result.attempted >= 2 and result.failed == 0
    config = (ROOT / "_config.yml").read_text()
    assert 'url: ""' in config or "url: https://" in config  # named once, in _config.yml


def test_figures_are_compressed_to_palette_png_without_visible_change(tmp_path):
    """A chapter figure (lines, a heatmap, text) comes out smaller, in palette mode, each pixel within a few levels."""
    import doctest

    import matplotlib
    import numpy as np
    from PIL import Image

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    site = _salve_site()
    assert doctest.testmod(site, extraglobs={"Path": Path}).failed == 0  # compress_png's examples
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3), dpi=150)
    x = np.linspace(0, 8, 200)
    for k in range(10):
        a.plot(x, np.exp(-k * x / 8), label=f"class {k}")
    a.legend(fontsize=6)
    b.imshow(np.random.default_rng(0).random((40, 40)), cmap="viridis")
    path = tmp_path / "figure.png"
    fig.savefig(path)
    plt.close(fig)
    original = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    before, after = site.compress_png(path)
    assert after < 0.75 * before, (before, after)
    with Image.open(path) as im:
        assert im.mode == "P"
        err = np.abs(np.asarray(im.convert("RGB"), dtype=np.int16) - original)
    assert err.mean() < 3 and np.percentile(err, 99) < 40, (err.mean(), np.percentile(err, 99))
