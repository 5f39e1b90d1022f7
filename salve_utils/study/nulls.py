r"""Nulls for a feature's edit: what edits that are *not* the feature do to the same class.

Eq. 1 sees feature ``l`` only through the ratios :math:`r_j = |c_j| / \max_i |c_i|` (in [0, 1],
``c = D[:, l]``) at the normalised strength :math:`s = \alpha \cdot \max_i |c_i|`:

.. math::

    \text{suppress:}\quad w'_{kj} = w_{kj}\,\max(0,\ 1 - s\,r_j) \qquad
    \text{enhance:}\quad w'_{kj} = w_{kj}\,(1 + s\,r_j)

for every class row k, the bias ``b`` untouched. An effect attributed to the feature must
exceed what other ratio vectors do at the same ``s``. Three nulls:

* **permuted** — :math:`r_{\pi(j)}` for seeded random permutations :math:`\pi` of the head-input
  dimensions: the same :math:`|c|` values (so the same :math:`\max|c|` and the same strength grid), in
  random places. A random direction with the feature's own sparsity profile.
* **uniform** — :math:`r_j = 1` for every j: every weight row is scaled by :math:`\max(0, 1 - s)`
  (suppress) or :math:`1 + s` (enhance), so :math:`\mathrm{logits}(s) = (1 - s)_+ \cdot A W^\top + b`: a pure
  change of logit scale, shrinking every logit toward the bias. If a suppression did no
  more than this, it would not be about the feature at all.
* **others** — the dominant features of the other classes, applied to this target.

Every null is evaluated exactly on the cached activations by :func:`class_accuracies`,
which batches the whole strength grid of one ratio vector into two matrix products (see
its docstring): a thousand draws on a 100-class head with 10,000 images take tens of seconds.

>>> W = torch.tensor([[1.0, 0.0], [0.0, 1.0]]); b = torch.zeros(2)
>>> a = torch.tensor([[2.0, 1.0], [1.0, 2.0]]); y = torch.tensor([0, 1])
>>> class_accuracies(a, y, W, b, torch.ones(1, 2), [0.0, 0.5, 1.0])[0]  # uniform: at s = 1 every logit is b
array([[1., 1.],
       [1., 1.],
       [1., 0.]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch

from . import stats

if TYPE_CHECKING:
    from ..method.activations import Activations
    from ..method.sae import SparseAutoencoder

__all__ = ["NULLS", "NULL_COLUMNS", "NullCounts", "UNIFORM_ZEROES_HEAD", "class_accuracies", "feature_ratios",
           "first_below", "inert_strength", "latent_spread", "matched_uniform", "null_comparison", "null_counts",
           "null_edits", "null_grid", "permuted_ratios", "point_intervals", "target_summary", "uniform_comparison",
           "uniform_is_degenerate"]

NULLS = ("permuted", "uniform", "others")
DIRECTIONS = ("suppress", "enhance")
NULL_COLUMNS = ["feature_role", "target", "direction", "null", "draw", "strength", "target_accuracy", "target_n",
                "others_mean", "others_worst"]


# =========================================================================== inputs


def _check_strengths(strengths: Sequence[float] | np.ndarray) -> np.ndarray:
    s = np.asarray(strengths, dtype=np.float64).reshape(-1)
    if not len(s) or not np.all(np.isfinite(s)) or np.any(s < 0) or np.any(np.diff(s) <= 0):
        raise ValueError(f"strengths must be a non-empty, strictly increasing sequence of finite values >= 0, "
                         f"got {strengths!r}")
    return s


def _check_ratios(r: torch.Tensor, m: int) -> torch.Tensor:
    r = torch.as_tensor(r)
    r = r[None] if r.ndim == 1 else r
    if r.ndim != 2 or r.shape[1] != m:
        raise ValueError(f"ratios must have shape (D, M) with M={m}, got {tuple(r.shape)}")
    if not torch.isfinite(r).all() or (r < 0).any():
        raise ValueError("ratios must be finite and >= 0 (they are |c_j| / max|c|)")
    return r


def feature_ratios(decoder_column: torch.Tensor) -> torch.Tensor:
    """``r_j = |c_j| / max_i |c_i|``: the feature as Eq. 1 sees it on the normalised strength axis.

    >>> feature_ratios(torch.tensor([0.5, -2.0, 1.0]))
    tensor([0.2500, 1.0000, 0.5000])
    """
    c = decoder_column.detach().abs()
    if c.ndim != 1 or not c.numel() or float(c.max()) == 0:
        raise ValueError("decoder_column must be a non-zero (M,) vector")
    return c / c.max()


def permuted_ratios(r: torch.Tensor, n_draws: int, seed: int | Sequence[int]) -> torch.Tensor:
    """``n_draws`` seeded permutations of ``r`` over the dimensions, shape (n_draws, M).

    The same seed gives the same draws; every draw holds the same values as ``r``.

    >>> p = permuted_ratios(torch.tensor([0.0, 0.5, 1.0]), 4, seed=0)
    >>> p.shape, bool(torch.equal(p.sort(1).values, torch.tensor([0.0, 0.5, 1.0]).expand(4, 3)))
    (torch.Size([4, 3]), True)
    >>> torch.equal(p, permuted_ratios(torch.tensor([0.0, 0.5, 1.0]), 4, seed=0))
    True
    """
    if not isinstance(n_draws, int) or n_draws < 1:
        raise ValueError(f"n_draws must be a positive int, got {n_draws!r}")
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(r.numel()) for _ in range(n_draws)])
    return r.reshape(-1)[torch.as_tensor(perms)]


# =========================================================================== the exact evaluation


def _is_top(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``argmax_k logits[n, k] == y_n`` (argmax's rule for ties: the first index wins), without ``argmax``.

    The true class's logit against the best of the others (``argmax`` is several times
    slower than ``amax`` on a CPU); only tied rows go through ``argmax``. Overwrites ``logits``.
    """
    own = logits.gather(1, labels[:, None])[:, 0]
    best = logits.scatter_(1, labels[:, None], float("-inf")).amax(-1)
    win = own > best
    tie = (own == best).nonzero().reshape(-1)
    if len(tie):
        win[tie] = labels[tie] < logits[tie].argmax(-1)
    return win


def _suppress_correct(acts_t: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor, r: torch.Tensor,
                      s: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[argmax_k logits_nk(s_i) == y_n]`` (S, N) of the suppressed head, walking the strengths downwards.

    ``acts_t`` (M, N) and ``weight_t`` (M, K) are the transposed activations and head.
    Dimension j is active (factor ``1 - s r_j > 0``) exactly for the strengths ``i < last_j``.
    Walking i from the largest strength down, the dimensions with ``last_j = i + 1`` join
    the running sums ``U = Σ a_j w_kj`` and ``V = Σ a_j w_kj r_j`` (one product each), and
    ``logits(s_i) = U - s_i V + b``: one N x K working set, however long the grid.
    """
    last = (s.double()[:, None] * r.double()[None, :] < 1).sum(0)  # (M,)
    order = torch.argsort(last, descending=True, stable=True)  # dimensions that stay active longest first
    a, w = acts_t[order], weight_t[order]
    wr = w * r[order, None]
    ends = torch.cumsum(torch.bincount(last, minlength=len(s) + 1).flip(0), 0).tolist()  # a[:ends[g]]: last >= S-g
    u = bias.expand(acts_t.shape[1], -1).clone()  # U + b
    v, logits = torch.zeros_like(u), torch.empty_like(u)
    correct = torch.empty(len(s), acts_t.shape[1], dtype=torch.bool)
    done = 0
    for i in range(len(s) - 1, -1, -1):
        upto = ends[len(s) - i - 1]  # every dimension with last_j >= i + 1
        if upto > done:
            u.addmm_(a[done:upto].T, w[done:upto])
            v.addmm_(a[done:upto].T, wr[done:upto])
            done = upto
        correct[i] = _is_top(torch.add(u, v, alpha=-float(s[i]), out=logits), labels)
    return correct


def _enhance_correct(base: torch.Tensor, acts: torch.Tensor, weight: torch.Tensor, r: torch.Tensor,
                     s: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[argmax_k logits_nk(s_i) == y_n]`` (S, N) of the enhanced head: ``logits = base + s_i A (W diag r)ᵀ``."""
    v, logits = acts @ (weight * r).T, torch.empty_like(base)
    return torch.stack([_is_top(torch.add(base, v, alpha=float(x), out=logits), labels) for x in s])


def class_accuracies(acts: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                     ratios: torch.Tensor, strengths: Sequence[float] | np.ndarray,
                     direction: str = "suppress") -> np.ndarray:
    r"""Per-class accuracy of the edited head for many ratio vectors and strengths at once, exactly.

    For ratio vector ``r`` (:math:`r_j = |c_j| / \max|c|`) and normalised strength ``s``:

    .. math::

        \mathrm{logits}_{nk}(s) &= \sum_j a_{nj}\, w_{kj}\, f_j(s) + b_k, \qquad
        f_j(s) = \max(0,\ 1 - s\,r_j) \ \text{ or }\ 1 + s\,r_j \\
        \mathrm{acc}_k(s) &= \operatorname{mean}_{n:\, y_n = k} \mathbb{1}[\operatorname{argmax}_i
        \mathrm{logits}_{ni}(s) = k]

    Enhancement is linear in ``s``: :math:`\mathrm{logits} = A W^\top + b + s \cdot A\,(W \operatorname{diag} r)^\top`
    (one product). Suppression is linear between clamps: dimension j contributes :math:`a_j w_{kj} (1 - s\,r_j)`
    for the strengths with :math:`s\,r_j < 1` and nothing after. Walking the strengths downwards,
    each dimension joins two running sums once (``U += A_G W_Gᵀ``, ``V += A_G (W_G diag r_G)ᵀ``
    for the group G that turns active), and :math:`\mathrm{logits}(s) = U - s V + b`: two full products
    per ratio vector however long the grid, instead of one per strength.

    Parameters
    ----------
    acts : (N, M) cached activations
    labels : (N,) class indices
    weight, bias : the unedited head ``W`` (K, M) and ``b`` (K,)
    ratios : (D, M) or (M,) ratio vectors, each >= 0
    strengths : strictly increasing normalised strengths ``s >= 0``
    direction : "suppress" or "enhance"

    Returns
    -------
    (D, S, K) float array; NaN for classes without samples.

    Examples
    --------
    A permutation of identical :math:`|c|` values is the feature itself:

    >>> g = torch.Generator().manual_seed(0)
    >>> a, W = torch.randn(50, 4, generator=g), torch.randn(3, 4, generator=g); y = torch.arange(50) % 3
    >>> flat = torch.full((4,), 0.7)
    >>> same = class_accuracies(a, y, W, torch.zeros(3), torch.stack([flat, flat[[2, 0, 3, 1]]]), [0.0, 1.0, 2.0])
    >>> bool((same[0] == same[1]).all())
    True
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if weight.ndim != 2 or acts.ndim != 2 or acts.shape[1] != weight.shape[1] or bias.shape != (weight.shape[0],):
        raise ValueError(f"need acts (N, M), weight (K, M), bias (K,); got {tuple(acts.shape)}, "
                         f"{tuple(weight.shape)}, {tuple(bias.shape)}")
    num_classes = weight.shape[0]
    labels = torch.as_tensor(labels)
    if labels.shape != (acts.shape[0],) or labels.is_floating_point() or \
            (len(labels) and (labels.min() < 0 or labels.max() >= num_classes)):
        raise ValueError(f"labels must be (N,) class indices in [0, {num_classes})")
    s_np = _check_strengths(strengths)
    dtype = acts.dtype
    r_all = _check_ratios(ratios, weight.shape[1]).to(dtype)
    weight, bias, s = weight.detach().to(dtype), bias.detach().to(dtype), torch.as_tensor(s_np, dtype=dtype)
    acts = acts.detach()
    acts_t, weight_t = acts.T.contiguous(), weight.T.contiguous()
    labels = labels.long()
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    base = acts @ weight.T + bias if direction == "enhance" else None
    out = np.empty((len(r_all), len(s), num_classes))
    for d, r in enumerate(r_all):
        if direction == "enhance":
            correct = _enhance_correct(base, acts, weight, r, s, labels)
        else:
            correct = _suppress_correct(acts_t, weight_t, bias, r, s, labels)
        hits = torch.zeros(len(s), num_classes, dtype=torch.float64)
        hits.index_add_(1, labels, correct.to(torch.float64))
        out[d] = (hits / counts).numpy()
    return out


# =========================================================================== the null table


def null_grid(curve_strengths: Sequence[float] | np.ndarray, every: int = 1,
              keep: Sequence[float] = (1.0,)) -> np.ndarray:
    """The strengths at which nulls are computed: a subset of the curves' grid.

    Every ``every``-th point of the sorted grid (from its first), its last point, and for
    each value in ``keep`` (e.g. strength 1.0 and the operating points) the grid point
    nearest to it, if it lies within the grid's range. A subset, so every null strength
    has the feature's own value in the curves.

    >>> null_grid(np.linspace(0, 3, 31), every=10, keep=[1.0, 1.3])
    array([0. , 1. , 1.3, 2. , 3. ])
    """
    grid = np.unique(np.asarray(curve_strengths, dtype=np.float64))
    if not len(grid) or not isinstance(every, int) or every < 1:
        raise ValueError(f"need a non-empty curve grid and an int every >= 1, got {len(grid)} points, every={every!r}")
    picked = set(range(0, len(grid), every)) | {len(grid) - 1}
    for value in keep:
        if np.isfinite(value) and grid[0] <= value <= grid[-1]:
            picked.add(int(np.abs(grid - value).argmin()))
    return grid[sorted(picked)]


def _summarise(acc: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Target accuracy, mean and worst of the other classes, from (..., K) accuracies."""
    others = np.delete(acc, target, axis=-1)
    return acc[..., target], np.nanmean(others, axis=-1), np.nanmin(others, axis=-1)


def null_edits(acts: "Activations", sae: "SparseAutoencoder", dominant: dict[str, int], targets: Sequence[str],
               strengths: Sequence[float] | np.ndarray, n_draws: int = 50, seed: int = 0,
               directions: Sequence[str] = DIRECTIONS, split: str = "val") -> pd.DataFrame:
    """The three nulls of each target's dominant-feature edit, at the given normalised strengths.

    For target t with dominant feature ``l_t`` (ratios ``r``, see :func:`feature_ratios`):
    ``permuted`` draws ``π_1 … π_n`` (seeded by ``(seed, label of t)``, so a target's draws
    do not depend on which other targets are chosen; the same permutations in both
    directions), ``uniform`` (``r_j = 1``, one draw) and ``others`` (each other class's
    dominant feature, drawn under that class's label; classes whose dominant feature is
    ``l_t`` itself are skipped: their edit is the feature).

    Parameters
    ----------
    acts : cached activations with the head
    sae : the autoencoder of the features
    dominant : class name -> dominant latent (Discover's record)
    targets : classes whose feature gets nulls (e.g. a seeded sample of 100 classes)
    strengths : normalised strengths (see :func:`null_grid`)
    n_draws : permutations per target

    Returns
    -------
    DataFrame with :data:`NULL_COLUMNS`: ``feature_role`` ("dominant:<t>"), ``target``,
    ``direction``, ``null`` (permuted / uniform / others), ``draw`` (permutation number,
    0 for uniform, the other class's label for others), ``strength``, ``target_accuracy``
    and ``target_n`` (t's images), ``others_mean`` / ``others_worst`` (mean and minimum
    accuracy of every class except t); sorted by feature_role, direction, null, draw,
    strength.
    """
    x, labels = acts.split(split)
    s = _check_strengths(strengths)
    for t in targets:
        if t not in dominant:
            raise ValueError(f"target {t!r} has no dominant feature; known: {sorted(dominant)}")
    counts = np.bincount(labels.numpy(), minlength=len(acts.classes))
    features = sorted(set(int(f) for f in dominant.values()))
    perms = {t: permuted_ratios(feature_ratios(sae.decoder_column(int(dominant[t]))), n_draws,
                                (seed, acts.class_index(t))) for t in targets}
    frames = []

    def rows(t: str, direction: str, null: str, draws: Sequence[int], acc: np.ndarray) -> pd.DataFrame:
        k = acts.class_index(t)
        tgt, mean, worst = _summarise(acc, k)
        return pd.DataFrame({
            "feature_role": f"dominant:{t}", "target": t, "direction": direction, "null": null,
            "draw": np.repeat(np.asarray(draws, dtype=np.int64), len(s)), "strength": np.tile(s, len(draws)),
            "target_accuracy": tgt.reshape(-1), "target_n": int(counts[k]),
            "others_mean": mean.reshape(-1), "others_worst": worst.reshape(-1)})

    for direction in directions:
        def run(r: torch.Tensor) -> np.ndarray:
            return class_accuracies(x, labels, acts.weight, acts.bias, r, s, direction)

        uniform = run(torch.ones(1, x.shape[1]))
        by_feature = dict(zip(features, run(torch.stack([feature_ratios(sae.decoder_column(f)) for f in features]))))
        for t in targets:
            frames.append(rows(t, direction, "uniform", [0], uniform))
            frames.append(rows(t, direction, "permuted", range(n_draws), run(perms[t])))
            other = [c for c in dominant if c != t and int(dominant[c]) != int(dominant[t])]
            if other:
                frames.append(rows(t, direction, "others", [acts.class_index(c) for c in other],
                                   np.stack([by_feature[int(dominant[c])] for c in other])))
    table = pd.concat(frames, ignore_index=True)[NULL_COLUMNS]
    return table.sort_values(["feature_role", "direction", "null", "draw", "strength"], ignore_index=True)


# =========================================================================== comparing the feature with its nulls


def target_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """The feature's own rows in the null table's terms, from ``suppression_curves``-style curves.

    One row per ``dominant:<t>`` role, direction and strength: ``target_accuracy``,
    ``target_n``, ``others_mean``, ``others_worst`` (over every class except t).
    """
    dom = curves[curves["feature_role"].str.startswith("dominant:")]
    rows = []
    for (role, direction, strength), sub in dom.groupby(["feature_role", "direction", "strength"], sort=True):
        target = role.split(":", 1)[1]
        own, others = sub[sub["class"] == target], sub[sub["class"] != target]["accuracy"]
        rows.append({"feature_role": role, "target": target, "direction": direction, "strength": float(strength),
                     "target_accuracy": float(own["accuracy"].iloc[0]), "target_n": int(own["n"].iloc[0]),
                     "others_mean": float(others.mean()), "others_worst": float(others.min())})
    return pd.DataFrame(rows)


def null_comparison(summary: pd.DataFrame, nulls: pd.DataFrame, at: dict[str, float],
                    direction: str = "suppress", level: float = 0.95) -> pd.DataFrame:
    """The feature's target accuracy at one strength per role, against its nulls there.

    ``beats_permuted`` is true when the feature's target accuracy lies beyond the
    permuted draws' central ``level`` range on the side of the edit: below its
    ``(1 - level)/2`` quantile when suppressing, above its ``(1 + level)/2`` quantile when
    enhancing — the feature does more than random directions with the same :math:`|c|`.

    Parameters
    ----------
    summary : :func:`target_summary` of the curves
    nulls : :func:`null_edits`
    at : role -> strength (NaN: no comparison; the row carries NaN and ``beats_permuted`` False).
         Each finite strength must be one the nulls were computed at.

    Returns
    -------
    DataFrame ``feature_role, strength, target_accuracy, others_mean`` (the feature's),
    ``permuted_lo, permuted_hi`` (the permuted draws' quantiles), ``uniform`` and
    ``uniform_others_mean`` (the uniform direction's target accuracy and others' mean),
    ``others_median`` (median target accuracy under the other classes' features), ``beats_permuted``.
    """
    q = (1 - level) / 2
    rows = []
    for role, strength in at.items():
        row = {"feature_role": role, "strength": strength, "target_accuracy": np.nan, "others_mean": np.nan,
               "permuted_lo": np.nan, "permuted_hi": np.nan, "uniform": np.nan, "uniform_others_mean": np.nan,
               "others_median": np.nan, "beats_permuted": False}
        if np.isfinite(strength):
            sub = nulls[(nulls["feature_role"] == role) & (nulls["direction"] == direction)
                        & np.isclose(nulls["strength"], strength)]
            own = summary[(summary["feature_role"] == role) & (summary["direction"] == direction)
                          & np.isclose(summary["strength"], strength)]
            perm = sub[sub["null"] == "permuted"]["target_accuracy"]
            if perm.empty or own.empty:
                raise ValueError(f"{role} at strength {strength:g}: no permuted null or feature row there "
                                 "(compute the nulls at this strength: null_grid(..., keep=[...]))")
            value = float(own["target_accuracy"].iloc[0])
            lo, hi = float(perm.quantile(q)), float(perm.quantile(1 - q))
            uniform = sub[sub["null"] == "uniform"]
            row.update(target_accuracy=value, others_mean=float(own["others_mean"].iloc[0]), permuted_lo=lo,
                       permuted_hi=hi, uniform=float(uniform["target_accuracy"].mean()),
                       uniform_others_mean=float(uniform["others_mean"].mean()),
                       others_median=float(sub[sub["null"] == "others"]["target_accuracy"].median()),
                       beats_permuted=bool(value < lo if direction == "suppress" else value > hi))
        rows.append(row)
    return pd.DataFrame(rows)


def first_below(table: pd.DataFrame, target_accuracy: float = 0.05) -> pd.DataFrame:
    """The first strength at which each edit brings its class to ``<= target_accuracy``.

    ``table`` holds one edit per ``feature_role`` (and ``null``/``draw`` if present, e.g.
    the uniform rows of :func:`null_edits`, or :func:`target_summary` of one direction).
    Returns, per edit, ``strength, target_accuracy, others_mean, others_worst`` there (NaN
    when it never gets there): how an edit reads at matched efficacy on the target.

    >>> t = pd.DataFrame({"feature_role": "r", "strength": [0.0, 0.5, 1.0], "target_accuracy": [0.9, 0.04, 0.0],
    ...                   "others_mean": [0.9, 0.5, 0.1], "others_worst": [0.8, 0.3, 0.0]})
    >>> first_below(t).to_dict("records")
    [{'feature_role': 'r', 'strength': 0.5, 'target_accuracy': 0.04, 'others_mean': 0.5, 'others_worst': 0.3}]
    """
    keys = [k for k in ("feature_role", "direction", "null", "draw") if k in table]
    values = ["strength", "target_accuracy", "others_mean", "others_worst"]
    rows = []
    for key, sub in table.sort_values("strength").groupby(keys, sort=True):
        hit = sub[sub["target_accuracy"] <= target_accuracy]
        at = hit.iloc[0] if len(hit) else None
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                     **{c: (float(at[c]) if at is not None else np.nan)
                        for c in values}})
    return pd.DataFrame(rows, columns=keys + values)


def matched_uniform(acts: "Activations", targets: Sequence[str], target_accuracy: float = 0.05, points: int = 401,
                    split: str = "val") -> pd.DataFrame:
    """The uniform direction at matched efficacy: where a pure change of logit scale removes each target.

    Uniform suppression gives ``logits(s) = (1 - s) A Wᵀ + b``; every class's accuracy
    moves only between ``s = 0`` and ``s = 1`` (after that every logit is ``b``), so a fine
    grid of ``points`` strengths on [0, 1] finds, for each target, the first strength at
    which it falls to ``<= target_accuracy`` (:func:`first_below`) and what the other
    classes keep there. The feature is more specific than a change of scale where, at its
    own operating point, the others keep more.
    """
    x, labels = acts.split(split)
    s = np.linspace(0.0, 1.0, points)
    acc = class_accuracies(x, labels, acts.weight, acts.bias, torch.ones(x.shape[1]), s)[0]
    frames = []
    for t in targets:
        tgt, mean, worst = _summarise(acc, acts.class_index(t))
        frames.append(pd.DataFrame({"feature_role": f"dominant:{t}", "strength": s, "target_accuracy": tgt,
                                    "others_mean": mean, "others_worst": worst}))
    columns = ["feature_role", "strength", "target_accuracy", "others_mean", "others_worst"]
    return first_below(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns),
                       target_accuracy)


def point_intervals(curves: pd.DataFrame, points: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Bootstrap intervals (over validation images) for an operating-point table.

    ``points`` is :func:`~salve_utils.method.editing.operating_points`; at each row's strength,
    the target's accuracy gets :func:`~salve_utils.study.stats.accuracy_interval` and the other
    classes' mean and worst accuracy :func:`~salve_utils.study.stats.interval` (stratified over
    classes). Adds ``target_lo, target_hi, others_mean_lo, others_mean_hi,
    others_worst_lo, others_worst_hi`` (NaN where the target never got there).
    """
    out = points.copy()
    names = ["target_lo", "target_hi", "others_mean_lo", "others_mean_hi", "others_worst_lo", "others_worst_hi"]
    for name in names:
        out[name] = np.nan
    sup = curves[curves["direction"] == "suppress"]
    for i, row in out.iterrows():
        if not np.isfinite(row["strength"]):
            continue
        sub = sup[(sup["feature_role"] == f"dominant:{row['class']}") & np.isclose(sup["strength"], row["strength"])]
        own, others = sub[sub["class"] == row["class"]], sub[sub["class"] != row["class"]]
        acc, n = others["accuracy"].to_numpy(), others["n"].to_numpy()
        out.loc[i, names] = [*stats.accuracy_interval(float(own["accuracy"].iloc[0]), int(own["n"].iloc[0]), level),
                             *stats.interval(acc, n, np.mean, level), *stats.interval(acc, n, np.min, level)]
    return out


# =========================================================================== the control chapter's counts


@dataclass(frozen=True)
class NullCounts:
    """Each null target's feature against its permuted null, at its operating point and at strength 1.

    Built by :func:`null_counts`; every class name is a ``dominant:<class>`` role's class.

    Attributes
    ----------
    strength_one : the null grid's strength nearest to 1.0 (1.0 itself when the grid holds it)
    at_point : :func:`null_comparison` of each target at its operating point, in the order of the
        targets (a row of NaN, ``beats_permuted`` False, where the target never reaches it)
    at_one : :func:`null_comparison` of each target at ``strength_one``, with ``before`` (the
        target's accuracy at strength 0) and ``drop = before - target_accuracy``
    reached : the rows of ``at_point`` whose target reaches its operating point
    beat, not_beat : the classes of ``reached`` whose feature does / does not beat the permuted null there
    beats_at_point, beats_at_one : per row of the operating-point table, whether the feature beats
        the permuted null (at the point / at ``strength_one``); NaN for a class without nulls, and
        at the point also for a class that never reaches it
    """

    strength_one: float
    at_point: pd.DataFrame
    at_one: pd.DataFrame
    reached: pd.DataFrame
    beat: list[str]
    not_beat: list[str]
    beats_at_point: pd.Series
    beats_at_one: pd.Series

    @property
    def n_beat_at_one(self) -> int:
        """How many targets beat their permuted null at ``strength_one``."""
        return int(self.at_one["beats_permuted"].sum())


def _role_class(roles: pd.Series) -> pd.Series:
    """``"dominant:church"`` -> ``"church"``."""
    return roles.str.split(":", n=1).str[1]


def null_counts(summary: pd.DataFrame, nulls: pd.DataFrame, points: pd.DataFrame, targets: Sequence[str],
                null_strengths: Sequence[float] | np.ndarray, level: float = 0.95) -> NullCounts:
    """Does each target's suppressed feature beat its permuted null, at its operating point and at strength 1?

    For each target ``t`` (role ``dominant:t``), :func:`null_comparison` at two strengths:
    ``t``'s operating point ``s_t`` (``points``, the first swept strength at which ``t`` falls
    to the target accuracy; NaN when it never does) and ``s_1 = argmin_{s in grid} |s - 1|``,
    the null grid's strength nearest to 1. The feature *beats* its null where
    ``acc_t(s) < q_{(1 - level)/2}`` of the permuted draws at the same ``s``; at ``s_1`` the
    drop of the target is ``acc_t(0) - acc_t(s_1)``.

    Parameters
    ----------
    summary : :func:`target_summary` of the suppression (and enhancement) curves
    nulls : :func:`null_edits` computed at ``null_strengths`` for every target
    points : :func:`~salve_utils.method.editing.operating_points` (or :func:`point_intervals` of it):
        one row per class with ``class`` and ``strength``
    targets : the classes that have nulls, each a class of ``points``
    null_strengths : the strengths the nulls were computed at (:func:`null_grid`)
    level : the permuted draws' central range

    Returns
    -------
    :class:`NullCounts`

    Examples
    --------
    >>> summary = pd.DataFrame({"feature_role": "dominant:a", "direction": "suppress", "strength": [0.0, 1.0],
    ...                         "target_accuracy": [0.9, 0.0], "others_mean": [0.9, 0.8]})
    >>> perm = pd.DataFrame({"feature_role": "dominant:a", "direction": "suppress", "null": "permuted",
    ...                      "strength": 1.0, "target_accuracy": [0.5, 0.6], "others_mean": 0.5})
    >>> counts = null_counts(summary, perm, pd.DataFrame({"class": ["a"], "strength": [1.0]}), ["a"], [0.0, 1.0])
    >>> counts.strength_one, counts.beat, counts.not_beat, counts.at_one["drop"].tolist()
    (1.0, ['a'], [], [0.9])
    """
    grid = _check_strengths(null_strengths)
    need = {"summary": (summary, {"feature_role", "direction", "strength", "target_accuracy", "others_mean"}),
            "nulls": (nulls, {"feature_role", "direction", "null", "strength", "target_accuracy", "others_mean"}),
            "points": (points, {"class", "strength"})}
    for name, (table, columns) in need.items():
        if missing := columns - set(table.columns):
            raise ValueError(f"{name} lacks the columns {sorted(missing)}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    at_point = dict(zip(points["class"], points["strength"]))
    if unknown := [t for t in targets if t not in at_point]:
        raise ValueError(f"targets {unknown} have no row in points; known: {sorted(at_point)}")
    s_one = float(grid[np.abs(grid - 1.0).argmin()])
    vs_point = null_comparison(summary, nulls, {f"dominant:{t}": at_point[t] for t in targets}, level=level)
    vs_one = null_comparison(summary, nulls, {f"dominant:{t}": s_one for t in targets}, level=level)
    base = summary[(summary["direction"] == "suppress") & (summary["strength"] == 0)].set_index("feature_role")
    if missing := sorted(set(vs_one["feature_role"]) - set(base.index)):
        raise ValueError(f"summary has no suppression row at strength 0 (the unedited head) for {missing}")
    before = base.loc[vs_one["feature_role"], "target_accuracy"].to_numpy()
    vs_one = vs_one.assign(before=before, drop=before - vs_one["target_accuracy"].to_numpy())
    reached = vs_point.dropna(subset=["target_accuracy"])
    wins = reached["beats_permuted"].astype(bool)

    def per_point(vs: pd.DataFrame) -> pd.Series:
        return points["class"].map(dict(zip(_role_class(vs["feature_role"]), vs["beats_permuted"])))

    return NullCounts(strength_one=s_one, at_point=vs_point, at_one=vs_one, reached=reached,
                      beat=_role_class(reached["feature_role"][wins]).tolist(),
                      not_beat=_role_class(reached["feature_role"][~wins]).tolist(),
                      beats_at_point=per_point(vs_point).where(points["strength"].notna()),
                      beats_at_one=per_point(vs_one))


def uniform_comparison(acts: "Activations", compared: pd.DataFrame, points: pd.DataFrame,
                       target_accuracy: float = 0.05, split: str = "val") -> pd.DataFrame:
    """The feature at its operating point against the uniform direction, at the same strength and matched on the class.

    For each row of ``compared`` (a :func:`null_comparison` at the targets' operating points;
    rows without a target accuracy, the targets that never get there, are left out) the
    feature at its point ``s_t`` is set beside two uniform edits (``r_j = 1``, a pure change of
    logit scale ``logits(s) = (1 - s)₊ A Wᵀ + b``):

    * at the same strength ``s_t`` (``uniform``, ``uniform_others_mean``, from the null table),
      which suppresses the class at least as much where ``uniform <= target_accuracy`` of the
      feature (``uniform_as_much``) — trivially so from ``s_t >= 1`` on (``past_one``), where
      the uniform edit has zeroed the head;
    * matched on the class (:func:`matched_uniform`): at the first strength ``s_u`` where the
      uniform edit brings the class to ``<= target_accuracy`` (``matched_strength``), the
      other classes keep ``matched_others_mean`` and ``matched_others_worst`` (NaN if it never does).

    The feature leaves the others more on average where ``others_mean > matched_others_mean``
    (``more_on_average``), more at worst where ``others_worst > matched_others_worst``
    (``more_at_worst``; ``others_worst`` is the feature's, from ``points``), a NaN match
    counting as -1 (the feature wins); ``more_specific`` is both.

    Parameters
    ----------
    acts : cached activations with the head (for :func:`matched_uniform`)
    compared : :func:`null_comparison` at the operating points (e.g. ``NullCounts.at_point``)
    points : the operating-point table: ``class`` and ``others_worst``
    target_accuracy : the accuracy that counts as suppressed (the operating points' threshold)
    split : the activations' split

    Returns
    -------
    ``compared``'s reached rows (its columns, in its order) with ``class``, ``others_worst``,
    ``uniform_as_much``, ``past_one``, ``matched_strength``, ``matched_others_mean``,
    ``matched_others_worst``, ``more_on_average``, ``more_at_worst``, ``more_specific``.
    """
    need = {"feature_role", "strength", "target_accuracy", "others_mean", "uniform"}
    if missing := need - set(compared.columns):
        raise ValueError(f"compared lacks the columns {sorted(missing)} (pass a null_comparison table)")
    if missing := {"class", "others_worst"} - set(points.columns):
        raise ValueError(f"points lacks the columns {sorted(missing)} (pass editing.operating_points)")
    if not 0.0 <= target_accuracy <= 1.0:
        raise ValueError(f"target_accuracy must lie in [0, 1], got {target_accuracy!r}")
    done = compared.dropna(subset=["target_accuracy"])
    classes = [r.split(":", 1)[1] for r in done["feature_role"]]
    if unknown := sorted(set(classes) - set(points["class"])):
        raise ValueError(f"classes {unknown} have no row in points")
    matched = matched_uniform(acts, classes, target_accuracy, split=split).set_index("feature_role")
    matched = matched.loc[done["feature_role"]]
    own_worst = points.set_index("class").loc[classes, "others_worst"].to_numpy()
    better_mean = done["others_mean"].to_numpy() > matched["others_mean"].fillna(-1).to_numpy()
    better_worst = own_worst > matched["others_worst"].fillna(-1).to_numpy()
    return done.assign(**{"class": classes}, others_worst=own_worst,
                       uniform_as_much=(done["uniform"] <= done["target_accuracy"]).to_numpy(),
                       past_one=(done["strength"] >= 1).to_numpy(),
                       matched_strength=matched["strength"].to_numpy(),
                       matched_others_mean=matched["others_mean"].to_numpy(),
                       matched_others_worst=matched["others_worst"].to_numpy(),
                       more_on_average=better_mean, more_at_worst=better_worst,
                       more_specific=better_mean & better_worst)


# =========================================================================== where a latent null is not degenerate


#: From this normalised strength on the uniform direction (``r_j = 1``) zeroes every weight: the head outputs its bias.
UNIFORM_ZEROES_HEAD = 1.0


def uniform_is_degenerate(strength: float | np.ndarray) -> bool | np.ndarray:
    """Does the uniform null zero the whole head at this normalised strength (``(1 − s)₊ = 0``)?

    There every image goes to the class with the largest bias, so "the uniform direction
    suppresses the class as much" is true of every class but the bias's and says nothing
    about the feature: a comparison with it is left out, with this reason.

    >>> uniform_is_degenerate(0.5), uniform_is_degenerate(1.0)
    (False, True)
    """
    out = np.asarray(strength, dtype=np.float64) >= UNIFORM_ZEROES_HEAD
    return bool(out) if out.ndim == 0 else out


def latent_spread(effects: pd.DataFrame, cls: str, exclude: int | None = None) -> pd.Series:
    """Per swept strength > 0: the median, over every latent but ``exclude``, of ``|change|`` of class ``cls``.

    ``effects`` has ``feature, class, strength, change`` (the Tower chapter's
    ``tower_effects``: every latent suppressed at each strength).
    """
    sub = effects[(effects["class"] == cls) & (effects["strength"] > 0)]
    if exclude is not None:
        sub = sub[sub["feature"] != exclude]
    return sub.groupby("strength")["change"].agg(lambda c: float(np.median(np.abs(c)))).sort_index()


def inert_strength(effects: pd.DataFrame, cls: str, max_change: float, exclude: int | None = None) -> float:
    """The largest swept strength up to which the median other latent moves ``cls`` by at most ``max_change``.

    Below it most latents are inert on the class, so a latent that moves it stands out;
    above it most latents move it too, and the effect of one says little. The strengths
    are taken from the run (the table's own grid), from the smallest up, stopping at the
    first strength whose median exceeds ``max_change``; ``nan`` when even the smallest does.

    >>> eff = pd.DataFrame({"feature": [0, 1, 2] * 3, "class": "g", "strength": np.repeat([1.0, 2.0, 4.0], 3),
    ...                     "change": [0.0, -0.01, -0.02, -0.03, -0.04, -0.5, -0.3, -0.6, -0.9]})
    >>> inert_strength(eff, "g", 0.05)
    2.0
    >>> inert_strength(eff, "g", 0.001)
    nan
    """
    best = float("nan")
    for strength, median in latent_spread(effects, cls, exclude).items():
        if median > max_change:
            break
        best = float(strength)
    return best
