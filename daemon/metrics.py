"""The daemon's own metrics, for Prometheus to scrape at `/metrics`.

Names follow Prometheus conventions (`incidentd_` prefix, `_total`, `_seconds`);
label values are bounded (never an incident id or a fingerprint). Each daemon
instance has its own registry, so tests and replay can run side by side.
"""

from __future__ import annotations

from collections import Counter as _Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from daemon.incidents import Incident

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_HUMAN_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400, 259200)
SEVERITIES = ("critical", "error", "warning", "info", "none", "other")
_OPEN_HELP = "Open (including acknowledged) incidents, by severity."


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, process: bool = False) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        if process:  # the daemon's own process: CPU, memory, file descriptors, GC
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self.alerts_received = Counter(
            "incidentd_alerts_received_total",
            "Alerts received, by source (alertmanager, api, detector, replay) and outcome (accepted, rejected, throttled).",
            ["source", "outcome"], registry=r)
        self.requests = Counter(
            "incidentd_http_requests_total", "HTTP requests, by handler and status code.",
            ["handler", "code"], registry=r)
        self.samples_received = Counter(
            "incidentd_samples_received_total", "Metric samples received, by outcome.",
            ["outcome"], registry=r)
        self.inbox_depth = Gauge(
            "incidentd_inbox_depth", "Alerts and samples committed to the inbox and not yet processed.",
            registry=r)
        self.inbox_commits = Counter(
            "incidentd_inbox_commits_total",
            "Store commits: one per group of concurrent requests (group commit) or pipeline batch.",
            registry=r)
        self.pipeline_latency = Histogram(
            "incidentd_pipeline_latency_seconds",
            "Time from an alert being accepted to the pipeline having processed it.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.processed = Counter(
            "incidentd_pipeline_alerts_processed_total", "Alerts processed by the pipeline.", registry=r)
        self.suppressed = Counter(
            "incidentd_alerts_suppressed_total",
            "Alerts recorded without paging, by reason (silenced, inhibited, expected).",
            ["reason"], registry=r)
        self.opened = Counter("incidentd_incidents_opened_total", "Incidents opened.", registry=r)
        self.resolved = Counter("incidentd_incidents_resolved_total", "Incidents resolved.", registry=r)
        self.reopened = Counter("incidentd_incidents_reopened_total", "Incidents reopened.", registry=r)
        self._open_source: Callable[[], Iterable[Any]] = list
        r.register(_OpenIncidents(self))
        self.time_to_ack = Histogram(
            "incidentd_time_to_acknowledge_seconds", "Time from an incident opening to its acknowledgement.",
            buckets=_HUMAN_BUCKETS, registry=r)
        self.time_to_resolve = Histogram(
            "incidentd_time_to_resolve_seconds", "Time from an incident opening to its resolution.",
            buckets=_HUMAN_BUCKETS, registry=r)
        self.config_reload_ok = Gauge(
            "incidentd_config_last_reload_successful", "1 if the last configuration (re)load succeeded.",
            registry=r)
        self.config_reload_ok.set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # -- helpers called from the pipeline ---------------------------------------

    def incident_opened(self) -> None:
        self.opened.inc()

    def incident_reopened(self) -> None:
        self.reopened.inc()

    def incident_resolved(self, inc: Incident) -> None:
        self.resolved.inc()
        if inc.resolved_at is not None:
            self.time_to_resolve.observe(max(0.0, inc.resolved_at - inc.opened_at))

    def incident_acknowledged(self, inc: Incident) -> None:
        if inc.acknowledged_at is not None:
            self.time_to_ack.observe(max(0.0, inc.acknowledged_at - inc.opened_at))

    def alert_suppressed(self, reason: str) -> None:
        self.suppressed.labels(reason).inc()

    def watch_open(self, source: Callable[[], Iterable[Any]]) -> None:
        """`source()` lists the open incidents; they are counted when scraped,
        not on every change (counting them per pipeline batch cost O(incidents))."""
        self._open_source = source

    def open_counts(self) -> dict[str, int]:
        counts = _Counter((i.severity if i.severity in SEVERITIES else "other") for i in self._open_source())
        return {sev: counts.get(sev, 0) for sev in SEVERITIES}


class _OpenIncidents(Collector):
    """`incidentd_open_incidents{severity}`, counted at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily("incidentd_open_incidents", _OPEN_HELP, labels=["severity"])]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("incidentd_open_incidents", _OPEN_HELP, labels=["severity"])
        for sev, n in self.metrics.open_counts().items():
            family.add_metric([sev], n)
        yield family
