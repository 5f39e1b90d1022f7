"""Tests of salve_utils.method.features: class means, dominant/shared features, part recovery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from salve_utils.method.features import class_mean_latents, dominant_features, shared_features, standardised_means
from salve_utils.study.parts import part_recovery
from salve_utils.study.towers import effect_rank, latent_effects, latent_pair_null, tower_search
from salve_utils.method.sae import SparseAutoencoder


def test_class_mean_latents_matches_loops_and_refuses_empty_classes():
    torch.manual_seed(0)
    z = torch.randn(30, 4)
    labels = torch.randint(0, 3, (30,))
    labels[:3] = torch.tensor([0, 1, 2])
    mu = class_mean_latents(z, labels, num_classes=3)
    for k in range(3):
        rows = [z[n] for n in range(30) if labels[n] == k]
        assert torch.allclose(mu[k], sum(rows) / len(rows), atol=1e-6)
    assert class_mean_latents(z, labels).shape == (3, 4)
    with pytest.raises(ValueError, match="class 3 .* has no samples"):  # its mean would be NaN
        class_mean_latents(z, labels, num_classes=4)
    with pytest.raises(ValueError, match="labels"):
        class_mean_latents(z, labels[:-1])
    with pytest.raises(ValueError, match="labels"):
        class_mean_latents(z, labels, num_classes=2)


def test_dominant_features_ranks_by_absolute_value():
    mu = torch.tensor([[0.1, -3.0, 2.0, 0.5], [1.0, 0.2, -0.3, -4.0]])
    df = dominant_features(mu, top=2, classes=["church", "pump"])
    assert list(df.columns) == ["class", "rank", "feature", "mu", "abs_mu"]
    for k, name in enumerate(["church", "pump"]):
        slow = sorted(range(4), key=lambda l: -abs(float(mu[k, l])))[:2]
        part = df[df["class"] == name]
        assert part["feature"].tolist() == slow
        assert part["rank"].tolist() == [1, 2]
        assert part["mu"].tolist() == pytest.approx([float(mu[k, l]) for l in slow])
    assert df.loc[0, "mu"] < 0 < df.loc[0, "abs_mu"]  # the sign is kept
    with pytest.raises(ValueError, match="classes"):
        dominant_features(mu, classes=["only one"])


def test_shared_features_finds_the_planted_tower_and_matches_slow_score():
    torch.manual_seed(1)
    mu = 0.1 * torch.randn(4, 10)
    mu[0, 0], mu[1, 1] = 5.0, -6.0  # each class's own top feature
    mu[0, 7], mu[1, 7] = -2.5, -3.0  # the shared "tower" (one sign in both classes)
    mu[0, 3] = 4.0  # strong for class 0 only
    mu[0, 5], mu[1, 5] = 3.0, -3.5  # strong for both, but with opposite signs: not shared
    names = ["church", "pump", "dog", "fish"]
    df = shared_features(mu, ["church", "pump"], class_names=names, top=3)
    assert df.loc[0, "feature"] == 7
    assert list(df.columns) == ["rank", "feature", "score", "mu_church", "mu_pump"]
    slow = {}
    for l in range(10):
        if l in (0, 1) or float(mu[0, l]) * float(mu[1, l]) <= 0:
            continue
        slow[l] = min(abs(float(mu[k, l])) / max(abs(float(v)) for v in mu[k]) for k in (0, 1))
    best = sorted(slow, key=lambda l: -slow[l])[:3]
    assert df["feature"].tolist() == best
    assert df["score"].tolist() == pytest.approx([slow[l] for l in best])
    assert df.loc[0, "mu_pump"] == pytest.approx(-3.0)
    # indices work too, and without the exclusion the own top features can appear
    assert shared_features(mu, [0, 1], top=1)["feature"].tolist() == [7]
    assert 0 in shared_features(mu, [0, 0], exclude_own_top=False, top=1)["feature"].tolist()
    # the opposite-sign latent wins only when the sign is ignored
    assert shared_features(mu, [0, 1], top=1, same_sign=False)["feature"].tolist() == [5]


def test_shared_features_rejects_unknown_classes():
    mu = torch.rand(3, 4)
    with pytest.raises(ValueError, match="valid classes: a, b, c"):
        shared_features(mu, ["a", "zebra"], class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="classes"):
        shared_features(mu, [0, 5])
    with pytest.raises(ValueError, match="class_names"):
        shared_features(mu, ["a"])


def test_standardised_means_centre_on_the_median_class_and_scale_by_the_latent_spread():
    torch.manual_seed(4)
    z = torch.randn(60, 3) * torch.tensor([1.0, 10.0, 0.0]) + torch.tensor([5.0, -2.0, 7.0])
    labels = torch.arange(60) % 3
    got = standardised_means(z, labels)
    for l in range(2):
        col = [float(v) for v in z[:, l]]
        m = sum(col) / 60
        sd = (sum((v - m) ** 2 for v in col) / 59) ** 0.5
        means = [sum(col[n] for n in range(60) if n % 3 == k) / 20 for k in range(3)]
        median = sorted(means)[1]
        for k in range(3):
            assert float(got[k, l]) == pytest.approx((means[k] - median) / sd, rel=1e-9, abs=1e-12)
    assert (got[:, 2] == 0).all()  # a constant latent is not a feature of any class
    # a latent of one class only is no shared feature of the others: they stay at 0
    one = torch.zeros(40, 1)
    one[:10] = 3.0
    assert standardised_means(one, torch.arange(40) // 10)[1:].abs().max() == 0


def _tower_fixture(shared: tuple[float, float]) -> torch.Tensor:
    """Two classes x 42 latents: 40 noise latents whose a/b values are unrelated, one strong opposite-sign
    latent (40) and one latent (41) with the given pair of values."""
    g = torch.Generator().manual_seed(5)
    mu = torch.randn(2, 42, generator=g) * 0.5
    mu[:, 40] = torch.tensor([3.0, -3.0])
    mu[:, 41] = torch.tensor(shared)
    return mu


def test_tower_search_finds_a_planted_shared_latent_and_beats_the_null():
    found = tower_search(_tower_fixture((2.5, 2.0)), ["church", "pump"], ["church", "pump"], seed=1)
    assert found.feature == 41 and found.same_sign and found.passes
    assert found.score == pytest.approx(2.0)
    # random pairings reach 2.0 only by pairing 41's 2.0 for pump with a strong same-sign value for church
    assert found.p_value == pytest.approx((1 + (found.null >= 2.0).sum()) / 2001) and found.p_value < 0.05
    assert found.null_quantile == pytest.approx(float(np.quantile(found.null, 0.95)))
    table = found.table
    assert list(table.columns) == ["feature", "mu_a", "mu_b", "same_sign", "score", "p_value", "passes"]
    assert table["feature"].tolist()[0] == 40  # the strongest by magnitude is the opposite-sign one ...
    assert not table.loc[0, "same_sign"] and not table.loc[0, "passes"] and np.isnan(table.loc[0, "p_value"])
    assert table.loc[1, "feature"] == 41 and table.loc[1, "passes"]  # ... but only 41 is a candidate
    assert table["score"].is_monotonic_decreasing
    assert table["passes"].sum() == 1


def test_tower_search_does_not_pass_when_nothing_is_shared():
    found = tower_search(_tower_fixture((2.5, -2.0)), [0, 1], n_null=1000)
    assert found.same_sign and not found.passes  # best same-sign latent is a noise one, inside the null
    assert found.feature not in (40, 41)
    assert found.score <= found.null_quantile and found.p_value > 0.05
    # no same-sign latent at all: the best overall is reported and fails
    mu = torch.tensor([[1.0, -2.0, 3.0, 0.1, -0.2], [-1.0, 2.0, -0.5, -0.3, 0.1]])
    none = tower_search(mu, [0, 1])
    assert none.feature == 1 and not none.same_sign and not none.passes and np.isnan(none.p_value)


def test_tower_search_excludes_features_and_checks_its_inputs():
    mu = _tower_fixture((2.5, 2.0))
    found = tower_search(mu, [0, 1], exclude=[41])
    assert 41 not in found.table["feature"].tolist() and found.feature != 41 and not found.passes
    same_seed = tower_search(mu, [0, 1], seed=3)
    assert np.array_equal(same_seed.null, tower_search(mu, [0, 1], seed=3).null)  # seeded
    with pytest.raises(ValueError, match="n_null"):
        tower_search(mu, [0, 1], n_null=100)
    with pytest.raises(ValueError, match="two classes"):
        tower_search(mu, [0])
    with pytest.raises(ValueError, match="five latents"):
        tower_search(mu[:, :5], [0, 1], exclude=[0])


def test_latent_pair_null_never_pairs_a_latent_with_itself():
    a = np.array([0.0, 0.0, 5.0, 0.0])
    b = np.array([0.0, 0.0, 5.0, -1.0])
    null = latent_pair_null(a, b, n_null=1000, seed=0)
    assert null.max() == 0.0  # 5 meets 5 only if π(2) = 2, which a derangement forbids
    # the slow way: the best same-sign min(|a_l|, |b_π(l)|) for one explicit derangement
    a, b = np.array([1.0, -2.0, 3.0]), np.array([-1.0, 2.5, 0.5])
    vals = latent_pair_null(a, b, n_null=1000, seed=2)
    derangements = [(1, 2, 0), (2, 0, 1)]
    slow = {max([min(abs(a[l]), abs(b[p[l]])) if a[l] * b[p[l]] > 0 else 0.0 for l in range(3)]) for p in derangements}
    assert set(np.unique(vals)) == slow


def test_effect_rank_counts_latents_that_lower_a_class_more():
    eff = pd.DataFrame({"feature": [0, 1, 2, 3] * 2, "class": ["a"] * 4 + ["b"] * 4,
                        "change": [-0.3, -0.5, -0.3, 0.1, 0.0, 0.0, 0.2, -0.1]})
    r = effect_rank(eff, 2).set_index("class")
    assert r.loc["a", "rank"] == 2 and r.loc["a", "quantile"] == pytest.approx(3 / 4)  # tie with 0 counted
    assert r.loc["b", "rank"] == 4 and r.loc["b", "quantile"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="feature 9"):
        effect_rank(eff, 9)


def test_part_recovery_finds_planted_latents():
    torch.manual_seed(3)
    n = 200
    parts = torch.rand(n, 3) < 0.4
    z = 0.3 * torch.randn(n, 5)
    z[:, 4] += 2.0 * parts[:, 0]
    z[:, 1] -= 1.5 * parts[:, 2]
    df = part_recovery(z, parts, ["tower", "ring", "dots"])
    assert list(df.columns) == ["part", "feature", "corr", "abs_corr"]
    assert df.loc[0, "feature"] == 4 and df.loc[0, "corr"] > 0.8
    assert df.loc[2, "feature"] == 1 and df.loc[2, "corr"] < -0.8
    # the reported r is Pearson's, computed slowly
    x = [float(v) for v in parts[:, 2]]
    y = [float(v) for v in z[:, 1]]
    mx, my = sum(x) / n, sum(y) / n
    r = sum((a - mx) * (b - my) for a, b in zip(x, y)) / (
        sum((a - mx) ** 2 for a in x) ** 0.5 * sum((b - my) ** 2 for b in y) ** 0.5)
    assert df.loc[2, "corr"] == pytest.approx(r, rel=1e-6)


def test_part_recovery_handles_constant_parts_and_latents():
    parts = torch.tensor([[1, 0], [1, 1], [1, 0], [1, 1]]).bool()
    z = torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 1.0], [0.0, 2.5]])
    df = part_recovery(z, parts, ["always", "half"])
    assert df.loc[0, "feature"] == -1 and df["corr"].isna()[0]
    assert df.loc[1, "feature"] == 1
    with pytest.raises(ValueError, match="parts"):
        part_recovery(z, parts, ["one"])


def test_latent_effects_edits_every_latent_and_shifts_the_interval():
    from salve_utils.method.activations import Activations
    from salve_utils.method.editing import edit_curve
    from salve_utils.method.sae import strength_scale
    from salve_utils.study.stats import accuracy_interval

    torch.manual_seed(6)
    x = torch.rand(90, 6)
    labels = torch.arange(90) % 3
    x[torch.arange(90), labels] += 1.0  # class k lights channel k
    weight, bias = torch.eye(3, 6), torch.zeros(3)
    acts = Activations(x, labels, x.clone(), labels.clone(), ["a", "b", "c"], weight, bias, {})
    sae = SparseAutoencoder(6, 4)
    eff = latent_effects(acts, sae, 2.0, ["c", "a"])
    assert list(eff.columns) == ["feature", "class", "strength", "before", "after", "n", "change", "change_lo",
                                 "change_hi"]
    assert eff[["class", "feature"]].values.tolist() == [[c, l] for c in ("a", "c") for l in range(4)]
    for row in eff.itertuples():  # the slow way: one edit_curve per latent
        column = sae.decoder_column(row.feature).detach()
        curve = edit_curve(x, labels, weight, bias, column, [0.0, 2.0 / strength_scale(column)], "suppress",
                           ["a", "b", "c"])
        acc = curve[curve["class"] == row._2]["accuracy"].tolist()
        assert row.change == pytest.approx(acc[1] - acc[0])
        lo, hi = accuracy_interval(acc[1], 30)
        assert (row.change_lo, row.change_hi) == pytest.approx((lo - acc[0], hi - acc[0]))
    with pytest.raises(ValueError, match="zebra"):
        latent_effects(acts, sae, 2.0, ["zebra"])
