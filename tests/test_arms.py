"""The three arms of the edit (paper, oracle, sparse), against cases whose outcome is known in closed form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from salve_utils.study import ablations, arms, planted_head
from salve_utils.method.activations import Activations
from salve_utils.study.verdicts import Thresholds

K = 4
BIAS = torch.tensor([0.0, 0.05, 0.10, 0.15])


def _one_hot_head(n: int = 40, seed: int = 0) -> tuple[Activations, torch.Tensor]:
    """Class k's images are ``a = (1 + ε) e_k``; the head is ``W = I`` with rising biases.

    ``ε = 0.25`` on every training image (so the class means are exact) and ``ε ∈ [0, 0.5]`` at random on
    the validation images (so accuracies fall gradually with the strength).
    """
    g = torch.Generator().manual_seed(seed)

    def split(random: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        labels = torch.arange(K).repeat_interleave(n)
        eps = torch.rand(len(labels), generator=g) * 0.5 if random else torch.full((len(labels),), 0.25)
        return torch.nn.functional.one_hot(labels, K).float() * (1 + eps)[:, None], labels, eps

    train, train_labels, _ = split(random=False)
    val, val_labels, eps = split(random=True)
    acts = Activations(train, train_labels, val, val_labels, [f"c{k}" for k in range(K)], torch.eye(K), BIAS.clone())
    return acts, eps


def _closed_form(eps: torch.Tensor, labels: torch.Tensor, k: int, s: float) -> np.ndarray:
    """Per-class accuracy of Eq. 1 with the mean-difference direction of class k, by hand.

    That direction is ``m e_k − m/(K−1) (1 − e_k)``, so ``r = 1`` on dimension k and ``1/(K−1)``
    elsewhere. On an image of class i only dimension i is non-zero, so its logits are
    ``f_i (1 + ε) + b_i`` for class i and ``b_j`` for every other j, with ``f_k = (1 − s)_+``
    and ``f_i = (1 − s/(K−1))_+``: it is right exactly when ``f_i (1 + ε) > max_{j≠i} b_j − b_i``.
    """
    acc = []
    for i in range(K):
        f = max(0.0, 1 - s) if i == k else max(0.0, 1 - s / (K - 1))
        gap = float(np.delete(BIAS.numpy(), i).max() - BIAS[i])
        acc.append(float(((f * (1 + eps[labels == i])) > gap).float().mean()))
    return np.array(acc)


def test_the_oracle_direction_of_a_one_hot_head_is_known_in_closed_form() -> None:
    acts, eps = _one_hot_head()
    bank = arms.mean_difference(acts)
    r = bank.columns.abs() / bank.columns.abs().amax(0)
    np.testing.assert_allclose(r.numpy(), np.where(np.eye(K, dtype=bool), 1.0, 1 / (K - 1)), atol=1e-6)
    variant = ablations.Variant("oracle", "mean difference", bank, bank.dominant(acts.classes))
    s = np.linspace(0, 4, 41)
    curves = ablations.variant_curves(acts, variant, s)
    for k, cls in enumerate(acts.classes):
        got = curves[curves["feature_role"] == f"dominant:{cls}"]["accuracy"].to_numpy().reshape(len(s), K)
        want = np.stack([_closed_form(eps, acts.val_labels, k, x) for x in s])
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_eq1_with_the_right_direction_rescues_every_class_but_the_one_with_the_largest_bias() -> None:
    # by the closed form: class k falls once (1 - s)(1 + ε) drops below its bias gap, while the others keep
    # (1 - s/3)(1 + ε) > 0 > their gaps for s < 3; the class with the largest bias wins every tie at zero
    # evidence, so no edit of the rows' columns can take its images (the bias floor)
    acts, _ = _one_hot_head()
    bank = arms.mean_difference(acts)
    th = Thresholds()
    table, per_class, _ = arms.judge_arms(
        acts, {"oracle": ablations.Variant("oracle", "mean difference", bank, bank.dominant(acts.classes))},
        np.linspace(0, 2.5, 26), th, null_draws=5)
    got = per_class.set_index("class")
    assert got["rescued"].tolist() == [True, True, True, False]
    assert not got.loc["c3", "reached"]
    assert int(table.loc[0, "rescued"]) == 3 and table.loc[0, "rescued_hi"] > 0.75


def test_the_probe_direction_points_at_the_class_dimension() -> None:
    acts, _ = _one_hot_head()
    bank = arms.probe(acts, steps=50)
    assert bank.columns.abs().argmax(0).tolist() == list(range(K))
    assert bank.kind == "one-vs-rest probe"


def test_diagnosis_follows_the_declared_rule() -> None:
    t = pd.DataFrame({"arm": ["paper", "oracle", "sparse"], "classes": [10, 10, 10], "rescued": [8, 2, 0]})
    assert arms.diagnose(t)["finding"] == "paper works"
    t["rescued"] = [0, 7, 0]
    d = arms.diagnose(t)
    assert d["finding"] == "edit" and d["goal"] == 8 and d["works"] == {"paper": False, "oracle": False,
                                                                       "sparse": False}


def test_relative_l0_counts_what_an_absolute_tolerance_cannot() -> None:
    torch.manual_seed(0)
    dense = torch.randn(500, 16)  # a linear code: never zero, always "active" at any absolute tolerance
    sparse = dense * (torch.rand(500, 16) < 0.1)  # each latent on for one sample in ten
    assert arms.relative_l0(dense)["l0"] > 12  # a Gaussian code: |z| > 0.1 q99 on ~80% of the samples
    assert arms.relative_l0(sparse)["l0"] < 2.5
    assert arms.relative_l0(dense * 1e-3)["l0"] == pytest.approx(arms.relative_l0(dense)["l0"])  # scale-free
    with pytest.raises(ValueError, match="tau"):
        arms.relative_l0(dense, tau=0.0)


def test_a_sparsity_path_extends_until_l1_bites() -> None:
    acts, _ = _one_hot_head(n=30)
    path = arms.sparsity_path(acts, 8, [0.001], {"epochs": 5, "seed": 0, "batch_size": 32}, max_extra=3)
    assert path["l1"].iloc[0] == 0.001 and not path["extended"].iloc[0]
    assert len(path) <= 4 and (path["bites"].iloc[-1] or len(path) == 4)
    assert np.all(np.diff(path["l1"]) > 0)


def test_column_share_and_evidence_overlap_separate_a_one_hot_head_from_a_dense_one() -> None:
    acts, _ = _one_hot_head()
    assert arms.evidence_overlap(acts)["overlap"].max() < 1e-9  # one-hot: every class's evidence on its own dimension
    g = torch.Generator().manual_seed(0)
    a, labels = torch.rand(80, 32, generator=g), torch.arange(K).repeat_interleave(20)
    dense = Activations(a, labels, a, labels, acts.classes, torch.randn(K, 32, generator=g), BIAS.clone())
    assert arms.evidence_overlap(dense)["overlap"].median() > 0.2  # a random head: evidence on shared dimensions
    assert arms.column_share(torch.ones(10)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="all zeros"):
        arms.DirectionBank(torch.zeros(3, 2), "nothing")


def test_known_answers_by_construction_regime_a_the_right_direction_must_win_regime_b_it_cannot() -> None:
    # regime A: each class one part on dimensions of its own, a fitted head; Eq. 1 with the label-informed
    # direction must take every class to <= 5% while every other class loses <= 5 points. Regime B: the planted
    # images' classes (AND of two parts, most parts shared): the same direction cannot part the classes.
    th = Thresholds()
    found = {}
    for regime in ("unique", "shared"):
        acts, parts = planted_head.planted_activations(regime, n_per_class=60)
        assert (acts.logits("val").argmax(1) == acts.val_labels).float().mean() > 0.9  # linearly readable
        bank = arms.mean_difference(acts)
        table, per_class, _ = arms.judge_arms(
            acts, {"oracle": ablations.Variant("oracle", "", bank, bank.dominant(acts.classes))},
            np.linspace(0, 8, 33), th, null_draws=5)
        found[regime] = (table.iloc[0], float(arms.evidence_overlap(acts)["overlap"].median()))
    (a, overlap_a), (b, overlap_b) = found["unique"], found["shared"]
    assert a["rescued"] == a["classes"] == 10, "regime A: Eq. 1 with the right direction must rescue every class"
    assert a["suppress"] == "holds" and a["specific"] == "holds"
    assert b["rescued"] <= 3, "regime B: shared parts leave Eq. 1 unable to part most classes"
    assert overlap_a < 0.01 < 0.1 < overlap_b


def test_clopper_pearson_bounds() -> None:
    assert arms.clopper_pearson(10, 10)[1] == 1.0 and arms.clopper_pearson(0, 10)[0] == 0.0
    lo, hi = arms.clopper_pearson(5, 10)
    assert lo < 0.5 < hi
    with pytest.raises(ValueError):
        arms.clopper_pearson(11, 10)
