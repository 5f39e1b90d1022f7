"""Figures of α_crit, the critical suppression strength: its distributions, the linear formula's tightness, ranks."""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

__all__ = ["alpha_crit_distributions", "alpha_crit_scatter", "alpha_ratio_plot", "alpha_rank_plot"]


_ALPHA_ESTIMATES = {"zero": ("numerical", "empirical"), "flip": ("flip", "empirical_flip")}


_ALPHA_TITLES = {"zero": "logit reaches zero", "flip": "decision flips (argmax leaves the class)"}


def _alpha_long(table: pd.DataFrame) -> pd.DataFrame:
    """Long form of the α_crit table: one row per image and estimate, finite values > 0 as normalised strength."""
    cols = [c for c in ("analytic", "numerical", "empirical", "flip", "empirical_flip") if c in table]
    long = table.melt(id_vars=["class", "sample", "max_abs_c"], value_vars=cols, var_name="estimate",
                      value_name="alpha")
    long["strength"] = long["alpha"] * long["max_abs_c"]
    return long[np.isfinite(long["strength"]) & (long["strength"] > 0)]


def alpha_crit_distributions(table: pd.DataFrame, classes: pd.DataFrame, grid_top: float | None = None):
    """Logit-zero and decision-flip α_crit side by side, per class, with how many images have one at all.

    Left: the logit-zero threshold, right: the decision flip; in each, boxes of
    the exact values (kink walk) and of the empirical ones (real edited model)
    over images with a finite value > 0, as normalised strength on a log scale.
    ``classes`` is :func:`~salve_utils.method.alpha.alpha_crit_classes`: classes run in its
    order (by flip rank, fragile first), and each tick says ``finite/n``.
    ``grid_top`` (normalised strength) draws the top of the empirical scan: no
    empirical value lies above it.
    """
    long = _alpha_long(table)
    order = [c for c in classes["class"] if c in set(table["class"])]
    counts = classes.set_index("class")
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 0.9 * len(order) + 4), 4.4), sharey=True)
    for ax, (name, (exact, empirical)) in zip(axes, _ALPHA_ESTIMATES.items()):
        sub = long[long["estimate"].isin([exact, empirical])].replace(
            {"estimate": {exact: "exact", empirical: "empirical"}})
        if len(sub):
            sns.boxplot(data=sub, x="class", y="strength", hue="estimate", order=order, hue_order=["exact", "empirical"],
                        ax=ax, fliersize=1.5, palette="Set2", linewidth=0.8)
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([f"{c}\n{counts.loc[c, f'{name}_finite']}/{counts.loc[c, 'n']}" for c in order],
                           rotation=40, ha="right", fontsize=8)
        ax.set(yscale="log", xlabel="", title=_ALPHA_TITLES[name], ylabel="α_crit as strength α·max|c| (log)")
        if grid_top is not None:
            ax.axhline(grid_top, color="grey", ls=":", lw=1, label="top of the empirical scan")
        if ax.get_legend() or grid_top is not None:
            ax.legend(fontsize=8, title=None)
    fig.suptitle("critical suppression strength per image (tick: images with a finite value / all)", fontsize=10)
    fig.tight_layout()
    return fig


def alpha_crit_scatter(table: pd.DataFrame, palette: dict):
    """Analytic against numerical α_crit per image; on the diagonal the linear formula is exact."""
    t = table[np.isfinite(table["analytic"]) & np.isfinite(table["numerical"]) & (table["analytic"] > 0)]
    fig, ax = plt.subplots(figsize=(5, 4.6))
    for cls, grp in t.groupby("class"):
        ax.scatter(grp["numerical"] * grp["max_abs_c"], grp["analytic"] * grp["max_abs_c"], s=8,
                   color=palette.get(cls), label=cls, alpha=0.7)
    lo = float((t[["analytic", "numerical"]].min(axis=1) * t["max_abs_c"]).min()) if len(t) else 0.1
    hi = float((t[["analytic", "numerical"]].max(axis=1) * t["max_abs_c"]).max()) if len(t) else 1.0
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--", label="analytic = numerical")
    ax.set(xscale="log", yscale="log", xlabel="numerical (exact) α_crit, strength",
           ylabel="analytic y/R, strength", title="where the linear formula is exact")
    if t["class"].nunique() <= 12:  # a legend of a hundred classes says nothing
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def alpha_ratio_plot(ratio: pd.DataFrame):
    """How tight the linear formula is: analytic / exact α_crit against the exact value, one dot per image.

    ``ratio`` is :func:`~salve_utils.method.alpha.analytic_ratio`. Left of the dotted line
    (strength 1, the first kink) the formula is exact; right of it the ratio shows
    how far it falls below (or above) the exact threshold. Images whose straight
    line never reaches zero (ratio ∞) are counted in the title.
    """
    finite = ratio[np.isfinite(ratio["ratio"])]
    fig, ax = plt.subplots(figsize=(6, 4))
    for exact, colour, label in ((True, "tab:green", "exact (ratio 1)"), (False, "tab:red", "not exact")):
        g = finite[finite["exact"] == exact]
        ax.scatter(g["strength"], g["ratio"], s=8, alpha=0.6, color=colour, label=f"{label}: {len(g)}")
    ax.axvline(1.0, color="black", ls=":", lw=1, label="first kink (strength 1)")
    ax.axhline(1.0, color="grey", ls="--", lw=0.8)
    n_inf = int((~np.isfinite(ratio["ratio"])).sum())
    ax.set(xscale="log", xlabel="exact (numerical) α_crit, strength α·max|c| (log)", ylabel="analytic / exact",
           title=f"tightness of the linear formula ({len(ratio)} images; {n_inf} with analytic ∞)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def alpha_rank_plot(classes: pd.DataFrame, spearman: dict, palette: dict):
    """Per class: median logit-zero and decision-flip α_crit against the strength that suppresses the class.

    ``classes`` is :func:`~salve_utils.method.alpha.alpha_crit_classes`, ``spearman``
    :func:`~salve_utils.method.alpha.alpha_crit_spearman` (ρ and the number of classes in
    each panel's title); each label gives the class's images with a finite value /
    all. A measure of fragility should rise with the suppressing strength.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, name in zip(axes, _ALPHA_ESTIMATES):
        both = classes[np.isfinite(classes[f"{name}_median"].astype(float))
                       & np.isfinite(classes["suppress_strength"].astype(float))]
        for _, row in both.iterrows():
            ax.scatter(row[f"{name}_median"], row["suppress_strength"], color=palette.get(row["class"]), s=30)
            if len(both) <= 20:
                ax.annotate(f"{row['class']} {row[f'{name}_finite']}/{row['n']}",
                            (row[f"{name}_median"], row["suppress_strength"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.set(xscale="log", yscale="log", xlabel=f"median α_crit ({_ALPHA_TITLES[name].split(' (')[0]}), strength (log)",
               title=f"Spearman ρ = {spearman[f'spearman_{name}']:.2f} over {spearman[f'n_{name}']} classes")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(mticker.FormatStrFormatter("%g"))
            axis.set_minor_formatter(mticker.NullFormatter())
    axes[0].set_ylabel("strength suppressing the class (log)")
    fig.tight_layout()
    return fig
