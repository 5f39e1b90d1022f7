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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment

from .sae import SparseAutoencoder
from .validation import check_array, check_classes_present, check_int, check_labels, check_names, resolve_class

if TYPE_CHECKING:
    from .activations import Activations

__all__ = [
    "part_assignment",
    "part_suppression",
    "within_class_correlations",
    "class_indicator_null",
    "shared_part_answer",
    "dominant_sharing",
    "class_mean_latents",
    "dominant_features",
    "part_correlations",
    "part_recovery",
    "shared_features",
    "standardised_means",
    "latent_effects",
    "latent_pair_null",
    "effect_rank",
    "tower_search",
    "TowerSearch",
]


def _check_mu(mu: torch.Tensor) -> torch.Tensor:
    """Class-mean latents: a finite, non-empty (K, d) tensor."""
    return check_array(mu, "mu", ("K", "d"), fix="a class mean of NaN comes from a class without samples or "
                       "from NaN latents: recompute mu with class_mean_latents on finite latents")


def class_mean_latents(z: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Class-mean latents ``μ_k = 1/|n: y_n = k| Σ_{n: y_n = k} Z_n``, shape (K, d).

    Parameters
    ----------
    z : (N, d) latents; non-empty and finite (integers are converted to float)
    labels : (N,) integer class labels in ``[0, num_classes)``
    num_classes : K (default ``max(labels) + 1``)

    Raises
    ------
    InputTypeError
        ``z`` not a tensor, ``labels`` not integer
    ValueError
        wrong shapes, no sample or no latent, NaN or infinity in ``z``, a label out
        of range, or a class without samples (its mean would be NaN)

    Examples
    --------
    >>> class_mean_latents(torch.tensor([[1.0], [3.0], [5.0]]), torch.tensor([0, 0, 1]))
    tensor([[2.],
            [5.]])
    """
    z = check_array(z, "z", ("N", "d"))
    labels = check_labels(labels, "labels", z.shape[0])
    num_classes = int(labels.max()) + 1 if num_classes is None else check_int(num_classes, "num_classes", 1)
    labels = check_labels(labels, "labels", z.shape[0], num_classes).to(z.device)
    counts = check_classes_present(labels, "labels", num_classes).double()
    sums = torch.zeros(num_classes, z.shape[1], dtype=torch.float64, device=z.device).index_add_(0, labels, z.double())
    return (sums / counts[:, None]).to(z.dtype)


def dominant_features(mu: torch.Tensor, top: int = 3, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """The ``top`` features of every class ranked by ``|μ_k,l|``; rank 1 is ``l*_k = argmax_l |μ_k,l|``.

    Parameters
    ----------
    mu : (K, d) class-mean latents; non-empty and finite
    top : features per class, an int >= 1
    classes : optional class names for the ``class`` column (else the class index); all K of them

    Raises
    ------
    InputTypeError
        ``mu`` not a tensor, ``top`` not an int
    ValueError
        ``mu`` not 2-D, empty or with NaN / infinity, ``top`` < 1, ``classes`` of the wrong length

    Returns
    -------
    DataFrame with columns ``class, rank, feature, mu, abs_mu`` (``mu`` keeps its sign).

    Examples
    --------
    >>> dominant_features(torch.tensor([[0.5, -2.0, 1.0]]), top=2)[["rank", "feature", "mu"]].values.tolist()
    [[1.0, 1.0, -2.0], [2.0, 2.0, 1.0]]
    """
    mu = _check_mu(mu).detach().cpu()
    names = check_names(classes, mu.shape[0], "classes")
    top = check_int(top, "top", 1)
    values, index = mu.abs().topk(min(top, mu.shape[1]), dim=1)
    rows = []
    for k in range(mu.shape[0]):
        for rank, (l, v) in enumerate(zip(index[k].tolist(), values[k].tolist()), start=1):
            rows.append({"class": names[k] if names else k, "rank": rank, "feature": l,
                         "mu": float(mu[k, l]), "abs_mu": v})
    return pd.DataFrame(rows, columns=["class", "rank", "feature", "mu", "abs_mu"])


def shared_features(mu: torch.Tensor, classes: Sequence[int | str], class_names: Sequence[str] | None = None,
                    exclude_own_top: bool = True, top: int = 5, same_sign: bool = True) -> pd.DataFrame:
    r"""Features strong in *all* the given classes: the paper's "Tower" shared by church and gas pump.

    Each class's :math:`|\mu_k|` is normalised by its own largest entry, and a feature's
    score is the smallest of these over the given classes G:

    .. math::

        \mathrm{score}_l = \min_{k \in G} \frac{|\mu_{k,l}|}{\max_{l'} |\mu_{k,l'}|}

    With ``same_sign`` only features whose class means share one sign over G are
    candidates (a latent positive for one class and negative for the other is
    evidence *for* one and *against* the other, not a shared feature). With
    ``exclude_own_top``, each given class's own dominant feature :math:`l^*_k` is left
    out, so that the result is a feature the classes *share* rather than one
    class's identity. This ranking has no null: :func:`tower_search` adds one.

    Parameters
    ----------
    mu : (K, d) class-mean latents
    classes : the classes G, as indices or names (names need ``class_names``)
    class_names : names of all K classes
    exclude_own_top : drop each given class's top feature
    top : rows to return
    same_sign : keep only features with one sign of μ over G

    Returns
    -------
    DataFrame with ``rank, feature, score`` and one ``mu_<class>`` column (signed μ) per given class
    (fewer than ``top`` rows, possibly none, when fewer features qualify).

    Examples
    --------
    >>> mu = torch.tensor([[5.0, 0.0, 3.0, -4.0], [0.0, 4.0, 2.0, 3.5]])
    >>> shared_features(mu, ["church", "pump"], ["church", "pump"], top=1)["feature"].tolist()
    [2]
    >>> shared_features(mu, ["church", "pump"], ["church", "pump"], top=1, same_sign=False)["feature"].tolist()
    [3]
    """
    mu = _check_mu(mu).detach().cpu().double()
    names = check_names(class_names, mu.shape[0], "class_names")
    if len(classes) == 0:
        raise ValueError("classes must name at least one class")
    top = check_int(top, "top", 1)
    idx = [resolve_class(c, names, mu.shape[0]) for c in classes]
    strength = mu[idx].abs()
    score = (strength / strength.amax(1, keepdim=True)).amin(0)
    if same_sign:
        signs = torch.sign(mu[idx])
        score[~((signs == signs[0]).all(0) & (signs[0] != 0))] = -torch.inf
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


def standardised_means(z: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    r"""Class means against the typical class, in units of each latent's spread, shape (K, d):

    .. math::

        \tilde\mu_{k,l} = \frac{\mu_{k,l} - \operatorname{median}_{k'} \mu_{k',l}}{\sigma_l}

    with :math:`\sigma_l` the standard deviation of latent ``l`` over all N samples. Centring
    on the *median class* removes what every class shares (the autoencoder's bias:
    a latent large for every image is not shared by two classes in particular)
    without the artefact of centring on the overall mean, which would make a latent
    of one class look like a shared *absence* for all the others. The scaling puts
    latents on one scale, so that the strength of latent ``l1`` in one class can be
    compared with that of ``l2`` in another (the null of :func:`tower_search` does
    exactly that). A latent that never varies gets 0.

    Examples
    --------
    >>> z = torch.tensor([[0.0, 5.0], [0.0, 5.0], [1.0, 5.0], [1.0, 5.0], [2.0, 5.0], [2.0, 5.0]])
    >>> standardised_means(z, torch.tensor([0, 0, 1, 1, 2, 2])).round(decimals=3).tolist()
    [[-1.118, 0.0], [0.0, 0.0], [1.118, 0.0]]
    """
    zd = z.detach().double()
    mu = class_mean_latents(zd, labels, num_classes)
    sd = zd.std(0)
    centre = mu.nanquantile(0.5, dim=0)
    return torch.where(sd > 0, (mu - centre) / sd.clamp_min(1e-300), torch.zeros_like(mu))


def _derangements(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniform random permutations of ``range(size)`` without fixed points, shape (n, size)."""
    out = []
    while sum(len(o) for o in out) < n:
        perms = np.argsort(rng.random((2 * n + 8, size)), axis=1)
        out.append(perms[(perms != np.arange(size)).all(1)])
    return np.concatenate(out)[:n]


def _pair_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``min(|a|, |b|)`` where ``a`` and ``b`` have one (non-zero) sign, else 0 (elementwise)."""
    return np.where(np.sign(a) * np.sign(b) > 0, np.minimum(np.abs(a), np.abs(b)), 0.0)


def latent_pair_null(a: np.ndarray, b: np.ndarray, n_null: int = 2000, seed: int = 0) -> np.ndarray:
    """The best same-sign score when class a's latents are paired with *other* latents of class b.

    Each draw takes a uniform random derangement π of the latents (``π(l) ≠ l``)
    and returns ``T* = max_l s(a_l, b_π(l))`` with ``s(x, y) = min(|x|, |y|)`` if
    ``x`` and ``y`` have one sign, else 0 -- the statistic :func:`tower_search`
    maximises over true pairs ``(a_l, b_l)``. If the two classes shared no latent,
    which latent of b stands next to a given latent of a would not matter, and the
    true pairing would look like one of these draws.

    Examples
    --------
    >>> null = latent_pair_null(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]), n_null=500)
    >>> float(null.max()) <= 2.0  # a derangement never pairs 3 with 3
    True
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) < 2:
        raise ValueError(f"a and b must be 1-d of one length >= 2, got shapes {a.shape} and {b.shape}")
    if not isinstance(n_null, int) or n_null < 1:
        raise ValueError(f"n_null must be a positive int, got {n_null!r}")
    perms = _derangements(n_null, len(a), np.random.default_rng(seed))
    return _pair_scores(a[None, :], b[perms]).max(1)


@dataclass(frozen=True)
class TowerSearch:
    """The result of :func:`tower_search`.

    Attributes
    ----------
    table : one row per candidate latent: ``feature, mu_a, mu_b, same_sign, score, p_value, passes``
    feature : the best same-sign candidate (the best by score if no latent has one sign)
    score, same_sign, p_value, passes : that feature's row
    null_quantile : the ``level`` quantile of the null's best score
    null : the null draws (best score of each random pairing)
    level : the quantile level
    """

    table: pd.DataFrame
    feature: int
    score: float
    same_sign: bool
    p_value: float
    passes: bool
    null_quantile: float
    null: np.ndarray
    level: float


def tower_search(mu: torch.Tensor, pair: Sequence[int | str], class_names: Sequence[str] | None = None,
                 exclude: Sequence[int] = (), n_null: int = 2000, level: float = 0.95, seed: int = 0) -> TowerSearch:
    r"""Search a feature shared by two classes, and test it against random latent pairs.

    With ``μ`` the (preferably standardised, :func:`standardised_means`) class means
    of the pair (a, b), every latent l outside ``exclude`` gets:

    .. math::

        \mathrm{score}_l = \min(|\mu_{a,l}|,\ |\mu_{b,l}|), \qquad
        \mathrm{same\_sign}_l \iff \operatorname{sign}(\mu_{a,l}) = \operatorname{sign}(\mu_{b,l}) \neq 0

    and only same-sign latents are candidates (opposite signs are evidence for one
    class and against the other). The observed statistic is the best candidate's
    score, ``T = max_l score_l [same_sign_l]``. Its null (:func:`latent_pair_null`)
    is the same maximum over random derangements of the latents, pairing
    ``μ_a,l1`` with ``μ_b,l2`` (``l1 ≠ l2``): how strong a "shared" feature looks
    when nothing is shared. A latent's ``p_value = (1 + #{T* ≥ score_l}) / (1 + n_null)``
    is adjusted for the search over all latents (it is compared with the null of the
    *maximum*); it ``passes`` when it has one sign and its score exceeds the null's
    ``level`` quantile. Opposite-sign latents have no p-value (NaN).

    Parameters
    ----------
    mu : (K, d) class means
    pair : the two classes, as indices or names (names need ``class_names``)
    class_names : names of all K classes
    exclude : latents left out (each class's own dominant feature, as the method says)
    n_null, seed : null draws (at least 1000) and their seed
    level : quantile of the null that a candidate must exceed

    Returns
    -------
    :class:`TowerSearch`; its table is sorted by score (descending), then feature.

    Examples
    --------
    >>> mu = torch.zeros(2, 40); mu[:, :38] = torch.linspace(-0.5, 0.5, 38); mu[1, :38] = mu[1, :38].flip(0)
    >>> mu[:, 38] = torch.tensor([3.0, 2.5]); mu[:, 39] = torch.tensor([4.0, -4.0])
    >>> found = tower_search(mu, [0, 1])
    >>> found.feature, found.passes, round(found.score, 2)
    (38, True, 2.5)
    """
    mu = _check_mu(mu).detach().cpu().double()
    names = check_names(class_names, mu.shape[0], "class_names")
    if len(pair) != 2:
        raise ValueError(f"pair must name exactly two classes, got {list(pair)}")
    if not isinstance(n_null, int) or n_null < 1000:
        raise ValueError(f"n_null must be an int of at least 1000 draws, got {n_null!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    ia, ib = (resolve_class(c, names, mu.shape[0], "pair") for c in pair)
    keep = [l for l in range(mu.shape[1]) if l not in {int(e) for e in exclude}]
    if len(keep) < 5:  # L latents have only !L derangements (!4 = 9): too few for a null at 5%
        raise ValueError(f"need at least five latents outside exclude={list(exclude)}, got {len(keep)}")
    a, b = mu[ia, keep].numpy(), mu[ib, keep].numpy()
    null = latent_pair_null(a, b, n_null, seed)
    quantile = float(np.quantile(null, level))
    same = np.sign(a) * np.sign(b) > 0
    score = np.minimum(np.abs(a), np.abs(b))
    p_value = np.where(same, (1 + (null[None, :] >= score[:, None]).sum(1)) / (1 + n_null), np.nan)
    table = pd.DataFrame({"feature": keep, "mu_a": a, "mu_b": b, "same_sign": same, "score": score,
                          "p_value": p_value, "passes": same & (score > quantile)})
    table = table.sort_values(["score", "feature"], ascending=[False, True], ignore_index=True)
    best = table[table["same_sign"]].iloc[0] if same.any() else table.iloc[0]
    return TowerSearch(table=table, feature=int(best["feature"]), score=float(best["score"]),
                       same_sign=bool(best["same_sign"]), p_value=float(best["p_value"]),
                       passes=bool(best["passes"]), null_quantile=quantile, null=null, level=float(level))


def latent_effects(acts: "Activations", sae: SparseAutoencoder, strength: float, classes: Sequence[str],
                   direction: str = "suppress", level: float = 0.95) -> pd.DataFrame:
    """Edit *every* latent at one normalised strength; each followed class's accuracy change with its interval.

    For latent l and class k, ``change = acc_k(s) - acc_k(0)`` at normalised strength
    ``s = α · max_j |D_j,l|``. The interval is the bootstrap interval of the edited
    accuracy over the class's validation images
    (:func:`~salve_utils.study.stats.accuracy_interval`) shifted by the unedited accuracy,
    which is the same for every latent.

    Returns
    -------
    DataFrame ``feature, class, strength, before, after, n, change, change_lo, change_hi``,
    sorted by class, then feature.
    """
    from .editing import feature_curves
    from ..study.stats import accuracy_interval

    for c in classes:
        acts.class_index(c)  # unknown names fail here, listing the valid ones
    unedited = feature_curves(acts, sae, {"none": 0}, [0.0], direction).set_index("class")  # s = 0: no edit
    roles = {str(l): l for l in range(sae.d_latent)}
    edited = feature_curves(acts, sae, roles, [float(strength)], direction)
    out = edited[edited["class"].isin(list(classes))].rename(columns={"accuracy": "after"})
    out = out.assign(feature=out["feature"].astype(int), before=out["class"].map(unedited["accuracy"]))
    out["change"] = out["after"] - out["before"]
    lo, hi = accuracy_interval(out["after"].to_numpy(), out["n"].to_numpy(), level)
    out["change_lo"], out["change_hi"] = lo - out["before"], hi - out["before"]
    out = out.sort_values(["class", "feature"], ignore_index=True)
    return out[["feature", "class", "strength", "before", "after", "n", "change", "change_lo", "change_hi"]]


def effect_rank(effects: pd.DataFrame, feature: int) -> pd.DataFrame:
    """Where one latent's effect falls among every latent's effect, per class.

    ``rank = 1 + #{l: change_l < change_feature}`` (1: no latent lowers the class
    more) and ``quantile = #{l: change_l ≤ change_feature} / d`` (the share of
    latents that lower it as much or more), over the d latents of
    :func:`latent_effects`.

    Returns
    -------
    DataFrame ``class, change, rank, n_features, quantile`` in the order the classes first appear.

    Examples
    --------
    >>> eff = pd.DataFrame({"feature": [0, 1, 2, 0, 1, 2], "class": list("aaabbb"),
    ...                     "change": [-0.5, -0.1, 0.0, 0.0, 0.1, -0.2]})
    >>> effect_rank(eff, 0)[["class", "rank", "quantile"]].values.tolist()
    [['a', 1, 0.3333333333333333], ['b', 2, 0.6666666666666666]]
    """
    rows = []
    for cls, sub in effects.groupby("class", sort=False):
        own = sub.loc[sub["feature"] == feature, "change"]
        if len(own) != 1:
            raise ValueError(f"effects must hold exactly one row of feature {feature} for class {cls!r}")
        c = float(own.iloc[0])
        rows.append({"class": cls, "change": c, "rank": 1 + int((sub["change"] < c).sum()),
                     "n_features": len(sub), "quantile": float((sub["change"] <= c).mean())})
    return pd.DataFrame(rows, columns=["class", "change", "rank", "n_features", "quantile"])


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
    names = check_names(classes, mu.shape[0], "classes") or [str(k) for k in range(mu.shape[0])]
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
    from .editing import accuracy_change, feature_curves
    from ..study.stats import accuracy_interval

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
