"""A small Sphinx extension for the SALVE book's website: what a reader sees of an executed chapter.

* Reader first: the parameter cells (the notebook's defaults and the values papermill
  injected) are left out of the page -- the provenance box lists the parameters --
  and every other code cell's input is folded behind a toggle, outputs and prose
  visible. The notebooks themselves are not changed.
* Every chapter ends with links to download the tables it wrote (CSV or Parquet) (the list the
  runner recorded in the chapter's metadata), so a reader can check a number without rerunning.
* The repository, issue and launch (Binder, Colab) buttons appear only when
  ``repository.url`` is set in _config.yml, the one place that names the repository.
* sphinx-thebe's configuration script is added twice to every page (the browser then
  reports ``Identifier 'THEBE_JS_URL' has already been declared``): keep one.
* The landing page opens with the profile's computed first answer (the summary's
  ``first_answer`` table), in place of the line ``<!-- first-answer -->``, and the
  summary's verdicts at a glance (drawn from its ``claims.csv``) in place of
  ``<!-- verdict-grid -->``.
* The pipeline overview on the first page (the paper's Figure 1, as this book runs it)
  is drawn from ``notebooks/pipeline.yml`` when the build starts, into
  ``book/_static/pipeline.svg`` (generated, not committed); the SVG is byte-identical
  from build to build, and rewritten only when the graph or a notebook title changes.
* The chapters' figures are written by matplotlib as 24-bit PNG; when the build ends, each
  one in ``_images/`` becomes a 256-colour palette PNG (:func:`compress_png`) -- about a
  third of the bytes, and no pixel off by more than a quantisation step a reader cannot see
  in a plot. The notebooks keep the full-colour originals.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

#: Cells a reader does not need to see: the parameters, which the provenance box lists.
REMOVED = {"parameters", "injected-parameters"}

#: The book's folder (this file is book/_ext/salve_site.py) and the project root above it.
BOOK = Path(__file__).resolve().parents[1]
ROOT = BOOK.parent
#: Where the pipeline figure is written; book/intro.md includes it as ``_static/pipeline.svg``.
PIPELINE_SVG = BOOK / "_static" / "pipeline.svg"


#: Tables larger than this are not offered for download (they are not committed either).
MAX_DOWNLOAD_BYTES = 20 * 2**20


def table_links(docname: str, tables, root: Path = ROOT) -> str:
    """Markdown listing the tables a chapter's node wrote, as download links ("" when none).

    ``docname`` is ``book/chapters/<profile>/<edition>/<node>`` (or ``…/<profile>/<node>``
    for a report node); ``tables`` the names the runner recorded in the chapter's
    metadata (``salve.outputs.tables``); they live in ``data/results/<profile>[/<edition>]/``,
    as CSV (the small tables) or Parquet (the sweeps), whichever the pipeline wrote.
    """
    parts = docname.split("/")[2:]  # profile, [edition,] node
    tables = sorted(tables or ())
    if len(parts) not in (2, 3) or not tables:
        return ""
    folder = root / "data" / "results" / Path(*parts[:-1])
    up = "../" * (len(docname.split("/")) - 1)
    items, parquet = [], False
    for name in tables:
        found = [folder / f"{name}{s}" for s in (".csv", ".parquet") if (folder / f"{name}{s}").is_file()]
        path = found[0] if found else folder / f"{name}.csv"
        parquet |= path.suffix == ".parquet"
        rel = f"{up}{path.relative_to(root).as_posix()}"
        if path.is_file() and path.stat().st_size <= MAX_DOWNLOAD_BYTES:
            items.append(f"* {{download}}`{path.name} <{rel}>` ({path.stat().st_size / 1024:,.0f} KiB)")
        else:
            size = f"{path.stat().st_size / 2**20:,.0f} MiB, " if path.is_file() else ""
            items.append(f"* `{path.name}` ({size}not in the repository: the pipeline writes it to "
                         f"`{path.relative_to(root).as_posix()}`)")
    return ("## Tables of this chapter\n\nThe tables this chapter wrote, as CSV or, for the large ones, Parquet "
            "(a table several chapters write to carries a `node` column naming the chapter of each row):\n\n"
            + "\n".join(items) + "\n"
            + ("\nA Parquet table reads as `pandas.read_parquet(path)` (with pyarrow), or as the pipeline reads it, "
               "`salve_utils.common.tables.read_table_file(path)` (the same numbers as a CSV, to six significant digits).\n"
               if parquet else ""))


#: A line in a page that :func:`_rulebook_table` replaces with the rulebook, from the code.
RULEBOOK_MARKER = "<!-- rulebook -->"


def rulebook_markdown() -> str:
    """The rulebook (``salve_utils.study.verdicts.rulebook``, default thresholds) as a Markdown table."""
    import sys

    sys.path.insert(0, str(ROOT))
    from salve_utils.study.verdicts import rulebook

    table = rulebook()
    cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(table.columns) + " |", "|" + " --- |" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _rulebook_table(app, docname, source) -> None:
    if RULEBOOK_MARKER in source[0]:
        source[0] = source[0].replace(RULEBOOK_MARKER, rulebook_markdown())


#: A line of the landing page that :func:`_first_answer` replaces with the profile's computed first answer.
FIRST_ANSWER_MARKER = "<!-- first-answer -->"


def first_answer_markdown(profile: str, root: Path = ROOT) -> str:
    """The summary's first answer (``data/results/<profile>/first_answer.csv``) as Markdown, with a link to it.

    Every sentence is the summary node's, computed from the run; the landing page only
    repeats them, so the first screen and the summary cannot disagree.
    """
    import csv

    path = root / "data" / "results" / profile / "first_answer.csv"
    if not path.is_file():
        return (f"*The computed answer appears here once the `{profile}` profile's summary has run "
                f"(`python -m salve_utils.pipeline run --profile {profile}`).*")
    with path.open(newline="", encoding="utf-8") as f:
        answers = [row["answer"] for row in csv.DictReader(f)]
    summary = root / "book" / "chapters" / profile / "summary.ipynb"
    link = (f"\n\nEach sentence is computed, with its rule and its tables, on {{doc}}`the summary "
            f"</book/chapters/{profile}/summary>`." if summary.is_file() else "")
    return "\n\n".join(answers) + link


def _profile(app) -> str:
    """The profile this build renders (the table of contents is ``<profile>.yml``), ``cpu`` when unknown."""
    profile = Path(getattr(app.config, "external_toc_path", "") or "cpu.yml").stem
    return profile if (ROOT / "data" / "results" / profile).is_dir() else "cpu"


def _first_answer(app, docname, source) -> None:
    if FIRST_ANSWER_MARKER in source[0]:
        source[0] = source[0].replace(FIRST_ANSWER_MARKER, first_answer_markdown(_profile(app)))
    if VERDICT_GRID_MARKER in source[0]:
        source[0] = source[0].replace(VERDICT_GRID_MARKER, verdict_grid_markdown(_profile(app)))


#: A line of the landing page replaced by the summary's verdicts at a glance (drawn into :data:`VERDICTS_SVG`).
VERDICT_GRID_MARKER = "<!-- verdict-grid -->"
#: Where the landing page's verdict grid is drawn (generated at every build, not committed).
VERDICTS_SVG = BOOK / "_static" / "verdicts.svg"


def verdict_grid_table(claims, titles: dict[str, str]):
    """The summary's ``claims.csv`` (edition, claim, ..., verdict) as the wide table the verdict grid draws.

    Claims in the order the summary lists them; ``"—"`` where an edition does not judge a claim.
    """
    import pandas as pd

    order = list(dict.fromkeys(claims["claim"]))
    wide = pd.DataFrame({"claim": order})
    for edition, title in titles.items():
        verdicts = claims[claims["edition"] == edition].drop_duplicates("claim").set_index("claim")["verdict"]
        wide[f"{title}: verdict"] = wide["claim"].map(verdicts).fillna("—")
    return wide


def write_verdict_grid(profile: str, root: Path = ROOT, out: Path = VERDICTS_SVG) -> bool:
    """Draw ``profile``'s verdicts (its summary's ``claims.csv``) into ``out``; ``False`` when it has no summary.

    Drawn, not computed: every verdict is the summary node's, read from the committed table.
    """
    import io

    import pandas as pd

    from salve_utils.pipeline import load_profile
    from salve_utils.figures import verdict_grid

    path = root / "data" / "results" / profile / "claims.csv"
    if not path.is_file():
        return False
    claims = pd.read_csv(path)
    # long edition titles wrap in the figure (verdict_grid), so neighbouring column labels never overlap
    titles = {e: body["title"] for e, body in load_profile(root, profile)["editions"].items()
              if e in set(claims["edition"])}
    fig = verdict_grid(verdict_grid_table(claims, titles), list(titles.values()))
    buf = io.BytesIO()
    save_svg(fig, buf)
    _write_if_changed(Path(out), buf.getvalue())
    return True


def verdict_grid_markdown(profile: str, root: Path = ROOT) -> str:
    """The landing page's figure of every verdict, or a note when the profile's summary has not run."""
    if not write_verdict_grid(profile, root):
        return ""
    return (":::{figure} _static/verdicts.svg\n:name: fig-landing-verdicts\n:width: 100%\n"
            ":alt: A grid of the paper's claims (rows) against this book's editions (columns), each cell coloured "
            "by its verdict: holds, partly, does not hold or inconclusive.\n\n"
            f"Every claim of the paper on every edition, as {{doc}}`the summary </book/chapters/{profile}/summary>` "
            "judges it; each verdict's measurement and rule are there.\n:::")


#: ``|c|`` in a docstring is an absolute value, not a reStructuredText substitution.
_BARS = re.compile(r"(?<![`\\|])\|([A-Za-z_][A-Za-z0-9_]*)\|(?![`|_])")


def _absolute_values(app, what, name, obj, options, lines) -> None:
    """Escape ``|x|`` (an absolute value in a docstring's prose) so that autodoc does not read a substitution."""
    for i, line in enumerate(lines):
        lines[i] = _BARS.sub(r"\\|\1\\|", line)


def _reader_first(app, docname, source) -> None:
    """Tag an executed chapter's cells as it is read: parameter cells removed, code inputs folded."""
    if not docname.startswith("book/chapters/") or not source[0].lstrip().startswith("{"):
        return
    nb = json.loads(source[0])
    links = table_links(docname, nb.get("metadata", {}).get("salve", {}).get("outputs", {}).get("tables"))
    if links:
        nb.setdefault("cells", []).append({"cell_type": "markdown", "id": "salve-tables", "metadata": {},
                                           "source": links})
    nb["cells"] = merge_silent_code(nb.get("cells", []))
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        extra = "remove-cell" if REMOVED & set(tags) else "hide-input"
        if extra not in tags:
            tags.append(extra)
    source[0] = json.dumps(nb)


def merge_silent_code(cells: list[dict]) -> list[dict]:
    r"""Fold a code cell that shows nothing into the code cell after it, so the page has one "Show code" toggle.

    Two code cells in a row would give two toggles back to back with nothing between them.

    >>> code = lambda src, out=(): {"cell_type": "code", "source": src, "outputs": list(out), "metadata": {}}
    >>> merged = merge_silent_code([code("a = 1\n"), code("b = 2"), code("a + b", ["3"])])
    >>> [(c["source"], len(c["outputs"])) for c in merged]
    [('a = 1\nb = 2\na + b', 1)]
    >>> len(merge_silent_code([code("a = 1"), {"cell_type": "markdown", "source": "x"}, code("b")]))
    3
    """
    def shown_code(c: dict) -> bool:
        return c.get("cell_type") == "code" and not REMOVED & set(c.get("metadata", {}).get("tags", []))

    out: list[dict] = []
    for cell in cells:
        prev = out[-1] if out else None
        if prev is not None and shown_code(prev) and shown_code(cell) and not prev.get("outputs"):
            out[-1] = {**cell, "source": "".join(prev["source"]).rstrip("\n") + "\n" + "".join(cell["source"])}
        else:
            out.append(cell)
    return out


def repository_buttons(theme_options: dict) -> dict:
    """Buttons follow ``repository.url`` in _config.yml: all on when it is set, none when it is empty.

    >>> repository_buttons({"repository_url": "", "launch_buttons": {"colab_url": "x"}})["launch_buttons"]
    {}
    >>> repository_buttons({"repository_url": "https://github.com/o/r"})["use_issues_button"]
    True
    """
    known = bool(theme_options.get("repository_url"))
    theme_options["use_repository_button"] = theme_options["use_issues_button"] = known
    if not known:
        theme_options["launch_buttons"] = {}
    return theme_options


def _repository_buttons(app, config) -> None:
    repository_buttons(config.html_theme_options)
    # The site carries no _sources/ copies (html_copy_source: false, 26 MB of executed notebooks):
    # no download button pointing at them. The notebooks are in the repository; the tables each
    # chapter wrote are linked at its end.
    config.html_theme_options["use_download_button"] = False


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    seen = set()
    kept = []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", None) or "", repr(sorted(getattr(script, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(script)
    context["script_files"] = kept


# =========================================================================== the pipeline figure

#: The paper's stage of each node (Discover, Verify, Control); a node not listed gets no stage line.
STAGES = {
    "backbone": "Discover", "autoencoder": "Discover", "discover": "Discover",
    "verify": "Verify",
    "control": "Control", "alpha_crit": "Control", "tower": "Control", "seeds": "Control",
    "known_answers": "known-answer control",
    "summary": "Report", "compare": "Report",
}
#: Box colours (edge, face) per stage.
STAGE_COLOURS = {
    "Discover": ("#3b6ea5", "#e6eef7"),
    "Verify": ("#3d8a4f", "#e6f2e8"),
    "Control": ("#c0612b", "#fbece2"),
    "known-answer control": ("#6b5aa6", "#eeebf6"),
    "Report": ("#555555", "#efefef"),
    None: ("#555555", "#ffffff"),
}
#: Box and spacing sizes in inches; text sizes in points.
BOX_W, ROW_GAP, MARGIN = 1.8, 0.12, 0.2
NAME_PT, TITLE_PT, SMALL_PT = 9.0, 7.5, 6.5
#: Characters per line of a box's title and of its small print (DejaVu Sans, BOX_W wide).
TITLE_CHARS, SMALL_CHARS = 27, 34

#: The SVG's internal ids are salted with this instead of a random salt, so builds compare equal.
#: The rest pins what a matplotlibrc could change about the file.
SVG_RC = {"svg.hashsalt": "salve-pipeline", "svg.fonttype": "path", "svg.image_inline": True,
          "savefig.bbox": None, "savefig.facecolor": "white", "savefig.transparent": False}


def _col_gap(n_left: int, n_right: int) -> float:
    """The gap between two columns: wider where arrows fan out to (or in from) a tall stack."""
    return 0.3 + 0.06 * max(n_left, n_right)


def notebook_title(path: Path) -> str:
    """The first ``# `` heading of a notebook's markdown cells, or ``""``."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        for line in ("".join(source) if isinstance(source, list) else source).splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return ""


def _edges(graph) -> list[tuple[str, str]]:
    """The graph's edges (upstream -> node) over chain and report nodes, without the implied ones.

    A node reads its upstream directly (``verify`` reads the backbone as well as
    ``discover``); an edge already implied by a longer path is left out, as in the
    sketch at the top of pipeline.yml, so the figure shows the order the nodes run in.
    """
    preds: dict[str, list[str]] = {}
    for name, body in graph.chain.items():
        preds[name] = list(dict.fromkeys((body.get("upstream") or {}).values()))
    for name, body in graph.report.items():
        ups = list((body.get("per_edition") or {}).values()) + list((body.get("upstream") or {}).values())
        preds[name] = list(dict.fromkeys(ups))
    ancestors: dict[str, set[str]] = {}

    def above(name: str) -> set[str]:
        if name not in ancestors:
            ancestors[name] = set()
            for up in preds[name]:
                ancestors[name] |= {up} | above(up)
        return ancestors[name]

    return [(up, name) for name, ups in preds.items() for up in ups
            if not any(up in above(other) for other in ups if other != up)]


def _columns(graph) -> dict[str, int]:
    """Each node's column: its longest path from a source; report nodes right of the whole chain."""
    column: dict[str, int] = {}

    def depth(name: str, group: dict, offset: int) -> int:
        if name not in column:
            ups = (group[name].get("upstream") or {}).values()
            column[name] = max((depth(up, group, offset) + 1 for up in ups), default=offset)
        return column[name]

    for name in graph.chain:
        depth(name, graph.chain, 0)
    first_report = max(column.values(), default=-1) + 1
    for name in graph.report:
        depth(name, graph.report, first_report)
    return column


def draw_pipeline(graph, notebooks_dir: Path) -> "Figure":
    """Draw the pipeline graph (``salve_utils.pipeline.load_graph``) as a left-to-right figure.

    One box per node of ``notebooks/pipeline.yml`` -- the chain, which runs once per
    edition, then the report nodes, which run once per profile -- labelled with the
    node's name, its notebook's title and the paper's stage, with an arrow from every
    upstream node (edges implied by a longer path left out). A chain node limited by
    ``datasets:`` says so in its box and in the note under the figure.
    """
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    import dataclasses

    # pages placed beside the method (``part: front``, e.g. the teaching page) are no stage of the run
    graph = dataclasses.replace(graph, report={k: v for k, v in graph.report.items() if v.get("part") != "front"})
    notebooks_dir = Path(notebooks_dir)
    column = _columns(graph)
    bodies = {**graph.chain, **graph.report}
    line = lambda pt: pt / 72 * 1.3  # noqa: E731  (a text line's height in inches)

    def lines(name: str) -> list[tuple[str, float, dict]]:
        body = bodies[name]
        title = notebook_title(notebooks_dir / body["notebook"]) or body.get("title", "")
        out = [(name, NAME_PT, {"weight": "bold"})]
        title = title.replace("$", r"\$")  # no mathtext
        out += [(t, TITLE_PT, {}) for t in textwrap.wrap(title, TITLE_CHARS, break_on_hyphens=False)]
        stage = STAGES.get(name)
        if stage:
            out.append((stage, SMALL_PT, {"style": "italic", "color": STAGE_COLOURS[stage][0]}))
        if body.get("datasets"):
            out.append((f"datasets: {', '.join(map(str, body['datasets']))} only", SMALL_PT,
                        {"color": "#444444"}))
        if name in graph.report:
            reads = list(dict.fromkeys((body.get("per_edition") or {}).values()))
            if reads:
                text = "reads every edition's " + ", ".join(reads)
                out += [(t, SMALL_PT, {"color": "#444444"}) for t in textwrap.wrap(text, SMALL_CHARS)]
        return out

    content = {name: lines(name) for name in bodies}
    height = {name: sum(line(pt) for _, pt, _ in rows) + 0.16 for name, rows in content.items()}
    n_cols = max(column.values()) + 1 if column else 1
    stacks = {c: [n for n in bodies if column[n] == c] for c in range(n_cols)}
    stack_h = {c: sum(height[n] for n in names) + ROW_GAP * (len(names) - 1) for c, names in stacks.items()}
    body_h = max(stack_h.values(), default=1.0)
    note_h, pad = 0.34, 0.1  # the notes under the regions, a region's inner margin
    left = [MARGIN]
    for c in range(1, n_cols):
        left.append(left[-1] + BOX_W + _col_gap(len(stacks[c - 1]), len(stacks[c])))
    width = left[-1] + BOX_W + MARGIN

    # the two regions, each with its label above it: the chain, once per edition; the report nodes
    regions = []
    for names, label in ((list(graph.chain), "The SALVE chain: runs once per edition (a backbone–dataset pair), "
                                              "its nodes named <edition>.<node>"),
                         (list(graph.report), "Once per profile")):
        if names:
            x0, x1 = min(left[column[n]] for n in names) - 0.1, max(left[column[n]] for n in names) + BOX_W + 0.1
            regions.append((x0, x1, textwrap.wrap(label, int((x1 - x0) / 0.062))))
    header_h = 0.12 + line(7.5) * max((len(r[2]) for r in regions), default=0)
    total_h = body_h + 2 * pad + header_h + note_h + 2 * MARGIN

    # every node's box: (left, bottom, height), each column centred vertically
    boxes: dict[str, tuple[float, float, float]] = {}
    bottom = MARGIN + note_h + pad
    mid = bottom + body_h / 2
    for c, names in stacks.items():
        y = mid + stack_h[c] / 2
        for name in names:
            boxes[name] = (left[c], y - height[name], height[name])
            y -= height[name] + ROW_GAP

    with rc_context({"font.family": "DejaVu Sans", **SVG_RC}):
        fig = Figure(figsize=(width, total_h))
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, width)
        ax.set_ylim(0, total_h)
        ax.set_axis_off()

        y0, y1 = bottom - pad, bottom + body_h + pad
        for x0, x1, wrapped in regions:
            ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0,rounding_size=0.08",
                                        fill=False, linestyle=(0, (4, 3)), linewidth=0.8, edgecolor="#9a9a9a"))
            for t, text in enumerate(wrapped):
                ax.text(x0 + 0.06, y1 + 0.05 + (len(wrapped) - 1 - t) * line(7.5), text, fontsize=7.5,
                        color="#444444", va="bottom", ha="left")

        for name, (x, y, h) in boxes.items():
            stage = STAGES.get(name)
            edge, face = STAGE_COLOURS[stage if stage in STAGE_COLOURS else None]
            ax.add_patch(FancyBboxPatch((x, y), BOX_W, h, boxstyle="round,pad=0,rounding_size=0.06",
                                        facecolor=face, edgecolor=edge, linewidth=1.1, zorder=2))
            ty = y + h - 0.08
            for text, pt, style in content[name]:
                ax.text(x + BOX_W / 2, ty, text, fontsize=pt, ha="center", va="top", zorder=3,
                        **{"color": "#1a1a1a", **style})
                ty -= line(pt)

        # arrows leave a box's right side and enter the next box's left side, several spread
        # over the middle of the side in the order of the boxes at their other end
        edges = _edges(graph)
        centre = {name: y + h / 2 for name, (_, y, h) in boxes.items()}

        def port(name: str, others: list[str], other: str) -> float:
            if len(others) == 1:
                return centre[name]
            others = sorted(others, key=lambda o: -centre[o])
            span = min(0.5 * boxes[name][2], 0.07 * (len(others) - 1))
            return centre[name] + span / 2 - span * others.index(other) / (len(others) - 1)

        for up, name in edges:
            outs = [v for u, v in edges if u == up]
            ins = [u for u, v in edges if v == name]
            ax.add_patch(FancyArrowPatch((boxes[up][0] + BOX_W, port(up, outs, name)),
                                         (boxes[name][0], port(name, ins, up)), arrowstyle="-|>",
                                         mutation_scale=8, linewidth=0.8, color="#4d4d4d", shrinkA=0,
                                         shrinkB=0, zorder=1))

        limited = [f"{name}: {', '.join(map(str, body['datasets']))} data only"
                   for name, body in graph.chain.items() if body.get("datasets")]
        notes = ["Drawn from notebooks/pipeline.yml. An arrow: the node reads what the arrow comes from "
                 "(a read already implied by a longer path is not drawn)."]
        if limited:
            notes.append("datasets: in pipeline.yml limits a chain node to the editions on those datasets — "
                         + "; ".join(limited) + ".")
        for i, text in enumerate(notes):
            ax.text(MARGIN, MARGIN + note_h - 0.07 - i * line(7), text, fontsize=7, color="#444444",
                    va="top", ha="left")
    return fig


def save_svg(fig: "Figure", path) -> None:
    """Write ``fig`` as SVG with no date and a fixed id salt, so the same figure gives the same bytes."""
    from matplotlib import rc_context

    with rc_context(SVG_RC):
        fig.savefig(path, format="svg", metadata={"Date": None})


def write_pipeline_figure(root: Path = ROOT, out: Path = PIPELINE_SVG) -> bool:
    """Draw ``root``'s pipeline graph into ``out``; write only when the bytes change (Sphinx reads mtimes)."""
    import io

    from salve_utils.pipeline import load_graph

    buf = io.BytesIO()
    save_svg(draw_pipeline(load_graph(root), root / "notebooks"), buf)
    return _write_if_changed(Path(out), buf.getvalue())


def _write_if_changed(out: Path, data: bytes) -> bool:
    """Write ``data`` to ``out`` atomically, only when the bytes change (Sphinx reads mtimes)."""
    if out.is_file() and out.read_bytes() == data:
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return True


def compress_png(path: Path, colours: int = 256) -> tuple[int, int]:
    """Rewrite the PNG at ``path`` as a ``colours``-colour palette PNG when that is smaller; return (before, after) bytes.

    Median-cut quantisation, no dithering (plots are flat colour; dithering would only add
    noise and bytes). Images with transparency, and those already in palette mode, are left
    as they are. The file is replaced atomically.

    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> folder = Path(tempfile.mkdtemp())
    >>> plot = np.full((200, 300, 4), 255, np.uint8)
    >>> plot[..., :3] = np.random.default_rng(0).integers(0, 4, (200, 300, 1)) * 60  # four flat colours
    >>> Image.fromarray(plot).save(folder / "plot.png")
    >>> before, after = compress_png(folder / "plot.png")
    >>> after < before, Image.open(folder / "plot.png").mode
    (True, 'P')
    >>> compress_png(folder / "plot.png")[1] == after  # a palette PNG is left alone
    True
    """
    import io

    from PIL import Image

    before = path.stat().st_size
    with Image.open(path) as im:
        im.load()
    if im.mode == "P" or (im.mode in ("RGBA", "LA") and im.getchannel("A").getextrema()[0] < 255):
        return before, before
    buf = io.BytesIO()
    im.convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        buf, "PNG", optimize=True)
    if buf.tell() >= before:
        return before, before
    _write_if_changed(path, buf.getvalue())
    return before, buf.tell()


def _compress_images(app, exception) -> None:
    from sphinx.util import logging

    if exception is not None or app.builder.format != "html":
        return
    sizes = [compress_png(p) for p in sorted((Path(app.outdir) / "_images").glob("*.png"))]
    before, after = sum(b for b, _ in sizes), sum(a for _, a in sizes)
    if before > after:
        logging.getLogger(__name__).info("salve_site: %d figures, %.1f MB -> %.1f MB (palette PNG)", len(sizes),
                                         before / 1e6, after / 1e6)


def _pipeline_figure(app) -> None:
    from sphinx.util import logging

    if write_pipeline_figure():
        logging.getLogger(__name__).info("salve_site: drew %s", PIPELINE_SVG.relative_to(ROOT))


def setup(app):
    app.connect("config-inited", _repository_buttons)
    app.connect("builder-inited", _pipeline_figure)
    app.connect("source-read", _reader_first)
    app.connect("source-read", _rulebook_table)
    app.connect("source-read", _first_answer)
    app.connect("autodoc-process-docstring", _absolute_values)
    app.connect("html-page-context", _dedupe_scripts)
    app.connect("build-finished", _compress_images)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
