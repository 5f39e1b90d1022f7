"""Tests of salve_utils.study.baselines: the four methods on one interface, matching efficacy, trade-offs, specificity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from salve_utils.study import baselines as bl
from salve_utils.study import efficacy as eff
from salve_utils.method.activations import Activations
from salve_utils.method.editing import edit_weights
from salve_utils.method.sae import SparseAutoencoder


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    k, m, n = 3, 5, 90
    labels = torch.arange(n) % k
    centres = torch.rand(k, m, generator=g) * 3
    acts = centres[labels] + 0.3 * torch.rand(n, m, generator=g)
    weight = torch.randn(k, m, generator=g)
    bias = torch.randn(k, generator=g) * 0.1
    return acts.double(), labels, weight.double(), bias.double()


@pytest.fixture
def known():
    """A 2-d head whose thresholds are known by hand.

    Class 0 samples ``(x, 0)`` with x = 1, 2, 3, 4; class 1 samples ``(0, 1)`` twice.
    Row 0 is ``(1, 0)``; row 1 is ``(0.5, 1)`` with bias 0.25 ... so under row scaling
    ``(1 - s) w_0`` the sample ``(x, 0)`` is lost when ``(1 - s) x < 0.5 x + 0.25``,
    i.e. for ``s > 0.5 - 0.25 / x``: at s = 0.25, 0.375, 0.4167, 0.4375.
    """
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    y = torch.tensor([0, 0, 0, 0, 1, 1])
    w, b = torch.tensor([[1.0, 0.0], [0.5, 1.0]]), torch.tensor([0.0, 0.25])
    return x, y, w, b


# ----------------------------------------------------------------------------- the building blocks


def test_steering_matches_the_formula():
    torch.manual_seed(1)
    sae = SparseAutoencoder(4, 3)
    a = torch.randn(5, 4)
    out = bl.steer_activations(a, sae, feature=1, alpha=0.7)
    E, be, D = sae.encoder.weight.detach(), sae.encoder.bias.detach(), sae.decoder.weight.detach()
    for n in range(5):
        z = sum(float(E[1, j] * a[n, j]) for j in range(4)) + float(be[1])
        for j in range(4):
            assert float(out[n, j]) == pytest.approx(float(a[n, j]) - 0.7 * z * float(D[j, 1]), abs=1e-6)
    assert torch.equal(bl.steer_activations(a, sae, feature=1, alpha=0.0), a)
    with pytest.raises(ValueError, match="feature"):
        bl.steer_activations(a, sae, feature=3, alpha=1.0)
    with pytest.raises(ValueError, match="acts"):
        bl.steer_activations(a[:, :3], sae, feature=0, alpha=1.0)
    with pytest.raises(ValueError, match="alpha"):
        bl.steer_activations(a, sae, feature=0, alpha=float("inf"))


def test_rome_edit_matches_loops_and_hits_the_value():
    g = torch.Generator().manual_seed(2)
    k, m = 3, 4
    w = torch.randn(k, m, generator=g, dtype=torch.float64)
    x = torch.randn(20, m, generator=g, dtype=torch.float64)
    cov = x.T @ x / 20
    key = torch.randn(m, generator=g, dtype=torch.float64)
    value = torch.randn(k, generator=g, dtype=torch.float64)
    out = bl.rome_edit(w, key, value, cov)
    u = torch.linalg.inv(cov) @ key
    denom = sum(float(key[j] * u[j]) for j in range(m))
    for i in range(k):
        r = float(value[i]) - sum(float(w[i, j] * key[j]) for j in range(m))
        for j in range(m):
            assert float(out[i, j]) == pytest.approx(float(w[i, j]) + r * float(u[j]) / denom, rel=1e-9)
    assert torch.allclose(out @ key, value)
    with pytest.raises(ValueError, match="cov"):
        bl.rome_edit(w, key, value, -torch.eye(m, dtype=torch.float64))
    with pytest.raises(ValueError, match="key"):
        bl.rome_edit(w, key[:2], value, cov)


def test_rome_suppress_removes_the_key_from_the_target(data):
    acts, labels, weight, bias = data
    target = 1
    key = acts[labels == target].mean(0)
    out = bl.rome_suppress(weight, bias, acts, labels, target, margin=0.5)
    after = out @ key + bias
    others = torch.cat([after[:target], after[target + 1 :]])
    assert float(after[target]) == pytest.approx(float(others.max()) - 0.5, abs=1e-6)
    assert torch.allclose(torch.cat([out[:target], out[target + 1 :]]),
                          torch.cat([weight[:target], weight[target + 1 :]]))  # only the target's row moves
    shared = bl.second_moment(acts, ridge=1e-4)  # computed once, reused for every class
    assert torch.allclose(bl.rome_suppress(weight, bias, acts, labels, target, margin=0.5, cov=shared), out)
    assert torch.allclose(shared, acts.T @ acts / len(acts) + 1e-4 * torch.trace(acts.T @ acts / len(acts))
                          / acts.shape[1] * torch.eye(acts.shape[1], dtype=torch.float64))
    with pytest.raises(ValueError, match="ridge"):
        bl.second_moment(acts, ridge=-1.0)
    with pytest.raises(ValueError, match="acts"):
        bl.second_moment(acts[:0])
    with pytest.raises(ValueError, match="target"):
        bl.rome_suppress(weight, bias, acts, labels, 3)
    with pytest.raises(ValueError, match="train_labels"):
        bl.rome_suppress(weight, bias, acts, labels.clamp(max=0), 2)
    with pytest.raises(ValueError, match="margin"):
        bl.rome_suppress(weight, bias, acts, labels, 0, margin=-1.0)


# ----------------------------------------------------------------------------- one interface


def _methods(data, target=0):
    acts, labels, weight, bias = data
    torch.manual_seed(3)
    sae = SparseAutoencoder(acts.shape[1], 4).double()
    column = sae.decoder_column(2)
    return sae, [bl.Salve(weight, bias, target, column, 3.0), bl.Steering(weight, bias, target, sae, 2, 3.0),
                 bl.RomeStyle(weight, bias, target, acts, labels, 2.0), bl.ZeroRow(weight, bias, target)]


def test_every_method_is_the_unedited_head_at_strength_zero(data):
    acts, _, weight, bias = data
    _, methods = _methods(data)
    for m in methods:
        assert torch.allclose(m.logits(acts, 0.0), acts @ weight.T + bias), m.name
        assert m.edit_size(0.0) == 0.0 or (math.isnan(m.edit_size(0.0)) and m.edit_size_note)


def test_each_method_computes_its_own_equation(data):
    acts, labels, weight, bias = data
    sae, (salve, steer, rome, zero) = _methods(data)
    column = sae.decoder_column(2)
    scale = float(column.abs().max())
    w_salve = edit_weights(weight, column, 1.5 / scale)
    assert torch.allclose(salve.logits(acts, 1.5), acts @ w_salve.T + bias)
    assert salve.edit_size(1.5) == pytest.approx(float((w_salve - weight).norm()))
    steered = bl.steer_activations(acts, sae, 2, 1.5 / scale)
    assert torch.allclose(steer.logits(acts, 1.5), steered @ weight.T + bias)
    assert math.isnan(steer.edit_size(1.5)) and steer.needs_autoencoder_at_inference
    solution = bl.rome_suppress(weight, bias, acts, labels, 0)
    assert torch.allclose(rome.weight_at(1.0), solution)
    assert torch.allclose(rome.logits(acts, 2.0), acts @ (weight + 2 * (solution - weight)).T + bias)
    assert rome.edit_size(2.0) == pytest.approx(2 * float((solution - weight).norm()))
    assert torch.allclose(zero.logits(acts, 0.25), acts @ torch.cat([0.75 * weight[:1], weight[1:]]).T + bias)
    assert (zero.weight_at(1.0)[0] == 0).all() and zero.edit_size(1.0) == pytest.approx(float(weight[0].norm()))
    assert not any(m.needs_autoencoder_at_inference for m in (salve, rome, zero))


def test_fast_predictions_equal_the_argmax_of_the_logits(data, known):
    acts, labels, weight, bias = data
    _, methods = _methods(data, target=1)
    for m in methods:
        for s in np.linspace(0, m.max_strength, 9):
            assert torch.equal(m.predict(acts, s), m.logits(acts, s).argmax(1)), (m.name, s)
    x, y, w, b = known  # exact ties: at s = 0.25 the sample (1, 0) scores 0.75 for both classes
    zero = bl.ZeroRow(w, b, 0)
    assert torch.equal(zero.predict(x, 0.25), zero.logits(x, 0.25).argmax(1)) and zero.predict(x, 0.25)[0] == 0
    high = bl.ZeroRow(w, b, 1)  # target 1 ties with class 0: the lower index, 0, wins
    tie = torch.tensor([[1.0, 0.5]])  # logits (1, 0.5 + 0.5 + 0.25 = 1.25) -> scale row 1 to reach 1.0
    s = 1 - (1.0 - 0.25) / 1.0  # (1 - s)(0.5 + 0.5) + 0.25 = 1
    assert high.logits(tie, s)[0, 0] == high.logits(tie, s)[0, 1] and high.predict(tie, s).item() == 0


def test_the_cache_follows_the_activations(data):
    acts, _, weight, bias = data
    _, (_, steer, rome, _) = _methods(data)
    for m in (steer, rome):
        m.logits(acts, 1.0)
        other = acts[:7] * 2
        assert torch.allclose(m.logits(other, 0.0), other @ weight.T + bias)


def test_methods_refuse_bad_inputs(data):
    acts, labels, weight, bias = data
    _, (salve, steer, rome, zero) = _methods(data)
    with pytest.raises(ValueError, match="strength"):
        zero.logits(acts, 1.5)  # beyond the row
    with pytest.raises(ValueError, match="strength"):
        salve.logits(acts, -0.1)
    with pytest.raises(ValueError, match="strength"):
        steer.edit_size(float("nan"))
    with pytest.raises(ValueError, match="acts"):
        rome.logits(acts[:, :3], 1.0)
    with pytest.raises(ValueError, match="max_strength"):
        bl._TargetRow(weight, bias, 0, 0.0, weight[0])
    with pytest.raises(ValueError, match="target"):
        bl.ZeroRow(weight, bias, 3)
    with pytest.raises(ValueError, match="bias"):
        bl.ZeroRow(weight, bias[:2], 0)
    with pytest.raises(ValueError, match="decoder_column"):
        bl.Salve(weight, bias, 0, torch.ones(2), 1.0)
    with pytest.raises(ValueError, match="d_in"):
        bl.Steering(weight, bias, 0, SparseAutoencoder(4, 2), 0, 1.0)


# ----------------------------------------------------------------------------- matching and trade-offs


def test_match_finds_the_known_threshold_by_bisection(known):
    x, y, w, b = known
    zero = bl.ZeroRow(w, b, 0)
    # goal 50%: two of four samples must go; the second goes for s > 0.375 (ties stay with class 0)
    m = eff.match_efficacy(zero, x, y, 0.5, n_grid=3, iterations=30)
    assert m.matched and m.strength == pytest.approx(0.375, abs=1e-7) and m.strength > 0.375
    assert m.accuracy.tolist() == [0.5, 1.0] and m.counts.tolist() == [4, 2]
    assert m.edit_size == pytest.approx(m.strength)  # ||w_0|| = 1
    assert m.curve["strength"].tolist() == [0.0, 0.5, 1.0]
    assert m.curve["target_accuracy"].tolist() == [1.0, 0.0, 0.0]
    # no bisection: the grid point itself
    coarse = eff.match_efficacy(zero, x, y, 0.5, n_grid=3, iterations=0)
    assert coarse.strength == 0.5
    # a goal already met by the unedited head needs no edit
    assert eff.match_efficacy(zero, x, y, 1.0).strength == 0.0


def test_match_reports_not_reached_with_the_closest_approach(known):
    x, y, w, b = known
    rome_like = bl._TargetRow(w, b, 0, 1.0, torch.tensor([-0.3, 0.0]))  # at most (0.7, 0): loses only x = 1
    m = eff.match_efficacy(rome_like, x, y, 0.0, n_grid=5)
    assert not m.matched and m.strength == 1.0 and m.accuracy[0] == pytest.approx(0.75)
    row = m.summary(["a", "b"])
    assert row["matched"] is False and row["target_accuracy"] == pytest.approx(0.75)


def test_summary_row_has_the_table_columns_and_intervals(known):
    x, y, w, b = known
    row = eff.match_efficacy(bl.ZeroRow(w, b, 0), x, y, 0.5, n_grid=3).summary(["a", "b"])
    assert list(row) == ["class", "method", "matched", "goal_accuracy", "strength", "target_accuracy", "target_lo",
                         "target_hi", "others_mean", "others_mean_lo", "others_mean_hi", "others_worst",
                         "others_worst_lo", "others_worst_hi", "worst_class", "edit_size"]
    assert row["class"] == "a" and row["worst_class"] == "b" and row["method"] == "zero row"
    assert row["target_lo"] <= row["target_accuracy"] <= row["target_hi"]
    assert row["others_worst"] == 1.0 and row["others_worst_lo"] == row["others_worst_hi"] == 1.0  # nothing to resample


def test_tradeoff_counts_the_others_by_hand(data):
    acts, labels, weight, bias = data
    zero = bl.ZeroRow(weight, bias, 1)
    curve = eff.tradeoff(zero, acts, labels, [0.0, 0.5, 1.0])
    for s, row in zip([0.0, 0.5, 1.0], curve.itertuples()):
        w = weight.clone()
        w[1] *= 1 - s
        pred = (acts @ w.T + bias).argmax(1)
        acc = [float((pred[labels == k] == k).double().mean()) for k in range(3)]
        assert row.target_accuracy == pytest.approx(acc[1])
        assert row.others_mean == pytest.approx((acc[0] + acc[2]) / 2)
        assert row.others_worst == pytest.approx(min(acc[0], acc[2]))
    assert list(curve.columns) == ["method", "strength", "target_accuracy", "others_mean", "others_worst"]


def test_matching_refuses_bad_inputs(known):
    x, y, w, b = known
    zero = bl.ZeroRow(w, b, 0)
    with pytest.raises(ValueError, match="goal_accuracy"):
        eff.match_efficacy(zero, x, y, 1.5)
    with pytest.raises(ValueError, match="strengths"):
        eff.match_efficacy(zero, x, y, 0.5, strengths=[0.0, 2.0])  # outside the row's range
    with pytest.raises(ValueError, match="increasing"):
        eff.tradeoff(zero, x, y, [0.5, 0.1])
    with pytest.raises(ValueError, match="target"):
        eff.tradeoff(zero, x[4:], y[4:], [0.0])  # no sample of the target
    with pytest.raises(ValueError, match="labels"):
        eff.tradeoff(zero, x, y[:3], [0.0])
    with pytest.raises(ValueError, match="HeadEdit"):
        eff.tradeoff("zero", x, y, [0.0])
    with pytest.raises(ValueError, match="n_grid"):
        eff.match_efficacy(zero, x, y, 0.5, n_grid=1)


# ----------------------------------------------------------------------------- goals, summaries, verdicts


def _curves():
    rows = []
    for s, acc_a, acc_b in [(0.0, 0.9, 0.8), (1.0, 0.3, 0.6), (2.0, 0.04, 0.5), (3.0, 0.0, 0.55)]:
        rows += [{"feature_role": "dominant:a", "direction": "suppress", "strength": s, "class": "a", "accuracy": acc_a},
                 {"feature_role": "dominant:b", "direction": "suppress", "strength": s, "class": "b", "accuracy": acc_b},
                 {"feature_role": "dominant:a", "direction": "enhance", "strength": s, "class": "a", "accuracy": 0.0}]
    return pd.DataFrame(rows)


def test_salve_goals_take_the_operating_point_else_the_lowest():
    goals = eff.salve_goals(_curves(), 0.05).set_index("class")
    assert goals.loc["a", "goal_accuracy"] == 0.04 and goals.loc["a", "salve_strength"] == 2.0  # first ≤ 5%, not 0%
    assert goals.loc["a", "source"] == "operating point"
    assert goals.loc["b", "goal_accuracy"] == 0.5 and goals.loc["b", "salve_strength"] == 2.0
    assert goals.loc["b", "source"] == "lowest in sweep"
    rounded = _curves().assign(n=3, accuracy=lambda d: d["accuracy"].replace({0.3: 0.333333}))  # 1/3 as stored
    assert eff.salve_goals(rounded, 0.0).set_index("class").loc["a", "goal_accuracy"] == 0.0
    assert eff.salve_goals(rounded.assign(accuracy=0.333333), 0.05)["goal_accuracy"].tolist() == [1 / 3, 1 / 3]
    with pytest.raises(ValueError, match="target_accuracy"):
        eff.salve_goals(_curves(), 2.0)
    with pytest.raises(ValueError, match="no suppression"):
        eff.salve_goals(_curves().assign(direction="enhance"), 0.05)


def _table(rows):
    cols = ["class", "method", "matched", "others_worst", "others_worst_lo", "others_worst_hi"]
    return pd.DataFrame(rows, columns=cols).assign(others_mean=0.5, edit_size=1.0)


def test_most_specific_counts_overlaps_as_ties():
    t = _table([
        ("best", "SALVE", True, 0.8, 0.75, 0.85), ("best", "steering", True, 0.6, 0.55, 0.7),
        ("tie", "SALVE", True, 0.8, 0.7, 0.9), ("tie", "steering", True, 0.85, 0.8, 0.9),
        ("worse", "SALVE", True, 0.5, 0.45, 0.55), ("worse", "steering", True, 0.7, 0.6, 0.8),
        ("worse", "zero row", True, 0.9, 0.85, 0.95),
        ("only", "SALVE", True, 0.2, 0.1, 0.3), ("only", "steering", False, 0.9, 0.85, 0.95),
        ("miss", "SALVE", False, 0.9, 0.8, 0.95), ("miss", "steering", True, 0.1, 0.0, 0.2),
    ])
    v = eff.most_specific(t).set_index("class")
    assert v["verdict"].to_dict() == {"best": "best", "miss": "not matched", "only": "only", "tie": "tied",
                                      "worse": "worse"}
    assert v.loc["worse", "runner_up"] == "zero row" and pd.isna(v.loc["only", "runner_up"])
    with pytest.raises(ValueError, match="one row"):
        eff.most_specific(t[t["method"] != "SALVE"])
    with pytest.raises(ValueError, match="columns"):
        eff.most_specific(t.drop(columns="matched"))


def test_summarize_methods_uses_matched_classes_only():
    t = _table([("a", "SALVE", True, 0.8, 0, 1), ("b", "SALVE", True, 0.6, 0, 1), ("c", "SALVE", False, 0.0, 0, 1),
                ("a", "steering", False, 0.9, 0, 1)]).assign(edit_size=[1.0, 3.0, 100.0, math.nan])
    assert eff.summarize_methods(t)["method"].tolist() == ["SALVE", "steering"]  # the order of METHODS
    assert eff.summarize_methods(t.assign(method=t["method"].replace({"SALVE": "aaa"})))["method"].tolist() == [
        "steering", "aaa"]  # unknown methods last
    s = eff.summarize_methods(t).set_index("method")
    assert s.loc["SALVE", "reached"] == 2 and s.loc["SALVE", "classes"] == 3
    assert s.loc["SALVE", "median_others_worst"] == pytest.approx(0.7)
    assert s.loc["SALVE", "median_edit_size"] == pytest.approx(2.0)
    assert s.loc["steering", "reached"] == 0 and math.isnan(s.loc["steering", "median_others_worst"])


def test_methods_for_class_builds_the_four_methods(data):
    acts, labels, weight, bias = data
    activations = Activations(acts, labels, acts.clone(), labels.clone(), ["a", "b", "c"], weight, bias, {})
    sae = SparseAutoencoder(acts.shape[1], 4).double()
    methods = bl.methods_for_class(activations, sae, 1, "b", salve_max=3.0, steering_max=5.0, rome_max=2.0)
    assert [m.name for m in methods] == [m.name for m in bl.METHODS]
    assert all(m.target == 1 for m in methods)
    assert [m.max_strength for m in methods] == [3.0, 5.0, 2.0, 1.0]
    # SALVE matched to its own accuracy at a grid point meets its goal at or below that point
    goal = eff.tradeoff(methods[0], acts, labels, [2.0])["target_accuracy"].iloc[0]
    m = eff.match_efficacy(methods[0], acts, labels, float(goal), np.linspace(0, 3.0, 7))
    assert m.matched and m.strength <= 2.0 + 1e-12 and m.accuracy[1] <= goal


def _chapter_tables():
    """Four classes: a and d from an operating point, b from the lowest of its sweep, c never lowered."""
    goals = pd.DataFrame({"class": ["a", "b", "c", "d"], "goal_accuracy": [0.04, 0.3, 0.9, 0.0],
                          "source": ["operating point", "lowest in sweep", "lowest in sweep", "operating point"]})
    unedited = {"a": 0.8, "b": 0.7, "c": 0.9 + 1e-12, "d": 0.6}  # c: its goal is its unedited accuracy, as stored
    rows = [{"feature_role": f"dominant:{c}", "direction": "suppress", "strength": 0.0, "class": c, "accuracy": acc}
            for c, acc in unedited.items()]
    rows += [{"feature_role": "dominant:a", "direction": "suppress", "strength": 0.0, "class": "c", "accuracy": 0.99},
             {"feature_role": "dominant:c", "direction": "enhance", "strength": 0.0, "class": "c", "accuracy": 0.99},
             {"feature_role": "dominant:c", "direction": "suppress", "strength": 1.0, "class": "c", "accuracy": 0.99}]
    matched = _table([
        ("a", "SALVE", True, 0.55, 0.5, 0.6), ("a", "steering", True, 0.75, 0.7, 0.8),  # steering clearly above
        ("a", "zero row", True, 0.6, 0.55, 0.65),                                         # overlaps: not clearly
        ("b", "SALVE", True, 0.65, 0.6, 0.7), ("b", "steering", True, 0.35, 0.3, 0.4),
        ("b", "zero row", False, 0.95, 0.9, 1.0),                                         # not matched: no rival
        ("c", "SALVE", True, 0.55, 0.5, 0.6), ("c", "steering", True, 0.85, 0.8, 0.9),    # set aside
        ("d", "SALVE", False, 0.15, 0.1, 0.2), ("d", "steering", True, 0.55, 0.5, 0.6),   # SALVE does not reach it
    ])
    return goals, pd.DataFrame(rows), matched


def test_never_lowered_compares_each_goal_with_its_own_unedited_accuracy():
    goals, curves, _ = _chapter_tables()
    assert eff.never_lowered(goals, curves).tolist() == [False, False, True, False]
    assert eff.never_lowered(goals, curves, tol=0.0).tolist() == [False] * 4  # 0.9 < 0.9 + 1e-12 without slack
    with pytest.raises(ValueError, match=r"no unedited accuracy .* \['d'\]"):
        eff.never_lowered(goals, curves[curves["class"] != "d"])
    with pytest.raises(ValueError, match="one node"):
        eff.never_lowered(goals, pd.concat([curves, curves]))
    with pytest.raises(ValueError, match="goals lack the columns"):
        eff.never_lowered(goals.drop(columns="goal_accuracy"), curves)


def test_specificity_counts_set_aside_and_count_by_hand():
    goals, curves, matched = _chapter_tables()
    verdicts = eff.most_specific(matched)
    assert verdicts["verdict"].tolist() == ["worse", "best", "worse", "not matched"]
    counts = eff.specificity_counts(goals, curves, matched, verdicts)
    assert (counts.from_point, counts.lowest, counts.never) == (["a", "d"], ["b"], ["c"])
    assert counts.judged == 3 and counts.verdict_counts == {"worse": 1, "best": 1, "not matched": 1}
    assert counts.reached == 2 and counts.most_specific == 1  # a and b are reached; b is the best
    assert counts.clearly_better == {"steering": 1, "zero row": 0}  # on a; c is set aside, SALVE misses d
    assert counts.at_point == 2 and counts.most_specific_at_point == 0
    with pytest.raises(ValueError, match="one row of method 'ROME-style'"):
        eff.specificity_counts(goals, curves, matched, verdicts, method="ROME-style")
    with pytest.raises(ValueError, match="verdicts lack the columns"):
        eff.specificity_counts(goals, curves, matched, verdicts.drop(columns="verdict"))
