"""The rules package's pipeline stages: rules, silences, maintenance (inhibition
is in `rules.inhibit`). Each applies one concern to a batch of `AlertEvent`s.

Rules may set labels; the alert keeps the fingerprint it arrived with, so the
same alert stays the same alert whatever the rules (and a rule reload) do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from rules.changes import ChangeStore
from rules.ruleset import AlertView, CiView, RuleSet
from rules.silences import SilenceStore

if TYPE_CHECKING:
    from daemon.pipeline import AlertEvent

CiAttrs = Callable[[str], Mapping[str, Any] | None]


class RulesStage:
    """Applies the rule set to every alert; dropped alerts go no further (but the end of
    one an open incident holds does, see `held`).

    `ruleset` may be swapped at any time (hot reload): the new rules apply to
    the alerts processed after the swap.
    """

    name = "rules"

    def __init__(
        self,
        ruleset: RuleSet,
        ci_attrs: CiAttrs | None = None,
        on_drop: Callable[[], None] | None = None,
        held: Callable[[str], bool] | None = None,
    ) -> None:
        self.ruleset = ruleset
        self.ci_attrs = ci_attrs
        self.on_drop = on_drop
        self.held = held  # fingerprint -> is it in an open incident

    def _ends_held_alert(self, alert: Any, now: float) -> bool:
        """The end of an alert that joined an incident before the rule dropping it was
        loaded: it goes on, or the incident would stay open for good."""
        return self.held is not None and not alert.is_firing(now) and self.held(alert.fingerprint)

    def process(self, events: list[AlertEvent], now: float) -> list[AlertEvent]:
        ruleset = self.ruleset
        out = []
        for ev in events:
            if ev.dropped:
                continue
            alert = ev.alert
            res = ruleset.evaluate(alert.labels, alert.annotations, ev.ci, self.ci_attrs)
            if res.labels != alert.labels or res.annotations != alert.annotations:
                ev.alert = dataclasses.replace(
                    alert,
                    labels=res.labels,
                    annotations=res.annotations,
                    fingerprint=alert.fingerprint,
                )
            if res.dropped and not self._ends_held_alert(alert, now):
                ev.dropped = True
                if self.on_drop is not None:
                    self.on_drop()
                continue
            if res.priority is not None:
                ev.priority = res.priority
            if res.team is not None:
                ev.team = res.team
            if res.receiver is not None:
                ev.receiver = res.receiver
            if res.runbook is not None:
                ev.runbook = res.runbook
                if ev.alert.annotations.get("runbook_url") != res.runbook:
                    # Prometheus' convention: notifications and the timeline show it
                    ev.alert = dataclasses.replace(
                        ev.alert,
                        annotations={**ev.alert.annotations, "runbook_url": res.runbook},
                        fingerprint=ev.alert.fingerprint,
                    )
            if res.correlation_window is not None:
                ev.correlation_window = res.correlation_window
            if res.group_by is not None:
                ev.group_by = res.group_by
            out.append(ev)
        return out


class SilenceStage:
    """Marks alerts matched by an active silence: recorded, never paging."""

    name = "silences"

    def __init__(self, store: SilenceStore, ci_attrs: CiAttrs | None = None) -> None:
        self.store = store
        self.ci_attrs = ci_attrs

    def process(self, events: list[AlertEvent], now: float) -> list[AlertEvent]:
        if not len(self.store):
            return events
        for ev in events:
            if ev.dropped:
                continue
            sid = self.store.silenced_by(
                AlertView(ev.alert.labels, CiView(ev.ci, self.ci_attrs)), now
            )
            if sid is not None:
                ev.silenced_by = sid
                ev.notes.append(f"silenced by {sid}")
        return events


class MaintenanceStage:
    """Marks alerts from a CI under an active change as expected."""

    name = "maintenance"

    def __init__(self, store: ChangeStore) -> None:
        self.store = store

    def process(self, events: list[AlertEvent], now: float) -> list[AlertEvent]:
        for ev in events:
            if ev.dropped or ev.ci is None:
                continue
            change = self.store.active_for(ev.ci, now)
            if change is not None:
                ev.expected = change.id
                where = "" if change.ci == ev.ci else f" on {change.ci}, which {ev.ci} depends on"
                ev.notes.append(
                    f"expected: change {change.id}{where} ({change.summary})".replace(" ()", "")
                )
        return events
