"""Figures of the Tower: one shared feature edited, and its effect beside every other latent's."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["tower_plot", "tower_effects_plot"]


def tower_plot(curves: pd.DataFrame, followed: Sequence[str], palette: dict, feature: int):
    """Accuracy of the followed classes and the mean of the rest, suppressing and enhancing one feature."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, direction in zip(axes, ("suppress", "enhance")):
        sub = curves[curves["direction"] == direction]
        rest = sub[~sub["class"].isin(followed)].groupby("strength", as_index=False)["accuracy"].mean()
        ax.plot(rest["strength"], rest["accuracy"], "--", color="grey", lw=2, label="mean of other classes")
        for cls in followed:
            c = sub[sub["class"] == cls]
            ax.plot(c["strength"], c["accuracy"], color=palette.get(cls), lw=2.5, label=cls)
        ax.set(title=f"{direction} z{feature}", xlabel="strength α·max|c|", ylim=(-0.02, 1.02))
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def tower_effects_plot(effects: pd.DataFrame, feature: int, palette: dict, classes: Sequence[str]):
    """Per followed class, the accuracy change of suppressing every latent, with one latent marked.

    ``effects`` has the columns of :func:`~salve_utils.study.towers.latent_effects`
    (``feature, class, change, change_lo, change_hi``); every latent is one grey
    dot, ``feature`` (the Tower) a red diamond with its bootstrap interval.
    """
    fig, ax = plt.subplots(figsize=(9, 0.8 + 0.7 * len(classes)))
    rng = np.random.default_rng(0)  # vertical jitter only, so that equal changes stay visible
    for i, cls in enumerate(classes):
        sub = effects[effects["class"] == cls]
        others = sub[sub["feature"] != feature]
        ax.scatter(others["change"], i + rng.uniform(-0.22, 0.22, len(others)), s=14, color=palette.get(cls, "grey"),
                   alpha=0.55, lw=0)
        own = sub[sub["feature"] == feature].iloc[0]
        ax.errorbar([own["change"]], [i], xerr=[[own["change"] - own["change_lo"]], [own["change_hi"] - own["change"]]],
                    fmt="D", color="red", ms=8, capsize=3, label=f"z{feature} (Tower)" if i == 0 else None)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_yticks(range(len(classes)), list(classes))
    ax.set(xlabel="accuracy change (after − before)", ylim=(len(classes) - 0.5, -0.5),
           title=f"suppressing each of {effects['feature'].nunique()} latents at strength "
                 f"{float(effects['strength'].iloc[0]):g}")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig
