"""Figures of the edit's accuracy curves: per class, per feature, the paper's examples, and against their nulls."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .style import class_palette

__all__ = ["curve_plot", "edit_overview", "small_multiples", "alpha_explorer", "example_pair", "null_band_multiples",
           "null_band_examples"]


_LEGEND_MAX = 12  # classes a curve plot names one by one


def curve_plot(curves: pd.DataFrame, x: str = "alpha", y: str = "accuracy", target: str | None = None,
               palette: dict | None = None, ax=None, title: str = "", others: str = "lines"):
    """Accuracy of every class against ``x``; the ``target`` class drawn bold.

    ``others="lines"`` draws each non-target class thin (named in the legend up to
    twelve classes, as "other classes" beyond), ``"mean"`` draws their mean as one
    dashed line.
    """
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.6))
    palette = palette or class_palette(list(dict.fromkeys(curves["class"])))
    if others == "mean" and target is not None:
        rest = curves[curves["class"] != target].groupby(x, as_index=False)[y].mean()
        ax.plot(rest[x], rest[y], "--", color="grey", lw=2, label="mean of other classes")
    many = curves["class"].nunique() > _LEGEND_MAX  # a legend of 100 classes would not fit: name the target only
    named = False
    for cls, grp in curves.groupby("class", sort=False):
        if cls == target:
            ax.plot(grp[x], grp[y], color=palette.get(cls), lw=3, label=f"{cls} (target)")
        elif others == "lines":
            label = cls if not many else "_nolegend_" if named else "other classes"
            named = True
            ax.plot(grp[x], grp[y], color=palette.get(cls), lw=1, alpha=0.8, label=label)
    ax.set(xlabel=x.replace("_", " "), ylabel=y.replace("_", " "), ylim=(-0.02, 1.02))
    if title:
        ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2 if others == "lines" and not many else 1, loc="best")
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure


def _role_target(role: str) -> str | None:
    return role.split(":", 1)[1] if role.startswith("dominant:") else None


def edit_overview(summary: pd.DataFrame, palette: dict, strength: float):
    """Every class's dominant-feature edit in one panel per direction: own change (x) vs the others' (y).

    ``summary`` is :func:`~salve_utils.method.editing.target_and_others`. Dots: the mean
    change of the other classes; bars down to their worst change. The ideal edit of
    the paper sits far left (suppress) or right (enhance) on the zero line.
    """
    directions = list(dict.fromkeys(summary["direction"]))
    fig, axes = plt.subplots(1, len(directions), figsize=(4.8 * len(directions), 4.0), squeeze=False, sharey=True)
    for ax, direction in zip(axes[0], directions):
        sub = summary[summary["direction"] == direction]
        colours = [palette.get(c, "grey") for c in sub["class"]]
        ax.vlines(sub["target_change"], sub["others_worst"], sub["others_mean"], colors=colours, lw=0.8, alpha=0.6)
        ax.scatter(sub["target_change"], sub["others_mean"], c=colours, s=18, edgecolor="black", lw=0.3, zorder=3)
        if len(sub) <= 12:
            for cls, x, y in zip(sub["class"], sub["target_change"], sub["others_mean"]):
                ax.annotate(cls, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.axhline(0, color="black", lw=0.6)
        ax.axvline(0, color="black", lw=0.6)
        ax.set(xlabel="change of the edited class", title=f"{direction}, strength {strength:g}")
    axes[0, 0].set_ylabel("change of the other classes (dot: mean, bar: worst)")
    fig.tight_layout()
    return fig


def small_multiples(curves: pd.DataFrame, palette: dict, x: str = "strength", title: str = "", ncols: int = 5,
                    xlabel: str = "strength α·max|c|"):
    """One panel per edited feature: its class's accuracy (bold) and the mean of the others (dashed)."""
    roles = list(dict.fromkeys(curves["feature_role"]))
    nrows = int(np.ceil(len(roles) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.3 * nrows), sharex=True, sharey=True,
                             squeeze=False)
    for ax, role in zip(axes.flat, roles):
        sub = curves[curves["feature_role"] == role]
        target = _role_target(role)
        rest = sub[sub["class"] != target].groupby(x, as_index=False)["accuracy"].mean()
        ax.plot(rest[x], rest["accuracy"], "--", color="grey", lw=1.5)
        tgt = sub[sub["class"] == target]
        ax.plot(tgt[x], tgt["accuracy"], color=palette.get(target, "black"), lw=2.5)
        ax.set_title(f"{target} (z{sub['feature'].iloc[0]})", fontsize=9, color=palette.get(target, "black"))
        ax.set_ylim(-0.02, 1.02)
    for ax in axes.flat[len(roles):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def alpha_explorer(acts, sae, roles: dict[str, int], strength_max: float = 3.0):
    """An ipywidgets explorer: feature, direction and strength -> per-class accuracy bars.

    Runs on cached activations (each move costs one ``A W'ᵀ + b``), so it is
    instant. In a static page it shows its initial state.
    """
    import ipywidgets as widgets

    from ..method.editing import edit_curve
    from ..method.sae import strength_scale

    palette = class_palette(acts.classes)

    def draw(role: str, direction: str, strength: float) -> None:
        column = sae.decoder.weight[:, roles[role]].detach()
        alpha = strength / strength_scale(column)
        curve = edit_curve(acts.val, acts.val_labels, acts.weight, acts.bias, column, [0.0, alpha], direction,
                           acts.classes)
        half = len(curve) // 2  # rows of α = 0, then rows of α
        before, after = curve.iloc[:half], curve.iloc[half:]
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.bar(after["class"], after["accuracy"], color=[palette[c] for c in after["class"]])
        ax.scatter(before["class"], before["accuracy"], marker="_", s=300, color="black", label="before the edit")
        ax.set(ylim=(0, 1.05), ylabel="val accuracy", title=f"{direction} {role} (z{roles[role]}), "
               f"strength {strength:.2f} (α = {alpha:.3g})")
        ax.tick_params(axis="x", rotation=30)
        ax.legend(loc="lower right")
        fig.tight_layout()
        plt.show()

    return widgets.interactive(
        draw, role=widgets.Dropdown(options=list(roles), description="feature"),
        direction=widgets.ToggleButtons(options=["suppress", "enhance"], description="direction"),
        strength=widgets.FloatSlider(value=strength_max / 3, min=0, max=strength_max, step=strength_max / 60,
                                     description="strength", continuous_update=False),
    )


def example_pair(suppressed: pd.DataFrame, enhanced: pd.DataFrame, target: str, enhance: str,
                 dominant: dict[str, int], palette: dict):
    """The paper's two examples side by side: suppress ``target``'s dominant feature, enhance ``enhance``'s."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    curve_plot(suppressed[suppressed["feature_role"] == f"dominant:{target}"], x="strength", target=target,
               palette=palette, ax=axes[0], title=f"suppress z{dominant[target]} (dominant for {target})")
    curve_plot(enhanced[enhanced["feature_role"] == f"dominant:{enhance}"], x="strength", target=enhance,
               palette=palette, ax=axes[1], title=f"enhance z{dominant[enhance]} (dominant for {enhance})")
    fig.tight_layout()
    return fig


# --- null bands ---


def _null_band(ax, nulls: pd.DataFrame, colour, level: float = 0.95) -> None:
    """One feature's nulls on ``ax`` (rows of one role and direction of :func:`~salve_utils.study.nulls.null_edits`):
    the other classes' features as thin grey lines, the permuted draws' central ``level`` range as a
    shaded band, the uniform direction dashed."""
    for _, sub in nulls[nulls["null"] == "others"].groupby("draw"):
        ax.plot(sub["strength"], sub["target_accuracy"], color="grey", lw=0.5, alpha=0.45, zorder=1)
    perm = nulls[nulls["null"] == "permuted"].groupby("strength")["target_accuracy"]
    if len(perm):
        q = (1 - level) / 2
        lo, hi = perm.quantile(q), perm.quantile(1 - q)
        ax.fill_between(lo.index, lo.to_numpy(), hi.to_numpy(), color=colour, alpha=0.25, lw=0, zorder=2)
    uniform = nulls[nulls["null"] == "uniform"]
    ax.plot(uniform["strength"], uniform["target_accuracy"], "--", color="black", lw=1.1, zorder=3)


def _null_legend(fig, colour="grey", level: float = 0.95) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color=colour, lw=2.5, label="the feature"),
               Patch(facecolor=colour, alpha=0.25, label=f"permuted |c| (central {level:.0%})"),
               Line2D([], [], color="black", ls="--", lw=1.1, label="uniform (logit scale)"),
               Line2D([], [], color="grey", lw=0.5, label="other classes' features")]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, -0.01))


def null_band_multiples(summary: pd.DataFrame, nulls: pd.DataFrame, palette: dict, roles: Sequence[str],
                        direction: str = "suppress", title: str = "", ncols: int = 5, level: float = 0.95):
    """One panel per ``dominant:<class>`` role: the class's own accuracy under its feature's edit, over its nulls.

    ``summary`` is :func:`~salve_utils.study.nulls.target_summary` of the curves, ``nulls``
    :func:`~salve_utils.study.nulls.null_edits`; a role without nulls shows the feature alone.
    """
    nrows = int(np.ceil(len(roles) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.3 * nrows + 0.4), sharex=True, sharey=True,
                             squeeze=False)
    for ax, role in zip(axes.flat, roles):
        target = _role_target(role)
        colour = palette.get(target, "black")
        _null_band(ax, nulls[(nulls["feature_role"] == role) & (nulls["direction"] == direction)], colour, level)
        own = summary[(summary["feature_role"] == role) & (summary["direction"] == direction)]
        ax.plot(own["strength"], own["target_accuracy"], color=colour, lw=2.5, zorder=4)
        ax.set_title(target, fontsize=9, color=colour)
        ax.set_ylim(-0.02, 1.02)
    for ax in axes.flat[len(roles):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("strength α·max|c|")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy of the class")
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _null_legend(fig, level=level)
    return fig


def null_band_examples(summary: pd.DataFrame, nulls: pd.DataFrame, panels: Sequence[tuple[str, str]],
                       dominant: dict[str, int], palette: dict, level: float = 0.95):
    """The paper's examples against their nulls: one panel per ``(class, direction)``, e.g.
    ``[("church", "suppress"), ("golf ball", "enhance")]``."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (target, direction) in zip(axes[0], panels):
        role, colour = f"dominant:{target}", palette.get(target, "black")
        _null_band(ax, nulls[(nulls["feature_role"] == role) & (nulls["direction"] == direction)], colour, level)
        own = summary[(summary["feature_role"] == role) & (summary["direction"] == direction)]
        ax.plot(own["strength"], own["target_accuracy"], color=colour, lw=2.5, zorder=4)
        ax.set(ylim=(-0.02, 1.02), xlabel="strength α·max|c|", ylabel=f"accuracy of {target}",
               title=f"{direction} z{dominant[target]} (dominant for {target})")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _null_legend(fig, level=level)
    return fig
