"""Inhibition: a firing source alert mutes target alerts, as in Alertmanager, and more.

Alertmanager's semantics hold: a target alert (matching `target_matchers`) is
inhibited while a firing alert matches `source_matchers` and has the same
values (missing = empty) for every label in `equal`; an alert matching both
sides is not inhibited by alerts that also match both sides. Beyond that:

- `sources:` lists several matcher sets, and each must be matched by a firing
  alert at once (e.g. both uplinks of a site down);
- `ci_relation: depends_on` also requires the target's CI to depend on the
  source's CI in the CMDB (symptoms downstream of a failing component), and
  `ci_relation: same` requires the same CI.

An inhibited alert keeps its place in its incident's timeline, marked, and
does not page. Sources are the alerts this stage has seen firing, with their
labels after rules, until their `endsAt` (API alerts always have one: ingest
gives those posted without it `resolve_timeout`, as Alertmanager does) or their
resolution: a firing alert of an Alertmanager webhook carries no `endsAt` and
is re-sent only every `repeat_interval`, so it inhibits, as its incident stays
open, until the webhook that resolves it. A new source
also inhibits the targets already firing, from their next re-post on (as
Alertmanager stops notifying them): their incidents stop paging.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rules.matchers import Matcher

if TYPE_CHECKING:
    from daemon.pipeline import AlertEvent

DependsOn = Callable[[str, str], bool]
CiAttrs = Callable[[str], Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class InhibitRule:
    name: str
    sources: tuple[tuple[Matcher, ...], ...]  # each set needs a firing alert
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()
    ci_relation: str | None = None  # None | "depends_on" | "same"


@dataclass(slots=True)
class _Source:
    fingerprint: str
    labels: dict[str, str]
    view: Any  # AlertView: labels + ci.ATTR
    ci: str | None
    until: float


def _all(matchers: tuple[Matcher, ...], view: Mapping[str, str]) -> bool:
    return all(m.matches(view) for m in matchers)


class InhibitStage:
    """Marks target alerts that a firing source alert (or set of them) inhibits."""

    name = "inhibit"

    def __init__(
        self,
        rules: list[InhibitRule] | None = None,
        ci_attrs: CiAttrs | None = None,
        depends_on: DependsOn | None = None,
        on_new_source: Callable[[], None] | None = None,
    ) -> None:
        self.rules = list(rules or [])
        # called when an alert starts being a source: the alerts already firing go through
        # the stages again at their next re-post, so it inhibits those it targets too
        self.on_new_source = on_new_source
        self.ci_attrs = ci_attrs
        self.depends_on = depends_on
        # firing alerts that are (after the rules) a source of some rule; their re-posts
        # must come through here to keep the inhibition alive (`IncidentManager.must_see`)
        self._firing: dict[str, _Source] = {}
        self.sources: set[str] = set()

    def set_rules(self, rules: list[InhibitRule]) -> None:
        self.rules = list(rules)

    def _view(self, ev: AlertEvent) -> Any:
        return self._view_of(ev.alert.labels, ev.ci)

    def _view_of(self, labels: dict[str, str], ci: str | None) -> Any:
        from rules.ruleset import AlertView, CiView

        return AlertView(labels, CiView(ci, self.ci_attrs))

    def restore(self, alerts: Iterable[tuple[str, dict[str, str], str | None, float | None]]) -> None:
        """After a restart: the sources among the firing alerts the incidents hold
        (fingerprint, labels after the rules, CI, endsAt), so that their targets stay
        inhibited without waiting for the sources to be sent again."""
        for fp, labels, ci, ends_at in alerts:
            view = self._view_of(labels, ci)
            if self.may_be_source(view):
                until = ends_at if ends_at is not None else math.inf
                self._firing[fp] = _Source(fp, labels, view, ci, until)
                self.sources.add(fp)

    def process(self, events: list[AlertEvent], now: float) -> list[AlertEvent]:
        # Sources first, so that a storm arriving in one batch inhibits itself.
        new_source = False
        for ev in events:
            if ev.dropped:
                continue
            alert = ev.alert
            view = self._view(ev) if alert.is_firing(now) else None
            if view is not None and self.may_be_source(view):
                until = alert.ends_at if alert.ends_at is not None else math.inf
                self._firing[ev.fingerprint] = _Source(ev.fingerprint, alert.labels, view, ev.ci, until)
                new_source = new_source or ev.fingerprint not in self.sources
                self.sources.add(ev.fingerprint)
            elif self._firing.pop(ev.fingerprint, None) is not None:
                self.sources.discard(ev.fingerprint)
        for fp in [fp for fp, s in self._firing.items() if s.until <= now]:
            del self._firing[fp]
            self.sources.discard(fp)
        if new_source and self.on_new_source is not None:
            self.on_new_source()
        if not self.rules:
            return events
        for ev in events:
            if ev.dropped or not ev.alert.is_firing(now):
                continue
            by = self.inhibited_by(ev)
            if by:
                ev.inhibited_by = by
                ev.notes.append(f"inhibited by {by}")
        return events

    def may_be_source(self, view: Any) -> bool:
        """Whether an alert (its view: labels after the rules, and `ci.ATTR`) is a source
        of some rule."""
        return any(_all(matchers, view) for rule in self.rules for matchers in rule.sources)

    def inhibited_by(self, ev: AlertEvent) -> str | None:
        """Why `ev` is inhibited ("rule: Source[fp], ..."), or None."""
        view = self._view(ev)
        for rule in self.rules:
            if not _all(rule.target, view):
                continue
            found = self._sources_for(rule, ev, view)
            if found:
                names = ", ".join(
                    f"{s.labels.get('alertname', '')}[{s.fingerprint}]" for s in found
                )
                return f"{rule.name}: {names}"
        return None

    def _sources_for(self, rule: InhibitRule, ev: AlertEvent, view: Any) -> list[_Source] | None:
        target_labels = ev.alert.labels
        found: list[_Source] = []
        for matchers in rule.sources:
            # Alertmanager: an alert on both sides is not inhibited by alerts on both sides.
            two_sided = _all(matchers, view)
            hit = None
            for s in self._firing.values():
                if s.fingerprint == ev.fingerprint or not _all(matchers, s.view):
                    continue
                if two_sided and _all(rule.target, s.view):
                    continue
                if any(s.labels.get(n, "") != target_labels.get(n, "") for n in rule.equal):
                    continue
                if not self._related(rule, ev.ci, s.ci):
                    continue
                hit = s
                break
            if hit is None:
                return None
            found.append(hit)
        return found

    def _related(self, rule: InhibitRule, target_ci: str | None, source_ci: str | None) -> bool:
        if rule.ci_relation is None:
            return True
        if target_ci is None or source_ci is None:
            return False
        if rule.ci_relation == "same":
            return target_ci == source_ci
        return self.depends_on is not None and self.depends_on(target_ci, source_ci)

    def firing_sources(self) -> int:
        return len(self._firing)
