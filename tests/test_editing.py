"""Tests of salve_utils.editing: Eq. 1, permanence, sweeps on cached activations and α_crit."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import salve_utils.editing as editing
from salve_utils.editing import (
    alpha_crit,
    edit_curve,
    edit_logits,
    edit_model,
    edit_weights,
    empirical_alpha_crit,
    per_class_accuracy,
)
from salve_utils.models import build_model, load_model, save_model
from salve_utils.sae import SparseAutoencoder

CLASSES = [f"class{i}" for i in range(10)]


def _slow_edit(weight, c, alpha, direction):
    out = weight.clone()
    for i in range(weight.shape[0]):
        for j in range(weight.shape[1]):
            s = alpha * abs(float(c[j]))
            out[i, j] = weight[i, j] * (max(0.0, 1.0 - s) if direction == "suppress" else 1.0 + s)
    return out


def _slow_target_logit(a, w_row, b_i, c, alpha):
    """y_i(α) = Σ_j W_ij a_j max(0, 1 - α|c_j|) + b_i, one sample, plain Python."""
    return sum(float(w_row[j]) * float(a[j]) * max(0.0, 1.0 - alpha * abs(float(c[j]))) for j in range(len(a))) + b_i


def _grid_logits(a, weight, bias, c, grid):
    """Exact clamped logits on a dense α grid for one sample, (G, K) — the obvious formula, vectorised over α."""
    factors = (1 - grid[:, None] * c.abs()[None, :]).clamp_min(0)  # (G, M)
    return (factors * a[None, :]) @ weight.T + bias


@pytest.fixture
def head():
    g = torch.Generator().manual_seed(0)
    acts = torch.rand(12, 7, generator=g) * 2
    weight = torch.randn(4, 7, generator=g)
    bias = torch.randn(4, generator=g) * 0.1
    column = torch.randn(7, generator=g) * 0.5
    labels = torch.arange(12) % 4
    return acts, labels, weight, bias, column


@pytest.fixture(scope="module")
def tiny_model():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model("resnet18", classes=CLASSES, image_size=32, stem="cifar").eval()
        images = torch.rand(3, 3, 32, 32)
        sae = SparseAutoencoder(512, 8)
    return model, images, sae


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


# --------------------------------------------------------------------------- α_crit


def test_analytic_alpha_crit_matches_loops_and_conventions(head):
    acts, _, weight, bias, column = head
    assert (column < 0).any()
    seen = set()
    for target in range(4):
        crit = alpha_crit(acts, weight, bias, column, target, "analytic")
        assert crit.shape == (12,) and crit.dtype == torch.float64
        for n in range(12):
            y = sum(float(weight[target, j] * acts[n, j]) for j in range(7)) + float(bias[target])
            r = sum(float(weight[target, j]) * abs(float(column[j])) * float(acts[n, j]) for j in range(7))
            expect = 0.0 if y <= 0 else (y / r if r > 0 else math.inf)
            assert float(crit[n]) == pytest.approx(expect, rel=1e-6)
            seen.add("zero" if expect == 0 else "inf" if math.isinf(expect) else "finite")
    assert seen == {"zero", "inf", "finite"}
    # an explicit ∞ case: positive logit, negative R
    a = torch.tensor([[1.0, 1.0]])
    w = torch.tensor([[1.0, -2.0], [0.0, 0.0]])
    assert math.isinf(float(alpha_crit(a, w, torch.tensor([3.0, 0.0]), torch.tensor([0.1, 1.0]), 0)))


def test_numerical_finds_the_first_root_of_a_dip_a_coarse_bisection_misses():
    # y(α) = 4·max(0,1-α) - 3·max(0,1-0.5α) + 0.3·max(0,1-5α) + 0.2:
    # kinks at 0.2, 1, 2; falls to 0 at α = 0.48, dips to -1.3 at α = 1, rises to 0.2 and stays there.
    a = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    w = torch.tensor([[4.0, -3.0, 0.3]], dtype=torch.float64)
    b = torch.tensor([0.2], dtype=torch.float64)
    c = torch.tensor([1.0, 0.5, 5.0], dtype=torch.float64)
    crit = float(alpha_crit(a, w, b, c, 0, "numerical"))
    assert crit == pytest.approx(0.48, abs=1e-12)
    # the dip is real: y > 0 at both ends of [0, 2.5], so bisection there sees no sign change at all ...
    assert _slow_target_logit(a[0], w[0], 0.2, c, 0.0) > 0 and _slow_target_logit(a[0], w[0], 0.2, c, 2.5) > 0
    # ... while a dense grid confirms 0.48 is the first zero
    grid = torch.linspace(0, 3, 30001, dtype=torch.float64)
    y = _grid_logits(a[0], w, b, c, grid)[:, 0]
    assert (y[grid < crit - 1e-9] > 0).all()
    assert float(grid[(y <= 0).nonzero()[0]]) == pytest.approx(crit, abs=2e-4)
    assert _slow_target_logit(a[0], w[0], 0.2, c, crit) == pytest.approx(0.0, abs=1e-12)
    # the linearisation ignores the kink at 0.2: analytic = 1.5 / 4 = 0.375 is only an estimate here
    assert float(alpha_crit(a, w, b, c, 0, "analytic")) == pytest.approx(0.375)


def test_numerical_is_the_first_root_on_random_non_monotone_cases():
    g = torch.Generator().manual_seed(5)
    m = 6
    acts = torch.rand(40, m, generator=g, dtype=torch.float64)
    w = torch.randn(2, m, generator=g, dtype=torch.float64)
    c = torch.rand(m, generator=g, dtype=torch.float64) * 2 + 0.2
    b = torch.tensor([0.3, 0.0], dtype=torch.float64)
    crit = alpha_crit(acts, w, b, c, 0, "numerical")
    grid = torch.linspace(0, 6, 60001, dtype=torch.float64)  # beyond the last kink (1/0.2 = 5)
    finite = torch.isfinite(crit)
    assert finite.any() and (~finite).any()
    non_monotone = 0
    for n in range(40):
        y = _grid_logits(acts[n], w, b, c, grid)[:, 0]
        non_monotone += bool((y.diff() > 1e-12).any() and (y.diff() < -1e-12).any())
        if y[0] <= 0:
            assert crit[n] == 0
        elif not (y <= 0).any():
            assert math.isinf(float(crit[n])) or _slow_target_logit(acts[n], w[0], 0.3, c, float(crit[n])) < 1e-9
        else:
            root = float(crit[n])
            assert _slow_target_logit(acts[n], w[0], 0.3, c, root) == pytest.approx(0.0, abs=1e-9)
            assert (y[grid < root - 1e-9] > 0).all()
            assert root <= float(grid[(y <= 0).nonzero()[0]]) + 1e-12
    assert non_monotone > 5


def test_analytic_equals_numerical_when_no_clamp_is_hit_before_the_root():
    g = torch.Generator().manual_seed(6)
    acts = torch.rand(30, 8, generator=g, dtype=torch.float64)
    w = torch.randn(3, 8, generator=g, dtype=torch.float64)
    b = torch.zeros(3, dtype=torch.float64)
    c = torch.rand(8, generator=g, dtype=torch.float64) * 0.5 + 0.05
    analytic = alpha_crit(acts, w, b, c, 2, "analytic")
    numerical = alpha_crit(acts, w, b, c, 2, "numerical")
    first_kink = 1 / float(c.abs().max())
    exact = analytic <= first_kink
    assert exact.sum() >= 3 and (~exact & torch.isfinite(analytic)).sum() >= 1
    assert torch.allclose(analytic[exact], numerical[exact], rtol=1e-10, atol=0)
    assert not torch.allclose(analytic[~exact & torch.isfinite(analytic)], numerical[~exact & torch.isfinite(analytic)])


def test_flip_matches_a_dense_argmax_scan():
    g = torch.Generator().manual_seed(7)
    m, k, target = 6, 4, 2
    acts = torch.rand(30, m, generator=g, dtype=torch.float64)
    w = torch.randn(k, m, generator=g, dtype=torch.float64)
    b = torch.randn(k, generator=g, dtype=torch.float64) * 0.2
    c = torch.rand(m, generator=g, dtype=torch.float64) * 2 + 0.2
    w[target] += 1.0  # the target wins on most samples, not all
    flip = alpha_crit(acts, w, b, c, target, "flip")
    assert (flip == 0).any() and (flip > 0).any()
    grid = torch.linspace(0, 6, 30001, dtype=torch.float64)
    checked = 0
    for n in range(30):
        logits = _grid_logits(acts[n], w, b, c, grid)
        others = torch.cat([logits[:, :target], logits[:, target + 1 :]], 1).amax(1)
        margin = logits[:, target] - others
        if margin[0] <= 0:
            assert flip[n] == 0
            continue
        if not (margin <= 0).any():
            assert math.isinf(float(flip[n]))
            continue
        root = float(flip[n])
        assert (margin[grid < root - 1e-9] > 0).all()
        assert root <= float(grid[(margin <= 0).nonzero()[0]]) + 1e-12
        at_root = _grid_logits(acts[n], w, b, c, torch.tensor([root], dtype=torch.float64))[0]
        assert float(at_root[target]) == pytest.approx(float(torch.cat([at_root[:target], at_root[target + 1 :]]).max()),
                                                       abs=1e-9)
        checked += 1
    assert checked >= 10


def test_alpha_crit_validates(head):
    acts, _, weight, bias, column = head
    with pytest.raises(ValueError, match="method"):
        alpha_crit(acts, weight, bias, column, 0, "bisection")
    with pytest.raises(ValueError, match="target"):
        alpha_crit(acts, weight, bias, column, 4)
    with pytest.raises(ValueError, match="decoder_column"):
        alpha_crit(acts, weight, bias, column[:3], 0)
    with pytest.raises(ValueError, match="acts"):
        alpha_crit(acts.T, weight, bias, column, 0)


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


def test_empirical_alpha_crit_agrees_with_numerical(tiny_model):
    model, images, _ = tiny_model
    model = copy.deepcopy(model)
    target = 4
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        acts = model.features(images)
        model.head.weight[target] = torch.rand(512, generator=g) * 0.05
        model.head.bias[target] = -0.5 * float((acts @ model.head.weight[target]).min())
    column = torch.rand(512, generator=g) ** 3 * 0.5  # heavy-tailed |c|: the root lies past the first kinks
    weight, bias = model.head.weight.detach(), model.head.bias.detach()
    numerical = alpha_crit(acts, weight, bias, column, target, "numerical")
    analytic = alpha_crit(acts, weight, bias, column, target, "analytic")
    assert torch.isfinite(numerical).all() and (numerical > 0).all()
    assert (numerical - analytic).abs().max() > 1e-3  # clamping matters here: not the trivial case
    reference = numerical.clone()
    reference[0] = numerical[0] * 1.05  # a reference 5% off: the bracket must widen to find the root
    reference[2] = math.inf
    empirical = empirical_alpha_crit(model, column, images, target, reference, rel_tol=1e-4)
    assert torch.allclose(empirical[:2], numerical[:2], rtol=5e-4)
    assert math.isinf(float(empirical[2]))
    with pytest.raises(ValueError, match="reference"):
        empirical_alpha_crit(model, column, images, target, reference[:2])
    with pytest.raises(ValueError, match="images"):
        empirical_alpha_crit(model, column, images[0], target, reference)
