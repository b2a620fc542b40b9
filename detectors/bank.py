"""`DetectorBank`: the detectors of every live series, as the daemon sees them.

Samples arrive with their label set; the bank finds (once per series) the
first configured detector whose matchers select it, keeps one
`SeriesDetector` per series keyed by its sorted label set, and turns episode
transitions into `AnomalyEvent`s that the pipeline turns into
``MetricAnomaly`` alerts (firing on open, resolved on close).

Cost. `observe` does the cheap per-sample work (one feature row, one model
score). The refits are the heavy part. With ``refit="inline"`` they run in
`observe` (simple, deterministic; fine for replay and tests). With
``refit="deferred"`` `observe` never fits: the owner calls
`pending_refits()`, which returns `RefitJob`s (plain callables over copies
of the data), runs them off the event loop and hands each result back with
`complete`::

    for job in bank.pending_refits(limit=64):
        fitted = await loop.run_in_executor(pool, job)
        bank.complete(job, fitted)

Until then the series keeps scoring with its previous model; a series that
has no model yet scores 0 and cannot alert. A fit that raises there or in
`observe` is the series' failure, not the bank's: `observe` logs it and
counts it for `take_fit_failures` (the owner's refit-failure metric).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import structlog

from detectors.spec import DEFAULT_SPEC, DetectorSpec
from rules.matchers import matches_all

log = structlog.get_logger("incidentd.detectors")

if TYPE_CHECKING:  # numpy and PyOD load with the first series a detector selects
    from detectors.model import FittedModel
    from detectors.series import SeriesDetector

ALERTNAME = "MetricAnomaly"

SeriesKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class AnomalyEvent:
    """An anomaly episode of one series opened or closed at ``at`` (epoch seconds)."""

    transition: Literal["open", "close"]
    detector: str
    labels: Mapping[str, str]
    at: float
    value: float
    score: float
    expected_low: float | None
    expected_high: float | None

    def alert_labels(self) -> dict[str, str]:
        """``alertname=MetricAnomaly`` plus the series labels.

        ``__name__`` becomes ``metric``: labels starting with ``__`` are
        reserved in Prometheus and Alertmanager and would be dropped.
        """
        labels = {("metric" if k == "__name__" else k): v for k, v in self.labels.items()}
        labels["alertname"] = ALERTNAME
        labels.setdefault("detector", self.detector)
        return labels

    def alert_annotations(self) -> dict[str, str]:
        notes = {"score": f"{self.score:.4f}", "value": f"{self.value:g}"}
        if self.expected_low is not None and self.expected_high is not None:
            notes["expected_low"] = f"{self.expected_low:g}"
            notes["expected_high"] = f"{self.expected_high:g}"
            notes["summary"] = (
                f"{self.labels.get('__name__', 'series')} = {self.value:g}, expected "
                f"{self.expected_low:g} .. {self.expected_high:g} (anomaly score {self.score:.3f})"
            )
        return notes


@dataclass(frozen=True, slots=True)
class RefitJob:
    """A refit of one series, runnable anywhere: ``fitted = job()``."""

    key: SeriesKey
    detector: SeriesDetector = field(repr=False)
    run: object = field(repr=False)

    def __call__(self) -> FittedModel | None:
        return self.run()  # type: ignore[operator]


@dataclass(slots=True)
class _Entry:
    spec: DetectorSpec
    detector: SeriesDetector | None
    last_seen: float


class DetectorBank:
    """Per-series detector state for many series."""

    def __init__(
        self,
        specs: Sequence[DetectorSpec] = (),
        refit: Literal["inline", "deferred"] = "inline",
    ) -> None:
        if refit not in ("inline", "deferred"):
            raise ValueError(f"refit: expected 'inline' or 'deferred', got {refit!r}")
        self.specs: tuple[DetectorSpec, ...] = tuple(specs) or (DEFAULT_SPEC,)
        self.inline = refit == "inline"
        self._series: dict[SeriesKey, _Entry] = {}
        self._due: list[RefitJob] = []  # deferred mode: jobs cut when they fell due
        self._fit_failures = 0  # fits in `observe` that raised, since `take_fit_failures`

    def _spec_for(self, labels: Mapping[str, str]) -> DetectorSpec | None:
        for spec in self.specs:
            if matches_all(spec.match, labels):
                return spec
        return None

    def observe(self, labels: Mapping[str, str], ts: float, value: float) -> AnomalyEvent | None:
        """Feed one sample; an event when the series' anomaly episode opens or closes."""
        key: SeriesKey = tuple(sorted(labels.items()))
        entry = self._series.get(key)
        closed = None
        detector = entry.detector if entry is not None else None
        if entry is not None and detector is not None:
            # what `expire` would have done had it run while the series was away
            away = detector.away(ts)
            if away == "gone":
                closed = self._drop(key, ts)
                entry = None
            elif away == "quiet" and detector.end_episode():
                closed = _closed(entry.spec, key, ts)
        if entry is None:
            spec = self._spec_for(labels)
            # Series no detector selects are remembered too (detector None),
            # so that matching runs once per series, not once per sample.
            detector = None
            if spec is not None:
                from detectors.series import SeriesDetector

                detector = SeriesDetector(spec, inline_refit=self.inline)
            entry = _Entry(spec or DEFAULT_SPEC, detector, ts)
            self._series[key] = entry
        entry.last_seen = max(entry.last_seen, ts)
        det = entry.detector
        if det is None:
            return None
        failures = det.fit_failures
        if not self.inline and det.refit_due():
            if det.has_model:
                # Cut the training data now, at the sample where the schedule asks for
                # it, as inline refits do: samples arriving in bulk must not move the cut.
                self._due.append(RefitJob(key, det, det.refit_job()))  # scored meanwhile
            else:
                # the first model: without one nothing can be scored, so the samples
                # of a burst (a backfill) would all pass unseen while it is fitted
                # elsewhere; fitted here, they are scored as `detect` scores them
                det.fit()
        d = det.update(ts, value)  # inline: refits here when due
        if det.fit_failures != failures:
            self._fit_failures += det.fit_failures - failures
            log.warning("model fit failed; the series keeps its previous model, if any",
                        detector=entry.spec.name, series=dict(key), model=entry.spec.model,
                        error=det.fit_error, retry_in_samples=entry.spec.refit_every)
        if d.transition is None:
            return closed
        return AnomalyEvent(d.transition, entry.spec.name, dict(labels), ts, value, d.score,
                            d.expected_low, d.expected_high)

    def take_fit_failures(self) -> int:
        """Fits in `observe` that raised since the last call."""
        n, self._fit_failures = self._fit_failures, 0
        return n

    def pending_refits(self, limit: int | None = None) -> list[RefitJob]:
        """Refits the schedule asks for (deferred mode), marked as under way."""
        take = len(self._due) if limit is None else min(limit, len(self._due))
        jobs, self._due = self._due[:take], self._due[take:]
        for key, entry in self._series.items():
            if limit is not None and len(jobs) >= limit:
                break
            det = entry.detector
            # a series without a model fits its first one in place with its next sample
            # (see `observe`), as `detect` does; cut here, it would be fitted elsewhere
            # while the samples of a burst pass unscored
            if det is not None and det.has_model and det.refit_due():
                jobs.append(RefitJob(key, det, det.refit_job()))
        return jobs

    def complete(self, job: RefitJob, fitted: FittedModel | None) -> None:
        """Install the result of ``job`` (ignored if the series expired meanwhile)."""
        entry = self._series.get(job.key)
        if entry is not None and entry.detector is job.detector:
            job.detector.install(fitted)

    def expire(self, now: float) -> list[AnomalyEvent]:
        """End the episodes of series that went quiet and drop the series that are gone
        (`SeriesDetector.away`; series no detector selects go after ``stale_after``).
        The returned events resolve the ended episodes' alerts, so that a vanished
        series does not page forever.
        """
        closed: list[AnomalyEvent] = []
        gone = []
        for key, e in self._series.items():
            if e.detector is None:
                if now - e.last_seen > e.spec.stale_after:
                    gone.append(key)
                continue
            away = e.detector.away(now)
            if away == "gone":
                gone.append(key)
            elif away == "quiet" and e.detector.end_episode():
                closed.append(_closed(e.spec, key, now))
        closed.extend(event for event in (self._drop(key, now) for key in gone) if event is not None)
        return closed

    def _drop(self, key: SeriesKey, now: float) -> AnomalyEvent | None:
        """Forget a series; the event that closes its open episode, if it has one."""
        entry = self._series.pop(key)
        if entry.detector is not None and entry.detector.end_episode():
            return _closed(entry.spec, key, now)
        return None

    def series_count(self) -> int:
        """Number of series with detector state."""
        return sum(1 for e in self._series.values() if e.detector is not None)


def _closed(spec: DetectorSpec, key: SeriesKey, now: float) -> AnomalyEvent:
    """The event that ends a series' episode because the series went quiet."""
    return AnomalyEvent("close", spec.name, dict(key), now, float("nan"), 0.0, None, None)
