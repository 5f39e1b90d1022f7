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

A *change* of accuracy (edited minus unedited) is uncertain at both ends: the
unedited accuracy is measured on the same finite images. :func:`change_interval`
bootstraps both, ``K_after ~ Binomial(n, p_after)`` and ``K_before ~ Binomial(n,
p_before)`` drawn independently (conservative: the images are the same, so the
paired difference varies less), exactly, by convolving the two distributions. An
edit that takes a class from 83% to 0% therefore keeps the unedited accuracy's
uncertainty instead of a zero-width interval:

>>> lo, hi = change_interval(0.833, 0.0, 390)
>>> round(lo, 3), round(hi, 3)
(-0.869, -0.795)
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from scipy.stats import binom

__all__ = ["accuracy_interval", "add_intervals", "change_interval", "interval", "format_interval", "loss_interval"]


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


def _change_quantiles(p_before: float, p_after: float, n: int, q: float) -> tuple[float, float]:
    k = np.arange(n + 1)
    dist = np.convolve(binom.pmf(k, n, p_after), binom.pmf(k, n, p_before)[::-1])  # of K_after - K_before + n
    cdf = np.cumsum(dist)
    lo = int(np.searchsorted(cdf, q - 1e-12)) - n  # the percentile bootstrap's quantiles, as accuracy_interval
    hi = int(np.searchsorted(cdf, 1 - q - 1e-12)) - n
    return lo / n, hi / n


def change_interval(before: float | np.ndarray, after: float | np.ndarray, n: int | np.ndarray,
                    level: float = 0.95) -> tuple[float | np.ndarray, float | np.ndarray]:
    """Exact bootstrap interval of a change of accuracy ``after − before`` on ``n`` images, both ends resampled.

    ``K_a ~ Binomial(n, after)`` and ``K_b ~ Binomial(n, before)`` independently; the
    interval is the ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of ``(K_a − K_b)/n``
    (elementwise over arrays). It has zero width only when both accuracies are 0 or 1.

    >>> change_interval(0.5, 0.5, 400)[0] < 0 < change_interval(0.5, 0.5, 400)[1]
    True
    >>> change_interval(1.0, 0.0, 50)
    (-1.0, -1.0)
    """
    b, a = np.broadcast_arrays(np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64))
    size = np.broadcast_to(np.asarray(n, dtype=np.int64), b.shape)
    _check(a, size, level)
    _check(b, size, level)
    q = (1 - level) / 2
    memo: dict[tuple[float, float, int], tuple[float, float]] = {}
    lo, hi = np.empty(b.shape), np.empty(b.shape)
    for i in np.ndindex(b.shape):
        key = (float(b[i]), float(a[i]), int(size[i]))
        if key not in memo:
            memo[key] = _change_quantiles(*key, q)
        lo[i], hi[i] = memo[key]
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


def loss_interval(before: np.ndarray, after: np.ndarray, n: np.ndarray, statistic: Callable = np.mean,
                  level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Stratified bootstrap interval of ``statistic`` of the classes' losses ``before − after``, both resampled.

    As :func:`interval`, with every class's unedited accuracy redrawn as well
    (``K_b ~ Binomial(n_c, before_c)``, independently of ``K_a``), so the interval keeps
    the uncertainty of the baseline.

    >>> lo, hi = loss_interval(np.array([0.9, 0.8]), np.array([0.9, 0.8]), np.array([400, 400]))
    >>> bool(lo < 0 < hi)
    True
    """
    b, a, size = (np.asarray(x, dtype=np.float64) for x in (before, after, n))
    size = size.astype(np.int64)
    _check(a, size, level)
    _check(b, size, level)
    if not (a.shape == b.shape == size.shape) or a.ndim != 1 or not len(a):
        raise ValueError("before, after and n must be 1-d arrays of the same, non-zero length")
    rng = np.random.default_rng(seed)
    draws_a = rng.binomial(size, a, size=(n_boot, len(a))) / size
    draws_b = rng.binomial(size, b, size=(n_boot, len(b))) / size
    stats = statistic(draws_b - draws_a, axis=-1)
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
