"""The baselines at matched efficacy: each method at the strength that meets SALVE's goal, and what it costs.

:func:`salve_goals` reads, per class, the accuracy SALVE's edit reaches; :func:`match_efficacy`
finds, for any :class:`~salve_utils.study.baselines.HeadEdit`, the smallest strength at which
the target's accuracy falls to that goal, and :func:`tradeoff` follows the target's accuracy
against the other classes' mean and worst accuracy along the strength range.
:func:`most_specific` and :func:`specificity_counts` say which method costs the others least.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..method.validation import InputTypeError, check_labels
from .baselines import METHODS, HeadEdit, _check_acts
from .stats import accuracy_interval, interval

__all__ = [
    "Match",
    "SpecificityCounts",
    "match_efficacy",
    "most_specific",
    "never_lowered",
    "salve_goals",
    "specificity_counts",
    "summarize_methods",
    "tradeoff",
]


def salve_goals(curves: pd.DataFrame, target_accuracy: float) -> pd.DataFrame:
    """Per class, the efficacy every method is matched to: SALVE's own target accuracy at its operating point.

    From the control chapter's suppression curves of each class's dominant
    feature: the target accuracy at the first swept strength where it is
    ``<= target_accuracy`` (``source = "operating point"``); where the sweep never
    gets there, the lowest target accuracy it reaches, at the first strength that
    reaches it (``source = "lowest in sweep"``). With an ``n`` column (images per
    class) the goal is snapped to ``round(goal · n) / n``, the exact share a
    stored, rounded accuracy stands for, so that SALVE meets its own goal.

    Returns
    -------
    DataFrame ``class, goal_accuracy, salve_strength, source``, sorted by class.

    Examples
    --------
    >>> rows = [{"feature_role": f"dominant:{c}", "direction": "suppress", "strength": s, "class": c,
    ...          "accuracy": acc} for s, c, acc in [(0, "a", 0.9), (1, "a", 0.04), (0, "b", 0.8), (1, "b", 0.5)]]
    >>> salve_goals(pd.DataFrame(rows), 0.05).to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
    [{'class': 'a', 'goal_accuracy': 0.04, 'salve_strength': 1.0, 'source': 'operating point'},
     {'class': 'b', 'goal_accuracy': 0.5, 'salve_strength': 1.0, 'source': 'lowest in sweep'}]
    """
    if not 0.0 <= target_accuracy <= 1.0:
        raise ValueError(f"target_accuracy must lie in [0, 1], got {target_accuracy!r}")
    need = {"feature_role", "direction", "strength", "class", "accuracy"}
    if missing := need - set(curves.columns):
        raise ValueError(f"curves lack the columns {sorted(missing)}")
    sup = curves[(curves["direction"] == "suppress") & curves["feature_role"].str.startswith("dominant:")]
    if sup.empty:
        raise ValueError("curves hold no suppression curve of a dominant feature ('dominant:<class>')")
    rows = []
    for role, sub in sup.groupby("feature_role", sort=True):
        cls = role.split(":", 1)[1]
        own = sub[sub["class"] == cls].sort_values("strength", ignore_index=True)
        hit = own.index[own["accuracy"] <= target_accuracy]
        at = hit[0] if len(hit) else own["accuracy"].idxmin()  # idxmin: the first (smallest) strength of the minimum
        goal = float(own.loc[at, "accuracy"])
        if "n" in own.columns:  # undo the table's rounding: an accuracy is a count of images, k / n
            goal = round(goal * int(own.loc[at, "n"])) / int(own.loc[at, "n"])
        rows.append({"class": cls, "goal_accuracy": goal,
                     "salve_strength": float(own.loc[at, "strength"]),
                     "source": "operating point" if len(hit) else "lowest in sweep"})
    return pd.DataFrame(rows).sort_values("class", ignore_index=True)


def _method_key(name: str) -> tuple[int, str]:
    """Sort key of a method's name: the order of :data:`METHODS`, then unknown names alphabetically."""
    order = {m.name: i for i, m in enumerate(METHODS)}
    return order.get(name, len(order)), name


def summarize_methods(table: pd.DataFrame) -> pd.DataFrame:
    """Per method (in the order of :data:`METHODS`), over the classes of a matched-efficacy table.

    ``reached``: classes where the method reaches the goal, of ``classes``; over
    those, the medians of ``others_worst``, ``others_mean`` and ``edit_size``
    (NaN for a method that changes no weight).

    >>> t = pd.DataFrame({"method": ["x", "x"], "matched": [True, False], "others_worst": [0.5, 0.1],
    ...                   "others_mean": [0.8, 0.2], "edit_size": [1.0, 3.0]})
    >>> summarize_methods(t).to_dict("records")[0]["median_others_worst"]
    0.5
    """
    need = {"method", "matched", "others_worst", "others_mean", "edit_size"}
    if missing := need - set(table.columns):
        raise ValueError(f"table lacks the columns {sorted(missing)}")
    rows = []
    for method, sub in sorted(table.groupby("method"), key=lambda g: _method_key(g[0])):
        hit = sub[sub["matched"].astype(bool)]
        rows.append({"method": method, "reached": len(hit), "classes": len(sub),
                     "median_others_worst": float(hit["others_worst"].median()) if len(hit) else math.nan,
                     "median_others_mean": float(hit["others_mean"].median()) if len(hit) else math.nan,
                     "median_edit_size": float(hit["edit_size"].median()) if len(hit) else math.nan})
    return pd.DataFrame(rows)


def _check_inputs(method: HeadEdit, acts: torch.Tensor, labels: torch.Tensor,
                  strengths: Sequence[float] | np.ndarray | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Validate the inputs of :func:`tradeoff` and :func:`match_efficacy` (labels, target present, grid)."""
    if not isinstance(method, HeadEdit):
        raise InputTypeError(f"method must be a HeadEdit, got {type(method).__name__}")
    _check_acts(acts, method.weight.shape[1])
    labels = check_labels(labels, "labels", acts.shape[0], method.weight.shape[0]).to(acts.device)
    if not (labels == method.target).any():
        raise ValueError(f"labels hold no sample of the target class {method.target}")
    if method.weight.shape[0] < 2:
        raise ValueError("the head needs at least two classes (the target and the others)")
    grid = np.asarray([] if strengths is None else strengths, dtype=np.float64).reshape(-1)
    if strengths is not None:
        if not len(grid) or np.any(np.diff(grid) <= 0):
            raise ValueError(f"strengths must be a non-empty, increasing sequence, got {strengths!r}")
        lo, hi = method.strength_range
        if grid[0] < lo or grid[-1] > hi:
            raise ValueError(f"{method.name}: strengths must lie in [{lo:g}, {hi:g}], got [{grid[0]:g}, {grid[-1]:g}]")
    return labels, grid


def _accuracies(method: HeadEdit, acts: torch.Tensor, labels: torch.Tensor, strength: float) -> np.ndarray:
    """Per-class accuracy (K,) of the edited head: ``acc_k = #{n : y_n = k, argmax_i logits_ni = k} / #{n : y_n = k}``."""
    num_classes = method.weight.shape[0]
    correct = method.predict(acts, strength) == labels
    hits = torch.bincount(labels[correct], minlength=num_classes).double()
    return (hits / torch.bincount(labels, minlength=num_classes).double()).cpu().numpy()


def _others(accuracy: np.ndarray, counts: np.ndarray, target: int) -> np.ndarray:
    """Indices of the classes other than ``target`` that have samples."""
    return np.array([k for k in range(len(accuracy)) if k != target and counts[k] > 0], dtype=np.int64)


def tradeoff(method: HeadEdit, acts: torch.Tensor, labels: torch.Tensor,
             strengths: Sequence[float] | np.ndarray) -> pd.DataFrame:
    r"""The method's trade-off along its strength: the target's accuracy against the other classes'.

    For each strength ``s``:

    .. math::

        \mathrm{target\_accuracy} = \mathrm{acc}_t(s), \qquad
        \mathrm{others\_mean} = \operatorname{mean}_{k \neq t} \mathrm{acc}_k(s), \qquad
        \mathrm{others\_worst} = \min_{k \neq t} \mathrm{acc}_k(s)

    Returns
    -------
    DataFrame ``method, strength, target_accuracy, others_mean, others_worst`` (one row per strength).

    Examples
    --------
    >>> from salve_utils.study.baselines import ZeroRow
    >>> x = torch.eye(2); y = torch.tensor([0, 1])
    >>> m = ZeroRow(torch.eye(2), torch.tensor([0.0, 0.1]), 0)   # at s = 1 the target logit is 0 < 0.1
    >>> tradeoff(m, x, y, [0.0, 1.0])["target_accuracy"].tolist()
    [1.0, 0.0]
    """
    labels, grid = _check_inputs(method, acts, labels, strengths)
    counts = np.bincount(labels.cpu().numpy(), minlength=method.weight.shape[0])
    rows = []
    for s in grid:
        acc = _accuracies(method, acts, labels, float(s))
        others = acc[_others(acc, counts, method.target)]
        rows.append({"method": method.name, "strength": float(s), "target_accuracy": float(acc[method.target]),
                     "others_mean": float(others.mean()), "others_worst": float(others.min())})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Match:
    """The outcome of :func:`match_efficacy` for one method and target.

    ``strength`` is the matched strength, or, when the goal is not reached, the
    strength of the lowest target accuracy on the grid (the closest approach);
    ``accuracy`` (K,) and ``counts`` (K,) are the per-class accuracies there and
    the images behind them; ``curve`` is the grid's :func:`tradeoff`.
    """

    method: str
    target: int
    matched: bool
    goal_accuracy: float
    strength: float
    accuracy: np.ndarray
    counts: np.ndarray
    edit_size: float
    curve: pd.DataFrame

    def summary(self, classes: Sequence[str] | None = None, level: float = 0.95) -> dict:
        """One row of the matched-efficacy table, with bootstrap intervals over the validation images.

        ``target_lo/hi`` is :func:`~salve_utils.study.stats.accuracy_interval` of the target;
        ``others_mean_lo/hi`` and ``others_worst_lo/hi`` the stratified bootstrap
        (:func:`~salve_utils.study.stats.interval`) of the other classes' mean and minimum.
        """
        names = list(classes) if classes is not None else list(range(len(self.accuracy)))
        others = _others(self.accuracy, self.counts, self.target)
        acc, n = self.accuracy[others], self.counts[others]
        lo, hi = accuracy_interval(float(self.accuracy[self.target]), int(self.counts[self.target]), level)
        mean_lo, mean_hi = interval(acc, n, np.mean, level)
        worst_lo, worst_hi = interval(acc, n, np.min, level)
        return {"class": names[self.target], "method": self.method, "matched": self.matched,
                "goal_accuracy": self.goal_accuracy, "strength": self.strength,
                "target_accuracy": float(self.accuracy[self.target]), "target_lo": lo, "target_hi": hi,
                "others_mean": float(acc.mean()), "others_mean_lo": mean_lo, "others_mean_hi": mean_hi,
                "others_worst": float(acc.min()), "others_worst_lo": worst_lo, "others_worst_hi": worst_hi,
                "worst_class": names[int(others[np.argmin(acc)])], "edit_size": self.edit_size}


def match_efficacy(method: HeadEdit, acts: torch.Tensor, labels: torch.Tensor, goal_accuracy: float,
                   strengths: Sequence[float] | np.ndarray | None = None, n_grid: int = 41,
                   iterations: int = 12) -> Match:
    """The smallest strength at which the target's accuracy falls to ``goal_accuracy`` or below.

    ``s* = min { s : acc_t(s) <= goal }``, searched on a grid (``strengths``, by
    default ``n_grid`` points spanning the method's range), then refined by
    ``iterations`` bisection steps inside the grid cell ``(s_{i-1}, s_i]`` where
    the accuracy first reaches the goal, keeping ``acc_t(hi) <= goal < acc_t(lo)``.
    A dip between two grid points that the grid misses is not found (the search
    is exact only where ``acc_t`` is monotone). When no grid point reaches the goal
    the match is "not reached" (``matched=False``) and reports the grid's lowest
    target accuracy instead.

    Examples
    --------
    >>> from salve_utils.study.baselines import ZeroRow
    >>> x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]); y = torch.tensor([0, 0, 1])
    >>> W, b = torch.tensor([[1.0, 0.0], [0.5, 1.0]]), torch.tensor([0.0, 0.25])
    >>> # scaling row 0 by (1 - s) loses the first sample for s > 0.25, the second for s > 0.375
    >>> m = match_efficacy(ZeroRow(W, b, 0), x, y, goal_accuracy=0.5, n_grid=3, iterations=20)
    >>> m.matched, round(m.strength, 4), m.accuracy.tolist()
    (True, 0.25, [0.5, 1.0])
    """
    if not (isinstance(goal_accuracy, (int, float)) and 0.0 <= goal_accuracy <= 1.0):
        raise ValueError(f"goal_accuracy must lie in [0, 1], got {goal_accuracy!r}")
    if not (isinstance(n_grid, int) and n_grid >= 2) or not (isinstance(iterations, int) and iterations >= 0):
        raise ValueError(f"n_grid must be an int >= 2 and iterations an int >= 0, got {n_grid!r}, {iterations!r}")
    grid = np.linspace(*method.strength_range, n_grid) if strengths is None else strengths
    labels, grid = _check_inputs(method, acts, labels, grid)
    counts = np.bincount(labels.cpu().numpy(), minlength=method.weight.shape[0])
    curve = tradeoff(method, acts, labels, grid)
    reached = np.flatnonzero(curve["target_accuracy"].to_numpy() <= goal_accuracy)
    if not len(reached):
        s = float(grid[int(curve["target_accuracy"].to_numpy().argmin())])
    elif reached[0] == 0:
        s = float(grid[0])
    else:
        lo, s = float(grid[reached[0] - 1]), float(grid[reached[0]])
        for _ in range(iterations):
            mid = 0.5 * (lo + s)
            if _accuracies(method, acts, labels, mid)[method.target] <= goal_accuracy:
                s = mid
            else:
                lo = mid
    return Match(method.name, method.target, bool(len(reached)), float(goal_accuracy), s,
                 _accuracies(method, acts, labels, s), counts, method.edit_size(s), curve)


def most_specific(table: pd.DataFrame, method: str = "SALVE") -> pd.DataFrame:
    """Per class, whether ``method`` spares the other classes best at matched efficacy.

    Among the methods that reach the goal for a class (``matched``), compare the
    worst-other accuracy and its interval ``[others_worst_lo, others_worst_hi]``:

    * ``"best"``: ``method``'s interval lies above every other matched method's;
    * ``"tied"``: no other method's interval lies above ``method``'s, but some overlap it;
    * ``"worse"``: some other matched method's interval lies entirely above ``method``'s;
    * ``"only"``: ``method`` is the only one that reaches the goal;
    * ``"not matched"``: ``method`` itself does not reach it.

    "Most specific, ties included" is best, tied or only.

    Returns
    -------
    DataFrame ``class, verdict, runner_up`` (the other matched method with the highest worst-other accuracy).
    """
    need = {"class", "method", "matched", "others_worst", "others_worst_lo", "others_worst_hi"}
    if missing := need - set(table.columns):
        raise ValueError(f"table lacks the columns {sorted(missing)}")
    rows = []
    for cls, sub in table.groupby("class", sort=True):
        own = sub[sub["method"] == method]
        if len(own) != 1:
            raise ValueError(f"class {cls!r}: expected one row of method {method!r}, got {len(own)}")
        own = own.iloc[0]
        rivals = sub[(sub["method"] != method) & sub["matched"].astype(bool)]
        runner_up = rivals.loc[rivals["others_worst"].idxmax(), "method"] if len(rivals) else None
        if not own["matched"]:
            verdict = "not matched"
        elif not len(rivals):
            verdict = "only"
        elif (rivals["others_worst_lo"] > own["others_worst_hi"]).any():
            verdict = "worse"
        elif (rivals["others_worst_hi"] < own["others_worst_lo"]).all():
            verdict = "best"
        else:
            verdict = "tied"
        rows.append({"class": cls, "verdict": verdict, "runner_up": runner_up})
    return pd.DataFrame(rows, columns=["class", "verdict", "runner_up"])


# =========================================================================== the chapter's counts


def never_lowered(goals: pd.DataFrame, curves: pd.DataFrame, tol: float = 1e-9) -> pd.Series:
    """Per class of ``goals``: does SALVE never lower it, its goal not below its unedited accuracy?

    ``never_t = goal_t >= acc_t(0) - tol``, with ``acc_t(0)`` the class's own accuracy at strength 0
    of its dominant feature's suppression curve (the unedited head). Such a class is matched by every
    method at ``s = 0`` and says nothing about specificity: the chapter sets it aside.

    Parameters
    ----------
    goals : :func:`salve_goals` (``class``, ``goal_accuracy``)
    curves : the control chapter's suppression curves (``feature_role, direction, strength, class,
        accuracy``), of one node
    tol : slack for the stored, rounded accuracies

    Returns
    -------
    Boolean Series aligned with ``goals`` (its index), named ``never_lowered``.

    Examples
    --------
    >>> curves = pd.DataFrame({"feature_role": ["dominant:a", "dominant:b"], "direction": "suppress",
    ...                        "strength": 0.0, "class": ["a", "b"], "accuracy": [0.9, 0.5]})
    >>> goals = pd.DataFrame({"class": ["a", "b"], "goal_accuracy": [0.04, 0.5]})
    >>> never_lowered(goals, curves).tolist()
    [False, True]
    """
    if missing := {"class", "goal_accuracy"} - set(goals.columns):
        raise ValueError(f"goals lack the columns {sorted(missing)} (pass salve_goals(...))")
    if missing := {"feature_role", "direction", "strength", "class", "accuracy"} - set(curves.columns):
        raise ValueError(f"curves lack the columns {sorted(missing)}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    unedited = curves[(curves["direction"] == "suppress") & (curves["strength"] == 0)
                      & (curves["feature_role"] == "dominant:" + curves["class"])].set_index("class")["accuracy"]
    if not unedited.index.is_unique:
        raise ValueError("curves hold several unedited rows per class: pass the curves of one node")
    if missing := sorted(set(goals["class"]) - set(unedited.index)):
        raise ValueError(f"curves have no unedited accuracy (strength 0 of 'dominant:<class>') for {missing}")
    never = goals["goal_accuracy"].to_numpy() >= goals["class"].map(unedited).to_numpy() - tol
    return pd.Series(never, index=goals.index, name="never_lowered")


@dataclass(frozen=True)
class SpecificityCounts:
    """What the baselines chapter counts: where each goal comes from, and how often SALVE is the most specific.

    Built by :func:`specificity_counts`.

    Attributes
    ----------
    from_point : classes whose goal is SALVE's operating point
    lowest : classes whose goal is the lowest accuracy of SALVE's sweep (and that SALVE lowers)
    never : classes SALVE never lowers (:func:`never_lowered`): set aside
    judged : how many classes of the verdicts are judged (not set aside)
    verdict_counts : :func:`most_specific` verdict -> number of judged classes, most frequent first
    reached : judged classes where SALVE reaches its goal (verdict other than "not matched")
    most_specific : judged classes where SALVE is the most specific, ties included (best, tied or only)
    clearly_better : per other method (in the order of :data:`METHODS`), the judged classes SALVE reaches
        where that method reaches the goal too and its worst-other interval lies entirely above SALVE's
    at_point : judged classes whose goal is an operating point
    most_specific_at_point : of those, where SALVE is the most specific, ties included
    """

    from_point: list[str]
    lowest: list[str]
    never: list[str]
    judged: int
    verdict_counts: dict[str, int]
    reached: int
    most_specific: int
    clearly_better: dict[str, int]
    at_point: int
    most_specific_at_point: int


def specificity_counts(goals: pd.DataFrame, curves: pd.DataFrame, matched: pd.DataFrame, verdicts: pd.DataFrame,
                       method: str = "SALVE", tol: float = 1e-9) -> SpecificityCounts:
    """Counts of the matched-efficacy comparison, with the classes ``method`` never lowers set aside.

    The judged classes are those of ``verdicts`` that :func:`never_lowered` does not set aside.
    Over them, ``method`` is *the most specific* where its :func:`most_specific` verdict is best,
    tied or only, and another method ``m`` is *clearly better* on class ``t`` where both reach the
    goal and ``lo_m(t) > hi_method(t)`` for the worst other class's bootstrap interval
    ``[others_worst_lo, others_worst_hi]``.

    Parameters
    ----------
    goals : :func:`salve_goals` (``class``, ``goal_accuracy``, ``source``), one row per class compared
    curves : the control chapter's suppression curves of one node (for :func:`never_lowered`)
    matched : the matched-efficacy table, one :meth:`Match.summary` row per class and method
    verdicts : :func:`most_specific` of ``matched`` for ``method``
    method : the method judged
    tol : as in :func:`never_lowered`

    Returns
    -------
    :class:`SpecificityCounts`
    """
    if missing := {"class", "goal_accuracy", "source"} - set(goals.columns):
        raise ValueError(f"goals lack the columns {sorted(missing)} (pass salve_goals(...))")
    if missing := {"class", "method", "matched", "others_worst_lo", "others_worst_hi"} - set(matched.columns):
        raise ValueError(f"matched lacks the columns {sorted(missing)}")
    if missing := {"class", "verdict"} - set(verdicts.columns):
        raise ValueError(f"verdicts lack the columns {sorted(missing)} (pass most_specific(...))")
    own = matched[matched["method"] == method]
    if own.empty or not own["class"].is_unique:
        raise ValueError(f"matched must hold one row of method {method!r} per class; "
                         f"methods: {sorted(matched['method'].unique())}")
    from_point = goals["source"] == "operating point"
    unlowered = never_lowered(goals, curves, tol).to_numpy()
    never = goals.loc[unlowered, "class"].tolist()
    judged = verdicts[~verdicts["class"].isin(never)]
    counts = judged["verdict"].value_counts()
    ties = {"best", "tied", "only"}
    own = own.set_index("class")
    rivals = matched[(matched["method"] != method) & matched["matched"].astype(bool)
                     & matched["class"].isin(judged["class"])]
    clearly = rivals[rivals["others_worst_lo"].to_numpy() > rivals["class"].map(own["others_worst_hi"]).to_numpy()]
    clearly = clearly[clearly["class"].map(own["matched"]).astype(bool)]
    at_point = judged[judged["class"].isin(goals.loc[from_point, "class"])]
    return SpecificityCounts(
        from_point=goals.loc[from_point, "class"].tolist(),
        lowest=goals.loc[~from_point & ~unlowered, "class"].tolist(),
        never=never, judged=len(judged),
        verdict_counts={v: int(n) for v, n in counts.items()},
        reached=int((judged["verdict"] != "not matched").sum()),
        most_specific=int(counts.get("best", 0) + counts.get("tied", 0) + counts.get("only", 0)),
        clearly_better={m: int((clearly["method"] == m).sum())
                        for m in sorted(matched["method"].unique(), key=_method_key) if m != method},
        at_point=len(at_point), most_specific_at_point=int(at_point["verdict"].isin(ties).sum()))
