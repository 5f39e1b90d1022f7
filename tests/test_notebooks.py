"""Source notebooks: no outputs, a title, typed parameters, and a graph/profiles/toc that agree."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from salve_utils import pipeline

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_source_notebook_is_clean_and_parameterized(path: Path) -> None:
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    assert nb["cells"][0]["cell_type"] == "markdown" and "".join(nb["cells"][0]["source"]).startswith("# ")
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    params = pipeline.notebook_parameters(path)
    assert set(pipeline.RESERVED) <= set(params)
    untyped = [name for name, p in params.items() if p["type"] == "None"]
    assert not untyped, f"parameters without a type annotation: {untyped}"


def _final_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements a cell may end on: the last one, or the last of each block of a final if/for/with/try."""
    last = body[-1]
    if isinstance(last, (ast.If, ast.For, ast.While, ast.With)):
        blocks = [last.body, getattr(last, "orelse", [])]
    elif isinstance(last, ast.Try):
        blocks = [last.body, last.orelse, last.finalbody] + [h.body for h in last.handlers]
    else:
        return [last]
    return [s for block in blocks if block for s in _final_statements(block)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_cell_shows_the_return_value_of_a_context_call(path: Path) -> None:
    """`ctx.record(...)` and `ctx.save_*(...)` return paths: a cell ending on one prints `PosixPath(...)` on the page."""
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or source.rstrip().endswith(";") or not source.strip():
            continue
        for stmt in _final_statements(ast.parse(source).body):
            call = stmt.value if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) else None
            assert call is None or not ast.unparse(call.func).startswith("ctx."), \
                f"cell {i} ends on {ast.unparse(call.func)}(...): end it with ';'"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_variable_shadows_an_imported_helper_module(path: Path) -> None:
    """``from salve_utils.study import towers`` then ``towers = ...`` breaks every later ``towers.f(...)``."""
    tree = ast.parse("\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                               if c["cell_type"] == "code"))
    modules = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and (node.module or "").startswith("salve_utils") for a in node.names if a.name.islower()}
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.Lambda) for a in n.args.args}
    assert not modules & bound, f"assigned over an imported helper module: {sorted(modules & bound)}"


@pytest.mark.parametrize("profile", pipeline.available_profiles(ROOT))
def test_every_profile_validates(profile: str) -> None:
    plan = pipeline.plan(profile, ROOT)
    graph = pipeline.load_graph(ROOT)
    for edition in plan.editions:  # every edition runs the whole chain (known answers only on planted data)
        chain = {n for n in plan.order if plan.nodes[n].edition == edition}
        wanted = {f"{edition}.{n}" for n, body in graph.chain.items()
                  if not body.get("datasets") or plan.params[f"{edition}.backbone"]["dataset"] in body["datasets"]}
        assert chain == wanted
    assert set(graph.report) <= set(plan.order)


def test_committed_toc_is_the_reference_profiles() -> None:
    """`_toc.yml` is what `pipeline toc --profile cpu` writes for the committed chapters, and lists each once."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc == pipeline.book_toc("cpu", ROOT), "regenerate: python -m salve_utils.pipeline toc --profile cpu"
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert len(files) == len(set(files))
    assert all((ROOT / f"{f}.ipynb").is_file() or (ROOT / f"{f}.md").is_file() for f in files)
