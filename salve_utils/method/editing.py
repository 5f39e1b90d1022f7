r"""Control: the permanent weight edit (the paper's Eq. 1) and its sweeps on cached activations.

Notation: head ``y = W a + b`` with ``W`` (K classes, M dims); SAE feature ``l``
with decoder column ``c = D[:, l]`` (M,). The edit rescales every column j of
``W``, for every class row i, by a factor that depends only on :math:`|c_j|`:

.. math::

    \text{suppress:}\quad w'_{ij} &= w_{ij}\,\max(0,\ 1 - \alpha\,|c_j|) \\
    \text{enhance:}\quad w'_{ij} &= w_{ij}\,(1 + \alpha\,|c_j|)

The bias is unchanged. Only the head changes, so ``a(x)`` is fixed and every
α sweep can run exactly on cached activations: :math:`\mathrm{logits}(\alpha) = a\,W'(\alpha)^\top + b`.
:func:`_edit_factors` is the one place where the factor is computed. The
critical strength α_crit lives in :mod:`salve_utils.method.alpha`.

>>> import torch
>>> W = torch.tensor([[1.0, 2.0], [3.0, 4.0]]); c = torch.tensor([0.5, -0.25])
>>> edit_weights(W, c, alpha=1.0)          # factors max(0, 1 - |c_j|) = (0.5, 0.75)
tensor([[0.5000, 1.5000],
        [1.5000, 3.0000]])
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .models import SalveNet, per_class_accuracy
from .sae import SparseAutoencoder, strength_scale
from .validation import check_choice, check_head, check_labels, check_names, check_strengths

if TYPE_CHECKING:
    from .activations import Activations

__all__ = [
    "DIRECTIONS",
    "accuracy_change",
    "feature_curves",
    "operating_points",
    "permanence_check",
    "edit_curve",
    "edit_logits",
    "edit_model",
    "edit_weights",
    "per_class_accuracy",
    "target_and_others",
]

DIRECTIONS = ("suppress", "enhance")
_CHUNK_ELEMENTS = 1 << 22  # bound on the size of intermediate tensors (elements)


# =========================================================================== the edit


def _edit_factors(decoder_column: torch.Tensor, alphas: torch.Tensor, direction: str) -> torch.Tensor:
    """Column factors of Eq. 1, shape (n_alpha, M): ``max(0, 1 - α|c_j|)`` or ``1 + α|c_j|``."""
    strength = alphas.to(torch.float64)[:, None] * decoder_column.detach().to(torch.float64).abs()[None, :]
    return (1.0 - strength).clamp_min(0.0) if direction == "suppress" else 1.0 + strength


def edit_weights(weight: torch.Tensor, decoder_column: torch.Tensor, alpha: float,
                 direction: str = "suppress") -> torch.Tensor:
    r"""The paper's Eq. 1: rescale every head column j by the feature's decoder entry :math:`|c_j|`.

    .. math::

        \text{suppress:}\quad w'_{ij} &= w_{ij}\,\max(0,\ 1 - \alpha\,|c_j|) \\
        \text{enhance:}\quad w'_{ij} &= w_{ij}\,(1 + \alpha\,|c_j|) \qquad \text{for every class row $i$}

    A pure function: ``weight`` is not modified.

    Parameters
    ----------
    weight : (K, M) head weight W; an integer or boolean weight is converted to the
        default float dtype (as scikit-learn converts integer input to float)
    decoder_column : (M,) ``c = D[:, l]`` of the feature
    alpha : strength α >= 0
    direction : ``"suppress"`` or ``"enhance"``

    Returns
    -------
    W' : (K, M), same dtype (floating) and device as ``weight``

    Raises
    ------
    InputTypeError
        a non-tensor or complex ``weight`` or ``decoder_column``, a non-numeric ``alpha``
    ValueError
        wrong shapes, an empty head, NaN or infinity in ``weight`` or ``decoder_column``,
        ``alpha`` negative, non-finite or not a single number, an unknown ``direction``

    Examples
    --------
    >>> W = torch.ones(2, 3); c = torch.tensor([0.0, 0.5, 2.0])
    >>> edit_weights(W, c, 1.0)
    tensor([[1.0000, 0.5000, 0.0000],
            [1.0000, 0.5000, 0.0000]])
    >>> edit_weights(W, c, 1.0, "enhance")[0]
    tensor([1.0000, 1.5000, 3.0000])
    """
    weight, decoder_column, _, _ = check_head(weight, decoder_column)
    check_choice(direction, "direction", DIRECTIONS)
    alphas = check_strengths(alpha, "alpha")
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
    :class:`~salve_utils.method.models.SalveNet`: :func:`~salve_utils.method.models.save_model`
    and :func:`~salve_utils.method.models.load_model` keep the edit (permanence).
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

    Raises
    ------
    InputTypeError, ValueError
        as :func:`edit_weights`, and for ``acts`` and ``bias`` of the wrong shape,
        empty (no sample) or not finite, and for ``alphas`` not finite and >= 0

    Examples
    --------
    >>> a = torch.randn(5, 3); W = torch.randn(2, 3); b = torch.zeros(2); c = torch.rand(3)
    >>> edit_logits(a, W, b, c, [0.0, 1.0]).shape
    torch.Size([2, 5, 2])
    >>> torch.allclose(edit_logits(a, W, b, c, [0.0])[0], a @ W.T + b)
    True
    """
    weight, decoder_column, bias, acts = check_head(weight, decoder_column, bias, acts)
    check_choice(direction, "direction", DIRECTIONS)
    return _edit_logits(acts, weight, bias, decoder_column, check_strengths(alphas, "alphas"), direction)


def _edit_logits(acts: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, decoder_column: torch.Tensor,
                 alphas: torch.Tensor, direction: str) -> torch.Tensor:
    """:func:`edit_logits` on checked arguments (``alphas`` a 1-D float64 tensor)."""
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
    r"""Per-class accuracy and mean target logit as the edit strength α grows (cached activations).

    For each α and class k (samples :math:`n` with :math:`y_n = k`):

    .. math::

        \mathrm{accuracy}(\alpha, k) &= \operatorname{mean}_n \mathbb{1}[\operatorname{argmax}_i
        \mathrm{logits}_i(a_n; \alpha) = k] \\
        \mathrm{mean\_target\_logit}(\alpha, k) &= \operatorname{mean}_n \mathrm{logits}_k(a_n; \alpha), \\
        \mathrm{logits}(a; \alpha) &= W'(\alpha)\,a + b

    with :math:`W'` from Eq. 1 (see :func:`edit_logits`).

    Parameters
    ----------
    acts : (N, M) cached activations
    labels : (N,) class indices
    weight, bias : the unedited head
    decoder_column : (M,) ``c = D[:, l]``
    alphas : α values (>= 0)
    direction : ``"suppress"`` or ``"enhance"``
    classes : optional names for the ``class`` column

    Returns
    -------
    DataFrame ``alpha, class, accuracy, mean_target_logit, n``: one row per α and
    class that has samples.

    Raises
    ------
    InputTypeError, ValueError
        as :func:`edit_logits`, and for ``labels`` not integer, of the wrong length
        or out of ``[0, K)``, and ``classes`` that do not name all K classes

    Examples
    --------
    >>> a = torch.rand(20, 4); y = torch.arange(20) % 2; W = torch.randn(2, 4)
    >>> df = edit_curve(a, y, W, torch.zeros(2), torch.rand(4), [0.0, 1.0, 10.0])
    >>> df.shape
    (6, 5)
    """
    weight, decoder_column, bias, acts = check_head(weight, decoder_column, bias, acts)
    check_choice(direction, "direction", DIRECTIONS)
    num_classes = weight.shape[0]
    labels = check_labels(labels, "labels", acts.shape[0], num_classes).to(acts.device)
    names = check_names(classes, num_classes, "classes") or list(range(num_classes))
    alphas = check_strengths(alphas, "alphas")
    step = max(1, _CHUNK_ELEMENTS // max(1, acts.shape[0] * num_classes))
    onehot = F.one_hot(labels, num_classes).to(torch.float64)
    counts = onehot.sum(0)
    acc, target_logit = [], []
    for s in range(0, len(alphas), step):
        logits = _edit_logits(acts, weight, bias, decoder_column, alphas[s : s + step], direction)
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


# =========================================================================== report-level helpers


def feature_curves(acts: "Activations", sae: SparseAutoencoder, roles: dict[str, int],
                   strengths: Sequence[float], direction: str = "suppress", split: str = "val") -> pd.DataFrame:
    """:func:`edit_curve` for several features at once, on a normalised strength axis.

    Each feature ``l`` is swept over the same normalised strengths
    ``s = α · max_j |c_j|`` (so ``α = s / max_j |D_{j,l}|``), which makes curves of
    different features and different SAEs comparable.

    Parameters
    ----------
    acts : cached activations with the head (:class:`~salve_utils.method.activations.Activations`)
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
