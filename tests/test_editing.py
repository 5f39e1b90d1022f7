"""Tests of salve_utils.method.editing: Eq. 1, permanence and sweeps on cached activations (α_crit: test_alpha.py)."""

from __future__ import annotations

import pytest
import torch

import salve_utils.method.editing as editing
from salve_utils.method.editing import (
    edit_curve,
    edit_logits,
    edit_model,
    edit_weights,
    per_class_accuracy,
)
from salve_utils.method.models import load_model, save_model
from salve_utils.method.sae import SparseAutoencoder

CLASSES = [f"class{i}" for i in range(10)]


def _slow_edit(weight, c, alpha, direction):
    out = weight.clone()
    for i in range(weight.shape[0]):
        for j in range(weight.shape[1]):
            s = alpha * abs(float(c[j]))
            out[i, j] = weight[i, j] * (max(0.0, 1.0 - s) if direction == "suppress" else 1.0 + s)
    return out


# --------------------------------------------------------------------------- Eq. 1


@pytest.mark.parametrize("direction", ["suppress", "enhance"])
@pytest.mark.parametrize("alpha", [0.0, 0.7, 3.0])
def test_edit_weights_matches_the_formula(head, direction, alpha):
    _, _, weight, _, column = head
    before = weight.clone()
    out = edit_weights(weight, column, alpha, direction)
    assert torch.allclose(out, _slow_edit(weight, column, alpha, direction), atol=1e-6)
    assert torch.equal(weight, before)  # pure
    assert out is not weight


def test_suppression_clamps_at_zero_and_never_flips_a_sign(head):
    _, _, weight, _, column = head
    out = edit_weights(weight, column, 100.0)
    assert (out * weight >= 0).all()
    assert torch.equal(out[:, column == 0], weight[:, column == 0])
    assert torch.allclose(out[:, column.abs() > 0.01], torch.zeros(4, int((column.abs() > 0.01).sum())))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda w, c: edit_weights(w, c, -0.1), "alpha"),
        (lambda w, c: edit_weights(w, c, float("nan")), "alpha"),
        (lambda w, c: edit_weights(w, c, [1.0, 2.0]), "alpha"),
        (lambda w, c: edit_weights(w, c, 1.0, "boost"), "direction"),
        (lambda w, c: edit_weights(w, c[:-1], 1.0), "decoder_column"),
        (lambda w, c: edit_weights(w[0], c, 1.0), "weight"),
    ],
)
def test_edit_weights_validates(head, call, name):
    _, _, weight, _, column = head
    with pytest.raises(ValueError, match=name):
        call(weight, column)


# --------------------------------------------------------------------------- sweeps


@pytest.mark.parametrize("direction", ["suppress", "enhance"])
def test_edit_logits_equals_one_alpha_at_a_time(head, direction, monkeypatch):
    acts, _, weight, bias, column = head
    alphas = [0.0, 0.3, 1.1, 4.0]
    fast = edit_logits(acts, weight, bias, column, alphas, direction)
    assert fast.shape == (4, 12, 4)
    for t, alpha in enumerate(alphas):
        w = _slow_edit(weight, column, alpha, direction)
        assert torch.allclose(fast[t], acts @ w.T + bias, atol=1e-5)
    monkeypatch.setattr(editing, "_CHUNK_ELEMENTS", 5)  # one α per chunk
    assert torch.allclose(edit_logits(acts, weight, bias, column, alphas, direction), fast, atol=1e-6)


def test_edit_curve_equals_slow_per_alpha_loop(head):
    acts, labels, weight, bias, column = head
    alphas = [0.0, 0.5, 2.0, 8.0]
    names = ["church", "pump", "dog", "fish"]
    df = edit_curve(acts, labels, weight, bias, column, alphas, classes=names)
    assert list(df.columns) == ["alpha", "class", "accuracy", "mean_target_logit", "n"]
    assert len(df) == len(alphas) * 4
    for alpha in alphas:
        logits = acts @ _slow_edit(weight, column, alpha, "suppress").T + bias
        for k, name in enumerate(names):
            idx = [n for n in range(12) if labels[n] == k]
            acc = sum(int(logits[n].argmax()) == k for n in idx) / len(idx)
            mean_logit = sum(float(logits[n, k]) for n in idx) / len(idx)
            row = df[(df["alpha"] == alpha) & (df["class"] == name)].iloc[0]
            assert row["accuracy"] == pytest.approx(acc)
            assert row["mean_target_logit"] == pytest.approx(mean_logit, abs=1e-5)
            assert row["n"] == len(idx)
    assert df["accuracy"].nunique() > 1  # the edit changes something


def test_edit_curve_drops_empty_classes_and_validates(head):
    acts, labels, weight, bias, column = head
    labels = labels.clone()
    labels[labels == 3] = 0
    df = edit_curve(acts, labels, weight, bias, column, [0.0, 1.0])
    assert sorted(df["class"].unique()) == [0, 1, 2]
    with pytest.raises(ValueError, match="labels"):
        edit_curve(acts, labels[:-1], weight, bias, column, [0.0])
    with pytest.raises(ValueError, match="classes"):
        edit_curve(acts, labels, weight, bias, column, [0.0], classes=["a"])
    with pytest.raises(ValueError, match="alphas"):
        edit_curve(acts, labels, weight, bias, column, [1.0, -1.0])
    with pytest.raises(ValueError, match="bias"):
        edit_logits(acts, weight, bias[:-1], column, [0.0])
    with pytest.raises(ValueError, match="acts"):
        edit_logits(acts[:, :-1], weight, bias, column, [0.0])


def test_per_class_accuracy_matches_loops(head):
    acts, labels, weight, bias, _ = head
    logits = acts @ weight.T + bias
    acc, counts = per_class_accuracy(logits, labels)
    for k in range(4):
        idx = [n for n in range(12) if labels[n] == k]
        assert acc[k] == pytest.approx(sum(int(logits[n].argmax()) == k for n in idx) / len(idx))
        assert counts[k] == len(idx)


# --------------------------------------------------------------------------- the real network


def test_edit_model_is_permanent_and_matches_cached_activations(tiny_model, tmp_path):
    model, images, sae = tiny_model
    original_weight = model.head.weight.detach().clone()
    column = sae.decoder_column(3)
    alpha = 1.0 / float(column.abs().median())
    edited = edit_model(model, sae, 3, alpha)
    assert torch.equal(model.head.weight, original_weight)  # the input model is untouched
    assert torch.equal(edited.head.bias, model.head.bias)
    assert torch.allclose(edited.head.weight, _slow_edit(original_weight, column, alpha, "suppress"), atol=1e-6)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in edited.modules())
    path = save_model(edited, tmp_path / "edited.pt")
    reloaded = load_model(path)
    with torch.no_grad():
        before, after, again = model(images), edited(images), reloaded(images)
        acts = model.features(images)
    assert torch.allclose(after, again, atol=1e-6)
    assert (after - before).abs().max() > 1e-3
    cached = edit_logits(acts, original_weight, model.head.bias.detach(), column, [alpha])[0]
    assert torch.allclose(after, cached, atol=1e-4)


def test_edit_model_validates(tiny_model):
    model, _, sae = tiny_model
    with pytest.raises(ValueError, match="feature"):
        edit_model(model, sae, 8, 1.0)
    with pytest.raises(ValueError, match="alpha"):
        edit_model(model, sae, 0, -1.0)
    with pytest.raises(ValueError, match="direction"):
        edit_model(model, sae, 0, 1.0, "remove")
    with pytest.raises(ValueError, match="sae"):
        edit_model(model, SparseAutoencoder(16, 4), 0, 1.0)
