"""The Prometheus source: PromQL detectors' queries, run on an interval.

Every ``interval`` each detector with ``promql`` sends one instant query to
``/api/v1/query`` of the configured server; each series of the returned
vector is one stream of its detector, sampled at the evaluation time. A
query that fails (connection error, timeout, 5xx, an error status in the
body) is retried with exponential backoff up to ``retries`` times; a query
Prometheus rejects as bad (HTTP 400/422) is not retried. An answer that is
not a well-formed instant-query result (a sample whose timestamp is no finite
number, labels that are not a mapping, ...) fails the query like an error
status does. Queries that fail for good count in
``incidentd_prometheus_query_failures_total`` and are logged; the next
interval tries again. Nothing one query meets ends the polling: whatever it
raises, or the detectors raise taking its samples, is logged and counted the
same way.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from detectors.config import PrometheusSettings
from detectors.spec import DetectorSpec

log = structlog.get_logger("incidentd.prometheus")

Sample = tuple[dict[str, str], float, float]
Sink = Callable[[str, Sequence[Sample]], None]


class QueryError(Exception):
    """A query that did not give a result; `permanent` ones are not retried."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def parse_query_result(body: Any) -> list[Sample]:
    """The samples of an instant-query response (vector or scalar); `QueryError` if it
    is not one. Samples whose value is NaN or infinite (Prometheus sends them) are left out."""
    if not isinstance(body, dict):
        raise QueryError("response is not a JSON object")
    if body.get("status") != "success":
        raise QueryError(f"{body.get('errorType', 'error')}: {body.get('error', 'no detail')}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise QueryError("malformed response: data is not an object")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        result = [{"metric": {}, "value": result}]
    elif kind != "vector":
        raise QueryError(f"expected an instant vector, got {kind!r} (use an instant query)",
                         permanent=True)
    if not isinstance(result, list):
        raise QueryError("malformed response: result is not a list")
    out: list[Sample] = []
    for series in result:
        try:
            ts, text = series["value"]
            if isinstance(ts, bool) or not math.isfinite(at := float(ts)):
                raise ValueError
            value = float(text)
            metric = series.get("metric") or {}
            labels = {str(k): str(v) for k, v in metric.items()}
        except (AttributeError, KeyError, TypeError, ValueError):
            raise QueryError(f"malformed sample in the response: {json.dumps(series)[:200]}") from None
        if math.isfinite(value):
            out.append((labels, at, value))
    return out


class PrometheusSource:
    """Queries Prometheus for the PromQL detectors and hands the samples to ``sink``."""

    def __init__(self, settings: PrometheusSettings, specs: Sequence[DetectorSpec], sink: Sink,
                 registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.specs = [s for s in specs if s.promql]
        self.sink = sink
        r = registry or CollectorRegistry()
        self.queries = Counter(
            "incidentd_prometheus_queries_total", "Prometheus queries run, by detector.",
            ["detector"], registry=r)
        self.failures = Counter(
            "incidentd_prometheus_query_failures_total",
            "Prometheus queries that failed after every retry, by detector.", ["detector"], registry=r)
        self.retries = Counter(
            "incidentd_prometheus_query_retries_total", "Prometheus query attempts retried, by detector.",
            ["detector"], registry=r)
        self.duration = Histogram(
            "incidentd_prometheus_query_duration_seconds",
            "Time for one Prometheus query, retries included.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        for spec in self.specs:
            self.failures.labels(spec.name)
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task | None = None

    async def open(self) -> None:
        """The HTTP session; `poll` works from here on (tests poll by hand)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"Accept": "application/json"})

    async def start(self) -> None:
        """Open, then query every ``interval`` until `stop`."""
        await self.open()
        self._task = asyncio.create_task(self._run(), name="prometheus-source")
        log.info("prometheus source started", url=self.settings.url,
                 interval=self.settings.interval, detectors=[s.name for s in self.specs])

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.settings.interval
        next_at = loop.time()
        while True:
            await self.poll()  # never raises: `_poll_one` counts and logs each failure
            next_at += interval
            now = loop.time()
            if next_at < now:  # a slow round: skip the missed intervals
                next_at = now + interval - (now - next_at) % interval
            await asyncio.sleep(next_at - now)

    async def poll(self) -> None:
        """One round: every detector's query, side by side."""
        await asyncio.gather(*(self._poll_one(spec) for spec in self.specs))

    async def _poll_one(self, spec: DetectorSpec) -> None:
        started = time.perf_counter()
        self.queries.labels(spec.name).inc()
        try:
            samples = await self.query(spec)
        except QueryError as exc:
            self.failures.labels(spec.name).inc()
            log.warning("prometheus query failed", detector=spec.name, error=str(exc))
            return
        except Exception:  # a bug, not an answer: counted and logged as a failure all the same
            self.failures.labels(spec.name).inc()
            log.exception("prometheus query failed", detector=spec.name)
            return
        finally:
            self.duration.observe(time.perf_counter() - started)
        if samples:
            try:
                self.sink(spec.name, samples)
            except Exception:
                self.failures.labels(spec.name).inc()
                log.exception("prometheus samples not taken by the detectors", detector=spec.name,
                              samples=len(samples))

    async def query(self, spec: DetectorSpec) -> list[Sample]:
        """The detector's instant query, with timeout and retries."""
        s = self.settings
        assert self._session is not None and spec.promql
        url = f"{s.url}/api/v1/query"
        timeout = aiohttp.ClientTimeout(total=s.timeout)
        error = QueryError("not attempted")
        for attempt in range(s.retries + 1):
            if attempt:
                self.retries.labels(spec.name).inc()
                await asyncio.sleep(min(s.backoff * 2 ** (attempt - 1), s.interval))
            try:
                async with self._session.post(url, data={"query": spec.promql},
                                              timeout=timeout) as resp:
                    try:
                        body = await resp.json(content_type=None)
                    except (ValueError, aiohttp.ContentTypeError):
                        body = None
                    if resp.status in (400, 422):  # bad_data / execution: the query itself
                        detail = body.get("error") if isinstance(body, dict) else resp.reason
                        raise QueryError(f"HTTP {resp.status}: {detail}", permanent=True)
                    if resp.status >= 300:
                        raise QueryError(f"HTTP {resp.status} {resp.reason}")
                    return parse_query_result(body)
            except QueryError as exc:
                error = exc
                if exc.permanent:
                    raise
            except TimeoutError:
                error = QueryError(f"timed out after {s.timeout:g}s")
            except aiohttp.ClientError as exc:
                error = QueryError(f"{type(exc).__name__}: {exc}")
        raise error
