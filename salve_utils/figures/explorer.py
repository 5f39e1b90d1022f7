"""Kernel-free explorers: precomputed numbers, a few controls, bars redrawn in the browser.

A static website has no Python kernel, so an ipywidgets slider there shows only its
initial state. :class:`BarExplorer` instead ships every state it can show: an array
``values[i_1, …, i_m, :]`` with one axis per control (a menu or a slider) and a last
axis of bars. The page embeds the array as JSON with about forty lines of plain
JavaScript that redraw an SVG bar chart when a control moves — no CDN, no kernel,
and it works the same in Jupyter (trusted notebooks) and in the built book.

Because SALVE's edit acts on the head only, every state is exact and cheap to
precompute on cached activations: :func:`accuracy_explorer` turns the control
chapter's sweep table (accuracy per feature, direction, strength and class) into one.

>>> import numpy as np
>>> ex = BarExplorer(["a", "b"], np.array([[0.2, 0.9], [0.5, 0.5]]),
...                  {"strength": [0.0, 1.0]}, title="toy")
>>> ex.state(strength=1.0).tolist()
[0.5, 0.5]
>>> "<svg" in ex._repr_html_() and 'type="range"' in ex._repr_html_()
True
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["BarExplorer", "accuracy_explorer", "histogram_explorer"]

_WIDTH, _HEIGHT, _LEFT, _BOTTOM, _TOP = 760, 300, 46, 92, 26

_SCRIPT = """
(function () {
  // this explorer, even if a page shows the same one twice (by id where scripts run detached)
  var root = document.currentScript ? document.currentScript.parentNode : document.getElementById("%(id)s");
  var spec = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  var controls = root.querySelectorAll("[data-axis]");
  var bars = root.querySelectorAll("rect.bar"), refs = root.querySelectorAll("line.ref");
  var label = root.querySelector(".salve-explorer-state"), ymax = spec.ylim[1], ymin = spec.ylim[0];
  var plotH = %(plot_h)s, top = %(top)s;
  function y(v) { return top + plotH * (1 - (Math.min(Math.max(v, ymin), ymax) - ymin) / (ymax - ymin)); }
  function draw() {
    var index = 0, words = [];
    controls.forEach(function (c, k) {
      var i = parseInt(c.value, 10);
      index = index * spec.shape[k] + i;
      words.push(spec.names[k] + " = " + spec.options[k][i]);
      var out = root.querySelector("output[data-for='" + k + "']");
      if (out) { out.textContent = spec.options[k][i]; }
    });
    var row = spec.values[index];
    bars.forEach(function (b, j) {
      var v = row[j], y0 = y(Math.max(ymin, 0)), y1 = y(v);
      b.setAttribute("y", Math.min(y0, y1)); b.setAttribute("height", Math.abs(y0 - y1));
      b.querySelector("title").textContent = spec.categories[j] + ": " + spec.format(v);
    });
    refs.forEach(function (r, j) {
      if (spec.reference) { r.setAttribute("y1", y(spec.reference[j])); r.setAttribute("y2", y(spec.reference[j])); }
    });
    label.textContent = words.join(", ");
    root.setAttribute("data-state", words.join("; "));
  }
  spec.format = spec.percent ? function (v) { return (100 * v).toFixed(1) + "%%"; }
                             : function (v) { return v.toPrecision(3); };
  controls.forEach(function (c) { c.addEventListener("input", draw); c.addEventListener("change", draw); });
  draw();
})();
"""


def _label(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3g}"
    return str(value)


class BarExplorer:
    """An interactive bar chart that needs no kernel: every state is precomputed.

    Parameters
    ----------
    categories : the bars' labels (e.g. class names), length ``n``.
    values : array of shape ``(len(options_1), …, len(options_m), n)``: the bar heights
        for every combination of control settings.
    controls : ordered mapping control name -> its settings. A control whose settings
        are all numbers is a slider, any other a menu.
    reference : optional ``n`` values drawn as a tick over each bar (e.g. before the edit).
    colors : optional ``n`` colours (any CSS colour) for the bars.
    initial : optional control name -> setting to show first (default: the first).
    ylim, ylabel, title : axis range and labels; ``percent`` formats tooltips as %.

    Examples
    --------
    >>> ex = BarExplorer(["x"], np.zeros((2, 3, 1)), {"m": ["p", "q"], "s": [0, 1, 2]})
    >>> ex.shape
    (2, 3, 1)
    """

    def __init__(self, categories: Sequence[str], values: np.ndarray, controls: dict[str, Sequence[Any]],
                 reference: Sequence[float] | None = None, colors: Sequence[str] | None = None,
                 initial: dict[str, Any] | None = None, ylim: tuple[float, float] = (0.0, 1.0),
                 ylabel: str = "accuracy", title: str = "", percent: bool = True) -> None:
        values = np.asarray(values, dtype=np.float64)
        self.categories = [str(c) for c in categories]
        self.controls = {str(k): list(v) for k, v in controls.items()}
        shape = tuple(len(v) for v in self.controls.values()) + (len(self.categories),)
        if values.shape != shape:
            raise ValueError(f"values has shape {values.shape}, but the controls and categories need {shape}")
        if not np.isfinite(values).all():
            raise ValueError("values must be finite: replace NaN/inf before building the explorer")
        if any(len(v) == 0 for v in self.controls.values()) or not self.categories:
            raise ValueError("every control needs at least one setting, and there must be at least one bar")
        for name, n in (("reference", reference), ("colors", colors)):
            if n is not None and len(n) != len(self.categories):
                raise ValueError(f"{name} has {len(n)} entries for {len(self.categories)} categories")
        if reference is not None and not np.isfinite(np.asarray(reference, dtype=np.float64)).all():
            raise ValueError("reference must be finite: replace NaN/inf before building the explorer")
        if not ylim[1] > ylim[0]:
            raise ValueError(f"ylim must be increasing, got {ylim}")
        unknown = set(initial or {}) - set(self.controls)
        if unknown:
            raise ValueError(f"initial names unknown controls {sorted(unknown)}; controls: {list(self.controls)}")
        self.values, self.shape = values, shape
        self.reference = None if reference is None else [float(r) for r in reference]
        self.colors = list(colors) if colors is not None else ["#4c72b0"] * len(self.categories)
        self.initial = {k: self.controls[k].index(v) for k, v in (initial or {}).items()}
        self.ylim, self.ylabel, self.title, self.percent = (float(ylim[0]), float(ylim[1])), ylabel, title, percent

    def state(self, **settings: Any) -> np.ndarray:
        """The bar heights for the given control settings (the others at their initial setting)."""
        index = tuple(self.controls[k].index(settings[k]) if k in settings else self.initial.get(k, 0)
                      for k in self.controls)
        return self.values[index]

    def _spec(self) -> dict[str, Any]:
        return {"names": list(self.controls), "options": [[_label(o) for o in v] for v in self.controls.values()],
                "shape": list(self.shape[:-1]), "categories": self.categories,
                "values": np.round(self.values.reshape(-1, self.shape[-1]), 4).tolist(),
                "reference": None if self.reference is None else np.round(self.reference, 4).tolist(),
                "ylim": list(self.ylim), "percent": self.percent}

    def _control_html(self, k: int, name: str, options: list[Any]) -> str:
        start = self.initial.get(name, 0)
        if all(isinstance(o, (int, float, np.integer, np.floating)) for o in options):
            return (f'<label>{html.escape(name)} <input type="range" data-axis="{k}" min="0" max="{len(options) - 1}" '
                    f'step="1" value="{start}"> <output data-for="{k}">{html.escape(_label(options[start]))}</output>'
                    "</label>")
        items = "".join(f'<option value="{i}"{" selected" if i == start else ""}>{html.escape(_label(o))}</option>'
                        for i, o in enumerate(options))
        return f'<label>{html.escape(name)} <select data-axis="{k}">{items}</select></label>'

    def _svg(self) -> str:
        n = len(self.categories)
        plot_w, plot_h = _WIDTH - _LEFT - 10, _HEIGHT - _BOTTOM - _TOP
        step = plot_w / n
        lo, hi = self.ylim
        parts = [f'<svg viewBox="0 0 {_WIDTH} {_HEIGHT}" width="100%" role="img" '
                 f'aria-label="{html.escape(self.title or self.ylabel)}" font-size="11" font-family="sans-serif">']
        for t in np.linspace(lo, hi, 5):
            y = _TOP + plot_h * (1 - (t - lo) / (hi - lo))
            text = f"{t:.0%}" if self.percent else f"{t:.3g}"
            parts.append(f'<line x1="{_LEFT}" x2="{_WIDTH - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                         f'<text x="{_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{text}</text>')
        parts.append(f'<text x="12" y="{_TOP + plot_h / 2:.0f}" transform="rotate(-90 12 {_TOP + plot_h / 2:.0f})" '
                     f'text-anchor="middle">{html.escape(self.ylabel)}</text>')
        for j, (c, colour) in enumerate(zip(self.categories, self.colors)):
            x = _LEFT + j * step
            parts.append(f'<rect class="bar" x="{x + step * 0.12:.1f}" y="{_TOP + plot_h}" width="{step * 0.76:.1f}" '
                         f'height="0" fill="{html.escape(colour)}"><title>{html.escape(c)}</title></rect>')
            if self.reference is not None:
                parts.append(f'<line class="ref" x1="{x + step * 0.05:.1f}" x2="{x + step * 0.95:.1f}" '
                             f'stroke="black" stroke-width="2"/>')
            cx, cy = x + step / 2, _TOP + plot_h + 8
            parts.append(f'<text x="{cx:.1f}" y="{cy:.1f}" transform="rotate(-40 {cx:.1f} {cy:.1f})" '
                         f'text-anchor="end">{html.escape(c)}</text>')
        parts.append("</svg>")
        return "".join(parts)

    def _repr_html_(self) -> str:
        spec = json.dumps(self._spec(), separators=(",", ":"), allow_nan=False)
        # a deterministic id: the same explorer gives the same bytes (and two explorers differ)
        uid = "salve-explorer-" + hashlib.sha256((self.title + spec).encode()).hexdigest()[:12]
        controls = "".join(self._control_html(k, name, opts) for k, (name, opts) in enumerate(self.controls.items()))
        ref = (' <span class="salve-explorer-legend">black tick: before the edit</span>'
               if self.reference is not None else "")
        script = _SCRIPT % {"id": uid, "plot_h": _HEIGHT - _BOTTOM - _TOP, "top": _TOP}
        # no label can end the script element or open a comment in it: <, > and & as JSON escapes
        data = spec.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
        return (f'<div class="salve-explorer" id="{uid}">'
                + (f'<div class="salve-explorer-title">{html.escape(self.title)}</div>' if self.title else "")
                + f'<div class="salve-explorer-controls">{controls}</div>{self._svg()}'
                + f'<div class="salve-explorer-caption"><span class="salve-explorer-state"></span>{ref}</div>'
                + f'<script type="application/json">{data}</script>'
                + f"<script>{script}</script></div>")

    def __repr__(self) -> str:
        controls = ", ".join(f"{k} ({len(v)})" for k, v in self.controls.items())
        return f"BarExplorer({self.title!r}: {len(self.categories)} bars; controls {controls})"


def accuracy_explorer(curves: pd.DataFrame, classes: Sequence[str] | None = None,
                      features: Sequence[str] | None = None, palette: dict[str, Any] | None = None,
                      title: str = "") -> BarExplorer:
    """The α explorer: per-class accuracy for every feature, direction and strength of a sweep table.

    ``curves`` is the control chapter's table (columns ``feature_role, direction,
    strength, class, accuracy``, as :func:`salve_utils.method.editing.feature_curves` returns),
    so each state is the exact accuracy of the edited head ``A W'ᵀ + b``. ``classes``
    and ``features`` (feature roles) limit what the page carries; bars are coloured by
    ``palette`` and the black ticks show the accuracy before the edit (strength 0).
    """
    df = curves
    if classes is not None:
        df = df[df["class"].isin(list(classes))]
    if features is not None:
        df = df[df["feature_role"].isin(list(features))]
    if df.empty:
        raise ValueError("no rows left: the classes or features asked for are not in the sweep table")
    roles = list(dict.fromkeys(features if features is not None else df["feature_role"]))
    directions = sorted(df["direction"].unique(), key=lambda d: (d != "suppress", d))
    strengths = sorted(df["strength"].unique())
    cats = list(dict.fromkeys(classes if classes is not None else df["class"]))
    cube = (df.set_index(["feature_role", "direction", "strength", "class"])["accuracy"]
            .reindex(pd.MultiIndex.from_product([roles, directions, strengths, cats])))
    if cube.isna().any():
        missing = cube[cube.isna()].index[0]
        raise ValueError(f"the sweep table has no accuracy for {missing}: every feature needs every "
                         "direction, strength and class")
    values = cube.to_numpy().reshape(len(roles), len(directions), len(strengths), len(cats))
    before = values[0, 0, 0] if strengths[0] == 0 else None
    colors = None
    if palette is not None:
        from matplotlib.colors import to_hex
        colors = [to_hex(palette[c]) for c in cats]
    return BarExplorer(cats, values, {"feature": roles, "direction": directions, "strength": [float(s) for s in strengths]},
                       reference=before, colors=colors, title=title,
                       initial={"strength": float(strengths[len(strengths) // 3])})


def histogram_explorer(table: pd.DataFrame, by: str, value: str, bins: Sequence[float],
                       title: str = "", ylabel: str = "share of images") -> BarExplorer:
    """One histogram of ``value`` per group of ``by`` (e.g. α_crit per class), picked from a menu.

    Bars are the shares of a group's rows in each bin of ``bins``; values below the
    first edge or above the last get bars of their own (``< lo``, ``> hi``), and
    infinite values a grey bar ``never``, so every row is counted exactly once and
    the shares of a group sum to one.

    >>> t = pd.DataFrame({"g": ["a"] * 4, "v": [0.5, 1.5, 9.0, np.inf]})
    >>> histogram_explorer(t, "g", "v", [1, 2, 4]).state(g="a").tolist()
    [0.25, 0.25, 0.0, 0.25, 0.25]
    """
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not np.all(np.diff(edges) > 0) or not np.isfinite(edges).all():
        raise ValueError("bins must be at least two finite, increasing edges")
    if table[value].isna().any():
        raise ValueError(f"{value!r} has NaN values: drop or fill them before building the explorer")
    groups = list(dict.fromkeys(table[by]))
    rows = []
    for g in groups:
        v = table.loc[table[by] == g, value].to_numpy(dtype=np.float64)
        finite = v[np.isfinite(v)]
        inside, _ = np.histogram(finite[(finite >= edges[0]) & (finite <= edges[-1])], edges)
        counts = [np.sum(finite < edges[0]), *inside, np.sum(finite > edges[-1]), np.isinf(v).sum()]
        rows.append(np.asarray(counts, dtype=np.float64) / max(len(v), 1))
    cats = ([f"< {edges[0]:.3g}"] + [f"{a:.3g}–{b:.3g}" for a, b in zip(edges[:-1], edges[1:])]
            + [f"> {edges[-1]:.3g}", "never"])
    values = np.array(rows)
    top = min(1.0, np.ceil(max(float(values.max()), 1e-9) * 10) / 10)  # a round axis: 10%, 20%, …, 100%
    return BarExplorer(cats, values, {by: groups}, ylim=(0.0, top),
                       ylabel=ylabel, title=title, colors=["#4c72b0"] * (len(cats) - 1) + ["#999999"])
