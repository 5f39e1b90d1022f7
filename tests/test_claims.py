"""The judges of salve_utils.study.claims on small fixture tables: each verdict of each rule, produced on purpose."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from salve_utils.study.claims import Measured, claim_inputs, claims, judge_alpha, judge_baselines, judge_enhance, judge_planted, \
    judge_planted_tower, judge_seeds, judge_specific, judge_suppress, judge_tower
from salve_utils.study.verdicts import Thresholds

CLASSES = ["a", "b", "c", "d"]
STRENGTHS = [0.0, 0.5, 1.0, 2.0]
N = 400
#: The fixtures have four classes: below the default min_classes (5), whose own tests use the default.
TH = Thresholds(min_classes=2)
DEFAULT = Thresholds()


def _curves(target_end: dict[str, float], others_loss: float = 0.0, worst_loss: float = 0.0,
            direction: str = "suppress", base: float = 0.9) -> pd.DataFrame:
    """Each class's dominant feature: the target falls linearly to ``target_end[class]`` at strength 2;
    the other classes lose ``others_loss`` at strength 2 (class ``d`` or ``c`` ``worst_loss`` instead)."""
    rows = []
    for target, end in target_end.items():
        worst = "d" if target != "d" else "c"
        for s in STRENGTHS:
            f = s / STRENGTHS[-1]
            for cls in CLASSES:
                if cls == target:
                    acc = base + f * (end - base)
                else:
                    acc = base - f * (worst_loss if cls == worst else others_loss)
                rows.append({"feature_role": f"dominant:{target}", "feature": CLASSES.index(target),
                             "direction": direction, "strength": s, "alpha": s, "class": cls,
                             "accuracy": round(acc * N) / N, "n": N})
    return pd.DataFrame(rows)


def _nulls(targets: list[str], accuracy: float, direction: str = "suppress", draws: int = 50) -> pd.DataFrame:
    """Permuted-|c| null draws whose target accuracy at strength > 0 is ``accuracy`` (± 1%), and a uniform one."""
    rng = np.random.default_rng(0)
    rows = []
    for target in targets:
        for s in STRENGTHS:
            for d in range(draws):
                acc = 0.9 if s == 0 else float(np.clip(accuracy + rng.uniform(-0.01, 0.01), 0, 1))
                rows.append({"feature_role": f"dominant:{target}", "target": target, "direction": direction,
                             "null": "permuted", "draw": d, "strength": s, "target_accuracy": acc,
                             "target_n": N, "others_mean": 0.9, "others_worst": 0.9})
            rows.append({"feature_role": f"dominant:{target}", "target": target, "direction": direction,
                         "null": "uniform", "draw": 0, "strength": s, "target_accuracy": 0.9 if s == 0 else accuracy,
                         "target_n": N, "others_mean": 0.9, "others_worst": 0.9})
    return pd.DataFrame(rows)


def _suppress(ends: dict[str, float], null_accuracy: float, **kw) -> Measured:
    return Measured({"suppression_curves": _curves(ends, **kw), "null_edits": _nulls(list(ends), null_accuracy)})


@pytest.mark.parametrize("ends, null_accuracy, kind", [
    ({"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0}, 0.8, "holds"),
    ({"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.5}, 0.8, "partly"),
    ({"a": 0.0, "b": 0.6, "c": 0.6, "d": 0.6}, 0.8, "does not hold"),
    ({"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0}, 0.0, "inconclusive"),  # random directions do it as well
])
def test_suppress_counts_classes_that_reach_the_target_beyond_their_null(ends, null_accuracy, kind) -> None:
    assert judge_suppress(_suppress(ends, null_accuracy), TH).kind == kind


def test_suppress_without_nulls_is_inconclusive() -> None:
    verdict = judge_suppress(Measured({"suppression_curves": _curves({"a": 0.0})}), TH)
    assert verdict.kind == "inconclusive" and "no null edits" in verdict.reason


@pytest.mark.parametrize("others, worst, kind", [
    (0.0, 0.0, "holds"),
    (0.0, 0.10, "partly"),  # the worst other class loses 10 points: within 3x the 5% tolerance
    (0.0, 0.40, "does not hold"),  # a small mean hides one class that loses 40 points
    (0.08, 0.08, "does not hold"),  # every other class loses 8 points: the mean is beyond 3x 2%
])
def test_specific_judges_the_mean_and_the_worst_other_class(others, worst, kind) -> None:
    m = _suppress({c: 0.0 for c in CLASSES}, 0.8, others_loss=others, worst_loss=worst)
    assert judge_specific(m, TH).kind == kind


def test_specific_is_judged_at_the_operating_point_and_strength_one_is_only_context() -> None:
    m = _suppress({c: 0.0 for c in CLASSES}, 0.8)
    curves = m.tables["suppression_curves"]
    own = curves["feature_role"].str.split(":").str[1] == curves["class"]
    curves.loc[~own & (curves["strength"] == 1.0), "accuracy"] = 0.5  # the others lose 40 points at strength 1 only
    verdict = judge_specific(m, TH)
    assert verdict.kind == "holds" and "context, not evidence: at strength 1" in verdict.reason
    curves.loc[~own & (curves["strength"] == 2.0), "accuracy"] = 0.5  # ... and at the operating point
    assert judge_specific(m, TH).kind == "does not hold"


@pytest.mark.parametrize("worst, kind", [(0.0, "inconclusive"), (0.1, "inconclusive"), (0.4, "does not hold")])
def test_specific_on_fewer_than_min_classes_is_inconclusive_unless_contradicted(worst, kind) -> None:
    m = _suppress({c: 0.0 for c in CLASSES}, 0.8, worst_loss=worst)  # four classes reach: fewer than 5
    verdict = judge_specific(m, DEFAULT)
    assert verdict.kind == kind
    assert judge_specific(m, TH).kind != "inconclusive"  # the same tables, two classes enough


def test_specific_is_inconclusive_at_the_operating_point_when_no_class_gets_there() -> None:
    m = _suppress({c: 0.5 for c in CLASSES}, 0.8)
    verdict = judge_specific(m, TH)
    assert verdict.kind == "inconclusive" and "no class reaches" in verdict.reason


def _enhance(gain_to: float, null_accuracy: float, worst: float = 0.0) -> Measured:
    curves = pd.concat([_curves({c: 0.0 for c in CLASSES}),
                        _curves({"a": gain_to}, worst_loss=worst, direction="enhance", base=0.5)])
    nulls = pd.concat([_nulls(CLASSES, 0.8), _nulls(["a"], null_accuracy, direction="enhance")])
    return Measured({"suppression_curves": curves, "null_edits": nulls}, {"control": {"enhance_class": "a"}})


@pytest.mark.parametrize("gain_to, null_accuracy, worst, kind", [
    (0.9, 0.5, 0.0, "holds"),
    (0.9, 0.5, 0.5, "does not hold"),
    (0.9, 0.5, 0.1, "partly"),
    (0.5, 0.5, 0.0, "inconclusive"),  # harmless because it does nothing: its class gains no more than random edits
])
def test_enhance_must_clear_its_null_and_spare_the_others(gain_to, null_accuracy, worst, kind) -> None:
    assert judge_enhance(_enhance(gain_to, null_accuracy, worst), TH).kind == kind


def _tower(passes: bool, change_b: float, change_a: float = 0.0, change_w: float = 0.02,
           spread: float = 0.01) -> Measured:
    rng = np.random.default_rng(1)
    rows = []
    for cls, own in (("a", change_a), ("b", change_b), ("w", change_w)):
        for f in range(30):
            change = own if f == 7 else float(rng.normal(0, spread))
            rows.append({"feature": f, "class": cls, "strength": 2.0, "change": change,
                         "change_lo": change - 0.02, "change_hi": change + 0.02, "is_tower": f == 7})
    records = {"features": {"tower_classes": ["a", "b"], "tower": 7, "tower_passes": passes},
               "tower": {"watch_classes": ["w"]}}
    return Measured({"tower_effects": pd.DataFrame(rows)}, records)


def test_tower_claims_on_a_latent_the_search_did_not_find_are_inconclusive_whichever_way_they_point() -> None:
    for change_b, change_w in ((-0.5, 0.02), (0.01, -0.3)):  # a support, then a contradiction
        verdicts = dict(judge_tower(_tower(False, change_b, change_w=change_w), TH))
        assert {v.kind for v in verdicts.values()} == {"inconclusive"}, verdicts
        assert "not a Tower the search found" in verdicts["tower_down"].reason


def _tower_grid(passes: bool = True) -> Measured:
    """Effects at three strengths: most latents inert on b up to 2 (median |change| ≤ 5 points), not at 8."""
    rng = np.random.default_rng(2)
    rows = []
    for s, spread, own in ((0.5, 0.005, -0.02), (2.0, 0.02, -0.3), (8.0, 0.8, -0.9)):
        for cls in ("a", "b", "w"):
            for f in range(30):
                change = (own if cls == "b" else 0.03 if cls == "w" else 0.0) if f == 7 else \
                    -abs(float(rng.normal(0, spread)))
                rows.append({"feature": f, "class": cls, "strength": s, "change": change, "change_lo": change - 0.02,
                             "change_hi": change + 0.02, "is_tower": f == 7})
    records = {"features": {"tower_classes": ["a", "b"], "tower": 7, "tower_passes": passes},
               "tower": {"watch_classes": ["w"]}}
    return Measured({"tower_effects": pd.DataFrame(rows)}, records)


def test_tower_is_judged_at_the_largest_strength_where_most_latents_are_inert() -> None:
    verdicts = dict(judge_tower(_tower_grid(), TH))
    assert "at strength 2, the largest swept strength" in verdicts["tower_down"].reason
    assert verdicts["tower_down"].kind == "holds" and "-30.0%" in verdicts["tower_down"].reason
    strict = dict(judge_tower(_tower_grid(), Thresholds(min_classes=2, inert_change=0.001)))
    assert strict["tower_down"].kind == "inconclusive" and "no swept strength" in strict["tower_down"].reason


def test_tower_claims_hold_only_when_the_search_passed_and_the_effect_beats_every_other_latent() -> None:
    ok = dict(judge_tower(_tower(True, -0.5), TH))
    assert ok["tower_down"].kind == "holds" and ok["tower_spare"].kind == "holds"
    assert ok["tower_other"].kind == "holds"
    failed_search = dict(judge_tower(_tower(False, -0.5), TH))
    assert failed_search["tower_down"].kind == "inconclusive" and failed_search["tower_spare"].kind == "inconclusive"
    # a large loss that many latents cause as well is not the Tower's doing
    common = dict(judge_tower(_tower(True, -0.5, spread=0.5), TH))
    assert common["tower_down"].kind == "inconclusive"
    # "does not hold" needs no null: the Tower fails to lower b at all
    assert dict(judge_tower(_tower(True, 0.01), TH))["tower_down"].kind == "does not hold"


def _alpha(error: float, exact: float, mismatch: int = 0, n_finite: int = 100) -> Measured:
    agreement = {"frac_exact": exact, "n_finite": n_finite, "n_compared": 40, "n_mismatch": mismatch,
                 "median_rel_diff": error, "n_compared_flip": 90, "n_mismatch_flip": 0,
                 "median_rel_diff_flip": error}
    return Measured(records={"alpha_crit": {"agreement": agreement, "spearman_flip": 0.9, "n_flip": 9,
                                            "spearman_zero": 0.0, "n_zero": 8}})


@pytest.mark.parametrize("error, exact, mismatch, analytic, code", [
    (1e-5, 0.95, 0, "holds", "holds"),
    (1e-5, 0.6, 0, "partly", "holds"),
    (1e-5, 0.02, 0, "does not hold", "holds"),  # our two computations agree; the paper's formula is not exact
    (0.1, 0.95, 0, "holds", "does not hold"),
    (1e-5, 0.95, 2, "holds", "does not hold"),  # two images where the real model's threshold is not the computed one
])
def test_alpha_judges_the_papers_formula_and_our_code_as_two_claims(error, exact, mismatch, analytic, code) -> None:
    verdicts = dict(judge_alpha(_alpha(error, exact, mismatch), TH))
    assert (verdicts["alpha_analytic"].kind, verdicts["alpha_code"].kind) == (analytic, code)
    assert verdicts["alpha_code"].reason.startswith("a check of this code, not of the paper")


def test_alpha_analytic_on_too_few_images_is_inconclusive() -> None:
    assert dict(judge_alpha(_alpha(1e-5, 1.0, n_finite=3), TH))["alpha_analytic"].kind == "inconclusive"


def _seeds(per_class: dict[str, int], n_seeds: int = 10, reference: set[str] | None = None) -> Measured:
    """``per_class[c]`` of ``n_seeds`` seeds suppress class c; the reference (seed 0) suppresses ``reference``
    (default: every class suppressed in some seed)."""
    reference = {c for c, k in per_class.items() if k} if reference is None else reference
    rows = []
    for c, k in per_class.items():
        hits = ([0] if c in reference else []) + [s for s in range(1, n_seeds)][:k - (c in reference)]
        rows += [{"seed": s, "class": c, "feature": 0, "reaches": s in hits, "strength": 1.0, "reference": s == 0}
                 for s in range(n_seeds)]
    return Measured({"seed_outcomes": pd.DataFrame(rows)})


@pytest.mark.parametrize("per_class, kind", [
    ({c: 10 for c in "abcdef"}, "holds"),
    ({**{c: 10 for c in "abcd"}, "e": 7, "f": 2}, "partly"),  # 4 of 6 replicate in >= 8 of 10 seeds
    ({**{c: 8 for c in "ab"}, **{c: 7 for c in "cdef"}}, "does not hold"),  # 7 of 10 is not replication
    ({c: 10 for c in "abc"}, "inconclusive"),  # every one replicates, but three classes are too few
])
def test_seeds_count_classes_whose_suppression_replicates(per_class, kind) -> None:
    assert judge_seeds(_seeds(per_class), DEFAULT).kind == kind


def test_seeds_do_not_count_classes_that_fail_in_every_seed_as_robust() -> None:
    """Six classes that no seed suppresses agree perfectly across seeds; they are not a replicated result."""
    verdict = judge_seeds(_seeds({**{c: 0 for c in "abcdef"}, **{c: 3 for c in "ghij"}}), DEFAULT)
    assert verdict.kind == "does not hold"
    assert "of the 4 classes the reference seed suppresses (≤ 5%), 0 are suppressed in at least 8" in verdict.reason
    nothing = judge_seeds(_seeds({c: 0 for c in "abcdef"}), DEFAULT)
    assert nothing.kind == "inconclusive" and "nothing to replicate" in nothing.reason


def test_baselines_count_a_more_specific_baseline_only_beyond_overlapping_intervals() -> None:
    def table(rival_worst: float) -> pd.DataFrame:
        rows = []
        for cls in CLASSES:
            for method, worst in (("SALVE", 0.5), ("zero row", rival_worst)):
                rows.append({"class": cls, "method": method, "matched": True, "others_worst": worst,
                             "others_worst_lo": worst - 0.05, "others_worst_hi": worst + 0.05,
                             "strength": 0.0 if cls == "d" else 1.0})  # SALVE never lowers d
        return pd.DataFrame(rows)

    assert judge_baselines(Measured({"baseline_matched": table(0.52)}), TH).kind == "holds"  # a tie
    beaten = judge_baselines(Measured({"baseline_matched": table(0.9)}), TH)
    assert beaten.kind == "does not hold" and "zero row (3 classes)" in beaten.reason
    assert "of 3 classes" in beaten.reason and "never lowered by SALVE: d" in beaten.reason


def test_planted_claims() -> None:
    rec = pd.DataFrame({"part": ["p", "q", "tower"], "feature": [0, 1, 2], "corr": [0.9, 0.3, 0.8],
                        "abs_corr": [0.9, 0.3, 0.8]})
    assert judge_planted(Measured({"planted_recovery": rec}), TH).kind == "partly"
    ka = {"shared_part": "tower", "shared_found": True, "hits_carriers": True, "spares_others": False,
          "carriers": {"a": -0.6, "b": -0.3}, "others": {"c": -0.2, "d": 0.01}, "tolerance": 0.05}
    m = Measured({"planted_recovery": rec}, {"known_answers": ka, "features": {"tower": 2}})
    verdict = judge_planted_tower(m, TH)
    assert verdict.kind == "partly" and "is that latent" in verdict.reason
    assert "costs a, b more than 5%; 1 of 2 other classes lose more than 5% (worst c -20 points)" in verdict.reason
    ka["spares_others"] = True
    assert judge_planted_tower(m, TH).kind == "holds"


def test_planted_recovery_is_judged_within_class_and_regime_a_has_no_tower() -> None:
    rec = pd.DataFrame({"part": list("pqrst"), "feature": [0, 1, 2, 3, 4], "abs_corr": [0.9] * 5,
                        "null_abs_corr": [0.95, 0.95, 0.5, 0.5, 0.5], "testable_within": [False, True, True, True, True],
                        "within_abs_corr": [np.nan, 0.1, 0.8, 0.7, 0.2]})
    m = Measured({"planted_recovery": rec})
    verdict = judge_planted(m, replace(TH, min_classes=1))
    # raw |r| would say 5 of 5 ("holds"); within class only 2 of the 4 parts that vary there are recovered
    assert verdict.kind == "partly" and "within class, 2 of 4" in verdict.reason and "3 of them above" in verdict.reason
    assert judge_planted(m, replace(TH, min_classes=5)).kind == "inconclusive"
    none = Measured({"planted_recovery": rec.assign(testable_within=False)})
    assert judge_planted(none, TH).kind == "inconclusive"
    ka = {"shared_part": None, "tower_passes": True}
    verdict = judge_planted_tower(Measured({"planted_recovery": rec}, {"known_answers": ka}), TH)
    assert verdict.kind == "not tested" and "false positive" in verdict.reason


def test_claims_table_lists_every_claim_and_judges_missing_measurements_inconclusive() -> None:
    table = claims(Measured())
    assert list(table.columns) == ["claim", "paper", "ours", "verdict"]
    assert set(table["verdict"]) == {"inconclusive"}
    assert "planted" not in set(table["claim"])  # only editions with planted parts measure it


def test_suppress_leaves_out_the_uniform_direction_where_it_zeroes_the_head() -> None:
    m = _suppress({c: 0.0 for c in CLASSES}, 0.8)  # every class reaches its point at strength 2
    verdict = judge_suppress(m, TH)
    assert "left out for the 4 whose operating point lies at strength 1 or beyond" in verdict.reason
    assert "takes" not in verdict.reason.split("left out")[0]  # no trivial count of uniform wins
    early = _suppress({c: 0.0 for c in CLASSES}, 0.8)
    curves = early.tables["suppression_curves"]
    own = curves["feature_role"].str.split(":").str[1] == curves["class"]
    curves.loc[own & (curves["strength"] >= 0.5), "accuracy"] = 0.0  # reached at 0.5, below strength 1
    reason = judge_suppress(early, TH).reason
    assert "takes 0 of the 4 whose operating point lies below strength 1" in reason and "left out" not in reason


def test_loss_intervals_resample_the_baseline_and_never_collapse() -> None:
    m = _suppress({c: 0.0 for c in CLASSES}, 0.8, others_loss=0.9)  # the others fall from 90% to 0%
    reason = judge_specific(m, TH).reason
    worst = reason.split("worst single loss ")[1].split(" (")[0]
    lo, hi = worst.split("[")[1].rstrip("]").split(", ")
    assert lo != hi, worst  # the unedited 90% is uncertain too


def test_a_class_already_at_the_target_before_any_edit_is_left_out_of_suppress() -> None:
    m = _suppress({"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0}, 0.8)
    curves = m.tables["suppression_curves"]
    curves.loc[(curves["feature_role"] == "dominant:d") & (curves["class"] == "d"), "accuracy"] = 0.0
    verdict = judge_suppress(m, TH)
    assert verdict.kind == "holds" and "3 of 3 classes" in verdict.reason and "already at ≤ 5%" in verdict.reason


def test_claims_are_recomputed_from_a_results_folder_alone_in_either_table_format(tmp_path) -> None:
    import json

    from salve_utils.study.claims import recompute_claims
    from salve_utils.common.tables import table_path, write_table

    m = _enhance(0.9, 0.5)
    m.records["features"] = {"tower_classes": ["a", "b"], "tower": 7, "tower_passes": True}
    for name, table in m.tables.items():
        write_table(table.assign(node="e.control"), table_path(tmp_path / "e", name))  # curves: Parquet
    write_table(pd.DataFrame(rows := [{"seed": s, "class": c, "feature": 0, "reaches": True, "strength": 1.0,
                                       "reference": s == 0} for s in range(2) for c in CLASSES]).assign(node="e.seeds"),
                table_path(tmp_path / "e", "seed_outcomes"))  # a CSV table
    inputs = claim_inputs({"e": {"nodes": ["e.control", "e.seeds"], "control": "e.control",
                                 "records": m.records}}, TH)
    (tmp_path / "claim_inputs.json").write_text(json.dumps(inputs))
    rebuilt = recompute_claims(tmp_path)
    direct = claims(Measured({**m.tables, "seed_outcomes": pd.DataFrame(rows)}, m.records), TH)
    pd.testing.assert_frame_equal(rebuilt.drop(columns="edition"), direct)
    assert (rebuilt.set_index("claim").loc["seeds", "verdict"] == "holds") and len(rebuilt) == len(direct)
    inputs["editions"]["e"]["nodes"] = ["e.control"]  # rows of another node do not count
    (tmp_path / "claim_inputs.json").write_text(json.dumps(inputs))
    assert recompute_claims(tmp_path).set_index("claim").loc["seeds", "verdict"] == "inconclusive"


def test_verdict_changes_name_the_rule_that_moved_a_verdict() -> None:
    from salve_utils.study.claims import rule_fingerprints, verdict_changes

    before = pd.DataFrame({"edition": ["e"] * 3, "claim": ["specific", "alpha", "baselines"],
                           "verdict": ["partly", "partly", "does not hold"]})
    after = pd.DataFrame({"edition": ["e"] * 4, "claim": ["specific", "alpha_analytic", "alpha_code", "baselines"],
                          "verdict": ["inconclusive", "does not hold", "holds", "does not hold"]})
    rows = verdict_changes(before, after).set_index("claim")
    assert rows.loc["specific", "before"] == "partly" and rows.loc["specific", "after"] == "inconclusive"
    assert "operating point" in rows.loc["specific", "why"] and "cannot be ruled out" in rows.loc["specific", "why"]
    assert rows.loc["alpha_analytic", "why"].startswith("alpha split into alpha_analytic, alpha_code")
    assert not rows.loc["baselines", "changed"] and rows.loc["baselines", "why"] == ""
    same = rule_fingerprints(DEFAULT)
    moved = verdict_changes(before.assign(verdict="holds"), before, same, same).set_index("claim")
    assert set(moved["why"]) == {"the measurement changed (same rule)"}
    stricter = rule_fingerprints(Thresholds(tolerance=0.01))
    assert rule_fingerprints(DEFAULT)["specific"] != stricter["specific"]
    assert verdict_changes(before.assign(verdict="holds"), before, same, stricter).set_index("claim").loc[
        "specific", "why"].startswith("rule specific:")
    assert verdict_changes(None, after)["why"].eq("first edition").all()


def test_the_committed_reference_claims_are_recomputed_from_its_tables_alone() -> None:
    """Every verdict and number of the committed `cpu` claims.csv, rebuilt from data/results/cpu/ and nothing else."""
    import re
    from pathlib import Path

    from salve_utils.study.claims import recompute_claims
    from salve_utils.common.tables import load_table

    results = Path(__file__).resolve().parents[1] / "data" / "results" / "cpu"
    by_edition = lambda d: d.sort_values("edition", kind="stable").reset_index(drop=True)  # noqa: E731
    published = by_edition(load_table(results, "claims").drop(columns="node"))
    rebuilt = by_edition(recompute_claims(results))
    pd.testing.assert_frame_equal(rebuilt, published)
    number = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
    numbers = [n for text in published["ours"] for n in re.findall(number, text)]
    assert [n for text in rebuilt["ours"] for n in re.findall(number, text)] == numbers
    print(f"recomputed {len(numbers)} numbers and {len(published)} verdicts of the committed claims.csv")
    assert len(numbers) > 300 and published["edition"].nunique() >= 4
