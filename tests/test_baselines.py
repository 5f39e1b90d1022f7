"""Tests of salve_utils.baselines: steering, ROME-style edit, zero row, scorecard."""

from __future__ import annotations

import math

import pytest
import torch

from salve_utils.baselines import rome_edit, rome_suppress, score_edit, steer_activations, zero_row
from salve_utils.sae import SparseAutoencoder


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


def test_steering_matches_the_formula():
    torch.manual_seed(1)
    sae = SparseAutoencoder(4, 3)
    a = torch.randn(5, 4)
    out = steer_activations(a, sae, feature=1, alpha=0.7)
    E, be, D = sae.encoder.weight.detach(), sae.encoder.bias.detach(), sae.decoder.weight.detach()
    for n in range(5):
        z = sum(float(E[1, j] * a[n, j]) for j in range(4)) + float(be[1])
        for j in range(4):
            assert float(out[n, j]) == pytest.approx(float(a[n, j]) - 0.7 * z * float(D[j, 1]), abs=1e-6)
    assert torch.equal(steer_activations(a, sae, feature=1, alpha=0.0), a)
    assert not torch.allclose(out, a)
    with pytest.raises(ValueError, match="feature"):
        steer_activations(a, sae, feature=3, alpha=1.0)
    with pytest.raises(ValueError, match="acts"):
        steer_activations(a[:, :3], sae, feature=0, alpha=1.0)
    with pytest.raises(ValueError, match="alpha"):
        steer_activations(a, sae, feature=0, alpha=float("inf"))


def test_rome_edit_matches_loops_and_hits_the_value():
    g = torch.Generator().manual_seed(2)
    k, m = 3, 4
    w = torch.randn(k, m, generator=g, dtype=torch.float64)
    x = torch.randn(20, m, generator=g, dtype=torch.float64)
    cov = x.T @ x / 20
    key = torch.randn(m, generator=g, dtype=torch.float64)
    value = torch.randn(k, generator=g, dtype=torch.float64)
    out = rome_edit(w, key, value, cov)
    u = torch.linalg.inv(cov) @ key
    denom = sum(float(key[j] * u[j]) for j in range(m))
    for i in range(k):
        r = float(value[i]) - sum(float(w[i, j] * key[j]) for j in range(m))
        for j in range(m):
            assert float(out[i, j]) == pytest.approx(float(w[i, j]) + r * float(u[j]) / denom, rel=1e-9)
    assert torch.allclose(out @ key, value)
    # directions C^-1-orthogonal to the key are untouched
    other = torch.randn(m, generator=g, dtype=torch.float64)
    other -= (other @ u) / (u @ u) * u
    assert torch.allclose(out @ other, w @ other)
    with pytest.raises(ValueError, match="cov"):
        rome_edit(w, key, value, -torch.eye(m, dtype=torch.float64))
    with pytest.raises(ValueError, match="key"):
        rome_edit(w, key[:2], value, cov)
    with pytest.raises(ValueError, match="value"):
        rome_edit(w, key, value[:2], cov)


def test_rome_suppress_removes_the_key_from_the_target(data):
    acts, labels, weight, bias = data
    target = 1
    key = acts[labels == target].mean(0)
    before = weight @ key + bias
    out = rome_suppress(weight, bias, acts, labels, target, margin=0.5)
    after = out @ key + bias
    others = torch.cat([after[:target], after[target + 1 :]])
    assert float(after[target]) == pytest.approx(float(others.max()) - 0.5, abs=1e-6)
    assert torch.allclose(torch.cat([after[:target], after[target + 1 :]]),
                          torch.cat([before[:target], before[target + 1 :]]), atol=1e-6)  # other logits of k* kept
    assert out.dtype == weight.dtype and not torch.equal(out, weight)
    with pytest.raises(ValueError, match="target"):
        rome_suppress(weight, bias, acts, labels, 3)
    with pytest.raises(ValueError, match="train_labels"):
        rome_suppress(weight, bias, acts, labels.clamp(max=0), 2)
    with pytest.raises(ValueError, match="margin"):
        rome_suppress(weight, bias, acts, labels, 0, margin=-1.0)


def test_zero_row(data):
    _, _, weight, _ = data
    out = zero_row(weight, 2)
    assert (out[2] == 0).all() and torch.equal(out[:2], weight[:2]) and (weight[2] != 0).any()
    with pytest.raises(ValueError, match="target"):
        zero_row(weight, -1)


def test_score_edit_matches_hand_counts():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    before = torch.eye(3)[labels] * 2.0  # all correct
    after = before.clone()
    after[0] = torch.tensor([0.0, 1.0, 0.0])  # one of two class-0 samples lost
    after[4] = torch.tensor([0.0, 0.0, 0.0])  # ties -> argmax 0: one of three class-2 samples lost
    w0 = torch.zeros(3, 2)
    w1 = torch.tensor([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]])
    s = score_edit(before, after, labels, "a", weight_before=w0, weight_after=w1, overhead_s=0.25,
                   classes=["a", "b", "c"])
    assert s["target"] == "a"
    assert s["efficacy"] == pytest.approx(0.5)
    assert s["target_acc_after"] == pytest.approx(0.5)
    assert s["specificity_mean"] == pytest.approx((0.0 + (-1 / 3)) / 2)
    assert s["specificity_worst"] == pytest.approx(-1 / 3)
    assert s["worst_class"] == "c"
    assert s["edit_size"] == pytest.approx(5.0)
    assert s["overhead_s"] == 0.25
    assert math.isnan(score_edit(before, after, labels, 0)["edit_size"])
    with pytest.raises(ValueError, match="target"):
        score_edit(before, after, labels, "zebra", classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="logits_after"):
        score_edit(before, after[:3], labels, 0)


def test_baselines_compared_on_one_task(data):
    acts, labels, weight, bias = data
    target = 0
    logits = acts @ weight.T + bias
    floor = acts @ zero_row(weight, target).T + bias
    rome = acts @ rome_suppress(weight, bias, acts, labels, target, margin=1.0).T + bias
    s_floor = score_edit(logits, floor, labels, target, weight, zero_row(weight, target))
    s_rome = score_edit(logits, rome, labels, target)
    assert s_floor["edit_size"] == pytest.approx(float(weight[target].norm()))
    for s in (s_floor, s_rome):
        assert -1.0 <= s["efficacy"] <= 1.0 and s["specificity_worst"] <= s["specificity_mean"]
