"""The detectors inside the daemon: samples in, ``MetricAnomaly`` alerts out.

`DetectorPart` is the pipeline's ``samples`` component. It keeps one
`DetectorBank` for the samples posted to ``/api/v1/samples`` (and replayed
``sample`` events) and one per PromQL detector (fed by the Prometheus
source). An anomaly episode that opens becomes a firing alert
(``alertname="MetricAnomaly"``, the series labels, the score and the expected
range in annotations) that goes through the pipeline like any alert; the
episode closing, or the series going stale, resolves it. Every anomaly is
recorded in the ``anomalies`` table (``GET /api/v1/anomalies``, the replay
result's ``anomalies`` section).

Two ways to run, one code path:

- Replay and tests (the default): everything inline and deterministic;
  `observe` returns the alerts of the samples it was given, `tick` expires
  stale series.
- The daemon (after `start`): scoring costs about a third of a millisecond
  per sample and a refit a few milliseconds per series, too much for the
  event loop. `observe` only queues the samples; one detector thread owns
  the banks and scores them in chunks, refits run in a second thread
  (`DetectorBank.pending_refits`) and are installed by the detector thread.
  The alerts come back to the pipeline through `tick` (the daemon's timer
  loop calls it within a second; `next_deadline` says they are due).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from daemon.model import Alert, fingerprint
from daemon.store import Writes, register_schema
from detectors.bank import AnomalyEvent, DetectorBank, RefitJob
from detectors.config import DetectorSettings

if TYPE_CHECKING:
    from aiohttp import web

    from daemon.app import Daemon
    from daemon.clock import Clock
    from daemon.metrics import Metrics
    from daemon.store import Store
    from detectors.prometheus import PrometheusSource

log = structlog.get_logger("incidentd.detectors")

SAMPLES = ""  # the bank key of posted and replayed samples; PromQL detectors use their name
CHUNK = 512  # samples scored per trip to the detector thread (~0.2 s of work)
MAX_BACKLOG = 200_000  # samples waiting to be scored; past this the oldest are dropped
REFITS_PER_CHUNK = 64
SEVERITY = "warning"  # MetricAnomaly alerts without a severity label get this one

SCHEMA = """
CREATE TABLE IF NOT EXISTS anomalies (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    detector TEXT NOT NULL,
    at REAL NOT NULL,
    resolved_at REAL,
    score REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS anomalies_by_at ON anomalies (at);
CREATE INDEX IF NOT EXISTS anomalies_open_by_fingerprint ON anomalies (fingerprint)
    WHERE resolved_at IS NULL;
"""
register_schema("detectors", SCHEMA)

_INSERT = "INSERT INTO anomalies (fingerprint, detector, at, score, doc) VALUES (?,?,?,?,?)"
_RESOLVE = "UPDATE anomalies SET resolved_at=? WHERE fingerprint=? AND resolved_at IS NULL"

Item = tuple[str, dict[str, str], float, float]  # bank key, labels, at, value


class DetectorMetrics:
    """The detectors' metrics, on the daemon's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.series = Gauge(
            "incidentd_detector_series", "Series with detector state.", registry=registry)
        self.scored = Counter(
            "incidentd_detector_samples_scored_total",
            "Samples scored by a detector (samples no detector selects are not counted).",
            registry=registry)
        self.dropped = Counter(
            "incidentd_detector_samples_dropped_total",
            "Samples dropped unscored because the detector backlog was full.", registry=registry)
        self.backlog = Gauge(
            "incidentd_detector_backlog_samples", "Samples waiting to be scored.", registry=registry)
        self.anomalies = Counter(
            "incidentd_detector_anomalies_total", "Anomalies raised, by detector.",
            ["detector"], registry=registry)
        self.refit_seconds = Histogram(
            "incidentd_detector_refit_duration_seconds", "Time to refit one series' model.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry)
        self.refits_in_flight = Gauge(
            "incidentd_detector_refits_in_flight", "Refits queued or running in the refit thread.",
            registry=registry)
        self.refit_failures = Counter(
            "incidentd_detector_refit_failures_total",
            "Model fits and refits that raised (the series keeps its previous model,"
            " or scores nothing until one fits).", registry=registry)
        self.chunk_seconds = Histogram(
            "incidentd_detector_scoring_duration_seconds",
            "Time to score one chunk of samples in the detector thread.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=registry)


class DetectorPart:
    """The detectors' share of the daemon (see the module docstring)."""

    name = "detectors"

    def __init__(self, settings: DetectorSettings, clock: Clock, metrics: Metrics,
                 store: Store | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store
        self.registry = metrics.registry
        self.metrics = DetectorMetrics(metrics.registry)
        self._alerts_received = metrics.alerts_received.labels("detector", "accepted")
        self.banks = self._make_banks("inline")
        self.live = False
        self._observed = 0
        self._writes: list[tuple[str, tuple[Any, ...]]] = []
        self._open: dict[str, tuple[dict[str, str], float]] = {}  # fingerprint -> annotations, start
        # Stale series are dropped by a sweep every quarter of the shortest stale_after.
        stale = [s.stale_after for s in (*settings.sample_specs, *settings.query_specs)] or [3600.0]
        self.sweep_every = min(300.0, max(1.0, min(stale) / 4))
        self._max_stale = max(stale)
        self._next_sweep: float | None = None
        self._last_input = -math.inf
        self._tracking = False  # series with detector state at the last sweep
        # Live mode: the queue to the detector thread and the alerts coming back.
        self._backlog: deque[Item] = deque()
        self._expire_at: float | None = None
        self._ready: list[Alert] = []
        self._ready_at: float | None = None
        self._wake: asyncio.Event | None = None
        self._scorer: asyncio.Task | None = None
        self._refits: set[asyncio.Task] = set()
        self._thread: ThreadPoolExecutor | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.source: PrometheusSource | None = None

    def _make_banks(self, refit: str) -> dict[str, DetectorBank]:
        banks: dict[str, DetectorBank] = {}
        if self.settings.sample_specs:
            banks[SAMPLES] = DetectorBank(self.settings.sample_specs, refit=refit)  # type: ignore[arg-type]
        for spec in self.settings.query_specs:
            banks[spec.name] = DetectorBank([spec], refit=refit)  # type: ignore[arg-type]
        return banks

    # -- input ------------------------------------------------------------------

    def observe(self, samples: Sequence[tuple[dict[str, str], float, float]], now: float) -> list[Alert]:
        """Posted or replayed samples; the alerts they raise (none yet when live)."""
        return self._input(SAMPLES, samples, now)

    def observe_query(self, detector: str, samples: Sequence[tuple[dict[str, str], float, float]]) -> None:
        """Samples of a PromQL detector's query (the Prometheus source; live only)."""
        self._input(detector, samples, self.clock.now())

    def _input(self, key: str, samples: Sequence[tuple[dict[str, str], float, float]],
               now: float) -> list[Alert]:
        if not samples or key not in self.banks:
            return []
        self._observed += len(samples)
        self._last_input = now
        if self._next_sweep is None:
            self._next_sweep = now + self.sweep_every
        items = [(key, labels, at, value) for labels, at, value in samples]
        if self.live:
            self._enqueue(items)
            return []
        return self._to_alerts(self._score(items), now)

    def _enqueue(self, items: list[Item]) -> None:
        self._backlog.extend(items)
        overflow = len(self._backlog) - MAX_BACKLOG
        if overflow > 0:
            for _ in range(overflow):
                self._backlog.popleft()
            self.metrics.dropped.inc(overflow)
            log.warning("detector backlog full; oldest samples dropped", dropped=overflow)
        self.metrics.backlog.set(len(self._backlog))
        if self._wake is not None:
            self._wake.set()

    # -- the banks (inline, or in the detector thread when live) ----------------

    def _score(self, items: list[Item]) -> list[AnomalyEvent]:
        events = []
        scored = 0
        for key, labels, at, value in items:
            bank = self.banks.get(key)
            if bank is None:
                continue
            scored += 1
            event = bank.observe(labels, at, value)
            if event is not None:
                events.append(event)
        self.metrics.scored.inc(scored)
        failed = sum(bank.take_fit_failures() for bank in self.banks.values())
        if failed:
            self.metrics.refit_failures.inc(failed)
        return events

    def _expire(self, now: float) -> list[AnomalyEvent]:
        events = []
        for bank in self.banks.values():
            events.extend(bank.expire(now))
        self._count_series()
        return events

    def _count_series(self) -> None:
        count = sum(b.series_count() for b in self.banks.values())
        self.metrics.series.set(count)
        self._tracking = count > 0

    def _work(self, items: list[Item], expire_at: float | None
              ) -> tuple[list[AnomalyEvent], list[tuple[str, RefitJob]]]:
        """One trip to the detector thread: score, expire, collect the refits due."""
        started = time.perf_counter()
        events = self._score(items)
        if expire_at is not None:
            events.extend(self._expire(expire_at))
        jobs = [(key, job) for key, bank in self.banks.items()
                for job in bank.pending_refits(REFITS_PER_CHUNK)]
        self._count_series()
        self.metrics.chunk_seconds.observe(time.perf_counter() - started)
        return events, jobs

    # -- output -----------------------------------------------------------------

    def _to_alerts(self, events: list[AnomalyEvent], now: float) -> list[Alert]:
        alerts = []
        for ev in events:
            labels = ev.alert_labels()
            labels.setdefault("severity", SEVERITY)
            fp = fingerprint(labels)
            if ev.transition == "open":
                notes = ev.alert_annotations()
                self._open[fp] = (notes, ev.at)
                alerts.append(Alert(labels, notes, starts_at=ev.at, ends_at=None, status="firing",
                                    source="detector", received_at=now))
                doc = {"labels": dict(ev.labels), "alert_labels": labels, "annotations": notes,
                       "value": ev.value, "expected_low": ev.expected_low,
                       "expected_high": ev.expected_high}
                self._writes.append((_INSERT, (fp, ev.detector, ev.at, ev.score, json.dumps(doc))))
                self.metrics.anomalies.labels(ev.detector).inc()
            else:
                notes, started = self._open.pop(fp, ({}, None))
                alerts.append(Alert(labels, notes, starts_at=started, ends_at=ev.at,
                                    status="resolved", source="detector", received_at=now))
                self._writes.append((_RESOLVE, (ev.at, fp)))
        if alerts:
            self._alerts_received.inc(len(alerts))
        return alerts

    # -- pipeline component -----------------------------------------------------

    def next_deadline(self) -> float | None:
        if self._ready:
            return self._ready_at
        return self._next_sweep

    def tick(self, now: float) -> list[Alert]:
        """Alerts scored in the detector thread, and the sweep of stale series."""
        out, self._ready, self._ready_at = self._ready, [], None
        if self._next_sweep is not None and now >= self._next_sweep:
            # Sweep while series are kept (a quiet one is dropped only once gone), and
            # until every series seen since could have gone stale.
            active = self._tracking or now - self._last_input <= self._max_stale + self.sweep_every
            self._next_sweep = now + self.sweep_every if active else None
            if self.live:
                self._expire_at = now
                if self._wake is not None:
                    self._wake.set()
            else:
                out.extend(self._to_alerts(self._expire(now), now))
        return out

    def drain_writes(self, writes: Writes) -> None:
        for sql, params in self._writes:
            writes.add(sql, params)
        self._writes.clear()
        if not self.live:  # live: the detector thread owns the banks and counts
            self._count_series()

    # -- the daemon: detector thread, refits, Prometheus source -----------------

    async def start(self) -> None:
        if self._observed == 0:  # nothing scored inline yet: switch to deferred refits
            self.banks = self._make_banks("deferred")
        self.live = True
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="incidentd-detectors")
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="incidentd-refit")
        self._wake = asyncio.Event()
        self._scorer = asyncio.create_task(self._run_scorer(), name="detectors")
        self._close_orphans()
        if self.settings.query_specs and self.settings.prometheus is not None:
            from detectors.prometheus import PrometheusSource

            self.source = PrometheusSource(self.settings.prometheus, self.settings.query_specs,
                                           self.observe_query, self.registry)
            await self.source.start()
        if self._backlog:
            self._wake.set()

    async def stop(self) -> None:
        if self.source is not None:
            await self.source.stop()
        tasks = [t for t in (self._scorer, *self._refits) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pool in (self._pool, self._thread):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def _close_orphans(self) -> None:
        """Resolve the anomaly alerts a previous run left open: detector state is
        not kept across restarts, so nothing else would ever resolve them."""
        if self.store is None:
            return
        now = self.clock.now()
        rows = self.store.query("SELECT fingerprint, at, doc FROM anomalies WHERE resolved_at IS NULL")
        for fp, at, doc in rows:
            d = json.loads(doc)
            self._ready.append(Alert(d["alert_labels"], d.get("annotations", {}), starts_at=at,
                                     ends_at=now, status="resolved", source="detector",
                                     received_at=now))
            self._writes.append((_RESOLVE, (now, fp)))
        if rows:
            self._ready_at = now
            log.info("anomalies of the previous run resolved", count=len(rows))

    async def _run_scorer(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._backlog or self._expire_at is not None:
                n = min(len(self._backlog), CHUNK)
                items = [self._backlog.popleft() for _ in range(n)]
                expire_at, self._expire_at = self._expire_at, None
                self.metrics.backlog.set(len(self._backlog))
                try:
                    events, jobs = await loop.run_in_executor(self._thread, self._work, items, expire_at)
                except Exception:
                    log.exception("scoring a chunk of samples failed; it is skipped", samples=n)
                    continue
                if events:
                    now = self.clock.now()
                    self._ready.extend(self._to_alerts(events, now))
                    if self._ready_at is None:
                        self._ready_at = now
                for key, job in jobs:
                    task = asyncio.create_task(self._refit(key, job))
                    self._refits.add(task)
                    task.add_done_callback(self._refit_done)
                self.metrics.refits_in_flight.set(len(self._refits))

    def _refit_done(self, task: asyncio.Task) -> None:
        self._refits.discard(task)
        self.metrics.refits_in_flight.set(len(self._refits))

    async def _refit(self, key: str, job: RefitJob) -> None:
        loop = asyncio.get_running_loop()
        try:
            fitted, seconds = await loop.run_in_executor(self._pool, _timed, job)
            self.metrics.refit_seconds.observe(seconds)
        except Exception as exc:  # keep the previous model; the schedule retries later
            self.metrics.refit_failures.inc()
            log.warning("refit failed", detector=key or "samples", error=str(exc))
            fitted = None
        bank = self.banks.get(key)
        if bank is not None:
            await loop.run_in_executor(self._thread, bank.complete, job, fitted)

    def add_routes(self, app: web.Application, daemon: Daemon) -> None:
        from detectors.api import add_anomaly_routes

        add_anomaly_routes(app)


def _timed(job: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    return job(), time.perf_counter() - started
