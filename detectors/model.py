"""The PyOD outlier model of one series, refitted on a rolling training window.

`fit_model` is a pure function from a snapshot of the series (its recent
values and sampling interval) to a `FittedModel`: detect the cycle, build the
feature rows, fit the robust scaler and fit the PyOD detector. Being pure and taking only plain arrays, it can
run inline, in a thread or process pool, or in a batch of many series, and
the series keeps scoring with its previous `FittedModel` until the new one
is installed.

Scoring one sample (`FittedModel.score`) only builds one feature row and asks
the fitted detector for its score: the cheap part of the work.

Calibration (`detectors.calibration`) uses out-of-sample scores only.
Window features are strongly autocorrelated, so in the training set an
unusual stretch is its own neighbourhood and looks normal; a fresh stretch
like it does not. The series' history of online scores (each given by the
model current at its time) is the reference. A series that has no history
yet gets ``seed_scores`` from its first fit: a time split of the window (fit
on the older half, score the newer half), so it can alert soon after its
first fit instead of waiting for a history to build up.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.features import RobustScaler, detect_period, feature_matrix, feature_row

# name -> (module, class, default parameters). KNN is the default (see
# DetectorSpec); the others are offered for experiments and special series.
MODELS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "knn": ("pyod.models.knn", "KNN", {"n_neighbors": 10, "method": "mean"}),
    "hbos": ("pyod.models.hbos", "HBOS", {}),
    "ecod": ("pyod.models.ecod", "ECOD", {}),
    "copod": ("pyod.models.copod", "COPOD", {}),
    "iforest": ("pyod.models.iforest", "IForest", {"n_estimators": 50, "random_state": 0}),
    "loda": ("pyod.models.loda", "LODA", {}),
    "lof": ("pyod.models.lof", "LOF", {"n_neighbors": 20}),
}

MIN_TRAINING_ROWS = 50
# Quantiles of the training features that bound the "expected range".
_RANGE_Q = (0.005, 0.995)


def make_detector(name: str, params: Mapping[str, Any] | None = None) -> Any:
    """A fresh, unfitted PyOD detector; pyod is imported only when needed."""
    try:
        module, cls, defaults = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})") from None
    kwargs = {**defaults, **dict(params or {})}
    return getattr(importlib.import_module(module), cls)(**kwargs)


@dataclass(frozen=True, slots=True)
class FittedModel:
    """Everything needed to score new samples of one series until the next refit."""

    period: int
    scaler: RobustScaler
    detector: Any
    level_range: tuple[float, float]
    seasonal_range: tuple[float, float] | None
    seed_scores: np.ndarray | None = None

    def score(self, tail: np.ndarray) -> float:
        """Raw outlier score of the newest value of ``tail`` (NaN if too short)."""
        row = feature_row(tail, self.period)
        if not np.all(np.isfinite(row)):
            return float("nan")
        return float(self.detector.decision_function(self.scaler.transform(row)[None, :])[0])

    def expected_range(self, tail: np.ndarray) -> tuple[float, float]:
        """Values the series took in training, around its one-period-ago level if seasonal."""
        if self.seasonal_range is not None and len(tail) > self.period + 2:
            ref = float(np.mean(tail[-self.period - 3 : -self.period]))
            return ref + self.seasonal_range[0], ref + self.seasonal_range[1]
        return self.level_range


def fit_model(
    values: np.ndarray,
    step_seconds: float,
    model: str = "knn",
    params: Mapping[str, Any] | None = None,
    seed: bool = False,
) -> FittedModel | None:
    """Fit on a chronological window of values; None if it is too short to learn from.

    With ``seed`` the result carries out-of-sample ``seed_scores`` for a
    series that has no score history yet.
    """
    x = np.asarray(values, dtype=float)
    period = detect_period(x, step_seconds, max_lag=len(x) // 2)
    rows = feature_matrix(x, period)
    rows = rows[np.all(np.isfinite(rows), axis=1)]
    if len(rows) < MIN_TRAINING_ROWS:
        return None
    scaler = RobustScaler.fit(rows)
    z = scaler.transform(rows)
    detector = make_detector(model, params)
    detector.fit(z)
    seed_scores = None
    if seed:
        half = len(z) // 2
        early = make_detector(model, params)
        early.fit(z[:half])
        seed_scores = np.asarray(early.decision_function(z[half:]), dtype=float)
    lo, hi = np.quantile(rows[:, 0], _RANGE_Q)
    seasonal_range = None
    if period:
        s_lo, s_hi = np.quantile(rows[:, -1], _RANGE_Q)
        seasonal_range = (float(s_lo), float(s_hi))
    return FittedModel(
        period=period,
        scaler=scaler,
        detector=detector,
        level_range=(float(lo), float(hi)),
        seasonal_range=seasonal_range,
        seed_scores=seed_scores,
    )
