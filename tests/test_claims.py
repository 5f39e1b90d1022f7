"""The judges of salve_utils.claims on small fixture tables: each verdict of each rule, produced on purpose."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from salve_utils.claims import Measured, claims, judge_alpha, judge_baselines, judge_enhance, judge_planted, \
    judge_planted_tower, judge_seeds, judge_specific, judge_suppress, judge_tower
from salve_utils.verdicts import Thresholds

CLASSES = ["a", "b", "c", "d"]
STRENGTHS = [0.0, 0.5, 1.0, 2.0]
N = 400
TH = Thresholds()


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


def _alpha(error: float, exact: bool, mismatch: int = 0) -> Measured:
    agreement = {"frac_exact": 0.95 if exact else 0.02, "n_finite": 100, "n_compared": 40, "n_mismatch": mismatch,
                 "median_rel_diff": error, "n_compared_flip": 90, "n_mismatch_flip": 0,
                 "median_rel_diff_flip": error}
    return Measured(records={"alpha_crit": {"agreement": agreement, "spearman_flip": 0.9, "n_flip": 9,
                                            "spearman_zero": 0.0, "n_zero": 8}})


@pytest.mark.parametrize("error, exact, mismatch, kind", [
    (1e-5, True, 0, "holds"), (1e-5, False, 0, "partly"), (0.1, True, 0, "does not hold"),
    (1e-5, True, 2, "does not hold"),  # two images where the real model's threshold is not the computed one
])
def test_alpha_judges_agreement_of_independent_estimates_and_exactness(error, exact, mismatch, kind) -> None:
    assert judge_alpha(_alpha(error, exact, mismatch), TH).kind == kind


@pytest.mark.parametrize("flips, kind", [(0, "holds"), (1, "partly"), (3, "does not hold")])
def test_seeds_count_classes_whose_outcome_is_the_same_in_every_seed(flips, kind) -> None:
    rows = [{"seed": s, "class": c, "feature": 0, "reaches": (c in ("a", "b")) != (s == 1 and i < flips),
             "strength": 1.0, "reference": s == 0} for s in range(3) for i, c in enumerate(CLASSES)]
    assert judge_seeds(Measured({"seed_outcomes": pd.DataFrame(rows)}), TH).kind == kind


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


def test_claims_table_lists_every_claim_and_judges_missing_measurements_inconclusive() -> None:
    table = claims(Measured())
    assert list(table.columns) == ["claim", "paper", "ours", "verdict"]
    assert set(table["verdict"]) == {"inconclusive"}
    assert "planted" not in set(table["claim"])  # only editions with planted parts measure it


def test_a_class_already_at_the_target_before_any_edit_is_left_out_of_suppress() -> None:
    m = _suppress({"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0}, 0.8)
    curves = m.tables["suppression_curves"]
    curves.loc[(curves["feature_role"] == "dominant:d") & (curves["class"] == "d"), "accuracy"] = 0.0
    verdict = judge_suppress(m, TH)
    assert verdict.kind == "holds" and "3 of 3 classes" in verdict.reason and "already at ≤ 5%" in verdict.reason
