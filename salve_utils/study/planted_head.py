"""Known answers by construction: head inputs with planted parts, no backbone.

The planted-parts images (:func:`salve_utils.method.data.make_planted_parts`) test the whole chain,
but a backbone trained on them spreads each part over many head-input dimensions, so whether
Eq. 1 *can* succeed there is itself a question. Here the head input is built so that it can:
part ``p`` owns a block of ``dims_per_part`` dimensions of ``a(x)``, with a fixed positive
pattern ``u_p``::

    a(x) = Σ_{p ∈ parts(x)} m_p(x) u_p + |ε|,     m_p ~ U(0.5, 1.5),  ε ~ N(0, noise²)

and the head is a multinomial logistic regression fitted to it (linearly readable by
construction). In regime ``"unique"`` (A) each class carries one part of its own, so
suppressing that part's block removes the class and spares the rest: a correct SALVE must
succeed. In regime ``"shared"`` (B) the classes are the planted images' AND of two parts
(:data:`salve_utils.method.data.PLANTED_CLASSES`), so most blocks carry two classes' evidence.

>>> acts, parts = planted_activations("unique", n_per_class=20)
>>> acts.train.shape, len(acts.classes), parts.train.shape
(torch.Size([200, 96]), 10, torch.Size([200, 12]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from ..method.activations import Activations
from ..method.data import PLANTED_PARTS, planted_classes

if TYPE_CHECKING:
    import pandas as pd

    from .verdicts import Thresholds

__all__ = ["PartLabels", "RegimeStudy", "fit_head", "planted_activations", "regime_study"]


@dataclass(frozen=True)
class PartLabels:
    """Which planted parts each sample shows: bool ``(N, P)`` per split, parts in :data:`PLANTED_PARTS` order."""

    train: torch.Tensor
    val: torch.Tensor
    parts: tuple[str, ...] = tuple(PLANTED_PARTS)


def fit_head(a: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float = 1e-4,
             steps: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """A multinomial logistic regression ``(W, b)`` on ``a``: minimises ``CE(a Wᵀ + b, y) + l2 ||W||²`` (L-BFGS)."""
    w = torch.zeros(num_classes, a.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    x = a.double()
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w.T + b, labels) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().float(), b.detach().float()


def planted_activations(regime: str = "unique", n_per_class: int = 200, dims_per_part: int = 8,
                        noise: float = 0.1, distractor_prob: float = 0.3,
                        seed: int = 0) -> tuple[Activations, PartLabels]:
    """Head inputs with planted parts and a head fitted to them (see the module docstring).

    Parameters
    ----------
    regime : "unique" (A: one class-unique part per class) or "shared" (B: the planted images' classes)
    n_per_class : samples per class in each split (train and val)
    dims_per_part : dimensions of ``a(x)`` each part owns (``M = 12 · dims_per_part``)
    noise : scale of the non-negative background ``|ε|`` on every dimension
    distractor_prob : probability that a sample also shows one part its class lacks (in regime
        A only the parts no class carries, so every sample stays unambiguous)
    seed : seeds the patterns and both splits

    Returns
    -------
    acts : :class:`~salve_utils.method.activations.Activations` with the fitted head (``meta["regime"]``)
    parts : :class:`PartLabels`
    """
    mapping = planted_classes(regime)
    if n_per_class < 2 or dims_per_part < 1 or not noise >= 0 or not 0 <= distractor_prob <= 1:
        raise ValueError("need n_per_class >= 2, dims_per_part >= 1, noise >= 0 and distractor_prob in [0, 1]")
    g = torch.Generator().manual_seed(seed)
    n_parts, classes = len(PLANTED_PARTS), list(mapping)
    carried = {p for parts in mapping.values() for p in parts}
    patterns = torch.zeros(n_parts, n_parts * dims_per_part)
    for p in range(n_parts):
        patterns[p, p * dims_per_part:(p + 1) * dims_per_part] = 0.5 + torch.rand(dims_per_part, generator=g)

    def split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        labels = torch.arange(len(classes)).repeat_interleave(n_per_class)
        on = torch.zeros(len(labels), n_parts, dtype=torch.bool)
        for i, label in enumerate(labels.tolist()):
            own = mapping[classes[label]]
            for part in own:
                on[i, PLANTED_PARTS.index(part)] = True
            if float(torch.rand(1, generator=g)) < distractor_prob:
                spare = [p for p in PLANTED_PARTS if p not in own and (regime == "shared" or p not in carried)]
                on[i, PLANTED_PARTS.index(spare[int(torch.randint(len(spare), (1,), generator=g))])] = True
        strength = on * (0.5 + torch.rand(len(labels), n_parts, generator=g))
        a = strength @ patterns + (noise * torch.randn(len(labels), patterns.shape[1], generator=g)).abs()
        return a, labels, on

    train, train_labels, train_parts = split()
    val, val_labels, val_parts = split()
    weight, bias = fit_head(train, train_labels, len(classes))
    acts = Activations(train, train_labels, val, val_labels, classes, weight, bias,
                       meta={"regime": regime, "dims_per_part": dims_per_part, "noise": noise, "seed": seed})
    return acts, PartLabels(train_parts, val_parts)


@dataclass
class RegimeStudy:
    """What :func:`regime_study` measured on one regime (tables in the chapter's formats)."""

    regime: str
    acts: Activations
    l1: float  # the paper arm's λ₁, chosen by the autoencoder chapter's rule
    path: pd.DataFrame  # the paper arm along λ₁: l1, fvu, l0_rel, reached, rescued
    arms: pd.DataFrame  # salve_utils.study.arms.judge_arms's table
    per_class: pd.DataFrame
    curves: pd.DataFrame
    recovery: pd.DataFrame  # per arm with an autoencoder: parts recovered raw, beyond the class null, within class
    overlap: float  # median salve_utils.study.arms.evidence_overlap


def _recovery(name: str, z: torch.Tensor, parts: PartLabels, acts: Activations, threshold: float) -> dict:
    from .parts import class_indicator_null, part_assignment, part_correlations, within_class_correlations

    names = list(parts.parts)
    shown = parts.val.any(0).numpy()  # parts that occur at all in this regime
    raw = part_assignment(part_correlations(z, parts.val, names)).set_index("part")
    within_r = within_class_correlations(z, parts.val, acts.val_labels, names)
    within = part_assignment(within_r).set_index("part")
    null = class_indicator_null(parts.val, acts.val_labels, names, acts.classes).set_index("part")
    kept = [p for p, s in zip(names, shown) if s]
    testable = [p for p in kept if within_r.loc[p].notna().any()]  # parts that vary within some class
    return {"arm": name, "parts": len(kept),
            "recovered": int((raw.loc[kept, "abs_corr"] >= threshold).sum()),
            "beyond_class_null": int(((raw.loc[kept, "abs_corr"] >= threshold)
                                      & (raw.loc[kept, "abs_corr"] > null.loc[kept, "null_abs_corr"])).sum()),
            "testable_within_class": len(testable),
            "recovered_within_class": int((within.loc[testable, "abs_corr"] >= threshold).sum()),
            "median_within": float(within.loc[testable, "abs_corr"].median()) if testable else float("nan")}


def regime_study(regime: str, d_latent: int, sweep_l1: Sequence[float], max_fvu: float, options: dict,
                 strengths: Sequence[float], th: Thresholds, null_draws: int = 20, threshold: float = 0.5,
                 seed: int = 0, **data_options) -> RegimeStudy:
    """The three arms of :mod:`salve_utils.study.arms` on planted head inputs of one regime.

    The paper arm's autoencoder is chosen as the autoencoder chapter chooses it: linear, L1,
    the largest λ₁ of ``sweep_l1`` whose validation FVU is at most ``max_fvu``
    (:func:`salve_utils.method.sae.select_l1`); every λ₁ of the sweep is also scored by the edit
    (``path``). Part recovery is scored one-to-one (Hungarian), raw and against what a pure
    class indicator scores, and within class (:func:`salve_utils.study.parts.within_class_correlations`).
    """
    import numpy as np
    import pandas as pd

    from . import arms as arms_
    from .ablations import Variant, rescued, variant_curves
    from ..method.features import class_mean_latents
    from ..method.sae import sae_metrics, select_l1, train_sae

    acts, parts = planted_activations(regime, seed=seed, **data_options)
    opts = {**options, "seed": seed, "progress": False}
    rows, models = [], {}
    for lam in sorted(float(x) for x in sweep_l1):
        model, _ = train_sae(acts.train, d_latent, lam, **opts)
        with torch.no_grad():
            mu = class_mean_latents(model.encode(acts.train), acts.train_labels, len(acts.classes))
            rel = arms_.relative_l0(model.encode(acts.val))
        dominant = dict(zip(acts.classes, (int(l) for l in mu.abs().argmax(1).tolist())))
        res = rescued(variant_curves(acts, Variant("paper", "", model, dominant), strengths), th)
        rows.append({"d_latent": d_latent, "l1": lam, "fvu": sae_metrics(model, acts.val)["fvu"], "l0_rel": rel["l0"],
                     "reached": int(res["reached"].sum()), "rescued": int(res["rescued"].sum())})
        models[lam] = (model, dominant)
    path = pd.DataFrame(rows)
    l1, _ = select_l1(path, d_latent, max_fvu)
    paper, dominant = models[l1]
    oracle, probe = arms_.mean_difference(acts), arms_.probe(acts, seed=seed)
    sparse, sparse_dominant, _ = arms_.sparse_autoencoder(acts, d_latent, opts)
    arm_set = {"paper": Variant("paper", f"linear L1 autoencoder, λ₁ = {l1:g}", paper, dominant),
               "oracle": Variant("oracle", "class-mean difference", oracle, oracle.dominant(acts.classes)),
               "oracle (probe)": Variant("oracle (probe)", "one-vs-rest probe", probe, probe.dominant(acts.classes)),
               "sparse": Variant("sparse", f"TopK autoencoder, k = {arms_.sparse_k(d_latent)}", sparse,
                                 sparse_dominant)}
    table, per_class, curves = arms_.judge_arms(acts, arm_set, np.asarray(strengths), th, null_draws=null_draws,
                                                seed=seed)
    with torch.no_grad():
        recovery = pd.DataFrame([_recovery(n, m.encode(acts.val), parts, acts, threshold)
                                 for n, m in (("paper", paper), ("sparse", sparse))])
    overlap = float(arms_.evidence_overlap(acts)["overlap"].median())
    return RegimeStudy(regime, acts, l1, path, table, per_class, curves, recovery, overlap)
