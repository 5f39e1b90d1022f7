"""Stage 12 — the summary: each headline claim of the paper against every edition's measurements.

:func:`claims` reads only the result tables one edition's chapters wrote (rows
are selected by the pipeline node that wrote them) and the settings those
chapters recorded; :func:`edition_claims` gathers them for one edition from a
report node's context, and :func:`claims_by_edition` lays the editions side by
side, adding the row that asks whether a claim transfers from one backbone to
another. The thresholds that turn a number into a verdict are arguments with
defaults stated here, not hidden in prose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .editing import accuracy_change, alpha_crit_agreement, operating_points
from .features import seed_spread

if TYPE_CHECKING:
    from .activations import Activations
    from .pipeline import NodeContext

__all__ = ["PAPER_CLAIMS", "backbone_pair", "claims", "claims_by_edition", "edition_claims", "edition_overview", "headline", "verdict_kind"]

#: The paper's headline claims, in the words of the reproduction brief.
PAPER_CLAIMS: dict[str, str] = {
    "baseline": "ResNet-18 on Imagenette: ≈95% validation accuracy (ImageNet-pretrained, fine-tuned)",
    "suppress": "suppressing a class's dominant feature drives that class to ≈0%",
    "specific": "… while the other classes stay at ≈95%",
    "enhance": "enhancing a feature (golf ball) is harmless to the other classes",
    "tower_down": "suppressing the Tower feature lowers gas pump",
    "tower_spare": "… spares church",
    "tower_other": "… and moves chain saw the other way",
    "alpha": "analytic, numerical and empirical α_crit agree",
    "seeds": "the results are robust over 10 autoencoder seeds",
    "vit": "the same holds for ViT-B/16",
    "planted": "— (beyond the paper) each planted part has a latent of its own",
    "planted_tower": "— (beyond the paper) the shared planted part is found as the Tower",
}


def _verdict(ok: bool, partly: bool, text: str) -> str:
    return ("holds: " if ok else "partly: " if partly else "does not hold: ") + text


def _rows(table: pd.DataFrame, node: str) -> pd.DataFrame:
    return table[table["node"] == node] if "node" in table.columns else table


def claims(
    tables: dict[str, pd.DataFrame],
    nodes: dict[str, str],
    found: dict[str, Any],
    control: dict[str, Any],
    tower: dict[str, Any],
    backbone_spec: dict[str, Any],
    target_accuracy: float = 0.05,
    tolerance: float = 0.05,
    baseline_match: float = 0.93,
    recovery_threshold: float = 0.5,
) -> pd.DataFrame:
    """One row per claim: ``claim``, ``paper``, ``ours`` (measured), ``verdict`` (words).

    Parameters
    ----------
    tables : the result tables by name (``backbone_accuracy``, ``suppression_curves``, ...)
    nodes : role -> pipeline node whose rows to read (``backbone``, ``control``, ``tower``,
        ``alpha_crit``, ``seeds``, ``planted``, ``vit``)
    found : the Discover chapter's record (dominant features, Tower, SAE seed)
    control, tower : the settings the Control and Tower chapters recorded
    backbone_spec : the backbone chapter's record (weights, sizes)
    target_accuracy : what counts as "≈0%"
    tolerance : the accuracy change (absolute) that still counts as "stays" or "harmless"
    baseline_match : the accuracy that counts as matching the paper's ≈95%
    recovery_threshold : the |r| at which a planted part counts as recovered
    """
    rows: list[dict[str, str]] = []

    def add(key: str, ours: str, verdict: str) -> None:
        rows.append({"claim": key, "paper": PAPER_CLAIMS[key.split(":")[0]], "ours": ours, "verdict": verdict})

    acc = tables["backbone_accuracy"]
    val = acc[(acc["split"] == "val") & (acc["class"] == "all")]
    base = float(_rows(val, nodes["backbone"])["accuracy"].iloc[0])
    why = ("trained from scratch" if backbone_spec.get("weights", "none") == "none" else "fine-tuned") + \
        f" at {backbone_spec['eval_size']} px"
    if backbone_spec.get("dataset", "imagenette") == "imagenette":
        add("baseline", f"{base:.1%} ({backbone_spec['arch']}, {why})",
            "holds" if base >= baseline_match else
            f"differs: {base:.1%}, below the paper's; this backbone was {why}, while the paper fine-tunes "
            "ImageNet-pretrained weights at full resolution")
    else:
        add("baseline", f"{base:.1%} ({backbone_spec['arch']} on {backbone_spec['dataset']}, {why})",
            "not comparable: the paper reports no accuracy for this dataset")

    curves = tables["suppression_curves"]
    own = _rows(curves, nodes["control"])
    sup = own[own["direction"] == "suppress"]
    points = operating_points(sup, target_accuracy)
    reached = points["strength"].notna()
    n = len(points)
    add("suppress", (f"{int(reached.sum())}/{n} classes reach ≤ {target_accuracy:.0%}; median strength "
                     f"{points.loc[reached, 'strength'].median():.2f}") if reached.any()
        else f"0/{n} classes reach ≤ {target_accuracy:.0%} within the sweep",
        _verdict(bool(reached.all()), bool(reached.mean() >= 0.5), f"{int(reached.sum())} of {n} classes"))
    if reached.any():
        hit = points[reached]
        drop = float((hit["others_baseline"] - hit["others_accuracy"]).mean())
        level = float(hit["others_accuracy"].mean())
        add("specific", f"other classes at {level:.1%} on average at that point, {drop:.1%} below their "
            f"unedited {hit['others_baseline'].mean():.1%}",
            _verdict(drop <= tolerance, drop <= 3 * tolerance,
                     f"the other classes lose {drop:.1%} on average (their level, {level:.1%}, is set by the "
                     "backbone's accuracy)"))
    enhance_class = control["enhance_class"]
    enh = own[(own["direction"] == "enhance") & (own["feature_role"] == f"dominant:{enhance_class}")]
    if len(enh):
        change = accuracy_change(enh, at_strength=float(enh["strength"].max())).set_index("class")["change"]
        others = change.drop(enhance_class)
        add("enhance", f"worst other class {others.min():+.1%} ({others.idxmin()}), mean {others.mean():+.1%}; "
            f"{enhance_class} {change[enhance_class]:+.1%}, at strength {enh['strength'].max():g}",
            _verdict(others.min() >= -tolerance, others.min() >= -3 * tolerance,
                     f"worst change of another class {others.min():+.1%}"))

    tcurves = _rows(curves, nodes["tower"])
    tsup = tcurves[tcurves["direction"] == "suppress"]
    if len(tsup):
        a, b = found["tower_classes"]
        strength = min(float(tower["strength_max"]), float(tsup["strength"].max()))
        ch = accuracy_change(tsup, at_strength=strength).set_index("class")["change"]
        add("tower_down", f"{b} {ch[b]:+.1%} at strength {strength:g} of z{found['tower']}",
            _verdict(ch[b] <= -tolerance, ch[b] < 0, f"{b} changes by {ch[b]:+.1%}"))
        add("tower_spare", f"{a} {ch[a]:+.1%}",
            _verdict(ch[a] >= -tolerance and ch[a] > ch[b], ch[a] > ch[b],
                     f"{a} changes by {ch[a]:+.1%}, against {b}'s {ch[b]:+.1%}"))
        watched = list(tower.get("watch_classes", []))
        for watch in watched:
            add("tower_other" if len(watched) == 1 else f"tower_other:{watch}", f"{watch} {ch[watch]:+.1%}",
                _verdict(ch[watch] >= 0.01, ch[watch] > 0, f"{watch} changes by {ch[watch]:+.1%}"))

    agree = alpha_crit_agreement(_rows(tables["alpha_crit"], nodes["alpha_crit"]))
    side = (f"where they differ, analytic is below the exact value for {agree['frac_analytic_below']:.0%} "
            f"and above it for {agree['frac_analytic_above']:.0%} of images")
    add("alpha", f"analytic = numerical for {agree['frac_exact']:.0%} of {agree['n_finite']} images ({side}); "
        f"empirical vs numerical: median relative difference {agree['median_rel_diff']:.1e} over "
        f"{agree['n_empirical']} images",
        _verdict(agree["frac_exact"] >= 0.9 and agree["median_rel_diff"] <= 1e-3,
                 agree["median_rel_diff"] <= 1e-3,
                 f"the exact (numerical) and empirical values agree to {agree['median_rel_diff']:.0e}; the "
                 f"linear formula is exact for {agree['frac_exact']:.0%} of images"
                 if agree["median_rel_diff"] <= 1e-3 else
                 f"empirical and numerical differ by {agree['median_rel_diff']:.1e} (median)"))

    matches = _rows(tables["seed_matches"], nodes["seeds"])
    others = matches[~matches["reference"].astype(bool)]
    spread = _rows(tables["seed_alpha_crit"], nodes["seeds"])
    cv = seed_spread(spread)["cv"].dropna()
    n_seeds = spread["seed"].nunique()
    if len(others):
        cos = float(others["cosine"].median())
        add("seeds", f"{n_seeds} seeds: dominant features of the other seeds have median decoder cosine {cos:.2f} "
            f"to the reference's; per-class median α_crit varies by {cv.median():.0%} (CV, median over classes)",
            _verdict(cos >= 0.9 and cv.median() <= 0.25, cos >= 0.7, f"cosine {cos:.2f}, CV {cv.median():.0%}"))

    if "known_answers" in nodes and "planted_recovery" in tables:
        rec = _rows(tables["planted_recovery"], nodes["known_answers"])
        good = int((rec["abs_corr"] >= recovery_threshold).sum())
        add("planted", f"{good}/{len(rec)} planted parts matched one-to-one to a latent with |r| ≥ "
            f"{recovery_threshold:g} (median |r| {rec['abs_corr'].median():.2f})",
            _verdict(good == len(rec), good >= len(rec) / 2, f"{good} of {len(rec)} parts recovered"))
        tower_part = rec.set_index("part").loc["tower"] if "tower" in set(rec["part"]) else None
        if tower_part is not None:
            same = int(tower_part["feature"]) == int(found["tower"])
            add("planted_tower", f"Discover's Tower z{found['tower']}; the tower part's own latent "
                f"z{int(tower_part['feature'])} (|r| {tower_part['abs_corr']:.2f})",
                _verdict(same and tower_part["abs_corr"] >= recovery_threshold, same,
                         "the Tower is the tower part's latent" if same else
                         "the Tower is not the tower part's latent"))
    return pd.DataFrame(rows)


def verdict_kind(verdict: str) -> str:
    """The verdict's category: the words before the first colon ("holds", "partly", ...)."""
    return verdict.split(":")[0].strip()


#: One colour per verdict kind, for tables and the at-a-glance figure (colour-blind safe pairs).
VERDICT_COLOURS = {"holds": "#a6dba0", "partly": "#fee08b", "does not hold": "#f4a582",
                   "differs": "#c2a5cf", "not comparable": "#e0e0e0", "not tested": "#f0f0f0"}


def verdict_css(verdict: str) -> str:
    """Inline CSS colouring a table cell by its verdict's kind ("" for cells that are no verdict).

    >>> verdict_css("holds: 3 of 3")
    'background-color: #a6dba0'
    >>> verdict_css("—")
    ''
    """
    colour = VERDICT_COLOURS.get(verdict_kind(str(verdict)))
    return f"background-color: {colour}" if colour else ""


#: The tables a summary reads from each edition (those that exist).
EDITION_TABLES = ("backbone_accuracy", "suppression_curves", "alpha_crit", "seed_alpha_crit", "seed_matches",
                  "planted_recovery", "dominant_sharing")


def edition_claims(ctx: "NodeContext", edition: str, **thresholds: float) -> pd.DataFrame:
    """:func:`claims` for one edition, read through a report node's context (roles ``<edition>.<role>``)."""
    nodes = {role.split(".", 1)[1]: up for role, up in ctx.upstream.items() if role.startswith(f"{edition}.")}
    tables = {}
    for name in EDITION_TABLES:
        try:
            tables[name] = ctx.read_table(name, edition)
        except FileNotFoundError:
            continue
    control = ctx.read_json(f"{edition}.control", "control")
    return claims(tables, nodes, ctx.read_json(f"{edition}.features", "features"), control,
                  ctx.read_json(f"{edition}.tower", "tower"), ctx.read_json(f"{edition}.backbone", "backbone"),
                  target_accuracy=control["target_accuracy"], **thresholds)


def edition_overview(acts: "Activations", alpha_table: pd.DataFrame, sharing: pd.DataFrame) -> dict[str, Any]:
    """What differs between editions, in one row: the head input's signs, α_crit's linear bound, feature sharing.

    ``frac_negative`` is the share of negative entries of ``a(x)`` over the validation
    images (0 after a ReLU and average pooling, as in a ResNet; both signs after a
    ViT's LayerNorm). The analytic α_crit is the straight-line root of the target
    logit; it is exact when no clamp is hit first, so its ratio to the exact
    (numerical) value shows how the sign pattern changes the approximation. All
    ``frac_analytic_*`` and ``frac_exact`` are shares of the images whose logit
    starts positive and does reach zero (``frac_finite`` of all images), so they add
    up to one: exact, below, above, or infinite (the straight line never reaches zero
    although the exact logit does).
    """
    a = alpha_table
    reach = a[np.isfinite(a["numerical"]) & (a["numerical"] > 0)]  # the logit starts positive and reaches zero
    both = reach[np.isfinite(reach["analytic"])]
    ratio = (both["analytic"] / both["numerical"]).to_numpy()
    exact = np.isclose(both["analytic"], both["numerical"], rtol=1e-4, atol=0)
    n = max(1, len(reach))
    return {"classes": len(acts.classes), "d_head": int(acts.val.shape[1]),
            "frac_negative": float((acts.val < 0).float().mean()),
            "n_images": int(len(a)), "frac_finite": float(len(reach) / max(1, len(a))),
            "frac_analytic_infinite": float((~np.isfinite(reach["analytic"])).sum() / n),
            "frac_exact": float(exact.sum() / n),
            "frac_analytic_below": float((both["analytic"][~exact] < both["numerical"][~exact]).sum() / n),
            "frac_analytic_above": float((both["analytic"][~exact] > both["numerical"][~exact]).sum() / n),
            "median_ratio": float(np.median(ratio)) if len(ratio) else float("nan"),
            "frac_shared": float((sharing["n_sharing"] > 0).mean()),
            "mean_sharing": float(sharing["n_sharing"].mean())}


def backbone_pair(specs: dict[str, dict[str, Any]]) -> tuple[str, str] | None:
    """The first (ResNet edition, ViT edition) on the same dataset, from the backbone records; else ``None``."""
    for a, sa in specs.items():
        for b, sb in specs.items():
            if sa["arch"].startswith("resnet") and sb["arch"].startswith("vit") and sa["dataset"] == sb["dataset"]:
                return a, b
    return None


def claims_by_edition(per_edition: dict[str, pd.DataFrame], titles: dict[str, str],
                      transfer: tuple[str, str] | None = None) -> pd.DataFrame:
    """The claims x editions table: ``claim, paper``, then ``<title>`` (measured) and ``<title>: verdict`` per edition.

    With ``transfer = (reference, other)`` (e.g. the ResNet-18 and the ViT edition on
    the same data), a ``vit`` row judges the paper's "the same holds for ViT" by the
    ViT edition's own verdicts on the claims both editions measured (the baseline
    excluded): it holds when all of them hold, partly when at least half hold at
    least partly, does not hold otherwise, and is "not tested" when there is no
    common claim. Its text also counts how many claims get the same verdict as on
    the reference edition.
    """
    keys = list(dict.fromkeys(k for df in per_edition.values() for k in df["claim"]))
    wide = pd.DataFrame({"claim": keys, "paper": [PAPER_CLAIMS[k.split(":")[0]] for k in keys]})
    for edition, df in per_edition.items():
        df = df.drop_duplicates("claim").set_index("claim")
        wide[titles[edition]] = wide["claim"].map(df["ours"]).fillna("—")
        wide[f"{titles[edition]}: verdict"] = wide["claim"].map(df["verdict"]).fillna("—")
    if transfer and all(e in per_edition for e in transfer):
        ref, other = (per_edition[e].drop_duplicates("claim").set_index("claim")["verdict"] for e in transfer)
        common = [k for k in ref.index if k in other.index and k not in ("baseline", "vit")]
        same = [k for k in common if verdict_kind(ref[k]) == verdict_kind(other[k])]
        differ = [k for k in common if k not in same]
        row = {"claim": "vit", "paper": PAPER_CLAIMS["vit"]}
        for edition in per_edition:
            row[titles[edition]] = "—"
            row[f"{titles[edition]}: verdict"] = "—"
        kinds = [verdict_kind(other[k]) for k in common]
        held = kinds.count("holds")
        partly = held + kinds.count("partly")
        text = (f"{held} of {len(common)} claims hold on {titles[transfer[1]]} ({partly - held} partly); "
                f"{len(same)} of {len(common)} get the same verdict as on {titles[transfer[0]]}"
                + (f" (different: {', '.join(differ)})" if differ else ""))
        row[titles[transfer[1]]] = text
        row[f"{titles[transfer[1]]}: verdict"] = (
            _verdict(held == len(common), partly >= len(common) / 2, text) if common else
            "not tested: the two editions share no claim")
        wide = pd.concat([wide, pd.DataFrame([row])], ignore_index=True)
    return wide


def headline(claims_table: pd.DataFrame, verdict: str = "verdict") -> str:
    """One sentence naming the claims that hold and those that do not (in the column ``verdict``)."""
    kinds = claims_table[verdict].map(verdict_kind)
    held = claims_table.loc[kinds == "holds", "claim"].tolist()
    failed = claims_table.loc[kinds.isin(["does not hold", "differs"]), "claim"].tolist()
    return f"Holding: {', '.join(held) or 'none'}. Not holding or differing: {', '.join(failed) or 'none'}."

