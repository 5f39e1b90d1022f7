"""The rulebook: one set of rules turns every measurement of the report into a verdict.

A verdict is one of :data:`KINDS`. Each claim of the paper has a :class:`Rule` that
says what is measured, when the claim *holds*, when it holds only *partly*, and which
null the measured effect must clear. A verdict that would be *holds* or *partly*
becomes *inconclusive* when its effect does not clear its null (or was not measured);
a claim the measurement contradicts does not hold, whatever the null. The thresholds are one
:class:`Thresholds` object (the summary's parameters), applied identically to every
claim and every edition, and :func:`rulebook` renders the rules with their values —
the table the method page shows.

The three building blocks every rule uses:

* :func:`within` — a loss against a tolerance: ``holds`` when ``loss ≤ t``, ``partly``
  when ``loss ≤ f·t`` (``f`` = ``partly_factor``), else ``does not hold``;
* :func:`share` — a per-class outcome: ``holds`` when every class has it, ``partly``
  when at least the ``majority`` share does; a *holds* or *partly* that rests on
  fewer than ``min_classes`` classes is inconclusive (:func:`supported`);
* :func:`beats_null` — an effect counts only outside the central ``null_level`` range of its null
  distribution (e.g. the same edit along random directions).

>>> th = Thresholds()
>>> within(0.03, th.tolerance, th)
'holds'
>>> within(0.12, th.tolerance, th)
'partly'
>>> weakest("holds", "partly", "holds")
'partly'
>>> str(Verdict("holds", "3 of 3 classes"))
'holds: 3 of 3 classes'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = ["KINDS", "OTHER_KINDS", "RULES", "Rule", "Thresholds", "Verdict", "beats_null", "rulebook", "share",
           "specificity", "supported", "weakest", "within"]

#: Verdict kinds of the rules, strongest first. "inconclusive": the effect does not clear its null (or was
#: not measured).
KINDS = ("holds", "partly", "does not hold", "inconclusive")
#: Kinds outside the rules: the paper's setting differs, or the paper has no number to compare with.
OTHER_KINDS = ("differs", "not comparable", "not tested")


@dataclass(frozen=True)
class Thresholds:
    """Every number that turns a measurement into a verdict (the summary's parameters).

    Parameters
    ----------
    target_accuracy : a class counts as suppressed ("≈0%") at or below this accuracy.
    tolerance : the largest accuracy loss of the *worst* other class that still counts
        as "stays" / "harmless".
    mean_tolerance : the same for the *mean* over the other classes.
    partly_factor : "partly" allows this many times a tolerance.
    fixed_strength : the one normalised strength ``α · max_j |c_j|`` at which every class
        is also judged (besides its own operating point).
    majority : the share of classes for "partly" on a per-class claim.
    null_level : an effect counts only outside this central range of its null (0.95: below its 2.5% or
        above its 97.5% quantile, the band the chapters draw).
    agreement : the relative difference under which two α_crit estimates agree.
    exact_share : the share of images on which the linear α_crit must be exact to "hold".
    min_classes : the fewest classes (or planted parts) a *holds* or *partly* may rest on; fewer make it
        inconclusive (a verdict on two classes says little about a claim about every class).
    replication : the share of autoencoder seeds in which a class must be suppressed for its suppression
        to count as replicated (0.8: 8 of 10 seeds).
    inert_change : the Tower is judged at the largest swept strength at which the median other latent moves
        the Tower's second class by at most this (where most latents are inert, so an effect can be the Tower's).
    min_compared : the fewest images on which two α_crit estimates are compared for a verdict.
    baseline_match : the accuracy that counts as matching the paper's ≈95% baseline.
    recovery_threshold : the |r| at which a planted part counts as recovered.

    Examples
    --------
    >>> Thresholds(tolerance=0.1).tolerance
    0.1
    >>> Thresholds(tolerance=-1)
    Traceback (most recent call last):
    ...
    ValueError: tolerance must be in [0, 1], got -1
    """

    target_accuracy: float = 0.05
    tolerance: float = 0.05
    mean_tolerance: float = 0.02
    partly_factor: float = 3.0
    fixed_strength: float = 1.0
    majority: float = 0.5
    null_level: float = 0.95
    agreement: float = 1e-3
    exact_share: float = 0.9
    min_classes: int = 5
    replication: float = 0.8
    inert_change: float = 0.05
    min_compared: int = 10
    baseline_match: float = 0.93
    recovery_threshold: float = 0.5

    def __post_init__(self) -> None:
        unit = ("target_accuracy", "tolerance", "mean_tolerance", "majority", "null_level", "exact_share",
                "baseline_match", "recovery_threshold", "replication", "inert_change")
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")
            if f.name in unit and not 0 <= value <= 1:
                raise ValueError(f"{f.name} must be in [0, 1], got {value!r}")
        if self.partly_factor < 1:
            raise ValueError(f"partly_factor must be ≥ 1 (partly is weaker than holds), got {self.partly_factor!r}")
        for name in ("min_compared", "min_classes"):
            value = getattr(self, name)
            if value < 1 or int(value) != value:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.fixed_strength <= 0 or self.agreement <= 0:
            raise ValueError("fixed_strength and agreement must be positive")


@dataclass(frozen=True)
class Verdict:
    """A verdict kind and the measured reason, printed ``"<kind>: <reason>"``."""

    kind: str
    reason: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS + OTHER_KINDS:
            raise ValueError(f"verdict kind {self.kind!r} is not one of {KINDS + OTHER_KINDS}")

    def __str__(self) -> str:
        return f"{self.kind}: {self.reason}"


def within(loss: float, tolerance: float, th: Thresholds) -> str:
    """``holds`` when ``loss ≤ tolerance``, ``partly`` when ``loss ≤ partly_factor · tolerance``.

    ``loss`` is positive when accuracy falls; a NaN loss (nothing measured) is inconclusive.
    """
    if loss is None or not np.isfinite(loss):
        return "inconclusive"
    if loss <= tolerance:
        return "holds"
    return "partly" if loss <= th.partly_factor * tolerance else "does not hold"


def weakest(*kinds: str) -> str:
    """The weakest of several verdict kinds; any "inconclusive" makes the whole inconclusive."""
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"verdict kind {kind!r} is not one of {KINDS}")
    if "inconclusive" in kinds:
        return "inconclusive"
    return max(kinds, key=KINDS.index)


def supported(kind: str, n: int, th: Thresholds) -> str:
    """A *holds* or *partly* that rests on fewer than ``min_classes`` classes is inconclusive; other kinds stand.

    A contradiction stays a contradiction however few classes show it ("does not hold").

    >>> supported("partly", 3, Thresholds()), supported("holds", 5, Thresholds())
    ('inconclusive', 'holds')
    >>> supported("does not hold", 2, Thresholds())
    'does not hold'
    """
    return "inconclusive" if kind in ("holds", "partly") and n < th.min_classes else kind


def share(n_ok: int, n: int, th: Thresholds) -> str:
    """A per-class outcome: ``holds`` when all ``n`` classes have it, ``partly`` for at least ``majority``;
    either needs at least ``min_classes`` classes (:func:`supported`).

    >>> share(3, 10, Thresholds())
    'does not hold'
    >>> share(3, 3, Thresholds())  # every class, but only three of them
    'inconclusive'
    """
    if n <= 0:
        return "inconclusive"
    if n_ok == n:
        return supported("holds", n, th)
    return supported("partly", n, th) if n_ok / n >= th.majority else "does not hold"


def specificity(mean_loss: float, worst_loss: float, th: Thresholds) -> str:
    """Harm to the other classes, judged by their mean *and* their worst: the weaker of the two.

    >>> specificity(0.01, 0.26, Thresholds())  # a small mean hides one class that loses 26 points
    'does not hold'
    """
    return weakest(within(mean_loss, th.mean_tolerance, th), within(worst_loss, th.tolerance, th))


def beats_null(effect: float, null: Sequence[float] | np.ndarray, th: Thresholds, larger: bool = True) -> bool:
    """Does ``effect`` lie outside the central ``null_level`` range of its null distribution, on the named side?

    ``larger=True`` asks whether the effect exceeds the range's upper end (the
    ``(1 + null_level) / 2`` quantile, e.g. an accuracy gain larger than random
    directions give), ``False`` whether it falls below its lower end (the
    ``(1 - null_level) / 2`` quantile). This is the band the chapters draw. An empty
    null cannot be beaten.

    >>> beats_null(0.5, np.linspace(0, 0.2, 50), Thresholds())
    True
    >>> beats_null(0.1, np.linspace(0, 0.2, 50), Thresholds())
    False
    >>> beats_null(-0.1, np.linspace(0, 0.2, 50), Thresholds(), larger=False)
    True
    """
    null = np.asarray(null, dtype=np.float64)
    null = null[np.isfinite(null)]
    if not len(null) or not np.isfinite(effect):
        return False
    tail = (1 - th.null_level) / 2
    if larger:
        return bool(effect > np.quantile(null, 1 - tail))
    return bool(effect < np.quantile(null, tail))


@dataclass(frozen=True)
class Rule:
    """One claim's rule, in words with the thresholds' names in braces (filled by :func:`rulebook`).

    ``revised`` says, in a few words, what the rule's last revision changed (empty for a rule
    unchanged since the rulebook began); :func:`~salve_utils.study.claims.verdict_changes` names it
    when a verdict moves between two editions of the summary.
    """

    claim: str
    measure: str
    holds: str
    partly: str
    null: str = "—"
    revised: str = ""


RULES: tuple[Rule, ...] = (
    Rule("baseline", "validation top-1 of the backbone (Imagenette; other datasets: not comparable)",
         "≥ {baseline_match:.0%}", "— (below: differs, with the reason)"),
    Rule("suppress", "per class: does suppressing its own dominant feature take it to ≤ {target_accuracy:.0%} "
         "within the sweep (its operating point)?",
         "every class (at least {min_classes})", "at least {majority:.0%} of the classes (at least {min_classes})",
         "at the operating point the class's accuracy lies below the {null_level:.0%} range of ≥ 50 random "
         "directions with the same |c| values permuted across dimensions; inconclusive when the null changes "
         "the verdict. The uniform direction is set beside it only below strength 1: from strength 1 on it zeroes "
         "the head, a comparison it wins trivially",
         revised="fewer than {min_classes} classes: inconclusive; the uniform direction left out where it zeroes "
                 "the head"),
    Rule("specific", "the other classes' accuracy loss, mean and worst class, at each reached class's operating "
         "point (where the claim is made); strength {fixed_strength:g} is reported as context, not as evidence",
         "every edit: mean ≤ {mean_tolerance:.0%} and worst ≤ {tolerance:.0%} (at least {min_classes} classes "
         "reach their operating point)",
         "at least {majority:.0%} of the edits within {partly_factor:g}× those (at least {min_classes} classes)",
         "— (inconclusive when fewer than {min_classes} classes reach their operating point)",
         revised="judged at the operating points only (strength {fixed_strength:g} is context); fewer than "
                 "{min_classes} classes: inconclusive; loss intervals bootstrap the unedited accuracy too"),
    Rule("enhance", "as specific, for the enhanced class's feature at the sweep's end (its operating point); "
         "strength {fixed_strength:g} as context", "as specific", "as specific",
         "the enhanced class's accuracy above the {null_level:.0%} range of the permuted-|c| null",
         revised="judged at the sweep's end only (strength {fixed_strength:g} is context)"),
    Rule("tower_down", "the second Tower class's accuracy change when the Tower latent is suppressed, at the largest "
         "swept strength at which the median other latent changes that class by ≤ {inert_change:.0%} (where most "
         "latents are inert; computed from the run)",
         "a loss ≥ {tolerance:.0%}", "any loss",
         "the Tower search passed (same sign for both classes, score beyond the 95% quantile of "
         "random latent pairs, the Discover chapter's level) and the effect lies beyond the {null_level:.0%} range of "
         "every other latent's effect on that class; a latent the search did not find says nothing about the "
         "claim: inconclusive whichever way it points, as is an edition with no strength where most latents are inert",
         revised="judged where most latents are inert; inconclusive whichever way it points when the search found "
                 "no Tower; change intervals bootstrap the unedited accuracy too"),
    Rule("tower_spare", "the first Tower class's change against the second's, at the same strength",
         "loses ≤ {tolerance:.0%} and less than the second", "loses less than the second", "as tower_down",
         revised="as tower_down"),
    Rule("tower_other", "the watched class's change under the same edit", "a gain ≥ one fifth of {tolerance:.0%}",
         "any gain", "the search passed and the gain lies beyond every other latent's effect on that class; "
         "inconclusive whichever way it points when the search found no Tower", revised="as tower_down"),
    Rule("alpha_analytic", "the paper's claim: the share of images (whose logit reaches zero) on which the analytic "
         "(linear) α_crit equals the exact root of the edited logit",
         "exact on ≥ {exact_share:.0%}", "exact on ≥ {majority:.0%}",
         "— (inconclusive when fewer than {min_compared} images reach zero)",
         revised="split from alpha: the paper's claim alone"),
    Rule("alpha_code", "a check of this code, not a claim of the paper: logit-zero and decision-flip α_crit, "
         "numerical (exact roots) vs empirical (a strength grid through the real edited model, then bisection "
         "inside the bracketing cell)",
         "both agree to {agreement:.0e} (median relative difference, no image disagreeing)", "— (a check passes or "
         "fails)", "— (inconclusive when fewer than {min_compared} images are compared for either threshold)",
         revised="split from alpha: a check of the code, labelled as such"),
    Rule("seeds", "replication: per class the reference seed suppresses (≤ {target_accuracy:.0%}), is it suppressed "
         "in ≥ {replication:.0%} of the autoencoder seeds?",
         "every such class (at least {min_classes})", "at least {majority:.0%} of them (at least {min_classes})",
         "— (inconclusive when the reference seed suppresses fewer than {min_classes} classes and all replicate)",
         revised="replication of success (suppressed in ≥ {replication:.0%} of seeds), not agreement of outcomes"),
    Rule("baselines", "per class SALVE lowers, at matched efficacy (every method brought to SALVE's target "
         "accuracy): SALVE's worst other class against every baseline that got there",
         "no baseline is more specific (beyond overlapping 95% intervals), for every class (at least {min_classes})",
         "for at least {majority:.0%} of the classes (at least {min_classes})",
         revised="fewer than {min_classes} classes: inconclusive"),
    Rule("planted", "planted parts matched one-to-one to latents (Hungarian) with within-class |r| ≥ "
         "{recovery_threshold:g} (part and latent centred on their class means, so a class detector scores 0), over "
         "the parts that vary within a class",
         "every such part (at least {min_classes})", "at least {majority:.0%} of them (at least {min_classes})",
         revised="fewer than {min_classes} parts: inconclusive; recovery scored within class, not by raw |r|, which a "
                 "pure class indicator already earns"),
    Rule("planted_tower", "the shared planted part's latent: found (|r| ≥ {recovery_threshold:g}); suppressing it "
         "costs every carrying class more than {tolerance:.0%} and no other class more than {tolerance:.0%}",
         "found, hits every carrier and spares the others", "found and one of the two"),
)


def rulebook(th: Thresholds | None = None, rules: Iterable[Rule] = RULES) -> pd.DataFrame:
    """The rules as a table (``claim, measured, holds when, partly when, must clear, last revised``), thresholds
    filled in.

    >>> rulebook().set_index("claim").loc["baseline", "holds when"]
    '≥ 93%'
    """
    values = asdict(th or Thresholds())
    return pd.DataFrame([{"claim": r.claim, "measured": r.measure.format(**values), "holds when": r.holds.format(**values),
                          "partly when": r.partly.format(**values), "must clear": r.null.format(**values),
                          "last revised": r.revised.format(**values) or "—"}
                         for r in rules])
