"""Robustness over autoencoder seeds: retrain the SAE, match its features, compare what the edits do.

An SAE retrained from another initialisation may reorder, flip, split or merge its
latents, so a class's dominant feature of seed ``s`` (latent ``m``) is compared with
the reference's (latent ``l``) in three ways:

* ``cosine = |cos(D_ref[:, l], D_s[:, m])|`` -- the raw decoder direction (sign-free,
  because a linear SAE can learn ``-z`` with ``-D[:, l]``);
* ``abs_cosine = cos(|D_ref[:, l]|, |D_s[:, m]|)`` -- what the edit sees: Eq. 1 scales
  ``w_ij`` by ``max(0, 1 - α|c_j|)`` and uses nothing but ``|c|``. Two unrelated
  columns already have a sizeable ``abs_cosine`` (for Gaussian entries about 2/π),
  so it is read against the median over all pairs of latents (``abs_cosine_baseline``);
* ``function_cosine = cos(Δ_ref,l, Δ_s,m)`` with ``Δ_l[k] = acc_k(s*) - acc_k(0)``, the
  per-class accuracy change when latent ``l`` is suppressed at normalised strength
  ``s*`` -- the features compared by what they do.

The outcome that matters is per class: does suppressing the class's own dominant
feature bring it to ``≤ target_accuracy`` within the sweep (:func:`seed_outcomes`),
and do the seeds agree on it (:func:`outcome_agreement`)?

>>> d = torch.tensor([[1.0, 0.0], [0.0, -2.0]])
>>> decoder_cosines(d, -d).round().tolist()
[[-1.0, 0.0], [0.0, -1.0]]
>>> decoder_cosines(d, -d, absolute=True).round().tolist()
[[1.0, 0.0], [0.0, 1.0]]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment

from ..method.alpha import alpha_crit_table
from ..method.editing import accuracy_change, feature_curves, operating_points
from ..method.features import class_mean_latents, dominant_features
from ..common.runtime import track
from ..method.sae import SparseAutoencoder, train_sae

if TYPE_CHECKING:
    from ..method.activations import Activations

__all__ = [
    "alpha_medians",
    "curve_bands",
    "decoder_cosines",
    "function_vectors",
    "match_features",
    "outcome_agreement",
    "seed_outcomes",
    "seed_spread",
    "seed_study",
]


def _decoder_matrix(decoder: torch.Tensor | SparseAutoencoder, arg: str) -> torch.Tensor:
    if isinstance(decoder, SparseAutoencoder):
        decoder = decoder.decoder.weight
    if not isinstance(decoder, torch.Tensor) or decoder.ndim != 2:
        raise ValueError(f"{arg} must be an SAE or its (M, d) decoder weight, got {getattr(decoder, 'shape', decoder)}")
    return decoder.detach().cpu().double()


def decoder_cosines(decoder_a: torch.Tensor | SparseAutoencoder, decoder_b: torch.Tensor | SparseAutoencoder,
                    absolute: bool = False) -> torch.Tensor:
    """Cosines between every decoder column of ``a`` and of ``b``, shape ``(d_a, d_b)``.

    ``cos(c_a, c_b)`` (signed); with ``absolute``, ``cos(|c_a|, |c_b|)`` of the
    elementwise absolute columns -- the only part of a column the edit uses.
    """
    a, b = _decoder_matrix(decoder_a, "decoder_a"), _decoder_matrix(decoder_b, "decoder_b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"decoder_a and decoder_b must have the same M (rows), got {a.shape[0]} and {b.shape[0]}")
    if absolute:
        a, b = a.abs(), b.abs()
    return (a / a.norm(dim=0).clamp_min(1e-12)).T @ (b / b.norm(dim=0).clamp_min(1e-12))


def match_features(decoder_a: torch.Tensor | SparseAutoencoder, decoder_b: torch.Tensor | SparseAutoencoder,
                   absolute: bool = False) -> pd.DataFrame:
    """One-to-one matching of the latents of two SAEs by their decoder columns (Hungarian algorithm).

    Maximises ``Σ_l |cos(D_a[:, l], D_b[:, π(l)])|`` over matchings π
    (``scipy.optimize.linear_sum_assignment``); with ``absolute``, ``Σ_l cos(|D_a[:, l]|,
    |D_b[:, π(l)]|)`` (:func:`decoder_cosines`). The absolute value of the cosine is
    used because a linear SAE can learn a feature with either sign (``-z`` with
    ``-D[:, l]``); the returned ``cosine`` keeps the sign. With ``d_a != d_b`` only
    ``min(d_a, d_b)`` pairs are returned.

    Returns
    -------
    DataFrame ``feature_a, feature_b, cosine``, sorted by ``feature_a``.

    Examples
    --------
    >>> d = torch.randn(16, 4)
    >>> match_features(d, -d[:, [2, 0, 3, 1]])["feature_b"].tolist()
    [1, 3, 0, 2]
    """
    cos = decoder_cosines(decoder_a, decoder_b, absolute)
    rows, cols = linear_sum_assignment(-cos.abs().numpy())
    return pd.DataFrame({"feature_a": rows, "feature_b": cols, "cosine": cos.numpy()[rows, cols]})


def function_vectors(acts: "Activations", sae: SparseAutoencoder, features: dict[str, int],
                     strength: float) -> pd.DataFrame:
    """What each feature does: ``Δ_l[k] = acc_k(s) - acc_k(0)`` when latent ``l`` is suppressed at strength ``s``.

    Parameters
    ----------
    acts : cached activations (validation split)
    sae : the autoencoder whose decoder columns define the edits
    features : key -> latent, e.g. class name -> its dominant feature
    strength : normalised strength ``s > 0`` (:func:`~salve_utils.method.editing.feature_curves`)

    Returns
    -------
    DataFrame, one row per key of ``features`` and one column per class.
    """
    if not strength > 0:
        raise ValueError(f"strength must be positive, got {strength!r}")
    curves = feature_curves(acts, sae, {str(k): int(v) for k, v in features.items()}, [0.0, float(strength)])
    change = accuracy_change(curves, at_strength=float(strength))
    table = change.pivot(index="feature_role", columns="class", values="change")
    return table.loc[[str(k) for k in features], [c for c in acts.classes if c in table.columns]]


def _cosine(u: np.ndarray, v: np.ndarray) -> float:
    """``u·v / (|u| |v|)``; NaN when either vector is zero (a feature that changes nothing).

    The sums are exactly rounded (``math.fsum``), so the result does not depend on the order
    in which a BLAS kernel adds the terms: an orthogonal pair gives 0, not ±1e-18 that varies
    from machine load to machine load.
    """
    import math

    nu, nv = math.sqrt(math.fsum(u * u)), math.sqrt(math.fsum(v * v))
    return float(math.fsum(u * v) / (nu * nv)) if nu > 0 and nv > 0 else float("nan")


def seed_outcomes(curves: pd.DataFrame, target_accuracy: float = 0.05) -> pd.DataFrame:
    """Per seed and class: does suppressing the class's own dominant feature bring it to ``≤ target_accuracy``?

    ``curves`` are ``dominant:<class>`` suppression curves with a ``seed`` column.
    ``strength`` is the first swept normalised strength at which the class is at or
    below the target (:func:`~salve_utils.method.editing.operating_points`), NaN when the
    sweep never gets there; ``reaches`` says whether it got there.

    Returns
    -------
    DataFrame ``seed, class, feature, reaches, strength``, sorted by seed and class.
    """
    if "seed" not in curves.columns:
        raise ValueError("curves need a seed column (seed_study adds it)")
    frames = [operating_points(sub, target_accuracy)[["class", "feature", "strength"]].assign(seed=seed)
              for seed, sub in curves.groupby("seed")]
    out = pd.concat(frames, ignore_index=True)
    out["reaches"] = out["strength"].notna()
    return out[["seed", "class", "feature", "reaches", "strength"]].sort_values(["seed", "class"]).reset_index(drop=True)


def outcome_agreement(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per class, how many seeds agree with the majority outcome of :func:`seed_outcomes`.

    With ``r`` of ``n`` seeds reaching the target: ``majority_reaches = r > n/2``,
    ``n_agree = max(r, n - r)`` and ``unanimous = n_agree == n``.

    Returns
    -------
    DataFrame ``class, n_seeds, n_reach, majority_reaches, n_agree, unanimous``, sorted by class.

    Examples
    --------
    >>> o = pd.DataFrame({"seed": [0, 1, 2, 0, 1, 2], "class": list("aaabbb"), "reaches": [1, 1, 0, 0, 0, 0]})
    >>> outcome_agreement(o)[["class", "n_agree", "unanimous"]].values.tolist()
    [['a', 2, False], ['b', 3, True]]
    """
    g = outcomes.assign(reaches=outcomes["reaches"].astype(bool)).groupby("class")["reaches"]
    out = pd.DataFrame({"n_seeds": g.size(), "n_reach": g.sum().astype(int)})
    out["majority_reaches"] = out["n_reach"] > out["n_seeds"] / 2
    out["n_agree"] = np.maximum(out["n_reach"], out["n_seeds"] - out["n_reach"])
    out["unanimous"] = out["n_agree"] == out["n_seeds"]
    return out.reset_index()


def alpha_medians(table: pd.DataFrame) -> pd.DataFrame:
    """Per class: median numerical α_crit as normalised strength, and the images behind it.

    Only images that need an edit and get there count (``0 < α_crit < ∞``); their
    number is ``n_finite``, the median is NaN without any. ``frac_zero`` /
    ``frac_never``: images already at or below zero / never reaching it.

    Returns
    -------
    DataFrame ``class, feature, median_strength, n_finite, frac_zero, frac_never``.
    """
    rows = []
    for cls, sub in table.groupby("class", sort=False):
        v = (sub["numerical"] * sub["max_abs_c"]).to_numpy()
        v = v[np.isfinite(v) & (v > 0)]
        rows.append({"class": cls, "feature": int(sub["feature"].iloc[0]),
                     "median_strength": float(np.median(v)) if len(v) else float("nan"), "n_finite": len(v),
                     "frac_zero": float((sub["numerical"] == 0).mean()),
                     "frac_never": float(np.isinf(sub["numerical"]).mean())})
    return pd.DataFrame(rows)


def seed_spread(alpha_medians: pd.DataFrame, min_images: int = 5) -> pd.DataFrame:
    """Per class, the spread over seeds of the median α_crit, on a linear and on a log scale.

    Over the seeds with a finite positive median ``m_s``: ``mean, sd`` and
    ``cv = sd / mean``; ``n_seeds``; ``log10_sd = sd_s(log10 m_s)`` and ``fold =
    10^log10_sd`` (the typical factor between seeds). With an ``n_finite`` column
    (:func:`alpha_medians`) also ``min_n_finite`` and ``n_thin``: the fewest images
    behind a seed's median and how many seeds' medians rest on fewer than
    ``min_images``.

    Examples
    --------
    >>> m = pd.DataFrame({"class": "a", "median_strength": [1.0, 10.0, 100.0], "n_finite": [50, 3, 40]})
    >>> seed_spread(m).loc["a", ["log10_sd", "fold", "min_n_finite", "n_thin"]].tolist()
    [1.0, 10.0, 3.0, 1.0]
    """
    finite = alpha_medians[np.isfinite(alpha_medians["median_strength"]) & (alpha_medians["median_strength"] > 0)]
    g = finite.groupby("class")["median_strength"]
    classes = alpha_medians["class"].unique()
    out = pd.DataFrame({"mean": g.mean(), "sd": g.std(), "n_seeds": g.size()}).reindex(classes)
    out["n_seeds"] = out["n_seeds"].fillna(0).astype(int)
    out["cv"] = (out["sd"] / out["mean"]).where(out["mean"] > 0)
    out["log10_sd"] = finite.assign(log=np.log10(finite["median_strength"])).groupby("class")["log"].std()
    out["fold"] = 10 ** out["log10_sd"]
    if "n_finite" in alpha_medians.columns:
        n = alpha_medians.groupby("class")["n_finite"]
        out["min_n_finite"] = n.min()
        out["n_thin"] = (alpha_medians["n_finite"] < min_images).groupby(alpha_medians["class"]).sum()
    out.index.name = "class"
    return out


def curve_bands(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over seeds of the ``dominant:<class>`` suppression curves.

    For every edited class (``target``) and strength: the target's own accuracy
    (``kind = "target"``) and the mean accuracy of the other classes (``kind =
    "others"``), averaged over seeds, with their standard deviation (0 with one seed).

    Returns
    -------
    DataFrame ``target, kind, strength, mean, sd, n_seeds``, sorted by target, kind and strength.
    """
    sup = curves[(curves["direction"] == "suppress") & curves["feature_role"].str.startswith("dominant:")]
    sup = sup.assign(target=sup["feature_role"].str.split(":", n=1).str[1])
    sup = sup.assign(kind=np.where(sup["class"] == sup["target"], "target", "others"))
    per_seed = sup.groupby(["target", "kind", "strength", "seed"], as_index=False)["accuracy"].mean()
    g = per_seed.groupby(["target", "kind", "strength"])["accuracy"]
    out = pd.DataFrame({"mean": g.mean(), "sd": g.std().fillna(0.0), "n_seeds": g.size()}).reset_index()
    return out.sort_values(["target", "kind", "strength"]).reset_index(drop=True)


def _seeds(reference_meta: dict, n_seeds: int) -> list[int]:
    """The reference's own seed, then the smallest other seeds, ``n_seeds`` in all."""
    if not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"n_seeds must be a positive int, got {n_seeds!r}")
    ref = int(reference_meta["seed"])
    return [ref] + [s for s in range(n_seeds + 1) if s != ref][: n_seeds - 1]


def _dominant(acts: "Activations", sae: SparseAutoencoder) -> dict[str, int]:
    with torch.no_grad():
        mu = class_mean_latents(sae.encode(acts.train), acts.train_labels, len(acts.classes))
    top = dominant_features(mu, top=1, classes=list(acts.classes))
    return dict(zip(top["class"], top["feature"].astype(int)))


def _match_rows(seed: int, ref: tuple, other: tuple, is_reference: bool) -> list[dict]:
    """``seed_matches`` rows of one seed: per class, the three cosines of its dominant feature to the reference's."""
    (ref_sae, ref_dom, ref_fun), (sae, dom, fun) = ref, other
    cos, abs_cos = decoder_cosines(ref_sae, sae), decoder_cosines(ref_sae, sae, absolute=True)
    pairs = match_features(ref_sae, sae).set_index("feature_a")["feature_b"]
    pairs_abs = match_features(ref_sae, sae, absolute=True).set_index("feature_a")["feature_b"]
    return [{"seed": seed, "class": cls, "feature": dom[cls], "ref_feature": ref_dom[cls],
             "cosine": float(cos[ref_dom[cls], dom[cls]].abs()),
             "same_feature": bool(pairs.get(ref_dom[cls], -1) == dom[cls]),
             "reference": is_reference,
             "abs_cosine": float(abs_cos[ref_dom[cls], dom[cls]]),
             "same_feature_abs": bool(pairs_abs.get(ref_dom[cls], -1) == dom[cls]),
             "function_cosine": _cosine(ref_fun.loc[cls].to_numpy(), fun.loc[cls].to_numpy())}
            for cls in ref_dom]


def seed_study(acts: "Activations", reference: SparseAutoencoder, reference_meta: dict, n_seeds: int = 10,
               strengths: Sequence[float] = (0.0, 1.0, 2.0, 3.0), function_strength: float = 1.0,
               target_accuracy: float = 0.05, progress: bool = True) -> dict:
    """Retrain the autoencoder with ``n_seeds`` seeds and measure how much of SALVE survives.

    The seeds are the reference's own seed plus the smallest others, ``n_seeds`` in
    all; each new SAE uses the reference's size, λ₁ and training options
    (``reference_meta["train_options"]``). Per seed and class ``k`` (dominant
    feature ``m`` of the seed, ``l`` of the reference):

    * ``matches`` -- ``seed, class, feature, ref_feature, cosine, same_feature, reference,
      abs_cosine, same_feature_abs, function_cosine``: the three cosines of the module
      docstring (function at ``function_strength``) and whether Hungarian matching of all
      latents by decoder cosine (``same_feature``) or by |c| cosine (``same_feature_abs``)
      pairs ``l`` with ``m``; ``reference`` marks the reference's own rows (1 by construction);
    * ``outcomes`` -- :func:`seed_outcomes` at ``target_accuracy`` plus ``reference``;
    * ``curves`` -- the suppression curves of every class's dominant feature, with ``seed``;
    * ``alpha_medians`` -- :func:`alpha_medians` of the numerical α_crit, with ``seed``.

    ``rank_agreement`` is the mean Spearman correlation, over the other seeds, of the
    per-class medians with the reference's (NaN with a single seed);
    ``abs_cosine_baseline`` the median ``abs_cosine`` over *all* pairs of latents of
    the reference and the other seeds (what unrelated columns score).
    """
    from scipy.stats import spearmanr
    from tqdm.auto import tqdm

    seeds = _seeds(reference_meta, n_seeds)
    if not 0 <= target_accuracy < 1:
        raise ValueError(f"target_accuracy must be in [0, 1), got {target_accuracy!r}")
    options = {k: v for k, v in reference_meta["train_options"].items() if k != "seed"}
    ref_dom = _dominant(acts, reference)
    ref = (reference, ref_dom, function_vectors(acts, reference, ref_dom, function_strength))
    curves, matches, medians, baseline = [], [], [], []
    for seed in track(tqdm(seeds, desc="SAE seeds", disable=not progress), "SAE seeds", total=len(seeds)):
        sae = reference if seed == seeds[0] else train_sae(acts.train, reference.d_latent, reference_meta["l1"],
                                                           seed=seed, **{**options, "progress": False})[0]
        dom = _dominant(acts, sae)
        matches += _match_rows(seed, ref, (sae, dom, function_vectors(acts, sae, dom, function_strength)),
                               seed == seeds[0])
        if seed != seeds[0]:
            baseline.append(decoder_cosines(reference, sae, absolute=True).flatten())
        medians.append(alpha_medians(alpha_crit_table(acts, sae, dom)).assign(seed=seed))
        roles = {f"dominant:{c}": f for c, f in dom.items()}
        curves.append(feature_curves(acts, sae, roles, strengths, "suppress").assign(seed=seed))
    curves_df, medians_df = pd.concat(curves, ignore_index=True), pd.concat(medians, ignore_index=True)
    by_seed = medians_df.pivot(index="class", columns="seed", values="median_strength")
    rhos = [spearmanr(by_seed[seeds[0]], by_seed[s], nan_policy="omit").statistic for s in seeds[1:]]
    outcomes = seed_outcomes(curves_df, target_accuracy)
    return {"curves": curves_df,
            "matches": pd.DataFrame(matches).sort_values(["seed", "class"], ignore_index=True),
            "outcomes": outcomes.assign(reference=outcomes["seed"] == seeds[0]),
            "alpha_medians": medians_df.sort_values(["seed", "class"], ignore_index=True),
            "rank_agreement": float(np.nanmean(rhos)) if rhos else float("nan"),
            "abs_cosine_baseline": float(torch.cat(baseline).median()) if baseline else float("nan")}
