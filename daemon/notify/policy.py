"""The notification policy: which incident changes notify whom, and when.

An `IncidentListener` with timers on the `Clock`. It never does I/O: it
writes notification rows to the outbox through `drain_writes`, so they commit
in the same transaction as the incident change that caused them, and the
delivery worker (daemon only) sends them. Per incident it keeps a small state
(route receivers, who was notified, group-wait, repeat and escalation
deadlines) in `notify_state`, so the timers survive a restart.

- open: the first message waits `group_wait`, so it carries the alerts that
  arrive in the incident's first seconds; an incident whose alerts are all
  silenced, inhibited or expected waits until one of them pages.
- priority raised, new root cause, resolved (and acknowledged, if listed in
  `on`): a message to everyone notified so far.
- repeat: every `repeat_interval` while open and unacknowledged.
- escalation: see `daemon.notify.escalation`; an acknowledgement stops it.
PagerDuty receivers always get acknowledge and resolve, so their alert follows.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog
from prometheus_client import Counter

from daemon.notify import escalation
from daemon.notify.config import NotifySettings, Route
from daemon.pipeline import IncidentChange
from daemon.store import Store, Writes, dumps
from daemon.timefmt import format_rfc3339

log = structlog.get_logger("incidentd.notify")

MAX_ALERTS_IN_MESSAGE = 50


@dataclass(slots=True)
class NotifyState:
    """What the policy remembers about one open incident."""

    incident_id: str
    opened_at: float
    group_wait_due: float | None = None
    first_sent_at: float | None = None
    waiting_paging: bool = False
    receivers: list[str] = field(default_factory=list)  # the route's
    notified: list[str] = field(default_factory=list)  # everyone messaged so far
    escalation_policy: str | None = None
    level: int = 0
    escalation_due: float | None = None
    repeat_due: float | None = None
    repeat_interval: float = 0.0
    on: list[str] = field(default_factory=list)
    first_reason: str = "opened"

    def deadlines(self) -> list[tuple[float, str]]:
        return [(d, k) for d, k in ((self.group_wait_due, "group_wait"), (self.escalation_due, "escalate"),
                                    (self.repeat_due, "repeat")) if d is not None]


def snapshot(inc: Any) -> dict[str, Any]:
    """The incident as a message shows it; stored with the notification, so a
    retry hours later sends what was true when it was written."""
    alerts = []
    for m in list(inc.alerts.values())[:MAX_ALERTS_IN_MESSAGE]:
        alerts.append({"fingerprint": m.fingerprint, "labels": m.labels, "status": m.status,
                       "ci": m.ci, "summary": m.annotations.get("summary", ""),
                       "starts_at": format_rfc3339(m.starts_at)})
    return {
        "id": inc.id, "state": inc.state, "title": inc.title, "priority": inc.priority,
        "severity": inc.severity, "team": inc.team, "receiver": inc.receiver,
        "root_cause": inc.root_cause, "impacted": list(inc.impacted),
        "opened_at": format_rfc3339(inc.opened_at),
        "acknowledged_by": inc.acknowledged_by, "acknowledged_at": format_rfc3339(inc.acknowledged_at),
        "resolved_at": format_rfc3339(inc.resolved_at), "alerts_total": len(inc.alerts),
        "alerts_firing": sum(1 for m in inc.alerts.values() if m.status == "firing"),
        "alerts": alerts, "problem_id": inc.problem_id,
        # the problem it recurs of, when that one is known: its title, cause and workaround
        "known_problem": inc.extra.get("known_problem"),
    }


class NotifyPolicy:
    """IncidentListener + timers that write the outbox (see the module docstring)."""

    name = "notify"

    def __init__(self, settings: NotifySettings, incidents: Any, store: Store | None,
                 registry: Any = None, link_base: str = "") -> None:
        self.settings = settings
        self.incidents = incidents
        self.link_base = link_base.rstrip("/")
        self.states: dict[str, NotifyState] = {}
        self._heap: list[tuple[float, str, str]] = []
        self._rows: list[tuple[Any, ...]] = []
        self._timeline: list[tuple[Any, ...]] = []
        self._dirty: set[str] = set()
        self._next_id = 1
        self.listeners: list[Callable[[int], None]] = []  # told the highest outbox id written
        self.escalations = Counter("incidentd_escalations_total",
                                   "Escalations to a further level, by the level reached.",
                                   ["level"], registry=registry)
        self.queued = Counter("incidentd_notifications_queued_total",
                              "Notifications written to the outbox, by receiver and reason.",
                              ["receiver", "reason"], registry=registry)
        if store is not None:
            self._load(store)

    @property
    def enabled(self) -> bool:
        return bool(self.settings.receivers)

    # -- persistence --------------------------------------------------------------

    def _load(self, store: Store) -> None:
        row = store.query_one("SELECT MAX(id) FROM notify_outbox")
        self._next_id = (row[0] or 0) + 1 if row else 1
        for (doc,) in store.query("SELECT doc FROM notify_state"):
            st = NotifyState(**json.loads(doc))
            self.states[st.incident_id] = st
            self._schedule(st)

    def drain_writes(self, writes: Writes) -> None:
        writes.extend("INSERT INTO notify_outbox (id, incident_id, receiver, reason, created_at, state,"
                      " attempts, message) VALUES (?,?,?,?,?,'pending',0,?)", self._rows)
        writes.extend("INSERT INTO timeline (incident_id, at, kind, actor, text, data) VALUES (?,?,?,?,?,?)",
                      self._timeline)
        for iid in sorted(self._dirty):
            st = self.states.get(iid)
            if st is None:
                writes.add("DELETE FROM notify_state WHERE incident_id=?", (iid,))
            else:
                writes.add("INSERT INTO notify_state (incident_id, doc) VALUES (?,?) ON CONFLICT(incident_id)"
                           " DO UPDATE SET doc=excluded.doc", (iid, dumps(asdict(st))))
        if self._rows:
            top = self._rows[-1][0]
            for fn in self.listeners:
                fn(top)
        self._rows = []
        self._timeline = []
        self._dirty.clear()

    # -- timers -------------------------------------------------------------------

    def _schedule(self, st: NotifyState) -> None:
        for due, kind in st.deadlines():
            heapq.heappush(self._heap, (due, st.incident_id, kind))

    def next_deadline(self) -> float | None:
        while self._heap:
            due, iid, kind = self._heap[0]
            if self._current(iid, kind) == due:
                return due
            heapq.heappop(self._heap)  # stale: the deadline moved or was cancelled
        return None

    def _current(self, iid: str, kind: str) -> float | None:
        st = self.states.get(iid)
        if st is None:
            return None
        return {"group_wait": st.group_wait_due, "escalate": st.escalation_due, "repeat": st.repeat_due}[kind]

    def tick(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            due, iid, kind = heapq.heappop(self._heap)
            if self._current(iid, kind) != due:
                continue
            st = self.states[iid]
            inc = self.incidents.get(iid)
            if inc is None or not inc.is_open:
                self._drop(iid)
                continue
            if kind == "group_wait":
                st.group_wait_due = None
                self._first(st, inc, now)
            elif kind == "escalate":
                self._escalate(st, inc, now)
            elif kind == "repeat":
                st.repeat_due = None
                if inc.state == "open":
                    if inc.paging:  # silenced since: no reminder, but the schedule goes on
                        self._send(st, inc, st.notified, "repeat", {}, now)
                    self._arm_repeat(st, now)
            self._dirty.add(iid)

    # -- changes ------------------------------------------------------------------

    def on_changes(self, changes: list[IncidentChange], now: float) -> None:
        if not self.enabled:
            return
        for ch in changes:
            inc, kind = ch.incident, ch.kind
            st = self.states.get(inc.id)
            if kind == "opened" or (kind == "reopened" and st is None):
                self._open(inc, now, "reopened" if kind == "reopened" else "opened")
                continue
            if kind == "merged":
                src = self.states.get(ch.detail.get("merged", ""))
                if src is not None and src.first_sent_at is not None:
                    self._send(src, inc, src.notified, "merged", {"into": inc.id}, now, incident_id=src.incident_id)
                if src is not None:
                    self._drop(src.incident_id)
            if st is None:
                continue
            self._dirty.add(inc.id)
            if st.first_sent_at is None:
                if kind == "resolved":
                    self._drop(inc.id)  # resolved before anyone heard of it
                elif st.waiting_paging and inc.paging:
                    self._first(st, inc, now)
                continue
            if kind == "reopened":
                self._send(st, inc, st.notified, "reopened", {}, now, only_if="open")
                self._start_timers(st, now)
            elif kind in ("priority_raised", "root_cause_changed"):
                self._send(st, inc, st.notified, kind, dict(ch.detail), now, only_if=kind)
                if kind == "priority_raised" and inc.paging:
                    self._route_again(st, inc, dict(ch.detail), now)
            elif kind == "acknowledged":
                st.escalation_due = None
                st.repeat_due = None
                self._send(st, inc, st.notified, "acknowledged", {"by": ch.actor}, now,
                           only_if="acknowledged", always_types=("pagerduty",))
            elif kind == "resolved":
                self._send(st, inc, st.notified, "resolved", {"by": ch.actor}, now,
                           only_if="resolved", always_types=("pagerduty",))
                self._drop(inc.id)

    # -- decisions ----------------------------------------------------------------

    def route_for(self, inc: Any) -> tuple[Route, bool]:
        """The first route that matches the incident, else the default (second value False)."""
        for r in self.settings.routes:
            if r.matches(inc):
                return r, True
        return self.settings.default, False

    def _open(self, inc: Any, now: float, reason: str) -> None:
        route, _ = self.route_for(inc)
        gw = self.settings.group_wait if route.group_wait is None else route.group_wait
        st = NotifyState(inc.id, inc.opened_at, first_reason=reason)
        self.states[inc.id] = st
        self._dirty.add(inc.id)
        if gw <= 0:
            self._first(st, inc, now)
        else:
            st.group_wait_due = now + gw
            self._schedule(st)

    def _first(self, st: NotifyState, inc: Any, now: float) -> None:
        """The first message, once the group wait is over (and the incident pages)."""
        if not inc.paging:
            st.waiting_paging = True
            return
        st.waiting_paging = False
        route, explicit = self.route_for(inc)
        s = self.settings
        team = s.teams.get(inc.team or "")
        receivers = list(route.receivers)
        policy = route.escalation_policy
        if not explicit and team is not None:
            receivers = list(team.receivers) or receivers
            policy = team.escalation_policy or policy
        if inc.receiver:
            if inc.receiver in s.receivers:
                receivers = [inc.receiver]
            else:
                log.warning("incident names an unknown receiver; using its route", incident_id=inc.id,
                            receiver=inc.receiver)
        policy = policy or s.default.escalation_policy
        st.receivers = receivers
        st.escalation_policy = policy if policy in s.escalation_policies else None
        st.on = list(route.on or s.on)
        st.repeat_interval = s.repeat_interval if route.repeat_interval is None else route.repeat_interval
        targets = list(receivers)
        if st.escalation_policy:
            for r in escalation.receivers_at(s, s.escalation_policies[st.escalation_policy], 0):
                if r not in targets:
                    targets.append(r)
        st.first_sent_at = now
        reason = st.first_reason if inc.state != "acknowledged" else "acknowledged"
        self._send(st, inc, targets, reason, {}, now, only_if="open")
        if inc.state == "open":
            self._start_timers(st, now)

    def _route_again(self, st: NotifyState, inc: Any, detail: dict[str, Any], now: float) -> None:
        """A priority raised after the first message may bring the incident under a route
        of its own (`match: {priority: [P1]}` to the pager): its receivers that have not
        heard of the incident get it now, and its escalation policy starts if there was
        none. Receivers already told keep getting it."""
        route, explicit = self.route_for(inc)
        if not explicit or inc.receiver:
            return
        new = [r for r in route.receivers if r not in st.notified and r in self.settings.receivers]
        if new:
            self._send(st, inc, new, "priority_raised", detail, now)
            st.receivers = st.receivers + [r for r in new if r not in st.receivers]
        policy = route.escalation_policy
        if policy in self.settings.escalation_policies and not st.escalation_policy and inc.state == "open":
            st.escalation_policy = policy
            self._arm_escalation(st, now)
            self._schedule(st)

    def _start_timers(self, st: NotifyState, now: float) -> None:
        self._arm_escalation(st, now)
        self._arm_repeat(st, now)
        self._schedule(st)

    def _arm_escalation(self, st: NotifyState, now: float) -> None:
        """From the first level of the incident's escalation policy, if it has one."""
        st.level = 0
        st.escalation_due = None
        if st.escalation_policy:
            st.escalation_due = escalation.first_due(self.settings.escalation_policies[st.escalation_policy], now)

    def _arm_repeat(self, st: NotifyState, now: float) -> None:
        st.repeat_due = now + st.repeat_interval if st.repeat_interval > 0 else None
        if st.repeat_due is not None:
            heapq.heappush(self._heap, (st.repeat_due, st.incident_id, "repeat"))

    def _escalate(self, st: NotifyState, inc: Any, now: float) -> None:
        st.escalation_due = None
        levels = self.settings.escalation_policies.get(st.escalation_policy or "")
        if not levels or inc.state != "open":
            return
        if not inc.paging:
            # silenced, inhibited or expected since it paged: the next level waits
            st.escalation_due = now + max(60.0, levels[min(st.level, len(levels) - 1)].delay)
            self._schedule(st)
            return
        nxt = escalation.step(self.settings, levels, st.level, now)
        if nxt is None:
            return
        st.level = nxt.level
        st.escalation_due = nxt.next_due
        self.escalations.labels(str(nxt.level + 1)).inc()
        text = f"escalated to level {nxt.level + 1} ({', '.join(nxt.receivers) or 'no receivers'}): " \
               f"not acknowledged within {int(levels[nxt.level - 1].delay)}s"
        self._timeline.append((inc.id, now, "escalated", "incidentd", text,
                               dumps({"level": nxt.level + 1, "receivers": nxt.receivers})))
        log.info("incident escalated", incident_id=inc.id, level=nxt.level + 1, receivers=nxt.receivers)
        self._send(st, inc, nxt.receivers, "escalated", {"level": nxt.level}, now)
        if st.escalation_due is not None:
            self._schedule(st)

    def _send(self, st: NotifyState, inc: Any, receivers: list[str], reason: str, detail: dict[str, Any],
              now: float, only_if: str | None = None, always_types: tuple[str, ...] = (),
              incident_id: str | None = None) -> None:
        """Write one outbox row per receiver (in order: per incident, ids only grow)."""
        wanted = only_if is None or only_if in st.on
        targets = [r for r in receivers if r in self.settings.receivers
                   and (wanted or self.settings.receivers[r].type in always_types)]
        if not targets:
            return
        iid = incident_id or inc.id
        snap = snapshot(inc)
        if incident_id is not None:
            snap["id"] = incident_id
        link = f"{self.link_base}/api/v1/incidents/{iid}" if self.link_base else ""
        for r in targets:
            if r not in st.notified:
                st.notified.append(r)
            nid = self._next_id
            self._next_id += 1
            message = {"id": nid, "reason": reason, "detail": detail, "incident": snap, "link": link,
                       "created_at": now}
            self._rows.append((nid, iid, r, reason, now, dumps(message)))
            self.queued.labels(r, reason).inc()
        self._dirty.add(st.incident_id)

    def _drop(self, iid: str) -> None:
        if self.states.pop(iid, None) is not None:
            self._dirty.add(iid)
