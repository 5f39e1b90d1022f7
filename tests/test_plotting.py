"""Figures draw without warnings (a warning is stderr text on a chapter page)."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")

from salve_utils import figures  # noqa: E402


def _curves(n_classes: int, roles: tuple[str, ...]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"class": f"c{k}", "strength": s, "accuracy": rng.random(), "feature_role": f"dominant:{r}"}
                         for r in roles for k in range(n_classes) for s in (0.0, 1.0, 2.0)])


def test_curve_plot_names_few_classes_and_summarises_many_without_a_layout_warning() -> None:
    palette = figures.class_palette([f"c{k}" for k in range(100)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Tight layout not applied" with a 100-entry legend
        fig = figures.example_pair(_curves(100, ("c0", "c1")), _curves(100, ("c0", "c1")), "c0", "c1",
                                   {"c0": 1, "c1": 2}, palette)
        few = figures.curve_plot(_curves(4, ("c0",)), x="strength", target="c0")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["c0 (target)", "other classes"]
    assert [t.get_text() for t in few.axes[0].get_legend().get_texts()] == ["c0 (target)", "c1", "c2", "c3"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no curves: no legend, no "No artists with labels" warning
        figures.curve_plot(_curves(3, ("c0",)).iloc[:0], x="strength")


def test_verdict_grid_wraps_long_edition_titles_at_spaces() -> None:
    long = "ResNet-18 on planted parts, regime B (shared parts)"
    claims = pd.DataFrame({"claim": ["a"], f"{long}: verdict": ["holds: x"], "ViT on Imagenette: verdict": ["—"]})
    fig = figures.verdict_grid(claims, [long, "ViT on Imagenette"])
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["ResNet-18 on planted\nparts, regime B (shared\nparts)", "ViT on Imagenette"]
    assert all(len(line) <= 24 for label in labels for line in label.split("\n"))
