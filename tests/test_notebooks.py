"""Source notebooks: no outputs, a title, typed parameters, and a graph/profiles/toc that agree."""

from __future__ import annotations

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


@pytest.mark.parametrize("profile", pipeline.available_profiles(ROOT))
def test_every_profile_validates(profile: str) -> None:
    plan = pipeline.plan(profile, ROOT)
    assert set(plan.order) == set(pipeline.load_graph(ROOT))


def test_toc_lists_every_node_once() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    chapters = {f.split("/")[-1] for f in files if f.startswith("book/chapters/")}
    assert chapters == set(pipeline.load_graph(ROOT))
    assert len(files) == len(set(files))
