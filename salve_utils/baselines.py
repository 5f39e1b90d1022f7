"""Baselines for the SALVE edit (beyond the paper, which compares only qualitatively).

* activation steering at inference time (the edit is not in the weights);
* a ROME-style rank-one edit of the head (Meng et al., 2022), keyed on the target class;
* zeroing the target's head row (a floor);
* :func:`score_edit`, the common scorecard: efficacy, specificity, edit size, overhead.

>>> import torch
>>> W = torch.eye(3); zero_row(W, 1)[1].tolist()
[0.0, 0.0, 0.0]
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd
import torch

from .editing import _check_labels, _check_target, edit_weights, per_class_accuracy
from .sae import SparseAutoencoder, strength_scale

if TYPE_CHECKING:
    from .activations import Activations

__all__ = [
    "compare_methods",
    "rome_edit",
    "rome_suppress",
    "score_edit",
    "steer_activations",
    "zero_row",
]


def _check_weight(weight: torch.Tensor) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise ValueError(f"weight must be the (K, M) head weight, got {getattr(weight, 'shape', type(weight))}")
    return weight


@torch.no_grad()
def steer_activations(acts: torch.Tensor, sae: SparseAutoencoder, feature: int, alpha: float) -> torch.Tensor:
    """Inference-time steering along a feature: ``a <- a - α z_l(a) D[:, l]``.

    The head is untouched; the edit must be applied to every input at
    inference (an overhead, and not persistent). ``α > 0`` removes the
    feature's contribution in proportion to how strongly it fires (α = 1 removes
    it from the reconstruction); ``α < 0`` amplifies it.

    Examples
    --------
    >>> sae = SparseAutoencoder(4, 2); a = torch.randn(3, 4)
    >>> steer_activations(a, sae, feature=0, alpha=0.0).equal(a)
    True
    """
    if not isinstance(acts, torch.Tensor) or acts.ndim != 2 or acts.shape[1] != sae.d_in:
        raise ValueError(f"acts must be (N, d_in={sae.d_in}), got {getattr(acts, 'shape', type(acts))}")
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha!r}")
    column = sae.decoder_column(feature).to(acts)
    z = sae.encode(acts)[:, feature]
    return acts - alpha * z[:, None] * column[None, :]


def rome_edit(weight: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Rank-one edit that maps ``key`` to ``value`` with the least change on typical inputs (ROME).

    ::

        W' = W + (v* - W k*) (C^-1 k*)^T / (k*^T C^-1 k*)

    so ``W' k* = v*`` while inputs ``x`` with ``x^T C^-1 k* = 0`` keep ``W' x = W x``.

    Parameters
    ----------
    weight : (K, M) head weight W
    key : (M,) k*; value : (K,) v*
    cov : (M, M) symmetric positive-definite ``C = E[a a^T]``

    Examples
    --------
    >>> W = torch.eye(2); k = torch.tensor([1.0, 0.0]); v = torch.tensor([0.0, 5.0])
    >>> rome_edit(W, k, v, torch.eye(2)) @ k
    tensor([0., 5.])
    """
    weight = _check_weight(weight)
    k, m = weight.shape
    if not isinstance(key, torch.Tensor) or key.shape != (m,):
        raise ValueError(f"key must have shape (M,) = ({m},), got {getattr(key, 'shape', None)}")
    if not isinstance(value, torch.Tensor) or value.shape != (k,):
        raise ValueError(f"value must have shape (K,) = ({k},), got {getattr(value, 'shape', None)}")
    if not isinstance(cov, torch.Tensor) or cov.shape != (m, m):
        raise ValueError(f"cov must have shape (M, M) = ({m}, {m}), got {getattr(cov, 'shape', None)}")
    w, key64 = weight.detach().double(), key.detach().double().to(weight.device)
    u = torch.linalg.solve(cov.detach().double().to(weight.device), key64)  # C^-1 k*
    denom = key64 @ u
    if not denom > 0:
        raise ValueError("cov must be positive definite (k*^T C^-1 k* <= 0)")
    residual = value.detach().double().to(weight.device) - w @ key64
    return (w + torch.outer(residual, u) / denom).to(weight.dtype)


def rome_suppress(weight: torch.Tensor, bias: torch.Tensor, train_acts: torch.Tensor, train_labels: torch.Tensor,
                  target: int, margin: float = 1.0, ridge: float = 1e-4) -> torch.Tensor:
    """ROME-style suppression of class ``target``: its mean activation stops being classified as ``target``.

    Key ``k*`` = mean training activation of the target class; ``C = E[a a^T]``
    over the training set plus ``ridge · tr(C)/M · I`` for stability; value
    ``v* = W k*`` except ``v*_i = max_{k != i} (W k* + b)_k - b_i - margin``, so
    that after :func:`rome_edit` the target logit of ``k*`` is ``margin`` below
    the best other class.

    Examples
    --------
    >>> W2 = rome_suppress(W, b, train_acts, train_labels, target=3)     # doctest: +SKIP
    """
    weight = _check_weight(weight)
    num_classes, m = weight.shape
    target = _check_target(target, num_classes)
    if not isinstance(bias, torch.Tensor) or bias.shape != (num_classes,):
        raise ValueError(f"bias must have shape (K,) = ({num_classes},), got {getattr(bias, 'shape', None)}")
    if not isinstance(train_acts, torch.Tensor) or train_acts.ndim != 2 or train_acts.shape[1] != m:
        raise ValueError(f"train_acts must be (N, M={m}), got {getattr(train_acts, 'shape', None)}")
    labels = _check_labels(train_labels, train_acts.shape[0], num_classes).to(train_acts.device)
    if not (labels == target).any():
        raise ValueError(f"train_labels hold no sample of target class {target}")
    if not margin >= 0 or not ridge >= 0:
        raise ValueError(f"margin and ridge must be >= 0, got margin={margin!r}, ridge={ridge!r}")
    a = train_acts.detach().double()
    key = a[labels == target].mean(0)
    cov = a.T @ a / len(a)
    cov += ridge * torch.trace(cov) / m * torch.eye(m, dtype=cov.dtype, device=cov.device)
    w, b = weight.detach().double().to(a.device), bias.detach().double().to(a.device)
    value = w @ key
    others = torch.cat([value[:target] + b[:target], value[target + 1 :] + b[target + 1 :]])
    value[target] = others.max() - b[target] - margin
    return rome_edit(w, key, value, cov).to(dtype=weight.dtype, device=weight.device)


def zero_row(weight: torch.Tensor, target: int) -> torch.Tensor:
    """A copy of ``W`` with the target's row set to 0 (its logit becomes the bias ``b_i``): a floor.

    Examples
    --------
    >>> zero_row(torch.ones(2, 2), 0)
    tensor([[0., 0.],
            [1., 1.]])
    """
    weight = _check_weight(weight)
    target = _check_target(target, weight.shape[0])
    out = weight.detach().clone()
    out[target] = 0
    return out


def score_edit(logits_before: torch.Tensor, logits_after: torch.Tensor, labels: torch.Tensor, target: int | str,
               weight_before: torch.Tensor | None = None, weight_after: torch.Tensor | None = None,
               overhead_s: float = 0.0, classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Scorecard of an edit on a labelled evaluation set.

    * ``efficacy`` = acc_before(i) - acc_after(i) for the target class i (higher = stronger edit)
    * ``specificity_mean`` = mean over k != i of acc_after(k) - acc_before(k) (0 = no collateral)
    * ``specificity_worst`` = the most negative such change, and ``worst_class`` its class
    * ``edit_size`` = ``||W_after - W_before||_F`` when both weights are given, else NaN
    * ``overhead_s`` = extra inference time, passed through (steering pays it; weight edits do not)

    Per-class accuracies are the fractions of samples of class k predicted as k.
    ``target`` may be a name when ``classes`` is given.

    Examples
    --------
    >>> before = torch.tensor([[2.0, 0.0], [0.0, 2.0]]); after = torch.tensor([[0.0, 2.0], [0.0, 2.0]])
    >>> s = score_edit(before, after, torch.tensor([0, 1]), target=0)
    >>> s["efficacy"], s["specificity_mean"]
    (1.0, 0.0)
    """
    if not isinstance(logits_before, torch.Tensor) or logits_before.ndim != 2:
        raise ValueError(f"logits_before must be (N, K), got {getattr(logits_before, 'shape', None)}")
    if not isinstance(logits_after, torch.Tensor) or logits_after.shape != logits_before.shape:
        raise ValueError(f"logits_after must have the shape of logits_before {tuple(logits_before.shape)}, "
                         f"got {getattr(logits_after, 'shape', None)}")
    num_classes = logits_before.shape[1]
    names = list(classes) if classes is not None else list(range(num_classes))
    if len(names) != num_classes:
        raise ValueError(f"classes must name all K={num_classes} classes, got {len(names)}")
    if isinstance(target, str):
        if target not in names:
            raise ValueError(f"target: unknown class {target!r}; valid names: {', '.join(map(str, names))}")
        target = names.index(target)
    target = _check_target(target, num_classes)
    acc_before, counts = per_class_accuracy(logits_before, labels)
    acc_after, _ = per_class_accuracy(logits_after, labels)
    change = acc_after - acc_before
    others = [k for k in range(num_classes) if k != target and counts[k] > 0]
    worst = min(others, key=lambda k: float(change[k])) if others else None
    edit_size = math.nan
    if weight_before is not None and weight_after is not None:
        if weight_before.shape != weight_after.shape:
            raise ValueError(f"weight_after must have the shape of weight_before {tuple(weight_before.shape)}")
        edit_size = float((weight_after.detach().double() - weight_before.detach().double()).norm())
    return {
        "target": names[target],
        "efficacy": float(acc_before[target] - acc_after[target]),
        "target_acc_before": float(acc_before[target]),
        "target_acc_after": float(acc_after[target]),
        "specificity_mean": float(change[others].mean()) if others else math.nan,
        "specificity_worst": float(change[worst]) if others else math.nan,
        "worst_class": names[worst] if others else None,
        "edit_size": edit_size,
        "overhead_s": float(overhead_s),
    }


def compare_methods(acts: "Activations", sae: SparseAutoencoder, feature: int, target: int | str,
                    strength: float, steering_strengths: Sequence[float] | None = None) -> pd.DataFrame:
    """Score SALVE's permanent edit against the baselines on one target class, on cached activations.

    * **SALVE** — Eq. 1 at normalised strength ``strength`` (``α = strength / max_j |c_j|``);
    * **steering** — inference-time ``a ← a − α z_l(a) D[:, l]``, at the smallest α of
      ``steering_strengths`` (same normalisation) whose target accuracy is no higher
      than SALVE's: the two are compared at matched efficacy;
    * **ROME-style** rank-one edit (:func:`rome_suppress`, train-set statistics);
    * **zero row** — the target's head row set to zero, a floor.

    Every method is scored by :func:`score_edit`; ``overhead_s`` is the extra time
    per validation pass (only steering changes inference). Returns one row per method.
    """
    k = acts.class_index(target)
    column = sae.decoder_column(int(feature)).detach()
    scale = strength_scale(column)
    w, b, x, y = acts.weight, acts.bias, acts.val, acts.val_labels
    before = x @ w.T + b

    def timed(fn):
        start = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - start

    _, t_plain = timed(lambda: x @ w.T + b)
    rows = []
    w_salve = edit_weights(w, column, strength / scale)
    rows.append({"method": "SALVE (permanent)", **score_edit(before, x @ w_salve.T + b, y, k, w, w_salve,
                                                              classes=acts.classes)})
    salve_target = rows[0]["target_acc_after"]
    grid = steering_strengths if steering_strengths is not None else [0.25 * i for i in range(1, 81)]
    for s in grid:
        with torch.no_grad():
            steered, t = timed(lambda: steer_activations(x, sae, feature, s / scale) @ w.T + b)
        score = score_edit(before, steered, y, k, classes=acts.classes, overhead_s=max(0.0, t - t_plain))
        if score["target_acc_after"] <= salve_target or s == grid[-1]:
            rows.append({"method": f"activation steering (strength {s:g})", **score})
            break
    w_rome = rome_suppress(w, b, acts.train, acts.train_labels, k)
    rows.append({"method": "ROME-style rank-one", **score_edit(before, x @ w_rome.T + b, y, k, w, w_rome,
                                                                classes=acts.classes)})
    w_zero = zero_row(w, k)
    rows.append({"method": "zero the target row", **score_edit(before, x @ w_zero.T + b, y, k, w, w_zero,
                                                                classes=acts.classes)})
    return pd.DataFrame(rows)
