"""Ablations, the edit atlas, composition and the layer3 edit: each against a direct computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from salve_utils.study import ablations, atlas, deep
from salve_utils.method.editing import edit_curve, edit_weights
from salve_utils.study.nulls import feature_ratios
from salve_utils.study.verdicts import Thresholds


def _direct(acts, labels, weight, bias, r, s, rows, target):
    """Per-class accuracy of the edited head, built weight by weight."""
    factors = (1 - s * r).clamp_min(0)
    w = weight.clone()
    if rows == "all":
        w = w * factors
    else:
        w[target] = w[target] * factors
    pred = (acts @ w.T + bias).argmax(1)
    return np.array([float((pred[labels == k] == k).float().mean()) for k in range(len(weight))])


@pytest.mark.parametrize("rows", ["all", "target"])
def test_suppression_accuracies_match_the_edited_head(head, rows):
    acts, labels, weight, bias, column = head
    r, s = feature_ratios(column), [0.0, 0.3, 1.0, 2.5, 9.0]
    got = ablations.suppression_accuracies(acts, labels, weight, bias, r, s, rows, target=2)[0]
    want = np.stack([_direct(acts, labels, weight, bias, r, x, rows, 2) for x in s])
    np.testing.assert_allclose(got, want)


def test_suppression_accuracies_refuse_bad_inputs(head):
    acts, labels, weight, bias, column = head
    with pytest.raises(ValueError, match="rows must be"):
        ablations.suppression_accuracies(acts, labels, weight, bias, column.abs(), [0.0], "some")
    with pytest.raises(ValueError, match="needs target"):
        ablations.suppression_accuracies(acts, labels, weight, bias, column.abs(), [0.0], "target")
    with pytest.raises(ValueError, match="finite"):
        ablations.suppression_accuracies(acts, labels, weight, bias, column.abs() * float("nan"), [0.0], "target", 1)


def test_paper_variant_equals_the_control_sweep(toy):
    acts, sae = toy
    dominant = {"a": 0, "b": 1, "c": 2}
    s = np.linspace(0, 4, 9)
    curves = ablations.variant_curves(acts, ablations.Variant("paper", "", sae, dominant), s)
    column = sae.decoder_column(1).detach()
    ref = edit_curve(acts.val, acts.val_labels, acts.weight, acts.bias, column, s / float(column.abs().max()),
                     classes=acts.classes)
    mine = curves[curves["feature_role"] == "dominant:b"]
    np.testing.assert_allclose(mine["accuracy"].to_numpy(), ref["accuracy"].to_numpy(), atol=1e-12)


def test_centred_bias_changes_only_the_bias(toy):
    acts, sae = toy
    w, b = ablations.Variant("c", "", sae, {"a": 0}, centre_bias=True).head(acts)
    assert torch.equal(w, acts.weight) and torch.allclose(b, acts.bias.mean().expand(3))


def test_logit_attribution_and_anatomy_by_hand(toy):
    acts, sae = toy
    mu = torch.rand(3, sae.d_latent)
    got = ablations.logit_attribution(mu, acts.weight, sae)
    d = sae.decoder.weight.detach()
    assert torch.allclose(got[1, 4], mu[1, 4] * (acts.weight[1] @ d[:, 4]))
    anatomy = ablations.logit_anatomy(acts, sae, {"b": 3})
    r = feature_ratios(sae.decoder_column(3).detach())
    a = acts.val[acts.val_labels == 1]
    u, v = (a @ acts.weight[1]).mean(), (a @ (acts.weight[1] * r)).mean()
    assert anatomy["share"].iloc[0] == pytest.approx(float(v / u), rel=1e-5)
    paths = ablations.logit_paths(acts, r, "b", [0.0, 100.0])
    end = paths[paths["strength"] == 100.0].set_index("class")
    floor = acts.weight * (r >= 1 / 100).logical_not() * a.mean(0)  # only dimensions still active at s = 100
    np.testing.assert_allclose(end["mean_logit"], (floor.sum(1) + acts.bias).numpy(), rtol=1e-4, atol=1e-5)


def test_rescued_and_score_use_the_rulebook():
    th = Thresholds()
    rows = []
    for s, (t_acc, other) in {0.0: (0.9, 0.9), 1.0: (0.5, 0.88), 2.0: (0.04, 0.87)}.items():
        rows += [{"feature_role": "dominant:x", "direction": "suppress", "strength": s, "class": "x", "accuracy": t_acc,
                  "n": 100}, {"feature_role": "dominant:x", "direction": "suppress", "strength": s, "class": "y",
                              "accuracy": other, "n": 100}]
    curves = pd.DataFrame(rows)
    res = ablations.rescued(curves, th).iloc[0]
    assert res["reached"] and res["rescued"] and res["strength"] == 2.0 and res["worst_loss"] == pytest.approx(0.03)
    score = ablations.score_variant(curves, None, th)
    assert score["rescued"] == 1 and score["suppress"] == "inconclusive"  # no null: never "holds"


def test_atlas_matches_single_edits(toy):
    acts, sae = toy
    table = atlas.edit_atlas(acts, sae, strength=1.5)
    for latent in (0, 4):
        column = sae.decoder_column(latent).detach()
        for direction in ("suppress", "enhance"):
            w = edit_weights(acts.weight, column, 1.5 / float(column.abs().max()), direction)
            pred = (acts.val @ w.T + acts.bias).argmax(1)
            after = [float((pred[acts.val_labels == k] == k).float().mean()) for k in range(3)]
            got = table[(table["latent"] == latent) & (table["direction"] == direction)]["after"].to_numpy()
            np.testing.assert_allclose(got, after)
    kinds = atlas.atlas_summary(table)
    assert set(kinds["kind"]) <= {"inert", "specific", "shared", "broad"} and len(kinds) == 2 * sae.d_latent


def test_composition_is_the_product_of_factors(toy):
    acts, sae = toy
    dominant = {"a": 0, "b": 1, "c": 2}
    plan = atlas.composition_plan(acts.classes, pairs=1, triples=1, mixed=1, seed=0)
    assert [len(p) for p in plan] == [2, 3, 2] and plan[2][1][1] == "enhance"
    comp = atlas.composition(acts, sae, dominant, plan, strength=2.0)
    combo = comp[comp["combo"] == comp["combo"].iloc[0]]
    (c1, _), (c2, _) = plan[0]
    w = acts.weight
    for c in (c1, c2):
        col = sae.decoder_column(dominant[c]).detach()
        w = edit_weights(w, col, 2.0 / float(col.abs().max()))
    pred = (acts.val @ w.T + acts.bias).argmax(1)
    base = (acts.val @ acts.weight.T + acts.bias).argmax(1)
    change = [float((pred[acts.val_labels == k] == k).float().mean() - (base[acts.val_labels == k] == k).float().mean())
              for k in range(3)]
    np.testing.assert_allclose(combo["combined"].to_numpy(), change, atol=1e-12)
    assert np.allclose(combo["interaction"], combo["combined"] - combo["additive"])


def test_layer3_edit_is_a_channel_scaling_and_the_whole_model_agrees(tiny_model):
    model, images, _ = tiny_model
    column = torch.randn(256, generator=torch.Generator().manual_seed(1))
    maps = deep.layer3_maps(model, images)
    edited = deep.edit_next_conv(model, column, 0.7)
    scaled = maps * (1 - 0.7 * column.abs()).clamp_min(0)[None, :, None, None]
    torch.testing.assert_close(deep.run_from_layer3(edited, maps), deep.run_from_layer3(model, scaled),
                               atol=1e-4, rtol=1e-4)
    assert deep.check_equivalence(model, column, 0.7, images) < 1e-4
    assert torch.equal(model.body.layer4[0].conv1.weight, deep.edit_next_conv(model, column, 0.0).body.layer4[0].conv1.weight)
    with pytest.raises(ValueError, match="256 entries"):
        deep.edit_next_conv(model, torch.ones(3), 1.0)


def test_variant_nulls_carry_the_uniform_direction_and_the_judge_names_only_what_was_measured(toy):
    acts, sae = toy
    variant = ablations.Variant("paper", "", sae, {"a": 0, "b": 1, "c": 2}, strength_max=8.0)
    curves = ablations.variant_curves(acts, variant, np.linspace(0, 8, 33))
    th = Thresholds()
    nulls = ablations.variant_nulls(acts, variant, curves, th, n_draws=4)
    assert set(nulls["null"]) == {"permuted", "uniform"} and (nulls["null"] == "uniform").sum() == len(nulls) // 5
    with_uniform = ablations.score_variant(curves, nulls, th)["suppress_reason"]
    without = ablations.score_variant(curves, nulls[nulls["null"] == "permuted"], th)["suppress_reason"]
    reached = ablations.rescued(curves, th)["reached"].any()
    assert ("uniform direction" in with_uniform) == bool(reached) and "uniform direction" not in without


def test_the_summary_names_the_variants_that_rescue_the_goal_with_their_verdicts() -> None:
    from salve_utils.study import report

    t = pd.DataFrame({"variant": ["paper (Eq. 1)", "own row", "centred bias"], "classes": [20, 20, 20],
                      "reached": [10, 20, 17], "rescued": [0, 20, 16],
                      "suppress": ["does not hold", "inconclusive", "partly"], "specific": ["partly", "holds", "holds"]})
    assert ablations.best_single_change(t) == {"goal": 16, "winners": ["own row", "centred bias"], "best": "own row",
                                               "rescued": 20, "reached": 20}
    assert ablations.best_single_change(t.iloc[[0, 2]].assign(rescued=[0, 15]))["winners"] == []  # 15 < ⌈0.8·20⌉
    wide, lines = report.ablations_by_edition({"c": t}, {"c": "CIFAR"})
    assert wide["CIFAR"].tolist() == ["0 / 10 of 20", "20 / 20 of 20", "16 / 17 of 20"]
    assert lines == ["**CIFAR**: own row, centred bias rescue 16 or more of 20 classes (judged against its nulls by the "
                     "rulebook, own row: suppress inconclusive, specific holds; centred bias: suppress partly, "
                     "specific holds)."]
