"""SLA targets per priority: time to acknowledge and time to resolve.

Each incident gets its deadlines when it opens (recomputed from its opening
time if its priority changes); a deadline that passes unmet is a breach: a
timeline event, a metric, and `sla` on the incident (`acknowledge_by`,
`resolve_by`, `acknowledge_breached`, `resolve_breached`). The deadlines are
rows in `sla`, so they survive a restart and fire on the `Clock` (daemon and
replay alike). The same rows feed the KPIs (`daemon.stats`).

```yaml
sla:
  P1: {acknowledge: 5m, resolve: 1h}
  P2: {acknowledge: 15m, resolve: 4h}
```
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import Counter

from daemon.config import Config, Section
from daemon.pipeline import IncidentChange
from daemon.store import Store, Writes, dumps, register_column, register_schema
from daemon.timefmt import format_rfc3339

log = structlog.get_logger("incidentd.sla")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sla (
    incident_id TEXT PRIMARY KEY,
    priority TEXT NOT NULL,
    team TEXT,
    service TEXT,
    alerts INTEGER NOT NULL DEFAULT 1,
    opened_at REAL NOT NULL,
    acknowledge_due REAL,
    resolve_due REAL,
    acknowledged_at REAL,
    resolved_at REAL,
    acknowledge_breached INTEGER NOT NULL DEFAULT 0,
    resolve_breached INTEGER NOT NULL DEFAULT 0,
    -- when the page was answered: the first acknowledgement, or the resolution
    -- that came before any (the acknowledge target is decided then)
    acknowledge_answered_at REAL
);
CREATE INDEX IF NOT EXISTS sla_by_opened_at ON sla (opened_at);
CREATE INDEX IF NOT EXISTS sla_open ON sla (resolved_at);
"""
register_schema("sla", SCHEMA)
# Stores written before had no such column: it is filled as that version read its rows
# (answered when acknowledged or resolved). That version also set `acknowledged_at` on an
# incident that reopened without having been acknowledged: it goes where the incident's
# timeline has no acknowledgement.
register_column("sla", "acknowledge_answered_at", "REAL",
                "UPDATE sla SET acknowledge_answered_at = COALESCE(acknowledged_at, resolved_at),"
                " acknowledged_at = CASE WHEN EXISTS (SELECT 1 FROM timeline t"
                " WHERE t.incident_id = sla.incident_id AND t.kind = 'acknowledged') THEN acknowledged_at END")

DEFAULT_TARGETS: dict[str, tuple[float, float]] = {
    "P1": (300, 3600), "P2": (900, 4 * 3600), "P3": (3600, 24 * 3600),
    "P4": (4 * 3600, 3 * 86400), "P5": (86400, 7 * 86400),
}
TARGETS = ("acknowledge", "resolve")


def parse_sla(config: Config) -> tuple[dict[str, tuple[float | None, float | None]], list[str]]:
    """Targets per priority (seconds; None: no target), with `file:line: message` errors."""
    targets: dict[str, tuple[float | None, float | None]] = dict(DEFAULT_TARGETS)
    sec = Section(config, "sla", "a mapping of priority to targets")
    for pri, node in sec.items():
        if pri not in DEFAULT_TARGETS:
            sec.error(sec.raw, pri, f"sla.{pri}: priorities are P1..P5")
            continue
        if not isinstance(node, Mapping):
            sec.error(sec.raw, pri, f"sla.{pri} must be {{acknowledge: DURATION, resolve: DURATION}}")
            continue
        values: list[float | None] = [None, None]
        for i, key in enumerate(TARGETS):
            if node.get(key) is not None:
                values[i] = sec.duration(key, node[key], node, f"sla.{pri}.{key}")
        for key in node:
            if key not in TARGETS:
                sec.unknown(key, node, f"sla.{pri}.{key}")
        targets[pri] = (values[0], values[1])
    return targets, sec.errors


def check_sla(config: Config) -> list[str]:
    return parse_sla(config)[1]


@dataclass(slots=True)
class SlaRecord:
    incident_id: str
    priority: str
    team: str | None
    service: str | None
    alerts: int
    opened_at: float
    acknowledge_due: float | None = None
    resolve_due: float | None = None
    acknowledged_at: float | None = None
    resolved_at: float | None = None
    acknowledge_breached: bool = False
    resolve_breached: bool = False
    acknowledge_answered_at: float | None = None  # acknowledged, or resolved first
    shown: tuple | None = field(default=None, compare=False)  # what the incident's `sla` field says
    # when it first paged: the acknowledge target counts from then (an incident whose
    # alerts are all silenced, inhibited or expected pages nobody, and has none to miss)
    paged_at: float | None = field(default=None, compare=False)

    def view_key(self) -> tuple:
        return (self.priority, self.acknowledge_due, self.resolve_due, self.acknowledge_breached,
                self.resolve_breached)

    def view(self) -> dict[str, Any]:
        return {"priority": self.priority,
                "acknowledge_by": format_rfc3339(self.acknowledge_due),
                "resolve_by": format_rfc3339(self.resolve_due),
                "acknowledge_breached": self.acknowledge_breached,
                "resolve_breached": self.resolve_breached}


def service_of(inc: Any) -> str | None:
    """The service an incident is about: its root cause, else its first alert's service/CI."""
    if inc.root_cause:
        return inc.root_cause
    for m in inc.alerts.values():
        return m.labels.get("service") or m.ci or m.labels.get("job")
    return None


_COLUMNS = ("incident_id", "priority", "team", "service", "alerts", "opened_at", "acknowledge_due",
            "resolve_due", "acknowledged_at", "resolved_at", "acknowledge_breached", "resolve_breached",
            "acknowledge_answered_at")


def _record(row: tuple, targets: Mapping[str, tuple[float | None, float | None]]) -> SlaRecord:
    """A record read back from the store. When it first paged is not stored: it is its
    acknowledge deadline less its priority's target (none: it never paged)."""
    rec = SlaRecord(*row)
    rec.acknowledge_breached, rec.resolve_breached = bool(rec.acknowledge_breached), bool(rec.resolve_breached)
    ack = targets.get(rec.priority, (None, None))[0]
    if rec.acknowledge_due is not None:
        rec.paged_at = rec.acknowledge_due - ack if ack is not None else rec.opened_at
    return rec


class SlaTracker:
    """IncidentListener with timers: deadlines, breaches, the `sla` rows."""

    name = "sla"

    def __init__(self, config: Config, incidents: Any, store: Store | None, registry: Any = None) -> None:
        targets, errors = parse_sla(config)
        if errors:
            from daemon.config import ConfigError

            raise ConfigError(errors)
        self.targets = targets
        self.incidents = incidents
        self.active: dict[str, SlaRecord] = {}
        self.store = store
        # resolved lately: a reopened incident takes its record back (see `_reopened`)
        self._resolved: OrderedDict[str, SlaRecord] = OrderedDict()
        self._heap: list[tuple[float, str, str]] = []
        self._dirty: dict[str, SlaRecord] = {}
        self._gone: list[str] = []  # merged away: their rows go
        self._timeline: list[tuple[Any, ...]] = []
        self.breaches = Counter("incidentd_sla_breaches_total",
                                "SLA targets missed, by target (acknowledge, resolve) and priority.",
                                ["target", "priority"], registry=registry)
        self.outcomes = Counter("incidentd_sla_outcomes_total",
                                "SLA targets decided, by target, priority and outcome (met, breached).",
                                ["target", "priority", "outcome"], registry=registry)
        if store is not None:
            rows = store.query(f"SELECT {', '.join(_COLUMNS)} FROM sla WHERE resolved_at IS NULL")
            for row in rows:
                rec = _record(row, self.targets)
                self.active[rec.incident_id] = rec
                self._schedule(rec)

    def _schedule(self, rec: SlaRecord) -> None:
        if rec.acknowledge_due is not None and rec.acknowledge_answered_at is None and not rec.acknowledge_breached:
            heapq.heappush(self._heap, (rec.acknowledge_due, rec.incident_id, "acknowledge"))
        if rec.resolve_due is not None and not rec.resolve_breached:
            heapq.heappush(self._heap, (rec.resolve_due, rec.incident_id, "resolve"))

    def _deadlines(self, rec: SlaRecord) -> None:
        ack, res = self.targets.get(rec.priority, (None, None))
        rec.acknowledge_due = rec.paged_at + ack if ack is not None and rec.paged_at is not None else None
        rec.resolve_due = rec.opened_at + res if res is not None else None

    def _touch(self, rec: SlaRecord) -> None:
        self._dirty[rec.incident_id] = rec
        key = rec.view_key()
        if key != rec.shown:  # most changes (an alert joining) leave the deadlines as they were
            rec.shown = key if self.incidents.set_extra(rec.incident_id, "sla", rec.view()) else None

    # -- listener -----------------------------------------------------------------

    def on_changes(self, changes: list[IncidentChange], now: float) -> None:
        for ch in changes:
            inc = ch.incident
            rec = self.active.get(inc.id)
            if ch.kind in ("opened", "reopened") and rec is None:
                rec = self._reopened(inc.id) if ch.kind == "reopened" else None
                if rec is None:
                    rec = SlaRecord(inc.id, inc.priority, inc.team, service_of(inc), len(inc.alerts), inc.opened_at)
                    rec.paged_at = inc.opened_at if inc.paging else None
                    self._deadlines(rec)
                self.active[inc.id] = rec
                self._schedule(rec)
                self._touch(rec)
                continue
            if ch.kind == "merged" and ch.detail.get("merged"):
                # the incident merged into this one (open, or resolved lately) is not an
                # incident of its own any more
                gone = ch.detail["merged"]
                old = self.active.pop(gone, None)
                old = self._resolved.pop(gone, None) or old
                self._dirty.pop(gone, None)
                self._gone.append(gone)
                if rec is not None and old is not None:
                    self._absorb(rec, old)
            if rec is None:
                continue
            if ch.kind == "paging" and rec.paged_at is None:
                rec.paged_at = now
                self._deadlines(rec)
                self._schedule(rec)
            rec.alerts, rec.team = len(inc.alerts), inc.team or rec.team
            rec.service = service_of(inc) or rec.service
            if inc.priority != rec.priority:
                rec.priority = inc.priority
                self._deadlines(rec)
                self._schedule(rec)
            if ch.kind == "acknowledged" and rec.acknowledged_at is None:
                # the first one: an incident reopened and acknowledged again keeps it
                rec.acknowledged_at = now
                self._answer(rec, now)
            elif ch.kind == "resolved":
                self._answer(rec, now)  # resolving answers the page too
                rec.resolved_at = now
                self._decide(rec, "resolve", now)
                del self.active[inc.id]
                self._resolved[inc.id] = rec
                if len(self._resolved) > 10_000:
                    self._resolved.popitem(last=False)
            self._touch(rec)

    def _absorb(self, rec: SlaRecord, old: SlaRecord) -> None:
        """`old`'s incident was merged into `rec`'s: one occurrence, answerable since the
        earlier of the two began (and paged), answered when either first was, with any
        breach either already had."""
        if old.opened_at < rec.opened_at:
            rec.opened_at = old.opened_at
        if old.paged_at is not None and (rec.paged_at is None or old.paged_at < rec.paged_at):
            rec.paged_at = old.paged_at
        for when in ("acknowledged_at", "acknowledge_answered_at"):  # the first answer of the two
            theirs = getattr(old, when)
            if theirs is not None and (getattr(rec, when) is None or theirs < getattr(rec, when)):
                setattr(rec, when, theirs)
        rec.acknowledge_breached = rec.acknowledge_breached or old.acknowledge_breached
        rec.resolve_breached = rec.resolve_breached or old.resolve_breached
        self._deadlines(rec)
        self._schedule(rec)

    def _reopened(self, incident_id: str) -> SlaRecord | None:
        """The record of an incident that resolved and opened again: the same occurrence,
        so its deadlines, acknowledgement and breaches stand (a new record would count
        a breach of the acknowledgement it already had). None if there is none."""
        rec = self._resolved.pop(incident_id, None)
        if rec is None and self.store is not None:
            rows = self.store.query(f"SELECT {', '.join(_COLUMNS)} FROM sla WHERE incident_id = ?", (incident_id,))
            if rows:
                rec = _record(rows[0], self.targets)
        if rec is not None:
            rec.resolved_at = None  # its page stays answered (and counted): not a miss now
        return rec

    def _answer(self, rec: SlaRecord, now: float) -> None:
        """The page is answered (acknowledged or resolved): the acknowledge target is
        decided, once, even if the incident reopens and is answered again."""
        if rec.acknowledge_answered_at is None:
            rec.acknowledge_answered_at = now
            self._decide(rec, "acknowledge", now)

    def _decide(self, rec: SlaRecord, target: str, now: float) -> None:
        due = rec.acknowledge_due if target == "acknowledge" else rec.resolve_due
        breached = rec.acknowledge_breached if target == "acknowledge" else rec.resolve_breached
        if due is None:
            return
        if not breached and now > due:
            self._breach(rec, target, now)
            breached = True
        self.outcomes.labels(target, rec.priority, "breached" if breached else "met").inc()

    def _breach(self, rec: SlaRecord, target: str, now: float) -> None:
        setattr(rec, f"{target}_breached", True)
        due = rec.acknowledge_due if target == "acknowledge" else rec.resolve_due
        since = rec.paged_at if target == "acknowledge" and rec.paged_at is not None else rec.opened_at
        limit = int((due or now) - since)
        verb = "acknowledged" if target == "acknowledge" else "resolved"
        text = f"SLA breached: {rec.priority} incident not {verb} within {limit}s"
        self._timeline.append((rec.incident_id, now, "sla_breach", "incidentd", text,
                               dumps({"target": target, "priority": rec.priority, "due": due})))
        self.breaches.labels(target, rec.priority).inc()
        log.info("SLA breached", incident_id=rec.incident_id, target=target, priority=rec.priority)

    # -- timers -------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        while self._heap:
            due, iid, target = self._heap[0]
            if self._live(iid, target, due):
                return due
            heapq.heappop(self._heap)
        return None

    def _live(self, iid: str, target: str, due: float) -> bool:
        rec = self.active.get(iid)
        if rec is None:
            return False
        if target == "acknowledge":
            return (rec.acknowledge_due == due and rec.acknowledge_answered_at is None
                    and not rec.acknowledge_breached)
        return rec.resolve_due == due and not rec.resolve_breached

    def tick(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            due, iid, target = heapq.heappop(self._heap)
            if self._live(iid, target, due):
                rec = self.active[iid]
                self._breach(rec, target, now)
                self._touch(rec)

    def drain_writes(self, writes: Writes) -> None:
        cols = ", ".join(_COLUMNS)
        updates = ", ".join(f"{c}=excluded.{c}" for c in _COLUMNS[1:])
        writes.extend(f"INSERT INTO sla ({cols}) VALUES ({', '.join('?' * len(_COLUMNS))})"
                      f" ON CONFLICT(incident_id) DO UPDATE SET {updates}",
                      [tuple(getattr(r, c) for c in _COLUMNS) for r in self._dirty.values()])
        writes.extend("INSERT INTO timeline (incident_id, at, kind, actor, text, data) VALUES (?,?,?,?,?,?)",
                      self._timeline)
        writes.extend("DELETE FROM sla WHERE incident_id = ?", [(i,) for i in self._gone])
        self._dirty = {}
        self._timeline = []
        self._gone = []


class SlaPart:
    """The SLA tracker (a pipeline listener) plus the KPI endpoint and gauges."""

    def __init__(self, config: Config, incidents: Any, store: Store | None, clock: Any,
                 registry: Any = None) -> None:
        self.tracker = SlaTracker(config, incidents, store, registry)
        self.store, self.clock = store, clock
        if store is not None and registry is not None:
            from daemon.stats import StatsCollector

            registry.register(StatsCollector(store, clock))

    def add_routes(self, app: Any, daemon: Any) -> None:
        from aiohttp import web

        from daemon.api import error
        from daemon.stats import compute_stats, parse_since

        async def get_stats(request: web.Request) -> web.Response:
            now = daemon.clock.now()
            try:
                since = parse_since(request.query.get("since"), now)
            except ValueError as exc:
                return error(400, "invalid since", f"RFC 3339 time or a duration like 24h: {exc}")
            return web.json_response(compute_stats(daemon.store, since, now))

        app.router.add_get("/api/v1/stats", get_stats)
