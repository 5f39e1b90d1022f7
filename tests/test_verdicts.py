"""The rulebook: each building block produces each verdict on small inputs, and the method page shows it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from salve_utils.study import verdicts
from salve_utils.study.verdicts import Thresholds, beats_null, rulebook, share, specificity, supported, weakest, within

ROOT = Path(__file__).resolve().parents[1]
TH = Thresholds()


@pytest.mark.parametrize("loss, kind", [(0.0, "holds"), (0.05, "holds"), (0.1, "partly"), (0.15, "partly"),
                                        (0.2, "does not hold"), (float("nan"), "inconclusive")])
def test_within_gives_every_kind(loss: float, kind: str) -> None:
    assert within(loss, TH.tolerance, TH) == kind


def test_specificity_is_judged_by_the_mean_and_the_worst_alike() -> None:
    assert specificity(0.01, 0.03, TH) == "holds"
    assert specificity(0.01, 0.26, TH) == "does not hold"  # the worst class decides
    assert specificity(0.05, 0.05, TH) == "partly"  # the mean decides
    assert specificity(float("nan"), 0.0, TH) == "inconclusive"


def test_share_and_weakest() -> None:
    assert [share(k, 10, TH) for k in (10, 5, 4)] == ["holds", "partly", "does not hold"]
    assert share(0, 0, TH) == "inconclusive"
    assert weakest("holds", "does not hold", "partly") == "does not hold"
    assert weakest("holds", "inconclusive") == "inconclusive"
    with pytest.raises(ValueError, match="not one of"):
        weakest("maybe")


def test_a_holds_or_partly_on_fewer_than_min_classes_is_inconclusive_but_a_contradiction_stands() -> None:
    assert [share(k, 4, TH) for k in (4, 3, 1)] == ["inconclusive", "inconclusive", "does not hold"]
    assert [share(k, 5, TH) for k in (5, 3)] == ["holds", "partly"]
    small = Thresholds(min_classes=2)
    assert share(2, 2, small) == "holds" and supported("partly", 1, small) == "inconclusive"
    assert supported("does not hold", 1, TH) == "does not hold" and supported("inconclusive", 9, TH) == "inconclusive"


def test_an_effect_inside_its_null_is_not_counted() -> None:
    null = np.random.default_rng(0).normal(0.0, 0.02, 200)
    assert beats_null(0.2, null, TH) and not beats_null(0.02, null, TH)
    assert beats_null(-0.2, null, TH, larger=False) and not beats_null(0.2, [], TH)


@pytest.mark.parametrize("field, value", [("tolerance", 2.0), ("partly_factor", 0.5), ("null_level", float("nan")),
                                          ("fixed_strength", 0.0), ("min_classes", 0), ("replication", 1.5),
                                          ("inert_change", -0.1)])
def test_thresholds_are_validated(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field if field != "fixed_strength" else "positive"):
        Thresholds(**{field: value})


def test_rulebook_fills_in_the_thresholds_and_the_method_page_renders_it() -> None:
    table = rulebook(Thresholds(tolerance=0.07))
    assert set(table["claim"]) >= {"suppress", "specific", "enhance", "tower_down", "alpha_analytic",
                                  "alpha_code", "seeds"}
    assert "7%" in table.set_index("claim").loc["specific", "holds when"]
    assert "operating point" in table.set_index("claim").loc["specific", "last revised"]
    assert not table.apply(lambda col: col.str.contains("{", regex=False)).any().any()
    spec = importlib.util.spec_from_file_location("salve_site", ROOT / "book/_ext/salve_site.py")
    site = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(site)
    assert site.RULEBOOK_MARKER in (ROOT / "book/method.md").read_text()
    markdown = site.rulebook_markdown()
    assert markdown.count("\n") == len(verdicts.RULES) + 1 and "| claim |" in markdown
