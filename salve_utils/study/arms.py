"""Method or reproduction? The paper's edit driven by three kinds of direction, judged alike.

Eq. 1 edits the head ``W`` (K × M) through the ratios ``r_j = |c_j| / max_i |c_i|`` of one
direction ``c`` in the head-input space, at the normalised strength ``s``::

    w'_ij = w_ij · max(0, 1 - s r_j)      for every class row i

Only ``|c|`` up to scale enters, so any direction can drive it. Three *arms* differ only in
where ``c`` comes from:

* **paper** — ``c = D[:, l*_k]``, the decoder column of class k's dominant latent of the
  paper's linear L1 autoencoder (the control chapter);
* **oracle** — a direction that uses the labels: the class-mean difference
  ``c = μ_a(k) − μ_a(rest)`` of the head input (:func:`mean_difference`), or the weight of a
  one-vs-rest linear probe (:func:`probe`);
* **sparse** — the decoder column of a TopK autoencoder with ``k = d // 8`` active latents
  (:data:`SPARSE_SHARE`), so that ``L0 ≪ d`` by construction.

Each arm is swept and judged by the same judges and nulls (:mod:`salve_utils.study.ablations`,
:mod:`salve_utils.study.claims`). Read together (:func:`diagnose`): the oracle succeeds where the
paper's latent fails → the feature stage is at fault; the oracle fails too → Eq. 1 itself
cannot do it on this head.

>>> import torch
>>> a = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]]); y = torch.tensor([0, 1, 1])
>>> mean_difference_columns(a, y, 2)[:, 0].tolist()
[2.0, -2.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import beta

from .ablations import RESCUE_SHARE, Variant, rescued, retrained, score_variant, variant_curves, variant_nulls
from ..method.sae import train_sae
from .verdicts import Thresholds

if TYPE_CHECKING:
    from ..method.activations import Activations

__all__ = ["ARMS", "DirectionBank", "arm_records", "SPARSE_SHARE", "clopper_pearson", "column_share", "diagnose", "judge_arms",
           "evidence_overlap", "mean_difference", "mean_difference_columns", "probe", "regime_measures", "relative_l0",
           "sparse_k", "sparse_autoencoder", "sparsity_path"]

#: The arms, in the order every table shows them.
ARMS = ("paper", "oracle", "sparse")
#: The sparse arm's rule, stated before any edit is seen: TopK with ``k = max(1, d // 8)``.
SPARSE_SHARE = 8


# =========================================================================== oracle directions


@dataclass(frozen=True)
class DirectionBank:
    """Directions that stand in for decoder columns: ``decoder_column(k)`` is column k of ``columns``.

    Anything with ``decoder_column`` can drive Eq. 1 (:class:`salve_utils.study.ablations.Variant`);
    the oracle arm's directions are one per class, in class order.
    """

    columns: torch.Tensor  # (M, K)
    kind: str

    def __post_init__(self) -> None:
        if self.columns.ndim != 2 or not torch.isfinite(self.columns).all():
            raise ValueError(f"{self.kind}: columns must be a finite (M, K) tensor")
        if (self.columns.abs().amax(0) == 0).any():
            raise ValueError(f"{self.kind}: a direction is all zeros, so it cannot drive the edit")

    @property
    def d_latent(self) -> int:
        """The number of directions (one per class for an oracle)."""
        return int(self.columns.shape[1])

    def decoder_column(self, index: int) -> torch.Tensor:
        """Direction ``index``: the ``c`` of Eq. 1."""
        return self.columns[:, index]

    def dominant(self, classes: Sequence[str]) -> dict[str, int]:
        """Class k's direction is column k."""
        return {c: k for k, c in enumerate(classes)}


def mean_difference_columns(a: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``c_k = μ_a(k) − μ_a(rest)``: (M, K), the class-mean difference of the head input per class.

    ``μ_a(rest)`` is the mean over every sample not of class k (not the mean of the other class
    means), so unequal class sizes weigh as in the data.
    """
    a = a.double()
    onehot = torch.nn.functional.one_hot(labels, num_classes).double()  # (N, K)
    count = onehot.sum(0)
    if (count == 0).any() or (count == len(a)).any():
        raise ValueError("every class needs samples of its own and of the rest for a mean difference")
    own = onehot.T @ a / count[:, None]
    rest = (a.sum(0) - onehot.T @ a) / (len(a) - count)[:, None]
    return (own - rest).T.float()


def mean_difference(acts: "Activations", split: str = "train") -> DirectionBank:
    """The oracle direction of every class from the labels: :func:`mean_difference_columns` on ``split``."""
    a, labels = acts.split(split)
    return DirectionBank(mean_difference_columns(a, labels, len(acts.classes)), "class-mean difference")


def probe(acts: "Activations", l2: float = 1e-3, steps: int = 200, split: str = "train",
          seed: int = 0) -> DirectionBank:
    """The oracle direction of every class from a one-vs-rest logistic probe on the head input.

    Minimises, for all K classes at once, ``mean BCE(σ(Ã w_k + β_k), [y = k]) + l2 Σ_k ||w_k||²``
    on the standardised input ``Ã = (A − m) / σ`` (L-BFGS, ``steps`` iterations), then maps each
    weight back to the raw input, ``c_k = w_k / σ``: what one unit of each raw dimension is worth
    to the probe, the scale on which Eq. 1 rescales the head's columns.
    """
    a, labels = acts.split(split)
    a = a.double()
    mean, std = a.mean(0), a.std(0).clamp_min(1e-12)
    x = (a - mean) / std
    target = torch.nn.functional.one_hot(labels, len(acts.classes)).double()
    torch.manual_seed(seed)
    w = torch.zeros(a.shape[1], len(acts.classes), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(acts.classes), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, target) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return DirectionBank((w.detach() / std[:, None]).float(), "one-vs-rest probe")


# =========================================================================== the sparse arm


def sparse_k(d_latent: int) -> int:
    """The sparse arm's k: ``max(1, d // 8)`` (:data:`SPARSE_SHARE`).

    >>> sparse_k(64), sparse_k(256), sparse_k(4)
    (8, 32, 1)
    """
    return max(1, int(d_latent) // SPARSE_SHARE)


def sparse_autoencoder(acts: "Activations", d_latent: int, options: dict[str, Any], tau: float = 0.1):
    """The sparse arm's autoencoder: TopK, ``k = sparse_k(d)``, no L1, trained like the chapter's own.

    Returns ``(sae, dominant, metrics)`` as :func:`salve_utils.study.ablations.retrained` does, the
    metrics with ``k`` and ``l0_rel`` (:func:`relative_l0` on the validation activations) added.
    """
    k = sparse_k(d_latent)
    sae, dominant, metrics = retrained(acts, d_latent, 0.0, options, activation="topk", k=k)
    with torch.no_grad():
        rel = relative_l0(sae.encode(acts.val), tau)
    return sae, dominant, {**metrics, "k": k, "l0_rel": rel["l0"]}


@torch.no_grad()
def relative_l0(z: torch.Tensor, tau: float = 0.1, quantile: float = 0.99) -> dict[str, float]:
    """L0 counted with a tolerance relative to each latent's own scale.

    A linear autoencoder has no exact zeros, so an absolute tolerance counts every latent.
    Here latent l is *active* on a sample when ``|z_l| > τ q_l``, with ``q_l`` the ``quantile``
    of ``|z_l|`` over the samples; a latent whose spread is below ``1e-6`` of the largest is
    dead (never active). Returns ``l0`` (mean active latents per sample), ``l0_share``
    (``l0 / d``) and ``dead`` (count).

    >>> z = torch.zeros(100, 4); z[:10, 0] = 1.0; z[:, 1] = torch.linspace(-1, 1, 100)
    >>> m = relative_l0(z); round(m["l0"], 2), m["dead"]
    (1.0, 2)
    """
    if not 0 < tau < 1:
        raise ValueError(f"tau must lie in (0, 1), got {tau!r}")
    mag = z.abs().double()
    q = torch.quantile(mag, quantile, dim=0)
    spread = z.double().std(0)
    alive = spread > 1e-6 * float(spread.max()) if float(spread.max()) > 0 else torch.zeros_like(spread, dtype=bool)
    active = (mag > tau * q) & alive & (q > 0)
    l0 = float(active.sum(1).double().mean())
    return {"l0": l0, "l0_share": l0 / z.shape[1], "dead": int((~alive).sum())}


def sparsity_path(acts: "Activations", d_latent: int, l1s: Sequence[float], options: dict[str, Any],
                  tau: float = 0.1, factor: float = 3.0, max_extra: int = 4) -> pd.DataFrame:
    """The linear L1 autoencoder along λ₁, extended until L1 bites: relative L0 below ``d / 4``.

    Trains one linear autoencoder per λ₁ of ``l1s`` (the chapter's sweep), then continues the
    path by factors of ``factor`` (at most ``max_extra`` more) until :func:`relative_l0` on the
    validation activations falls below ``d / 4``. One row per λ₁: ``l1, extended, fvu, l0_abs``
    (absolute tolerance, as :func:`salve_utils.method.sae.sae_metrics`), ``l0_rel, l0_share, dead,
    participation, bites``.
    """
    from ..method.sae import sae_metrics

    opts = {**{k: v for k, v in options.items() if k not in ("device", "activation", "k")}, "progress": False}
    rows, grid = [], [float(x) for x in sorted(l1s)]
    extra = 0
    while True:
        lam = grid[len(rows)] if len(rows) < len(grid) else grid[-1] * factor ** (extra + 1)
        model, _ = train_sae(acts.train, d_latent, lam, **opts)
        with torch.no_grad():
            rel = relative_l0(model.encode(acts.val), tau)
        m = sae_metrics(model, acts.val)
        rows.append({"l1": lam, "extended": len(rows) >= len(grid), "fvu": m["fvu"], "l0_abs": m["l0"],
                     "l0_rel": rel["l0"], "l0_share": rel["l0_share"], "dead": rel["dead"],
                     "participation": m["participation"], "bites": rel["l0"] < d_latent / 4})
        if len(rows) > len(grid):
            extra += 1
        if len(rows) >= len(grid) and (rows[-1]["bites"] or extra >= max_extra):
            return pd.DataFrame(rows)


# =========================================================================== what the head allows


def column_share(c: torch.Tensor) -> float:
    """The effective share of dimensions a direction touches: ``(Σ|c_j|)² / (M Σ c_j²)``.

    1 when every ``|c_j|`` is equal (the edit rescales every column alike), ``1/M`` when one
    dimension carries it all (the edit zeroes one column).

    >>> column_share(torch.tensor([1.0, 1.0, 1.0, 1.0])), column_share(torch.tensor([0.0, 2.0, 0.0, 0.0]))
    (1.0, 0.25)
    """
    c = c.double().abs()
    return float(c.sum() ** 2 / (len(c) * c.pow(2).sum()))


def evidence_overlap(acts: "Activations", split: str = "val") -> pd.DataFrame:
    """Per class k: how much the dimensions that carry its evidence also carry the other classes'.

    Class k's evidence on its own images is the positive part of what each dimension adds to
    its logit over the mean of the other logits, ``e_kj = max(0, mean_{x∈k} (w_kj − w̄_{−k,j}) a_j(x))``.
    Its overlap is the cosine between ``e_k`` and ``Σ_{i≠k} e_i``. Eq. 1 rescales dimensions, not
    directions: near 0, the classes' evidence lives on dimensions of their own and an edit can
    take one class's away from it alone; near 1, whatever lowers class k lowers the others alike.
    Returns ``class, overlap``.

    >>> import torch
    >>> from salve_utils.method.activations import Activations
    >>> a = torch.eye(3); y = torch.arange(3)
    >>> evidence_overlap(Activations(a, y, a, y, ["a", "b", "c"], torch.eye(3), torch.zeros(3)))["overlap"].tolist()
    [0.0, 0.0, 0.0]
    """
    a, labels = acts.split(split)
    weight = acts.weight.detach().double()
    evidence = []
    for k in range(len(acts.classes)):
        x = a[labels == k].double()
        if not len(x):
            raise ValueError(f"class {acts.classes[k]!r} has no samples in the {split} split")
        rest = (weight.sum(0) - weight[k]) / (len(weight) - 1)
        evidence.append(((weight[k] - rest) * x.mean(0)).clamp_min(0))
    e = torch.stack(evidence)
    others = e.sum(0, keepdim=True) - e
    cos = (e * others).sum(1) / (e.norm(dim=1) * others.norm(dim=1)).clamp_min(1e-300)
    return pd.DataFrame({"class": list(acts.classes), "overlap": cos.tolist()})


def regime_measures(acts: "Activations", arms: dict[str, Variant]) -> pd.DataFrame:
    """The measured quantities that place an edition between the known-answer regimes.

    Per arm: the median :func:`column_share` of the classes' edited directions; per edition
    (the same on every row): the median :func:`evidence_overlap`.
    """
    overlap = float(evidence_overlap(acts)["overlap"].median())
    return pd.DataFrame([{"arm": name, "column_share": float(np.median([column_share(v.sae.decoder_column(v.dominant[c]))
                                                                        for c in acts.classes])),
                          "evidence_overlap": overlap} for name, v in arms.items()])


# =========================================================================== judging the arms alike


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact binomial interval of a share ``k / n``.

    >>> [round(x, 3) for x in clopper_pearson(0, 10)]
    [0.0, 0.308]
    """
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    q = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(q, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - q, k + 1, n - k))
    return lo, hi


def judge_arms(acts: "Activations", arms: dict[str, Variant], strengths: Sequence[float] | np.ndarray,
               th: Thresholds, null_draws: int = 20, seed: int = 0, classes: Sequence[str] | None = None,
               null_classes: Sequence[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Sweep and judge every arm alike: ``(table, per_class, curves)``.

    Every arm edits ``classes`` (default: all) and gets nulls for ``null_classes`` (default:
    the same). ``table`` has one row per arm: :func:`salve_utils.study.ablations.score_variant`
    (classes reached, rescued, the suppress and specific verdicts against the arm's own
    permuted-|c| and uniform nulls) and the exact interval of the rescued share;
    ``per_class`` is :func:`salve_utils.study.ablations.rescued` per arm; ``curves`` the sweeps.
    """
    rows, per_class, all_curves = [], [], []
    for name, variant in arms.items():
        curves = variant_curves(acts, variant, strengths, classes).assign(variant=name)
        null = variant_nulls(acts, variant, curves, th, n_draws=null_draws, seed=seed,
                             classes=null_classes if null_classes is not None else classes)
        score = score_variant(curves, null, th)
        lo, hi = clopper_pearson(score["rescued"], score["classes"])
        rows.append({"arm": name, "direction": variant.change, **score, "rescued_lo": lo, "rescued_hi": hi})
        per_class.append(rescued(curves, th).assign(arm=name))
        all_curves.append(curves)
    return pd.DataFrame(rows), pd.concat(per_class, ignore_index=True), pd.concat(all_curves, ignore_index=True)


def diagnose(table: pd.DataFrame, share: float = RESCUE_SHARE) -> dict[str, Any]:
    """Which part fails, by a declared rule: an arm *works* when it rescues ``⌈share · K⌉`` classes.

    ``paper`` works → ``"paper works"``: the paper's edit does what it claims here; else an
    oracle arm (any arm whose name starts with ``"oracle"``: one label-informed direction
    that works shows that Eq. 1 can) works → ``"feature stage"``: the autoencoder's latent is
    not the direction Eq. 1 needs; else → ``"edit"``: Eq. 1 cannot do it on this head even
    with the labels. The sparse arm says whether a sparse autoencoder's latent is a direction
    good enough. Returns ``goal``, ``classes``, ``works`` (arm → bool) and ``finding``.

    >>> t = pd.DataFrame({"arm": ["paper", "oracle", "sparse"], "classes": [10] * 3, "rescued": [0, 9, 2]})
    >>> diagnose(t)["finding"]
    'feature stage'
    """
    classes = int(table["classes"].max())
    goal = int(np.ceil(share * classes))
    works = {str(a): bool(r >= goal) for a, r in zip(table["arm"], table["rescued"])}
    oracle = any(w for a, w in works.items() if a.startswith("oracle"))
    finding = "paper works" if works.get("paper") else "feature stage" if oracle else "edit"
    return {"goal": goal, "classes": classes, "works": works, "finding": finding}


def arm_records(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The rows of :func:`judge_arms`'s table as plain JSON values, by arm (NaN → ``None``).

    >>> t = pd.DataFrame({"arm": ["paper"], "reached": [0], "rescued": [0], "classes": [10], "rescued_lo": [0.0],
    ...                   "rescued_hi": [0.31], "median_strength": [float("nan")], "median_worst_loss": [float("nan")],
    ...                   "suppress": ["does not hold"], "specific": ["inconclusive"]})
    >>> arm_records(t)["paper"]["median_strength"] is None
    True
    """
    counts, shares = ("reached", "rescued", "classes"), ("rescued_lo", "rescued_hi", "median_strength",
                                                         "median_worst_loss")
    return {str(r["arm"]): {**{c: int(r[c]) for c in counts},
                            **{c: None if pd.isna(r[c]) else float(r[c]) for c in shares},
                            "suppress": str(r["suppress"]), "specific": str(r["specific"])}
            for r in table.to_dict("records")}
