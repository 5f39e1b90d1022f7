"""Figures of the autoencoder's features: class-mean latents, dominant and shared features, planted parts."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

__all__ = ["latent_heatmap", "dominant_bars", "sharing_plot", "sharing_by_edition", "ratio_histograms",
           "shared_scatter", "part_recovery_plot"]


def latent_heatmap(mu: torch.Tensor | np.ndarray, classes: Sequence[str], features: Sequence[int] | None = None,
                   title: str = "class-mean latents μ", highlight: dict[str, int] | None = None):
    """Heatmap of μ (classes x latents), diverging colours centred at zero; boxes mark ``highlight``."""
    mu = mu.detach().cpu().numpy() if isinstance(mu, torch.Tensor) else np.asarray(mu)
    features = list(range(mu.shape[1])) if features is None else list(features)
    data = pd.DataFrame(mu[:, features], index=list(classes), columns=[str(f) for f in features])
    fig, ax = plt.subplots(figsize=(min(18, 0.22 * len(features) + 3), min(14, 0.4 * len(classes) + 1.5)))
    lim = float(np.abs(data.values).max()) or 1.0
    sns.heatmap(data, cmap="RdBu_r", center=0, vmin=-lim, vmax=lim, ax=ax, cbar_kws={"label": "μ"})
    for cls, feat in (highlight or {}).items():
        if feat in features:
            ax.add_patch(plt.Rectangle((features.index(feat), list(classes).index(cls)), 1, 1, fill=False,
                                       lw=2, ec="black"))
    ax.set(xlabel="latent feature l", ylabel="", title=title)
    ax.tick_params(axis="x", labelsize=6)
    fig.tight_layout()
    return fig


def dominant_bars(dominant: pd.DataFrame, palette: dict):
    """Bars of μ for each class's top features, labelled with the latent index."""
    classes = list(dict.fromkeys(dominant["class"]))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(classes) + 2), 3.6))
    ranks = sorted(dominant["rank"].unique())
    width = 0.8 / len(ranks)
    for j, r in enumerate(ranks):
        sub = dominant[dominant["rank"] == r].set_index("class").loc[classes]
        xs = np.arange(len(classes)) + (j - (len(ranks) - 1) / 2) * width
        bars = ax.bar(xs, sub["mu"], width, color=[palette[c] for c in classes], alpha=1.0 - 0.25 * j,
                      edgecolor="black", lw=0.3)
        for bar, feat in zip(bars, sub["feature"]):
            y = bar.get_height()
            ax.annotate(str(feat), (bar.get_x() + bar.get_width() / 2, y), ha="center",
                        va="bottom" if y >= 0 else "top", fontsize=6)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xticks(np.arange(len(classes)), classes, rotation=30, ha="right")
    ax.set(ylabel="μ (class-mean latent)", title=f"top {len(ranks)} features per class (numbers: latent index)")
    fig.tight_layout()
    return fig


def sharing_plot(sharing: pd.DataFrame, threshold: float | None = None):
    """Histogram of how many *other* classes load on each class's dominant feature (``features.dominant_sharing``)."""
    counts = sharing["n_sharing"].value_counts().sort_index()
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    ax.bar(counts.index, counts.values, color="#4c72b0", edgecolor="black", lw=0.4)
    ax.set(xlabel="other classes loading on the class's dominant feature", ylabel="classes",
           title="how shared are the dominant features?" + (f" (ρ ≥ {threshold:g})" if threshold else ""))
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def sharing_by_edition(sharing: pd.DataFrame):
    """Share of classes whose dominant feature is loaded by 0, 1, 2, … other classes, one bar group per edition."""
    share = (sharing.groupby("edition")["n_sharing"].value_counts(normalize=True).rename("share").reset_index())
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    sns.barplot(data=share, x="n_sharing", y="share", hue="edition", ax=ax)
    ax.set(xlabel="other classes loading on the class's dominant feature", ylabel="share of classes",
           title="dominant-feature sharing per edition")
    fig.tight_layout()
    return fig


def ratio_histograms(table: pd.DataFrame, group: str, value: str, xlabel: str = "", title: str = ""):
    """One histogram of ``value`` per ``group`` (log-spaced bins), stacked in rows sharing the x axis."""
    groups = list(dict.fromkeys(table[group]))
    fig, axes = plt.subplots(len(groups), 1, figsize=(6.4, 1.6 * len(groups) + 0.8), sharex=True, squeeze=False)
    v = table[value].to_numpy(dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    lo, hi = (v.min(), v.max()) if len(v) else (0.5, 2.0)
    bins = np.geomspace(min(lo, 0.9), max(hi, 1.1), 40)
    for ax, g in zip(axes[:, 0], groups):
        x = table.loc[table[group] == g, value].to_numpy(dtype=float)
        ax.hist(x[np.isfinite(x) & (x > 0)], bins=bins, color="#4c72b0")
        ax.axvline(1.0, color="black", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_ylabel("images")
        ax.set_title(g, fontsize=9)
    axes[-1, 0].set_xlabel(xlabel or value)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def shared_scatter(search: pd.DataFrame, pair: Sequence[str], null_quantile: float, highlight: int | None = None):
    """Every candidate latent placed by its two standardised class means (a row of a Tower search table).

    Latents that both classes use in one direction lie in the upper-right or
    lower-left quadrant; the shaded corners are where both ``|μ̃|`` exceed the
    null's quantile, i.e. where a candidate would pass. ``search`` has the columns
    of :func:`~salve_utils.study.towers.tower_search`'s table (``feature, mu_a, mu_b``).
    """
    fig, ax = plt.subplots(figsize=(5.0, 4.6))
    xa, xb = search["mu_a"].to_numpy(), search["mu_b"].to_numpy()
    lim = 1.1 * max(float(np.abs(np.r_[xa, xb]).max()), null_quantile) + 0.05
    q = null_quantile
    for sx in (1, -1):  # the two same-sign corners beyond the null's quantile
        ax.fill_between([sx * q, sx * lim], sx * q, sx * lim, color="tab:green", alpha=0.12, lw=0)
    ax.axhline(0, color="black", lw=0.6)
    ax.axvline(0, color="black", lw=0.6)
    same = search["same_sign"].to_numpy(dtype=bool)
    ax.scatter(xa[same], xb[same], s=16, color="tab:blue", alpha=0.8, label="same sign (candidates)")
    ax.scatter(xa[~same], xb[~same], s=16, color="grey", alpha=0.6, marker="x", label="opposite signs")
    for row in search.head(5).itertuples():
        ax.annotate(f"z{row.feature}", (row.mu_a, row.mu_b), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if highlight is not None:
        row = search.set_index("feature").loc[highlight]
        ax.scatter([row["mu_a"]], [row["mu_b"]], s=130, facecolors="none", edgecolors="red", lw=2,
                   label=f"Tower candidate z{highlight}")
    ax.set(xlabel=f"standardised μ̃, {pair[0]}", ylabel=f"standardised μ̃, {pair[1]}", xlim=(-lim, lim),
           ylim=(-lim, lim), title="shared-feature search (shaded: beats the null)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def part_recovery_plot(corr: pd.DataFrame, recovery: pd.DataFrame, threshold: float | None = None):
    """Left: correlation of every latent with every planted part, each part's assigned latent boxed.
    Right: the |r| of each part's assigned latent, with the recovery ``threshold``."""
    fig, (ax, bars) = plt.subplots(1, 2, figsize=(min(18, 0.3 * corr.shape[1] + 6), 0.4 * len(corr) + 1.5),
                                   gridspec_kw={"width_ratios": [4, 1]})
    sns.heatmap(corr, cmap="RdBu_r", center=0, vmin=-1, vmax=1, ax=ax, cbar_kws={"label": "Pearson r"})
    cols = [str(c) for c in corr.columns]
    matched = recovery.set_index("part")
    for i, part in enumerate(corr.index):
        feat = matched.loc[part, "feature"]
        if feat < 0:  # a part that never (or always) occurs has no latent
            continue
        ax.add_patch(plt.Rectangle((cols.index(str(feat)), i), 1, 1, fill=False, lw=2, ec="black"))
    ax.set(xlabel="latent", ylabel="planted part", title="which latent tracks which part")
    ax.tick_params(axis="x", labelsize=6)
    values = matched.loc[list(corr.index), "abs_corr"].fillna(0)
    ok = values >= threshold if threshold is not None else pd.Series(True, index=values.index)
    bars.barh(range(len(values)), values, color=np.where(ok, "tab:green", "tab:red"))
    bars.set_yticks(range(len(values)), list(values.index))
    bars.invert_yaxis()
    if threshold is not None:
        bars.axvline(threshold, color="black", ls="--", lw=1)
    bars.set(xlim=(0, 1), xlabel="|r| of the assigned latent", title="one-to-one match")
    fig.tight_layout()
    return fig
