"""Figures for the report: one style, one colour per class across every chapter.

Every function draws on a fresh figure (or a given ``ax``) and returns the
figure, so notebooks stay one call per figure. Colours come from
:func:`class_palette`, so "church" has the same colour in every chapter.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns
import torch

__all__ = [
    "null_band_examples",
    "null_band_multiples",
    "alpha_crit_distributions",
    "alpha_crit_scatter",
    "alpha_explorer",
    "alpha_rank_plot",
    "alpha_ratio_plot",
    "atlas_heatmap",
    "class_palette",
    "composition_plot",
    "confusion_heatmap",
    "curve_plot",
    "deep_vs_head_plot",
    "edit_overview",
    "dominant_bars",
    "example_pair",
    "history_plot",
    "image_grid",
    "latent_heatmap",
    "logit_anatomy_plot",
    "part_recovery_plot",
    "ratio_histograms",
    "sample_classes",
    "seed_alpha_plot",
    "seed_band_plot",
    "seed_match_plot",
    "seed_outcome_plot",
    "set_style",
    "sharing_by_edition",
    "sharing_plot",
    "shared_scatter",
    "small_multiples",
    "sweep_plot",
    "tower_effects_plot",
    "tower_plot",
    "tradeoff_plot",
    "training_curves",
    "variant_plot",
]


def set_style() -> None:
    """The report's look: seaborn's whitegrid, readable font sizes, tight layouts."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "figure.autolayout": False,
                         "axes.titleweight": "bold", "legend.frameon": False})


def class_palette(classes: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """A fixed colour per class name (tab10 up to ten classes, husl beyond)."""
    colours = sns.color_palette("tab10" if len(classes) <= 10 else "husl", len(classes))
    return {c: tuple(colours[i]) for i, c in enumerate(classes)}


def _to_hwc(image: torch.Tensor) -> np.ndarray:
    x = image.detach().cpu()
    if x.dtype == torch.uint8:
        x = x.float() / 255
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def image_grid(images: torch.Tensor | Sequence[torch.Tensor | np.ndarray], titles: Sequence[str] | None = None,
               ncols: int = 8, size: float = 1.6, title_colours: Sequence | None = None, suptitle: str = ""):
    """Images (``(3, H, W)`` tensors in [0, 1] or uint8, or ``(H, W, 3)`` arrays) in a grid with titles."""
    n = len(images)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3 * bool(titles)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i]
        ax.imshow(img if isinstance(img, np.ndarray) else _to_hwc(img))
        if titles is not None:
            ax.set_title(titles[i], fontsize=8, color=title_colours[i] if title_colours is not None else "black")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


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
    of :func:`~salve_utils.method.features.tower_search`'s table (``feature, mu_a, mu_b``).
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


def verdict_grid(claims: pd.DataFrame, titles: Sequence[str]):
    """All verdicts at a glance: claims (rows) x editions (columns), each cell coloured by its verdict's kind.

    ``claims`` is :func:`salve_utils.study.report.claims_by_edition`'s table; a cell shows the
    kind ("holds", "partly", ...) and stays blank ("—") where the edition does not measure the claim;
    each row is named by :func:`salve_utils.study.claims.claim_name`.
    """
    from matplotlib.patches import Patch

    from ..study.claims import claim_name
    from ..study.report import VERDICT_COLOURS, verdict_kind

    kinds = [[verdict_kind(str(v)) for v in claims[f"{t}: verdict"]] for t in titles]
    fig, ax = plt.subplots(figsize=(1.9 * len(titles) + 2.5, 0.42 * len(claims) + 1.4))
    for j, column in enumerate(kinds):
        for i, kind in enumerate(column):
            if kind == "—":
                continue
            colour = VERDICT_COLOURS.get(kind, "white")
            ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor=colour, edgecolor="white", linewidth=2))
            ax.text(j + 0.5, i + 0.5, kind, ha="center", va="center", fontsize=8)
    ax.set(xlim=(0, len(titles)), ylim=(len(claims), 0))
    ax.set_xticks(np.arange(len(titles)) + 0.5, [t.replace(" on ", "\non ") for t in titles], fontsize=8)
    ax.set_yticks(np.arange(len(claims)) + 0.5, claims["claim"].map(claim_name), fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.legend(handles=[Patch(facecolor=c, label=k) for k, c in VERDICT_COLOURS.items()], loc="upper left",
              bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def sample_classes(classes: Sequence[str], n: int, keep: Sequence[str] = (), seed: int = 0) -> list[str]:
    """At most ``n`` of ``classes`` for per-class figures (all of them when there are few), always with ``keep``.

    The rest are drawn at random with ``seed``; the result is in label order.

    >>> sample_classes(["a", "b", "c"], 5)
    ['a', 'b', 'c']
    >>> len(sample_classes([str(i) for i in range(100)], 12, keep=["7"]))
    12
    """
    classes = list(classes)
    if len(classes) <= n:
        return classes
    chosen = list(dict.fromkeys(c for c in keep if c in classes))[:n]
    rest = [c for c in classes if c not in chosen]
    rng = np.random.default_rng(seed)
    chosen += [rest[i] for i in sorted(rng.choice(len(rest), size=n - len(chosen), replace=False))]
    return [c for c in classes if c in set(chosen)]


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


def tower_effects_plot(effects: pd.DataFrame, feature: int, palette: dict, classes: Sequence[str]):
    """Per followed class, the accuracy change of suppressing every latent, with one latent marked.

    ``effects`` has the columns of :func:`~salve_utils.method.features.latent_effects`
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


# --- baselines ---

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


# --- ablations (salve_utils.study.ablations, salve_utils.study.atlas, salve_utils.study.deep) ---


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
