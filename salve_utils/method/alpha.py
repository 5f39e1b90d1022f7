r"""α_crit: the critical suppression strength at which an edit removes a class, three ways.

Suppressing feature ``l`` (decoder column ``c = D[:, l]``) with strength α gives
the target logit of an image ``x`` of class ``i`` (head :math:`y = W a + b`):

.. math::

    y_i(\alpha) = \sum_j W_{ij}\, a_j(x) \max(0,\ 1 - \alpha\,|c_j|) + b_i

a piecewise-linear function of α with kinks at :math:`\alpha = 1/|c_j|`; it need not be
monotone (clamping a negative contribution makes it rise). Four thresholds:

* **analytic** (the linear root): below the first kink :math:`\alpha < 1/\max_j |c_j|`
  (normalised strength :math:`\alpha \cdot \max|c| < 1`), :math:`y_i(\alpha) = y_i - \alpha R_i` with
  :math:`R_i(x) = \sum_j W_{ij} |c_j| a_j(x)`, so :math:`\alpha_\mathrm{crit} \approx y_i / R_i`
  (∞ when :math:`R_i \le 0`). Exact exactly when the root lies before the first kink.
* **numerical** (logit zero): the smallest root of :math:`y_i(\alpha)`, found exactly by
  walking its sorted kinks (:func:`_first_root`); ∞ where :math:`y_i` never reaches 0.
  It exists only where the logit *can* reach zero, which depends on the sign of
  the bias :math:`b_i`: a constant shift of all logits changes it, the decision does not.
* **flip** (decision flip): the smallest α at which the argmax leaves class ``i``,
  the first root of :math:`\min_{k \neq i} (y_i(\alpha) - y_k(\alpha))` by the same kink walk; invariant
  to a constant shift of the logits.
* **empirical** (zero and flip): the real edited model on the images, independent
  of the two above: a grid of strengths up to ``alpha_max``, the first grid cell
  where the criterion changes sign, then bisection inside that cell only
  (:func:`empirical_alpha_crit`).

Conventions: 0 where the criterion already holds before any edit (logit <= 0,
or misclassified); ∞ where it never holds.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .editing import _CHUNK_ELEMENTS, _edit_logits, _set_edited_head, edit_logits
from .models import SalveNet
from .sae import SparseAutoencoder, strength_scale
from .validation import check_choice, check_head, check_images, check_index

if TYPE_CHECKING:
    from .activations import Activations

__all__ = [
    "ALPHA_CRIT_METHODS",
    "CLASS_COLUMNS",
    "TABLE_COLUMNS",
    "alpha_crit",
    "alpha_crit_agreement",
    "alpha_crit_classes",
    "alpha_crit_spearman",
    "alpha_crit_summary",
    "alpha_crit_table",
    "analytic_ratio",
    "empirical_alpha_crit",
    "suppress_strength",
]

ALPHA_CRIT_METHODS = ("analytic", "numerical", "flip")
EMPIRICAL_CRITERIA = ("zero", "flip")
TABLE_COLUMNS = ["class", "feature", "sample", "analytic", "numerical", "flip", "empirical", "max_abs_c",
                 "empirical_flip"]
CLASS_COLUMNS = ["class", "feature", "n", "zero_finite", "zero_infinite", "zero_median", "flip_finite",
                 "flip_infinite", "flip_median", "flip_rank", "suppress_strength"]


# =========================================================================== exact values on cached activations


def _first_root(t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Smallest root of ``g(α) = min_c h_c(α)`` for piecewise-linear ``h_c`` known at their kinks.

    ``t`` (T,) is increasing, starts at 0 and holds every kink; ``h`` (T, N, C)
    the functions' values there. Each ``h_c`` is linear between consecutive
    kinks and constant after the last one. The first kink where ``g <= 0``
    closes the interval holding the root; inside it ``g`` is a minimum of linear
    functions, so its first zero is the smallest zero among the ``h_c`` that
    end the interval at or below 0. Returns (N,): 0 where ``g(0) <= 0``, ∞
    where ``g`` stays positive.
    """
    below = h.amin(-1) <= 0  # (T, N)
    first = below.to(torch.int8).argmax(0)  # first kink at or below zero (0 when none)
    out = torch.full((h.shape[1],), math.inf, dtype=h.dtype, device=h.device)
    out[below[0]] = 0.0
    inside = below.any(0) & (first > 0)
    n = inside.nonzero().flatten()
    m = first[n]
    t0, t1 = t[m - 1][:, None], t[m][:, None]
    h0, h1 = h[m - 1, n], h[m, n]  # (n, C); every h0 > 0
    roots = t0 + h0 * (t1 - t0) / (h0 - h1)
    roots = torch.where(h1 <= 0, roots.clamp(min=t0, max=t1), torch.full_like(roots, math.inf))
    out[n] = roots.amin(-1)
    return out


def alpha_crit(acts: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, decoder_column: torch.Tensor,
               target: int, method: str = "analytic") -> torch.Tensor:
    """Critical suppression strength per sample: the α at which the edit removes class ``target``.

    Write ``y_i(α) = Σ_j W_ij a_j max(0, 1 - α|c_j|) + b_i`` for the target logit
    ``i`` under suppression of the feature with decoder column ``c``.

    * ``"analytic"`` — below the first clamp ``y_i(α) = y_i - α R_i`` with
      ``R_i(x) = Σ_j W_ij |c_j| a_j(x)``, so ``α_crit = y_i / R_i``.
      ∞ where ``R_i <= 0``; 0 where ``y_i <= 0`` already. Exact when
      ``α_crit <= 1/max_j |c_j|`` (no column clamped before the root);
      otherwise only the root of the linearisation.
    * ``"numerical"`` — the smallest root of the exact ``y_i(α)``, which is
      piecewise linear with kinks at ``α = 1/|c_j|`` and need not be monotone
      (clamping a negative contribution makes it rise). Found exactly by
      evaluating ``y_i`` at the sorted kinks and solving the linear piece where
      it first reaches 0 (no grid, no bisection). 0 where ``y_i(0) <= 0``; ∞
      where it never reaches 0 (after the last kink it is constant).
    * ``"flip"`` — the smallest α at which class i stops being the strict
      argmax: first root of ``min_{k != i} (y_i(α) - y_k(α))`` (same kink walk;
      ties count as a flip). 0 where the sample is misclassified already.

    Parameters
    ----------
    acts : (N, M) activations of samples (normally of class ``target``)
    weight, bias : unedited head ``W`` (K, M), ``b`` (K,)
    decoder_column : (M,) ``c = D[:, l]``
    target : class index i
    method : ``"analytic"``, ``"numerical"`` or ``"flip"``

    Returns
    -------
    (N,) float64 tensor

    Raises
    ------
    InputTypeError, ValueError
        as :func:`~salve_utils.method.editing.edit_logits` for the head and ``acts`` (shapes,
        empty, NaN or infinity), and for ``target`` not an int in ``[0, K)`` or an
        unknown ``method``

    Examples
    --------
    >>> a = torch.tensor([[1.0, 1.0]]); W = torch.tensor([[4.0, -3.0]]); b = torch.tensor([0.2])
    >>> c = torch.tensor([1.0, 0.5])   # kinks at α = 1 and 2; y(α) dips below 0 and comes back
    >>> alpha_crit(a, W, b, c, target=0, method="numerical")
    tensor([0.4800], dtype=torch.float64)
    >>> alpha_crit(a, W, b, c, target=0, method="analytic")   # y / R = 1.2 / 2.5
    tensor([0.4800], dtype=torch.float64)
    """
    weight, decoder_column, bias, acts = check_head(weight, decoder_column, bias, acts)
    target = check_index(target, "target", weight.shape[0], "class index")
    check_choice(method, "method", ALPHA_CRIT_METHODS)
    if method == "flip" and weight.shape[0] < 2:
        raise ValueError("weight must have at least two classes for method='flip'")
    acts = acts.detach().double()
    weight = weight.detach().to(acts)
    bias = bias.detach().to(acts)
    c = decoder_column.detach().to(acts)
    if method == "analytic":
        y = acts @ weight[target] + bias[target]
        r = acts @ (weight[target] * c.abs())
        crit = torch.where(r > 0, y / r.where(r > 0, torch.ones_like(r)), torch.full_like(y, math.inf))
        return torch.where(y <= 0, torch.zeros_like(y), crit)
    inv = 1.0 / c.abs()[c != 0]
    kinks = torch.cat([torch.zeros(1, dtype=acts.dtype, device=acts.device), torch.unique(inv[torch.isfinite(inv)])])
    rows = slice(target, target + 1) if method == "numerical" else slice(None)
    others = [k for k in range(weight.shape[0]) if k != target]
    width = 1 if method == "numerical" else weight.shape[0]
    out = []
    for chunk in acts.split(max(1, _CHUNK_ELEMENTS // (len(kinks) * width))):
        logits = _edit_logits(chunk, weight[rows], bias[rows], c, kinks, "suppress")  # (T, n, 1 or K)
        h = logits if method == "numerical" else logits[..., target : target + 1] - logits[..., others]
        out.append(_first_root(kinks, h))
    return torch.cat(out)



# =========================================================================== the real edited model


def _criterion(logits: torch.Tensor, target: int, kind: str) -> torch.Tensor:
    """``y_i`` (``kind="zero"``) or the margin ``y_i - max_{k≠i} y_k`` (``"flip"``) over the last axis."""
    own = logits[..., target]
    if kind == "zero":
        return own
    others = torch.cat([logits[..., :target], logits[..., target + 1 :]], -1)
    return own - others.amax(-1)


def _check_empirical_args(alpha_max: float, n_grid: int, rel_tol: float, max_iter: int) -> None:
    if not (isinstance(alpha_max, (int, float)) and math.isfinite(alpha_max) and alpha_max > 0):
        raise ValueError(f"alpha_max must be a finite number > 0 (the top of the strength grid), got {alpha_max!r}")
    if not isinstance(n_grid, int) or n_grid < 2:
        raise ValueError(f"n_grid must be an int >= 2 (grid points from 0 to alpha_max), got {n_grid!r}")
    if not 0 < rel_tol < 1:
        raise ValueError(f"rel_tol must be in (0, 1), got {rel_tol!r}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")


@torch.no_grad()
def empirical_alpha_crit(model: SalveNet, decoder_column: torch.Tensor, images: torch.Tensor, target: int,
                         alpha_max: float, n_grid: int = 33, rel_tol: float = 1e-4, max_iter: int = 60,
                         check_tol: float = 1e-4) -> dict[str, torch.Tensor]:
    r"""α_crit measured on the real edited network, without any reference value: grid scan, then bisection.

    For each image ``x`` and criterion ``g``:

    .. math::

        \text{zero:}\quad g(\alpha) &= y_i(x; \alpha) \qquad \text{(the target logit)} \\
        \text{flip:}\quad g(\alpha) &= y_i(x; \alpha) - \max_{k \neq i} y_k(x; \alpha)
        \qquad \text{(ties count as a flip)}

    where ``y(x; α)`` are the logits of a copy of ``model`` whose head carries
    ``W'(α)`` of Eq. 1. The network's own backbone computes ``a(x)`` once; its head
    is rewritten for every α and applied to it (the same computation as
    ``edited(x)``, checked end to end at the grid's top: a full forward of the
    edited model must match to ``check_tol``). Strengths ``α_0 = 0 < … < α_{G-1} =
    alpha_max`` (``G = n_grid``, evenly spaced) are scanned; the first cell
    ``[α_{m-1}, α_m]`` with ``g(α_{m-1}) > 0 >= g(α_m)`` is bisected until its width
    is below ``rel_tol · α``; the midpoint is returned.

    Conventions: 0 where ``g(0) <= 0``; ∞ where ``g > 0`` at every grid point (no
    threshold up to ``alpha_max``). A dip below zero narrower than one grid cell
    is missed (the value is then a later root): the grid's resolution is
    ``alpha_max / (n_grid - 1)``, which is what makes this an independent check of
    the exact kink walk in :func:`alpha_crit`.

    Parameters
    ----------
    model : the unedited :class:`~salve_utils.method.models.SalveNet` (not modified)
    decoder_column : (M,) ``c = D[:, l]``
    images : (N, C, H, W) float images as the model takes them, in ``[0, 1]`` (non-empty, finite;
        a warning when far outside ``[0, 1]``)
    target : class index i
    alpha_max : top of the strength grid (α units; normally the sweep's top strength / :math:`\max|c|`)
    n_grid : grid points, including 0 and ``alpha_max``
    rel_tol : relative width at which bisection stops
    max_iter : cap on bisection steps
    check_tol : tolerance of the end-to-end check, relative to the largest :math:`|\mathrm{logit}|`

    Returns
    -------
    ``{"zero": (N,), "flip": (N,)}`` float64 tensors

    Examples
    --------
    >>> out = empirical_alpha_crit(model, c, images, target, alpha_max=8 / float(c.abs().max()))  # doctest: +SKIP
    >>> out["zero"], out["flip"]                                                                 # doctest: +SKIP
    """
    weight, decoder_column, _, _ = check_head(model.head.weight.detach().clone(), decoder_column)
    target = check_index(target, "target", weight.shape[0], "class index")
    if weight.shape[0] < 2:
        raise ValueError("the model must have at least two classes (the flip criterion needs a rival)")
    images = check_images(images, "images", channels=None)
    _check_empirical_args(alpha_max, n_grid, rel_tol, max_iter)
    edited = copy.deepcopy(model).eval()
    images = images.to(weight.device)
    column = decoder_column.detach().to(weight.device)
    feats = edited.features(images)  # a(x) from the network's own backbone, once

    def logits_at(alpha: float, rows: slice = slice(None)) -> torch.Tensor:
        _set_edited_head(edited, weight, column, alpha, "suppress")
        return edited.head(feats[rows]).double()

    grid = torch.linspace(0.0, float(alpha_max), n_grid, dtype=torch.float64)
    scan = torch.stack([logits_at(float(a)) for a in grid])  # (G, N, K); the head is left at alpha_max
    full = edited(images).double()
    if (full - scan[-1]).abs().max() > check_tol * max(1.0, float(full.abs().max())):
        raise RuntimeError("the edited model's forward differs from its head applied to its own features")
    out = {}
    for kind in EMPIRICAL_CRITERIA:
        g = _criterion(scan, target, kind)  # (G, N)
        below = g <= 0
        first = below.to(torch.int8).argmax(0)
        values = torch.full((len(images),), math.inf, dtype=torch.float64)
        values[below[0]] = 0.0
        for n in (below.any(0) & (first > 0)).nonzero().flatten().tolist():
            lo, hi = float(grid[first[n] - 1]), float(grid[first[n]])
            for _ in range(max_iter):
                if hi - lo <= rel_tol * hi:
                    break
                mid = 0.5 * (lo + hi)
                if float(_criterion(logits_at(mid, slice(n, n + 1))[0], target, kind)) > 0:
                    lo = mid
                else:
                    hi = mid
            values[n] = 0.5 * (lo + hi)
        out[kind] = values
    return out


# =========================================================================== tables


def alpha_crit_table(acts: "Activations", sae: SparseAutoencoder, features: dict[str, int],
                     model: SalveNet | None = None, images=None, image_size: int | None = None,
                     empirical_per_class: int = 0, strength_max: float = 8.0, n_grid: int = 33,
                     seed: int = 0) -> pd.DataFrame:
    """α_crit of every validation image for its class's feature: analytic, numerical, flip, and empirical.

    ``features`` maps class name -> latent (normally each class's dominant
    feature). The analytic, numerical and flip values come from the cached
    activations (:func:`alpha_crit`). The empirical values (logit zero and flip,
    :func:`empirical_alpha_crit` on the real edited model, grid up to
    ``strength_max`` in normalised strength with ``n_grid`` points) are measured
    for ``empirical_per_class`` images per class, drawn uniformly (seeded) among
    all the class's images -- without looking at any other estimate; NaN
    elsewhere. ``images`` is the validation :class:`~salve_utils.method.data.ImageSet` in
    the order of ``acts.val``.

    Returns
    -------
    DataFrame ``class, feature, sample, analytic, numerical, flip, empirical, max_abs_c, empirical_flip``
    (α units; multiply by ``max_abs_c`` for the normalised strength), rows by class then sample.
    """
    from .data import center_resize

    if empirical_per_class and (model is None or images is None):
        raise ValueError("empirical_per_class > 0 needs the model and the validation images")
    if images is not None and not torch.equal(images.labels, acts.val_labels):
        raise ValueError("images are not the validation set the activations were computed on "
                         "(labels differ); reload them with data.dataset_from_spec")
    image_size = image_size or acts.meta.get("size") or (images.size if images is not None else None)
    gen = torch.Generator().manual_seed(seed)
    frames = []
    for cls, feature in sorted(features.items()):
        k = acts.class_index(cls)
        idx = torch.nonzero(acts.val_labels == k).flatten()
        column = sae.decoder_column(int(feature)).detach()
        x = acts.val[idx]
        values = {m: alpha_crit(x, acts.weight, acts.bias, column, k, m).double() for m in ALPHA_CRIT_METHODS}
        empirical = {kind: torch.full((len(idx),), math.nan, dtype=torch.float64) for kind in EMPIRICAL_CRITERIA}
        pick = torch.randperm(len(idx), generator=gen)[:empirical_per_class].sort().values
        if len(pick):
            imgs = center_resize(images.images[idx[pick]], image_size)
            found = empirical_alpha_crit(model, column, imgs, k, strength_max / strength_scale(column), n_grid)
            for kind in EMPIRICAL_CRITERIA:
                empirical[kind][pick] = found[kind]
        frames.append(pd.DataFrame({
            "class": cls, "feature": int(feature), "sample": idx.numpy(),
            **{m: v.numpy() for m, v in values.items()},
            "empirical": empirical["zero"].numpy(), "max_abs_c": strength_scale(column),
            "empirical_flip": empirical["flip"].numpy(),
        }))
    return pd.concat(frames, ignore_index=True)[TABLE_COLUMNS]




def suppress_strength(acts: "Activations", sae: SparseAutoencoder, features: dict[str, int],
                      strengths: Sequence[float], target_accuracy: float = 0.05) -> dict[str, float]:
    r"""Per class: the first normalised strength at which suppressing its feature takes it to the target accuracy.

    For class ``k`` with feature ``l`` and the ``n_k`` validation images of class k:

    .. math::

        \mathrm{accuracy}_k(s) &= \frac{1}{n_k} \sum_n \mathbb{1}[\operatorname{argmax}_j
        y_j(a_n;\ \alpha = s / \max|c|) = k] \\
        \mathrm{suppress\_strength}_k &= \min \{ s \in \mathrm{strengths} :
        \mathrm{accuracy}_k(s) \le \mathrm{target\_accuracy} \}
        \qquad \text{(NaN if none)}

    -- the operating point of :func:`~salve_utils.method.editing.operating_points`, computed
    on the class's own images only (all a class's accuracy depends on), so a long
    grid costs little even with a hundred classes.

    Examples
    --------
    >>> suppress_strength(acts, sae, {"church": 35}, np.geomspace(0.01, 128, 161))   # doctest: +SKIP
    {'church': 53.9...}
    """
    s = np.asarray(list(strengths), dtype=np.float64)
    if s.ndim != 1 or not len(s) or not np.isfinite(s).all() or (s < 0).any() or (np.diff(s) <= 0).any():
        raise ValueError(f"strengths must be increasing, finite and >= 0, got {strengths!r}")
    out = {}
    for cls, feature in sorted(features.items()):
        k = acts.class_index(cls)
        column = sae.decoder_column(int(feature)).detach()
        logits = edit_logits(acts.val[acts.val_labels == k], acts.weight, acts.bias, column,
                             torch.as_tensor(s / strength_scale(column)))  # (S, n_k, K)
        accuracy = (logits.argmax(-1) == k).double().mean(1).numpy()
        hit = np.nonzero(accuracy <= target_accuracy)[0]
        out[cls] = float(s[hit[0]]) if len(hit) else math.nan
    return out


def alpha_crit_classes(table: pd.DataFrame, suppress_strength: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Per class: logit-zero and decision-flip α_crit side by side, with how many images have one at all.

    For each estimate (``zero``: the numerical logit-zero value; ``flip``: the
    decision flip), ``*_finite`` / ``*_infinite`` count the class's images with a
    finite / infinite value (``n`` = finite + infinite), and ``*_median`` is the
    median normalised strength ``α·max|c|`` over the finite values above 0 (images
    already at zero before any edit -- logit <= 0, or misclassified -- say nothing
    about the feature); NaN when there are none. ``flip_rank`` ranks the classes by
    ``flip_median`` (1 = most fragile; ties share the lower rank; missing when the
    median is NaN). ``suppress_strength`` is copied from ``suppress_strength``
    (class -> normalised strength at which suppressing the class's dominant
    feature takes it to the target accuracy: :func:`suppress_strength`, or the
    ``strength`` column of :func:`~salve_utils.method.editing.operating_points`; NaN when
    absent).

    Returns
    -------
    DataFrame with columns :data:`CLASS_COLUMNS`, sorted by ``flip_rank`` then class.
    """
    rows = []
    for cls, sub in table.groupby("class", sort=True):
        row = {"class": cls, "feature": int(sub["feature"].iloc[0]), "n": len(sub)}
        for name, column in (("zero", "numerical"), ("flip", "flip")):
            v = (sub[column] * sub["max_abs_c"]).to_numpy(dtype=float)
            finite = np.isfinite(v)
            positive = v[finite & (v > 0)]
            row.update({f"{name}_finite": int(finite.sum()), f"{name}_infinite": int((~finite).sum()),
                        f"{name}_median": float(np.median(positive)) if len(positive) else math.nan})
        rows.append(row)
    out = pd.DataFrame(rows)
    out["flip_rank"] = out["flip_median"].rank(method="min").astype("Int64")
    strengths = {str(k): float(v) for k, v in (suppress_strength or {}).items()}
    out["suppress_strength"] = [strengths.get(str(c), math.nan) for c in out["class"]]
    return out.sort_values(["flip_rank", "class"], na_position="last").reset_index(drop=True)[CLASS_COLUMNS]


def _spearman(x: pd.Series, y: pd.Series) -> float:
    """Spearman's rank correlation: Pearson's r of the average ranks (NaN when either is constant)."""
    rx, ry = x.rank().to_numpy(dtype=float), y.rank().to_numpy(dtype=float)
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def alpha_crit_spearman(classes: pd.DataFrame, min_classes: int = 3) -> dict[str, float | int]:
    """Does a class's α_crit track how hard it is to suppress? Rank correlation over classes.

    ``spearman_zero`` / ``spearman_flip``: Spearman's ρ between ``zero_median`` /
    ``flip_median`` and ``suppress_strength`` of :func:`alpha_crit_classes`, over
    the ``n_zero`` / ``n_flip`` classes where both are finite (NaN below
    ``min_classes``). ρ near +1: the threshold orders classes as the accuracy
    curves do (a small α_crit means a class that is easy to suppress).

    Examples
    --------
    >>> t = pd.DataFrame({"zero_median": [1.0, 2.0, 3.0, np.nan], "flip_median": [3.0, 2.0, 1.0, 0.5],
    ...                   "suppress_strength": [1.0, 2.0, 3.0, 4.0]})
    >>> alpha_crit_spearman(t)
    {'spearman_zero': 1.0, 'n_zero': 3, 'spearman_flip': -1.0, 'n_flip': 4}
    """
    out: dict[str, float | int] = {}
    for name in EMPIRICAL_CRITERIA:
        both = classes[np.isfinite(classes[f"{name}_median"].astype(float))
                       & np.isfinite(classes["suppress_strength"].astype(float))]
        rho = _spearman(both[f"{name}_median"], both["suppress_strength"]) if len(both) >= min_classes else math.nan
        out.update({f"spearman_{name}": rho, f"n_{name}": int(len(both))})
    return out


def alpha_crit_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per class: medians of each estimate as normalised strength, over the images that need an edit at all.

    Images whose target logit is already at or below zero (or, for ``flip``,
    that are already misclassified) have α_crit = 0; they say nothing about the
    feature and are counted in ``frac_zero`` instead of pulling the medians
    down. ``frac_never`` counts images whose logit never reaches zero. Classes
    are sorted from fragile (small median numerical α_crit) to redundant.
    """
    rows = []
    for cls, sub in table.groupby("class", sort=False):
        row = {"class": cls, "feature": int(sub["feature"].iloc[0]), "n": len(sub)}
        for m in ("analytic", "numerical", "flip", "empirical"):
            v = (sub[m] * sub["max_abs_c"]).to_numpy()
            v = v[np.isfinite(v) & (v > 0)]
            row[f"median_{m}"] = float(np.median(v)) if len(v) else float("nan")
        row["frac_zero"] = float((sub["numerical"] == 0).mean())
        row["frac_never"] = float(np.isinf(sub["numerical"]).mean())
        rows.append(row)
    return pd.DataFrame(rows).sort_values("median_numerical", na_position="last").reset_index(drop=True)



def _empirical_agreement(table: pd.DataFrame, reference: str, empirical: str, strength_max: float) -> dict:
    """Empirical vs exact values of one criterion over the images measured on the real model."""
    m = table.dropna(subset=[empirical]) if empirical in table else table.iloc[:0].assign(**{empirical: 0.0})
    ref, emp = m[reference].to_numpy(dtype=float), m[empirical].to_numpy(dtype=float)
    within = np.isfinite(ref) & (ref * m["max_abs_c"].to_numpy(dtype=float) <= strength_max * (1 + 1e-9))
    found = np.isfinite(emp)
    both = within & found & (ref > 0)
    rel = np.abs(emp[both] - ref[both]) / ref[both]
    mismatch = (within != found) | ((ref == 0) != (emp == 0))
    return {"n_empirical": int(len(m)), "n_compared": int(both.sum()), "n_mismatch": int(mismatch.sum()),
            "median_rel_diff": float(np.median(rel)) if len(rel) else math.nan,
            "max_rel_diff": float(rel.max()) if len(rel) else math.nan}


def alpha_crit_agreement(table: pd.DataFrame, rtol: float = 1e-4, strength_max: float = math.inf) -> dict[str, float]:
    """How the estimates agree: analytic vs numerical, and empirical vs exact for logit zero and for flip.

    ``n_finite`` images have a logit that starts positive and reaches zero;
    ``frac_exact``: the share of them with analytic = numerical (to ``rtol``). Where
    they differ, a clamp was hit before the root: clamping a positive contribution
    ``W_ij a_j`` lifts the exact logit above the straight line (analytic below the
    exact root, ``frac_analytic_below``), clamping a negative one lowers it
    (``frac_analytic_above``).

    Empirical vs exact, for logit zero (``empirical`` vs ``numerical``, no suffix)
    and decision flip (``empirical_flip`` vs ``flip``, suffix ``_flip``):
    ``n_empirical`` images measured on the real model; ``n_compared`` of them have
    both values finite and > 0, over which ``median_rel_diff`` / ``max_rel_diff`` of
    ``|empirical - exact| / exact`` are taken; ``n_mismatch`` images where the two
    disagree on whether there is a threshold at all (an exact value within the
    grid's top ``strength_max``, in normalised strength, but none found on the
    grid, or the reverse) or on whether it is 0.
    """
    finite = table[np.isfinite(table["numerical"]) & np.isfinite(table["analytic"]) & (table["numerical"] > 0)]
    exact = np.isclose(finite["analytic"], finite["numerical"], rtol=rtol, atol=0)
    differ = finite[~exact]
    n = max(1, len(finite))
    out = {"n_finite": int(len(finite)), "frac_exact": float(exact.mean()) if len(finite) else math.nan,
           "frac_analytic_below": float((differ["analytic"] < differ["numerical"]).sum() / n),
           "frac_analytic_above": float((differ["analytic"] > differ["numerical"]).sum() / n)}
    for suffix, reference, empirical in (("", "numerical", "empirical"), ("_flip", "flip", "empirical_flip")):
        out.update({f"{k}{suffix}": v for k, v in
                    _empirical_agreement(table, reference, empirical, strength_max).items()})
    return out


def analytic_ratio(table: pd.DataFrame, rtol: float = 1e-4) -> pd.DataFrame:
    """How tight the linear formula is: analytic / numerical α_crit per image whose logit reaches zero.

    Over images with a finite numerical value > 0: ``strength`` is the numerical
    α_crit as normalised strength ``α·max|c|``; ``ratio`` = analytic / numerical
    (∞ where the straight line never reaches zero although the exact logit does);
    ``exact`` marks ratio = 1 (to ``rtol``); ``before_kink`` marks roots before the
    first kink (``strength <= 1``), where the linear formula is exact by
    construction. Rows by class, then sample.
    """
    reach = table[np.isfinite(table["numerical"]) & (table["numerical"] > 0)]
    ratio = (reach["analytic"] / reach["numerical"]).to_numpy(dtype=float)
    strength = (reach["numerical"] * reach["max_abs_c"]).to_numpy(dtype=float)
    return pd.DataFrame({"class": reach["class"].to_numpy(), "sample": reach["sample"].to_numpy(),
                         "strength": strength, "ratio": ratio,
                         "exact": np.isclose(ratio, 1.0, rtol=rtol, atol=0),
                         "before_kink": strength <= 1.0 + 1e-12}).sort_values(["class", "sample"],
                                                                               ignore_index=True)
