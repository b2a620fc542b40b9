"""`SeriesDetector`: the online detector of one series, sample by sample.

Per sample it appends the value to a ring buffer, scores it with the current
`FittedModel` (features -> PyOD score), turns the score into an anomaly
likelihood against the series' own score history (`ScoreHistory`) and steps
the `EpisodeTracker`, which may not open an episode for a routine burst
(`FittedModel.routine_burst`; the series remembers which of its values
belonged to alarms). Every ``refit_every`` samples the model is refitted on the
last ``window`` values (never including the sample being scored, so that a
point is not its own neighbour). With ``inline_refit`` the refit happens
inside `update`, which makes the output a pure function of the prefix (used
by ``incidentd detect``); otherwise the owner fetches `refit_job`, runs it
where it likes (an executor) and calls `install`, and the series keeps
scoring with its previous model meanwhile. A fit that raises (a model
parameter the series' data does not allow) never leaves `update` or `fit`:
it is counted in `fit_failures`, the series keeps its previous model (or
scores nothing until one fits) and tries again ``refit_every`` samples on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from detectors.calibration import ScoreHistory
from detectors.decision import DecisionParams, EpisodeTracker, Transition, open_probability_for
from detectors.model import EVIDENCE_SPAN, FittedModel, fit_model
from detectors.spec import DetectorSpec

_STEP_HISTORY = 32
# A series is quiet once unseen for its detector's `stale_after` and for this many of
# its own sampling intervals (an hourly series that misses a few hours, or a traffic
# sensor off for a night, is not quiet yet): its open episode ends, so that a series
# that vanished does not keep an alert firing. It keeps its model, which it needs
# when it comes back; only after FORGET_FACTOR times as long is it gone and dropped.
STALE_STEPS = 100
FORGET_FACTOR = 24
# Larger values are ignored like NaN: no metric measures anything this size, and the
# features (differences, deviations) of a value near the float range overflow to
# infinity, which would blind the series' model for a whole window.
MAX_MAGNITUDE = 1e100


@dataclass(frozen=True, slots=True)
class Decision:
    """The detector's verdict on one sample.

    ``score`` is 1 - tail probability, in [0, 1]; ``is_anomaly`` is True while
    an anomaly episode is open; ``transition`` is "open" on the sample that
    opens an episode (the one that raises the alert) and "close" on the one
    that ends it (the alert resolves). ``surprise`` is ``-log10`` of the
    tail probability (0 when there is none), the evidence the decision uses.
    """

    score: float
    is_anomaly: bool
    expected_low: float | None = None
    expected_high: float | None = None
    transition: Transition | None = None
    surprise: float = 0.0


class SeriesDetector:
    """Online anomaly detector of a single series."""

    __slots__ = (
        "spec", "inline_refit", "_ring", "_n", "_last_ts", "_steps", "_fitted",
        "_fitted_at", "_refit_pending", "_tracker", "_scores", "_calm", "_quiet",
        "fit_failures", "fit_error", "_fit_failed",
    )

    def __init__(self, spec: DetectorSpec, inline_refit: bool = True) -> None:
        self.spec = spec
        self.inline_refit = inline_refit
        # Each value is written twice (i and i + window) so that the last
        # `window` values are always one contiguous slice, without copying.
        self._ring = np.zeros(2 * spec.window, dtype=np.float64)
        # Per value, in the same layout: False when it belongs to an alarm.
        self._calm = np.ones(2 * spec.window, dtype=bool)
        self._n = 0
        self._last_ts = -math.inf
        self._steps = np.zeros(_STEP_HISTORY, dtype=np.float64)
        # Online raw scores (out-of-sample), the calibration history.
        self._scores = ScoreHistory(spec.window)
        self._fitted: FittedModel | None = None
        self._fitted_at = 0
        self._refit_pending = False
        # Fits run here (`fit`) that raised, and the last one's error.
        self.fit_failures = 0
        self.fit_error = ""
        self._fit_failed = False  # the last fit raised: the next waits refit_every samples
        self._tracker = EpisodeTracker(DecisionParams(open_probability_for(spec.sensitivity)))
        self._quiet = (-1, 0.0)  # (samples seen, the gap that makes the series quiet)

    @property
    def samples_seen(self) -> int:
        return self._n

    @property
    def has_model(self) -> bool:
        return self._fitted is not None

    @property
    def active(self) -> bool:
        """True while an anomaly episode is open."""
        return self._tracker.active

    def _tail(self) -> np.ndarray:
        w = self.spec.window
        i = self._n % w
        size = min(self._n, w)
        return self._ring[i + w - size : i + w]

    def away(self, ts: float) -> str | None:
        """How long the series has been away at `ts`: None, "quiet" (its owner ends an
        open episode: `end_episode`) or "gone" (its owner drops it and starts anew).
        See `STALE_STEPS`."""
        gap = ts - self._last_ts
        if gap <= self.spec.stale_after:
            return None
        seen, quiet = self._quiet
        if seen != self._n:  # worked out once per sample at most, not at every sweep
            steps = self._steps[: min(self._n - 1, _STEP_HISTORY)]
            quiet = max(self.spec.stale_after, STALE_STEPS * (float(np.median(steps)) if len(steps) else 0.0))
            self._quiet = (self._n, quiet)
        if gap > FORGET_FACTOR * quiet:
            return "gone"
        return "quiet" if gap > quiet else None

    def end_episode(self) -> bool:
        """End the open episode, if there is one (the series went quiet)."""
        was = self._tracker.active
        if was:
            # and no new one on the evidence of before the pause: its end is what the
            # series' owner reports for this sample
            self._tracker.active = False
            self._tracker.calm = 0
            self._tracker.recent.clear()
            self._tracker.since_open = 0
        return was

    def refit_due(self) -> bool:
        """True when the schedule asks for a refit that is not already under way."""
        if self._refit_pending or self._n < max(self.spec.warmup, 1):
            return False
        if self._fitted is None and not self._fit_failed:  # too few values yet: retry at once
            return True
        return self._n - self._fitted_at >= self.spec.refit_every

    def refit_job(self) -> Callable[[], FittedModel | None]:
        """A self-contained callable (copies of the data) that fits the next model."""
        values = self._tail().copy()
        steps = self._steps[: min(self._n - 1, _STEP_HISTORY)]
        step_seconds = float(np.median(steps)) if len(steps) else 0.0
        model, params = self.spec.model, dict(self.spec.params)
        seed = len(self._scores) == 0
        self._refit_pending = True
        self._fitted_at = self._n

        def job() -> FittedModel | None:
            return fit_model(values, step_seconds, model, params, seed)

        return job

    def install(self, fitted: FittedModel | None) -> None:
        """Use ``fitted`` from now on (None: keep the previous model, retry later)."""
        self._refit_pending = False
        if fitted is not None:
            self._fitted = fitted
            self._fit_failed = False
            if len(self._scores) == 0 and fitted.seed_scores is not None:
                self._scores.extend(fitted.seed_scores)

    def fit(self) -> bool:
        """Run the refit that is due here and install it; False if the model raised
        (counted in `fit_failures`, the error in `fit_error`; see the module docstring)."""
        job = self.refit_job()
        try:
            fitted = job()
        except Exception as exc:  # whatever the model says of this series' data
            self._refit_pending = False
            self._fit_failed = True
            self.fit_failures += 1
            self.fit_error = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            return False
        self.install(fitted)
        return True

    def update(self, ts: float, value: float) -> Decision:
        """Score the sample at ``ts`` and step the episode state.

        Samples that are not newer than the previous one, not finite, or beyond
        `MAX_MAGNITUDE` are ignored (the current state is returned unchanged).
        """
        if ts <= self._last_ts or not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:  # also False for NaN
            return Decision(0.0, self._tracker.active)
        if self.inline_refit and self.refit_due():
            self.fit()
        if self._n:
            self._steps[(self._n - 1) % _STEP_HISTORY] = ts - self._last_ts
        self._last_ts = ts
        w = self.spec.window
        i = self._n % w
        self._ring[i] = value
        self._ring[i + w] = value
        self._calm[i] = self._calm[i + w] = not self._tracker.active
        self._n += 1

        fitted = self._fitted
        if fitted is None:
            self._tracker.step(1.0, may_alert=False)
            return Decision(0.0, False)
        tail = self._tail()
        raw = fitted.score(tail)
        p = math.nan
        if not math.isnan(raw):
            self._scores.push(raw)
            p = self._scores.tail_probability()
        may_alert = self._n > self.spec.warmup
        if (may_alert and not self._tracker.active and p < self._tracker.params.open_probability
                and fitted.routine_burst(tail, self._calm[i + w + 1 - len(tail) : i + w + 1])):
            may_alert = False
        transition = self._tracker.step(p, may_alert=may_alert)
        if transition == "open":
            # The values that built up the evidence belong to the alarm too.
            for j in range(i - EVIDENCE_SPAN + 1, i + 1):
                self._calm[j % w] = self._calm[j % w + w] = False
        low, high = fitted.expected_range(tail)
        score = 0.0 if math.isnan(p) else min(1.0, max(0.0, 1.0 - p))
        surprise = 0.0 if math.isnan(p) else -math.log10(max(p, 1e-300))
        return Decision(score, self._tracker.active, low, high, transition, surprise)
