"""Figures of the robustness over autoencoder seeds (:mod:`salve_utils.study.seeds`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

__all__ = ["seed_match_plot", "seed_outcome_plot", "seed_band_plot", "seed_alpha_plot"]


def seed_match_plot(matches: pd.DataFrame, palette: dict, abs_baseline: float | None = None):
    """Per class, three cosines of each seed's dominant feature to the reference's: decoder, |c| and function.

    ``matches`` is the ``seed_matches`` table (:func:`salve_utils.study.seeds.seed_study`);
    ``abs_baseline`` (dashed) is what unrelated latents score on the |c| cosine.
    """
    panels = (("cosine", "decoder |cos|"), ("abs_cosine", "|c| cosine (what the edit uses)"),
              ("function_cosine", "function cosine"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), sharey=True)
    for ax, (column, title) in zip(axes, panels):
        sns.stripplot(data=matches, x="class", y=column, hue="class", palette=palette, ax=ax, legend=False, size=4)
        if column == "abs_cosine" and abs_baseline is not None and np.isfinite(abs_baseline):
            ax.axhline(abs_baseline, color="grey", ls="--", lw=1, label="unrelated latents (median)")
            ax.legend(loc="lower left", fontsize=7)
        ax.set(xlabel="", ylabel="cosine to reference", title=title)
        ax.tick_params(axis="x", rotation=90, labelsize=7)
    low = float(np.nanmin(matches[[c for c, _ in panels]].to_numpy())) if len(matches) else 0.0
    axes[0].set_ylim(min(0.0, low - 0.05), 1.05)
    fig.tight_layout()
    return fig


def seed_outcome_plot(outcomes: pd.DataFrame, target_accuracy: float):
    """Seeds x classes: the first normalised strength at which a class falls to ``target_accuracy``.

    ``outcomes`` is the ``seed_outcomes`` table; empty (grey, "–") cells are seeds
    whose sweep never brings the class there.
    """
    strength = outcomes.pivot(index="seed", columns="class", values="strength")
    fig, ax = plt.subplots(figsize=(min(16, 0.7 * strength.shape[1] + 2.5), 0.35 * len(strength) + 1.8))
    ax.set_facecolor("0.85")
    sns.heatmap(strength, annot=strength.shape[1] <= 20, fmt=".2g", cmap="viridis", ax=ax,
                cbar_kws={"label": "strength reaching the target"}, annot_kws={"fontsize": 7})
    ax.grid(False)
    for i, j in zip(*np.nonzero(strength.isna().to_numpy())):
        ax.text(j + 0.5, i + 0.5, "–", ha="center", va="center", fontsize=8, color="0.3")
    ax.set(xlabel="", ylabel="autoencoder seed",
           title=f"suppressing each class's own dominant feature: where it falls to ≤ {target_accuracy:.0%}")
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    fig.tight_layout()
    return fig


def seed_band_plot(bands: pd.DataFrame, palette: dict, ncols: int = 5):
    """Per class, target and mean-other accuracy over seeds (mean ± sd) as the dominant feature is suppressed.

    ``bands`` is :func:`salve_utils.study.seeds.curve_bands` (``target, kind, strength, mean, sd``).
    """
    targets = list(dict.fromkeys(bands["target"]))
    nrows = int(np.ceil(len(targets) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.3 * nrows), sharex=True, sharey=True,
                             squeeze=False)
    for ax, target in zip(axes.flat, targets):
        for kind, colour in (("target", palette.get(target)), ("others", "grey")):
            b = bands[(bands["target"] == target) & (bands["kind"] == kind)].sort_values("strength")
            ax.plot(b["strength"], b["mean"], color=colour, lw=2 if kind == "target" else 1.5,
                    ls="-" if kind == "target" else "--")
            ax.fill_between(b["strength"], b["mean"] - b["sd"], b["mean"] + b["sd"], color=colour, alpha=0.25)
        ax.set_title(target, fontsize=9, color=palette.get(target))
        ax.set_ylim(-0.02, 1.02)
    for ax in axes.flat[len(targets):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("strength")
    fig.tight_layout()
    return fig


def seed_alpha_plot(spread: pd.DataFrame, palette: dict, min_images: int = 5):
    """Per class, the median α_crit (strength, log scale) of every seed; hollow: resting on < ``min_images`` images.

    ``spread`` is the ``seed_alpha_crit`` table (``class, median_strength, n_finite``);
    each tick label carries the median number of images behind a class's medians.
    """
    data = spread[np.isfinite(spread["median_strength"]) & (spread["median_strength"] > 0)]
    order = list(data.groupby("class")["median_strength"].median().sort_values().index)
    x = {c: i for i, c in enumerate(order)}
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(data))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(order) + 2), 3.6))
    for (cls, value, n), dx in zip(data[["class", "median_strength", "n_finite"]].itertuples(index=False), jitter):
        colour = palette.get(cls)
        ax.scatter(x[cls] + dx, value, s=30, edgecolors=colour, facecolors=colour if n >= min_images else "none")
    n_images = spread.groupby("class")["n_finite"].median()
    ax.set_xticks(range(len(order)), [f"{c}\n(n≈{n_images[c]:.0f})" for c in order], rotation=90, fontsize=7)
    ax.set(yscale="log", xlabel="", ylabel="median α_crit (strength, log)",
           title=f"per-class α_crit medians over seeds (hollow: < {min_images} images)")
    fig.tight_layout()
    return fig
