"""Nulls of the Control chapter: known answers on tiny heads, against the reference edit sweep."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from salve_utils.study import nulls
from salve_utils.method.activations import Activations
from salve_utils.method.editing import edit_curve, feature_curves, operating_points
from salve_utils.method.models import per_class_accuracy


class Decoder:
    """The one thing the nulls need of an autoencoder: decoder columns."""

    def __init__(self, d: torch.Tensor) -> None:
        self.d = d

    def decoder_column(self, feature: int) -> torch.Tensor:
        return self.d[:, feature].clone()


def _problem(n: int = 300, m: int = 12, k: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, m, generator=g)
    w, b = torch.randn(k, m, generator=g), 0.3 * torch.randn(k, generator=g)
    y = (a @ w.T + b).argmax(1)  # the head is right on most images, so edits have something to remove
    y[::7] = torch.arange(n)[::7] % k
    return a, y, w, b


@pytest.fixture
def setup():
    a, y, w, b = _problem()
    classes = ["a", "b", "c", "d"]
    acts = Activations(a[:10], y[:10], a, y, classes, w, b)
    dec = Decoder(torch.randn(12, 5, generator=torch.Generator().manual_seed(1)))
    dominant = {"a": 0, "b": 1, "c": 2, "d": 0}  # d shares a's feature
    return acts, dec, dominant


@pytest.mark.parametrize("direction", ["suppress", "enhance"])
def test_matches_the_reference_sweep(direction):
    a, y, w, b = _problem()
    c = torch.randn(12, generator=torch.Generator().manual_seed(3))
    s = np.linspace(0, 4, 17)
    ref = edit_curve(a, y, w, b, c, torch.as_tensor(s / c.abs().max().item()), direction)
    got = nulls.class_accuracies(a, y, w, b, nulls.feature_ratios(c), s, direction)[0]
    np.testing.assert_allclose(got.reshape(-1), ref["accuracy"].to_numpy(), atol=1e-12)


@pytest.mark.parametrize("direction,factor", [("suppress", lambda s: max(0.0, 1 - s)), ("enhance", lambda s: 1 + s)])
def test_uniform_null_scales_logits_minus_bias(direction, factor):
    a, y, w, b = _problem()
    s = [0.0, 0.3, 0.9, 1.0, 2.5]
    got = nulls.class_accuracies(a, y, w, b, torch.ones(12), s, direction)[0]
    want = np.stack([per_class_accuracy(factor(v) * (a @ w.T) + b, y)[0].numpy() for v in s])
    np.testing.assert_allclose(got, want)
    if direction == "suppress":  # from s = 1 on only the bias is left: one class takes every image
        np.testing.assert_array_equal(got[3], (np.arange(4) == int(b.argmax())).astype(float))


def test_permuting_identical_ratios_is_the_feature_itself():
    a, y, w, b = _problem()
    flat = torch.full((12,), 0.4)
    draws = nulls.permuted_ratios(flat, 5, seed=0)
    got = nulls.class_accuracies(a, y, w, b, torch.cat([flat[None], draws]), np.linspace(0, 5, 11))
    assert all(np.array_equal(got[0], d) for d in got[1:])


def test_draws_are_seeded_and_keep_the_values():
    r = torch.linspace(0, 1, 30)
    one, again, other = (nulls.permuted_ratios(r, 50, seed) for seed in ((0, 3), (0, 3), (1, 3)))
    assert torch.equal(one, again) and not torch.equal(one, other)
    assert torch.equal(one.sort(1).values, r.expand(50, -1))
    assert len({tuple(p.tolist()) for p in one}) == 50


def test_null_table(setup):
    acts, dec, dominant = setup
    s = nulls.null_grid(np.linspace(0, 3, 31), every=5)
    table = nulls.null_edits(acts, dec, dominant, ["a", "c"], s, n_draws=7, seed=0)
    assert list(table.columns) == nulls.NULL_COLUMNS
    keys = ["feature_role", "direction", "null", "draw", "strength"]
    assert table.equals(table.sort_values(keys, ignore_index=True))
    assert not table.duplicated(keys).any()
    counts = table.groupby(["target", "direction", "null"])["draw"].nunique()
    assert counts.loc[("a", "suppress", "permuted")] == 7 and counts.loc[("a", "enhance", "uniform")] == 1
    # a's others: b and c (d has a's own feature); c's others: a, b, d
    assert sorted(table[(table["target"] == "a") & (table["null"] == "others")]["draw"].unique()) == [1, 2]
    assert sorted(table[(table["target"] == "c") & (table["null"] == "others")]["draw"].unique()) == [0, 1, 3]
    assert table[["target_accuracy", "others_mean", "others_worst"]].stack().between(0, 1).all()
    assert (table["others_worst"] <= table["others_mean"] + 1e-12).all()
    n = np.bincount(acts.val_labels.numpy())
    assert (table[table["target"] == "c"]["target_n"] == n[2]).all()
    # "others" for target a, draw c equals the curve of c's feature, read at class a
    curve = feature_curves(acts, dec, {"x": 2}, s, "enhance")
    own = curve[curve["class"] == "a"]["accuracy"].to_numpy()
    got = table[(table["target"] == "a") & (table["null"] == "others") & (table["draw"] == 2)
                & (table["direction"] == "enhance")]["target_accuracy"].to_numpy()
    np.testing.assert_allclose(got, own, atol=1e-12)
    # reproducible, and a target's draws do not depend on the other targets
    again = nulls.null_edits(acts, dec, dominant, ["c"], s, n_draws=7, seed=0)
    pd.testing.assert_frame_equal(again, table[table["target"] == "c"].reset_index(drop=True))


def test_null_grid_keeps_one_and_the_end():
    grid = np.linspace(0, 8, 41)
    got = nulls.null_grid(grid, every=4, keep=[1.0, 2.2, 99.0])
    assert set(np.round([0.0, 0.8, 1.0, 1.6, 2.2, 8.0], 9)) <= set(np.round(got, 9))
    assert set(np.round(got, 9)) <= set(np.round(grid, 9))
    with pytest.raises(ValueError, match="every"):
        nulls.null_grid(grid, every=0)


def _fake(role="dominant:a"):
    rows = [{"feature_role": role, "target": "a", "direction": "suppress", "null": "permuted", "draw": d,
             "strength": 1.0, "target_accuracy": v, "target_n": 10, "others_mean": 0.9, "others_worst": 0.8}
            for d, v in enumerate(np.linspace(0.2, 0.6, 41))]
    rows.append({**rows[0], "null": "uniform", "draw": 0, "target_accuracy": 0.1})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("value,beats", [(0.1, True), (0.205, True), (0.25, False), (0.5, False)])
def test_null_comparison_known_answer(value, beats):
    summary = pd.DataFrame([{"feature_role": "dominant:a", "direction": "suppress", "strength": 1.0,
                             "target_accuracy": value, "others_mean": 0.9}])
    out = nulls.null_comparison(summary, _fake(), {"dominant:a": 1.0})
    assert out["beats_permuted"].item() is beats
    assert out["permuted_lo"].item() == pytest.approx(0.21) and out["uniform"].item() == pytest.approx(0.1)
    none = nulls.null_comparison(summary, _fake(), {"dominant:a": float("nan")})
    assert not none["beats_permuted"].item() and np.isnan(none["target_accuracy"].item())
    with pytest.raises(ValueError, match="no permuted null"):
        nulls.null_comparison(summary, _fake(), {"dominant:a": 2.0})


def test_target_summary_and_point_intervals(setup):
    acts, dec, dominant = setup
    curves = feature_curves(acts, dec, {f"dominant:{c}": f for c, f in dominant.items()}, np.linspace(0, 6, 13))
    summary = nulls.target_summary(curves)
    row = summary[(summary["feature_role"] == "dominant:b") & (summary["strength"] == 0)].iloc[0]
    at0 = curves[(curves["feature_role"] == "dominant:b") & (curves["strength"] == 0)].set_index("class")["accuracy"]
    assert row["target_accuracy"] == at0["b"] and row["others_worst"] == at0.drop("b").min()
    points = nulls.point_intervals(curves, operating_points(curves, 0.5))
    hit = points[points["strength"].notna()]
    assert len(hit)
    assert (hit["target_lo"] <= hit["target_accuracy"]).all() and (hit["target_accuracy"] <= hit["target_hi"]).all()
    assert (hit["others_worst_lo"] <= hit["others_worst"]).all()
    assert (hit["others_mean_hi"] >= hit["others_accuracy"]).all()


def test_bad_inputs():
    a, y, w, b = _problem()
    with pytest.raises(ValueError, match="increasing"):
        nulls.class_accuracies(a, y, w, b, torch.ones(12), [1.0, 0.5])
    with pytest.raises(ValueError, match=">= 0"):
        nulls.class_accuracies(a, y, w, b, -torch.ones(12), [0.0])
    with pytest.raises(ValueError, match="shape"):
        nulls.class_accuracies(a, y, w, b, torch.ones(11), [0.0])
    with pytest.raises(ValueError, match="direction"):
        nulls.class_accuracies(a, y, w, b, torch.ones(12), [0.0], "flip")
    with pytest.raises(ValueError, match="non-zero"):
        nulls.feature_ratios(torch.zeros(3))
    with pytest.raises(ValueError, match="n_draws"):
        nulls.permuted_ratios(torch.ones(3), 0, seed=0)


def test_ties_follow_argmax():
    logits = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [0.0, 2.0, 2.0], [3.0, 0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 2, 2])
    want = logits.argmax(-1) == labels
    assert torch.equal(nulls._is_top(logits.clone(), labels), want)
    assert want.tolist() == [True, False, True, False, False]


def test_first_below_matches_operating_points(setup):
    acts, dec, dominant = setup
    curves = feature_curves(acts, dec, {f"dominant:{c}": f for c, f in dominant.items()}, np.linspace(0, 6, 13))
    got = nulls.first_below(nulls.target_summary(curves), 0.5)
    want = operating_points(curves, 0.5)
    np.testing.assert_allclose(got["strength"].to_numpy(), want["strength"].to_numpy())
    np.testing.assert_allclose(got["others_mean"].to_numpy(), want["others_accuracy"].to_numpy())
    never = nulls.first_below(nulls.target_summary(curves), -1.0)
    assert never["strength"].isna().all() and len(never) == len(dominant)


def test_matched_uniform_is_the_uniform_null_on_a_fine_grid(setup):
    acts, dec, dominant = setup
    got = nulls.matched_uniform(acts, ["a", "b"], 0.3, points=101).set_index("feature_role")
    table = nulls.null_edits(acts, dec, dominant, ["a", "b"], np.linspace(0, 1, 101), n_draws=1)
    want = nulls.first_below(table[(table["null"] == "uniform") & (table["direction"] == "suppress")], 0.3)
    np.testing.assert_allclose(got["strength"].to_numpy(), want["strength"].to_numpy())
    np.testing.assert_allclose(got["others_mean"].to_numpy(), want["others_mean"].to_numpy())
    assert nulls.matched_uniform(acts, [], 0.3).empty


def _counting_tables():
    """Three targets with nulls on the grid (0, 0.9, 2): a reaches its point at 0.9, b at 2, c never; d has no nulls."""
    grid, perm = [0.0, 0.9, 2.0], np.linspace(0.2, 0.6, 41)  # the permuted draws' 2.5% quantile is 0.21
    feature = {"a": [0.8, 0.1, 0.0], "b": [0.8, 0.5, 0.3], "c": [0.8, 0.05, 0.4]}
    summary = pd.DataFrame([{"feature_role": f"dominant:{t}", "direction": "suppress", "strength": s,
                             "target_accuracy": v, "others_mean": 0.9} for t, acc in feature.items()
                            for s, v in zip(grid, acc)])
    table = pd.DataFrame([{"feature_role": f"dominant:{t}", "direction": "suppress", "null": "permuted", "draw": d,
                           "strength": s, "target_accuracy": v, "others_mean": 0.5}
                          for t in feature for s in grid for d, v in enumerate(perm)])
    points = pd.DataFrame({"class": ["a", "b", "c", "d"], "strength": [0.9, 2.0, np.nan, 0.9]})
    return summary, table, points, grid


def test_null_counts_known_answer():
    summary, table, points, grid = _counting_tables()
    counts = nulls.null_counts(summary, table, points, ["a", "b", "c"], grid)
    assert counts.strength_one == 0.9  # the grid point nearest 1
    assert counts.beat == ["a"] and counts.not_beat == ["b"]  # 0.1 < 0.21 <= 0.3; c never reaches its point
    assert counts.reached["feature_role"].tolist() == ["dominant:a", "dominant:b"]
    assert counts.at_point["strength"].tolist()[:2] == [0.9, 2.0] and np.isnan(counts.at_point["strength"].iloc[2])
    assert counts.beats_at_point.tolist()[:2] == [True, False] and counts.beats_at_point.iloc[2:].isna().all()
    assert counts.beats_at_one.tolist()[:3] == [True, False, True] and np.isnan(counts.beats_at_one.iloc[3])
    assert counts.n_beat_at_one == 2
    np.testing.assert_allclose(counts.at_one["drop"], [0.7, 0.3, 0.75])  # accuracy at 0 minus at 0.9


def test_null_counts_refuses_bad_inputs():
    summary, table, points, grid = _counting_tables()
    with pytest.raises(ValueError, match=r"targets \['e'\] have no row in points"):
        nulls.null_counts(summary, table, points, ["a", "e"], grid)
    with pytest.raises(ValueError, match="points lacks the columns"):
        nulls.null_counts(summary, table, points.drop(columns="strength"), ["a"], grid)
    with pytest.raises(ValueError, match="strength 0"):
        nulls.null_counts(summary[summary["strength"] > 0], table, points, ["a"], grid)
    with pytest.raises(ValueError, match="increasing"):
        nulls.null_counts(summary, table, points, ["a"], grid[::-1])


def test_uniform_comparison_pairs_each_class_with_its_own_match(setup):
    acts = setup[0]
    big = acts.classes[int(acts.bias.argmax())]  # from strength 1 the uniform edit sends every image there
    rest = [c for c in acts.classes if c != big]
    order = [rest[1], big, rest[0]]  # not in label order: each match must follow its row
    compared = pd.DataFrame({"feature_role": [f"dominant:{c}" for c in [*order, rest[2]]],
                             "strength": [0.5, 1.5, 1.0, np.nan], "target_accuracy": [0.1, 0.0, 0.2, np.nan],
                             "others_mean": [1.0, 0.0, 0.0, np.nan], "uniform": [0.1, 0.3, 0.0, np.nan]})
    points = pd.DataFrame({"class": order[::-1] + [rest[2]], "others_worst": [0.0, 0.0, 1.0, 0.5]})
    out = nulls.uniform_comparison(acts, compared, points, 0.3)
    assert out["class"].tolist() == order  # the class that never reaches its point is left out
    want = nulls.matched_uniform(acts, order, 0.3).set_index("feature_role").loc[compared["feature_role"][:3]]
    np.testing.assert_array_equal(out["matched_others_mean"], want["others_mean"])
    assert np.isnan(out["matched_strength"].iloc[1]) and out["matched_strength"].iloc[[0, 2]].between(0, 1).all()
    assert out["others_worst"].tolist() == [1.0, 0.0, 0.0]  # the feature's own, from points
    assert out["more_on_average"].tolist() == [True, True, False]  # a missing match counts as -1
    assert out["more_at_worst"].tolist() == [True, True, False]
    assert out["more_specific"].tolist() == [True, True, False]
    assert out["past_one"].tolist() == [False, True, True]
    assert out["uniform_as_much"].tolist() == [True, False, True]
    with pytest.raises(ValueError, match="no row in points"):
        nulls.uniform_comparison(acts, compared, points.iloc[1:], 0.3)
    with pytest.raises(ValueError, match="compared lacks the columns"):
        nulls.uniform_comparison(acts, compared.drop(columns="uniform"), points, 0.3)
