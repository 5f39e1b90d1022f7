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
:mod:`salve_utils.study.efficacy` matches and scores them: every method answers the
same two calls (``logits`` and ``edit_size``), so matching and scoring loop over them.

>>> import torch
>>> W, b = torch.eye(3), torch.zeros(3)
>>> ZeroRow(W, b, target=1).weight_at(1.0)[1].tolist()
[0.0, 0.0, 0.0]
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import torch

from ..method.editing import edit_weights
from ..method.sae import SparseAutoencoder, strength_scale
from ..method.validation import check_array, check_decoder_column, check_head, check_index, check_labels

if TYPE_CHECKING:
    from ..method.activations import Activations

__all__ = [
    "HeadEdit",
    "METHODS",
    "RomeStyle",
    "Salve",
    "Steering",
    "ZeroRow",
    "methods_for_class",
    "rome_edit",
    "rome_suppress",
    "second_moment",
    "steer_activations",
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
    key : (M,) k*
    value : (K,) v*
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
