"""Figures of the ablations: the edit with one design choice changed, and one layer deeper.

For :mod:`salve_utils.study.ablations` and :mod:`salve_utils.study.deep`.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd

__all__ = ["logit_anatomy_plot", "variant_plot", "deep_vs_head_plot"]


def _target_rows(curves: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``dominant:<class>`` curves where the measured class is the edited one."""
    return curves[curves["feature_role"] == "dominant:" + curves["class"].astype(str)]


def _worst_loss(curves: pd.DataFrame) -> pd.DataFrame:
    """Per curve and strength, the largest accuracy loss of a class other than the edited one."""
    c = curves.assign(target=curves["feature_role"].str.split(":", n=1).str[1])
    c = c[c["class"] != c["target"]]
    group = [g for g in ("variant", "feature_role") if g in c]
    base = c[c["strength"] == c["strength"].min()].set_index(group + ["class"])["accuracy"]
    loss = base.reindex(pd.MultiIndex.from_frame(c[group + ["class"]])).to_numpy() - c["accuracy"].to_numpy()
    return c.assign(loss=loss).groupby(group + ["strength"], as_index=False)["loss"].max()


def logit_anatomy_plot(paths: pd.DataFrame, anatomy: pd.DataFrame, reached: Sequence[str], palette: dict,
                       target: str):
    """Left: every class's mean logit on ``target``'s images as its feature is suppressed (dotted: the biases,
    where every logit ends). Right: per class, its head bias against how much faster its own logit shrinks
    than the others' (``share - others_share``); filled: the class reaches the target accuracy."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    end = paths[paths["strength"] == paths["strength"].max()].set_index("class")["mean_logit"]
    named = {target, *end.nlargest(5).index}  # the target and the classes that end highest
    for cls, sub in paths.groupby("class", sort=False):
        colour = palette.get(cls, "grey") if cls in named else "lightgrey"
        ax.plot(sub["strength"], sub["mean_logit"], color=colour, lw=2.4 if cls == target else 1.1,
                label=cls if cls in named else None, zorder=3 if cls in named else 1)
        if cls in named:
            ax.axhline(float(sub["bias"].iloc[0]), color=colour, ls=":", lw=0.7)
    ax.set(xlabel="normalised strength s", ylabel=f"mean logit on {target} images",
           title=f"suppressing {target}'s feature: every logit shrinks")
    ax.legend(fontsize=7, ncol=2, frameon=False)
    hit = anatomy["class"].isin(list(reached))
    gap = anatomy["share"] - anatomy["others_share"]
    bx.scatter(anatomy.loc[~hit, "bias"], gap[~hit], facecolors="white", edgecolors="black", label="not reached")
    bx.scatter(anatomy.loc[hit, "bias"], gap[hit], color="black", label="reaches the target")
    if len(anatomy) <= 20:
        for row, g in zip(anatomy.itertuples(index=False), gap):
            bx.annotate(row[0], (row.bias, g), fontsize=7, xytext=(3, 2), textcoords="offset points")
    bx.axhline(0, color="grey", lw=0.8)
    bx.axvline(0, color="grey", lw=0.8)
    bx.set(xlabel="head bias b_k", ylabel="own share − others' share", title="who can fall: bias and share")
    bx.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def variant_plot(curves: pd.DataFrame, target_accuracy: float, tolerance: float):
    """Per variant, against strength: the share of classes at or below ``target_accuracy`` (left) and the
    median over classes of the worst other class's loss (right, dotted: ``tolerance``)."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.8), sharex=True)
    tgt = _target_rows(curves)
    share = tgt.assign(hit=tgt["accuracy"] <= target_accuracy).groupby(["variant", "strength"])["hit"].mean()
    worst = _worst_loss(curves).groupby(["variant", "strength"])["loss"].median()
    for i, variant in enumerate(dict.fromkeys(curves["variant"])):
        style = dict(color=f"C{i}", lw=2.2 if i == 0 else 1.3, label=variant)
        ax.plot(share[variant].index, share[variant].to_numpy(), **style)
        bx.plot(worst[variant].index, worst[variant].to_numpy(), **style)
    bx.axhline(tolerance, ls=":", color="grey")
    ax.set(xlabel="normalised strength s", ylabel=f"share of classes ≤ {target_accuracy:.0%}", ylim=(-0.02, 1.02))
    bx.set(xlabel="normalised strength s", ylabel="median worst-other loss")
    for a in (ax, bx):
        if curves["strength"].max() > 10:
            a.set_xscale("symlog", linthresh=8)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def deep_vs_head_plot(curves: pd.DataFrame, palette: dict, target_accuracy: float):
    """Target accuracy (left) and worst other-class loss (right) against strength, per class: the deeper
    edit (solid) beside the head edit on the same images (dashed). ``curves`` has a ``variant`` column."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.8), sharex=True)
    tgt, worst = _target_rows(curves), _worst_loss(curves)
    styles = dict(zip(dict.fromkeys(curves["variant"]), ["-", "--", ":"]))
    for (variant, role), sub in tgt.groupby(["variant", "feature_role"], sort=False):
        cls = role.split(":", 1)[1]
        ax.plot(sub["strength"], sub["accuracy"], styles[variant], color=palette.get(cls, "grey"), lw=1.2)
        w = worst[(worst["variant"] == variant) & (worst["feature_role"] == role)]
        bx.plot(w["strength"], w["loss"], styles[variant], color=palette.get(cls, "grey"), lw=1.2)
    ax.axhline(target_accuracy, ls=":", color="grey")
    ax.set(xlabel="normalised strength s", ylabel="edited class's accuracy", ylim=(-0.02, 1.02))
    bx.set(xlabel="normalised strength s", ylabel="worst other class's loss")
    for variant, ls in styles.items():
        bx.plot([], [], ls, color="black", label=variant)
    bx.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
