r"""The edit atlas (every latent against every class) and the composition of several edits.

Both run exactly on cached activations, with the notation of :mod:`salve_utils.study.ablations`.

**Atlas.** For every latent l of an autoencoder and every class k, the accuracy change of k
when l is edited at one normalised strength s (Eq. 1, every row):

.. math::

    \Delta_{lk}(s) = \mathrm{acc}_k(W \circ F_l(s)) - \mathrm{acc}_k(W), \qquad
    F_l(s)_j = \max(0,\ 1 - s\,r_{lj}) \ \text{ or }\ 1 + s\,r_{lj}

One heatmap (latents × classes) shows which latents are one class's (a single deep cell),
which are shared (Tower candidates: several), and which harm everywhere.

**Composition.** Several edits applied one after the other multiply their factors,
:math:`W' = W \circ \prod_e F_e(s_e)`. The combined change of each class is compared with the sum of the
single edits' changes (additivity): :math:`\mathrm{interaction}_k = \Delta_k(\mathrm{all}) - \sum_e \Delta_k(e)`.

>>> import torch
>>> composed_factors(torch.tensor([[1.0, 0.0], [0.5, 1.0]]), [1.0, 1.0], ["suppress", "enhance"])
tensor([0., 2.])
"""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch

from .nulls import DIRECTIONS, _is_top, class_accuracies, feature_ratios
from ..method.sae import SparseAutoencoder

if TYPE_CHECKING:
    from ..method.activations import Activations

__all__ = ["atlas_summary", "composed_factors", "composition", "composition_plan", "edit_atlas"]


# =========================================================================== the atlas


def edit_atlas(acts: "Activations", sae: SparseAutoencoder, strength: float = 1.0,
               directions: Sequence[str] = DIRECTIONS, split: str = "val") -> pd.DataFrame:
    """``Δ_lk``: every latent's edit at normalised ``strength``, every class's accuracy change.

    Returns ``direction, latent, class, before, after, change, n`` (one row per direction,
    latent and class; ``n`` the class's images), computed by :func:`salve_utils.study.nulls.class_accuracies` for all
    latents at once.
    """
    if not np.isfinite(strength) or strength <= 0:
        raise ValueError(f"strength must be a finite number > 0, got {strength!r}")
    x, labels = acts.split(split)
    ratios = torch.stack([feature_ratios(sae.decoder_column(l).detach()) for l in range(sae.d_latent)])
    counts = np.bincount(labels.numpy(), minlength=len(acts.classes))
    frames = []
    for direction in directions:
        acc = class_accuracies(x, labels, acts.weight, acts.bias, ratios, [0.0, float(strength)], direction)
        frames.append(pd.DataFrame({
            "direction": direction, "latent": np.repeat(np.arange(sae.d_latent), len(acts.classes)),
            "class": np.tile(np.asarray(acts.classes, dtype=object), sae.d_latent),
            "before": acc[:, 0].reshape(-1), "after": acc[:, 1].reshape(-1),
            "change": (acc[:, 1] - acc[:, 0]).reshape(-1), "n": np.tile(counts, sae.d_latent)}))
    return pd.concat(frames, ignore_index=True)


def atlas_summary(atlas: pd.DataFrame, hit: float = 0.05, z: float = 2.0) -> pd.DataFrame:
    """One row per direction and latent: what kind of latent the atlas says it is.

    A class is *hit* when its accuracy falls by more than ``hit`` **and** by more than ``z``
    binomial standard errors of its unedited accuracy, ``z · sqrt(p (1 - p) / n)`` (with 100
    images a class at 74% moves by 4 points from one image set to another; that is noise,
    not an effect). Under enhancement a fall counts too: enhancing a feature should harm
    nobody. ``kind``: "inert" (no class hit), "specific" (one), "shared" (two to a third of
    the classes: Tower candidates) or "broad" (more). Also ``top_class`` and ``top_change``
    (the largest fall) and ``mean_change``.

    >>> t = pd.DataFrame({"direction": "suppress", "latent": 0, "class": ["a", "b"], "before": 0.9,
    ...                   "change": [-0.5, -0.06], "n": [400, 20]})
    >>> atlas_summary(t)[["classes_hit", "kind"]].values.tolist()   # b's 6 points are noise at 20 images
    [[1, 'specific']]
    """
    p = atlas["before"].clip(0, 1)
    noise = z * np.sqrt(p * (1 - p) / atlas["n"].clip(lower=1))
    atlas = atlas.assign(is_hit=atlas["change"] < -np.maximum(hit, noise))
    rows = []
    for (direction, latent), sub in atlas.groupby(["direction", "latent"], sort=True):
        n, k = int(sub["is_hit"].sum()), len(sub)
        kind = "inert" if n == 0 else "specific" if n == 1 else "shared" if n <= max(2, k // 3) else "broad"
        worst = sub.loc[sub["change"].idxmin()]
        rows.append({"direction": direction, "latent": int(latent), "classes_hit": n, "kind": kind,
                     "top_class": worst["class"], "top_change": float(worst["change"]),
                     "mean_change": float(sub["change"].mean())})
    return pd.DataFrame(rows)


# =========================================================================== composition


def composed_factors(ratios: torch.Tensor, strengths: Sequence[float], directions: Sequence[str]) -> torch.Tensor:
    """Column factors of several Eq. 1 edits applied in turn: ``Π_e F_e(s_e)`` (M,).

    ``ratios`` (E, M) are the edits' ``r``; suppression factors ``max(0, 1 - s r_j)``,
    enhancement ``1 + s r_j``. The product does not depend on the order of the edits.
    """
    ratios = torch.as_tensor(ratios, dtype=torch.float64)
    if ratios.ndim != 2 or len(ratios) != len(strengths) or len(ratios) != len(directions):
        raise ValueError(f"need one strength and one direction per ratio vector, got {tuple(ratios.shape)}, "
                         f"{len(strengths)}, {len(directions)}")
    out = torch.ones(ratios.shape[1], dtype=torch.float64)
    for r, s, d in zip(ratios, strengths, directions):
        if d not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {d!r}")
        out = out * ((1 - s * r).clamp_min(0) if d == "suppress" else 1 + s * r)
    return out.to(torch.float32)


def _accuracies(x: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                factors: torch.Tensor, num_classes: int) -> np.ndarray:
    logits = x @ (weight * factors.to(x)).T + bias
    correct = _is_top(logits, labels).to(torch.float64)
    hits = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, correct)
    return (hits / torch.bincount(labels, minlength=num_classes).to(torch.float64)).numpy()


def composition_plan(classes: Sequence[str], pairs: int, triples: int, mixed: int, seed: int = 0) -> list[tuple]:
    """A seeded sample of edit sets: ``pairs`` of suppressions, ``triples`` of suppressions, and ``mixed``
    (suppress one class, enhance another). Each set is a tuple of ``(class, direction)``."""
    rng = np.random.default_rng(seed)
    classes = list(classes)

    def sample(items: list, n: int) -> list:
        return [items[i] for i in sorted(rng.choice(len(items), size=min(n, len(items)), replace=False))]

    plan = [tuple((c, "suppress") for c in combo) for combo in sample(list(combinations(classes, 2)), pairs)]
    plan += [tuple((c, "suppress") for c in combo) for combo in sample(list(combinations(classes, 3)), triples)]
    ordered = [(a, b) for a in classes for b in classes if a != b]
    plan += [((a, "suppress"), (b, "enhance")) for a, b in sample(ordered, mixed)]
    return plan


def composition(acts: "Activations", sae: SparseAutoencoder, dominant: dict[str, int], plan: Sequence[tuple],
                strength: float = 1.0, split: str = "val") -> pd.DataFrame:
    r"""Each edit set of ``plan`` applied at once, against the sum of its single edits.

    For set E and every class k:

    .. math::

        \mathrm{combined}_k = \mathrm{acc}_k\Bigl(W \circ \prod_{e \in E} F_e\Bigr) - \mathrm{acc}_k(W), \qquad
        \mathrm{additive}_k = \sum_{e \in E} \bigl(\mathrm{acc}_k(W \circ F_e) - \mathrm{acc}_k(W)\bigr)

    Returns ``combo, kind, class, role, combined, additive, interaction`` where ``role`` is
    "suppressed", "enhanced" or "other", and ``kind`` is "2 suppressed", "3 suppressed" or
    "suppress + enhance".
    """
    x, labels = acts.split(split)
    weight, bias, k = acts.weight.detach().to(x), acts.bias.detach().to(x), len(acts.classes)
    ratio = {c: feature_ratios(sae.decoder_column(int(dominant[c])).detach()) for c in dominant}
    base = _accuracies(x, labels, weight, bias, torch.ones(x.shape[1]), k)
    single: dict[tuple[str, str], np.ndarray] = {}
    rows = []
    for combo in plan:
        for edit in combo:
            if edit not in single:
                single[edit] = _accuracies(x, labels, weight, bias,
                                           composed_factors(ratio[edit[0]][None], [strength], [edit[1]]), k) - base
        factors = composed_factors(torch.stack([ratio[c] for c, _ in combo]), [strength] * len(combo),
                                   [d for _, d in combo])
        combined = _accuracies(x, labels, weight, bias, factors, k) - base
        additive = sum(single[e] for e in combo)
        roles = {c: "suppressed" if d == "suppress" else "enhanced" for c, d in combo}
        kind = "suppress + enhance" if any(d == "enhance" for _, d in combo) else f"{len(combo)} suppressed"
        name = " + ".join(f"{'−' if d == 'suppress' else '+'}{c}" for c, d in combo)
        for i, cls in enumerate(acts.classes):
            rows.append({"combo": name, "kind": kind, "class": cls, "role": roles.get(cls, "other"),
                         "combined": float(combined[i]), "additive": float(additive[i]),
                         "interaction": float(combined[i] - additive[i])})
    return pd.DataFrame(rows)


def composition_summary(comp: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per edit set, then per kind of set: how the edited and the other classes moved, combined vs added up.

    For each set: the mean change of its edited classes and the change of its worst other
    class (the minimum over classes it does not edit), once for the combined edit and once for
    the sum of the single edits. The second frame is the median of those over the sets of each
    kind ("2 suppressed", ...).

    >>> comp = pd.DataFrame({"combo": ["−a + −b"] * 3, "kind": ["2 suppressed"] * 3, "class": list("abc"),
    ...                      "role": ["suppressed", "suppressed", "other"],
    ...                      "combined": [-0.9, -0.8, -0.5], "additive": [-0.6, -0.6, -0.2]})
    >>> per_set, by_kind = composition_summary(comp)
    >>> by_kind.loc["2 suppressed"].round(2).tolist()
    [-0.85, -0.6, -0.5, -0.2]
    """
    rows = []
    for (combo, kind), g in comp.groupby(["combo", "kind"], sort=False):
        edited, other = g[g["role"] != "other"], g[g["role"] == "other"]
        rows.append({"combo": combo, "kind": kind,
                     "edited, combined": edited["combined"].mean(), "edited, additive": edited["additive"].mean(),
                     "worst other, combined": other["combined"].min(), "worst other, additive": other["additive"].min()})
    per_set = pd.DataFrame(rows)
    return per_set, per_set.groupby("kind").median(numeric_only=True)
