"""Figures of training: the backbone's learning curves and confusion, the autoencoder's sweeps and path."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

__all__ = ["training_curves", "confusion_heatmap", "history_plot", "sweep_plot", "sparsity_path_plot"]


def training_curves(history: pd.DataFrame, title: str = ""):
    """Loss and accuracy per epoch (train, and val where it was measured)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    ax1.plot(history["epoch"], history["train_loss"], label="train")
    ax2.plot(history["epoch"], history["train_acc"], label="train (augmented)")
    if "val_acc" in history:
        val = history.dropna(subset=["val_acc"])
        ax1.plot(val["epoch"], val["val_loss"], "o-", label="val")
        ax2.plot(val["epoch"], val["val_acc"], "o-", label="val")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    ax2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_heatmap(confusion: pd.DataFrame, normalize: bool = True, title: str = "confusion matrix"):
    """Confusion matrix (rows: true class, columns: predicted), row-normalised by default."""
    data = confusion.div(confusion.sum(axis=1), axis=0) if normalize else confusion
    many = len(data) > 20  # a hundred classes: colours only, no numbers in the cells
    fig, ax = plt.subplots(figsize=(min(12.0, 0.55 * len(data) + 2.5), min(11.0, 0.5 * len(data) + 1.5)))
    sns.heatmap(data, annot=not many, fmt=".2f" if normalize else "d", cmap="Blues", cbar=many, ax=ax,
                annot_kws={"fontsize": 7}, vmin=0, vmax=1 if normalize else None,
                xticklabels=not many, yticklabels=not many)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def history_plot(history: pd.DataFrame, columns: Sequence[str], log: bool = False, x: str = "epoch"):
    """One small panel per column of a training history."""
    fig, axes = plt.subplots(1, len(columns), figsize=(3.6 * len(columns), 3), squeeze=False)
    for ax, col in zip(axes.flat, columns):
        ax.plot(history[x], history[col])
        ax.set(xlabel=x, title=col, yscale="log" if log else "linear")
    fig.tight_layout()
    return fig


def sweep_plot(sweep: pd.DataFrame, chosen: dict | None = None, max_fvu: float | None = None):
    """FVU, participation (effective active latents) and dead fraction against λ₁; ``chosen`` ringed."""
    metrics = [("fvu", "FVU (val)"), ("participation", "effective active latents (val)"),
               ("dead_fraction", "dead fraction")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, (col, label) in zip(axes, metrics):
        sns.lineplot(data=sweep, x="l1", y=col, hue="d_latent", marker="o", palette="viridis", ax=ax,
                     legend=col == "fvu")
        if chosen is not None:
            row = sweep[(sweep["d_latent"] == chosen["d_latent"]) & (sweep["l1"] == chosen["l1"])]
            ax.scatter(row["l1"], row[col], s=160, facecolors="none", edgecolors="black", lw=2, zorder=5)
        if col == "fvu" and max_fvu is not None:
            ax.axhline(max_fvu, ls=":", color="grey")
        ax.set(xscale="log", xlabel="λ₁", ylabel=label)
    fig.tight_layout()
    return fig


def sparsity_path_plot(path: pd.DataFrame, d_latent: int, chosen_l1: float, sparse: dict[str, float] | None = None):
    """The linear autoencoder along λ₁: validation FVU (left) and L0 counted relative to each latent's
    scale (right, dotted: ``d / 4``, where L1 is said to bite); the chapter's λ₁ marked, and the sparse
    arm's TopK autoencoder as a point (``sparse``: its ``fvu`` and ``l0_rel``)."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.4), sharex=True)
    for a, column, label in ((ax, "fvu", "validation FVU"), (bx, "l0_rel", "relative L0 (active latents)")):
        a.plot(path["l1"], path[column], "o-", color="C0", label="linear, L1")
        ext = path[path["extended"]]
        a.plot(ext["l1"], ext[column], "o", color="C1", label="path extended")
        a.axvline(chosen_l1, ls="--", color="grey", lw=1, label="the chapter's λ₁")
        if sparse is not None:
            a.axhline(sparse[column], ls="-.", color="C2", lw=1.2, label="sparse arm (TopK)")
        a.set(xscale="log", xlabel="λ₁", ylabel=label)
    bx.axhline(d_latent / 4, ls=":", color="black", lw=1, label="d / 4")
    bx.set_ylim(0, d_latent * 1.05)
    bx.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
