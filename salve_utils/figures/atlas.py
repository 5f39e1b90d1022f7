"""Figures of the edit atlas: every latent against every class, and whether edits add up."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd

__all__ = ["atlas_heatmap", "composition_plot"]


def atlas_heatmap(atlas: pd.DataFrame, classes: Sequence[str]):
    """The edit atlas: accuracy change (colour) of every class (columns) when each latent (rows) is edited,
    one panel per direction."""
    directions = list(dict.fromkeys(atlas["direction"]))
    latents = int(atlas["latent"].max()) + 1
    fig, axes = plt.subplots(1, len(directions), figsize=(min(16, 2 + 0.35 * len(classes) * len(directions)) + 2,
                                                          min(12, 2 + 0.12 * latents)), squeeze=False)
    for ax, direction in zip(axes[0], directions):
        m = atlas[atlas["direction"] == direction].pivot(index="latent", columns="class", values="change")[list(classes)]
        im = ax.imshow(m.to_numpy(), aspect="auto", cmap="RdBu", vmin=-1, vmax=1, interpolation="nearest")
        ax.set(title=direction, xlabel="class", ylabel="latent")
        if len(classes) <= 20:
            ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    fig.colorbar(im, ax=axes[0].tolist(), label="accuracy change", shrink=0.8)
    return fig


def composition_plot(comp: pd.DataFrame):
    """Combined edit against the sum of its single edits, one point per class and edit set (diagonal: additive)."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    colours = {"suppressed": "C3", "enhanced": "C2", "other": "grey"}
    for role, sub in comp.groupby("role"):
        ax.scatter(sub["additive"], sub["combined"], s=12 if role == "other" else 28, alpha=0.6,
                   color=colours.get(role, "black"), label=role)
    lo = float(min(comp["additive"].min(), comp["combined"].min(), -0.05))
    ax.plot([lo, 0.05], [lo, 0.05], ls=":", color="black", lw=1)
    ax.set(xlabel="sum of the single edits' changes", ylabel="change under the combined edit",
           title="do edits add up?")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
