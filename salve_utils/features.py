"""From latents to features: class means, dominant and shared features, planted-part recovery.

Notation: ``Z`` (N, d) the SAE latents of N samples, ``μ_k`` the mean latent
vector of class k, ``μ_k,l`` its l-th entry. The paper's linear SAE has signed
latents, so features are ranked by ``|μ_k,l|``.

>>> import torch
>>> z = torch.tensor([[3.0, 0.1], [1.0, 0.1], [0.0, -2.0]]); labels = torch.tensor([0, 0, 1])
>>> mu = class_mean_latents(z, labels)
>>> dominant_features(mu, top=1)["feature"].tolist()
[0, 1]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment

from .data import class_index
from .sae import SparseAutoencoder

if TYPE_CHECKING:
    from .activations import Activations

__all__ = [
    "part_assignment",
    "part_suppression",
    "shared_part_answer",
    "dominant_sharing",
    "class_mean_latents",
    "dominant_features",
    "part_correlations",
    "part_recovery",
    "shared_features",
]


def _check_mu(mu: torch.Tensor) -> torch.Tensor:
    if not isinstance(mu, torch.Tensor) or mu.ndim != 2:
        raise ValueError(f"mu must be a (K classes, d latents) tensor, got {getattr(mu, 'shape', type(mu))}")
    return mu


def _check_names(names: Sequence[str] | None, count: int, arg: str) -> list | None:
    if names is not None and len(names) != count:
        raise ValueError(f"{arg} must name all {count} classes, got {len(names)} names")
    return None if names is None else list(names)


def class_mean_latents(z: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Class-mean latents ``μ_k = 1/|n: y_n = k| Σ_{n: y_n = k} Z_n``, shape (K, d).

    Classes without samples get a row of NaN.

    Examples
    --------
    >>> class_mean_latents(torch.tensor([[1.0], [3.0], [5.0]]), torch.tensor([0, 0, 1]))
    tensor([[2.],
            [5.]])
    """
    if not isinstance(z, torch.Tensor) or z.ndim != 2:
        raise ValueError(f"z must be a (N, d) tensor, got {getattr(z, 'shape', type(z))}")
    labels = torch.as_tensor(labels)
    if labels.shape != (z.shape[0],) or labels.is_floating_point():
        raise ValueError(f"labels must be integer (N,) with N={z.shape[0]}, got {labels.dtype} {tuple(labels.shape)}")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, num_classes={num_classes})")
    labels = labels.long().to(z.device)
    sums = torch.zeros(num_classes, z.shape[1], dtype=torch.float64, device=z.device).index_add_(0, labels, z.double())
    counts = torch.bincount(labels, minlength=num_classes).double()
    return (sums / counts[:, None]).to(z.dtype)


def dominant_features(mu: torch.Tensor, top: int = 3, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """The ``top`` features of every class ranked by ``|μ_k,l|``; rank 1 is ``l*_k = argmax_l |μ_k,l|``.

    Parameters
    ----------
    mu : (K, d) class-mean latents
    top : features per class
    classes : optional class names for the ``class`` column (else the class index)

    Returns
    -------
    DataFrame with columns ``class, rank, feature, mu, abs_mu`` (``mu`` keeps its sign).

    Examples
    --------
    >>> dominant_features(torch.tensor([[0.5, -2.0, 1.0]]), top=2)[["rank", "feature", "mu"]].values.tolist()
    [[1.0, 1.0, -2.0], [2.0, 2.0, 1.0]]
    """
    mu = _check_mu(mu).detach().cpu()
    names = _check_names(classes, mu.shape[0], "classes")
    if not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive int, got {top!r}")
    values, index = mu.abs().topk(min(top, mu.shape[1]), dim=1)
    rows = []
    for k in range(mu.shape[0]):
        for rank, (l, v) in enumerate(zip(index[k].tolist(), values[k].tolist()), start=1):
            rows.append({"class": names[k] if names else k, "rank": rank, "feature": l,
                         "mu": float(mu[k, l]), "abs_mu": v})
    return pd.DataFrame(rows, columns=["class", "rank", "feature", "mu", "abs_mu"])


def _class_index(c: int | str, names: list | None, count: int) -> int:
    if isinstance(c, str) and names is None:
        raise ValueError(f"classes: {c!r} is a name, but no class_names were given")
    return class_index(names if names is not None else list(range(count)), c)


def shared_features(mu: torch.Tensor, classes: Sequence[int | str], class_names: Sequence[str] | None = None,
                    exclude_own_top: bool = True, top: int = 5) -> pd.DataFrame:
    """Features strong in *all* the given classes: the paper's "Tower" shared by church and gas pump.

    Each class's ``|μ_k|`` is normalised by its own largest entry, and a feature's
    score is the smallest of these over the given classes G::

        score_l = min_{k in G} |μ_k,l| / max_l' |μ_k,l'|

    With ``exclude_own_top``, each given class's own dominant feature ``l*_k`` is
    left out, so that the result is a feature the classes *share* rather than
    one class's identity.

    Parameters
    ----------
    mu : (K, d) class-mean latents
    classes : the classes G, as indices or names (names need ``class_names``)
    class_names : names of all K classes
    exclude_own_top : drop each given class's top feature
    top : rows to return

    Returns
    -------
    DataFrame with ``rank, feature, score`` and one ``mu_<class>`` column (signed μ) per given class.

    Examples
    --------
    >>> mu = torch.tensor([[5.0, 0.0, 3.0], [0.0, 4.0, 2.0]])
    >>> shared_features(mu, ["church", "pump"], ["church", "pump"], top=1)["feature"].tolist()
    [2]
    """
    mu = _check_mu(mu).detach().cpu().double()
    names = _check_names(class_names, mu.shape[0], "class_names")
    if len(classes) == 0:
        raise ValueError("classes must name at least one class")
    if not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive int, got {top!r}")
    idx = [_class_index(c, names, mu.shape[0]) for c in classes]
    strength = mu[idx].abs()
    score = (strength / strength.amax(1, keepdim=True)).amin(0)
    if exclude_own_top:
        score[strength.argmax(1)] = -torch.inf
    order = [l for l in score.argsort(descending=True).tolist() if score[l] > -torch.inf][:top]
    rows = []
    for rank, l in enumerate(order, start=1):
        row = {"rank": rank, "feature": l, "score": float(score[l])}
        row.update({f"mu_{names[k] if names else k}": float(mu[k, l]) for k in idx})
        rows.append(row)
    columns = ["rank", "feature", "score"] + [f"mu_{names[k] if names else k}" for k in idx]
    return pd.DataFrame(rows, columns=columns)


def dominant_sharing(mu: torch.Tensor, classes: Sequence[str] | None = None,
                     threshold: float = 0.5) -> pd.DataFrame:
    """How many other classes load on each class's dominant feature.

    With the normalised loading ``ρ_{j,l} = |μ_{j,l}| / max_l' |μ_{j,l'}|``, class
    ``j`` *loads on* feature ``l`` when ``ρ_{j,l} ≥ threshold``. For every class
    ``k`` with dominant feature ``l*_k = argmax_l |μ_{k,l}|`` this counts the other
    classes that load on ``l*_k`` (a feature with a count above 0 is shared, like
    the paper's Tower).

    Returns
    -------
    DataFrame with one row per class: ``class, feature, n_sharing`` (other classes
    loading on its dominant feature) and ``sharing`` (their names, ``;``-joined).

    Examples
    --------
    >>> mu = torch.tensor([[5.0, 0.0, 3.0], [0.0, 4.0, 2.0], [0.0, 0.1, 6.0]])
    >>> dominant_sharing(mu, ["a", "b", "c"])[["class", "feature", "n_sharing"]].values.tolist()
    [['a', 0, 0], ['b', 1, 0], ['c', 2, 2]]
    """
    mu = _check_mu(mu).detach().cpu().double()
    names = _check_names(classes, mu.shape[0], "classes") or [str(k) for k in range(mu.shape[0])]
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    strength = mu.abs()
    rho = strength / strength.amax(1, keepdim=True).clamp_min(1e-12)
    top = strength.argmax(1)
    rows = []
    for k, l in enumerate(top.tolist()):
        others = [j for j in range(mu.shape[0]) if j != k and rho[j, l] >= threshold]
        rows.append({"class": names[k], "feature": l, "n_sharing": len(others),
                     "sharing": ";".join(names[j] for j in others)})
    return pd.DataFrame(rows)


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
    if not isinstance(z, torch.Tensor) or z.ndim != 2:
        raise ValueError(f"z must be a (N, d) tensor, got {getattr(z, 'shape', type(z))}")
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


def part_suppression(acts: "Activations", sae: SparseAutoencoder, assignment: pd.DataFrame,
                     class_parts: dict[str, Sequence[str]], strength: float) -> pd.DataFrame:
    """Suppress each planted part's latent at normalised ``strength``; per class, the accuracy change.

    The known answer: suppressing the latent of part ``p`` should hurt the classes
    made with ``p`` (``carries``) and spare the others. ``after_lo, after_hi`` is the
    bootstrap 95% interval over the class's validation images
    (:func:`~salve_utils.stats.accuracy_interval`).

    Returns
    -------
    DataFrame ``part, feature, class, carries, strength, before, after, after_lo, after_hi, change``,
    sorted by part and class.
    """
    from .editing import accuracy_change, feature_curves
    from .stats import accuracy_interval

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
