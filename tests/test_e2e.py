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
    shutil.copytree(ROOT / "book" / "_ext", root / "book" / "_ext", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "_assets").mkdir()  # where `make html` puts MathJax; the browser test checks the maths
    # two jobs, as `make book JOBS=2`: real kernels side by side, and a core that would idle once the
    # other test worker is done keeps training
    executed = pipeline.run("smoke", root, progress=False, log=lambda *_: None, jobs=2)
    assert sorted(executed) == sorted(pipeline.plan("smoke", root).order)
    toc = pipeline.write_toc("smoke", root / "_build/toc/smoke.yml", root)
    build = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(root), "--toc", str(toc),
                            "--warningiserror", "--keep-going", "--quiet"], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return root


@pytest.mark.slow
def test_every_chapter_ran_without_errors_and_was_built(built_project: Path) -> None:
    assert pipeline.error_outputs(built_project) == []
    plan = pipeline.plan("smoke", built_project)
    assert len(plan.editions) >= 2 and {"resnet18-planted.known_answers", "summary", "compare"} <= set(plan.order)
    titles = set()
    for node in plan.order:
        path = pipeline.node_path(node)
        html = built_project / "_build/html/book/chapters/smoke" / f"{path}.html"
        assert html.is_file(), node
        chapter = json.loads((built_project / "book/chapters/smoke" / f"{path}.ipynb").read_text())
        assert chapter["metadata"]["salve"]["profile"] == "smoke"
        titles.add("".join(chapter["cells"][0]["source"]).splitlines()[0])
    assert len(titles) == len(plan.order)  # every page has its own title
    for edition in plan.editions:
        control = built_project / f"_build/html/book/chapters/smoke/{edition}/control.html"
        assert control.read_text().count("<img") >= 2


@pytest.mark.slow
def test_result_tables_follow_their_schemas(built_project: Path) -> None:
    from salve_utils.common.tables import load_table

    results = built_project / "data/results/smoke/resnet18-planted"
    schemas = {
        "backbone_accuracy": ["backbone", "split", "class", "accuracy", "n"],
        "suppression_curves": ["backbone", "seed", "feature", "feature_role", "direction", "alpha", "class",
                               "accuracy"],
        "alpha_crit": ["backbone", "seed", "class", "feature", "sample", "analytic", "numerical", "empirical"],
        "dominant_sharing": ["class", "feature", "n_sharing"],
        "planted_recovery": ["part", "feature", "corr", "abs_corr"],
        "part_suppression": ["part", "feature", "class", "carries", "strength", "after_lo", "after_hi", "change"],
        "null_edits": ["feature_role", "target", "direction", "null", "draw", "strength", "target_accuracy",
                       "target_n", "others_mean", "others_worst"],
        "baseline_matched": ["class", "method", "matched", "goal_accuracy", "strength", "target_accuracy",
                             "target_lo", "target_hi", "others_worst", "others_worst_lo", "others_worst_hi"],
        "alpha_crit_classes": ["class", "n", "zero_finite", "zero_infinite", "flip_finite", "flip_infinite",
                               "flip_median", "flip_rank", "suppress_strength"],
        "tower_search": ["feature", "mu_a", "mu_b", "same_sign", "score", "p_value", "passes"],
        "tower_effects": ["feature", "class", "strength", "change", "change_lo", "change_hi", "is_tower"],
        "seed_outcomes": ["seed", "class", "feature", "reaches", "strength", "reference"],
        "arms": ["arm", "direction", "classes", "reached", "rescued", "rescued_lo", "rescued_hi", "suppress",
                 "specific"],
        "arm_classes": ["arm", "class", "reached", "strength", "worst_loss", "rescued"],
        "sparsity_path": ["l1", "extended", "fvu", "l0_abs", "l0_rel", "dead", "bites"],
        "regime_measures": ["arm", "column_share", "evidence_overlap"],
        "../regime_arms": ["regime", "arm", "classes", "rescued", "suppress", "specific", "evidence_overlap"],
        "../first_answer": ["question", "answer"],
        "../claims": ["edition", "claim", "paper", "ours", "verdict"],
        "../edition_overview": ["edition", "frac_negative", "frac_exact", "frac_shared"],
    }
    for name, columns in schemas.items():
        table = load_table(results, name)
        assert set(columns) <= set(table.columns), (name, sorted(table.columns))
        assert len(table) > 0
    curves = load_table(results, "suppression_curves")
    assert {"tower"} <= set(curves["feature_role"]) and curves["seed"].nunique() > 1
    arms = load_table(results, "arms")
    assert list(arms["arm"]) == ["paper", "oracle", "oracle (probe)", "sparse"]
    assert (arms["rescued"] <= arms["reached"]).all() and (arms["rescued_lo"] <= arms["rescued_hi"]).all()
    answer = load_table(results.parent, "first_answer")
    assert list(answer["question"]) == ["paper", "oracle", "sparse", "which part fails"]
    assert all("ResNet-18 on planted parts" in a and "ViT on planted parts" in a for a in answer["answer"])
    claims = load_table(results.parent, "claims")
    assert set(claims["edition"]) == {"resnet18-planted", "vit-planted"}
    from salve_utils.study.verdicts import KINDS, OTHER_KINDS

    assert set(claims["verdict"]) <= set(KINDS + OTHER_KINDS)  # every verdict is a kind of the rulebook
    nulls = load_table(results, "null_edits")
    assert (nulls[nulls["null"] == "permuted"].groupby(["target", "direction", "strength"])["draw"].nunique() >= 50).all()
    overview = load_table(results.parent, "edition_overview").set_index("arch")
    assert overview.loc["resnet18", "frac_negative"] == 0  # a ReLU then average pooling
    assert overview.loc["vit_small", "frac_negative"] > 0.2  # LayerNorm output has both signs


#: A number in a claim's text: "26.1%", "-0.0%", "1.7e-05", "+0.92", "10", "z55" (the latent's number counts too).
NUMBER = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


@pytest.mark.slow
def test_every_number_of_the_claims_table_is_recomputed_from_the_committed_tables_alone(built_project: Path) -> None:
    """claims.csv rebuilt from data/results/<profile>/ (tables and claim_inputs.json) and nothing else."""
    import re

    import pandas as pd

    from salve_utils.study.claims import recompute_claims
    from salve_utils.common.tables import load_table

    results = built_project / "data/results/smoke"
    copy = built_project.parent / "results-only"  # only the results folder: no artifacts, caches or chapters
    shutil.copytree(results, copy)
    published = load_table(copy, "claims").drop(columns="node").reset_index(drop=True)
    rebuilt = recompute_claims(copy)
    pd.testing.assert_frame_equal(rebuilt, published)
    numbers = [n for text in published["ours"] for n in re.findall(NUMBER, text)]
    assert [n for text in rebuilt["ours"] for n in re.findall(NUMBER, text)] == numbers
    print(f"recomputed {len(numbers)} numbers and {len(published)} verdicts of claims.csv")
    assert len(numbers) > 100


@pytest.mark.slow
def test_an_unchanged_second_run_executes_nothing(built_project: Path) -> None:
    assert pipeline.run("smoke", built_project, progress=False, log=lambda *_: None) == []
