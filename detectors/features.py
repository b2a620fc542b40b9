"""Window features of a series, robust-normalised: what the outlier model sees.

A raw value says little on its own: metric series differ in scale, trend,
noise and daily rhythm, and many anomalies are a change of pattern (a
flattened cycle, a burst of jitter, a stuck value) rather than a value out
of range. Each sample is therefore described by the recent window that ends
at it:

- ``lag0 .. lag{SPAN-1}``: the last ``SPAN`` values. As a point in a
  ``SPAN``-dimensional space the window carries both its level and its
  shape, so the nearest-neighbour model asks "has the series looked like
  this recently?", not only "has it been this high?";
- ``seasonal`` (only when the series has a daily or weekly cycle): the mean
  of the last ``LEVEL_SPAN`` values minus the same mean one period earlier,
  so that the usual evening peak is not an anomaly but a missing one is.

Measured on NAB with the same calibration and decision logic: level +
first difference + the 6-sample window minus its mean scored 61 (standard,
best level) and 54 leave-one-category-out, against 63 and 61 for the plain
window; windows of 4, 12 or 16 values, or an extra 32-sample mean, scored
no better than 8. A log transform of non-negative series with a skewness
above 2 (counts, rates) scored 56.6 leave-one-category-out, 59.3 when also
required to bring the skewness below 1, against 60.7 without (same
decision settings, refractory 200).
With the decision settings before the routine-burst rule (against
68.3 / 58.3 leave-one-category-out): the variance-stabilising square root
``2 sqrt(x + 3/8)`` of non-negative integer series (counts), 64.7 / 53.1;
``log1p`` of them, 60.6 / 52.3; a scale no smaller than the 5-95 %
range over 3.29 (for series idling at a floor with rare bursts, where
the MAD measures only the floor's jitter), 64.0 / 53.9; the 10-90 %
range, 63.3 / 52.7; the 1-99 % range, 52.1 / 42.0.

`feature_matrix` computes the rows for a whole window at once (for
training) and `feature_row` for the newest sample; the latter calls the
former on the tail of the window, so the two can never disagree.
`RobustScaler` puts every feature on a median/MAD scale fitted on the
training window, so the model's distances mean "how many typical
deviations", whatever the metric's unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPAN = 8
LEVEL_SPAN = 3
DAY_SECONDS = 86400.0
# Autocorrelation at the candidate lag above which a cycle is used.
SEASONAL_MIN_ACF = 0.5


def lookback(period: int) -> int:
    """Number of past values (including the newest) one feature row needs."""
    return SPAN if not period else period + max(SPAN, LEVEL_SPAN)


def _trailing_mean(x: np.ndarray, span: int) -> np.ndarray:
    """Mean of x[i-span+1..i] for every i >= span-1 (NaN before)."""
    out = np.full(x.shape, np.nan)
    if len(x) >= span:
        c = np.concatenate(([0.0], np.cumsum(x)))
        out[span - 1 :] = (c[span:] - c[:-span]) / span
    return out


def feature_matrix(x: np.ndarray, period: int = 0) -> np.ndarray:
    """Feature rows for every index of ``x``; rows without enough history are NaN.

    Columns: the value, the ``SPAN - 1`` previous values and, when
    ``period`` > 0, the seasonal difference of the level.
    """
    x = np.asarray(x, dtype=float)
    n = len(x)
    cols = []
    for j in range(SPAN):
        col = np.full(n, np.nan)
        col[j:] = x[: n - j]
        cols.append(col)
    if period:
        level = _trailing_mean(x, LEVEL_SPAN)
        seasonal = np.full(n, np.nan)
        if n > period:
            seasonal[period:] = level[period:] - level[:-period]
        cols.append(seasonal)
    return np.column_stack(cols)


def feature_row(tail: np.ndarray, period: int = 0) -> np.ndarray:
    """Features of the newest value of ``tail`` (at least `lookback(period)` values)."""
    return feature_matrix(tail[-lookback(period) :], period)[-1]


def detect_period(x: np.ndarray, step_seconds: float, max_lag: int) -> int:
    """The daily or weekly cycle of ``x`` in samples, or 0 when there is none.

    A candidate lag (one day, one week at the sampling interval) is kept when
    the autocorrelation of the series at that lag is high; the strongest one
    wins. Needs at least two cycles in ``x``.
    """
    if step_seconds <= 0 or not np.isfinite(step_seconds):
        return 0
    best, best_acf = 0, SEASONAL_MIN_ACF
    for days in (1, 7):
        lag = int(round(days * DAY_SECONDS / step_seconds))
        if lag < 4 or lag > max_lag or 2 * lag > len(x):
            continue
        a, b = x[lag:], x[:-lag]
        a = a - a.mean()
        b = b - b.mean()
        denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
        if denom <= 0:
            continue
        acf = float((a * b).sum() / denom)
        if acf > best_acf:
            best, best_acf = lag, acf
    return best


@dataclass(frozen=True, slots=True)
class RobustScaler:
    """Per-feature centre (median) and scale (1.4826 * MAD, with fallbacks)."""

    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray) -> RobustScaler:
        center = np.median(rows, axis=0)
        mad = 1.4826 * np.median(np.abs(rows - center), axis=0)
        # A feature that is mostly constant (idle counters, quantised gauges)
        # has MAD 0: fall back to its mean absolute deviation, then to 1.
        mean_dev = np.mean(np.abs(rows - center), axis=0)
        scale = np.where(mad > 1e-12, mad, np.where(mean_dev > 1e-12, mean_dev, 1.0))
        return cls(center=center, scale=scale)

    def transform(self, rows: np.ndarray) -> np.ndarray:
        return (rows - self.center) / self.scale
