"""Kernel-free explorers: every state precomputed, clear errors for tables that cannot fill them."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from salve_utils import explorer, plotting, report


def _sweep() -> pd.DataFrame:
    rows = []
    for role in ("dominant:a", "dominant:b"):
        for direction in ("suppress", "enhance"):
            for s in (0.0, 1.0, 2.0):
                for c in ("a", "b", "c"):
                    hit = role.endswith(c)
                    acc = 0.9 - (0.4 * s if hit and direction == "suppress" else 0.0)
                    rows.append({"feature_role": role, "direction": direction, "strength": s, "class": c,
                                 "accuracy": acc})
    return pd.DataFrame(rows)


def test_accuracy_explorer_carries_every_state_of_the_sweep() -> None:
    ex = explorer.accuracy_explorer(_sweep(), palette=plotting.class_palette(["a", "b", "c"]))
    assert ex.shape == (2, 2, 3, 3)
    assert list(ex.controls["direction"]) == ["suppress", "enhance"]
    np.testing.assert_allclose(ex.state(feature="dominant:b", direction="suppress", strength=2.0), [0.9, 0.1, 0.9])
    np.testing.assert_allclose(ex.reference, [0.9, 0.9, 0.9])  # strength 0: before the edit
    page = ex._repr_html_()
    spec = json.loads(re.search(r'<script type="application/json">(.*?)</script>', page).group(1))
    assert len(spec["values"]) == 2 * 2 * 3 and spec["names"] == ["feature", "direction", "strength"]
    assert page == explorer.accuracy_explorer(_sweep(), palette=plotting.class_palette(["a", "b", "c"]))._repr_html_()
    assert "http" not in page  # nothing to fetch: no CDN, no kernel


def test_accuracy_explorer_limits_what_the_page_carries() -> None:
    ex = explorer.accuracy_explorer(_sweep(), classes=["b", "a"], features=["dominant:b"])
    assert ex.categories == ["b", "a"] and ex.shape == (1, 2, 3, 2)
    with pytest.raises(ValueError, match="not in the sweep table"):
        explorer.accuracy_explorer(_sweep(), classes=["zebra"])
    with pytest.raises(ValueError, match="every feature needs every"):
        explorer.accuracy_explorer(_sweep().iloc[1:])


@pytest.mark.parametrize("kwargs, message", [
    ({"values": np.zeros((2, 2))}, "shape"),
    ({"values": np.full((3, 2), np.nan)}, "finite"),
    ({"reference": [0.1]}, "reference has 1"),
    ({"ylim": (1.0, 0.0)}, "increasing"),
    ({"initial": {"speed": 1}}, "unknown controls"),
])
def test_bar_explorer_rejects_bad_input(kwargs: dict, message: str) -> None:
    args = {"categories": ["x", "y"], "values": np.zeros((3, 2)), "controls": {"s": [0, 1, 2]}} | kwargs
    with pytest.raises(ValueError, match=message):
        explorer.BarExplorer(**args)


def test_histogram_explorer_counts_never_apart() -> None:
    table = pd.DataFrame({"class": ["a"] * 4 + ["b"] * 2, "v": [1.5, 2.5, np.inf, 3.5, 1.2, 1.3]})
    ex = explorer.histogram_explorer(table, "class", "v", [1, 2, 4])
    np.testing.assert_allclose(ex.state(**{"class": "a"}), [0.25, 0.5, 0.25])
    np.testing.assert_allclose(ex.state(**{"class": "b"}), [1.0, 0.0, 0.0])
    assert ex.categories[-1] == "never"


def test_verdicts_are_coloured_by_kind() -> None:
    assert report.verdict_css("partly: 2 of 3") != report.verdict_css("holds: 3 of 3")
    assert report.verdict_css("does not hold: x") == f"background-color: {report.VERDICT_COLOURS['does not hold']}"
    claims = pd.DataFrame({"claim": ["a", "b"], "E: verdict": ["holds: x", "—"], "F: verdict": ["partly: y", "holds"]})
    fig = plotting.verdict_grid(claims, ["E", "F"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["holds", "partly", "holds"]  # the blank cell carries no word
