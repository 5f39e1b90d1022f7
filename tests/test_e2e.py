"""End to end: the whole smoke profile in a scratch copy of the project, then the book build.

This is what CI relies on: every chapter executes without an error output on the
synthetic data, the executed copies carry provenance, an unchanged second run
executes nothing, and Jupyter Book 1 builds the result with warnings as errors.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from salve_utils import pipeline

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built_project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    shutil.copytree(ROOT / "salve_utils", root / "salve_utils", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "book").mkdir()
    for page in (ROOT / "book").glob("*.*"):
        shutil.copy(page, root / "book" / page.name)
    executed = pipeline.run("smoke", root, progress=False, log=lambda *_: None)
    assert executed == pipeline.topological_order(pipeline.load_graph(root))
    build = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(root),
                            "--warningiserror", "--keep-going", "--quiet"], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return root


@pytest.mark.slow
def test_every_chapter_ran_without_errors_and_was_built(built_project: Path) -> None:
    assert pipeline.error_outputs(built_project) == []
    nodes = pipeline.load_graph(built_project)
    for node in nodes:
        html = built_project / "_build/html/book/chapters" / f"{node}.html"
        assert html.is_file(), node
        chapter = json.loads((built_project / "book/chapters" / f"{node}.ipynb").read_text())
        assert chapter["metadata"]["salve"]["profile"] == "smoke"
    assert (built_project / "_build/html/book/chapters/control.html").read_text().count("<img") >= 2


@pytest.mark.slow
def test_result_tables_follow_their_schemas(built_project: Path) -> None:
    import pandas as pd

    results = built_project / "data/results/smoke"
    schemas = {
        "backbone_accuracy": ["backbone", "split", "class", "accuracy", "n"],
        "suppression_curves": ["backbone", "seed", "feature", "feature_role", "direction", "alpha", "class",
                               "accuracy"],
        "alpha_crit": ["backbone", "seed", "class", "feature", "sample", "analytic", "numerical", "empirical"],
        "claims": ["claim", "paper", "ours", "verdict"],
    }
    for name, columns in schemas.items():
        table = pd.read_csv(results / f"{name}.csv")
        assert set(columns) <= set(table.columns), (name, sorted(table.columns))
        assert len(table) > 0
    curves = pd.read_csv(results / "suppression_curves.csv")
    assert {"tower"} <= set(curves["feature_role"]) and curves["seed"].nunique() > 1


@pytest.mark.slow
def test_an_unchanged_second_run_executes_nothing(built_project: Path) -> None:
    assert pipeline.run("smoke", built_project, progress=False, log=lambda *_: None) == []
