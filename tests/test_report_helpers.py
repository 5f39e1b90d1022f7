"""Report-level helpers: curves on a strength grid, operating points, α_crit summaries, baselines."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from salve_utils.method import alpha, editing, features, sae as sae_lib
from salve_utils.study import parts


def test_feature_curves_use_the_exact_strength_grid_and_match_edit_curve(toy) -> None:
    acts, ae = toy
    strengths = np.linspace(0, 3, 7)
    curves = editing.feature_curves(acts, ae, {"f2": 2}, strengths, "suppress")
    assert sorted(curves["strength"].unique()) == list(strengths)  # not rebuilt in float32
    column = ae.decoder_column(2).detach()
    scale = sae_lib.strength_scale(column)
    direct = editing.edit_curve(acts.val, acts.val_labels, acts.weight, acts.bias, column,
                                torch.as_tensor(strengths / scale), "suppress", acts.classes)
    assert np.allclose(curves["accuracy"].to_numpy(), direct["accuracy"].to_numpy())
    change = editing.accuracy_change(curves, at_strength=3.0)
    assert (change["strength"] == 3.0).all()


def _synthetic_curves() -> pd.DataFrame:
    rows = []
    for s in (0.0, 1.0, 2.0):
        # class a falls 1.0 -> 0.5 -> 0.0, the others hold at 0.9 / 0.8; class b never falls
        for role, falling in (("dominant:a", "a"), ("dominant:b", None)):
            for cls, base in (("a", 1.0), ("b", 0.9), ("c", 0.8)):
                acc = base - 0.5 * s if cls == falling else base
                rows.append({"feature_role": role, "feature": 0, "direction": "suppress", "strength": s,
                             "alpha": s, "class": cls, "accuracy": acc})
    return pd.DataFrame(rows)


def test_operating_points_report_the_first_strength_and_the_others() -> None:
    points = editing.operating_points(_synthetic_curves(), target_accuracy=0.05).set_index("class")
    assert points.loc["a", "strength"] == 2.0
    assert points.loc["a", "others_accuracy"] == pytest.approx(0.85)
    assert points.loc["a", "others_worst"] == pytest.approx(0.8)
    assert math.isnan(points.loc["b", "strength"]) and points.loc["b", "target_accuracy"] == pytest.approx(0.9)


def test_alpha_crit_summary_and_agreement_ignore_images_already_at_zero() -> None:
    table = pd.DataFrame({
        "class": ["a"] * 4, "feature": 0, "sample": range(4),
        "analytic": [0.0, 1.0, 2.0, math.inf], "numerical": [0.0, 1.0, 3.0, math.inf],
        "flip": [0.0, 0.5, 1.0, 2.0], "empirical": [math.nan, 1.0001, math.nan, math.nan], "max_abs_c": 2.0,
    })
    summary = alpha.alpha_crit_summary(table).iloc[0]
    assert summary["median_numerical"] == pytest.approx(2 * 2.0)  # median of (1, 3) x scale 2; the 0 is left out
    assert summary["frac_zero"] == 0.25 and summary["frac_never"] == 0.25
    agree = alpha.alpha_crit_agreement(table)
    assert agree["n_finite"] == 2 and agree["frac_exact"] == 0.5
    assert agree["frac_analytic_below"] == 0.5 and agree["frac_analytic_above"] == 0.0
    assert agree["median_rel_diff"] == pytest.approx(1e-4)


def test_alpha_crit_table_refuses_misaligned_images(toy) -> None:
    from salve_utils.method.data import ImageSet

    acts, ae = toy
    images = ImageSet(torch.zeros(len(acts.val_labels), 3, 8, 8, dtype=torch.uint8), acts.val_labels.flip(0),
                      acts.classes)
    with pytest.raises(ValueError, match="not the validation set"):
        alpha.alpha_crit_table(acts, ae, {"a": 0}, model=object(), images=images, empirical_per_class=1)


def test_select_l1_says_when_no_lambda_qualifies() -> None:
    sweep = pd.DataFrame({"d_latent": [8, 8, 8], "l1": [0.1, 1.0, 10.0], "fvu": [0.05, 0.08, 0.3]})
    assert sae_lib.select_l1(sweep, 8, 0.1) == (1.0, True)
    assert sae_lib.select_l1(sweep, 8, 0.01) == (0.1, False)
    with pytest.raises(ValueError, match="not in the sweep"):
        sae_lib.select_l1(sweep, 16, 0.1)


def test_participation_ratio_counts_effective_latents() -> None:
    identity = sae_lib.SparseAutoencoder(4, 4)
    with torch.no_grad():
        for layer in (identity.encoder, identity.decoder):
            layer.weight.copy_(torch.eye(4))
            layer.bias.zero_()
    assert sae_lib.sae_metrics(identity, torch.eye(4))["participation"] == pytest.approx(1.0)  # one latent each
    assert sae_lib.sae_metrics(identity, torch.ones(4, 4))["participation"] == pytest.approx(4.0)  # all equal


# --------------------------------------------------------------------------- editions


def test_target_and_others_reads_the_class_by_class_matrix(toy) -> None:
    acts, ae = toy
    roles = {f"dominant:{c}": f for c, f in zip(acts.classes, (0, 1, 2))}
    curves = editing.feature_curves(acts, ae, roles, [0.0, 2.0], "suppress")
    change = editing.accuracy_change(curves, at_strength=2.0)
    summary = editing.target_and_others(change).set_index("class")
    for cls in acts.classes:
        own = change[(change["feature_role"] == f"dominant:{cls}")].set_index("class")["change"]
        assert summary.loc[cls, "target_change"] == pytest.approx(own[cls])
        assert summary.loc[cls, "others_mean"] == pytest.approx(own.drop(cls).mean())
        assert summary.loc[cls, "others_worst"] == pytest.approx(own.drop(cls).min())


def test_part_suppression_marks_the_carriers(toy) -> None:
    acts, ae = toy
    assignment = pd.DataFrame({"part": ["p", "q"], "feature": [0, -1], "corr": [0.9, np.nan], "abs_corr": [0.9, np.nan]})
    effect = parts.part_suppression(acts, ae, assignment, {"a": ("p",), "b": ("q",)}, strength=1.0)
    assert set(effect["part"]) == {"p"}  # a part without a latent is not suppressed
    assert effect.set_index("class")["carries"].to_dict() == {"a": True, "b": False, "c": False}
    assert (effect["strength"] == 1.0).all() and effect["class"].tolist() == ["a", "b", "c"]
    assert ((effect["after_lo"] <= effect["after"]) & (effect["after"] <= effect["after_hi"])).all()
    with pytest.raises(ValueError, match="no part a latent"):
        parts.part_suppression(acts, ae, assignment.iloc[1:], {}, strength=1.0)


def _claims(verdicts: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"claim": list(verdicts), "paper": "", "ours": [f"measured {k}" for k in verdicts],
                         "verdict": list(verdicts.values())})


def test_claims_by_edition_lays_editions_side_by_side_and_judges_the_transfer_by_rule() -> None:
    from salve_utils.study import report

    resnet = _claims({"baseline": "differs", "suppress": "does not hold", "specific": "holds", "enhance": "partly"})
    vit = _claims({"baseline": "differs", "suppress": "partly", "specific": "holds", "enhance": "partly"})
    wide = report.claims_by_edition({"r": resnet, "v": vit}, {"r": "ResNet", "v": "ViT"}, transfer=("r", "v"))
    assert list(wide.columns) == ["claim", "paper", "ResNet", "ResNet: verdict", "ViT", "ViT: verdict"]
    row = wide.set_index("claim").loc["vit"]
    # three comparable claims (the baseline is not one): on the ViT one holds, two partly -> partly
    assert row["ViT: verdict"] == "partly"
    assert row["ViT"].startswith("1 of 3 claims hold on ViT (2 partly, 0 inconclusive)")
    assert "2 of 3 get the same verdict" in row["ViT"] and "different: suppress" in row["ViT"]
    good = _claims({"suppress": "holds", "specific": "holds", "enhance": "holds"})
    both = report.claims_by_edition({"r": resnet, "v": good}, {"r": "ResNet", "v": "ViT"}, transfer=("r", "v"))
    assert both.set_index("claim").loc["vit", "ViT: verdict"] == "holds"
    # failing on both backbones is not "the same holds"
    bad = _claims({"suppress": "does not hold", "specific": "does not hold", "enhance": "does not hold"})
    fail = report.claims_by_edition({"r": bad, "v": bad}, {"r": "ResNet", "v": "ViT"}, transfer=("r", "v"))
    assert fail.set_index("claim").loc["vit", "ViT: verdict"] == "does not hold"
    # mostly inconclusive on either edition: the transfer is inconclusive too
    unclear = _claims({"suppress": "inconclusive", "specific": "inconclusive", "enhance": "holds"})
    maybe = report.claims_by_edition({"r": unclear, "v": good}, {"r": "ResNet", "v": "ViT"}, transfer=("r", "v"))
    assert maybe.set_index("claim").loc["vit", "ViT: verdict"] == "inconclusive"
    none = report.claims_by_edition({"r": _claims({"baseline": "differs"}), "v": _claims({"baseline": "differs"})},
                                    {"r": "ResNet", "v": "ViT"}, transfer=("r", "v"))
    assert none.set_index("claim").loc["vit", "ViT: verdict"] == "not tested"
    assert "vit" not in set(report.claims_by_edition({"r": resnet}, {"r": "ResNet"}, transfer=None)["claim"])


def test_the_summary_table_is_verdicts_only_and_each_edition_folds_its_measurements() -> None:
    from salve_utils.study import report
    from salve_utils.study.claims import CLAIM_NAMES, PAPER_CLAIMS

    assert set(CLAIM_NAMES) == set(PAPER_CLAIMS), "every claim needs a reader's name"
    resnet = _claims({"baseline": "differs", "suppress": "does not hold: 0 of 10 classes"})
    planted = _claims({"suppress": "partly", "planted": "holds"})
    wide = report.claims_by_edition({"r": resnet, "p": planted}, {"r": "ResNet", "p": "Planted"})
    overview = report.verdict_overview(wide, ["ResNet", "Planted"])
    assert list(overview.columns) == ["claim", "ResNet", "Planted"]
    assert overview.set_index("claim").loc["suppression reaches ≈0%"].tolist() == ["does not hold", "partly"]
    assert overview.set_index("claim").loc["planted parts recovered", "ResNet"] == "—"
    details = report.measurement_details(wide, "ResNet")  # the planted claim is not ResNet's: left out
    assert details["claim"].tolist() == ["backbone accuracy", "suppression reaches ≈0%"]
    assert details["verdict"].tolist() == ["differs", "does not hold: 0 of 10 classes"]


def test_backbone_pair_needs_the_same_dataset() -> None:
    from salve_utils.study import report

    specs = {"a": {"arch": "resnet18", "dataset": "cifar100"}, "b": {"arch": "vit_small", "dataset": "imagenette"},
             "c": {"arch": "resnet18", "dataset": "imagenette"}}
    assert report.backbone_pair(specs) == ("c", "b")
    assert report.backbone_pair({"a": specs["a"], "b": specs["b"]}) is None


def test_dominant_sharing_counts_other_classes_on_the_dominant_feature() -> None:
    mu = torch.tensor([[4.0, 0.0, 0.0], [3.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    out = features.dominant_sharing(mu, ["a", "b", "c"], threshold=0.5).set_index("class")
    assert out.loc["a", "n_sharing"] == 1 and out.loc["a", "sharing"] == "b"  # b's top is also z0
    assert out.loc["c", "n_sharing"] == 0
    with pytest.raises(ValueError, match="threshold"):
        features.dominant_sharing(mu, threshold=0)
