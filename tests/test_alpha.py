"""Tests of salve_utils.method.alpha: the linear, exact and decision-flip α_crit, the empirical grid + bisection
on a real edited network, and the per-class tables."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch

from salve_utils.method.alpha import (
    CLASS_COLUMNS,
    alpha_crit,
    alpha_crit_agreement,
    alpha_crit_classes,
    alpha_crit_spearman,
    analytic_ratio,
    empirical_alpha_crit,
    suppress_strength,
)
from salve_utils.method.activations import Activations
from salve_utils.method.editing import feature_curves, operating_points

CLASSES = [f"class{i}" for i in range(10)]


def _slow_target_logit(a, w_row, b_i, c, alpha):
    """y_i(α) = Σ_j W_ij a_j max(0, 1 - α|c_j|) + b_i, one sample, plain Python."""
    return sum(float(w_row[j]) * float(a[j]) * max(0.0, 1.0 - alpha * abs(float(c[j]))) for j in range(len(a))) + b_i


def _grid_logits(a, weight, bias, c, grid):
    """Exact clamped logits on a dense α grid for one sample, (G, K) — the obvious formula, vectorised over α."""
    factors = (1 - grid[:, None] * c.abs()[None, :]).clamp_min(0)  # (G, M)
    return (factors * a[None, :]) @ weight.T + bias


# --------------------------------------------------------------------------- exact values on cached activations


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


# --------------------------------------------------------------------------- a 2-class head solved by hand
#
# a(x) = the two pixels of a 1x1x2 "image"; W = [[2, 1], [0.5, 0.5]], b = [-0.5, 0], c = [0.5, 0.25]
# (kinks at α = 2 and 4; normalised strength s = α · 0.5). Target class 0.
#   x_A = (1, 0): y0 = 1.5 - α, y1 = 0.5 - 0.25α  -> logit zero at 1.5 (before the kink: analytic exact),
#                                                   flip where 1.5 - α = 0.5 - 0.25α, α = 4/3
#   x_B = (0.1, 0.1): y0 = -0.2 < y1 = 0.1           -> both 0 (misclassified before any edit)
#   x_C = (1, 2): y0 = 3.5 - 1.5α up to α = 2 (0.5 there), then 1.5 - 0.5α -> logit zero at 3;
#                 analytic 3.5 / 1.5 = 7/3 (the clamp at α = 2 makes it an underestimate);
#                 y1 = 1.5 - 0.5α up to α = 2 -> margin 2 - α, flip at α = 2

W2 = torch.tensor([[2.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
B2 = torch.tensor([-0.5, 0.0], dtype=torch.float64)
C2 = torch.tensor([0.5, 0.25], dtype=torch.float64)
X2 = torch.tensor([[1.0, 0.0], [0.1, 0.1], [1.0, 2.0]], dtype=torch.float64)
ZERO2, FLIP2, ANALYTIC2 = [1.5, 0.0, 3.0], [4 / 3, 0.0, 2.0], [1.5, 0.0, 7 / 3]


class PixelNet(torch.nn.Module):
    """A 'network' whose head input is the image itself, ``a(x) = x.flatten(1)``: answers computable by hand."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.head = torch.nn.Linear(weight.shape[1], weight.shape[0]).double()
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_the_exact_values_of_the_hand_solved_head():
    assert alpha_crit(X2, W2, B2, C2, 0, "numerical").tolist() == pytest.approx(ZERO2, abs=1e-12)
    assert alpha_crit(X2, W2, B2, C2, 0, "flip").tolist() == pytest.approx(FLIP2, abs=1e-12)
    assert alpha_crit(X2, W2, B2, C2, 0, "analytic").tolist() == pytest.approx(ANALYTIC2, abs=1e-12)


def test_flip_is_invariant_to_a_constant_shift_of_the_logits_and_logit_zero_is_not():
    shifted = B2 + 3.0  # every logit + 3: the decision is the same at every α
    assert alpha_crit(X2, W2, shifted, C2, 0, "flip").tolist() == pytest.approx(FLIP2, abs=1e-12)
    zero = alpha_crit(X2, W2, shifted, C2, 0, "numerical")
    assert math.isinf(float(zero[0])) and math.isinf(float(zero[2]))  # y0 ends at b0 = 2.5 > 0: never zero


@pytest.mark.filterwarnings("ignore:images range")  # PixelNet reads its "images" as activations, not pixels
@pytest.mark.parametrize("n_grid", [5, 33])
def test_empirical_finds_the_hand_answers_by_grid_and_bisection(n_grid):
    found = empirical_alpha_crit(PixelNet(W2, B2), C2, X2[:, None, None, :], 0, alpha_max=4.0, n_grid=n_grid,
                                 rel_tol=1e-6)
    assert found["zero"].tolist() == pytest.approx(ZERO2, rel=1e-6)
    assert found["flip"].tolist() == pytest.approx(FLIP2, rel=1e-6)


@pytest.mark.filterwarnings("ignore:images range")  # PixelNet reads its "images" as activations, not pixels
def test_empirical_reports_no_threshold_beyond_the_grid():
    found = empirical_alpha_crit(PixelNet(W2, B2), C2, X2[:, None, None, :], 0, alpha_max=2.5)
    assert found["zero"][0] == pytest.approx(1.5, rel=1e-4) and found["zero"][1] == 0
    assert math.isinf(float(found["zero"][2]))  # the root, 3, lies beyond α = 2.5
    assert found["flip"].tolist() == pytest.approx(FLIP2, rel=1e-4)


def test_empirical_finds_the_first_root_of_a_dip_that_the_grid_brackets():
    # y0(α) = 4·max(0,1-α) - 3·max(0,1-0.5α) + 0.3·max(0,1-5α) + 0.2: zero at 0.48, dips, back to 0.2 from α = 2
    w = torch.tensor([[4.0, -3.0, 0.3], [0.0, 0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([0.2, -10.0], dtype=torch.float64)
    c = torch.tensor([1.0, 0.5, 5.0], dtype=torch.float64)
    found = empirical_alpha_crit(PixelNet(w, b), c, torch.ones(1, 1, 1, 3, dtype=torch.float64), 0, alpha_max=3.0)
    assert float(found["zero"][0]) == pytest.approx(0.48, rel=1e-4)
    assert math.isinf(float(found["flip"][0]))  # class 1 sits at -10: the decision never changes


@pytest.mark.filterwarnings("ignore:images range")  # PixelNet reads its "images" as activations, not pixels
def test_empirical_validates():
    net, images = PixelNet(W2, B2), X2[:, None, None, :]
    with pytest.raises(ValueError, match="alpha_max"):
        empirical_alpha_crit(net, C2, images, 0, alpha_max=math.inf)
    with pytest.raises(ValueError, match="n_grid"):
        empirical_alpha_crit(net, C2, images, 0, alpha_max=1.0, n_grid=1)
    with pytest.raises(ValueError, match="images"):
        empirical_alpha_crit(net, C2, X2, 0, alpha_max=1.0)
    with pytest.raises(ValueError, match="target"):
        empirical_alpha_crit(net, C2, images, 2, alpha_max=1.0)


def test_empirical_agrees_with_the_exact_values_on_a_resnet(tiny_model):
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
    flip = alpha_crit(acts, weight, bias, column, target, "flip")
    analytic = alpha_crit(acts, weight, bias, column, target, "analytic")
    assert torch.isfinite(numerical).all() and (numerical > 0).all()
    assert (numerical - analytic).abs().max() > 1e-3  # clamping matters here: not the trivial case
    top = 2 * float(numerical.max())
    found = empirical_alpha_crit(model, column, images, target, alpha_max=top, n_grid=33)
    assert torch.allclose(found["zero"], numerical, rtol=5e-4)
    assert torch.allclose(found["flip"][torch.isfinite(flip)], flip[torch.isfinite(flip)], rtol=5e-4, atol=1e-6)


# --------------------------------------------------------------------------- tables


def _table(zero, flip, analytic=None, empirical=None, empirical_flip=None, cls="a", scale=2.0):
    n = len(zero)
    nan = [math.nan] * n
    return pd.DataFrame({"class": cls, "feature": 7, "sample": range(n), "analytic": analytic or zero,
                         "numerical": zero, "flip": flip, "empirical": empirical or nan, "max_abs_c": scale,
                         "empirical_flip": empirical_flip or nan})


def test_alpha_crit_classes_counts_medians_and_ranks():
    inf = math.inf
    table = pd.concat([_table([0.0, 1.0, 3.0, inf], [0.0, 0.5, 1.0, 2.0], cls="a"),
                       _table([inf, inf], [0.1, 0.3], cls="b"),
                       _table([inf], [inf], cls="c")], ignore_index=True)
    out = alpha_crit_classes(table, {"a": 4.0, "b": 1.0}).set_index("class")
    assert list(alpha_crit_classes(table).columns) == CLASS_COLUMNS
    assert out.loc["a", ["n", "zero_finite", "zero_infinite", "flip_finite", "flip_infinite"]].tolist() == [4, 3, 1, 4, 0]
    assert out.loc["a", "zero_median"] == pytest.approx(2 * 2.0)  # median of (1, 3) x scale 2; the 0 is left out
    assert out.loc["a", "flip_median"] == pytest.approx(2.0)  # median of (0.5, 1, 2) x 2
    assert math.isnan(out.loc["b", "zero_median"]) and out.loc["b", "flip_median"] == pytest.approx(0.4)
    assert out.loc["b", "flip_rank"] == 1 and out.loc["a", "flip_rank"] == 2 and pd.isna(out.loc["c", "flip_rank"])
    assert math.isnan(out.loc["c", "suppress_strength"]) and out.loc["a", "suppress_strength"] == 4.0
    assert list(out.index) == ["b", "a", "c"]  # fragile first, classes without a flip last


def test_alpha_crit_spearman_uses_only_classes_where_both_are_finite():
    classes = pd.DataFrame({"zero_median": [1.0, np.nan, 3.0, 2.0, 5.0], "flip_median": [1.0, 2.0, 3.0, 4.0, 5.0],
                            "suppress_strength": [2.0, 4.0, 6.0, 8.0, np.nan]})
    out = alpha_crit_spearman(classes)
    assert out["n_zero"] == 3 and out["spearman_zero"] == pytest.approx(0.5)  # ranks (1,3,2) vs (1,2,3)
    assert out["n_flip"] == 4 and out["spearman_flip"] == pytest.approx(1.0)
    assert math.isnan(alpha_crit_spearman(classes, min_classes=5)["spearman_flip"])


def test_agreement_compares_empirical_and_exact_for_zero_and_flip():
    inf, nan = math.inf, math.nan
    table = _table([0.0, 1.0, 3.0, inf, 5.0], [0.0, 0.5, 1.0, 2.0, 0.8],
                   analytic=[0.0, 1.0, 2.0, inf, 5.0],
                   empirical=[0.0, 1.0001, nan, inf, inf], empirical_flip=[0.0, 0.5, nan, 2.002, inf])
    agree = alpha_crit_agreement(table, strength_max=8.0)  # grid top 8 / scale 2 = α 4: the root at 5 is beyond it
    assert agree["n_finite"] == 3 and agree["frac_exact"] == pytest.approx(2 / 3)
    assert agree["frac_analytic_below"] == pytest.approx(1 / 3) and agree["frac_analytic_above"] == 0
    assert agree["n_empirical"] == 4 and agree["n_compared"] == 1 and agree["n_mismatch"] == 0
    assert agree["median_rel_diff"] == pytest.approx(1e-4)
    assert agree["n_empirical_flip"] == 4 and agree["n_compared_flip"] == 2
    assert agree["max_rel_diff_flip"] == pytest.approx(1e-3)
    assert agree["n_mismatch_flip"] == 1  # flip 0.8 lies on the grid, but the scan found none


def test_analytic_ratio_is_exact_before_the_first_kink():
    table = _table(alpha_crit(X2, W2, B2, C2, 0, "numerical").tolist(), FLIP2,
                   analytic=alpha_crit(X2, W2, B2, C2, 0, "analytic").tolist(), scale=0.5)
    ratio = analytic_ratio(table)
    assert ratio["sample"].tolist() == [0, 2]  # x_B starts at zero: not in the ratio
    assert ratio["strength"].tolist() == pytest.approx([0.75, 1.5])
    assert ratio["ratio"].tolist() == pytest.approx([1.0, 7 / 9])
    assert ratio["exact"].tolist() == [True, False] and ratio["before_kink"].tolist() == [True, False]


class _Column:
    """The one thing the functions need of an autoencoder: a decoder column per latent."""

    def __init__(self, column: torch.Tensor) -> None:
        self.column = column

    def decoder_column(self, feature: int) -> torch.Tensor:
        return self.column


def test_suppress_strength_is_the_hand_answer_and_the_operating_point_of_the_curves():
    # class 0's images: 2 of 3 right before the edit, 1 after α = 4/3, none after α = 2 (strength 1.0)
    x = torch.cat([X2, torch.tensor([[0.0, 1.0]], dtype=torch.float64)])
    labels = torch.tensor([0, 0, 0, 1])
    acts = Activations(x, labels, x, labels, ["c0", "c1"], W2, B2, {})
    grid = [0.0, 0.5, 0.9, 1.1, 2.0]
    assert suppress_strength(acts, _Column(C2), {"c0": 0}, grid) == {"c0": 1.1}
    assert suppress_strength(acts, _Column(C2), {"c0": 0}, grid, target_accuracy=0.4) == {"c0": 0.9}
    assert math.isnan(suppress_strength(acts, _Column(C2), {"c0": 0}, grid[:3])["c0"])
    points = operating_points(feature_curves(acts, _Column(C2), {"dominant:c0": 0}, grid), 0.05)
    assert points.set_index("class").loc["c0", "strength"] == 1.1
    with pytest.raises(ValueError, match="increasing"):
        suppress_strength(acts, _Column(C2), {"c0": 0}, [1.0, 0.5])
