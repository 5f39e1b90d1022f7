"""Kernel-free explorers: every state precomputed, clear errors for tables that cannot fill them."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from salve_utils import figures
from salve_utils.figures import explorer
from salve_utils.study import report


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
    ex = explorer.accuracy_explorer(_sweep(), palette=figures.class_palette(["a", "b", "c"]))
    assert ex.shape == (2, 2, 3, 3)
    assert list(ex.controls["direction"]) == ["suppress", "enhance"]
    np.testing.assert_allclose(ex.state(feature="dominant:b", direction="suppress", strength=2.0), [0.9, 0.1, 0.9])
    np.testing.assert_allclose(ex.reference, [0.9, 0.9, 0.9])  # strength 0: before the edit
    page = ex._repr_html_()
    spec = json.loads(re.search(r'<script type="application/json">(.*?)</script>', page).group(1))
    assert len(spec["values"]) == 2 * 2 * 3 and spec["names"] == ["feature", "direction", "strength"]
    assert page == explorer.accuracy_explorer(_sweep(), palette=figures.class_palette(["a", "b", "c"]))._repr_html_()
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


def test_the_page_indexes_states_as_the_array_does() -> None:
    """The browser's flat index (controls in page order, last fastest) reads the same bars as numpy."""
    values = np.random.default_rng(0).random((2, 3, 4, 5))
    ex = explorer.BarExplorer(list("vwxyz"), values, {"m": ["p", "q"], "n": [0, 1, 2], "s": [0.0, 0.5, 1.0, 1.5]})
    spec = json.loads(re.search(r'<script type="application/json">(.*?)</script>', ex._repr_html_()).group(1))
    for idx in np.ndindex(values.shape[:-1]):
        flat = 0
        for k, i in enumerate(idx):  # what draw() computes: index = index * shape[k] + i
            flat = flat * spec["shape"][k] + i
        np.testing.assert_allclose(spec["values"][flat], np.round(values[idx], 4))


def test_labels_cannot_break_out_of_the_page() -> None:
    ex = explorer.BarExplorer(["<!--<script>", "</script>&"], np.zeros((1, 2)), {"s": [0]})
    data = re.search(r'<script type="application/json">(.*?)</script>', ex._repr_html_()).group(1)
    assert "<" not in data and ">" not in data and json.loads(data)["categories"][1] == "</script>&"
    with pytest.raises(ValueError, match="reference must be finite"):
        explorer.BarExplorer(["x"], np.zeros((1, 1)), {"s": [0]}, reference=[np.nan])


def test_histogram_explorer_counts_every_row_once() -> None:
    table = pd.DataFrame({"class": ["a"] * 5 + ["b"] * 2, "v": [1.5, 2.5, np.inf, 3.5, 0.0, 1.2, 9.0]})
    ex = explorer.histogram_explorer(table, "class", "v", [1, 2, 4])
    assert ex.categories == ["< 1", "1–2", "2–4", "> 4", "never"]
    np.testing.assert_allclose(ex.state(**{"class": "a"}), [0.2, 0.2, 0.4, 0.0, 0.2])
    np.testing.assert_allclose(ex.state(**{"class": "b"}), [0.0, 0.5, 0.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="NaN"):
        explorer.histogram_explorer(table.assign(v=np.nan), "class", "v", [1, 2])


def test_verdicts_are_coloured_by_kind() -> None:
    assert report.verdict_css("partly: 2 of 3") != report.verdict_css("holds: 3 of 3")
    assert report.verdict_css("does not hold: x") == f"background-color: {report.VERDICT_COLOURS['does not hold']}"
    claims = pd.DataFrame({"claim": ["a", "b", "c"], "E: verdict": ["holds: x", "—", "differs: 89%"],
                           "F: verdict": ["partly: y", "holds", "not comparable: z"]})
    fig = figures.verdict_grid(claims, ["E", "F"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["holds", "differs", "partly", "holds", "not comparable"]  # only "—" stays blank
    for kind in ("holds", "partly", "does not hold", "differs", "not comparable", "not tested"):
        assert report.verdict_css(f"{kind}: x"), f"{kind!r} has no colour"
