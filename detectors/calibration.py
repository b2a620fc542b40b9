"""Calibration of raw outlier scores to a tail probability against the series' own history.

Raw PyOD scores have no common unit: a KNN distance of 3 may be routine on
one series and unheard of on another. The calibrator turns a raw score into
the probability that the series' own recent behaviour produces a score at
least that high:

- below the ``TAIL_QUANTILE`` of the training scores, the empirical tail
  fraction (a lookup in the sorted training scores);
- above it, an exponential tail fitted to the excesses (the peaks-over-
  threshold idea of extreme value theory, as in SPOT), so that "twice as far
  out as anything seen" still gets a smaller probability than "just beyond
  the largest score seen" instead of saturating at 1/n.

The calibrated score shown to users is ``1 - p``, in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TAIL_QUANTILE = 0.9


@dataclass(frozen=True, slots=True)
class TailCalibrator:
    """Maps a raw score to its tail probability under the training scores."""

    sorted_scores: np.ndarray
    threshold: float
    mean_excess: float

    @classmethod
    def fit(cls, scores: np.ndarray) -> TailCalibrator:
        s = np.sort(np.asarray(scores, dtype=float))
        u = float(np.quantile(s, TAIL_QUANTILE))
        excess = s[s > u] - u
        spread = float(s[-1] - s[0])
        mean_excess = float(excess.mean()) if len(excess) else 0.0
        # Guard a degenerate tail (ties, constant scores): use a small part
        # of the score range, or an absolute floor when there is no range.
        mean_excess = max(mean_excess, 1e-3 * spread, 1e-9)
        return cls(sorted_scores=s, threshold=u, mean_excess=mean_excess)

    def tail_probability(self, score: float) -> float:
        """P(a training-like score >= ``score``), in (0, 1]."""
        if not math.isfinite(score):
            return 1.0 if math.isnan(score) else 0.0
        n = len(self.sorted_scores)
        if score <= self.threshold:
            above = n - int(np.searchsorted(self.sorted_scores, score, side="left"))
            return max(above, 1) / n
        return (1.0 - TAIL_QUANTILE) * math.exp(-(score - self.threshold) / self.mean_excess)
