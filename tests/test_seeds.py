"""Tests of salve_utils.study.seeds (matching latents across autoencoder seeds, outcomes, spreads, bands) and of the
planted-parts known answers in salve_utils.method.features."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from salve_utils.method import editing, features
from salve_utils.study import parts
from salve_utils.study import seeds
from salve_utils.method.sae import SparseAutoencoder


# --------------------------------------------------------------------------- matching


def test_match_features_recovers_a_permutation_with_sign_flips():
    torch.manual_seed(2)
    d = torch.randn(32, 6)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    sign = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, 1.0])
    other = d[:, perm] * sign * 2.0 + 0.01 * torch.randn(32, 6)  # scale does not matter
    df = seeds.match_features(d, other)
    inverse = torch.argsort(perm)
    assert df["feature_a"].tolist() == list(range(6))
    assert df["feature_b"].tolist() == inverse.tolist()
    assert (df["cosine"].abs() > 0.99).all()
    assert (df["cosine"] < 0).sum() == 2
    sae = SparseAutoencoder(32, 6)
    with torch.no_grad():
        sae.decoder.weight.copy_(d)
    assert seeds.match_features(sae, d)["feature_b"].tolist() == list(range(6))
    with pytest.raises(ValueError, match="decoder_b"):
        seeds.match_features(d, torch.randn(31, 6))


def test_match_features_beats_greedy_on_a_crafted_case():
    # greedy on |cos| would pair a0-b0 (0.6) and leave a1-b1 (0.0): total 0.6; optimal is 0.5 + 0.55
    cos = torch.tensor([[0.6, 0.5], [0.55, 0.0]])
    a = torch.eye(4)[:, :2]
    b = torch.zeros(4, 2)
    b[:2] = cos
    b[2, 0] = (1 - (cos[:, 0] ** 2).sum()).clamp_min(0).sqrt()
    b[3, 1] = (1 - (cos[:, 1] ** 2).sum()).clamp_min(0).sqrt()
    df = seeds.match_features(a, b)
    assert df["feature_b"].tolist() == [1, 0]
    assert df["cosine"].tolist() == pytest.approx([0.5, 0.55])


def test_abs_cosine_sees_columns_that_differ_only_in_the_signs_of_their_entries():
    g = torch.Generator().manual_seed(4)
    d = torch.randn(64, 3, generator=g)
    signs = torch.where(torch.rand(64, 3, generator=g) < 0.5, -1.0, 1.0)
    other = (d * signs)[:, [2, 0, 1]]  # same |c|, scrambled signs: the edit cannot tell them apart
    raw = seeds.decoder_cosines(d, other)
    absolute = seeds.decoder_cosines(d, other, absolute=True)
    assert absolute[0, 1] == pytest.approx(1.0) and abs(float(raw[0, 1])) < 0.5
    assert seeds.match_features(d, other, absolute=True)["feature_b"].tolist() == [1, 2, 0]
    assert torch.allclose(absolute, absolute.abs())  # |c| cosines are never negative


def test_function_vectors_are_the_accuracy_changes_of_each_feature(toy):
    acts, ae = toy
    vectors = seeds.function_vectors(acts, ae, {"a": 0, "b": 3}, strength=2.0)
    assert list(vectors.index) == ["a", "b"] and list(vectors.columns) == ["a", "b", "c"]
    curves = editing.feature_curves(acts, ae, {"f": 3}, [0.0, 2.0])
    acc = curves.pivot(index="strength", columns="class", values="accuracy")
    assert vectors.loc["b"].to_numpy() == pytest.approx((acc.loc[2.0] - acc.loc[0.0]).to_numpy())
    with pytest.raises(ValueError, match="positive"):
        seeds.function_vectors(acts, ae, {"a": 0}, strength=0.0)


# --------------------------------------------------------------------------- outcomes, spreads, bands


def _curves(seed: int, falls: dict[str, bool]) -> pd.DataFrame:
    """Suppression curves of two classes; a falling class goes 1.0 -> 0.5 -> 0.0 over strengths 0, 1, 2."""
    rows = []
    for target, fall in falls.items():
        for s in (0.0, 1.0, 2.0):
            for cls in falls:
                acc = 1.0 - 0.5 * s if (cls == target and fall) else 0.9
                rows.append({"feature_role": f"dominant:{target}", "feature": 7, "direction": "suppress",
                             "strength": s, "alpha": s, "class": cls, "accuracy": acc, "seed": seed})
    return pd.DataFrame(rows)


def test_seed_outcomes_and_their_agreement_have_the_known_answer():
    curves = pd.concat([_curves(0, {"a": True, "b": False}), _curves(1, {"a": True, "b": True}),
                        _curves(2, {"a": True, "b": False})])
    outcomes = seeds.seed_outcomes(curves, target_accuracy=0.05)
    assert list(outcomes.columns) == ["seed", "class", "feature", "reaches", "strength"]
    assert outcomes["reaches"].tolist() == [True, False, True, True, True, False]
    assert outcomes.loc[0, "strength"] == 2.0 and math.isnan(outcomes.loc[1, "strength"])
    agree = seeds.outcome_agreement(outcomes).set_index("class")
    assert agree.loc["a"].to_dict() == {"n_seeds": 3, "n_reach": 3, "majority_reaches": True, "n_agree": 3,
                                        "unanimous": True}
    assert agree.loc["b", "n_agree"] == 2 and not agree.loc["b", "majority_reaches"]
    assert not agree.loc["b", "unanimous"]
    # a looser target is reached earlier
    assert seeds.seed_outcomes(curves, target_accuracy=0.5).loc[0, "strength"] == 1.0


def test_alpha_medians_count_the_images_behind_each_median():
    table = pd.DataFrame({"class": ["a"] * 5 + ["b"] * 2, "feature": 0, "sample": range(7),
                          "numerical": [0.0, 1.0, 3.0, 5.0, math.inf, math.inf, 0.0], "max_abs_c": 2.0})
    med = seeds.alpha_medians(table).set_index("class")
    assert med.loc["a", "median_strength"] == pytest.approx(6.0) and med.loc["a", "n_finite"] == 3
    assert med.loc["a", "frac_zero"] == pytest.approx(0.2) and med.loc["a", "frac_never"] == pytest.approx(0.2)
    assert math.isnan(med.loc["b", "median_strength"]) and med.loc["b", "n_finite"] == 0


def test_seed_spread_is_taken_on_a_log_scale_and_flags_thin_medians():
    medians = pd.DataFrame({"class": ["a"] * 3 + ["b"] * 3, "median_strength": [1.0, 10.0, 100.0, 2.0, 2.0, np.nan],
                            "n_finite": [50, 3, 40, 30, 30, 0]})
    spread = seeds.seed_spread(medians, min_images=5)
    assert spread.loc["a", "log10_sd"] == pytest.approx(1.0) and spread.loc["a", "fold"] == pytest.approx(10.0)
    assert spread.loc["a", "n_thin"] == 1 and spread.loc["a", "min_n_finite"] == 3
    assert spread.loc["b", "n_seeds"] == 2 and spread.loc["b", "log10_sd"] == pytest.approx(0.0)
    assert spread.loc["b", "cv"] == pytest.approx(0.0) and spread.loc["b", "n_thin"] == 1  # the NaN seed: 0 images
    # an old table without n_finite still gets its spread
    assert "n_thin" not in seeds.seed_spread(medians.drop(columns="n_finite")).columns


def test_curve_bands_average_over_seeds():
    curves = pd.concat([_curves(0, {"a": True, "b": False}), _curves(1, {"a": False, "b": False})])
    bands = seeds.curve_bands(curves).set_index(["target", "kind", "strength"])
    assert bands.loc[("a", "target", 2.0), "mean"] == pytest.approx(0.45)  # (0.0 + 0.9) / 2
    assert bands.loc[("a", "target", 2.0), "sd"] == pytest.approx(np.std([0.0, 0.9], ddof=1))
    assert bands.loc[("a", "others", 2.0), "sd"] == 0 and (bands["n_seeds"] == 2).all()


def test_seed_study_includes_the_reference_and_compares_the_others(toy):
    acts, ae = toy
    meta = {"seed": 0, "l1": 1e-3, "train_options": {"epochs": 30, "seed": 0, "device": "cpu"}}
    study = seeds.seed_study(acts, ae, meta, n_seeds=2, strengths=[0.0, 1.0, 2.0], function_strength=1.0,
                             progress=False)
    matches = study["matches"]
    assert sorted(matches["seed"].unique()) == [0, 1]
    assert {"abs_cosine", "function_cosine", "same_feature_abs"} <= set(matches.columns)
    ref = matches[matches["reference"]]
    assert (ref["cosine"] > 0.999).all() and (ref["abs_cosine"] > 0.999).all()  # the reference agrees with itself
    assert ref["function_cosine"].dropna().gt(0.999).all()
    assert list(study["outcomes"].columns) == ["seed", "class", "feature", "reaches", "strength", "reference"]
    assert len(study["outcomes"]) == 6 and study["outcomes"]["reference"].sum() == 3
    assert "n_finite" in study["alpha_medians"].columns
    assert set(study["curves"]["seed"]) == {0, 1} and not math.isnan(study["rank_agreement"])
    assert 0 < study["abs_cosine_baseline"] < 1
    assert set(seeds.seed_spread(study["alpha_medians"]).index) == {"a", "b", "c"}
    with pytest.raises(ValueError, match="n_seeds"):
        seeds.seed_study(acts, ae, meta, n_seeds=0, progress=False)


# --------------------------------------------------------------------------- planted parts


def _recovery(abs_corr: float) -> pd.DataFrame:
    return pd.DataFrame({"part": ["tower", "ring"], "feature": [4, 2], "corr": [abs_corr, 0.9],
                         "abs_corr": [abs_corr, 0.9]})


def _effect(changes: dict[str, float], carriers: set[str]) -> pd.DataFrame:
    return pd.DataFrame({"part": "tower", "feature": 4, "class": list(changes), "change": list(changes.values()),
                         "carries": [c in carriers for c in changes]})


def test_shared_part_answer_holds_only_when_found_and_exact():
    effect = _effect({"spire": -0.8, "pump": -0.3, "kite": -0.02}, {"spire", "pump"})
    answer = parts.shared_part_answer(_recovery(0.7), effect, "tower", threshold=0.5, tolerance=0.05)
    assert (answer["shared_found"], answer["hits_carriers"], answer["spares_others"]) == (True, True, True)
    assert answer["feature"] == 4 and answer["carriers"] == {"spire": -0.8, "pump": -0.3}
    assert not parts.shared_part_answer(_recovery(0.4), effect, "tower", 0.5)["shared_found"]
    missed = _effect({"spire": -0.8, "pump": -0.04, "kite": 0.0}, {"spire", "pump"})
    assert not parts.shared_part_answer(_recovery(0.7), missed, "tower")["hits_carriers"]
    collateral = _effect({"spire": -0.8, "pump": -0.3, "kite": -0.06}, {"spire", "pump"})
    assert not parts.shared_part_answer(_recovery(0.7), collateral, "tower")["spares_others"]
    with pytest.raises(ValueError, match="not in the recovery"):
        parts.shared_part_answer(_recovery(0.7), effect, "zigzag")
