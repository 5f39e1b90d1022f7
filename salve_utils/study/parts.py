"""The known answers: do the planted parts come back as latents, and does suppressing one do what it should?

On the planted-parts data every class is built from known parts, so a latent can be
scored against the truth: its correlation with each part (:func:`part_correlations`),
one-to-one (:func:`part_assignment`), within each class (:func:`within_class_correlations`)
against what a pure class detector would score (:func:`class_indicator_null`), and by
what its suppression does to the classes that carry the part (:func:`part_suppression`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment

from ..method.editing import accuracy_change, feature_curves
from ..method.sae import SparseAutoencoder
from ..method.validation import check_array
from .stats import accuracy_interval

if TYPE_CHECKING:
    from ..method.activations import Activations

__all__ = ["class_indicator_null", "part_assignment", "part_correlations", "part_recovery", "part_suppression",
           "shared_part_answer", "within_class_correlations"]


def part_correlations(z: torch.Tensor, part_labels: torch.Tensor, parts: Sequence[str]) -> pd.DataFrame:
    """Pearson ``r(t_p, z_l)`` between every planted part's presence ``t_p`` (0/1) and every latent ``z_l``.

    Returns a DataFrame with one row per part and one column per latent. Latents
    that never vary count as ``r = 0``; parts that never (or always) occur get NaN.

    Examples
    --------
    >>> t = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]]).bool()
    >>> part_correlations(torch.stack([t[:, 0].float(), t[:, 1].float()], 1), t, ["a", "b"]).round(2).values.tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    z = check_array(z, "z", ("N", "d"))
    part_labels = torch.as_tensor(part_labels)
    if part_labels.ndim != 2 or part_labels.shape[0] != z.shape[0]:
        raise ValueError(f"part_labels must be (N={z.shape[0]}, P), got {tuple(part_labels.shape)}")
    if len(parts) != part_labels.shape[1]:
        raise ValueError(f"parts must name all {part_labels.shape[1]} columns of part_labels, got {len(parts)}")
    zc = z.detach().cpu().double()
    zc = zc - zc.mean(0)
    t = part_labels.cpu().double()
    t = t - t.mean(0)
    cov = t.T @ zc
    denom = t.norm(dim=0)[:, None] * zc.norm(dim=0)[None, :]
    r = torch.where(zc.norm(dim=0)[None, :] > 0, cov / denom, torch.zeros_like(cov))
    r[t.norm(dim=0) == 0] = torch.nan
    return pd.DataFrame(r.numpy(), index=list(parts), columns=list(range(z.shape[1])))


def part_recovery(z: torch.Tensor, part_labels: torch.Tensor, parts: Sequence[str]) -> pd.DataFrame:
    """For data with planted parts: the latent that best tracks each part, and how well.

    For part p with presence indicator ``t_p(n)`` (0/1), returns
    ``argmax_l |r(t_p, z_l)|`` and that Pearson ``r`` (signed; see
    :func:`part_correlations`). Parts that never (or always) occur have no
    correlation: ``feature = -1``, ``corr = NaN``.

    Returns
    -------
    DataFrame ``part, feature, corr, abs_corr``.

    Examples
    --------
    >>> t = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]]).bool()
    >>> z = torch.stack([t[:, 1].float() * 2, torch.tensor([0.1, 0.3, 0.2, 0.0]), -t[:, 0].float()], 1)
    >>> part_recovery(z, t, ["tower", "ring"])["feature"].tolist()
    [2, 0]
    """
    r = part_correlations(z, part_labels, parts)
    rows = []
    for name, row in r.iterrows():
        if row.isna().all():
            rows.append({"part": name, "feature": -1, "corr": float("nan")})
            continue
        best = int(row.abs().idxmax())
        rows.append({"part": name, "feature": best, "corr": float(row[best])})
    out = pd.DataFrame(rows, columns=["part", "feature", "corr"])
    out["abs_corr"] = out["corr"].abs()
    return out


def part_assignment(corr: pd.DataFrame) -> pd.DataFrame:
    """Match planted parts to latents one-to-one, maximising the summed ``|r|`` (Hungarian assignment).

    :func:`part_recovery` lets two parts claim the same latent; here each latent
    serves at most one part, so a part is recovered only by a latent *of its own*.

    Parameters
    ----------
    corr : parts x latents Pearson ``r`` (:func:`part_correlations`)

    Returns
    -------
    DataFrame ``part, feature, corr, abs_corr`` (``feature = -1`` for a part left without a latent).

    Examples
    --------
    >>> corr = pd.DataFrame([[0.9, 0.8], [0.7, 0.1]], index=["a", "b"])
    >>> part_assignment(corr)["feature"].tolist()
    [1, 0]
    """
    r = corr.fillna(0.0).to_numpy(dtype=float)
    rows_, cols = linear_sum_assignment(-np.abs(r))
    out = pd.DataFrame({"part": list(corr.index), "feature": -1, "corr": np.nan})
    for i, j in zip(rows_, cols):
        out.loc[i, ["feature", "corr"]] = [int(corr.columns[j]), float(r[i, j])]
    out["feature"] = out["feature"].astype(int)
    out["abs_corr"] = out["corr"].abs()
    return out


def within_class_correlations(z: torch.Tensor, part_labels: torch.Tensor, labels: torch.Tensor,
                               parts: Sequence[str]) -> pd.DataFrame:
    """Pearson ``r`` between parts and latents *within class*: both with every class's mean removed first.

    A latent that only detects a class correlates with the parts that class always carries, and
    :func:`part_correlations` counts that as recovery. Within class, only the part's own
    variation is left (a part present on some images of a class and not on others, such as a
    distractor): a pure class detector scores 0, a latent that fires on the part scores high.

    Examples
    --------
    >>> y = torch.tensor([0, 0, 0, 1, 1, 1]); t = torch.tensor([[1], [1], [1], [0], [0], [1]]).bool()
    >>> z = torch.stack([(y == 0).float(), t[:, 0].float()], 1)  # a class detector, and the part itself
    >>> part_correlations(z, t, ["tower"]).round(2).values.tolist()
    [[0.71, 1.0]]
    >>> within_class_correlations(z, t, y, ["tower"]).round(2).values.tolist()
    [[0.0, 1.0]]
    """
    labels = torch.as_tensor(labels).long()
    if labels.ndim != 1 or len(labels) != z.shape[0]:
        raise ValueError(f"labels must be (N={z.shape[0]},), got {tuple(labels.shape)}")
    onehot = torch.nn.functional.one_hot(labels).double()
    count = onehot.sum(0).clamp_min(1)

    def centred(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().cpu().double()
        return x - onehot @ (onehot.T @ x / count[:, None])

    return part_correlations(centred(z), centred(torch.as_tensor(part_labels)), parts)


def class_indicator_null(part_labels: torch.Tensor, labels: torch.Tensor, parts: Sequence[str],
                         classes: Sequence[str]) -> pd.DataFrame:
    """What a pure class detector scores: per part, ``max_c |r(t_p, [y = c])|`` and that class.

    A latent that tracks a part should beat every class indicator's correlation with it;
    one that does not may be a class detector in disguise.
    """
    labels = torch.as_tensor(labels).long()
    indicators = torch.nn.functional.one_hot(labels, len(classes)).float()
    r = part_correlations(indicators, part_labels, parts).abs()
    r.columns = list(classes)
    best = r.fillna(-1.0).idxmax(axis=1)
    return pd.DataFrame({"part": list(parts), "best_class": best.tolist(),
                         "null_abs_corr": [float(r.loc[p, c]) for p, c in zip(parts, best)]})


def part_suppression(acts: "Activations", sae: SparseAutoencoder, assignment: pd.DataFrame,
                     class_parts: dict[str, Sequence[str]], strength: float) -> pd.DataFrame:
    """Suppress each planted part's latent at normalised ``strength``; per class, the accuracy change.

    The known answer: suppressing the latent of part ``p`` should hurt the classes
    made with ``p`` (``carries``) and spare the others. ``after_lo, after_hi`` is the
    bootstrap 95% interval over the class's validation images
    (:func:`~salve_utils.study.stats.accuracy_interval`).

    Returns
    -------
    DataFrame ``part, feature, class, carries, strength, before, after, after_lo, after_hi, change``,
    sorted by part and class.
    """

    if not strength > 0:
        raise ValueError(f"strength must be positive, got {strength!r}")
    roles = {f"part:{row.part}": int(row.feature) for row in assignment.itertuples() if row.feature >= 0}
    if not roles:
        raise ValueError("assignment gives no part a latent (every feature is -1): nothing to suppress")
    curves = feature_curves(acts, sae, roles, [0.0, float(strength)], "suppress")
    change = accuracy_change(curves, at_strength=float(strength))
    change["part"] = change["feature_role"].str.removeprefix("part:")
    change["feature"] = change["feature_role"].map(roles)
    change["carries"] = [p in class_parts.get(c, ()) for p, c in zip(change["part"], change["class"])]
    n = curves.drop_duplicates("class").set_index("class")["n"]
    change["after_lo"], change["after_hi"] = accuracy_interval(change["after"].to_numpy(),
                                                               change["class"].map(n).to_numpy())
    columns = ["part", "feature", "class", "carries", "strength", "before", "after", "after_lo", "after_hi", "change"]
    return change[columns].sort_values(["part", "class"]).reset_index(drop=True)


def shared_part_answer(recovery: pd.DataFrame, effect: pd.DataFrame, part: str, threshold: float = 0.5,
                       tolerance: float = 0.05) -> dict:
    """The second known answer: is the shared ``part`` found, and does suppressing it hit exactly its carriers?

    * ``shared_found``: the part's one-to-one latent (:func:`part_assignment`) has ``|r| ≥ threshold``;
    * ``hits_carriers``: every class made with the part loses more than ``tolerance``
      (``change < -tolerance``) when that latent is suppressed (:func:`part_suppression`);
    * ``spares_others``: every other class loses at most ``tolerance`` (``change ≥ -tolerance``).

    Returns
    -------
    dict with ``shared_part, feature, abs_corr, shared_found, hits_carriers, spares_others``,
    ``carriers`` / ``others`` (class -> change) and ``threshold, tolerance``.

    Examples
    --------
    >>> rec = pd.DataFrame({"part": ["t"], "feature": [3], "corr": [-0.8], "abs_corr": [0.8]})
    >>> eff = pd.DataFrame({"part": "t", "class": ["a", "b", "c"], "carries": [True, True, False],
    ...                     "change": [-0.9, -0.2, -0.01]})
    >>> answer = shared_part_answer(rec, eff, "t")
    >>> answer["shared_found"], answer["hits_carriers"], answer["spares_others"]
    (True, True, True)
    """
    if not 0 < threshold <= 1 or not 0 <= tolerance < 1:
        raise ValueError(f"need 0 < threshold <= 1 and 0 <= tolerance < 1, got {threshold!r}, {tolerance!r}")
    matched = recovery.set_index("part")
    if part not in matched.index:
        raise ValueError(f"part {part!r} is not in the recovery table (parts: {list(matched.index)})")
    row = matched.loc[part]
    own = effect[effect["part"] == part]
    carriers = own[own["carries"]].set_index("class")["change"]
    others = own[~own["carries"]].set_index("class")["change"]
    found = bool(row["feature"] >= 0 and row["abs_corr"] >= threshold)
    return {"shared_part": part, "feature": int(row["feature"]),
            "abs_corr": None if pd.isna(row["abs_corr"]) else float(row["abs_corr"]),
            "shared_found": found,
            "hits_carriers": bool(len(carriers) and (carriers < -tolerance).all()),
            "spares_others": bool(len(own) and (others >= -tolerance).all()),
            "carriers": {str(k): float(v) for k, v in carriers.items()},
            "others": {str(k): float(v) for k, v in others.items()},
            "threshold": float(threshold), "tolerance": float(tolerance)}
