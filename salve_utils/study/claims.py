"""Stage 12a — each headline claim of the paper judged on one edition's tables by the rulebook.

One function per claim (``judge_<claim>``) reads only result tables and chapter records
and returns a :class:`~salve_utils.study.verdicts.Verdict` with the measurement in words;
:func:`claims` runs them all for one edition. The rules and their thresholds are
declared once in :mod:`salve_utils.study.verdicts` (``RULES``, :class:`Thresholds`): the
same ``within`` / ``share`` / ``specificity`` / ``beats_null`` decide every claim, on
every edition. Every accuracy carries its bootstrap 95% interval over the validation
images (:mod:`salve_utils.study.stats`). A measurement that is missing, or an effect that does
not clear its null, gives "inconclusive", never "holds".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from .nulls import inert_strength, latent_spread, uniform_is_degenerate
from .stats import accuracy_interval, change_interval, format_interval, loss_interval
from ..common.tables import load_table
from .verdicts import RULES, Rule, Thresholds, Verdict, beats_null, rulebook, share, specificity, supported

__all__ = ["CLAIM_NAMES", "CLAIM_RECORDS", "CLAIM_TABLES", "PAPER_CLAIMS", "PREDECESSORS", "Measured", "claim_inputs",
           "claim_name", "claims",
           "judge_alpha", "judge_baseline", "judge_baselines", "judge_enhance", "judge_planted", "judge_planted_tower",
           "judge_seeds", "judge_specific", "judge_suppress", "judge_tower", "measured_from", "recompute_claims",
           "rule_fingerprints", "verdict_changes"]

#: The paper's headline claims, in the words of the reproduction brief.
PAPER_CLAIMS: dict[str, str] = {
    "baseline": "ResNet-18 on Imagenette: ≈95% validation accuracy (ImageNet-pretrained, fine-tuned)",
    "suppress": "suppressing a class's dominant feature drives that class to ≈0%",
    "specific": "… while the other classes stay at ≈95%",
    "enhance": "enhancing a feature (golf ball) is harmless to the other classes",
    "tower_down": "suppressing the Tower feature lowers gas pump",
    "tower_spare": "… spares church",
    "tower_other": "… and moves chain saw the other way",
    "alpha_analytic": "the analytic α_crit is the threshold (analytic, numerical and empirical α_crit agree)",
    "alpha_code": "— (a check of this code, not a claim of the paper) numerical and empirical α_crit agree",
    "seeds": "the results are robust over 10 autoencoder seeds",
    "vit": "the same holds for ViT-B/16",
    "baselines": "— (beyond the paper) at matched efficacy SALVE harms the other classes no more than simple baselines",
    "planted": "— (beyond the paper) each planted part has a latent of its own",
    "planted_tower": "— (beyond the paper) the shared planted part has a latent, and suppressing it hits exactly the "
                     "classes that carry it",
}


#: Each claim's name in a table or a figure (a few words a reader understands without the key).
CLAIM_NAMES: dict[str, str] = {
    "baseline": "backbone accuracy",
    "suppress": "suppression reaches ≈0%",
    "specific": "other classes unharmed",
    "enhance": "enhancing is harmless",
    "tower_down": "Tower lowers gas pump",
    "tower_spare": "Tower spares church",
    "tower_other": "Tower lifts chain saw",
    "alpha_analytic": "analytic α-crit is exact",
    "alpha_code": "α-crit code check",
    "seeds": "robust over SAE seeds",
    "vit": "same on ViT",
    "baselines": "no worse than baselines",
    "planted": "planted parts recovered",
    "planted_tower": "shared planted part found",
}


def claim_name(claim: str) -> str:
    """A claim key as a reader's name: ``"tower_down"`` -> ``"Tower lowers gas pump"``; a suffix after ':' is kept.

    >>> claim_name("suppress")
    'suppression reaches ≈0%'
    >>> claim_name("seeds:dominant")
    'robust over SAE seeds (dominant)'
    """
    key, _, rest = claim.partition(":")
    name = CLAIM_NAMES.get(key, key.replace("_", " "))
    return f"{name} ({rest})" if rest else name

@dataclass
class Measured:
    """What one edition measured: its result tables (rows of its own nodes) and its chapters' records.

    ``tables`` maps a table name to its rows; ``records`` a chapter record name
    (``features``, ``control``, ``tower``, ``alpha_crit``, ``known_answers``,
    ``backbone``, ``baselines``) to its dict. A claim whose table or record is
    missing is judged "inconclusive".
    """

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)

    def record(self, name: str) -> dict[str, Any]:
        return self.records.get(name) or {}


def _missing(what: str) -> Verdict:
    return Verdict("inconclusive", f"not measured ({what} missing)")


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _at(curves: pd.DataFrame, role: str, direction: str, strength: float) -> tuple[float, pd.DataFrame]:
    """Rows of one curve at the swept strength nearest to ``strength``; returns (that strength, rows by class)."""
    sub = curves[(curves["feature_role"] == role) & (curves["direction"] == direction)]
    swept = np.sort(sub["strength"].unique())
    s = float(swept[np.argmin(np.abs(swept - strength))])
    return s, sub[sub["strength"] == s].set_index("class")


def _before(curves: pd.DataFrame, role: str, direction: str) -> pd.DataFrame:
    sub = curves[(curves["feature_role"] == role) & (curves["direction"] == direction)]
    return sub[sub["strength"] == sub["strength"].min()].set_index("class")


def _others(before: pd.DataFrame, after: pd.DataFrame, target: str) -> dict[str, Any]:
    """The other classes' mean and worst accuracy loss (before − after), with bootstrap intervals.

    The mean's interval is a stratified bootstrap over every other class's images; the
    worst's is the interval of that one class's loss (the bootstrap of a maximum over
    classes is biased upward). Both resample the accuracy before the edit as well
    (:func:`~salve_utils.study.stats.loss_interval`, :func:`~salve_utils.study.stats.change_interval`),
    so an interval keeps the baseline's uncertainty and cannot collapse to zero width.
    """
    b = before.drop(index=target)
    a = after.loc[b.index]
    base, acc, n = b["accuracy"].to_numpy(), a["accuracy"].to_numpy(), a["n"].to_numpy()
    loss = base - acc
    worst = int(np.argmax(loss))
    mean_ci = loss_interval(base, acc, n)
    lo, hi = change_interval(base[worst], acc[worst], n[worst])  # the worst class's own (a bootstrapped max is biased)
    worst_ci = (float(-hi), float(-lo))
    return {"mean": float(loss.mean()), "mean_ci": mean_ci, "worst": float(loss[worst]), "worst_ci": worst_ci,
            "worst_class": str(b.index[worst])}


def _loss_text(o: dict[str, Any]) -> str:
    return (f"the others lose {format_interval(o['mean'], *o['mean_ci'])} on average, "
            f"{format_interval(o['worst'], *o['worst_ci'])} at worst ({o['worst_class']})")


def _aggregate(kinds: list[str], th: Thresholds) -> str:
    """Per-edit verdicts to one: all hold → holds; at least ``majority`` hold at least partly → partly; either
    on at least ``min_classes`` edits (:func:`~salve_utils.study.verdicts.supported`).

    >>> _aggregate(["holds", "partly", "does not hold"] * 2, Thresholds())
    'partly'
    >>> _aggregate(["holds", "partly", "does not hold"], Thresholds())  # three classes are too few
    'inconclusive'
    """
    if not kinds or "inconclusive" in kinds:
        return "inconclusive"
    if all(k == "holds" for k in kinds):
        return supported("holds", len(kinds), th)
    ok = sum(k in ("holds", "partly") for k in kinds) / len(kinds) >= th.majority
    return supported("partly", len(kinds), th) if ok else "does not hold"


def _null_accuracy(nulls: pd.DataFrame, target: str, direction: str, kind: str, strength: float) -> np.ndarray:
    sub = nulls[(nulls["target"] == target) & (nulls["direction"] == direction) & (nulls["null"] == kind)]
    if not len(sub):
        return np.array([])
    swept = np.sort(sub["strength"].unique())
    s = swept[np.argmin(np.abs(swept - strength))]
    return sub[sub["strength"] == s]["target_accuracy"].to_numpy()


def _nearest_null_strength(nulls: pd.DataFrame, target: str, direction: str, strength: float) -> float:
    swept = np.sort(nulls[(nulls["target"] == target) & (nulls["direction"] == direction)]["strength"].unique())
    return float(swept[np.argmin(np.abs(swept - strength))])


def operating_table(m: Measured, th: Thresholds) -> pd.DataFrame | None:
    """Per class: reached (≤ target accuracy within the sweep), the operating strength and accuracy with its
    interval, and whether the feature beats its permuted null there (``NaN`` where no null was computed).

    ``uniform_accuracy`` is the uniform direction's accuracy at the same strength, only below
    strength 1 (``uniform_degenerate``: the null strength is 1 or more, where it zeroes the head).
    """
    curves, nulls = m.table("suppression_curves"), m.table("null_edits")
    if curves is None:
        return None
    own = curves[(curves["direction"] == "suppress") & curves["feature_role"].str.startswith("dominant:")]
    rows = []
    for role, sub in own.groupby("feature_role", sort=True):
        target = role.split(":", 1)[1]
        tgt = sub[sub["class"] == target].sort_values("strength")
        hit = tgt[(tgt["accuracy"] <= th.target_accuracy) & (tgt["strength"] > 0)]
        already = bool(tgt["accuracy"].iloc[0] <= th.target_accuracy)  # at or below the target unedited
        reached = bool(len(hit)) and not already
        s = float(hit["strength"].iloc[0]) if reached else float(tgt["strength"].max())
        row = {"class": target, "reached": reached, "strength": s if reached else np.nan,
               "accuracy": float(tgt.set_index("strength").loc[s, "accuracy"]), "n": int(tgt["n"].iloc[0]),
               "beats_null": np.nan, "uniform_accuracy": np.nan, "null_strength": np.nan, "already": already,
               "uniform_degenerate": False}
        if nulls is not None and (nulls["target"] == target).any():
            sn = _nearest_null_strength(nulls, target, "suppress", s)
            mine = float(tgt.iloc[np.argmin(np.abs(tgt["strength"].to_numpy() - sn))]["accuracy"])
            null = _null_accuracy(nulls, target, "suppress", "permuted", sn)
            uni = _null_accuracy(nulls, target, "suppress", "uniform", sn)
            # the uniform null at s >= 1 zeroes the head: a comparison it wins trivially, left out
            degenerate = uniform_is_degenerate(sn)
            row.update(null_strength=sn, beats_null=beats_null(mine, null, th, larger=False),
                       uniform_accuracy=float(uni[0]) if len(uni) and not degenerate else np.nan,
                       uniform_degenerate=bool(len(uni)) and degenerate)
        rows.append(row)
    out = pd.DataFrame(rows)
    out["lo"], out["hi"] = accuracy_interval(out["accuracy"].to_numpy(), out["n"].to_numpy())
    return out


# --------------------------------------------------------------------------- the judges, one per claim


def judge_baseline(m: Measured, th: Thresholds) -> Verdict:
    """Validation top-1 of the backbone against the paper's ≈95% (Imagenette only)."""
    acc, spec = m.table("backbone_accuracy"), m.record("backbone")
    if acc is None or not spec:
        return _missing("backbone_accuracy")
    row = acc[(acc["split"] == "val") & (acc["class"] == "all")].iloc[0]
    value, n = float(row["accuracy"]), int(row["n"])
    text = format_interval(value, *accuracy_interval(value, n))
    why = ("trained from scratch" if spec.get("weights", "none") == "none" else "fine-tuned") + \
        f" at {spec['eval_size']} px"
    if spec.get("dataset", "imagenette") != "imagenette":
        return Verdict("not comparable", f"{text} ({spec['arch']} on {spec['dataset']}, {why}); the paper reports "
                       "no accuracy for this dataset")
    if value >= th.baseline_match:
        return Verdict("holds", f"{text} ({spec['arch']}, {why})")
    return Verdict("differs", f"{text} ({spec['arch']}, {why}), below the paper's; the paper fine-tunes "
                   "ImageNet-pretrained weights at full resolution")


def judge_suppress(m: Measured, th: Thresholds) -> Verdict:
    """Share of classes that reach ≤ target accuracy *and* do so beyond their permuted null.

    When the null decides the verdict (the reached share alone would give a stronger
    verdict than the share that also beats the null), the verdict is inconclusive.
    """
    ops = operating_table(m, th)
    if ops is None:
        return _missing("suppression_curves")
    already = ops[ops["already"]]
    ops = ops[~ops["already"]]  # a class at or below the target before any edit says nothing about the edit
    judged = ops[ops["beats_null"].notna()]
    if not len(judged):
        return Verdict("inconclusive", f"{int(ops['reached'].sum())} of {len(ops)} classes reach "
                       f"≤ {th.target_accuracy:.0%}, but no null edits were measured")
    reached = judged["reached"].astype(bool)
    beat = reached & judged["beats_null"].astype(bool)
    uniform_known = reached & judged["uniform_accuracy"].notna()
    uniform = int((judged.loc[uniform_known, "uniform_accuracy"] <= th.target_accuracy).sum())
    degenerate = int((reached & judged["uniform_degenerate"].astype(bool)).sum())
    names = ", ".join(f"{r['class']} {format_interval(r['accuracy'], r['lo'], r['hi'])} at strength {r['strength']:.2g}"
                      for _, r in judged[reached].iterrows())
    text = (f"{int(reached.sum())} of {len(judged)} classes reach ≤ {th.target_accuracy:.0%}"
            + (f" ({names})" if names else "") + f"; {int(beat.sum())} of them beyond the permuted-|c| null"
            + (f"; the uniform direction (a pure logit rescaling) takes {uniform} of the {int(uniform_known.sum())} "
               "whose operating point lies below strength 1 there at the same strength" if uniform_known.any() else "")
            + (f"; the uniform direction is left out for the {degenerate} whose operating point lies at strength 1 or "
               "beyond: there it zeroes the head and takes every class but the one with the largest bias, a trivial "
               "comparison" if degenerate else "")
            + ("" if len(judged) == len(ops) else
               f"; nulls for {len(judged)} of {len(ops)} classes ({int(ops['reached'].sum())} of "
               f"{len(ops)} reach ≤ {th.target_accuracy:.0%})")
            + (f"; left out, already at ≤ {th.target_accuracy:.0%} before any edit: {', '.join(already['class'])}"
               if len(already) else ""))
    kind, kind_reached = share(int(beat.sum()), len(judged), th), share(int(reached.sum()), len(judged), th)
    if kind != kind_reached:
        return Verdict("inconclusive", text + f"; without the null it would be '{kind_reached}'")
    return Verdict(kind, text)


def _specific_at(curves: pd.DataFrame, direction: str, targets: dict[str, float],
                 th: Thresholds) -> tuple[str, list[dict[str, Any]]]:
    """Per target class (at its own strength), the specificity verdict of the others' mean and worst loss."""
    rows = []
    for target, s in targets.items():
        role = f"dominant:{target}"
        _, after = _at(curves, role, direction, s)
        o = _others(_before(curves, role, direction), after, target)
        rows.append({"class": target, "strength": s, **o, "kind": specificity(o["mean"], o["worst"], th)})
    return _aggregate([r["kind"] for r in rows], th), rows


def _median_text(rows: list[dict[str, Any]]) -> str:
    worst = max(rows, key=lambda r: r["worst"])
    return (f"median mean loss {np.median([r['mean'] for r in rows]):.1%}; worst single loss "
            f"{format_interval(worst['worst'], *worst['worst_ci'])} ({worst['worst_class']} when {worst['class']}'s "
            f"feature is edited); {sum(r['kind'] == 'holds' for r in rows)} of {len(rows)} edits within both "
            "tolerances")


def judge_specific(m: Measured, th: Thresholds) -> Verdict:
    """The others' mean *and* worst loss at each reached class's operating point, where the claim is made.

    The fixed strength is reported as context, not evidence: there most targets have
    barely moved, and "the others are spared" says little about an edit that barely acts.
    Fewer than ``min_classes`` reached classes give no *holds* or *partly*.
    """
    ops, curves = operating_table(m, th), m.table("suppression_curves")
    if ops is None:
        return _missing("suppression_curves")
    _, fixed = _specific_at(curves, "suppress", {c: th.fixed_strength for c in ops["class"]}, th)
    hit = ops[ops["reached"]]
    context = (f"context, not evidence: at strength {th.fixed_strength:g} (all {len(fixed)} classes), where the "
               f"median target has lost {_median_target_loss(curves, ops['class'], th.fixed_strength):.1%}, "
               + _median_text(fixed))
    if not len(hit):
        return Verdict("inconclusive", "no class reaches its operating point; " + context)
    op_kind, op = _specific_at(curves, "suppress", dict(zip(hit["class"], hit["strength"])), th)
    text = f"at the operating points ({len(op)} classes): " + _median_text(op)
    if len(op) < th.min_classes and op_kind == "inconclusive":
        text += f" (fewer than {th.min_classes} classes: no holds or partly)"
    return Verdict(op_kind, text + "; " + context)


def _median_target_loss(curves: pd.DataFrame, classes, strength: float) -> float:
    """The median over ``classes`` of each one's own accuracy loss when its dominant feature is suppressed."""
    losses = []
    for c in classes:
        role = f"dominant:{c}"
        losses.append(float(_before(curves, role, "suppress").loc[c, "accuracy"]
                            - _at(curves, role, "suppress", strength)[1].loc[c, "accuracy"]))
    return float(np.median(losses)) if losses else float("nan")


def judge_enhance(m: Measured, th: Thresholds) -> Verdict:
    """The enhanced class's others (mean and worst) at the sweep's end, its operating point (the fixed strength is
    context); its own gain must clear the permuted null."""
    curves, nulls, control = m.table("suppression_curves"), m.table("null_edits"), m.record("control")
    if curves is None or not control:
        return _missing("suppression_curves")
    target = control["enhance_class"]
    role = f"dominant:{target}"
    if not ((curves["feature_role"] == role) & (curves["direction"] == "enhance")).any():
        return _missing(f"the enhance curve of {target}")
    end = float(curves[(curves["feature_role"] == role) & (curves["direction"] == "enhance")]["strength"].max())
    rows = _specific_at(curves, "enhance", {target: end}, th)[1]
    kind = rows[0]["kind"]  # one edit: judged by itself (min_classes counts classes of a per-class claim)
    fixed = _specific_at(curves, "enhance", {target: th.fixed_strength}, th)[1]
    s, after = _at(curves, role, "enhance", end)
    base = float(_before(curves, role, "enhance").loc[target, "accuracy"])
    gain = float(after.loc[target, "accuracy"] - base)
    text = f"at strength {end:g}: {_loss_text(rows[0])}; {target} itself {gain * 100:+.1f} points (from {base:.1%}: " \
        f"headroom {1 - base:.1%})"
    context = f"; context, not evidence: at strength {th.fixed_strength:g}, {_loss_text(fixed[0])}"
    if nulls is None or not (nulls["target"] == target).any():
        return Verdict("inconclusive", text + "; no null edits were measured" + context)
    sn = _nearest_null_strength(nulls, target, "enhance", end)
    null = _null_accuracy(nulls, target, "enhance", "permuted", sn)
    mine = float(_at(curves, role, "enhance", sn)[1].loc[target, "accuracy"])
    if not len(null):
        return Verdict("inconclusive", text + "; no permuted null at this strength" + context)
    if not beats_null(mine, null, th, larger=True):
        return Verdict("inconclusive", text + f"; its accuracy under the edit ({mine:.1%}) is within the permuted "
                       f"null (its central {th.null_level:.0%} range ends at "
                       f"{np.quantile(null, (1 + th.null_level) / 2):.1%}); without the null it would be '{kind}'"
                       + context)
    return Verdict(kind, text + f"; {target}'s gain lies beyond the permuted null" + context)


def judge_tower(m: Measured, th: Thresholds) -> list[tuple[str, Verdict]]:
    """``tower_down``, ``tower_spare`` and ``tower_other`` from every latent's effect on the followed classes.

    The claims are judged at one strength taken from the run: the largest swept strength
    at which the median other latent moves the second Tower class by at most
    ``inert_change`` (:func:`~salve_utils.study.nulls.inert_strength`). Beyond it most latents
    move the class, and one latent's effect says little; an edition with no such strength
    is inconclusive. A Tower claim clears its null only when the Discover search passed
    (same sign for both classes, score beyond random latent pairs) *and* the Tower's
    effect on the class lies beyond the ``null_level`` of all latents' effects on that
    class. When the search found no Tower, the latent measured is not the Tower, and
    every Tower claim is inconclusive, whichever way its effect points.
    """
    found, tower, effects = m.record("features"), m.record("tower"), m.table("tower_effects")
    if not found or not tower or effects is None:
        return [("tower_down", _missing("tower_effects"))]
    a, b = found["tower_classes"]
    passes = bool(found.get("tower_passes", False))
    feature = int(found["tower"])
    search = ("the Tower search passed" if passes else
              "the Tower search found no latent of the same sign for both classes beyond random latent pairs")
    watched = list(tower.get("watch_classes", []))
    keys = ["tower_down", "tower_spare"] + ["tower_other" if len(watched) == 1 else f"tower_other:{w}"
                                            for w in watched]
    roles = {a: "church", b: "gas pump", **{w: "chain saw" for w in watched}}
    spread = latent_spread(effects, b, exclude=feature)
    strength = inert_strength(effects, b, th.inert_change, exclude=feature)
    if not np.isfinite(strength):
        s0 = float(spread.index[0]) if len(spread) else float("nan")
        why = (f"no swept strength where most latents are inert on {b}: at strength {s0:g}, the smallest swept, the "
               f"median other latent already moves it by {spread.iloc[0]:.1%} (more than {th.inert_change:.0%}), so "
               f"no latent's effect stands out; {search}" if len(spread) else f"no latent's effect on {b} measured")
        return [(k, Verdict("inconclusive", why)) for k in keys]
    at = effects[effects["strength"] == strength]

    def effect(cls: str) -> tuple[float, np.ndarray, str]:
        sub = at[at["class"] == cls]
        own = sub[sub["feature"] == feature].iloc[0]
        others = sub[sub["feature"] != feature]["change"].to_numpy()
        role = "" if roles[cls] == cls else f" (in the paper's role of {roles[cls]})"
        text = f"{cls}{role} {format_interval(own['change'], own['change_lo'], own['change_hi'], '{:+.1%}')}"
        return float(own["change"]), others, text

    def verdict(kind: str, cleared: bool, text: str) -> Verdict:
        if not passes:  # not the Tower: says nothing about the claim, whichever way it points
            return Verdict("inconclusive", text + f"; it would read '{kind}', but the latent measured is not a Tower "
                           "the search found")
        return Verdict(kind if cleared or kind == "does not hold" else "inconclusive", text)

    cb, null_b, tb = effect(b)
    ca, _, ta = effect(a)
    beyond_b = beats_null(cb, null_b, th, larger=False)
    where = (f"z{feature} suppressed at strength {strength:g}, the largest swept strength at which the median other "
             f"latent moves {b} by ≤ {th.inert_change:.0%} ({spread[strength]:.1%}); {search}")
    down = "holds" if cb <= -th.tolerance else "partly" if cb < 0 else "does not hold"
    out = [("tower_down", verdict(down, beyond_b, f"{tb} ({where}); {'beyond' if beyond_b else 'within'} the "
                                  f"{th.null_level:.0%} range of the other {len(null_b)} latents' effects on {b}"))]
    spare = "holds" if ca >= -th.tolerance and ca > cb else "partly" if ca > cb else "does not hold"
    out.append(("tower_spare", verdict(spare, beyond_b, f"{ta}, against {tb}")))
    for key, watch in zip(keys[2:], watched):
        cw, null_w, tw = effect(watch)
        beyond = beats_null(cw, null_w, th, larger=True)
        kind = "holds" if cw >= within_gain(th) else "partly" if cw > 0 else "does not hold"
        out.append((key, verdict(kind, beyond, f"{tw}; {'beyond' if beyond else 'within'} the {th.null_level:.0%} "
                                 f"range of the other latents' effects on {watch}")))
    return out


def within_gain(th: Thresholds) -> float:
    """The gain that counts as "moves the other way": one fifth of the tolerance (1 point at 5%)."""
    return th.tolerance / 5


def judge_alpha(m: Measured, th: Thresholds) -> list[tuple[str, Verdict]]:
    """Two claims from the α_crit chapter's record, kept apart.

    ``alpha_analytic`` (the paper's claim): the share of images whose logit reaches zero on
    which the analytic (linear) formula equals the exact root. ``alpha_code`` (a check of
    this code, labelled as such): empirical (a strength grid through the real edited
    model, then bisection inside the bracketing cell) against numerical α_crit, for the
    logit-zero and the decision-flip threshold. That two computations of ours agree says
    nothing about the paper's formula.
    """
    rec = m.record("alpha_crit")
    agree = rec.get("agreement")
    if not agree:
        return [("alpha_analytic", _missing("the α_crit record")), ("alpha_code", _missing("the α_crit record"))]
    n_finite, exact = int(agree.get("n_finite", 0)), float(agree["frac_exact"])
    text = f"the linear formula is exact for {exact:.1%} of the {n_finite} images whose logit reaches zero"
    if "spearman_flip" in rec:
        text += (f"; rank correlation of the class medians with how suppressible the class is: flip "
                 f"{rec['spearman_flip']:+.2f} (n = {rec['n_flip']}), logit zero {rec['spearman_zero']:+.2f} "
                 f"(n = {rec['n_zero']})")
    if n_finite < th.min_compared:
        analytic = Verdict("inconclusive", text + f"; fewer than {th.min_compared} images reach zero")
    else:
        analytic = Verdict("holds" if exact >= th.exact_share else "partly" if exact >= th.majority else
                           "does not hold", text)
    parts, ok = [], []
    for name, suffix in (("logit-zero", ""), ("flip", "_flip")):
        n, bad = int(agree.get(f"n_compared{suffix}", 0)), int(agree.get(f"n_mismatch{suffix}", 0))
        rel = float(agree.get(f"median_rel_diff{suffix}", float("nan")))
        ok.append(n >= th.min_compared and bad == 0 and rel <= th.agreement)
        parts.append(f"{name}: empirical vs numerical median relative difference {rel:.1e} over {n} images "
                     f"({bad} disagree)" if n else f"{name}: no image compared")
    code = "a check of this code, not of the paper: " + "; ".join(parts)
    if any(int(agree.get(f"n_compared{x}", 0)) < th.min_compared for x in ("", "_flip")):
        checked = Verdict("inconclusive", code + f"; fewer than {th.min_compared} images compared for a criterion")
    else:
        checked = Verdict("holds" if all(ok) else "does not hold", code)
    return [("alpha_analytic", analytic), ("alpha_code", checked)]


def judge_seeds(m: Measured, th: Thresholds) -> Verdict:
    """Replication of success: of the classes the reference seed suppresses, the share suppressed (reaches ≤ the
    target accuracy) in at least ``replication`` of the autoencoder seeds.

    Classes that fail in every seed agree across seeds, but a failure that replicates is
    not a result that replicates: they do not count for the claim.
    """
    outcomes, matches = m.table("seed_outcomes"), m.table("seed_matches")
    if outcomes is None:
        return _missing("seed_outcomes")
    reaches = outcomes.assign(reaches=outcomes["reaches"].astype(bool))
    n_seeds = reaches["seed"].nunique()
    count = reaches.groupby("class")["reaches"].sum()  # seeds in which the class is suppressed
    need = int(np.ceil(th.replication * n_seeds - 1e-9))
    ref = reaches[reaches["reference"].astype(bool)] if "reference" in reaches else reaches.iloc[0:0]
    if not len(ref):
        return Verdict("inconclusive", f"{n_seeds} seeds, but no reference seed is marked")
    ref_reach = sorted(ref.loc[ref["reaches"], "class"])
    replicated = [c for c in ref_reach if count[c] >= need]
    text = (f"{n_seeds} seeds: of the {len(ref_reach)} classes the reference seed suppresses (≤ "
            f"{th.target_accuracy:.0%}), {len(replicated)} are suppressed in at least {need} of the {n_seeds} seeds"
            + (f" ({', '.join(replicated)})" if 0 < len(replicated) <= 10 else "")
            + f"; over all {len(count)} classes, {int((count >= need).sum())} are suppressed in at least {need} seeds "
            f"and {int((count == 0).sum())} in none")
    if matches is not None:
        other = matches[~matches["reference"].astype(bool)]
        cols = [(c, w) for c, w in (("cosine", "decoder"), ("abs_cosine", "|c|"), ("function_cosine", "function"))
                if c in other]
        text += "; median cosine to the reference's feature: " + ", ".join(
            f"{w} {other[c].median():.2f}" for c, w in cols)
    if not ref_reach:
        return Verdict("inconclusive", text + "; the reference seed suppresses no class, so there is nothing to "
                       "replicate")
    kind = share(len(replicated), len(ref_reach), th)
    if kind == "inconclusive":
        text += f"; fewer than {th.min_classes} classes to replicate"
    return Verdict(kind, text)


def judge_baselines(m: Measured, th: Thresholds) -> Verdict:
    """Share of classes where SALVE's worst other class, at matched efficacy, is at least that of every baseline
    that reached the same target accuracy (overlapping bootstrap intervals count as a tie).

    Classes SALVE never lowers (matched at strength 0: every method is then the
    unedited head) say nothing about the methods and are left out.
    """
    table = m.table("baseline_matched")
    if table is None:
        return _missing("baseline_matched")
    ok, n, lost, idle = 0, 0, {}, []
    for cls, sub in table.groupby("class", sort=True):
        sub = sub.set_index("method")
        if "SALVE" not in sub.index:
            continue
        me = sub.loc["SALVE"]
        if not float(me["strength"]) > 0:
            idle.append(str(cls))
            continue
        n += 1
        rivals = sub[(sub.index != "SALVE") & sub["matched"].astype(bool)]
        better = rivals[rivals["others_worst_lo"] > me["others_worst_hi"]]
        ok += int(not len(better))
        for method in better.index:
            lost[method] = lost.get(method, 0) + 1
    if not n:
        return Verdict("inconclusive", "SALVE lowers no class, so no method can be compared"
                       + (f" (never lowered: {', '.join(idle)})" if idle else ""))
    text = (f"SALVE is at least as specific (worst other class) as every baseline for {ok} of {n} classes"
            + ("; a baseline is clearly more specific than SALVE for: "
               + ", ".join(f"{k} ({v} {'class' if v == 1 else 'classes'})" for k, v in sorted(lost.items()))
               if lost else "")
            + (f"; left out, never lowered by SALVE: {', '.join(idle)}" if idle else ""))
    return Verdict(share(ok, n, th), text)


def judge_planted(m: Measured, th: Thresholds) -> Verdict:
    """Planted parts recovered by a latent of their own that fires on the part, not only on its class.

    Parts and latents are matched one-to-one (Hungarian on |r|). A class's images all carry
    its parts, so a pure class detector already reaches a high |r|; the verdict therefore
    counts, over the parts that vary within a class (:func:`~salve_utils.study.parts.within_class_correlations`),
    those whose within-class match reaches the recovery threshold. The raw count and the count
    above the best class indicator's |r| are reported beside it. Tables written before these
    columns existed are judged by the raw match, and the text says so.
    """
    rec = m.table("planted_recovery")
    if rec is None:
        return _missing("planted_recovery")
    good = int(((rec["abs_corr"] >= th.recovery_threshold) & (rec["feature"] >= 0)).sum())
    raw = (f"{good} of {len(rec)} parts matched one-to-one to a latent with |r| ≥ {th.recovery_threshold:g} "
           f"(median |r| {rec['abs_corr'].median():.2f})")
    if "within_abs_corr" not in rec.columns:
        return Verdict(share(good, len(rec), th), raw + "; within-class recovery not measured")
    testable = rec[rec["testable_within"].astype(bool)]
    within = int((testable["within_abs_corr"] >= th.recovery_threshold).sum())
    beyond = int(((rec["abs_corr"] >= th.recovery_threshold) & (rec["abs_corr"] > rec["null_abs_corr"])).sum())
    text = (f"within class, {within} of {len(testable)} parts that vary there are matched to a latent with "
            f"|r| ≥ {th.recovery_threshold:g}; raw, {raw}, {beyond} of them above the best pure class indicator")
    if not len(testable):
        return Verdict("inconclusive", "no planted part varies within a class, so none can be told from its class; "
                       + raw)
    return Verdict(share(within, len(testable), th), text)


def judge_planted_tower(m: Measured, th: Thresholds) -> Verdict:
    """Is the shared planted part found, and does suppressing its latent hit exactly the classes that carry it?"""
    ka, found = m.record("known_answers"), m.record("features")
    if "shared_part" in ka and ka["shared_part"] is None:
        return Verdict("not tested", "no two classes share a planted part in this regime, so there is no Tower to find"
                       + ("; Discover's Tower search passed a latent anyway (a false positive)" if ka.get("tower_passes")
                          else "; Discover's Tower search passed none"))
    if "shared_found" not in ka:
        return _missing("the known-answers record")
    found_it, hits, spares = bool(ka["shared_found"]), bool(ka["hits_carriers"]), bool(ka["spares_others"])
    kind = "holds" if found_it and hits and spares else "partly" if found_it and (hits or spares) else \
        "does not hold"
    rec = m.table("planted_recovery")
    own = None
    if rec is not None and (rec["part"] == ka["shared_part"]).any():
        own = int(rec.set_index("part").loc[ka["shared_part"], "feature"])
    tol = float(ka.get("tolerance", th.tolerance))
    carriers, others = ka.get("carriers", {}), ka.get("others", {})
    hit = [c for c, d in carriers.items() if d < -tol]
    missed = [c for c in carriers if c not in hit]
    hurt = {c: d for c, d in others.items() if d < -tol}
    text = (f"shared part {ka['shared_part']!r} {'found' if found_it else 'not found'}"
            + (f" (z{own})" if own is not None else "")
            + (f"; suppressing it costs {', '.join(hit) or 'no carrier'} more than {tol:.0%}"
               + (f" but not {', '.join(missed)}" if missed and hit else "") if carriers else "")
            + (f"; {len(hurt)} of {len(others)} other classes lose more than {tol:.0%} (worst "
               f"{min(hurt, key=hurt.get)} {hurt[min(hurt, key=hurt.get)] * 100:+.0f} points)" if hurt else
               f"; no other class loses more than {tol:.0%}" if others else ""))
    if found and own is not None:
        text += f"; Discover's Tower z{found.get('tower')} {'is' if found.get('tower') == own else 'is not'} that latent"
    return Verdict(kind, text)


#: Claim -> judge, in the order of the claims table. ``tower`` yields several rows.
JUDGES: dict[str, Callable[[Measured, Thresholds], Any]] = {
    "baseline": judge_baseline, "suppress": judge_suppress, "specific": judge_specific, "enhance": judge_enhance,
    "tower": judge_tower, "alpha": judge_alpha, "seeds": judge_seeds, "baselines": judge_baselines,
    "planted": judge_planted, "planted_tower": judge_planted_tower,
}

#: Claims only some editions measure: judged only where their table or record exists.
OPTIONAL = {"planted": "planted_recovery", "planted_tower": "known_answers"}


def claims(m: Measured, th: Thresholds | None = None) -> pd.DataFrame:
    """One row per claim: ``claim, paper, ours`` (the measurement, with intervals), ``verdict`` (``kind: reason``).

    Examples
    --------
    >>> claims(Measured()).set_index("claim").loc["suppress", "verdict"]
    'inconclusive'
    """
    th = th or Thresholds()
    rows = []
    for key, judge in JUDGES.items():
        need = OPTIONAL.get(key)
        if need and need not in m.tables and need not in m.records:
            continue
        result = judge(m, th)
        for claim, verdict in (result if isinstance(result, list) else [(key, result)]):
            rows.append({"claim": claim, "paper": PAPER_CLAIMS[claim.split(":")[0]], "ours": verdict.reason,
                         "verdict": verdict.kind})
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "verdict"])


# --------------------------------------------------------------------------- recomputing, and what changed

#: The result tables the judges read (an edition's own rows) and the chapter records (role, name).
CLAIM_TABLES = ("backbone_accuracy", "suppression_curves", "null_edits", "alpha_crit", "seed_outcomes",
                "seed_matches", "planted_recovery", "tower_effects", "baseline_matched")
CLAIM_RECORDS = (("backbone", "backbone"), ("features", "features"), ("control", "control"), ("tower", "tower"),
                 ("alpha_crit", "alpha_crit"), ("known_answers", "known_answers"), ("baselines", "baselines"))
#: Beside ``claims.csv``: which rows and records each edition's claims were judged on, the thresholds and rules.
INPUTS = "claim_inputs"
#: A claim split or renamed: its name now -> the name it had before (for :func:`verdict_changes`).
PREDECESSORS = {"alpha_analytic": "alpha", "alpha_code": "alpha"}


def measured_from(load: Callable[[str], pd.DataFrame], nodes: Iterable[str], control: str | None,
                  records: dict[str, dict[str, Any]]) -> Measured:
    """One edition's :class:`Measured`: each of :data:`CLAIM_TABLES` that ``load`` finds, only the rows of ``nodes``.

    ``suppression_curves`` keeps only the Control chapter's rows (``control``; the Tower
    and seed chapters add their own). ``load(name)`` raises ``FileNotFoundError`` for a
    table the edition lacks.
    """
    nodes = set(nodes)
    tables = {}
    for name in CLAIM_TABLES:
        try:
            table = load(name)
        except FileNotFoundError:
            continue
        tables[name] = table[table["node"].isin(nodes)] if "node" in table.columns else table
    curves = tables.get("suppression_curves")
    if curves is not None and "node" in curves.columns:
        tables["suppression_curves"] = curves[curves["node"] == control]
    return Measured(tables, records)


def rule_fingerprints(th: Thresholds, rules: Iterable[Rule] = RULES) -> dict[str, str]:
    """Per claim, a short hash of its rule with the thresholds filled in: it changes when the rule or a threshold does."""
    table = rulebook(th, rules).drop(columns="last revised")
    return {row["claim"]: hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]
            for row in table.to_dict("records")}


def claim_inputs(editions: dict[str, dict[str, Any]], th: Thresholds) -> dict[str, Any]:
    """What :func:`recompute_claims` needs besides the tables: per edition its ``nodes``, ``control`` node and
    ``records``; the thresholds; and the rules' fingerprints (:func:`rule_fingerprints`)."""
    return {"thresholds": asdict(th), "rules": rule_fingerprints(th), "editions": editions}


def recompute_claims(results: str | Path) -> pd.DataFrame:
    """``claims.csv`` rebuilt from a results folder alone (``data/results/<profile>/``).

    Reads ``claim_inputs.json`` (:func:`claim_inputs`, written by the summary beside
    ``claims.csv``) and every edition's tables (CSV or Parquet), and judges them again:
    the rows ``edition, claim, paper, ours, verdict`` the summary published, every number
    in ``ours`` recomputed.
    """
    results = Path(results)
    path = results / f"{INPUTS}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: the summary of this profile writes it (run its summary node)")
    inputs = json.loads(path.read_text())
    th = Thresholds(**inputs["thresholds"])
    frames = []
    for edition, spec in inputs["editions"].items():
        m = measured_from(lambda name, e=edition: load_table(results / e, name), spec["nodes"], spec["control"],
                          spec["records"])
        frames.append(claims(m, th).assign(edition=edition))
    columns = ["edition", "claim", "paper", "ours", "verdict"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def _rule_of(claim: str, rules: Iterable[Rule] = RULES) -> Rule | None:
    return next((r for r in rules if r.claim == claim.split(":")[0]), None)


def verdict_changes(before: pd.DataFrame | None, after: pd.DataFrame, rules_before: dict[str, str] | None = None,
                    rules_after: dict[str, str] | None = None, th: Thresholds | None = None) -> pd.DataFrame:
    """Each claim × edition of ``after``: its verdict before and after, and the rule that moved it.

    ``before`` and ``after`` are claims tables (``edition, claim, verdict``; ``before`` may
    be ``None``: a first edition). A claim that was split or renamed is compared with
    its predecessor (:data:`PREDECESSORS`). ``why`` names what moved a verdict: the
    claim's rule, when its fingerprint differs between ``rules_before`` and
    ``rules_after`` (:func:`rule_fingerprints`, recorded in ``claim_inputs.json``), with
    the rule's last revision in words; when the previous edition recorded no rulebook,
    the rule's revision note if it has one (said as such); otherwise the measurement,
    under the same rule.

    Returns
    -------
    DataFrame ``edition, claim, before, after, changed, why`` (``why`` is "" where nothing changed).

    Examples
    --------
    >>> old = pd.DataFrame({"edition": ["e"] * 2, "claim": ["alpha", "seeds"], "verdict": ["partly", "partly"]})
    >>> new = pd.DataFrame({"edition": ["e"] * 2, "claim": ["alpha_code", "seeds"], "verdict": ["holds", "partly"]})
    >>> verdict_changes(old, new)[["claim", "before", "after", "changed"]].to_dict("records")
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'claim': 'alpha_code', 'before': 'partly', 'after': 'holds', 'changed': True},
     {'claim': 'seeds', 'before': 'partly', 'after': 'partly', 'changed': False}]
    """
    th = th or Thresholds()
    values = asdict(th)
    old = {} if before is None else {(e, c): v for e, c, v in before[["edition", "claim", "verdict"]].itertuples(index=False)}
    rows = []
    for edition, claim, verdict in after[["edition", "claim", "verdict"]].itertuples(index=False):
        base = claim.split(":")[0]
        key = (edition, claim) if (edition, claim) in old else (edition, PREDECESSORS.get(base, claim))
        prev = old.get(key)
        rule = _rule_of(claim)
        note = rule.revised.format(**values) if rule is not None and rule.revised else ""
        renamed = key[1] != claim and prev is not None
        changed = prev is None or prev != verdict or renamed
        if not changed:
            why = ""
        elif prev is None:
            why = "a claim the previous edition did not judge" if before is not None else "first edition"
        elif rules_before is not None and rules_after is not None:
            moved = rules_before.get(key[1]) != rules_after.get(base)
            why = (f"rule {base}: {note or 'its wording or a threshold changed'}" if moved else
                   "the measurement changed (same rule)")
        else:
            why = (f"rule {base} revised: {note} (the previous edition records no rulebook, so a changed measurement "
                   "cannot be ruled out)" if note else "the measurement changed (the rule has no revision on record)")
        if renamed:
            why = f"{key[1]} split into {', '.join(k for k, v in PREDECESSORS.items() if v == key[1])}; " + why
        rows.append({"edition": edition, "claim": claim, "before": prev if prev is not None else "—",
                     "after": verdict, "changed": bool(changed), "why": why})
    return pd.DataFrame(rows, columns=["edition", "claim", "before", "after", "changed", "why"])
