"""Uncertainty of accuracies: bootstrap intervals over the validation images.

Every accuracy in the report is a share of ``n`` validation images of a class. Resampling
those images with replacement (the bootstrap) makes the number correct ``k* ~
Binomial(n, k/n)``, so the percentile bootstrap interval of one class's accuracy is
the pair of binomial quantiles — computed exactly here, with no resampling noise:

    lo = F⁻¹(q/2; n, p) / n,   hi = F⁻¹(1 − q/2; n, p) / n,   p = k/n,  q = 1 − level.

A statistic over several classes (the mean or the worst of the *other* classes)
resamples each class's images on its own (a stratified bootstrap): :func:`interval`
draws ``k*_c ~ Binomial(n_c, p_c)`` for every class, applies the statistic to each
draw and returns its percentiles. The draws are seeded, so the same table gives the
same interval.

>>> lo, hi = accuracy_interval(0.5, 400)
>>> round(lo, 3), round(hi, 3)
(0.45, 0.55)
>>> accuracy_interval(0.0, 390)  # no image left: the interval collapses onto 0
(0.0, 0.0)
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from scipy.stats import binom

__all__ = ["accuracy_interval", "add_intervals", "interval", "format_interval"]


def _check(accuracy: np.ndarray, n: np.ndarray, level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if np.any(n < 1):
        raise ValueError("every accuracy needs n ≥ 1 images")
    if np.any((accuracy < 0) | (accuracy > 1)) or np.any(~np.isfinite(accuracy)):
        raise ValueError("accuracies must lie in [0, 1]")


def accuracy_interval(accuracy: float | np.ndarray, n: int | np.ndarray,
                      level: float = 0.95) -> tuple[float | np.ndarray, float | np.ndarray]:
    """The exact percentile-bootstrap interval of accuracies measured on ``n`` images (elementwise).

    Parameters
    ----------
    accuracy : share correct, in [0, 1] (scalar or array)
    n : images behind each accuracy (≥ 1)
    level : coverage of the interval

    Returns
    -------
    (lo, hi) : arrays (floats for scalar input)
    """
    acc, size = np.asarray(accuracy, dtype=np.float64), np.asarray(n, dtype=np.int64)
    _check(acc, size, level)
    q = (1 - level) / 2
    lo, hi = binom.ppf(q, size, acc) / size, binom.ppf(1 - q, size, acc) / size
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


def interval(accuracy: np.ndarray, n: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray] = np.mean,
             level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Stratified bootstrap interval of ``statistic`` over several classes' accuracies.

    Each draw resamples every class's images: ``k*_c ~ Binomial(n_c, p_c)``; the
    statistic (applied along the last axis, e.g. ``np.mean`` or ``np.min``) of the
    redrawn accuracies gives the bootstrap distribution, whose percentiles are returned.

    >>> lo, hi = interval(np.array([0.9, 0.8]), np.array([400, 400]), np.min)
    >>> bool(lo < 0.8 < hi)
    True
    """
    acc, size = np.asarray(accuracy, dtype=np.float64), np.asarray(n, dtype=np.int64)
    _check(acc, size, level)
    if acc.shape != size.shape or acc.ndim != 1 or not len(acc):
        raise ValueError("accuracy and n must be 1-d arrays of the same, non-zero length")
    rng = np.random.default_rng(seed)
    draws = rng.binomial(size, acc, size=(n_boot, len(acc))) / size
    stats = statistic(draws, axis=-1)
    q = (1 - level) / 2
    return float(np.quantile(stats, q)), float(np.quantile(stats, 1 - q))


def add_intervals(table: pd.DataFrame, column: str = "accuracy", n: str = "n", level: float = 0.95) -> pd.DataFrame:
    """A copy of ``table`` with ``<column>_lo`` and ``<column>_hi``: each row's bootstrap interval.

    >>> add_intervals(pd.DataFrame({"accuracy": [0.5], "n": [400]})).round(3).to_dict("records")
    [{'accuracy': 0.5, 'n': 400, 'accuracy_lo': 0.45, 'accuracy_hi': 0.55}]
    """
    out = table.copy()
    lo, hi = accuracy_interval(out[column].to_numpy(), out[n].to_numpy(), level)
    out[f"{column}_lo"], out[f"{column}_hi"] = lo, hi
    return out


def format_interval(value: float, lo: float, hi: float, fmt: str = "{:.1%}") -> str:
    """``"12.3% [9.1%, 15.8%]"`` — a value with its interval, for tables and prose.

    >>> format_interval(0.5, 0.45, 0.55)
    '50.0% [45.0%, 55.0%]'
    """
    return f"{fmt.format(value)} [{fmt.format(lo)}, {fmt.format(hi)}]"
