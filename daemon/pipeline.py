"""The pipeline: every alert goes through the same stages, in the order built here.

Stages (Alertmanager's notify pipeline is the model) are small objects with
one job. Alert stages see a batch of `AlertEvent`s and return the ones that
go on; the incident stage turns them into `IncidentChange`s, which the
listeners after it (problems, notifications) receive. The daemon drives the
pipeline from the inbox on the wall clock; `replay` drives it from a file on
a virtual clock. Nothing here reads the system time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from daemon.model import Alert

if TYPE_CHECKING:
    from daemon.incidents import Incident, IncidentManager


@dataclass(slots=True)
class AlertEvent:
    """An alert moving through the pipeline, with what the stages learned about it."""

    alert: Alert
    ci: str | None = None  # the CMDB CI the alert belongs to
    dropped: bool = False  # a rule dropped it: it goes no further
    silenced_by: str | None = None  # silence id: recorded, never pages
    inhibited_by: str | None = None  # description of the inhibiting alert(s)
    expected: str | None = None  # change id: under maintenance, never pages
    priority: str | None = None  # P1..P5 set by rules
    team: str | None = None
    receiver: str | None = None
    runbook: str | None = None
    correlation_window: float | None = None  # rule override, seconds
    group_by: list[str] | None = None  # rule override of label grouping
    notes: list[str] = field(default_factory=list)  # shown in the incident timeline

    @property
    def suppressed(self) -> bool:
        """Recorded in its incident, but must not open, escalate or page."""
        return bool(self.silenced_by or self.inhibited_by or self.expected)

    @property
    def fingerprint(self) -> str:
        return self.alert.fingerprint


class Stage(Protocol):
    """One step over a batch of alerts; returns the events that go on."""

    name: str

    def process(self, events: list[AlertEvent], now: float) -> list[AlertEvent]: ...


@dataclass(slots=True)
class IncidentChange:
    """Something that happened to an incident, for the listeners after the incident stage.

    kind: opened, alert_added, alert_resolved, severity_raised, priority_raised,
    root_cause_changed, paging (it pages again: its alerts are no longer all
    silenced, inhibited or expected), acknowledged, resolved, reopened, merged, note.
    """

    kind: str
    incident: Incident
    at: float
    actor: str = "incidentd"
    detail: dict[str, Any] = field(default_factory=dict)


class IncidentListener(Protocol):
    """Receives incident changes (problems, notifications)."""

    name: str

    def on_changes(self, changes: list[IncidentChange], now: float) -> None: ...


@dataclass(slots=True)
class Placement:
    """Where the correlator puts a new alert.

    `incident_ids` empty: open a new incident; one id: join it; several: join
    the first and merge the others into it. `reason` is a short sentence for
    the timeline ("payments depends on orders-db (1 hop)").
    """

    incident_ids: list[str] = field(default_factory=list)
    reason: str = ""
    group_key: str = ""


@dataclass(slots=True)
class Analysis:
    """What the correlator concludes about an incident's alerts."""

    root_cause: str | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)  # [{"ci", "score"}], best first
    impacted: list[str] = field(default_factory=list)
    explanation: str = ""
    priority: str | None = None  # priority the impact justifies (P1..P5), if any
    detach: list[str] = field(default_factory=list)  # fingerprints the root cause does not explain
    # open incidents to analyze again: this one's root cause may now be theirs too
    rereads: list[str] = field(default_factory=list)


class Correlator(Protocol):
    """Groups alerts into incidents and explains them (the correlation package)."""

    # `leaving`: the incident that let the alert go, firing `since` then, to place it again
    def place(self, event: AlertEvent, incidents: IncidentManager, now: float,
              since: float | None = None, leaving: str | None = None) -> Placement: ...

    def analyze(self, incident: Incident, now: float, incidents: IncidentManager | None = None) -> Analysis: ...

    # when the incident's root cause stopped alerting, when the alerts still firing after
    # it are let go, and those alerts (None: none, or nothing tells when the fault ended)
    def outlasting(self, incident: Incident) -> tuple[float, float, list[str]] | None: ...

    # optional: whether the incident's fault was over before an alert that began at `begun`
    # (`ci`: that of one of its own alerts, firing again); without it, none is
    def over(self, incident: Incident, begun: float, ci: str | None = None) -> bool: ...

    # optional: the incident is gone from the manager (evicted or merged away); what the
    # correlator remembers of it can go
    def forget(self, incident_id: str) -> None: ...


class Pipeline:
    """Runs alert stages, then the incident manager, then the incident listeners.

    Components (stages, listeners and `extras` such as the detector bank) may
    also have `tick(now)`, `next_deadline()` and `drain_writes(writes)`; the
    pipeline calls them, so timers and persistence stay in one loop.
    """

    def __init__(
        self,
        stages: list[Stage],
        incidents: IncidentManager,
        listeners: list[IncidentListener] | None = None,
        *,
        samples: Any = None,
        change_sinks: list[Any] | None = None,
        extras: list[Any] | None = None,
        metrics: Any = None,
    ) -> None:
        self.stages = stages
        self.incidents = incidents
        self.listeners = listeners or []
        self.samples = samples  # has observe(samples, now) -> list[Alert]
        self.change_sinks = change_sinks or []  # have add_change(change: dict, now)
        self.metrics = metrics
        self.components: list[Any] = [*stages, *self.listeners, *(extras or [])]
        if samples is not None and samples not in self.components:
            self.components.append(samples)
        for sink in self.change_sinks:
            if sink not in self.components:
                self.components.append(sink)
        # asked before every replayed event: looked up once
        self._deadlines = [self.incidents.next_deadline] + [
            fn for c in self.components if (fn := getattr(c, "next_deadline", None)) is not None
        ]

    @property
    def order(self) -> list[str]:
        """The stage order, for logs and docs."""
        names = [getattr(s, "name", type(s).__name__) for s in self.stages]
        return [*names, "incidents", *(getattr(s, "name", type(s).__name__) for s in self.listeners)]

    def process_alerts(self, alerts: list[Alert], now: float) -> None:
        events: list[AlertEvent] = []
        absorb = self.incidents.absorb_repost
        for alert in alerts:
            event = AlertEvent(alert)
            if not absorb(event, now):
                events.append(event)
        if self.metrics is not None:
            self.metrics.processed.inc(len(alerts))
        for stage in self.stages:
            if not events:
                break
            events = stage.process(events, now)
        if events:
            self.publish(self.incidents.apply([e for e in events if not e.dropped], now), now)

    def process_samples(self, samples: list[tuple[dict[str, str], float, float]], now: float) -> None:
        if self.samples is None:
            return
        alerts = self.samples.observe(samples, now)
        if alerts:
            self.process_alerts(alerts, now)

    def process_change(self, change: dict[str, Any], now: float) -> None:
        for sink in self.change_sinks:
            sink.add_change(change, now)

    def publish(self, changes: list[IncidentChange], now: float) -> None:
        if changes:
            for listener in self.listeners:
                listener.on_changes(changes, now)

    def next_deadline(self) -> float | None:
        first = None
        for fn in self._deadlines:
            due = fn()
            if due is not None and (first is None or due < first):
                first = due
        return first

    def tick(self, now: float) -> None:
        """Fire every timer due at or before `now`, in every component."""
        for c in self.components:
            fn = getattr(c, "tick", None)
            if fn is not None:
                produced = fn(now)
                if produced:
                    self.process_alerts(produced, now)
        self.publish(self.incidents.tick(now), now)

    def drain_writes(self, writes: Any) -> None:
        self.incidents.drain_writes(writes)
        for c in self.components:
            fn = getattr(c, "drain_writes", None)
            if fn is not None:
                fn(writes)
