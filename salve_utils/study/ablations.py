r"""Why the edit does what it does: the paper's edit with one design choice changed at a time.

Notation as in :mod:`salve_utils.method.editing`: head :math:`\mathrm{logits} = A W^\top + b`; a class ``k``'s feature
``l`` enters Eq. 1 only through the ratios :math:`r_j = |c_j| / \max_i |c_i|` (``c = D[:, l]``) at
the normalised strength ``s``:

.. math::

    \text{every row (the paper):}\quad w'_{ij} &= w_{ij}\,\max(0,\ 1 - s\,r_j) \qquad \text{for every class row $i$} \\
    \text{own row:}\quad w'_{kj} &= w_{kj}\,\max(0,\ 1 - s\,r_j) \qquad \text{row $k$ only, the others unchanged}

Because every factor depends only on :math:`|c_j|`, the paper's edit moves *every* logit. Split
the logit of class i into the part the feature carries and the rest:

.. math::

    \mathrm{logit}_i(s) = U_i - s\,V_i + b_i, \qquad U_i = \sum_j a_j\, w_{ij}, \qquad V_i = \sum_j a_j\, w_{ij}\, r_j
    \qquad \text{(before any clamp)}

so all logits shrink toward their biases together (common-mode shrinkage) and a class can
only lose to the others if its own logit falls faster than theirs — or if its bias is low.
A :class:`Variant` names one change (which rows, the biases, which autoencoder, which
feature); :func:`variant_curves` sweeps it exactly on cached activations, and
:func:`score_variant` judges it with the report's own rules (:mod:`salve_utils.study.claims`).
The edit atlas and composition of edits live in :mod:`salve_utils.study.atlas`.

>>> import torch
>>> W, b = torch.tensor([[1.0, 1.0], [2.0, 0.0]]), torch.zeros(2)
>>> a, y = torch.tensor([[1.0, 1.0], [2.0, 0.0]]), torch.tensor([0, 1])
>>> suppression_accuracies(a, y, W, b, torch.tensor([[1.0, 0.0]]), [0.0, 1.0], rows="target", target=1)[0]
array([[1., 1.],
       [1., 0.]])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import torch

from . import claims
from .nulls import _check_strengths, _is_top, class_accuracies, feature_ratios, permuted_ratios
from ..method.sae import SparseAutoencoder
from .verdicts import Thresholds

if TYPE_CHECKING:
    from ..method.activations import Activations

__all__ = ["RESCUE_SHARE", "ROWS", "Variant", "best_single_change", "design_grid", "dominant_by_attribution", "logit_anatomy", "logit_attribution", "logit_paths",
           "rescued", "retrained", "score_variant", "suppression_accuracies", "variant_curves", "variant_nulls"]

ROWS = ("all", "target")
RESCUE_SHARE = 0.8  # the question asked of every variant: does it rescue at least this share of the classes?


# =========================================================================== exact accuracies of an edited head


def suppression_accuracies(acts: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                           ratios: torch.Tensor, strengths: Sequence[float] | np.ndarray, rows: str = "all",
                           target: int | None = None) -> np.ndarray:
    """Per-class accuracy (D, S, K) of the suppressed head, for D ratio vectors and S strengths, exactly.

    ``rows="all"`` is the paper's edit (every row, :func:`salve_utils.study.nulls.class_accuracies`);
    ``rows="target"`` edits row ``target`` only: ``logit_t(s) = Σ_j a_j w_tj max(0, 1 - s r_j) + b_t``,
    one product ``(A ∘ w_t) F(s)ᵀ`` for the whole grid, every other logit unchanged.

    Parameters
    ----------
    acts : (N, M) activations
    labels : (N,) class indices
    weight, bias : the head ``W`` (K, M) and ``b`` (K,)
    ratios : (D, M) or (M,) ratio vectors ``r >= 0``
    strengths : strictly increasing normalised strengths ``s >= 0``
    rows : ``"all"`` or ``"target"``
    target : the edited row for ``rows="target"``
    """
    if rows not in ROWS:
        raise ValueError(f"rows must be one of {ROWS}, got {rows!r}")
    if rows == "all":
        return class_accuracies(acts, labels, weight, bias, ratios, strengths)
    num_classes = weight.shape[0]
    if not isinstance(target, int) or not 0 <= target < num_classes:
        raise ValueError(f"rows='target' needs target, a class index in [0, {num_classes}), got {target!r}")
    s = torch.as_tensor(_check_strengths(strengths), dtype=acts.dtype)
    r_all = torch.as_tensor(ratios, dtype=acts.dtype)
    r_all = r_all[None] if r_all.ndim == 1 else r_all
    if r_all.ndim != 2 or r_all.shape[1] != weight.shape[1] or not torch.isfinite(r_all).all() or (r_all < 0).any():
        raise ValueError(f"ratios must be finite, >= 0 and of shape (D, {weight.shape[1]}), got {tuple(r_all.shape)}")
    weight, bias, labels = weight.detach().to(acts), bias.detach().to(acts), torch.as_tensor(labels).long()
    base = acts @ weight.T + bias
    contrib = acts * weight[target]  # (N, M): a_nj w_tj
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    out = np.empty((len(r_all), len(s), num_classes))
    for d, r in enumerate(r_all):
        own = contrib @ (1 - s[:, None] * r[None, :]).clamp_min(0).T + bias[target]  # (N, S)
        hits = torch.zeros(len(s), num_classes, dtype=torch.float64)
        for i in range(len(s)):
            logits = base.clone()
            logits[:, target] = own[:, i]
            hits[i].index_add_(0, labels, _is_top(logits, labels).to(torch.float64))
        out[d] = (hits / counts).numpy()
    return out


# =========================================================================== the variants


def logit_attribution(mu: torch.Tensor, weight: torch.Tensor, sae: SparseAutoencoder) -> torch.Tensor:
    """``A_kl = μ_kl · (W_k · D_l)``: what latent ``l`` adds, on average, to class k's logit on class k's inputs.

    The decoder writes ``â = D z + d₀``, so latent l contributes ``z_l (W D_l)`` to the logits;
    averaged over class k's inputs, its share of logit k is ``μ_kl W_k · D_l``.

    >>> sae = SparseAutoencoder(2, 2)
    >>> with torch.no_grad(): _ = sae.decoder.weight.copy_(torch.eye(2))
    >>> logit_attribution(torch.tensor([[1.0, 3.0]]), torch.tensor([[2.0, -1.0]]), sae)
    tensor([[ 2., -3.]])
    """
    d = sae.decoder.weight.detach().to(weight)  # (M, d)
    if mu.shape[1] != d.shape[1] or weight.shape[1] != d.shape[0] or mu.shape[0] != weight.shape[0]:
        raise ValueError(f"need mu (K, d), weight (K, M) and an SAE (M -> d); got {tuple(mu.shape)}, "
                         f"{tuple(weight.shape)}, SAE {d.shape[0]} -> {d.shape[1]}")
    return mu.to(weight) * (weight @ d)


def dominant_by_attribution(mu: torch.Tensor, weight: torch.Tensor, sae: SparseAutoencoder,
                            classes: Sequence[str]) -> dict[str, int]:
    """Per class, the latent that adds the most to its own logit: ``argmax_l A_kl`` (see :func:`logit_attribution`)."""
    best = logit_attribution(mu, weight, sae).argmax(1).tolist()
    return dict(zip(classes, (int(l) for l in best)))


@dataclass(frozen=True)
class Variant:
    """The paper's edit with one design choice changed.

    Parameters
    ----------
    name : the label in tables and figures
    change : what differs from the paper, in words
    sae : the autoencoder whose decoder columns define the features
    dominant : class name -> the latent edited for that class
    rows : ``"all"`` (Eq. 1 as written) or ``"target"`` (the class's own row only)
    centre_bias : replace every head bias by their mean (separates bias from feature)
    strength_max : the largest normalised strength of its sweep
    """

    name: str
    change: str
    sae: SparseAutoencoder = field(repr=False)
    dominant: dict[str, int] = field(repr=False)
    rows: str = "all"
    centre_bias: bool = False
    strength_max: float = 8.0

    def __post_init__(self) -> None:
        if self.rows not in ROWS:
            raise ValueError(f"{self.name}: rows must be one of {ROWS}, got {self.rows!r}")
        if not np.isfinite(self.strength_max) or self.strength_max <= 0:
            raise ValueError(f"{self.name}: strength_max must be a finite number > 0, got {self.strength_max!r}")

    def head(self, acts: "Activations") -> tuple[torch.Tensor, torch.Tensor]:
        """The head the edit starts from: ``(W, b)``, or ``(W, mean(b) 1)`` with a centred bias."""
        bias = acts.bias.detach()
        return acts.weight.detach(), torch.full_like(bias, float(bias.mean())) if self.centre_bias else bias

    def ratios(self, cls: str) -> torch.Tensor:
        """The ratio vector of the class's edited feature."""
        return feature_ratios(self.sae.decoder_column(int(self.dominant[cls])).detach())


def variant_curves(acts: "Activations", variant: Variant, strengths: Sequence[float] | np.ndarray,
                   classes: Sequence[str] | None = None, split: str = "val") -> pd.DataFrame:
    """Suppression curves of a variant, in the control chapter's ``suppression_curves`` format.

    One row per edited class (``feature_role = "dominant:<class>"``), strength and measured
    class: ``variant, feature_role, feature, direction, strength, class, accuracy, n``.
    """
    x, labels = acts.split(split)
    weight, bias = variant.head(acts)
    s = _check_strengths(strengths)
    counts = np.bincount(labels.numpy(), minlength=len(acts.classes))
    frames = []
    for cls in classes if classes is not None else acts.classes:
        k = acts.class_index(cls)
        acc = suppression_accuracies(x, labels, weight, bias, variant.ratios(cls), s, variant.rows, k)[0]
        frames.append(pd.DataFrame({
            "variant": variant.name, "feature_role": f"dominant:{cls}", "feature": int(variant.dominant[cls]),
            "direction": "suppress", "strength": np.repeat(s, len(acts.classes)),
            "class": np.tile(np.asarray(acts.classes, dtype=object), len(s)), "accuracy": acc.reshape(-1),
            "n": np.tile(counts, len(s))}))
    return pd.concat(frames, ignore_index=True)


def variant_nulls(acts: "Activations", variant: Variant, curves: pd.DataFrame, th: Thresholds,
                  n_draws: int = 20, seed: int = 0, classes: Sequence[str] | None = None,
                  split: str = "val") -> pd.DataFrame:
    """The permuted-:math:`|c|` and uniform nulls of a variant at each class's operating point and at the fixed strength.

    The same edit (same rows, same head) with the feature's ratios permuted across dimensions
    (:func:`salve_utils.study.nulls.permuted_ratios`, ``n_draws`` draws), and with every ratio 1 (the
    uniform direction: the edited rows only rescaled), in the null table's columns
    (:data:`salve_utils.study.nulls.NULL_COLUMNS`), so that :func:`score_variant` judges it with the
    report's rules.
    """
    x, labels = acts.split(split)
    weight, bias = variant.head(acts)
    ops = claims.operating_table(claims.Measured({"suppression_curves": curves}), th)
    ops = ops if classes is None else ops[ops["class"].isin(classes)]
    counts = np.bincount(labels.numpy(), minlength=len(acts.classes))
    rows = []
    for cls, reached, strength in ops[["class", "reached", "strength"]].itertuples(index=False):
        k = acts.class_index(cls)
        s = np.unique([th.fixed_strength] + ([strength] if reached else []))
        draws = torch.cat([permuted_ratios(variant.ratios(cls), n_draws, (seed, k)), torch.ones(1, x.shape[1])])
        acc = suppression_accuracies(x, labels, weight, bias, draws, s, variant.rows, k)  # (D + 1, S, K)
        others = np.delete(acc, k, axis=-1)
        for d in range(n_draws + 1):
            for i, si in enumerate(s):
                rows.append({"feature_role": f"dominant:{cls}", "target": cls, "direction": "suppress",
                             "null": "permuted" if d < n_draws else "uniform", "draw": d if d < n_draws else 0,
                             "strength": float(si),
                             "target_accuracy": float(acc[d, i, k]), "target_n": int(counts[k]),
                             "others_mean": float(np.nanmean(others[d, i])),
                             "others_worst": float(np.nanmin(others[d, i]))})
    return pd.DataFrame(rows)


# =========================================================================== scoring by the report's rules


def rescued(curves: pd.DataFrame, th: Thresholds) -> pd.DataFrame:
    """Per class: does suppression reach ``target_accuracy`` while the worst other class loses ≤ ``tolerance``?

    At the first swept strength where the class reaches the target (its operating point):
    ``worst_loss = max_{i ≠ k} (acc_i(0) - acc_i(s*))`` and ``mean_loss`` the mean over i ≠ k.
    Returns ``class, reached, strength, target_accuracy, mean_loss, worst_loss, worst_class, rescued``.
    """
    ops = claims.operating_table(claims.Measured({"suppression_curves": curves}), th)
    rows = []
    for op in ops.to_dict("records"):
        cls = op["class"]
        row = {"class": cls, "reached": bool(op["reached"]), "strength": op["strength"],
               "target_accuracy": op["accuracy"], "mean_loss": np.nan, "worst_loss": np.nan, "worst_class": "",
               "rescued": False}
        if op["reached"]:
            sub = curves[curves["feature_role"] == f"dominant:{cls}"]
            before = sub[sub["strength"] == sub["strength"].min()].set_index("class")["accuracy"].drop(cls)
            after = sub[sub["strength"] == op["strength"]].set_index("class")["accuracy"].loc[before.index]
            loss = before - after
            row.update(mean_loss=float(loss.mean()), worst_loss=float(loss.max()), worst_class=str(loss.idxmax()),
                       rescued=bool(loss.max() <= th.tolerance))
        rows.append(row)
    return pd.DataFrame(rows)


def score_variant(curves: pd.DataFrame, nulls: pd.DataFrame | None, th: Thresholds) -> dict[str, Any]:
    """A variant's row of the ablation table: the suppress and specific verdicts and the rescue count.

    The verdicts are :func:`salve_utils.study.claims.judge_suppress` and
    :func:`~salve_utils.study.claims.judge_specific` on the variant's own curves and nulls, so a
    variant is judged by exactly the rules that judge the paper's edit. ``rescued`` counts the
    classes that reach the target *and* keep the worst other class within ``tolerance``.
    """
    m = claims.Measured({"suppression_curves": curves, **({"null_edits": nulls} if nulls is not None else {})})
    sup, spec = claims.judge_suppress(m, th), claims.judge_specific(m, th)
    res = rescued(curves, th)
    before = curves[(curves["strength"] == curves["strength"].min())
                    & (curves["feature_role"] == "dominant:" + curves["class"])]
    base = float(np.average(before["accuracy"], weights=before["n"]))
    return {"classes": len(res), "reached": int(res["reached"].sum()), "rescued": int(res["rescued"].sum()),
            "median_strength": float(res.loc[res["reached"], "strength"].median()) if res["reached"].any() else np.nan,
            "median_worst_loss": float(res.loc[res["reached"], "worst_loss"].median()) if res["reached"].any()
            else np.nan, "unedited_accuracy": base,
            "suppress": sup.kind, "suppress_reason": sup.reason, "specific": spec.kind, "specific_reason": spec.reason}


def best_single_change(table: pd.DataFrame, share: float = RESCUE_SHARE) -> dict[str, Any]:
    """Which variants of a table of :func:`score_variant` rows rescue ``⌈share · classes⌉`` classes or more.

    Returns ``goal`` (that count), ``winners`` (the variants that meet it, in table order) and
    the ``best`` variant by classes rescued, then reached, with its ``rescued`` and ``reached``.

    >>> t = pd.DataFrame({"variant": ["paper", "own row"], "classes": [10, 10], "reached": [3, 2], "rescued": [0, 2]})
    >>> best_single_change(t)
    {'goal': 8, 'winners': [], 'best': 'own row', 'rescued': 2, 'reached': 2}
    """
    goal = int(np.ceil(share * int(table["classes"].max())))
    best = table.sort_values(["rescued", "reached"], ascending=False, kind="stable").iloc[0]
    return {"goal": goal, "winners": list(table.loc[table["rescued"] >= goal, "variant"]), "best": str(best["variant"]),
            "rescued": int(best["rescued"]), "reached": int(best["reached"])}


# =========================================================================== logit anatomy


def logit_anatomy(acts: "Activations", sae: SparseAutoencoder, dominant: dict[str, int],
                  split: str = "val") -> pd.DataFrame:
    r"""Per class k and its dominant feature, on class k's own inputs (before any clamp):

    .. math::

        U_k &= \operatorname{mean}_n \sum_j a_{nj}\, w_{kj} \quad \text{(the logit less its bias)}, \qquad
        V_k = \operatorname{mean}_n \sum_j a_{nj}\, w_{kj}\, r_j \\
        \mathrm{share}_k &= V_k / U_k \quad \text{(the part of $U_k$ one unit of strength removes)}

    and ``others_share``: the same ratio for the other classes' logits on class k's inputs
    (their mean). ``share_k ≈ others_share`` means the edit shrinks every logit alike (common
    mode); only ``share_k > others_share`` makes class k lose ground. ``bias_rank`` 1 is the
    lowest bias. ``best_other_logit`` is the mean over class k's inputs of :math:`\max_{i \neq k} \mathrm{logit}_i`:
    editing row k alone takes logit k down to its bias ``b_k`` at most, so where
    ``b_k > best_other_logit`` the own-row edit cannot take the typical image away from k.
    """
    x, labels = acts.split(split)
    weight, bias = acts.weight.detach().to(x), acts.bias.detach().to(x)
    order = bias.argsort()
    rank = torch.empty_like(order)
    rank[order] = torch.arange(1, len(bias) + 1)
    rows = []
    for cls, feature in dominant.items():
        k = acts.class_index(cls)
        r = feature_ratios(sae.decoder_column(int(feature)).detach()).to(x)
        a = x[labels == k]
        u, v = (a @ weight.T).mean(0), (a @ (weight * r).T).mean(0)  # (K,) each
        others = [i for i in range(len(bias)) if i != k]
        rival = (a @ weight[others].T + bias[others]).amax(1).mean()  # the best other class, image by image
        rows.append({"class": cls, "feature": int(feature), "bias": float(bias[k]), "bias_rank": int(rank[k]),
                     "logit_less_bias": float(u[k]), "share": float(v[k] / u[k]),
                     "others_share": float((v[others] / u[others]).mean()),
                     "others_logit_less_bias": float(u[others].mean()), "others_bias": float(bias[others].mean()),
                     "best_other_logit": float(rival)})
    return pd.DataFrame(rows)


def logit_paths(acts: "Activations", ratios: torch.Tensor, target: str, strengths: Sequence[float] | np.ndarray,
                split: str = "val") -> pd.DataFrame:
    """Mean logit of every class on the target's inputs as the suppression grows (the common-mode picture).

    ``logit_i(s) = mean_{n: y_n = t} Σ_j a_nj w_ij max(0, 1 - s r_j) + b_i`` for every class i.
    Returns ``strength, class, mean_logit, bias``.
    """
    x, labels = acts.split(split)
    s = torch.as_tensor(_check_strengths(strengths), dtype=x.dtype)
    a = x[labels == acts.class_index(target)].mean(0)  # the mean is linear: the mean logit from the mean input
    contrib = acts.weight.detach().to(x) * a  # (K, M)
    factors = (1 - s[:, None] * ratios.to(x)[None, :]).clamp_min(0)  # (S, M)
    logits = factors @ contrib.T + acts.bias.detach().to(x)  # (S, K)
    return pd.DataFrame({"strength": np.repeat(s.numpy(), len(acts.classes)),
                         "class": np.tile(np.asarray(acts.classes, dtype=object), len(s)),
                         "mean_logit": logits.reshape(-1).numpy(),
                         "bias": np.tile(acts.bias.detach().numpy(), len(s))})


# =========================================================================== autoencoders trained otherwise


def retrained(acts: "Activations", d_latent: int, l1: float, options: dict[str, Any],
              **changes: Any) -> tuple[SparseAutoencoder, dict[str, int], dict[str, float]]:
    """An autoencoder trained like the chapter's own (``options``: its recorded training options) with
    ``changes`` (e.g. ``activation="relu"`` or ``unit_norm_decoder=True``), its dominant feature per
    class (``argmax_l |μ_kl|`` on the training activations, as Discover does) and its validation metrics.
    """
    from ..method.features import class_mean_latents
    from ..method.sae import sae_metrics, train_sae

    opts = {**{k: v for k, v in options.items() if k != "device"}, **changes, "progress": False}
    sae, _ = train_sae(acts.train, d_latent, l1, **opts)
    with torch.no_grad():
        mu = class_mean_latents(sae.encode(acts.train), acts.train_labels, len(acts.classes))
    dominant = dict(zip(acts.classes, (int(l) for l in mu.abs().argmax(1).tolist())))
    metrics = sae_metrics(sae, acts.val)
    return sae, dominant, {"fvu": float(metrics["fvu"]), "l0": float(metrics["l0"])}


def design_grid(acts: "Activations", options: dict[str, Any], latents: Sequence[int], l1s: Sequence[float],
                strengths: Sequence[float] | np.ndarray, th: Thresholds,
                classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Latent size and λ₁ judged by reconstruction *and* by the edit: one row per ``(d, λ₁)``.

    Columns ``d_latent, l1, fvu, l0`` (validation) and, from the paper's edit on each SAE's
    dominant features, ``reached`` and ``rescued`` (:func:`rescued`) out of ``classes``.
    """
    rows = []
    for d in latents:
        for l1 in l1s:
            sae, dominant, metrics = retrained(acts, int(d), float(l1), options)
            curves = variant_curves(acts, Variant(f"d={d}, λ₁={l1:g}", "", sae, dominant), strengths, classes)
            res = rescued(curves, th)
            rows.append({"d_latent": int(d), "l1": float(l1), **metrics, "classes": len(res),
                         "reached": int(res["reached"].sum()), "rescued": int(res["rescued"].sum())})
    return pd.DataFrame(rows)
