"""Control: the permanent weight edit (the paper's Eq. 1) and the critical strength α_crit.

Notation: head ``y = W a + b`` with ``W`` (K classes, M dims); SAE feature ``l``
with decoder column ``c = D[:, l]`` (M,). The edit rescales every column j of
``W``, for every class row i, by a factor that depends only on ``|c_j|``::

    suppress:  w'_ij = w_ij · max(0, 1 - α |c_j|)
    enhance:   w'_ij = w_ij · (1 + α |c_j|)

The bias is unchanged. Only the head changes, so ``a(x)`` is fixed and every
α sweep can run exactly on cached activations: ``logits(α) = a W'(α)^T + b``.
:func:`_edit_factors` is the one place where the factor is computed.

>>> import torch
>>> W = torch.tensor([[1.0, 2.0], [3.0, 4.0]]); c = torch.tensor([0.5, -0.25])
>>> edit_weights(W, c, alpha=1.0)          # factors max(0, 1 - |c_j|) = (0.5, 0.75)
tensor([[0.5000, 1.5000],
        [1.5000, 3.0000]])
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .models import SalveNet, per_class_accuracy
from .sae import SparseAutoencoder, strength_scale

if TYPE_CHECKING:
    from .activations import Activations

__all__ = [
    "ALPHA_CRIT_METHODS",
    "DIRECTIONS",
    "accuracy_change",
    "alpha_crit",
    "alpha_crit_agreement",
    "alpha_crit_summary",
    "alpha_crit_table",
    "feature_curves",
    "operating_points",
    "permanence_check",
    "edit_curve",
    "edit_logits",
    "edit_model",
    "edit_weights",
    "empirical_alpha_crit",
    "per_class_accuracy",
    "target_and_others",
]

DIRECTIONS = ("suppress", "enhance")
ALPHA_CRIT_METHODS = ("analytic", "numerical", "flip")
_CHUNK_ELEMENTS = 1 << 22  # bound on the size of intermediate tensors (elements)


# =========================================================================== validation


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def _check_alphas(alphas: float | Sequence[float] | torch.Tensor, arg: str) -> torch.Tensor:
    """α values as a 1-D float64 tensor; each must be finite and >= 0."""
    t = torch.as_tensor(alphas, dtype=torch.float64).detach().cpu()
    if t.ndim > 1:
        raise ValueError(f"{arg} must be a number or a 1-D sequence, got shape {tuple(t.shape)}")
    t = t.reshape(-1)
    if t.numel() == 0:
        raise ValueError(f"{arg} must hold at least one value")
    if not torch.isfinite(t).all() or (t < 0).any():
        raise ValueError(f"{arg} must be finite and >= 0 (α is a strength), got {alphas!r}")
    return t


def _check_head(weight: torch.Tensor, decoder_column: torch.Tensor, bias: torch.Tensor | None = None,
                acts: torch.Tensor | None = None) -> None:
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise ValueError(f"weight must be the (K, M) head weight, got {getattr(weight, 'shape', type(weight))}")
    k, m = weight.shape
    if not isinstance(decoder_column, torch.Tensor) or decoder_column.shape != (m,):
        raise ValueError(f"decoder_column must have shape (M,) = ({m},), got {getattr(decoder_column, 'shape', None)}")
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (k,)):
        raise ValueError(f"bias must have shape (K,) = ({k},), got {getattr(bias, 'shape', None)}")
    if acts is not None and (not isinstance(acts, torch.Tensor) or acts.ndim != 2 or acts.shape[1] != m):
        raise ValueError(f"acts must have shape (N, M) with M={m}, got {getattr(acts, 'shape', None)}")


def _check_labels(labels: torch.Tensor, n: int, num_classes: int) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.shape != (n,) or labels.is_floating_point():
        raise ValueError(f"labels must be integer (N,) with N={n}, got {labels.dtype} {tuple(labels.shape)}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, K={num_classes})")
    return labels.long()


def _check_target(target: int, num_classes: int) -> int:
    if not isinstance(target, int) or isinstance(target, bool) or not 0 <= target < num_classes:
        raise ValueError(f"target must be a class index in [0, {num_classes}), got {target!r}")
    return target


# =========================================================================== the edit


def _edit_factors(decoder_column: torch.Tensor, alphas: torch.Tensor, direction: str) -> torch.Tensor:
    """Column factors of Eq. 1, shape (n_alpha, M): ``max(0, 1 - α|c_j|)`` or ``1 + α|c_j|``."""
    strength = alphas.to(torch.float64)[:, None] * decoder_column.detach().to(torch.float64).abs()[None, :]
    return (1.0 - strength).clamp_min(0.0) if direction == "suppress" else 1.0 + strength


def edit_weights(weight: torch.Tensor, decoder_column: torch.Tensor, alpha: float,
                 direction: str = "suppress") -> torch.Tensor:
    """The paper's Eq. 1: rescale every head column j by the feature's decoder entry ``|c_j|``.

    ::

        suppress:  w'_ij = w_ij · max(0, 1 - α |c_j|)
        enhance:   w'_ij = w_ij · (1 + α |c_j|)        for every class row i

    A pure function: ``weight`` is not modified.

    Parameters
    ----------
    weight : (K, M) head weight W
    decoder_column : (M,) ``c = D[:, l]`` of the feature
    alpha : strength α >= 0
    direction : ``"suppress"`` or ``"enhance"``

    Returns
    -------
    W' : (K, M), same dtype and device as ``weight``

    Examples
    --------
    >>> W = torch.ones(2, 3); c = torch.tensor([0.0, 0.5, 2.0])
    >>> edit_weights(W, c, 1.0)
    tensor([[1.0000, 0.5000, 0.0000],
            [1.0000, 0.5000, 0.0000]])
    >>> edit_weights(W, c, 1.0, "enhance")[0]
    tensor([1.0000, 1.5000, 3.0000])
    """
    _check_head(weight, decoder_column)
    _check_direction(direction)
    alphas = _check_alphas(alpha, "alpha")
    if alphas.numel() != 1:
        raise ValueError(f"alpha must be a single number, got {alphas.numel()} values")
    factors = _edit_factors(decoder_column, alphas, direction)[0]
    return weight * factors.to(dtype=weight.dtype, device=weight.device)


@torch.no_grad()
def _set_edited_head(model: SalveNet, weight: torch.Tensor, decoder_column: torch.Tensor, alpha: float,
                     direction: str) -> SalveNet:
    """Write ``edit_weights(weight, c, α)`` into ``model.head.weight`` in place; the bias is untouched."""
    model.head.weight.copy_(edit_weights(weight, decoder_column.to(weight.device), alpha, direction))
    return model


def edit_model(model: SalveNet, sae: SparseAutoencoder, feature: int, alpha: float,
               direction: str = "suppress") -> SalveNet:
    """A permanently edited copy of ``model``: its head weight is ``W'`` of Eq. 1 for SAE feature ``feature``.

    ``W' = edit_weights(W, D[:, feature], α, direction)``; the bias and the
    backbone are unchanged and no hooks are added, so the copy is an ordinary
    :class:`~salve_utils.models.SalveNet`: :func:`~salve_utils.models.save_model`
    and :func:`~salve_utils.models.load_model` keep the edit (permanence).
    ``model`` itself is not modified.

    Examples
    --------
    >>> edited = edit_model(model, sae, feature=7, alpha=2.0)          # doctest: +SKIP
    >>> save_model(edited, "edited.pt")                                # doctest: +SKIP
    """
    column = sae.decoder_column(feature)
    if column.numel() != model.head.in_features:
        raise ValueError(f"sae: d_in={column.numel()} does not match the model's head width {model.head.in_features}")
    edited = copy.deepcopy(model)
    return _set_edited_head(edited, model.head.weight.detach(), column, alpha, direction)


# =========================================================================== sweeps on cached activations


def edit_logits(acts: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, decoder_column: torch.Tensor,
                alphas: float | Sequence[float] | torch.Tensor, direction: str = "suppress") -> torch.Tensor:
    """Logits of the edited head for many α at once: ``logits[α, n, i] = Σ_j a_nj w'_ij(α) + b_i``.

    Exact, because the edit leaves ``a(x)`` unchanged. Computed as an einsum over
    stacks of edited weights, chunked over α to bound memory.

    Parameters
    ----------
    acts : (N, M) cached activations ``a(x)``
    weight, bias : the unedited head ``W`` (K, M) and ``b`` (K,)
    decoder_column : (M,) ``c = D[:, l]``
    alphas : α values (>= 0)
    direction : ``"suppress"`` or ``"enhance"``

    Returns
    -------
    (n_alpha, N, K) tensor in ``acts``' dtype

    Examples
    --------
    >>> a = torch.randn(5, 3); W = torch.randn(2, 3); b = torch.zeros(2); c = torch.rand(3)
    >>> edit_logits(a, W, b, c, [0.0, 1.0]).shape
    torch.Size([2, 5, 2])
    >>> torch.allclose(edit_logits(a, W, b, c, [0.0])[0], a @ W.T + b)
    True
    """
    _check_head(weight, decoder_column, bias, acts)
    _check_direction(direction)
    alphas = _check_alphas(alphas, "alphas")
    dtype, device = acts.dtype, acts.device
    weight, bias = weight.detach().to(dtype=dtype, device=device), bias.detach().to(dtype=dtype, device=device)
    factors = _edit_factors(decoder_column, alphas, direction).to(dtype=dtype, device=device)
    out = torch.empty(len(alphas), acts.shape[0], weight.shape[0], dtype=dtype, device=device)
    step = max(1, _CHUNK_ELEMENTS // weight.numel())
    for s in range(0, len(alphas), step):
        edited = factors[s : s + step, None, :] * weight[None]  # (a, K, M): W'(α) for a chunk of α
        out[s : s + step] = torch.einsum("nm,akm->ank", acts.detach(), edited) + bias
    return out


def edit_curve(acts: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
               decoder_column: torch.Tensor, alphas: float | Sequence[float] | torch.Tensor,
               direction: str = "suppress", classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-class accuracy and mean target logit as the edit strength α grows (cached activations).

    For each α and class k (samples ``n`` with ``y_n = k``)::

        accuracy(α, k)          = mean_n [argmax_i logits_i(a_n; α) == k]
        mean_target_logit(α, k) = mean_n logits_k(a_n; α),
        logits(a; α) = W'(α) a + b          (W' from Eq. 1, see :func:`edit_logits`)

    Parameters
    ----------
    acts : (N, M) cached activations; labels : (N,) class indices
    weight, bias : the unedited head; decoder_column : (M,) ``c = D[:, l]``
    alphas : α values (>= 0); direction : ``"suppress"`` or ``"enhance"``
    classes : optional names for the ``class`` column

    Returns
    -------
    DataFrame ``alpha, class, accuracy, mean_target_logit, n``: one row per α and
    class that has samples.

    Examples
    --------
    >>> a = torch.rand(20, 4); y = torch.arange(20) % 2; W = torch.randn(2, 4)
    >>> df = edit_curve(a, y, W, torch.zeros(2), torch.rand(4), [0.0, 1.0, 10.0])
    >>> df.shape
    (6, 5)
    """
    _check_head(weight, decoder_column, bias, acts)
    num_classes = weight.shape[0]
    labels = _check_labels(labels, acts.shape[0], num_classes).to(acts.device)
    names = list(classes) if classes is not None else list(range(num_classes))
    if len(names) != num_classes:
        raise ValueError(f"classes must name all K={num_classes} classes, got {len(names)}")
    alphas = _check_alphas(alphas, "alphas")
    step = max(1, _CHUNK_ELEMENTS // max(1, acts.shape[0] * num_classes))
    onehot = F.one_hot(labels, num_classes).to(torch.float64)
    counts = onehot.sum(0)
    acc, target_logit = [], []
    for s in range(0, len(alphas), step):
        logits = edit_logits(acts, weight, bias, decoder_column, alphas[s : s + step], direction)
        acc.append(per_class_accuracy(logits, labels)[0])  # labels checked above
        own = logits.gather(-1, labels[None, :, None].expand(len(logits), -1, 1))[..., 0].to(torch.float64)
        target_logit.append(own @ onehot / counts)
    acc_t, logit_t = torch.cat(acc).cpu(), torch.cat(target_logit).cpu()
    frame = pd.DataFrame({
        "alpha": alphas.repeat_interleave(num_classes).numpy(),
        "class": names * len(alphas),
        "accuracy": acc_t.reshape(-1).numpy(),
        "mean_target_logit": logit_t.reshape(-1).numpy(),
        "n": counts.long().cpu().repeat(len(alphas)).numpy(),
    })
    return frame[frame["n"] > 0].reset_index(drop=True)


# =========================================================================== α_crit


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

    Examples
    --------
    >>> a = torch.tensor([[1.0, 1.0]]); W = torch.tensor([[4.0, -3.0]]); b = torch.tensor([0.2])
    >>> c = torch.tensor([1.0, 0.5])   # kinks at α = 1 and 2; y(α) dips below 0 and comes back
    >>> alpha_crit(a, W, b, c, target=0, method="numerical")
    tensor([0.4800], dtype=torch.float64)
    >>> alpha_crit(a, W, b, c, target=0, method="analytic")   # y / R = 1.2 / 2.5
    tensor([0.4800], dtype=torch.float64)
    """
    _check_head(weight, decoder_column, bias, acts)
    target = _check_target(target, weight.shape[0])
    if method not in ALPHA_CRIT_METHODS:
        raise ValueError(f"method must be one of {ALPHA_CRIT_METHODS}, got {method!r}")
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
        logits = edit_logits(chunk, weight[rows], bias[rows], c, kinks, "suppress")  # (T, n, 1 or K)
        h = logits if method == "numerical" else logits[..., target : target + 1] - logits[..., others]
        out.append(_first_root(kinks, h))
    return torch.cat(out)


def _bisect_first_negative(f: Callable[[float], float], f0: float, reference: float, scale: float,
                           rel_tol: float, max_iter: int) -> float:
    """Bisection for a sign change of ``f`` (``f(0) = f0 > 0``) in a bracket grown around ``reference``."""
    half = 8 * rel_tol * (reference if reference > 0 else scale)
    lo, hi = max(reference - half, 0.0), reference + half
    f_lo = f0 if lo == 0 else f(lo)
    hi_known_negative = False
    for _ in range(max_iter):  # root below lo: the old lo becomes hi, lo moves down
        if f_lo > 0:
            break
        hi, lo, hi_known_negative = lo, max(reference - 2 * (reference - lo), 0.0), True
        f_lo = f0 if lo == 0 else f(lo)
    else:
        return math.nan
    if not hi_known_negative:
        for _ in range(max_iter):  # root above hi: the old hi becomes lo, hi moves up
            if f(hi) <= 0:
                break
            lo, hi = hi, reference + 2 * (hi - reference)
        else:
            return math.nan
    for _ in range(max_iter):
        if hi - lo <= rel_tol * hi:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


@torch.no_grad()
def empirical_alpha_crit(model: SalveNet, decoder_column: torch.Tensor, images: torch.Tensor, target: int,
                         reference: torch.Tensor, rel_tol: float = 1e-4, max_iter: int = 40) -> torch.Tensor:
    """α_crit measured on the real network: edit the model, run each image end to end, bisect on α.

    For image x, finds α with ``y_i(x; α) = 0`` where ``y_i`` is the target logit of
    the *whole* edited network (a copy of ``model`` whose head carries ``W'(α)``
    from Eq. 1; the backbone recomputes ``a(x)`` every time). The bracket starts
    at ``reference ± 8·rel_tol·reference`` (normally :func:`alpha_crit` with
    ``method="numerical"``) and doubles until the logit changes sign; bisection
    then stops at relative width ``rel_tol``. This is a *check* of the
    cached-activation value: bisection finds a root inside the bracket, which is
    the first root when the reference is right.

    Conventions: ∞ where ``reference`` is ∞ (not searched); 0 where the unedited
    target logit is already <= 0; NaN where no sign change was found within
    ``max_iter`` doublings (a disagreement with the reference).

    Cost: one batched forward for α = 0, then about ``log2(16)+2`` single-image
    forwards per image; use a subset of images on a CPU.

    Parameters
    ----------
    model : the unedited :class:`~salve_utils.models.SalveNet` (not modified)
    decoder_column : (M,) ``c = D[:, l]``
    images : (N, 3, H, W) float images in [0, 1]
    target : class index i
    reference : (N,) reference α values
    rel_tol : relative width at which bisection stops
    max_iter : cap on bracket doublings and on bisection steps

    Returns
    -------
    (N,) float64 tensor

    Examples
    --------
    >>> ref = alpha_crit(acts, W, b, c, target, "numerical")                # doctest: +SKIP
    >>> emp = empirical_alpha_crit(model, c, images, target, ref)           # doctest: +SKIP
    """
    weight = model.head.weight.detach().clone()
    _check_head(weight, decoder_column)
    target = _check_target(target, weight.shape[0])
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a (N, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    reference = torch.as_tensor(reference, dtype=torch.float64)
    if reference.shape != (images.shape[0],) or (reference < 0).any() or reference.isnan().any():
        raise ValueError(f"reference must be (N,) = ({images.shape[0]},) values >= 0, got {tuple(reference.shape)}")
    if not 0 < rel_tol < 1:
        raise ValueError(f"rel_tol must be in (0, 1), got {rel_tol!r}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    device = weight.device
    edited = copy.deepcopy(model).eval()
    images = images.to(device)
    f0 = edited(images)[:, target].double().cpu()  # α = 0: the unedited head, one batch
    scale = 1.0 / max(float(decoder_column.abs().max()), 1e-30)

    def target_logit(n: int, alpha: float) -> float:
        _set_edited_head(edited, weight, decoder_column, alpha, "suppress")
        return float(edited(images[n : n + 1])[0, target])

    out = torch.full((len(images),), math.nan, dtype=torch.float64)
    for n in range(len(images)):
        ref = float(reference[n])
        if math.isinf(ref):
            out[n] = math.inf
        elif f0[n] <= 0:
            out[n] = 0.0
        else:
            out[n] = _bisect_first_negative(lambda a, n=n: target_logit(n, a), float(f0[n]), ref, scale,
                                            rel_tol, max_iter)
    return out


# =========================================================================== report-level helpers


def feature_curves(acts: "Activations", sae: SparseAutoencoder, roles: dict[str, int],
                   strengths: Sequence[float], direction: str = "suppress", split: str = "val") -> pd.DataFrame:
    """:func:`edit_curve` for several features at once, on a normalised strength axis.

    Each feature ``l`` is swept over the same normalised strengths
    ``s = α · max_j |c_j|`` (so ``α = s / max_j |D_{j,l}|``), which makes curves of
    different features and different SAEs comparable.

    Parameters
    ----------
    acts : cached activations with the head (:class:`~salve_utils.activations.Activations`)
    sae : the autoencoder whose decoder columns define the edits
    roles : label -> latent index, e.g. ``{"dominant:church": 12, "tower": 40}``
    strengths : normalised strengths ``s >= 0``
    direction : "suppress" or "enhance"

    Returns
    -------
    DataFrame ``feature_role, feature, direction, strength, alpha, class, accuracy, mean_target_logit, n``.
    """
    x, labels = acts.split(split)
    s = np.asarray(list(strengths), dtype=np.float64)
    frames = []
    for role, feature in roles.items():
        column = sae.decoder_column(int(feature)).detach()
        scale = strength_scale(column)
        df = edit_curve(x, labels, acts.weight, acts.bias, column, torch.as_tensor(s / scale), direction,
                        acts.classes)
        df.insert(0, "strength", np.repeat(s, len(df) // len(s)))  # the requested values, exactly
        df.insert(0, "direction", direction)
        df.insert(0, "feature", int(feature))
        df.insert(0, "feature_role", role)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def operating_points(curves: pd.DataFrame, target_accuracy: float = 0.05) -> pd.DataFrame:
    """For each ``dominant:<class>`` suppression curve: the first strength where ``<class>`` falls to the target.

    Returns one row per class: ``class, feature, strength, alpha`` (NaN when the
    sweep never gets there), ``target_accuracy`` (reached, or the lowest seen),
    and at that strength ``others_accuracy`` (mean over the other classes),
    ``others_worst`` (their minimum) and ``others_baseline`` (their mean before
    the edit). This is how "the target falls to ≈0% while the others stay" is
    measured.
    """
    rows = []
    sup = curves[(curves["direction"] == "suppress") & curves["feature_role"].str.startswith("dominant:")]
    for role, sub in sup.groupby("feature_role", sort=False):
        target = role.split(":", 1)[1]
        tgt = sub[sub["class"] == target].sort_values("strength")
        hit = tgt[tgt["accuracy"] <= target_accuracy]
        others = sub[sub["class"] != target]
        base = others[others["strength"] == others["strength"].min()]["accuracy"].mean()
        if len(hit):
            s = float(hit["strength"].iloc[0])
            at = others[others["strength"] == s]["accuracy"]
            rows.append({"class": target, "feature": int(sub["feature"].iloc[0]), "strength": s,
                         "alpha": float(hit["alpha"].iloc[0]), "target_accuracy": float(hit["accuracy"].iloc[0]),
                         "others_accuracy": float(at.mean()), "others_worst": float(at.min()),
                         "others_baseline": float(base)})
        else:
            rows.append({"class": target, "feature": int(sub["feature"].iloc[0]), "strength": float("nan"),
                         "alpha": float("nan"), "target_accuracy": float(tgt["accuracy"].min()),
                         "others_accuracy": float("nan"), "others_worst": float("nan"),
                         "others_baseline": float(base)})
    return pd.DataFrame(rows)


def accuracy_change(curves: pd.DataFrame, at_strength: float) -> pd.DataFrame:
    """Per feature, direction and class: accuracy before the edit, at ``at_strength`` (the nearest swept
    strength not above it), and the change."""
    rows = []
    for (role, direction), sub in curves.groupby(["feature_role", "direction"], sort=False):
        swept = np.sort(sub["strength"].unique())
        s = swept[swept <= at_strength * (1 + 1e-9) + 1e-12].max()
        before = sub[sub["strength"] == swept.min()].set_index("class")["accuracy"]
        after = sub[sub["strength"] == s].set_index("class")["accuracy"]
        for cls in before.index:
            rows.append({"feature_role": role, "direction": direction, "class": cls, "strength": float(s),
                         "before": float(before[cls]), "after": float(after[cls]),
                         "change": float(after[cls] - before[cls])})
    return pd.DataFrame(rows)


def target_and_others(change: pd.DataFrame) -> pd.DataFrame:
    """Summarise the K x K accuracy-change matrix of ``dominant:<class>`` edits: one row per edited class.

    ``change`` is :func:`accuracy_change` of every class's dominant-feature edit.
    Returns ``class, direction, target_change`` (the edited class's own change),
    ``others_mean`` and ``others_worst`` (mean and minimum change of the K - 1 other
    classes): how a hundred-class matrix reads in three columns.
    """
    rows = []
    dom = change[change["feature_role"].str.startswith("dominant:")]
    for (role, direction), sub in dom.groupby(["feature_role", "direction"], sort=False):
        target = role.split(":", 1)[1]
        own = sub.set_index("class")["change"]
        others = own.drop(target)
        rows.append({"class": target, "direction": direction, "target_change": float(own[target]),
                     "others_mean": float(others.mean()), "others_worst": float(others.min())})
    return pd.DataFrame(rows)


def permanence_check(model: SalveNet, sae: SparseAutoencoder, feature: int, strength: float,
                     images: torch.Tensor, tolerance: float = 1e-4) -> dict[str, float]:
    """Edit ``model`` permanently, save it, reload it, and compare logits on ``images``.

    Returns ``max_abs_diff`` (edited model in memory vs reloaded from disk),
    ``max_abs_diff_formula`` (reloaded model vs ``a(x) W'^T + b`` computed from the
    unedited model's features), ``hooks`` (forward hooks on the reloaded model),
    ``bytes`` (checkpoint size), ``n_images`` and ``alpha``. Raises an
    ``AssertionError`` when either difference exceeds ``tolerance`` or a hook is
    present: the edit must live in the weights alone.
    """
    import tempfile

    from .models import load_model, save_model

    column = sae.decoder_column(int(feature)).detach()
    alpha = float(strength) / strength_scale(column)
    edited = edit_model(model, sae, int(feature), alpha, "suppress").eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(edited, Path(tmp) / "edited.pt")
        size = path.stat().st_size
        reloaded = load_model(path).eval()
    with torch.no_grad():
        before = edited(images)
        after = reloaded(images)
        formula = model.features(images) @ edit_weights(model.head.weight, column, alpha).T + model.head.bias
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in reloaded.modules())
    out = {"max_abs_diff": float((before - after).abs().max()),
           "max_abs_diff_formula": float((after - formula).abs().max()),
           "hooks": hooks, "bytes": size, "n_images": len(images), "alpha": alpha}
    assert out["max_abs_diff"] <= tolerance and out["max_abs_diff_formula"] <= tolerance and hooks == 0, out
    return out


def alpha_crit_table(acts: "Activations", sae: SparseAutoencoder, features: dict[str, int],
                     model: SalveNet | None = None, images=None, image_size: int | None = None,
                     empirical_per_class: int = 0, seed: int = 0) -> pd.DataFrame:
    """α_crit of every validation image for its class's feature: analytic, numerical, flip, empirical.

    ``features`` maps class name -> latent (normally each class's dominant
    feature). The empirical value (edited real model, bisection) is computed for
    ``empirical_per_class`` images per class, chosen reproducibly among those with
    a finite numerical value; it is NaN elsewhere. ``images`` is the validation
    :class:`~salve_utils.data.ImageSet` in the order of ``acts.val``.

    Returns
    -------
    DataFrame ``class, feature, sample, analytic, numerical, flip, empirical, max_abs_c`` (α units;
    multiply by ``max_abs_c`` for the normalised strength).
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
    for cls, feature in features.items():
        k = acts.class_index(cls)
        idx = torch.nonzero(acts.val_labels == k).flatten()
        column = sae.decoder_column(int(feature)).detach()
        x = acts.val[idx]
        values = {m: alpha_crit(x, acts.weight, acts.bias, column, k, m) for m in ALPHA_CRIT_METHODS}
        empirical = torch.full((len(idx),), float("nan"), dtype=torch.float64)
        if empirical_per_class:
            finite = torch.nonzero(torch.isfinite(values["numerical"]) & (values["numerical"] > 0)).flatten()
            pick = finite[torch.randperm(len(finite), generator=gen)[:empirical_per_class]].sort().values
            if len(pick):
                imgs = center_resize(images.images[idx[pick]], image_size)
                empirical[pick] = empirical_alpha_crit(model, column, imgs, k, values["numerical"][pick]).double()
        frames.append(pd.DataFrame({
            "class": cls, "feature": int(feature), "sample": idx.numpy(),
            **{m: v.double().numpy() for m, v in values.items()},
            "empirical": empirical.numpy(), "max_abs_c": strength_scale(column),
        }))
    return pd.concat(frames, ignore_index=True)[
        ["class", "feature", "sample", "analytic", "numerical", "flip", "empirical", "max_abs_c"]]


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


def alpha_crit_agreement(table: pd.DataFrame, rtol: float = 1e-4) -> dict[str, float]:
    """How the three estimates agree over images whose logit starts positive and reaches zero.

    ``frac_exact``: share with analytic = numerical (to ``rtol``). Where they
    differ, a clamp was hit before the root: clamping a positive contribution
    ``W_ij a_j`` lifts the exact logit above the straight line (analytic below
    the exact root, ``frac_analytic_below``), clamping a negative one lowers it
    (``frac_analytic_above``). ``median_rel_diff`` / ``max_rel_diff``:
    |empirical - numerical| / numerical over the ``n_empirical`` images measured
    on the real edited model.
    """
    finite = table[np.isfinite(table["numerical"]) & np.isfinite(table["analytic"]) & (table["numerical"] > 0)]
    exact = np.isclose(finite["analytic"], finite["numerical"], rtol=rtol, atol=0)
    differ = finite[~exact]
    emp = table.dropna(subset=["empirical"])
    emp = emp[np.isfinite(emp["numerical"]) & (emp["numerical"] > 0)]
    rel = ((emp["empirical"] - emp["numerical"]).abs() / emp["numerical"]).to_numpy()
    n = max(1, len(finite))
    return {"n_finite": int(len(finite)), "frac_exact": float(exact.mean()) if len(finite) else float("nan"),
            "frac_analytic_below": float((differ["analytic"] < differ["numerical"]).sum() / n),
            "frac_analytic_above": float((differ["analytic"] > differ["numerical"]).sum() / n),
            "n_empirical": int(len(emp)), "median_rel_diff": float(np.median(rel)) if len(rel) else float("nan"),
            "max_rel_diff": float(rel.max()) if len(rel) else float("nan")}
