"""Incidents: deduplication, lifecycle, flapping, timeline.

An alert is identified by its fingerprint. While the incident holding it is
open (or was resolved less than the reopen window ago), the same label set
firing again updates that alert instead of opening anything. The lifecycle is
open -> acknowledged -> resolved; an incident resolves by itself once all its
alerts are resolved, and reopens if one fires again within the reopen window.
An alert that resolved longer ago than that fires as a new occurrence, placed
like any new alert, even while its incident stays open for other alerts (an
SLO still burning): a database down again half an hour later is usually
another fault, such as the node under it failing now.
An alert that keeps changing state is marked flapping, and its incident waits
for it to settle before resolving, instead of opening and closing over and over.

Which incident a new alert joins is the `Correlator`'s decision; this module
only keeps the books. All state is in memory for the incidents that can still
change; `drain_writes` hands what changed to the store.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Collection, Container, Iterable, Iterator
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any

import structlog

from daemon.config import IncidentSettings
from daemon.model import Alert, severity_rank
from daemon.pipeline import AlertEvent, Correlator, IncidentChange
from daemon.store import Writes, dumps

log = structlog.get_logger("incidentd.incidents")

OPEN, ACKNOWLEDGED, RESOLVED, MERGED = "open", "acknowledged", "resolved", "merged"
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
_SEVERITY_PRIORITY = {4: "P2", 3: "P3", 2: "P3", 1: "P4", 0: "P5"}


def more_urgent(a: str | None, b: str | None) -> str | None:
    """The more urgent of two priorities (P1 beats P2); None loses."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a < b else b


@dataclass(slots=True)
class Member:
    """An alert as part of an incident."""

    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    status: str
    starts_at: float | None
    ends_at: float | None
    first_at: float  # when incidentd first saw it in this incident
    last_at: float  # when incidentd last heard of it
    since: float = 0.0  # when its current firing episode began (first_at unless it fired again)
    source: str = "api"
    ci: str | None = None
    reason: str = ""
    silenced_by: str | None = None
    inhibited_by: str | None = None
    expected: str | None = None
    flapping: bool = False
    transitions: list[float] = field(default_factory=list)
    kept_by: str | None = None  # the person who merged it in: root-cause ranking does not detach it

    @property
    def suppressed(self) -> bool:
        return bool(self.silenced_by or self.inhibited_by or self.expected)

    @property
    def ended_at(self) -> float:
        """When it ended, or (no end known) when incidentd last heard of it."""
        return self.last_at if self.ends_at is None else self.ends_at

    def to_dict(self) -> dict[str, Any]:
        # shallow: the document is serialised at once (asdict's deep copy cost
        # more than everything else on the re-post path)
        d = {k: getattr(self, k) for k in _MEMBER_FIELDS}
        d["transitions"] = list(self.transitions)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Member:
        return cls(**d)


_MEMBER_FIELDS = tuple(f.name for f in fields(Member))


@dataclass(slots=True)
class Incident:
    id: str
    seq: int
    state: str
    opened_at: float
    updated_at: float
    group_key: str = ""
    title: str = ""
    severity: str = "none"
    priority: str = "P5"
    rule_priority: str | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    last_alert_at: float = 0.0
    alerts: dict[str, Member] = field(default_factory=dict)
    root_cause: str | None = None
    root_cause_candidates: list[dict[str, Any]] = field(default_factory=list)
    impacted: list[str] = field(default_factory=list)
    explanation: str = ""
    problem_id: str | None = None
    flapping: bool = False
    paging: bool = True  # False while every alert in it is silenced, inhibited or expected
    team: str | None = None
    receiver: str | None = None
    merged_into: str | None = None
    resolve_due: float | None = None  # flapping incidents resolve once settled
    extra: dict[str, Any] = field(default_factory=dict)  # other packages' fields
    # bumped whenever an alert joins or leaves or a member fires again: what is derived
    # from the members (correlation's evidence) is cached per revision
    revision: int = 0
    # (revision, member) when that revision is the one before plus that new member and
    # nothing else: what derives from the members is then worked out from the revision
    # before, not from every member again (an incident may gather thousands of alerts)
    appended: tuple[int, Member] | None = None
    # (revision, severity, paging) as the members last gave them (see `_members_state`)
    derived: tuple[int, str, bool] | None = None
    # (revision, how many members fire) (see `any_firing`)
    firing_count: tuple[int, int] | None = None

    @property
    def cis(self) -> set[str]:
        return {m.ci for m in self.alerts.values() if m.ci}

    @property
    def is_open(self) -> bool:
        return self.state in (OPEN, ACKNOWLEDGED)

    def any_firing(self) -> bool:
        """Whether a member fires: counted once per revision, carried over to a revision
        that only gained a member (`appended`), and kept as members resolve
        (`member_resolved`), so that neither each of the thousands of alerts of a large
        incident resolving nor each one joining looks at all the others."""
        got = self.firing_count
        if got is None or got[0] != self.revision:
            app = self.appended
            if got is not None and got[0] == self.revision - 1 and app is not None and app[0] == self.revision:
                got = (self.revision, got[1] + (app[1].status == "firing"))
            else:
                got = (self.revision, sum(1 for m in self.alerts.values() if m.status == "firing"))
            self.firing_count = got
        return got[1] > 0

    def member_resolved(self) -> None:
        """A firing member resolved (which leaves the revision as it is)."""
        got = self.firing_count
        if got is not None:
            # counted at an earlier revision, it is not carried over: counted again
            self.firing_count = (got[0], got[1] - 1) if got[0] == self.revision else None

    def to_doc(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__
             if k not in ("alerts", "revision", "appended", "derived", "firing_count")}
        d["alerts"] = [m.to_dict() for m in self.alerts.values()]
        return d

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Incident:
        doc = dict(doc)
        members = [Member.from_dict(m) for m in doc.pop("alerts", [])]
        known = {k: v for k, v in doc.items() if k in cls.__slots__}
        inc = cls(**known)
        inc.alerts = {m.fingerprint: m for m in members}
        return inc


_seq = attrgetter("seq")


def _event_of(m: Member) -> AlertEvent:
    """A member as the alert event that would bring it now (to place or open it afresh)."""
    alert = Alert(labels=m.labels, annotations=m.annotations, starts_at=m.starts_at,
                  ends_at=m.ends_at, status=m.status, fingerprint=m.fingerprint,
                  source=m.source, received_at=m.first_at)
    return AlertEvent(alert, ci=m.ci, silenced_by=m.silenced_by,
                      inhibited_by=m.inhibited_by, expected=m.expected)


def _kept_apart(a: Incident, b: Incident) -> bool:
    """Whether a person split one of these incidents from the other."""
    return b.id in a.extra.get("kept_apart_from", ()) or a.id in b.extra.get("kept_apart_from", ())


ENDED_KEPT = 100_000  # fingerprints whose last occurrence's end is remembered (see `_ended`)

# an alert resolving has its incident looked at for alerts outlasting the fault (see
# `_let_outlasting_go`) this much later, once for all that resolve meanwhile: a fault's
# alerts resolve in bursts, and each look goes over every alert of the incident
OUTLAST_LOOK = 60.0


@dataclass(slots=True)
class TimelineEntry:
    incident_id: str
    at: float
    kind: str
    actor: str
    text: str
    data: dict[str, Any] | None = None


class IncidentError(Exception):
    """An operation on an incident that cannot be done (unknown id, wrong state)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _joinable(inc: Incident, now: float, reopen_window: float) -> bool:
    """Open, or resolved within the reopen window."""
    return inc.is_open or (inc.state == RESOLVED and inc.resolved_at is not None
                           and now - inc.resolved_at < reopen_window)


class IncidentManager:
    """Keeps the incidents that can still change, applies alert events and commands."""

    def __init__(self, settings: IncidentSettings, correlator: Correlator, metrics: Any = None) -> None:
        self.settings = settings
        self.correlator = correlator
        self.metrics = metrics
        if metrics is not None:
            metrics.watch_open(self.open_incidents)
        self.incidents: dict[str, Incident] = {}  # open, and resolved within the reopen window
        self.by_fingerprint: dict[str, str] = {}  # fingerprint -> incident id (active incidents)
        self._timers: list[tuple[float, int, str, str]] = []  # (due, seq, kind, key)
        self._timer_seq = 0
        self._next_seq = 1
        self._seq_written = 0  # the next_incident_seq last handed to the store
        self._dirty: set[str] = set()
        self._timeline: list[TimelineEntry] = []
        self._changes: list[IncidentChange] = []
        self._to_analyze: set[str] = set()
        self._pending_docs: dict[str, Incident] = {}  # merged away: written once more, then gone
        # open (and acknowledged) incidents, in opening order, and by group key:
        # placing an alert must not scan every incident
        self._open_now: dict[str, Incident] = {}
        self._evicted: list[str] = []  # their alert_seen rows go
        self._seen: dict[str, Member] = {}  # re-posted alerts whose incident is not dirty
        self._expire_due: dict[str, float] = {}  # fingerprint -> earliest pending expire timer
        self._open_by_key: dict[str, dict[str, Incident]] = {}
        # held incidents by the CIs their members are on: the correlator weighs a new
        # alert against those near its CI, not against every incident held
        self._on_ci: dict[str, set[str]] = {}
        self._cis_held: dict[str, int] = {}  # incident -> how many CIs `_on_ci` has it under
        # Re-posts of a firing alert skip the stages (`absorb_repost`) while nothing that
        # could now silence or expect it has changed: the stages' `epoch` (a silence or
        # change added or ended, one recorded ahead of time starting, the rules reloaded)
        # against the one each alert last went through them at. `must_see`: fingerprints
        # the stages must see every time (an inhibit rule's sources keep its inhibition
        # alive). `next_start(now)`: when the next silence or change recorded ahead starts.
        self.epoch = 0
        self.must_see: Container[str] = ()
        self.next_start: Callable[[float], float | None] | None = None
        self._epoch_due: float | None = -math.inf  # when `epoch` moves on by itself (`next_start`)
        self._epoch_asked = -math.inf  # when `_epoch_due` was last worked out
        self._stages_saw: dict[str, int] = {}
        # alerts of incidents let go after the reopen window: fingerprint -> when the
        # occurrence ended, so that a re-send of its resolution (Prometheus re-sends a
        # resolved alert for 15 minutes) is not taken for a new occurrence
        self._ended: dict[str, float] = {}
        self._outlast_due: dict[str, float] = {}  # incident id -> when it is next looked at (see `_look_for_outlasting`)

    # -- loading ----------------------------------------------------------------

    def load(self, docs: Iterable[dict[str, Any]], next_seq: int, now: float,
             seen: Iterable[tuple[str, str, float, float | None]] = ()) -> None:
        """Restore state from the store after a restart. `seen`: rows of the
        `alert_seen` table (fingerprint, incident id, last_at, ends_at), the
        re-posts not yet folded into the incident documents."""
        self._next_seq = max(self._next_seq, next_seq)
        latest = {fp: (iid, last_at, ends_at) for fp, iid, last_at, ends_at in seen}
        for doc in docs:
            inc = Incident.from_doc(doc)
            for fp, m in inc.alerts.items():
                row = latest.get(fp)
                if row is not None and row[0] == inc.id and row[1] > m.last_at:
                    m.last_at, m.ends_at = row[1], row[2]
            self._next_seq = max(self._next_seq, inc.seq + 1)
            self.incidents[inc.id] = inc
            for fp in inc.alerts:
                self._hold(fp, inc)
            self._schedule_incident_timers(inc)
            self._track(inc)
            self._index(inc, inc.alerts.values())

    # -- queries ------------------------------------------------------------------

    def get(self, incident_id: str) -> Incident | None:
        return self.incidents.get(incident_id)

    def open_incidents(self) -> list[Incident]:
        """Open and acknowledged incidents, in opening order."""
        return list(self._open_now.values())

    def opened_recently(self, since: float, most: int) -> Iterator[Incident]:
        """Open incidents opened at `since` or later, the most recent first; at most `most`."""
        for n, inc in enumerate(reversed(self._open_now.values())):
            if n >= most or inc.opened_at < since:
                return
            yield inc

    def open_in_group(self, group_key: str) -> list[Incident]:
        """Open and acknowledged incidents with this group key, in opening order."""
        group = self._open_by_key.get(group_key)
        return list(group.values()) if group else []

    def _track(self, inc: Incident) -> None:
        """Keep the open-incident indexes in step after `inc` changed state."""
        if inc.is_open and self.incidents.get(inc.id) is inc:
            if inc.id not in self._open_now:
                reorder = bool(self._open_now) and inc.seq < next(reversed(self._open_now.values())).seq
                self._open_now[inc.id] = inc
                group = self._open_by_key.setdefault(inc.group_key, {})
                group[inc.id] = inc
                if reorder:  # a reopened incident goes back to its place
                    self._open_now = dict(sorted(self._open_now.items(), key=lambda kv: kv[1].seq))
                    self._open_by_key[inc.group_key] = dict(sorted(group.items(), key=lambda kv: kv[1].seq))
        else:
            if self._open_now.pop(inc.id, None) is not None:
                held = self._open_by_key.get(inc.group_key)
                if held is not None:
                    held.pop(inc.id, None)
                    if not held:
                        del self._open_by_key[inc.group_key]

    def set_extra(self, incident_id: str, key: str, value: Any) -> bool:
        """Let another package attach a field to an incident (shown in the API and
        the replay result) and have it persisted. False when the incident is not held here."""
        inc = self.incidents.get(incident_id)
        if inc is None:
            return False
        inc.extra[key] = value
        self._dirty.add(incident_id)
        return True

    def set_problem_id(self, incident_id: str, problem_id: str | None) -> bool:
        """Link an active incident to a problem (the problems package); persisted with
        the incident. False when the incident is no longer held here."""
        inc = self.incidents.get(incident_id) or self._pending_docs.get(incident_id)
        if inc is None:
            return False
        inc.problem_id = problem_id
        self._dirty.add(incident_id)
        return True

    @property
    def held(self) -> int:
        """How many incidents are held: open, and resolved within the reopen window."""
        return len(self.incidents)

    def joinable_incidents(self, now: float, on: Collection[str] | None = None,
                           on_any_ci: bool = False) -> list[Incident]:
        """Open incidents and those resolved within the reopen window, in opening order:
        a new alert that belongs to a just-resolved incident reopens it rather than
        opening another. `on`: only those with an alert on one of these CIs;
        `on_any_ci`: only those with an alert on a CI at all."""
        window = self.settings.reopen_window
        if on_any_ci and on is None:
            held: Iterable[Incident] = sorted(filter(None, map(self.incidents.get, self._cis_held)), key=_seq)
        elif on is None:
            held = self.incidents.values()
        else:
            index = self._on_ci
            ids: set[str] = set()
            for ci in (on if len(on) < len(index) else [c for c in index if c in on]):
                got = index.get(ci)
                if got:
                    ids.update(got)
            held = sorted(filter(None, map(self.incidents.get, ids)), key=_seq)
        return [i for i in held if _joinable(i, now, window)]

    def joinable(self, inc: Incident, now: float) -> bool:
        """Whether `inc` is among the `joinable_incidents`."""
        return self.incidents.get(inc.id) is inc and _joinable(inc, now, self.settings.reopen_window)

    def _index(self, inc: Incident, members: Iterable[Member]) -> None:
        """Index `inc` under the CIs of `members`, alerts it just gained."""
        index = self._on_ci
        held = self._cis_held
        for m in members:
            if m.ci:
                got = index.get(m.ci)
                if got is None:
                    index[m.ci] = {inc.id}
                elif inc.id not in got:
                    got.add(inc.id)
                else:
                    continue
                held[inc.id] = held.get(inc.id, 0) + 1

    def _unindex(self, inc: Incident, cis: Iterable[str | None], left: Collection[str] | None = None) -> None:
        """Take `inc` out of the index under those of `cis` it has no alert on any more
        (`left`: the CIs it still has alerts on; by default, worked out from its alerts)."""
        gone = {ci for ci in cis if ci}
        if not gone:
            return
        index = self._on_ci
        held = self._cis_held
        for ci in gone.difference(inc.cis if left is None else left):
            got = index.get(ci)
            if got is not None and inc.id in got:
                got.remove(inc.id)
                if not got:
                    del index[ci]
                if held[inc.id] > 1:
                    held[inc.id] -= 1
                else:
                    del held[inc.id]

    def incident_for(self, fingerprint: str) -> Incident | None:
        iid = self.by_fingerprint.get(fingerprint)
        return self.incidents.get(iid) if iid else None

    # -- alerts -------------------------------------------------------------------

    def absorb_repost(self, event: AlertEvent, now: float) -> bool:
        """Fast path for the common case: an alert that is already firing in an
        active incident is posted again. Updates it; True if nothing else to do."""
        alert = event.alert
        if alert.status != "firing":
            return False
        iid = self.by_fingerprint.get(alert.fingerprint)
        if iid is None:
            return False
        inc = self.incidents[iid]
        m = inc.alerts[alert.fingerprint]
        due = self._epoch_due
        if due is not None and now >= due:
            if due == -math.inf and self.next_start is not None:
                # the first look since something changed: one recorded ahead that started
                # meanwhile (nobody had asked for its start yet) counts as well
                due = self.next_start(self._epoch_asked)
            if due is not None and due != -math.inf and due <= now:
                self.epoch += 1  # a silence or change recorded ahead has started
            self._epoch_due = self.next_start(now) if self.next_start is not None else None
            self._epoch_asked = now
        if self._stages_saw.get(alert.fingerprint) != self.epoch or alert.fingerprint in self.must_see:
            return False
        if m.status != "firing" or m.suppressed or self._began_anew(m, alert):
            # a suppressed alert goes through the stages again: its silence,
            # change or inhibiting alert may have ended
            return False
        m.last_at = now
        if alert.ends_at != m.ends_at:
            m.ends_at = alert.ends_at
            if alert.ends_at is not None:
                self._schedule_expire(alert.fingerprint, alert.ends_at)
        if alert.annotations != m.annotations:
            m.annotations = alert.annotations
            self._dirty.add(iid)
        else:
            # only when it was last seen and when it ends changed: one small row,
            # not the whole incident document (`alert_seen`, see `drain_writes`)
            self._seen[alert.fingerprint] = m
        return True

    def apply(self, events: list[AlertEvent], now: float) -> list[IncidentChange]:
        """Apply alert events (in order); returns the incident changes they caused."""
        for event in events:
            self._apply_one(event, now)
        self._analyze_pending(now)
        return self.drain_changes()

    def stages_changed(self) -> None:
        """Something the stages decide by changed: every firing alert goes through them
        again at its next re-post."""
        self.epoch += 1
        self._epoch_due = -math.inf  # and when the next one recorded ahead starts, asked then

    def _apply_one(self, event: AlertEvent, now: float) -> None:
        alert = event.alert
        fp = alert.fingerprint
        inc = self.incident_for(fp)
        if inc is None and alert.status != "firing":
            ended = self._ended.get(fp)
            if ended is not None and alert.starts_at is not None and alert.starts_at <= ended:
                # the resolution of an occurrence already recorded and let go, sent again
                return
        self._stages_saw[fp] = self.epoch
        if inc is not None:
            m = inc.alerts[fp]
            was_suppressed = m.suppressed
            self._update_member_flags(m, event)
            if m.suppressed != was_suppressed:
                inc.revision += 1  # what derives from the members (its severity, paging) changed
            if alert.status == "firing":
                if m.status == "firing" and not self._began_anew(m, alert):
                    m.last_at = now
                    m.ends_at = alert.ends_at
                    if alert.ends_at is not None:
                        self._schedule_expire(fp, alert.ends_at)
                    m.annotations = alert.annotations
                    self._dirty.add(inc.id)
                    if was_suppressed != m.suppressed and inc.is_open:
                        if m.suppressed:  # a silence, change or inhibiting alert that came later
                            why = m.silenced_by and f"silenced by {m.silenced_by}" or \
                                m.expected and f"expected: {m.expected}" or f"inhibited by {m.inhibited_by}"
                            self._timeline_add(inc, now, "alert_suppressed", "incidentd",
                                               f"alert {alert.name or fp} is now {why}")
                        else:
                            self._timeline_add(inc, now, "alert_unsuppressed", "incidentd",
                                               f"alert {alert.name or fp} is no longer silenced, inhibited or expected")
                        self._refresh(inc, now)
                    return
                if m.status == "firing":
                    # it began again long after the last notification of this occurrence,
                    # which therefore ended unseen: its resolution was lost, or never sent
                    # (an Alertmanager receiver with `send_resolved: false`)
                    self._member_resolves(inc, m, m.last_at, now)
                elif self._fault_over(inc, m, alert, now):
                    pass  # a symptom firing again after its fault was over: a new occurrence, placed afresh
                elif inc.is_open and (m.flapping or now - m.ended_at < self.settings.reopen_window):
                    self._member_fires(inc, m, alert, now)
                    return
                elif inc.resolved_at is not None and now - inc.resolved_at < self.settings.reopen_window \
                        and inc.state == RESOLVED:
                    self._member_fires(inc, m, alert, now)
                    self._reopen(inc, now, f"alert {alert.name or fp} fired again")
                    return
                # resolved too long ago to be the same occurrence (the incident may still be
                # open for its other alerts): a new one, placed afresh
                self._detach(fp)
            else:
                if m.status == "firing":
                    self._member_resolves(inc, m, alert.ends_at or now, now)
                else:
                    m.last_at = now
                    m.ends_at = alert.ends_at
                    self._dirty.add(inc.id)
                return
        self._place_new(event, now)

    def _forgotten(self, inc: Incident) -> None:
        """`inc` left the manager: the correlator may drop what it keeps of it."""
        forget = getattr(self.correlator, "forget", None)
        if forget is not None:
            forget(inc.id)

    def _fault_over(self, inc: Incident, m: Member, alert: Any, now: float) -> bool:
        """Whether the fault of `inc` was over before its resolved member `m` fired again
        (see the correlator's `over`; a member that flapped keeps its incident flapping)."""
        over = getattr(self.correlator, "over", None)
        return over is not None and m.ci is not None and over(inc, alert.began(now), m.ci)

    def _began_anew(self, m: Member, alert: Any) -> bool:
        """Whether a firing alert's new notification starts a later occurrence than the
        member's: Alertmanager (and Prometheus) keep an alert's `startsAt` while it
        fires, so one past the member's last notification by more than the reopen
        window began after the member's occurrence had ended. Only for a member with
        no known end (a webhook's firing alert): one whose `endsAt` reaches the new
        start overlaps it, and Alertmanager would merge the two as one alert."""
        return m.ends_at is None and alert.starts_at is not None \
            and alert.starts_at - m.last_at >= self.settings.reopen_window

    def _update_member_flags(self, m: Member, event: AlertEvent) -> None:
        m.silenced_by = event.silenced_by
        m.inhibited_by = event.inhibited_by
        m.expected = event.expected

    def _place_new(self, event: AlertEvent, now: float, leaving: str | None = None,
                   since: float | None = None) -> None:
        """Place a new alert (an alert firing `since` then, let go by the incident `leaving`)."""
        alert = event.alert
        placement = self.correlator.place(event, self, now, since=since, leaving=leaving)
        targets = [self.incidents[i] for i in placement.incident_ids if i in self.incidents and i != leaving]
        targets = [t for t in targets if t.is_open or (t.state == RESOLVED and since is None)]
        if len(targets) > 1:  # incidents a person split apart are not merged back
            first = targets[0]
            targets = [first, *(t for t in targets[1:] if not _kept_apart(first, t))]
        if not targets and event.silenced_by:
            # silenced and related to nothing open: recorded (the silence stage
            # counts it in the metrics; the log here), no incident
            log.info("alert silenced", fingerprint=alert.fingerprint, silence=event.silenced_by)
            self._stages_saw.pop(alert.fingerprint, None)
            return
        member = Member(
            fingerprint=alert.fingerprint, labels=alert.labels, annotations=alert.annotations,
            status=alert.status, starts_at=alert.starts_at, ends_at=alert.ends_at,
            first_at=now, last_at=now, since=now if since is None else since, source=alert.source,
            ci=event.ci, reason=placement.reason,
            silenced_by=event.silenced_by, inhibited_by=event.inhibited_by, expected=event.expected,
        )
        if targets:
            inc = targets[0]
            for other in targets[1:]:
                self._merge(other, inc, now, placement.reason)
            if inc.state == RESOLVED:
                self._reopen(inc, now, f"related alert {alert.name or alert.fingerprint} fired: {placement.reason}")
            self._carry_acknowledgement(inc, targets[1:], now)
        else:
            inc = self._open(event, placement.group_key, now)
        self._attach(inc, member, event, now)
        if alert.status != "firing":
            self._member_resolves(inc, member, alert.ends_at or now, now, attaching=True)

    def _open(self, event: AlertEvent, group_key: str, now: float) -> Incident:
        seq = self._next_seq
        self._next_seq += 1
        alert = event.alert
        title = alert.annotations.get("summary") or alert.name or "alert"
        inc = Incident(id=f"INC-{seq:06d}", seq=seq, state=OPEN, opened_at=now, updated_at=now,
                       group_key=group_key, title=title[:200], last_alert_at=now,
                       team=event.team, receiver=event.receiver)
        self.incidents[inc.id] = inc
        self._track(inc)
        self._timeline_add(inc, now, "opened", "incidentd", f"incident opened by {alert.name or alert.fingerprint}")
        self._emit("opened", inc, now)
        if self.metrics:
            self.metrics.incident_opened()
        log.info("incident opened", incident_id=inc.id, alertname=alert.name, ci=event.ci)
        return inc

    def _attach(self, inc: Incident, m: Member, event: AlertEvent, now: float) -> None:
        old = inc.alerts.get(m.fingerprint)
        fresh = old is None
        inc.alerts[m.fingerprint] = m
        self._index(inc, (m,))
        if old is not None and old.ci != m.ci:
            self._unindex(inc, (old.ci,))
        inc.revision += 1
        inc.appended = (inc.revision, m) if fresh else None
        self._hold(m.fingerprint, inc)
        inc.last_alert_at = now
        inc.updated_at = now
        self._look_soon(inc, now)
        if m.ends_at is not None and m.status == "firing":
            self._schedule_expire(m.fingerprint, m.ends_at)
        flags = [f for f, on in (("silenced", m.silenced_by), ("inhibited", m.inhibited_by),
                                 ("expected", m.expected)) if on]
        text = f"alert {m.labels.get('alertname', m.fingerprint)} attached"
        if m.reason:
            text += f": {m.reason}"
        if flags:
            text += f" [{', '.join(flags)}]"
        self._timeline_add(inc, now, "alert_attached", "incidentd", text,
                           {"fingerprint": m.fingerprint, "labels": m.labels, "ci": m.ci,
                            "silenced_by": m.silenced_by, "inhibited_by": m.inhibited_by,
                            "expected": m.expected, "notes": list(event.notes)})
        if event.team and not inc.team:
            inc.team = event.team
        if event.receiver and not inc.receiver:
            inc.receiver = event.receiver
        if event.priority:
            inc.rule_priority = more_urgent(inc.rule_priority, event.priority)
        if len(inc.alerts) > 1:
            self._emit("alert_added", inc, now, {"fingerprint": m.fingerprint})
        self._refresh(inc, now)
        self._to_analyze.add(inc.id)

    def _member_fires(self, inc: Incident, m: Member, alert: Any, now: float) -> None:
        m.status = "firing"
        m.since = now
        inc.revision += 1
        self._look_soon(inc, now)
        m.starts_at = alert.starts_at
        m.ends_at = alert.ends_at
        m.annotations = alert.annotations
        m.last_at = now
        self._transition(inc, m, now)
        inc.last_alert_at = now
        inc.resolve_due = None
        if m.ends_at is not None:
            self._schedule_expire(m.fingerprint, m.ends_at)
        self._timeline_add(inc, now, "alert_firing", "incidentd",
                           f"alert {m.labels.get('alertname', m.fingerprint)} firing again",
                           {"fingerprint": m.fingerprint})
        self._refresh(inc, now)

    def _member_resolves(self, inc: Incident, m: Member, ends_at: float, now: float,
                         attaching: bool = False) -> None:
        if m.status == "firing":
            inc.member_resolved()
        m.status = "resolved"
        m.ends_at = ends_at
        m.last_at = now
        if not attaching:
            self._transition(inc, m, now)
            self._timeline_add(inc, now, "alert_resolved", "incidentd",
                               f"alert {m.labels.get('alertname', m.fingerprint)} resolved",
                               {"fingerprint": m.fingerprint})
            self._emit("alert_resolved", inc, now, {"fingerprint": m.fingerprint})
        self._dirty.add(inc.id)
        if not self._resolve_if_quiet(inc, now):
            self._refresh(inc, now)
            if m.ci is not None:
                self._look_soon(inc, now)

    def _resolve_if_quiet(self, inc: Incident, now: float, why: str = "all alerts resolved",
                          ended: float | None = None) -> bool:
        """Resolve an open incident none of whose alerts fires (once settled, when some
        flapped); whether none fires."""
        if not inc.is_open or inc.any_firing():
            return False
        inc.flapping = any(m.flapping for m in inc.alerts.values())  # (whatever left or joined it)
        if inc.flapping:
            inc.resolve_due = now + self.settings.flap_window
            self._schedule(inc.resolve_due, "settle", inc.id)
        else:
            self._resolve(inc, now, "incidentd", why, ended)
        return True

    def _let_outlasting_go(self, inc: Incident, now: float) -> None:
        """Detach the alerts firing on long after the alerts of the fault resolved (see
        the correlator's `outlasting`); until then, look again when that time comes."""
        got = self.correlator.outlasting(inc) if inc.is_open else None
        if got is None:
            return
        cleared, due, fingerprints = got
        if due > now:
            self._look_for_outlasting(inc.id, due)
            return
        root = inc.root_cause
        if self._detach_members(inc, fingerprints, root, now,
                                f"firing {(now - cleared) / 60:.0f} min after the alerts of the fault at {root} resolved"):
            self._analyze_one(inc, now)  # (now, before it may be let go as resolved)
            # resolved as of when its last alert ended: the fault was over then
            ended = max((m.ended_at for m in inc.alerts.values()), default=now)
            self._resolve_if_quiet(inc, now, f"the alerts of the fault at {root} resolved", ended)

    def _look_soon(self, inc: Incident, now: float) -> None:
        """An alert of `inc` joined, fired again or resolved, or its root cause changed: look
        for alerts outlasting its fault after `OUTLAST_LOOK` (a fault that ended already may
        have gained one; the fault's last alert may have gone)."""
        if inc.root_cause is not None:
            self._look_for_outlasting(inc.id, now + OUTLAST_LOOK)

    def _look_for_outlasting(self, incident_id: str, at: float) -> None:
        """Have `_let_outlasting_go` look at the incident at `at`, unless it will by then."""
        pending = self._outlast_due.get(incident_id)
        if pending is None or at < pending:
            self._outlast_due[incident_id] = at
            self._schedule(at, "outlast", incident_id)

    def _transition(self, inc: Incident, m: Member, now: float) -> None:
        window = self.settings.flap_window
        m.transitions = [t for t in m.transitions if now - t <= window] + [now]
        flapping = len(m.transitions) >= self.settings.flap_threshold
        if flapping and not m.flapping:
            self._timeline_add(inc, now, "flapping", "incidentd",
                               f"alert {m.labels.get('alertname', m.fingerprint)} is flapping "
                               f"({len(m.transitions)} changes in {int(window)}s)",
                               {"fingerprint": m.fingerprint})
            log.info("alert flapping", incident_id=inc.id, fingerprint=m.fingerprint)
        m.flapping = flapping
        # every member is looked at only when the incident may stop flapping: each of the
        # thousands of alerts of a large incident resolving comes here
        if flapping:
            inc.flapping = True
        elif inc.flapping:
            inc.flapping = any(x.flapping for x in inc.alerts.values())

    def _hold(self, fp: str, inc: Incident) -> None:
        """`inc` gained the alert `fp`: the alert is found there from now on, unless another
        incident holds a later occurrence of it (an alert that resolved in one incident and
        fired anew in another is the other's, whatever becomes of its old occurrence)."""
        held = self.incidents.get(self.by_fingerprint.get(fp, ""))
        if held is None or held is inc or fp not in held.alerts or held.alerts[fp].last_at <= inc.alerts[fp].last_at:
            self.by_fingerprint[fp] = inc.id

    def _detach(self, fp: str) -> None:
        self.by_fingerprint.pop(fp, None)
        self._stages_saw.pop(fp, None)

    # -- lifecycle ----------------------------------------------------------------

    def _resolve(self, inc: Incident, now: float, actor: str, why: str, ended: float | None = None) -> None:
        """`ended`: when the fault ended, if before `now` (the incident's resolution time,
        from which it may reopen)."""
        inc.state = RESOLVED
        self._track(inc)
        inc.resolved_at = now if ended is None else min(ended, now)
        inc.resolved_by = actor
        inc.updated_at = now
        inc.resolve_due = None
        self._timeline_add(inc, now, "resolved", actor, f"incident resolved: {why}")
        self._emit("resolved", inc, now, actor=actor)
        self._schedule(inc.resolved_at + self.settings.reopen_window, "evict", inc.id)
        if self.metrics:
            self.metrics.incident_resolved(inc)
        log.info("incident resolved", incident_id=inc.id, actor=actor, reason=why)

    def _reopen(self, inc: Incident, now: float, why: str) -> None:
        inc.state = OPEN
        self._track(inc)
        inc.resolved_at = None
        inc.resolved_by = None
        inc.acknowledged_at = None
        inc.acknowledged_by = None
        inc.updated_at = now
        self._timeline_add(inc, now, "reopened", "incidentd", f"incident reopened: {why}")
        self._emit("reopened", inc, now)
        if self.metrics:
            self.metrics.incident_reopened()
        log.info("incident reopened", incident_id=inc.id, reason=why)
        self._refresh(inc, now)

    def _carry_acknowledgement(self, inc: Incident, merged: list[Incident], now: float) -> None:
        """The earliest acknowledgement of the incidents merged into `inc`, if it had none."""
        acked = [o for o in merged if o.state == MERGED and o.acknowledged_at is not None]
        if acked and inc.state == OPEN:
            self._acknowledged_through(inc, min(acked, key=lambda o: o.acknowledged_at or 0.0), now)

    def _merge(self, src: Incident, dst: Incident, now: float, reason: str, actor: str = "incidentd") -> None:
        taken, replaced = [], set()
        for fp, m in src.alerts.items():
            kept = dst.alerts.get(fp)  # an alert that fired once in each: keep the latest
            if kept is None or m.last_at >= kept.last_at:
                dst.alerts[fp] = m
                taken.append(m)
                if kept is not None:
                    replaced.add(kept.ci)
            self._hold(fp, dst)
        self._index(dst, taken)
        self._unindex(dst, replaced)
        self._unindex(src, src.cis, left=())  # its alerts are dst's now
        dst.revision += 1
        dst.flapping = any(m.flapping for m in dst.alerts.values())
        apart = {*dst.extra.get("kept_apart_from", ()), *src.extra.get("kept_apart_from", ())} - {src.id, dst.id}
        if apart or "kept_apart_from" in dst.extra:
            dst.extra["kept_apart_from"] = sorted(apart)
        dst.opened_at = min(dst.opened_at, src.opened_at)
        dst.rule_priority = more_urgent(dst.rule_priority, src.rule_priority)
        src.alerts = {}
        src.state = MERGED
        src.merged_into = dst.id
        src.updated_at = now
        self._timeline_add(src, now, "merged", actor, f"merged into {dst.id}: {reason}")
        self._timeline_add(dst, now, "merged", actor, f"{src.id} merged in: {reason}",
                           {"merged": src.id})
        self._emit("merged", dst, now, {"merged": src.id}, actor=actor)
        self.incidents.pop(src.id, None)
        self._track(src)
        self._forgotten(src)
        self._dirty.add(src.id)
        self._pending_docs[src.id] = src
        self._to_analyze.add(dst.id)
        log.info("incidents merged", incident_id=dst.id, merged=src.id, reason=reason)

    def _detach_members(self, inc: Incident, fingerprints: list[str], root: str | None, now: float,
                        why: str = "") -> bool:
        """Let alerts go that the incident's root cause does not explain (`why`: how it
        tells); each is placed again among the other incidents, a firing one as firing
        since it began (see the correlator's `place`), often into an incident of its own."""
        moved = [inc.alerts.pop(fp) for fp in fingerprints
                 if fp in inc.alerts and not inc.alerts[fp].kept_by and len(inc.alerts) > 1]
        inc.revision += 1
        self._unindex(inc, [m.ci for m in moved])
        for m in moved:
            if self.by_fingerprint.get(m.fingerprint) == inc.id:
                del self.by_fingerprint[m.fingerprint]
            name = m.labels.get("alertname", m.fingerprint)
            self._timeline_add(inc, now, "alert_detached", "incidentd",
                               f"alert {name} detached: {why or f'a fault at {root} does not explain it'}",
                               {"fingerprint": m.fingerprint})
            self._place_new(_event_of(m), now, leaving=inc.id, since=m.since if m.status == "firing" else None)
        if moved:
            self._refresh(inc, now)
        return bool(moved)

    @staticmethod
    def _members_state(inc: Incident) -> tuple[str, bool]:
        """The incident's severity (the highest of its alerts that are not suppressed, or
        of all when every one is) and whether it pages (one of them is not suppressed).
        Kept per revision; a revision that only added an alert is worked out from the one
        before, so an incident of thousands of alerts does not look at each one again
        with every one that joins."""
        got = inc.derived
        if got is not None and got[0] == inc.revision:
            return got[1], got[2]
        added = inc.appended
        if got is not None and got[0] == inc.revision - 1 and added is not None and added[0] == inc.revision:
            severity, paging = got[1], got[2]
            m = added[1]
            if not m.suppressed and not paging:  # the first one that is not suppressed
                severity, paging = m.labels.get("severity") or "none", True
            elif (not m.suppressed or not paging) and \
                    severity_rank(m.labels.get("severity")) > severity_rank(severity):
                severity = m.labels.get("severity") or "none"
        else:
            members = list(inc.alerts.values())
            live = [m for m in members if not m.suppressed] or members
            sev_member = max(live, key=lambda m: severity_rank(m.labels.get("severity")), default=None)
            severity = (sev_member.labels.get("severity") or "none") if sev_member else "none"
            paging = any(not m.suppressed for m in members)
        inc.derived = (inc.revision, severity, paging)
        return severity, paging

    def _refresh(self, inc: Incident, now: float) -> None:
        """Recompute what derives from the alerts: severity, paging, priority."""
        old_sev, old_pri = inc.severity, inc.priority
        was_paging = inc.paging
        inc.severity, inc.paging = self._members_state(inc)
        several = len(inc.alerts) > 1
        base = _SEVERITY_PRIORITY[min(severity_rank(inc.severity), 4)]
        priority = more_urgent(base, inc.extra.get("impact_priority"))
        if inc.rule_priority:
            priority = inc.rule_priority
        inc.priority = priority or "P5"
        inc.updated_at = now
        self._dirty.add(inc.id)
        if inc.is_open and severity_rank(inc.severity) > severity_rank(old_sev) and several:
            self._emit("severity_raised", inc, now, {"from": old_sev, "to": inc.severity})
        if inc.is_open and inc.priority < old_pri and several:
            self._emit("priority_raised", inc, now, {"from": old_pri, "to": inc.priority})
        if inc.is_open and inc.paging and not was_paging:
            # notifications wait while an incident does not page, and go out once it does
            self._emit("paging", inc, now, {})

    def _analyze_pending(self, now: float) -> None:
        # an alert detached from one incident is placed again and marks the incident it
        # lands in (often a new one) for analysis: a few more rounds take those; what is
        # left (alerts moving on and on) waits for the next call
        for _ in range(3):
            if not self._to_analyze:
                return
            pending = sorted(self._to_analyze)
            self._to_analyze.clear()
            for iid in pending:
                inc = self.incidents.get(iid)
                if inc is not None:
                    self._analyze_one(inc, now)

    def _analyze_one(self, inc: Incident, now: float) -> None:
        a = self.correlator.analyze(inc, now, self)
        if a.detach and self._detach_members(inc, a.detach, a.root_cause, now):
            a = self.correlator.analyze(inc, now, self)
        changed = a.root_cause != inc.root_cause
        self._to_analyze.update(i for i in a.rereads if i in self._open_now)
        inc.root_cause = a.root_cause
        inc.root_cause_candidates = a.candidates
        inc.impacted = a.impacted
        inc.explanation = a.explanation
        if a.priority:
            inc.extra["impact_priority"] = a.priority
        if changed and a.root_cause is not None:
            self._timeline_add(inc, now, "root_cause", "incidentd",
                               f"root cause: {a.root_cause}" + (f" ({a.explanation})" if a.explanation else ""))
            if len(inc.alerts) > 1:
                self._emit("root_cause_changed", inc, now, {"root_cause": a.root_cause})
        self._refresh(inc, now)
        if changed:
            self._look_soon(inc, now)

    # -- commands from people -------------------------------------------------------

    def _require(self, incident_id: str) -> Incident:
        inc = self.incidents.get(incident_id)
        if inc is None:
            raise IncidentError(404, f"incident {incident_id} is not open")
        return inc

    def acknowledge(self, incident_id: str, actor: str, now: float) -> Incident:
        inc = self._require(incident_id)
        if inc.state != OPEN:
            raise IncidentError(409, f"incident {incident_id} is {inc.state}, not open")
        inc.state = ACKNOWLEDGED
        inc.acknowledged_at = now
        inc.acknowledged_by = actor
        inc.updated_at = now
        self._dirty.add(inc.id)
        self._timeline_add(inc, now, "acknowledged", actor, f"acknowledged by {actor}")
        self._emit("acknowledged", inc, now, actor=actor)
        if self.metrics:
            self.metrics.incident_acknowledged(inc)
        log.info("incident acknowledged", incident_id=inc.id, actor=actor)
        return inc

    def _acknowledged_through(self, inc: Incident, src: Incident, now: float) -> None:
        """`src`, merged into `inc`, had been acknowledged: someone is on the fault, so
        the incident it is now part of is acknowledged as of then, and stops paging."""
        inc.state = ACKNOWLEDGED
        inc.acknowledged_at = src.acknowledged_at
        inc.acknowledged_by = src.acknowledged_by
        inc.updated_at = now
        self._dirty.add(inc.id)
        self._timeline_add(inc, now, "acknowledged", "incidentd",
                           f"acknowledged: {src.id}, merged in, was acknowledged by {src.acknowledged_by}")
        self._emit("acknowledged", inc, now, {"through": src.id}, actor=src.acknowledged_by or "incidentd")
        log.info("incident acknowledged through a merge", incident_id=inc.id, merged=src.id)

    def merge(self, target_id: str, source_ids: list[str], actor: str, now: float) -> Incident:
        """A person says these incidents are one fault: the sources' alerts join the open
        target as the correlator's merges bring them, the root cause is ranked again over
        all of them, and the ranking does not detach what the person put together (later
        alerts are still placed by the correlator). A source that was acknowledged
        acknowledges an unacknowledged target. Sources are incidents still held: open,
        or resolved within the reopen window."""
        dst = self._require(target_id)
        if not dst.is_open:
            raise IncidentError(409, f"incident {target_id} is {dst.state}, not open")
        sources: list[Incident] = []
        for sid in dict.fromkeys(source_ids):
            if sid == target_id:
                raise IncidentError(400, f"incident {sid} cannot be merged into itself")
            src = self.incidents.get(sid)
            if src is None:
                raise IncidentError(404, f"incident {sid} is neither open nor recently resolved")
            sources.append(src)
        for src in sources:  # (two incidents a person split apart may be merged by a person)
            self._merge(src, dst, now, f"merged by {actor}", actor=actor)
        for m in dst.alerts.values():
            m.kept_by = m.kept_by or actor
        self._carry_acknowledgement(dst, sources, now)
        self._analyze_pending(now)
        return dst

    def split(self, incident_id: str, fingerprints: list[str], actor: str, now: float) -> Incident:
        """A person says these alerts are another fault: they leave the open incident for
        a new one, kept there (see `merge`), and the correlation does not merge the two
        back when a later alert relates to both. Returns the new incident."""
        inc = self._require(incident_id)
        if not inc.is_open:
            raise IncidentError(409, f"incident {incident_id} is {inc.state}, not open")
        fps = list(dict.fromkeys(fingerprints))
        strangers = [fp for fp in fps if fp not in inc.alerts]
        if strangers:
            raise IncidentError(400, f"alert {strangers[0]} is not in incident {incident_id}")
        if len(fps) >= len(inc.alerts):
            raise IncidentError(400, f"at least one alert must stay in incident {incident_id}")
        moved = [inc.alerts.pop(fp) for fp in fps]
        inc.revision += 1
        self._unindex(inc, [m.ci for m in moved])
        new = self._open(_event_of(moved[0]), inc.group_key, now)
        new.team, new.receiver, new.rule_priority = inc.team, inc.receiver, inc.rule_priority
        for m in moved:
            m.kept_by, m.reason = actor, f"split from {inc.id} by {actor}"
            new.alerts[m.fingerprint] = m
            self._hold(m.fingerprint, new)
            self._timeline_add(inc, now, "alert_detached", actor,
                               f"alert {m.labels.get('alertname', m.fingerprint)} split off into {new.id} by {actor}",
                               {"fingerprint": m.fingerprint})
        new.revision += 1
        self._index(new, moved)
        new.last_alert_at = max(m.last_at for m in moved)
        self._timeline_add(new, now, "split", actor, f"split from {inc.id} by {actor}: {len(moved)} alert(s)",
                           {"from": inc.id, "fingerprints": fps})
        inc.extra["kept_apart_from"] = sorted({*inc.extra.get("kept_apart_from", ()), new.id})
        new.extra["kept_apart_from"] = [inc.id]
        for i in (inc, new):
            self._refresh(i, now)
            self._to_analyze.add(i.id)
        self._analyze_pending(now)
        log.info("incident split", incident_id=inc.id, into=new.id, actor=actor, alerts=len(moved))
        return new

    def resolve(self, incident_id: str, actor: str, now: float, note: str = "") -> Incident:
        inc = self._require(incident_id)
        if not inc.is_open:
            raise IncidentError(409, f"incident {incident_id} is already {inc.state}")
        self._resolve(inc, now, actor, note or f"resolved by {actor}")
        return inc

    def add_note(self, incident_id: str, text: str, author: str, now: float) -> TimelineEntry:
        inc = self._require(incident_id)
        inc.updated_at = now
        self._dirty.add(inc.id)
        entry = self._timeline_add(inc, now, "note", author, text)
        self._emit("note", inc, now, {"text": text}, actor=author)
        return entry

    def add_note_to_stored(self, incident_id: str, text: str, author: str, now: float) -> TimelineEntry:
        """A note on an incident let go from memory (resolved before the reopen window):
        a postmortem remark goes to its timeline all the same. The caller checks that the
        store has the incident."""
        entry = TimelineEntry(incident_id, now, "note", author, text)
        self._timeline.append(entry)
        return entry

    # -- timers ---------------------------------------------------------------------

    def _schedule(self, due: float, kind: str, key: str) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (due, self._timer_seq, kind, key))

    def _schedule_expire(self, fingerprint: str, ends_at: float) -> None:
        """One pending expire timer per alert: a re-post that moves `endsAt` later
        schedules nothing; the timer, when it fires, schedules the new end."""
        due = self._expire_due.get(fingerprint)
        if due is None or ends_at < due:
            self._expire_due[fingerprint] = ends_at
            self._schedule(ends_at, "expire", fingerprint)

    def _schedule_incident_timers(self, inc: Incident) -> None:
        if inc.state == RESOLVED and inc.resolved_at is not None:
            self._schedule(inc.resolved_at + self.settings.reopen_window, "evict", inc.id)
        if inc.resolve_due is not None:
            self._schedule(inc.resolve_due, "settle", inc.id)
        for m in inc.alerts.values():
            if m.status == "firing" and m.ends_at is not None:
                self._schedule_expire(m.fingerprint, m.ends_at)
        if inc.is_open and inc.root_cause is not None:
            self._look_for_outlasting(inc.id, -math.inf)  # at the first tick, not at start-up

    def next_deadline(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def tick(self, now: float) -> list[IncidentChange]:
        """Fire every timer due at or before `now`."""
        while self._timers and self._timers[0][0] <= now:
            due, _, kind, key = heapq.heappop(self._timers)
            if kind == "expire":
                if self._expire_due.get(key) != due:
                    continue  # superseded by an earlier expire timer of the same alert
                del self._expire_due[key]
                inc = self.incident_for(key)
                m = inc.alerts.get(key) if inc else None
                if inc and m and m.status == "firing" and m.ends_at is not None:
                    if m.ends_at <= now:
                        self._member_resolves(inc, m, m.ends_at, now)
                    else:
                        self._schedule_expire(key, m.ends_at)
            elif kind == "settle":
                inc = self.incidents.get(key)
                if inc and inc.is_open and inc.resolve_due is not None and inc.resolve_due <= now \
                        and not inc.any_firing():
                    self._resolve(inc, now, "incidentd", "flapping alerts settled")
            elif kind == "outlast":
                if self._outlast_due.get(key) != due:
                    continue  # superseded by an earlier look
                del self._outlast_due[key]
                inc = self.incidents.get(key)
                if inc is not None:
                    self._let_outlasting_go(inc, now)
            elif kind == "evict":
                inc = self.incidents.get(key)
                if inc and inc.state == RESOLVED and inc.resolved_at is not None \
                        and now - inc.resolved_at >= self.settings.reopen_window:
                    self._evict(inc)
        self._analyze_pending(now)
        return self.drain_changes()

    def _evict(self, inc: Incident) -> None:
        self.incidents.pop(inc.id, None)
        self._forgotten(inc)
        self._track(inc)
        self._unindex(inc, inc.cis, left=())
        self._evicted.append(inc.id)
        if inc.id in self._dirty:
            self._pending_docs[inc.id] = inc
        for fp, m in inc.alerts.items():
            if self.by_fingerprint.get(fp) == inc.id:
                del self.by_fingerprint[fp]
                self._stages_saw.pop(fp, None)
                self._ended.pop(fp, None)  # to the end: the dict keeps the most recent last
                self._ended[fp] = m.ended_at
                if len(self._ended) > ENDED_KEPT:
                    del self._ended[next(iter(self._ended))]

    # -- output -----------------------------------------------------------------------

    def _timeline_add(self, inc: Incident, at: float, kind: str, actor: str, text: str,
                      data: dict[str, Any] | None = None) -> TimelineEntry:
        entry = TimelineEntry(inc.id, at, kind, actor, text, data)
        self._timeline.append(entry)
        self._dirty.add(inc.id)
        return entry

    def _emit(self, kind: str, inc: Incident, at: float, detail: dict[str, Any] | None = None,
              actor: str = "incidentd") -> None:
        self._changes.append(IncidentChange(kind, inc, at, actor, detail or {}))

    def drain_changes(self) -> list[IncidentChange]:
        changes, self._changes = self._changes, []
        return changes

    def drain_writes(self, writes: Writes) -> None:
        """Add the rows for everything that changed since the last call."""
        pending = self._pending_docs
        rows = []
        for iid in sorted(self._dirty):
            inc = self.incidents.get(iid) or pending.get(iid)
            if inc is None:
                continue
            rows.append((inc.id, inc.seq, inc.state, inc.opened_at, inc.resolved_at, inc.updated_at,
                         inc.severity, inc.priority, dumps(inc.to_doc())))
        writes.extend(
            "INSERT INTO incidents (id, seq, state, opened_at, resolved_at, updated_at, severity, priority, doc)"
            " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET state=excluded.state,"
            " opened_at=excluded.opened_at, resolved_at=excluded.resolved_at,"
            " updated_at=excluded.updated_at, severity=excluded.severity,"
            " priority=excluded.priority, doc=excluded.doc",
            rows,
        )
        writes.extend(
            "INSERT INTO timeline (incident_id, at, kind, actor, text, data) VALUES (?,?,?,?,?,?)",
            ((e.incident_id, e.at, e.kind, e.actor, e.text, dumps(e.data) if e.data is not None else None)
             for e in self._timeline),
        )
        if self._next_seq != self._seq_written:
            writes.add("INSERT INTO meta (key, value) VALUES ('next_incident_seq', ?)"
                       " ON CONFLICT(key) DO UPDATE SET value=excluded.value", (str(self._next_seq),))
            self._seq_written = self._next_seq
        by_fp = self.by_fingerprint
        writes.extend(
            "INSERT INTO alert_seen (fingerprint, incident_id, last_at, ends_at) VALUES (?,?,?,?)"
            " ON CONFLICT(fingerprint) DO UPDATE SET incident_id=excluded.incident_id,"
            " last_at=excluded.last_at, ends_at=excluded.ends_at",
            [(fp, by_fp[fp], m.last_at, m.ends_at) for fp, m in self._seen.items() if fp in by_fp],
        )
        writes.extend("DELETE FROM alert_seen WHERE incident_id = ?", [(iid,) for iid in self._evicted])
        self._seen.clear()
        self._evicted.clear()
        self._dirty.clear()
        self._timeline.clear()
        self._pending_docs = {}
