"""Tests of salve_utils.features: class means, dominant/shared features, part recovery."""

from __future__ import annotations

import pytest
import torch

from salve_utils.features import (
    class_mean_latents,
    dominant_features,
    part_recovery,
    shared_features,
)


def test_class_mean_latents_matches_loops_and_marks_empty_classes():
    torch.manual_seed(0)
    z = torch.randn(30, 4)
    labels = torch.randint(0, 3, (30,))
    labels[:3] = torch.tensor([0, 1, 2])
    mu = class_mean_latents(z, labels, num_classes=4)
    for k in range(3):
        rows = [z[n] for n in range(30) if labels[n] == k]
        assert torch.allclose(mu[k], sum(rows) / len(rows), atol=1e-6)
    assert torch.isnan(mu[3]).all()
    assert class_mean_latents(z, labels).shape == (3, 4)
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
    mu[0, 7], mu[1, 7] = 2.5, -3.0  # the shared "tower"
    mu[0, 3] = 4.0  # strong for class 0 only
    names = ["church", "pump", "dog", "fish"]
    df = shared_features(mu, ["church", "pump"], class_names=names, top=3)
    assert df.loc[0, "feature"] == 7
    assert list(df.columns) == ["rank", "feature", "score", "mu_church", "mu_pump"]
    slow = {}
    for l in range(10):
        if l in (0, 1):
            continue
        slow[l] = min(abs(float(mu[k, l])) / max(abs(float(v)) for v in mu[k]) for k in (0, 1))
    best = sorted(slow, key=lambda l: -slow[l])[:3]
    assert df["feature"].tolist() == best
    assert df["score"].tolist() == pytest.approx([slow[l] for l in best])
    assert df.loc[0, "mu_pump"] == pytest.approx(-3.0)
    # indices work too, and without the exclusion the own top features can appear
    assert shared_features(mu, [0, 1], top=1)["feature"].tolist() == [7]
    assert 0 in shared_features(mu, [0, 0], exclude_own_top=False, top=1)["feature"].tolist()


def test_shared_features_rejects_unknown_classes():
    mu = torch.rand(3, 4)
    with pytest.raises(ValueError, match="valid classes: a, b, c"):
        shared_features(mu, ["a", "zebra"], class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="classes"):
        shared_features(mu, [0, 5])
    with pytest.raises(ValueError, match="class_names"):
        shared_features(mu, ["a"])


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
