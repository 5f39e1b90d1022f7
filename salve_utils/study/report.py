"""Stage 12b — the summary: every edition's claims side by side, and what differs between editions.

:func:`edition_claims` gathers one edition's tables (its own nodes' rows) and chapter
records from a report node's context and judges them with
:func:`salve_utils.study.claims.claims` under one :class:`~salve_utils.study.verdicts.Thresholds`;
:func:`claims_by_edition` lays the editions side by side, adding the row that asks
whether a claim transfers from one backbone to another; :func:`ablations_by_edition`
lays out what the ablation chapters found. The rules live in
:mod:`salve_utils.study.verdicts`, the judges in :mod:`salve_utils.study.claims`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np
import pandas as pd

from .ablations import best_single_change
from .claims import (CLAIM_RECORDS, CLAIM_TABLES, INPUTS, PAPER_CLAIMS, Measured, claim_inputs, claim_name, claims,
                     measured_from)
from .verdicts import Thresholds, share

if TYPE_CHECKING:
    from ..method.activations import Activations

__all__ = ["ARM_NAMES", "ReportContext", "ablations_by_edition", "arms_by_edition", "backbone_pair", "claims_by_edition",
           "edition_claims", "edition_inputs", "edition_overview", "edition_tables", "first_answer", "headline",
           "measurement_details", "previous_claims", "regime_resemblance", "save_claim_inputs", "verdict_kind",
           "verdict_overview"]

class ReportContext(Protocol):
    """What the report reads from and writes to a report node (:class:`salve_utils.pipeline.NodeContext` is one)."""

    upstream: dict[str, str]
    published: Path

    @property
    def editions(self) -> list[str]: ...

    def read_json(self, role: str, name: str) -> Any: ...

    def read_table(self, name: str, edition: str | None = None) -> pd.DataFrame: ...

    def published_table(self, name: str) -> pd.DataFrame | None: ...

    def save_result_json(self, name: str, obj: Any) -> Path: ...


def verdict_kind(verdict: str) -> str:
    """The verdict's category: the words before the first colon ("holds", "partly", ...)."""
    return verdict.split(":")[0].strip()


#: One colour per verdict kind, for tables and the at-a-glance figure (colour-blind safe pairs).
VERDICT_COLOURS = {"holds": "#a6dba0", "partly": "#fee08b", "does not hold": "#f4a582", "inconclusive": "#92c5de",
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


#: The tables a summary reads from each edition (those that exist), and the chapter records (role, name).
EDITION_TABLES, EDITION_RECORDS = CLAIM_TABLES, CLAIM_RECORDS


def _rows(table: pd.DataFrame, nodes: set[str]) -> pd.DataFrame:
    return table[table["node"].isin(nodes)] if "node" in table.columns else table


def edition_inputs(ctx: "ReportContext", edition: str) -> dict[str, Any]:
    """What one edition's claims are judged on besides its tables: its upstream ``nodes`` (only their rows count),
    its ``control`` node (whose curves the claims read) and its chapter ``records``."""
    nodes = sorted({up for role, up in ctx.upstream.items() if role.startswith(f"{edition}.")})
    records = {}
    for role, name in EDITION_RECORDS:
        if f"{edition}.{role}" in ctx.upstream:
            try:
                records[name] = ctx.read_json(f"{edition}.{role}", name)
            except FileNotFoundError:
                continue
    return {"nodes": nodes, "control": ctx.upstream.get(f"{edition}.control"), "records": records}


def edition_measured(ctx: "ReportContext", edition: str) -> Measured:
    """One edition's tables (only the rows its own upstream nodes wrote) and chapter records."""
    inputs = edition_inputs(ctx, edition)
    return measured_from(lambda name: ctx.read_table(name, edition), inputs["nodes"], inputs["control"],
                         inputs["records"])


def save_claim_inputs(ctx: "ReportContext", editions: list[str], thresholds: Thresholds) -> dict[str, Any]:
    """Write ``claim_inputs.json`` beside ``claims.csv`` (:func:`~salve_utils.study.claims.claim_inputs`), so that
    :func:`~salve_utils.study.claims.recompute_claims` rebuilds the claims from the results folder alone."""
    inputs = claim_inputs({e: edition_inputs(ctx, e) for e in editions}, thresholds)
    ctx.save_result_json(INPUTS, inputs)
    return inputs


def previous_claims(ctx: "ReportContext") -> tuple[pd.DataFrame | None, dict[str, str] | None]:
    """The claims table and rule fingerprints of the last published summary (``None`` where there is none).

    While the summary node runs, its new tables are staged: the published ones are still
    the previous edition's.
    """
    table = ctx.published_table("claims")
    path = ctx.published / f"{INPUTS}.json"
    rules = json.loads(path.read_text()).get("rules") if path.is_file() else None
    return table, rules


def edition_claims(ctx: "ReportContext", edition: str, thresholds: Thresholds | None = None) -> pd.DataFrame:
    """:func:`~salve_utils.study.claims.claims` for one edition, read through a report node's context.

    The Control chapter's operating point and the rulebook's must be the same: a
    different ``target_accuracy`` is refused, naming both values and the fix.
    """
    th = thresholds or Thresholds()
    measured = edition_measured(ctx, edition)
    recorded = measured.record("control").get("target_accuracy")
    if recorded is not None and abs(float(recorded) - th.target_accuracy) > 1e-12:
        raise ValueError(f"{edition}: the Control chapter used target_accuracy={recorded}, the summary "
                         f"{th.target_accuracy}; set both to one value (e.g. -p target_accuracy={recorded})")
    return claims(measured, th)


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
                      transfer: tuple[str, str] | None = None, thresholds: Thresholds | None = None) -> pd.DataFrame:
    """The claims x editions table: ``claim, paper``, then ``<title>`` (measured) and ``<title>: verdict`` per edition.

    With ``transfer = (reference, other)`` (e.g. the ResNet-18 and the ViT edition on
    the same data), a ``vit`` row judges the paper's "the same holds for ViT" by the
    ViT edition's own verdicts on the claims both editions measured (the baseline
    excluded), with the rulebook's :func:`~salve_utils.study.verdicts.share`: it holds when
    all of them hold, partly when at least the ``majority`` share holds at least
    partly, and is inconclusive when a claim is inconclusive on either edition. Its text
    also counts how many claims get the same verdict as on the reference edition.
    """
    th = thresholds or Thresholds()
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
        kinds = [verdict_kind(other[k]) for k in common]
        unclear = [k for k in common if "inconclusive" in (verdict_kind(ref[k]), verdict_kind(other[k]))]
        held = kinds.count("holds")
        partly = held + kinds.count("partly")
        text = (f"{held} of {len(common)} claims hold on {titles[transfer[1]]} ({partly - held} partly, "
                f"{kinds.count('inconclusive')} inconclusive); {len(same)} of {len(common)} get the same verdict as on "
                f"{titles[transfer[0]]}" + (f" (different: {', '.join(differ)})" if differ else ""))
        row = {"claim": "vit", "paper": PAPER_CLAIMS["vit"]}
        for edition in per_edition:
            row[titles[edition]] = "—"
            row[f"{titles[edition]}: verdict"] = "—"
        row[titles[transfer[1]]] = text
        # a share of claims, not of classes: min_classes (the fewest classes a verdict may rest on) does not apply
        kind = share(partly, len(common), replace(th, min_classes=1)) if common else "not tested"
        if common and held == len(common):
            kind = "holds"
        elif common and kind == "holds":
            kind = "partly"
        row[f"{titles[transfer[1]]}: verdict"] = "inconclusive" if common and len(unclear) > len(common) / 2 else kind
        wide = pd.concat([wide, pd.DataFrame([row])], ignore_index=True)
    return wide


def verdict_overview(claims_table: pd.DataFrame, titles: Sequence[str]) -> pd.DataFrame:
    """Verdicts only: one row per claim (its reader's name), one column per edition holding the verdict's kind.

    ``claims_table`` is :func:`claims_by_edition`'s; "—" marks a claim the edition does not measure.

    >>> wide = pd.DataFrame({"claim": ["suppress"], "paper": ["..."], "A": ["1 of 10"], "A: verdict": ["partly"]})
    >>> verdict_overview(wide, ["A"]).to_dict("records")
    [{'claim': 'suppression reaches ≈0%', 'A': 'partly'}]
    """
    out = pd.DataFrame({"claim": claims_table["claim"].map(claim_name)})
    for title in titles:
        out[title] = claims_table[f"{title}: verdict"].astype(str).map(verdict_kind).to_numpy()
    return out


def measurement_details(claims_table: pd.DataFrame, title: str) -> pd.DataFrame:
    """One edition's rows of :func:`claims_by_edition`: the claim, the paper's words, what was measured, the verdict.

    Claims the edition does not measure are left out.
    """
    rows = claims_table[claims_table[f"{title}: verdict"] != "—"]
    return pd.DataFrame({"claim": rows["claim"].map(claim_name), "the paper": rows["paper"],
                         "measured": rows[title], "verdict": rows[f"{title}: verdict"]})


def edition_tables(ctx: "ReportContext", name: str, role: str) -> dict[str, pd.DataFrame]:
    """Table ``name`` of every edition whose node playing ``role`` ran, only the rows that node wrote."""
    found = {}
    for edition in ctx.editions:
        node = ctx.upstream.get(f"{edition}.{role}")
        if node is None:
            continue
        try:
            found[edition] = _rows(ctx.read_table(name, edition), {node})
        except FileNotFoundError:
            continue
    return found


def ablations_by_edition(tables: dict[str, pd.DataFrame], titles: dict[str, str]) -> tuple[pd.DataFrame, list[str]]:
    """The ablation chapters' answers side by side: variants × editions, and one sentence per edition.

    ``tables`` maps an edition to its ablation table (``ablation_variants``: one row per
    variant with ``classes, reached, rescued``). A cell reads "rescued r / reached q of n"; the
    sentence applies :func:`salve_utils.study.ablations.best_single_change` (the rule the chapter
    states) and names the variants that meet its goal, or says that none does and which comes
    closest.

    >>> t = pd.DataFrame({"variant": ["paper (Eq. 1)", "own row"], "classes": [10, 10], "reached": [3, 2],
    ...                   "rescued": [0, 2]})
    >>> table, lines = ablations_by_edition({"e": t}, {"e": "ResNet"})
    >>> table["ResNet"].tolist()
    ['0 / 3 of 10', '2 / 2 of 10']
    >>> lines[0]
    '**ResNet**: no single change rescues 8 or more of 10 classes; the most is 2 (own row, which reaches 2).'
    """
    variants = list(dict.fromkeys(v for t in tables.values() for v in t["variant"]))
    wide = pd.DataFrame({"variant": variants})
    lines = []
    for edition, t in tables.items():
        cells = {r.variant: f"{r.rescued} / {r.reached} of {r.classes}" for r in t.itertuples(index=False)}
        wide[titles[edition]] = wide["variant"].map(cells).fillna("—")
        v = best_single_change(t)
        n = int(t["classes"].max())
        if v["winners"]:
            judged = t.set_index("variant")
            verdicts = "; ".join(f"{w}: suppress {judged.at[w, 'suppress']}, specific {judged.at[w, 'specific']}"
                                 for w in v["winners"] if {"suppress", "specific"} <= set(judged.columns))
            lines.append(f"**{titles[edition]}**: {', '.join(v['winners'])} rescue{'s' if len(v['winners']) == 1 else ''} "
                         f"{v['goal']} or more of {n} classes" + (f" (judged against its nulls by the rulebook, "
                                                                   f"{verdicts})" if verdicts else "") + ".")
        else:
            lines.append(f"**{titles[edition]}**: no single change rescues {v['goal']} or more of {n} classes; the most "
                         f"is {v['rescued']} ({v['best']}, which reaches {v['reached']}).")
    return wide, lines


def headline(claims_table: pd.DataFrame, verdict: str = "verdict") -> str:
    """One sentence naming the claims by verdict kind (in the column ``verdict``).

    >>> headline(pd.DataFrame({"claim": ["a", "b", "c"], "verdict": ["holds", "inconclusive", "differs"]}))
    'Holding: a. Partly: none. Not holding or differing: c. Inconclusive: b.'
    """
    kinds = claims_table[verdict].map(verdict_kind)

    def named(*which: str) -> str:
        return ", ".join(claims_table.loc[kinds.isin(which), "claim"]) or "none"

    return (f"Holding: {named('holds')}. Partly: {named('partly')}. Not holding or differing: "
            f"{named('does not hold', 'differs')}. Inconclusive: {named('inconclusive')}.")


# =========================================================================== method or reproduction?

#: The arms as the first answer names them (the oracle row is the better of the label-informed directions).
ARM_NAMES = {"paper": "the paper's edit (its linear L1 autoencoder's latent)",
             "oracle": "Eq. 1 with a label-informed direction (the oracle)",
             "sparse": "Eq. 1 with a truly sparse autoencoder's latent (TopK, k = d/8)"}
FINDINGS = {"paper works": "the paper's edit works", "feature stage": "the feature stage fails (an oracle works)",
            "edit": "Eq. 1 itself fails (no oracle works)"}


def _arm_rows(table: pd.DataFrame) -> dict[str, pd.Series]:
    """The paper, best oracle and sparse rows of one edition's ``arms`` table."""
    oracles = table[table["arm"].str.startswith("oracle")].sort_values(["rescued", "reached"], ascending=False,
                                                                       kind="stable")
    rows = {"paper": table[table["arm"] == "paper"], "oracle": oracles.head(1), "sparse": table[table["arm"] == "sparse"]}
    return {k: v.iloc[0] for k, v in rows.items() if len(v)}


def _rescue_text(r: pd.Series) -> str:
    return f"{int(r['rescued'])} of {int(r['classes'])} ({r['rescued_lo']:.0%}–{r['rescued_hi']:.0%})"


def first_answer(tables: dict[str, pd.DataFrame], titles: dict[str, str]) -> pd.DataFrame:
    """The report's first answer: one computed sentence per arm, then which part fails, per edition.

    ``tables`` maps an edition to its ``arms`` table (:func:`salve_utils.study.arms.judge_arms`). Each
    sentence gives, per edition, the classes rescued (the class falls to the target accuracy
    while the worst other class loses at most the tolerance) with the exact 95% interval of
    that share, and the rulebook's suppress verdict against the arm's nulls. Returns
    ``question, answer`` (Markdown).

    >>> t = pd.DataFrame({"arm": ["paper", "oracle", "oracle (probe)", "sparse"], "classes": [10] * 4,
    ...                   "reached": [3, 9, 8, 6], "rescued": [0, 9, 7, 3], "rescued_lo": [0, .55, .35, .07],
    ...                   "rescued_hi": [.31, 1, .93, .65], "suppress": ["does not hold", "holds", "holds", "partly"]})
    >>> print(first_answer({"e": t}, {"e": "ResNet"})["answer"].iloc[1])
    **Eq. 1 with a label-informed direction (the oracle)** rescues 9 of 10 (55%–100%) classes on ResNet (oracle; suppress: holds).
    """
    from .arms import diagnose

    rows, per = [], {e: _arm_rows(t) for e, t in tables.items()}
    for arm, label in ARM_NAMES.items():
        parts = [f"{_rescue_text(p[arm])} classes on {titles[e]} ({p[arm]['arm'] + '; ' if arm == 'oracle' else ''}"
                 f"suppress: {p[arm]['suppress']})" for e, p in per.items() if arm in p]
        if parts:
            rows.append({"question": arm, "answer": f"**{label[0].upper() + label[1:]}** rescues " + ", ".join(parts) + "."})
    found = {e: diagnose(t) for e, t in tables.items()}
    if found:
        goal = ", ".join(sorted({f"{d['goal']} of {d['classes']}" for d in found.values()}))
        rows.append({"question": "which part fails", "answer": f"By the declared reading (an arm works when it rescues "
                     f"{goal} classes): " + "; ".join(f"{titles[e]}: {FINDINGS[d['finding']]}"
                                                      for e, d in found.items()) + "."})
    return pd.DataFrame(rows, columns=["question", "answer"])


def arms_by_edition(tables: dict[str, pd.DataFrame], titles: dict[str, str]) -> pd.DataFrame:
    """Arms × editions: "rescued r of n (interval); suppress …, specific …" per cell (the best oracle row)."""
    wide = pd.DataFrame({"arm": list(ARM_NAMES)})
    for e, t in tables.items():
        p = _arm_rows(t)
        wide[titles[e]] = [f"{_rescue_text(p[a])}; suppress {p[a]['suppress']}, specific {p[a]['specific']}"
                           + (f" ({p[a]['arm']})" if a == "oracle" else "") if a in p else "—" for a in ARM_NAMES]
    return wide


def regime_resemblance(overlaps: dict[str, float], regimes: dict[str, float]) -> dict[str, str]:
    """The known-answer regime whose evidence overlap is nearest each edition's (by absolute difference).

    >>> regime_resemblance({"e": 0.6}, {"A": 0.0, "B": 0.2})
    {'e': 'B'}
    """
    return {e: min(regimes, key=lambda r: abs(regimes[r] - v)) for e, v in overlaps.items()}
