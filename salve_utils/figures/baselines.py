"""Figures of the baselines: SALVE against the other edit methods at matched efficacy."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["METHOD_COLOURS", "tradeoff_plot"]


#: one fixed colour per edit method (the baselines chapter)
METHOD_COLOURS = {"SALVE": "#1b6ca8", "steering": "#e08214", "ROME-style": "#5aae61", "zero row": "#8c510a"}


def tradeoff_plot(curves: pd.DataFrame, matched: pd.DataFrame, classes: Sequence[str], ncols: int = 4):
    """Trade-off curves, one panel per class: the worst other class's accuracy against the target's, per method.

    ``curves`` has ``method, class, strength, target_accuracy, others_worst`` (the
    strength sweep); ``matched`` the matched-efficacy rows (``goal_accuracy``,
    ``others_worst`` and its ``_lo``/``_hi``). The target's accuracy falls to the
    right (the x axis is reversed); the dotted line is the goal and each dot a
    method's matched point with its interval (hollow where the goal is not reached).
    """
    classes = list(classes)
    ncols = max(1, min(ncols, len(classes)))
    nrows = int(np.ceil(len(classes) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.9 * nrows), sharey=True, squeeze=False)
    for ax, cls in zip(axes.flat, classes):
        here = curves[curves["class"] == cls]
        for method in dict.fromkeys([m for m in METHOD_COLOURS if m in set(here["method"])] + list(here["method"])):
            colour = METHOD_COLOURS.get(method, "black")
            sub = here[here["method"] == method].sort_values("strength")
            ax.plot(sub["target_accuracy"], sub["others_worst"], color=colour, lw=1.6, label=method)
            row = matched[(matched["class"] == cls) & (matched["method"] == method)]
            if len(row):
                r = row.iloc[0]
                ax.errorbar(r["target_accuracy"], r["others_worst"], color=colour, fmt="o", ms=6, capsize=2,
                            yerr=[[r["others_worst"] - r["others_worst_lo"]], [r["others_worst_hi"] - r["others_worst"]]],
                            mfc=colour if r["matched"] else "white")
        goal = matched.loc[matched["class"] == cls, "goal_accuracy"]
        if len(goal):
            ax.axvline(float(goal.iloc[0]), ls=":", color="grey", lw=1)
        ax.set(title=cls, xlim=(1.02, -0.02), ylim=(-0.02, 1.02), xlabel="target accuracy")
    for ax in axes.flat[len(classes):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("worst other class")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False, bbox_to_anchor=(0.5, 1.02))
    fig.tight_layout(rect=(0, 0, 1, 0.94))
