"""KPIs from the `sla` rows: MTTA, MTTR, SLA compliance by priority and by team,
incidents per service, alerts per incident (how much alert noise incidents absorb).

`GET /api/v1/stats?since=` (RFC 3339 or a duration back from now, default 7d)
and gauges in `/metrics` (computed at scrape time, over the last 7 days,
cached for a few seconds so a busy scraper costs little).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from daemon.store import Store
from daemon.timefmt import MIN_TS, format_rfc3339, parse_duration, parse_rfc3339

DEFAULT_WINDOW = 7 * 86400.0


class _Acc:
    def __init__(self) -> None:
        self.incidents = 0
        self.ack: list[float] = []
        self.res: list[float] = []
        self.decided = {"acknowledge": 0, "resolve": 0}
        self.met = {"acknowledge": 0, "resolve": 0}

    def add(self, row: tuple[Any, ...]) -> None:
        (_, _, _, _, opened, ack_due, res_due, acked, resolved, ack_b, res_b, answered) = row
        self.incidents += 1
        if acked is not None:
            self.ack.append(acked - opened)
        if resolved is not None:
            self.res.append(resolved - opened)
        for target, due, done, breached in (("acknowledge", ack_due, answered, ack_b),
                                            ("resolve", res_due, resolved, res_b)):
            if due is None:
                continue
            if breached or done is not None:
                self.decided[target] += 1
                self.met[target] += 0 if breached else 1

    def view(self) -> dict[str, Any]:
        def mean(xs: list[float]) -> float | None:
            return round(sum(xs) / len(xs), 3) if xs else None

        def ratio(t: str) -> float | None:
            return round(self.met[t] / self.decided[t], 4) if self.decided[t] else None

        return {"incidents": self.incidents, "mtta_seconds": mean(self.ack), "mttr_seconds": mean(self.res),
                "acknowledged": len(self.ack), "resolved": len(self.res),
                "sla_acknowledge_compliance": ratio("acknowledge"), "sla_resolve_compliance": ratio("resolve"),
                "sla_acknowledge_breaches": self.decided["acknowledge"] - self.met["acknowledge"],
                "sla_resolve_breaches": self.decided["resolve"] - self.met["resolve"]}


def parse_since(text: str | None, now: float) -> float:
    """`since` as RFC 3339 or as a duration back from now (`24h`, `7d`)."""
    if not text:
        return now - DEFAULT_WINDOW
    if text[:1].isdigit() and "-" not in text:
        return max(MIN_TS, now - parse_duration(text))  # a window reaching before 1970: all there is
    ts = parse_rfc3339(text)
    return ts if ts is not None else 0.0


def compute_stats(store: Store, since: float, now: float) -> dict[str, Any]:
    rows = store.query(
        "SELECT incident_id, priority, team, service, opened_at, acknowledge_due, resolve_due,"
        " acknowledged_at, resolved_at, acknowledge_breached, resolve_breached, acknowledge_answered_at, alerts"
        " FROM sla"
        " WHERE opened_at >= ? ORDER BY opened_at", (since,))
    total = _Acc()
    by_pri: defaultdict[str, _Acc] = defaultdict(_Acc)
    by_team: defaultdict[str, _Acc] = defaultdict(_Acc)
    per_service: dict[str, int] = defaultdict(int)
    alerts = 0
    for r in rows:
        core = r[:12]
        total.add(core)
        by_pri[r[1]].add(core)
        by_team[r[2] or "none"].add(core)
        per_service[r[3] or "unknown"] += 1
        alerts += r[12] or 0
    return {
        "since": format_rfc3339(since), "until": format_rfc3339(now),
        **total.view(),
        "by_priority": {k: by_pri[k].view() for k in sorted(by_pri)},
        "by_team": {k: by_team[k].view() for k in sorted(by_team)},
        "incidents_per_service": dict(sorted(per_service.items(), key=lambda kv: (-kv[1], kv[0]))),
        "alerts_per_incident": round(alerts / len(rows), 3) if rows else None,
        "alerts": alerts,
        "noise_reduction": round(1 - len(rows) / alerts, 4) if alerts else None,
    }


class StatsCollector:
    """KPI gauges for `/metrics`, computed at scrape time (cached `ttl` seconds)."""

    def __init__(self, store: Store, clock: Any, ttl: float = 10.0) -> None:
        self.store, self.clock, self.ttl = store, clock, ttl
        self._cache: tuple[float, dict[str, Any]] | None = None

    def describe(self) -> list[Any]:
        return []  # computed at scrape time; nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        mono = time.monotonic()
        if self._cache is None or mono - self._cache[0] > self.ttl:
            now = self.clock.now()
            try:
                self._cache = (mono, compute_stats(self.store, now - DEFAULT_WINDOW, now))
            except Exception:  # the store is closing: no KPIs this scrape
                return
        s = self._cache[1]
        mtta = GaugeMetricFamily("incidentd_kpi_mtta_seconds",
                                 "Mean time to acknowledge over the last 7 days, by priority.", labels=["priority"])
        mttr = GaugeMetricFamily("incidentd_kpi_mttr_seconds",
                                 "Mean time to resolve over the last 7 days, by priority.", labels=["priority"])
        by_pri = GaugeMetricFamily("incidentd_kpi_sla_compliance_ratio",
                                   "Share of decided SLA targets met over the last 7 days, by target and priority.",
                                   labels=["target", "priority"])
        by_team = GaugeMetricFamily("incidentd_kpi_sla_team_compliance_ratio",
                                    "Share of decided SLA targets met over the last 7 days, by target and team.",
                                    labels=["target", "team"])
        for pri, v in s["by_priority"].items():
            if v["mtta_seconds"] is not None:
                mtta.add_metric([pri], v["mtta_seconds"])
            if v["mttr_seconds"] is not None:
                mttr.add_metric([pri], v["mttr_seconds"])
            for t in ("acknowledge", "resolve"):
                if v[f"sla_{t}_compliance"] is not None:
                    by_pri.add_metric([t, pri], v[f"sla_{t}_compliance"])
        for team, v in s["by_team"].items():
            for t in ("acknowledge", "resolve"):
                if v[f"sla_{t}_compliance"] is not None:
                    by_team.add_metric([t, team], v[f"sla_{t}_compliance"])
        api = GaugeMetricFamily("incidentd_kpi_alerts_per_incident",
                                "Alerts per incident over the last 7 days (noise absorbed by correlation).")
        api.add_metric([], s["alerts_per_incident"] or 0.0)
        yield from (mtta, mttr, by_pri, by_team, api)
