"""Is there a Tower? Shared features tested against a null, and what one latent's edit does to every class.

The paper's "Tower" is a latent that two classes (church, gas pump) both rank among
their dominant features. :func:`tower_search` looks for the best such latent of a
class pair and asks whether it beats :func:`latent_pair_null`, the same statistic
when the pair's latents are paired at random; :func:`latent_effects` suppresses
latents one at a time on cached activations and :func:`effect_rank` says where a
class stands among everything one latent's edit does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch

from ..method.editing import feature_curves
from ..method.features import _check_mu
from ..method.sae import SparseAutoencoder
from ..method.validation import check_names, resolve_class
from .stats import accuracy_interval

if TYPE_CHECKING:
    from ..method.activations import Activations

__all__ = ["TowerSearch", "effect_rank", "latent_effects", "latent_pair_null", "tower_search"]


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
