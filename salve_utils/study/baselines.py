r"""Baselines for the SALVE edit, compared at matched efficacy (beyond the paper, which compares only qualitatively).

Every method is a :class:`HeadEdit` of one target class ``t``: a family of heads
indexed by a scalar *strength* ``s`` in ``[0, max_strength]`` (``s = 0`` is the
unedited head), scored exactly on cached activations ``A`` (N, M):

.. math::

    \text{SALVE:}\quad W'(s) &= W \operatorname{diag}\bigl(\max(0,\ 1 - (s / \max|c|)\,|c|)\bigr) \\
    \text{Steering:}\quad \mathrm{logits}(s) &= \bigl(A - (s / \max|c|)\, z_l(A)\, c^\top\bigr)\, W^\top + b \\
    \text{RomeStyle:}\quad W'(s) &= W + s\,\Delta W_\mathrm{ROME} \\
    \text{ZeroRow:}\quad w'_t(s) &= (1 - s)\,w_t, \qquad s \in [0, 1]

SALVE is Eq. 1 on the class's dominant feature; Steering is the same feature, removed at
inference; RomeStyle at :math:`s = 1` is the ROME solution (rank one, row :math:`t`); ZeroRow at
:math:`s = 1` zeroes the target's row. ``c = D[:, l]`` is the decoder column of the feature ``l``.
:func:`match_efficacy` finds, for any method, the smallest strength at which the target's accuracy falls
to a goal, and :func:`tradeoff` follows the target's accuracy against the other
classes' mean and worst accuracy along the strength range. Because every method
answers the same two calls (``logits`` and ``edit_size``), matching and scoring
loop over them.

>>> import torch
>>> W, b = torch.eye(3), torch.zeros(3)
>>> ZeroRow(W, b, target=1).weight_at(1.0)[1].tolist()
[0.0, 0.0, 0.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

import numpy as np
import pandas as pd
import torch

from ..method.editing import edit_weights
from ..method.sae import SparseAutoencoder, strength_scale
from ..method.validation import InputTypeError, check_array, check_decoder_column, check_head, check_index, check_labels
from .stats import accuracy_interval, interval

if TYPE_CHECKING:
    from ..method.activations import Activations

__all__ = [
    "HeadEdit",
    "METHODS",
    "Match",
    "RomeStyle",
    "Salve",
    "SpecificityCounts",
    "Steering",
    "ZeroRow",
    "match_efficacy",
    "methods_for_class",
    "most_specific",
    "never_lowered",
    "rome_edit",
    "rome_suppress",
    "salve_goals",
    "second_moment",
    "specificity_counts",
    "steer_activations",
    "summarize_methods",
    "tradeoff",
]


def _check_acts(acts: torch.Tensor, m: int, name: str = "acts", finite: bool = True) -> torch.Tensor:
    """Activations (N, M) for a head of width ``m``; ``finite=False`` where the caller checked them already."""
    return check_array(acts, name, ("N", "M"), (None, m), finite=finite)


# =========================================================================== the building blocks


@torch.no_grad()
def steer_activations(acts: torch.Tensor, sae: SparseAutoencoder, feature: int, alpha: float) -> torch.Tensor:
    """Inference-time steering along a feature: ``a <- a - α z_l(a) D[:, l]``.

    The head is untouched; the edit must be applied to every input at
    inference (an overhead, and not persistent). ``α > 0`` removes the
    feature's contribution in proportion to how strongly it fires (α = 1 removes
    it from the reconstruction); ``α < 0`` amplifies it. :class:`Steering`
    scores it on a head without recomputing ``z``.

    Examples
    --------
    >>> sae = SparseAutoencoder(4, 2); a = torch.randn(3, 4)
    >>> steer_activations(a, sae, feature=0, alpha=0.0).equal(a)
    True
    """
    acts = _check_acts(acts, sae.d_in)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha!r}")
    column = sae.decoder_column(feature).to(acts)
    z = sae.encode(acts)[:, feature]
    return acts - alpha * z[:, None] * column[None, :]


def rome_edit(weight: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    r"""Rank-one edit that maps ``key`` to ``value`` with the least change on typical inputs (ROME).

    .. math::

        W' = W + \frac{(v^* - W k^*)\,(C^{-1} k^*)^\top}{k^{*\top} C^{-1} k^*}

    so :math:`W' k^* = v^*` while inputs :math:`x` with :math:`x^\top C^{-1} k^* = 0` keep :math:`W' x = W x`.

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
    weight = check_head(weight)[0]
    k, m = weight.shape
    key = check_array(key, "key", ("M",), (m,))
    value = check_array(value, "value", ("K",), (k,))
    cov = check_array(cov, "cov", ("M", "M"), (m, m))
    w, key64 = weight.detach().double(), key.detach().double().to(weight.device)
    u = torch.linalg.solve(cov.detach().double().to(weight.device), key64)  # C^-1 k*
    denom = key64 @ u
    if not denom > 0:
        raise ValueError("cov must be positive definite (k*^T C^-1 k* <= 0)")
    residual = value.detach().double().to(weight.device) - w @ key64
    return (w + torch.outer(residual, u) / denom).to(weight.dtype)


def second_moment(acts: torch.Tensor, ridge: float = 1e-4) -> torch.Tensor:
    """The regularised second moment ``C = A^T A / N + ridge · tr(A^T A / N) / M · I`` (M, M), in float64.

    The covariance of ROME's least-change criterion; computed once and shared by every target class.

    >>> second_moment(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), ridge=0.0)
    tensor([[0.5000, 0.0000],
            [0.0000, 2.0000]], dtype=torch.float64)
    """
    acts = check_array(acts, "acts", ("N", "M"))
    if not ridge >= 0:
        raise ValueError(f"ridge must be >= 0, got {ridge!r}")
    a = acts.detach().double()
    cov = a.T @ a / len(a)
    return cov + ridge * torch.trace(cov) / a.shape[1] * torch.eye(a.shape[1], dtype=cov.dtype, device=cov.device)


def rome_suppress(weight: torch.Tensor, bias: torch.Tensor, train_acts: torch.Tensor, train_labels: torch.Tensor,
                  target: int, margin: float = 1.0, ridge: float = 1e-4,
                  cov: torch.Tensor | None = None) -> torch.Tensor:
    """ROME-style suppression of class ``target``: its mean activation stops being classified as ``target``.

    Key ``k*`` = mean training activation of the target class; ``C`` =
    :func:`second_moment` of the training activations (pass ``cov`` to reuse it
    across classes; ``ridge`` is then unused); value ``v* = W k*`` except
    ``v*_t = max_{k != t} (W k* + b)_k - b_t - margin``, so that after
    :func:`rome_edit` the target logit of ``k*`` is ``margin`` below the best
    other class. Only ``v*_t`` differs from ``W k*``, so only row ``t`` of ``W`` changes.

    Examples
    --------
    >>> W2 = rome_suppress(W, b, train_acts, train_labels, target=3)     # doctest: +SKIP
    """
    weight, _, bias, train_acts = check_head(weight, bias=bias, acts=train_acts, acts_name="train_acts")
    num_classes = weight.shape[0]
    target = check_index(target, "target", num_classes, "class index")
    labels = check_labels(train_labels, "train_labels", train_acts.shape[0], num_classes).to(train_acts.device)
    if not (labels == target).any():
        raise ValueError(f"train_labels hold no sample of target class {target}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got margin={margin!r}")
    cov = second_moment(train_acts, ridge) if cov is None else cov
    key = train_acts[labels == target].detach().double().mean(0)
    w, b = weight.detach().double().to(key.device), bias.detach().double().to(key.device)
    value = w @ key
    others = torch.cat([value[:target] + b[:target], value[target + 1 :] + b[target + 1 :]])
    value[target] = others.max() - b[target] - margin
    return rome_edit(w, key, value, cov).to(dtype=weight.dtype, device=weight.device)


# =========================================================================== one interface, four methods


class HeadEdit:
    """An edit of the classification head ``logits = A W^T + b`` aimed at one target class, of scalar strength.

    Subclasses set :attr:`name` and implement :meth:`weight_at` (a weight edit)
    or :meth:`_logits` (an edit of activations). The public calls validate their
    inputs here, once, for every method.

    Parameters
    ----------
    weight, bias : the unedited head ``W`` (K, M), ``b`` (K,)
    target : index ``t`` of the class to suppress
    max_strength : the largest strength the method accepts (its range is ``[0, max_strength]``)

    Attributes
    ----------
    name : the method's label in tables and figures
    needs_autoencoder_at_inference : whether every inference must run the SAE encoder
    edit_size_note : why :meth:`edit_size` is NaN, where it is
    """

    name: ClassVar[str] = "edit"
    needs_autoencoder_at_inference: ClassVar[bool] = False
    edit_size_note: ClassVar[str] = ""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, target: int, max_strength: float) -> None:
        weight, _, bias, _ = check_head(weight, bias=bias)
        self.target = check_index(target, "target", weight.shape[0], "class index")
        if not (isinstance(max_strength, (int, float)) and math.isfinite(max_strength) and max_strength > 0):
            raise ValueError(f"max_strength must be a finite number > 0, got {max_strength!r}")
        self.weight, self.bias = weight.detach(), bias.detach()
        self.max_strength = float(max_strength)
        self._cache: tuple[torch.Tensor, tuple[torch.Tensor, ...]] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target}, strengths=[0, {self.max_strength:g}])"

    @property
    def strength_range(self) -> tuple[float, float]:
        """``(0, max_strength)``: the strengths :meth:`logits` accepts."""
        return 0.0, self.max_strength

    def check_strength(self, strength: float) -> float:
        """``strength`` as a float, or a ``ValueError`` if it lies outside :attr:`strength_range`."""
        s = float(strength)
        if not 0.0 <= s <= self.max_strength:  # also refuses NaN
            raise ValueError(f"{self.name}: strength must lie in [0, {self.max_strength:g}], got {strength!r}")
        return s

    def logits(self, acts: torch.Tensor, strength: float) -> torch.Tensor:
        """Logits (N, K) of the edited head on activations ``acts`` (N, M) at ``strength``."""
        _check_acts(acts, self.weight.shape[1], finite=False)  # finiteness: checked once by tradeoff
        with torch.no_grad():
            return self._logits(acts, self.check_strength(strength))

    def predict(self, acts: torch.Tensor, strength: float) -> torch.Tensor:
        """Predicted classes (N,) of the edited head: ``argmax_i logits_ni`` (ties: the lowest index)."""
        return self.logits(acts, strength).argmax(1)

    def weight_at(self, strength: float) -> torch.Tensor | None:
        """The edited weight ``W'(s)``; ``None`` for a method that edits activations instead."""
        return None

    def edit_size(self, strength: float) -> float:
        """``||W'(s) - W||_F``, the Frobenius norm of the weight change; NaN (see :attr:`edit_size_note`) if none."""
        w = self.weight_at(self.check_strength(strength))
        return math.nan if w is None else float((w.double() - self.weight.double()).norm())

    def _logits(self, acts: torch.Tensor, s: float) -> torch.Tensor:
        w = self.weight_at(s)
        return acts @ w.to(acts).T + self.bias.to(acts)

    def _cached(self, acts: torch.Tensor, compute) -> tuple[torch.Tensor, ...]:
        """Per-``acts`` precomputation (the unedited logits, ...), kept for the last ``acts`` seen."""
        if self._cache is None or self._cache[0] is not acts:
            self._cache = (acts, compute(acts))
        return self._cache[1]


class Salve(HeadEdit):
    r"""SALVE, the paper's Eq. 1 on a feature with decoder column ``c``, at normalised strength :math:`s = \alpha \cdot \max|c|`:

    .. math::

        w'_{ij}(s) = w_{ij}\,\max\bigl(0,\ 1 - (s / \max_j |c_j|)\,|c_j|\bigr)

    Examples
    --------
    >>> W = torch.ones(2, 2); c = torch.tensor([1.0, 0.5])
    >>> Salve(W, torch.zeros(2), 0, c, max_strength=2.0).weight_at(1.0)
    tensor([[0.0000, 0.5000],
            [0.0000, 0.5000]])
    """

    name = "SALVE"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, target: int, decoder_column: torch.Tensor,
                 max_strength: float) -> None:
        super().__init__(weight, bias, target, max_strength)
        self.column = check_decoder_column(decoder_column, self.weight.shape[1]).detach()
        self.scale = strength_scale(self.column)

    def weight_at(self, strength: float) -> torch.Tensor:
        return edit_weights(self.weight, self.column, self.check_strength(strength) / self.scale)


class Steering(HeadEdit):
    r"""Activation steering of the same feature (:func:`steer_activations`), :math:`\alpha = s / \max|c|`.

    The head is linear, so the steered logits are the unedited ones minus a rank-one term:

    .. math::

        \mathrm{logits}(s) = (A - \alpha\, z\, c^\top)\, W^\top + b
        = A W^\top + b - \alpha\, z\, (W c)^\top, \qquad z = z_l(A)

    No weight changes (:meth:`edit_size` is NaN), but every inference must encode
    with the SAE.

    Examples
    --------
    >>> sae = SparseAutoencoder(3, 2); W, b = torch.randn(2, 3), torch.zeros(2); a = torch.randn(4, 3)
    >>> m = Steering(W, b, 0, sae, feature=1, max_strength=5.0)
    >>> alpha = 2.0 / float(sae.decoder_column(1).abs().max())
    >>> torch.allclose(m.logits(a, 2.0), steer_activations(a, sae, 1, alpha) @ W.T + b, atol=1e-5)
    True
    """

    name = "steering"
    needs_autoencoder_at_inference = True
    edit_size_note = "steering changes activations at inference, not weights"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, target: int, sae: SparseAutoencoder, feature: int,
                 max_strength: float) -> None:
        super().__init__(weight, bias, target, max_strength)
        if sae.d_in != self.weight.shape[1]:
            raise ValueError(f"sae: d_in={sae.d_in} does not match the head width {self.weight.shape[1]}")
        self.sae, self.feature = sae, feature
        self.column = sae.decoder_column(feature)
        self.scale = strength_scale(self.column)

    def _logits(self, acts: torch.Tensor, s: float) -> torch.Tensor:
        def compute(a):
            w = self.weight.to(a)
            return a @ w.T + self.bias.to(a), self.sae.encode(a)[:, self.feature].to(a), w @ self.column.to(a)

        base, z, wc = self._cached(acts, compute)
        return base - (s / self.scale) * torch.outer(z, wc)


class _TargetRow(HeadEdit):
    """A weight edit that moves only the target's row along a fixed direction: ``w'_t(s) = w_t + s δ``.

    Only logit ``t`` changes: ``logits_t(s) = logits_t(0) + s A δ``.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, target: int, max_strength: float,
                 delta: torch.Tensor) -> None:
        super().__init__(weight, bias, target, max_strength)
        self.delta = delta.detach().to(self.weight)

    def weight_at(self, strength: float) -> torch.Tensor:
        out = self.weight.clone()
        out[self.target] += self.check_strength(strength) * self.delta
        return out

    def _precompute(self, a: torch.Tensor) -> tuple[torch.Tensor, ...]:
        base = a @ self.weight.to(a).T + self.bias.to(a)
        others = base.clone()
        others[:, self.target] = -math.inf
        best, best_class = others.max(1)  # the best other class, first index on ties
        return base, a @ self.delta.to(a), best, best_class

    def _logits(self, acts: torch.Tensor, s: float) -> torch.Tensor:
        base, shift, _, _ = self._cached(acts, self._precompute)
        out = base.clone()
        out[:, self.target] += s * shift
        return out

    def predict(self, acts: torch.Tensor, strength: float) -> torch.Tensor:
        """``t`` where the moved logit beats the best other class (ties to the lower index), else that class: O(N)."""
        _check_acts(acts, self.weight.shape[1], finite=False)
        s = self.check_strength(strength)
        with torch.no_grad():
            base, shift, best, best_class = self._cached(acts, self._precompute)
            own = base[:, self.target] + s * shift
            wins = (own > best) | ((own == best) & (best_class > self.target))
            return torch.where(wins, torch.full_like(best_class, self.target), best_class)


class RomeStyle(_TargetRow):
    r"""ROME-style rank-one edit (:func:`rome_suppress`), continued linearly in its strength:

    .. math::

        W'(s) = W + s\,(W_\mathrm{ROME} - W)

    :math:`s = 1` is the ROME solution (the target logit of the class's mean training
    activation ``margin`` below the best other class); :math:`s > 1` pushes that logit
    further down along the same rank-one direction. Only row ``t`` changes.
    """

    name = "ROME-style"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, target: int, train_acts: torch.Tensor,
                 train_labels: torch.Tensor, max_strength: float, margin: float = 1.0, ridge: float = 1e-4,
                 cov: torch.Tensor | None = None) -> None:
        solution = rome_suppress(weight, bias, train_acts, train_labels, target, margin, ridge, cov)
        super().__init__(weight, bias, target, max_strength, (solution - weight)[target])


class ZeroRow(_TargetRow):
    """Row scaling ``w'_t(s) = (1 - s) w_t`` for ``s`` in [0, 1]; ``s = 1`` zeroes the row (the logit becomes ``b_t``).

    Examples
    --------
    >>> ZeroRow(torch.ones(2, 2), torch.zeros(2), 0).edit_size(0.5)   # 0.5 · ||w_0|| = 0.5 · √2
    0.7071067811865476
    """

    name = "zero row"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, target: int) -> None:
        weight = check_head(weight)[0]
        super().__init__(weight, bias, target, 1.0, -weight[check_index(target, "target", len(weight), "class index")])


def methods_for_class(acts: "Activations", sae: SparseAutoencoder, feature: int, target: int | str, *,
                      salve_max: float, steering_max: float, rome_max: float, rome_margin: float = 1.0,
                      cov: torch.Tensor | None = None) -> list[HeadEdit]:
    """The four methods aimed at one class: SALVE and steering on its feature ``feature``, ROME-style, zero row.

    ``target`` is a class index or name; the ROME-style key and covariance come
    from the training activations ``acts.train`` (``cov``: their :func:`second_moment`,
    computed once for many classes).
    """
    t = acts.class_index(target)
    w, b = acts.weight, acts.bias
    return [Salve(w, b, t, sae.decoder_column(int(feature)), salve_max),
            Steering(w, b, t, sae, int(feature), steering_max),
            RomeStyle(w, b, t, acts.train, acts.train_labels, rome_max, margin=rome_margin, cov=cov),
            ZeroRow(w, b, t)]


#: the four methods, in the order of the chapter's tables
METHODS: tuple[type[HeadEdit], ...] = (Salve, Steering, RomeStyle, ZeroRow)


# =========================================================================== matching and scoring


def salve_goals(curves: pd.DataFrame, target_accuracy: float) -> pd.DataFrame:
    """Per class, the efficacy every method is matched to: SALVE's own target accuracy at its operating point.

    From the control chapter's suppression curves of each class's dominant
    feature: the target accuracy at the first swept strength where it is
    ``<= target_accuracy`` (``source = "operating point"``); where the sweep never
    gets there, the lowest target accuracy it reaches, at the first strength that
    reaches it (``source = "lowest in sweep"``). With an ``n`` column (images per
    class) the goal is snapped to ``round(goal · n) / n``, the exact share a
    stored, rounded accuracy stands for, so that SALVE meets its own goal.

    Returns
    -------
    DataFrame ``class, goal_accuracy, salve_strength, source``, sorted by class.

    Examples
    --------
    >>> rows = [{"feature_role": f"dominant:{c}", "direction": "suppress", "strength": s, "class": c,
    ...          "accuracy": acc} for s, c, acc in [(0, "a", 0.9), (1, "a", 0.04), (0, "b", 0.8), (1, "b", 0.5)]]
    >>> salve_goals(pd.DataFrame(rows), 0.05).to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
    [{'class': 'a', 'goal_accuracy': 0.04, 'salve_strength': 1.0, 'source': 'operating point'},
     {'class': 'b', 'goal_accuracy': 0.5, 'salve_strength': 1.0, 'source': 'lowest in sweep'}]
    """
    if not 0.0 <= target_accuracy <= 1.0:
        raise ValueError(f"target_accuracy must lie in [0, 1], got {target_accuracy!r}")
    need = {"feature_role", "direction", "strength", "class", "accuracy"}
    if missing := need - set(curves.columns):
        raise ValueError(f"curves lack the columns {sorted(missing)}")
    sup = curves[(curves["direction"] == "suppress") & curves["feature_role"].str.startswith("dominant:")]
    if sup.empty:
        raise ValueError("curves hold no suppression curve of a dominant feature ('dominant:<class>')")
    rows = []
    for role, sub in sup.groupby("feature_role", sort=True):
        cls = role.split(":", 1)[1]
        own = sub[sub["class"] == cls].sort_values("strength", ignore_index=True)
        hit = own.index[own["accuracy"] <= target_accuracy]
        at = hit[0] if len(hit) else own["accuracy"].idxmin()  # idxmin: the first (smallest) strength of the minimum
        goal = float(own.loc[at, "accuracy"])
        if "n" in own.columns:  # undo the table's rounding: an accuracy is a count of images, k / n
            goal = round(goal * int(own.loc[at, "n"])) / int(own.loc[at, "n"])
        rows.append({"class": cls, "goal_accuracy": goal,
                     "salve_strength": float(own.loc[at, "strength"]),
                     "source": "operating point" if len(hit) else "lowest in sweep"})
    return pd.DataFrame(rows).sort_values("class", ignore_index=True)


def _method_key(name: str) -> tuple[int, str]:
    """Sort key of a method's name: the order of :data:`METHODS`, then unknown names alphabetically."""
    order = {m.name: i for i, m in enumerate(METHODS)}
    return order.get(name, len(order)), name


def summarize_methods(table: pd.DataFrame) -> pd.DataFrame:
    """Per method (in the order of :data:`METHODS`), over the classes of a matched-efficacy table.

    ``reached``: classes where the method reaches the goal, of ``classes``; over
    those, the medians of ``others_worst``, ``others_mean`` and ``edit_size``
    (NaN for a method that changes no weight).

    >>> t = pd.DataFrame({"method": ["x", "x"], "matched": [True, False], "others_worst": [0.5, 0.1],
    ...                   "others_mean": [0.8, 0.2], "edit_size": [1.0, 3.0]})
    >>> summarize_methods(t).to_dict("records")[0]["median_others_worst"]
    0.5
    """
    need = {"method", "matched", "others_worst", "others_mean", "edit_size"}
    if missing := need - set(table.columns):
        raise ValueError(f"table lacks the columns {sorted(missing)}")
    rows = []
    for method, sub in sorted(table.groupby("method"), key=lambda g: _method_key(g[0])):
        hit = sub[sub["matched"].astype(bool)]
        rows.append({"method": method, "reached": len(hit), "classes": len(sub),
                     "median_others_worst": float(hit["others_worst"].median()) if len(hit) else math.nan,
                     "median_others_mean": float(hit["others_mean"].median()) if len(hit) else math.nan,
                     "median_edit_size": float(hit["edit_size"].median()) if len(hit) else math.nan})
    return pd.DataFrame(rows)


def _check_inputs(method: HeadEdit, acts: torch.Tensor, labels: torch.Tensor,
                  strengths: Sequence[float] | np.ndarray | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Validate the inputs of :func:`tradeoff` and :func:`match_efficacy` (labels, target present, grid)."""
    if not isinstance(method, HeadEdit):
        raise InputTypeError(f"method must be a HeadEdit, got {type(method).__name__}")
    _check_acts(acts, method.weight.shape[1])
    labels = check_labels(labels, "labels", acts.shape[0], method.weight.shape[0]).to(acts.device)
    if not (labels == method.target).any():
        raise ValueError(f"labels hold no sample of the target class {method.target}")
    if method.weight.shape[0] < 2:
        raise ValueError("the head needs at least two classes (the target and the others)")
    grid = np.asarray([] if strengths is None else strengths, dtype=np.float64).reshape(-1)
    if strengths is not None:
        if not len(grid) or np.any(np.diff(grid) <= 0):
            raise ValueError(f"strengths must be a non-empty, increasing sequence, got {strengths!r}")
        lo, hi = method.strength_range
        if grid[0] < lo or grid[-1] > hi:
            raise ValueError(f"{method.name}: strengths must lie in [{lo:g}, {hi:g}], got [{grid[0]:g}, {grid[-1]:g}]")
    return labels, grid


def _accuracies(method: HeadEdit, acts: torch.Tensor, labels: torch.Tensor, strength: float) -> np.ndarray:
    """Per-class accuracy (K,) of the edited head: ``acc_k = #{n : y_n = k, argmax_i logits_ni = k} / #{n : y_n = k}``."""
    num_classes = method.weight.shape[0]
    correct = method.predict(acts, strength) == labels
    hits = torch.bincount(labels[correct], minlength=num_classes).double()
    return (hits / torch.bincount(labels, minlength=num_classes).double()).cpu().numpy()


def _others(accuracy: np.ndarray, counts: np.ndarray, target: int) -> np.ndarray:
    """Indices of the classes other than ``target`` that have samples."""
    return np.array([k for k in range(len(accuracy)) if k != target and counts[k] > 0], dtype=np.int64)


def tradeoff(method: HeadEdit, acts: torch.Tensor, labels: torch.Tensor,
             strengths: Sequence[float] | np.ndarray) -> pd.DataFrame:
    r"""The method's trade-off along its strength: the target's accuracy against the other classes'.

    For each strength ``s``:

    .. math::

        \mathrm{target\_accuracy} = \mathrm{acc}_t(s), \qquad
        \mathrm{others\_mean} = \operatorname{mean}_{k \neq t} \mathrm{acc}_k(s), \qquad
        \mathrm{others\_worst} = \min_{k \neq t} \mathrm{acc}_k(s)

    Returns
    -------
    DataFrame ``method, strength, target_accuracy, others_mean, others_worst`` (one row per strength).

    Examples
    --------
    >>> x = torch.eye(2); y = torch.tensor([0, 1])
    >>> m = ZeroRow(torch.eye(2), torch.tensor([0.0, 0.1]), 0)   # at s = 1 the target logit is 0 < 0.1
    >>> tradeoff(m, x, y, [0.0, 1.0])["target_accuracy"].tolist()
    [1.0, 0.0]
    """
    labels, grid = _check_inputs(method, acts, labels, strengths)
    counts = np.bincount(labels.cpu().numpy(), minlength=method.weight.shape[0])
    rows = []
    for s in grid:
        acc = _accuracies(method, acts, labels, float(s))
        others = acc[_others(acc, counts, method.target)]
        rows.append({"method": method.name, "strength": float(s), "target_accuracy": float(acc[method.target]),
                     "others_mean": float(others.mean()), "others_worst": float(others.min())})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Match:
    """The outcome of :func:`match_efficacy` for one method and target.

    ``strength`` is the matched strength, or, when the goal is not reached, the
    strength of the lowest target accuracy on the grid (the closest approach);
    ``accuracy`` (K,) and ``counts`` (K,) are the per-class accuracies there and
    the images behind them; ``curve`` is the grid's :func:`tradeoff`.
    """

    method: str
    target: int
    matched: bool
    goal_accuracy: float
    strength: float
    accuracy: np.ndarray
    counts: np.ndarray
    edit_size: float
    curve: pd.DataFrame

    def summary(self, classes: Sequence[str] | None = None, level: float = 0.95) -> dict:
        """One row of the matched-efficacy table, with bootstrap intervals over the validation images.

        ``target_lo/hi`` is :func:`~salve_utils.study.stats.accuracy_interval` of the target;
        ``others_mean_lo/hi`` and ``others_worst_lo/hi`` the stratified bootstrap
        (:func:`~salve_utils.study.stats.interval`) of the other classes' mean and minimum.
        """
        names = list(classes) if classes is not None else list(range(len(self.accuracy)))
        others = _others(self.accuracy, self.counts, self.target)
        acc, n = self.accuracy[others], self.counts[others]
        lo, hi = accuracy_interval(float(self.accuracy[self.target]), int(self.counts[self.target]), level)
        mean_lo, mean_hi = interval(acc, n, np.mean, level)
        worst_lo, worst_hi = interval(acc, n, np.min, level)
        return {"class": names[self.target], "method": self.method, "matched": self.matched,
                "goal_accuracy": self.goal_accuracy, "strength": self.strength,
                "target_accuracy": float(self.accuracy[self.target]), "target_lo": lo, "target_hi": hi,
                "others_mean": float(acc.mean()), "others_mean_lo": mean_lo, "others_mean_hi": mean_hi,
                "others_worst": float(acc.min()), "others_worst_lo": worst_lo, "others_worst_hi": worst_hi,
                "worst_class": names[int(others[np.argmin(acc)])], "edit_size": self.edit_size}


def match_efficacy(method: HeadEdit, acts: torch.Tensor, labels: torch.Tensor, goal_accuracy: float,
                   strengths: Sequence[float] | np.ndarray | None = None, n_grid: int = 41,
                   iterations: int = 12) -> Match:
    """The smallest strength at which the target's accuracy falls to ``goal_accuracy`` or below.

    ``s* = min { s : acc_t(s) <= goal }``, searched on a grid (``strengths``, by
    default ``n_grid`` points spanning the method's range), then refined by
    ``iterations`` bisection steps inside the grid cell ``(s_{i-1}, s_i]`` where
    the accuracy first reaches the goal, keeping ``acc_t(hi) <= goal < acc_t(lo)``.
    A dip between two grid points that the grid misses is not found (the search
    is exact only where ``acc_t`` is monotone). When no grid point reaches the goal
    the match is "not reached" (``matched=False``) and reports the grid's lowest
    target accuracy instead.

    Examples
    --------
    >>> x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]); y = torch.tensor([0, 0, 1])
    >>> W, b = torch.tensor([[1.0, 0.0], [0.5, 1.0]]), torch.tensor([0.0, 0.25])
    >>> # scaling row 0 by (1 - s) loses the first sample for s > 0.25, the second for s > 0.375
    >>> m = match_efficacy(ZeroRow(W, b, 0), x, y, goal_accuracy=0.5, n_grid=3, iterations=20)
    >>> m.matched, round(m.strength, 4), m.accuracy.tolist()
    (True, 0.25, [0.5, 1.0])
    """
    if not (isinstance(goal_accuracy, (int, float)) and 0.0 <= goal_accuracy <= 1.0):
        raise ValueError(f"goal_accuracy must lie in [0, 1], got {goal_accuracy!r}")
    if not (isinstance(n_grid, int) and n_grid >= 2) or not (isinstance(iterations, int) and iterations >= 0):
        raise ValueError(f"n_grid must be an int >= 2 and iterations an int >= 0, got {n_grid!r}, {iterations!r}")
    grid = np.linspace(*method.strength_range, n_grid) if strengths is None else strengths
    labels, grid = _check_inputs(method, acts, labels, grid)
    counts = np.bincount(labels.cpu().numpy(), minlength=method.weight.shape[0])
    curve = tradeoff(method, acts, labels, grid)
    reached = np.flatnonzero(curve["target_accuracy"].to_numpy() <= goal_accuracy)
    if not len(reached):
        s = float(grid[int(curve["target_accuracy"].to_numpy().argmin())])
    elif reached[0] == 0:
        s = float(grid[0])
    else:
        lo, s = float(grid[reached[0] - 1]), float(grid[reached[0]])
        for _ in range(iterations):
            mid = 0.5 * (lo + s)
            if _accuracies(method, acts, labels, mid)[method.target] <= goal_accuracy:
                s = mid
            else:
                lo = mid
    return Match(method.name, method.target, bool(len(reached)), float(goal_accuracy), s,
                 _accuracies(method, acts, labels, s), counts, method.edit_size(s), curve)


def most_specific(table: pd.DataFrame, method: str = "SALVE") -> pd.DataFrame:
    """Per class, whether ``method`` spares the other classes best at matched efficacy.

    Among the methods that reach the goal for a class (``matched``), compare the
    worst-other accuracy and its interval ``[others_worst_lo, others_worst_hi]``:

    * ``"best"``: ``method``'s interval lies above every other matched method's;
    * ``"tied"``: no other method's interval lies above ``method``'s, but some overlap it;
    * ``"worse"``: some other matched method's interval lies entirely above ``method``'s;
    * ``"only"``: ``method`` is the only one that reaches the goal;
    * ``"not matched"``: ``method`` itself does not reach it.

    "Most specific, ties included" is best, tied or only.

    Returns
    -------
    DataFrame ``class, verdict, runner_up`` (the other matched method with the highest worst-other accuracy).
    """
    need = {"class", "method", "matched", "others_worst", "others_worst_lo", "others_worst_hi"}
    if missing := need - set(table.columns):
        raise ValueError(f"table lacks the columns {sorted(missing)}")
    rows = []
    for cls, sub in table.groupby("class", sort=True):
        own = sub[sub["method"] == method]
        if len(own) != 1:
            raise ValueError(f"class {cls!r}: expected one row of method {method!r}, got {len(own)}")
        own = own.iloc[0]
        rivals = sub[(sub["method"] != method) & sub["matched"].astype(bool)]
        runner_up = rivals.loc[rivals["others_worst"].idxmax(), "method"] if len(rivals) else None
        if not own["matched"]:
            verdict = "not matched"
        elif not len(rivals):
            verdict = "only"
        elif (rivals["others_worst_lo"] > own["others_worst_hi"]).any():
            verdict = "worse"
        elif (rivals["others_worst_hi"] < own["others_worst_lo"]).all():
            verdict = "best"
        else:
            verdict = "tied"
        rows.append({"class": cls, "verdict": verdict, "runner_up": runner_up})
    return pd.DataFrame(rows, columns=["class", "verdict", "runner_up"])


# =========================================================================== the chapter's counts


def never_lowered(goals: pd.DataFrame, curves: pd.DataFrame, tol: float = 1e-9) -> pd.Series:
    """Per class of ``goals``: does SALVE never lower it, its goal not below its unedited accuracy?

    ``never_t = goal_t >= acc_t(0) - tol``, with ``acc_t(0)`` the class's own accuracy at strength 0
    of its dominant feature's suppression curve (the unedited head). Such a class is matched by every
    method at ``s = 0`` and says nothing about specificity: the chapter sets it aside.

    Parameters
    ----------
    goals : :func:`salve_goals` (``class``, ``goal_accuracy``)
    curves : the control chapter's suppression curves (``feature_role, direction, strength, class,
        accuracy``), of one node
    tol : slack for the stored, rounded accuracies

    Returns
    -------
    Boolean Series aligned with ``goals`` (its index), named ``never_lowered``.

    Examples
    --------
    >>> curves = pd.DataFrame({"feature_role": ["dominant:a", "dominant:b"], "direction": "suppress",
    ...                        "strength": 0.0, "class": ["a", "b"], "accuracy": [0.9, 0.5]})
    >>> goals = pd.DataFrame({"class": ["a", "b"], "goal_accuracy": [0.04, 0.5]})
    >>> never_lowered(goals, curves).tolist()
    [False, True]
    """
    if missing := {"class", "goal_accuracy"} - set(goals.columns):
        raise ValueError(f"goals lack the columns {sorted(missing)} (pass salve_goals(...))")
    if missing := {"feature_role", "direction", "strength", "class", "accuracy"} - set(curves.columns):
        raise ValueError(f"curves lack the columns {sorted(missing)}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    unedited = curves[(curves["direction"] == "suppress") & (curves["strength"] == 0)
                      & (curves["feature_role"] == "dominant:" + curves["class"])].set_index("class")["accuracy"]
    if not unedited.index.is_unique:
        raise ValueError("curves hold several unedited rows per class: pass the curves of one node")
    if missing := sorted(set(goals["class"]) - set(unedited.index)):
        raise ValueError(f"curves have no unedited accuracy (strength 0 of 'dominant:<class>') for {missing}")
    never = goals["goal_accuracy"].to_numpy() >= goals["class"].map(unedited).to_numpy() - tol
    return pd.Series(never, index=goals.index, name="never_lowered")


@dataclass(frozen=True)
class SpecificityCounts:
    """What the baselines chapter counts: where each goal comes from, and how often SALVE is the most specific.

    Built by :func:`specificity_counts`.

    Attributes
    ----------
    from_point : classes whose goal is SALVE's operating point
    lowest : classes whose goal is the lowest accuracy of SALVE's sweep (and that SALVE lowers)
    never : classes SALVE never lowers (:func:`never_lowered`): set aside
    judged : how many classes of the verdicts are judged (not set aside)
    verdict_counts : :func:`most_specific` verdict -> number of judged classes, most frequent first
    reached : judged classes where SALVE reaches its goal (verdict other than "not matched")
    most_specific : judged classes where SALVE is the most specific, ties included (best, tied or only)
    clearly_better : per other method (in the order of :data:`METHODS`), the judged classes SALVE reaches
        where that method reaches the goal too and its worst-other interval lies entirely above SALVE's
    at_point : judged classes whose goal is an operating point
    most_specific_at_point : of those, where SALVE is the most specific, ties included
    """

    from_point: list[str]
    lowest: list[str]
    never: list[str]
    judged: int
    verdict_counts: dict[str, int]
    reached: int
    most_specific: int
    clearly_better: dict[str, int]
    at_point: int
    most_specific_at_point: int


def specificity_counts(goals: pd.DataFrame, curves: pd.DataFrame, matched: pd.DataFrame, verdicts: pd.DataFrame,
                       method: str = "SALVE", tol: float = 1e-9) -> SpecificityCounts:
    """Counts of the matched-efficacy comparison, with the classes ``method`` never lowers set aside.

    The judged classes are those of ``verdicts`` that :func:`never_lowered` does not set aside.
    Over them, ``method`` is *the most specific* where its :func:`most_specific` verdict is best,
    tied or only, and another method ``m`` is *clearly better* on class ``t`` where both reach the
    goal and ``lo_m(t) > hi_method(t)`` for the worst other class's bootstrap interval
    ``[others_worst_lo, others_worst_hi]``.

    Parameters
    ----------
    goals : :func:`salve_goals` (``class``, ``goal_accuracy``, ``source``), one row per class compared
    curves : the control chapter's suppression curves of one node (for :func:`never_lowered`)
    matched : the matched-efficacy table, one :meth:`Match.summary` row per class and method
    verdicts : :func:`most_specific` of ``matched`` for ``method``
    method : the method judged; tol : as in :func:`never_lowered`

    Returns
    -------
    :class:`SpecificityCounts`
    """
    if missing := {"class", "goal_accuracy", "source"} - set(goals.columns):
        raise ValueError(f"goals lack the columns {sorted(missing)} (pass salve_goals(...))")
    if missing := {"class", "method", "matched", "others_worst_lo", "others_worst_hi"} - set(matched.columns):
        raise ValueError(f"matched lacks the columns {sorted(missing)}")
    if missing := {"class", "verdict"} - set(verdicts.columns):
        raise ValueError(f"verdicts lack the columns {sorted(missing)} (pass most_specific(...))")
    own = matched[matched["method"] == method]
    if own.empty or not own["class"].is_unique:
        raise ValueError(f"matched must hold one row of method {method!r} per class; "
                         f"methods: {sorted(matched['method'].unique())}")
    from_point = goals["source"] == "operating point"
    unlowered = never_lowered(goals, curves, tol).to_numpy()
    never = goals.loc[unlowered, "class"].tolist()
    judged = verdicts[~verdicts["class"].isin(never)]
    counts = judged["verdict"].value_counts()
    ties = {"best", "tied", "only"}
    own = own.set_index("class")
    rivals = matched[(matched["method"] != method) & matched["matched"].astype(bool)
                     & matched["class"].isin(judged["class"])]
    clearly = rivals[rivals["others_worst_lo"].to_numpy() > rivals["class"].map(own["others_worst_hi"]).to_numpy()]
    clearly = clearly[clearly["class"].map(own["matched"]).astype(bool)]
    at_point = judged[judged["class"].isin(goals.loc[from_point, "class"])]
    return SpecificityCounts(
        from_point=goals.loc[from_point, "class"].tolist(),
        lowest=goals.loc[~from_point & ~unlowered, "class"].tolist(),
        never=never, judged=len(judged),
        verdict_counts={v: int(n) for v, n in counts.items()},
        reached=int((judged["verdict"] != "not matched").sum()),
        most_specific=int(counts.get("best", 0) + counts.get("tied", 0) + counts.get("only", 0)),
        clearly_better={m: int((clearly["method"] == m).sum())
                        for m in sorted(matched["method"].unique(), key=_method_key) if m != method},
        at_point=len(at_point), most_specific_at_point=int(at_point["verdict"].isin(ties).sum()))
