"""Topology-aware correlation: which incident a new alert belongs to, and why.

An alert on a CMDB CI joins an open incident when

- the incident is still active: its last new alert is at most `window` old
  and it opened at most `max_span` ago;
- the alert's CI and one of the incident's CIs share a common cause within
  `max_hops` (one depends on the other, or both depend on the same CI);
- the alert is consistent with the incident's root-cause hypotheses: it
  depends on (or is) a CI that explains the incident's alerts so far.

When it relates to several incidents it merges them only if its CI lies
below CIs of each of them (a late alert on a shared host reveals one fault);
a symptom shared by two incidents (the gateway, the SLO) joins the closest
one instead: a gateway sees every fault below it. Alerts on CIs outside the
CMDB fall back to Alertmanager-style grouping by labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cmdb.graph import Cmdb, describe_path
from correlation.kinds import DEFAULT_CAUSE, DEFAULT_SYMPTOM, AlertKinds
from correlation.rank import RankWeights, collect, impact_priority, impacted, rank
from correlation.topology import Link, Topology
from daemon.pipeline import AlertEvent, Analysis, Placement


@dataclass(slots=True)
class CorrelationConfig:
    """The `correlation:` section of the config."""

    window: float = 600.0
    max_span: float = 3600.0
    max_hops: int = 3
    depth: int = 8
    group_by: list[str] = field(default_factory=lambda: ["alertname", "cluster", "namespace"])
    label_window: float = 900.0
    cause_alerts: list[str] = field(default_factory=list)
    symptom_alerts: list[str] = field(default_factory=list)
    candidates: int = 5
    root_margin: float = 0.75

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> CorrelationConfig:
        from daemon.timefmt import parse_duration

        cfg = cls()
        if not data:
            return cfg
        unknown = set(data) - {
            "window", "max_span", "max_hops", "depth", "group_by", "label_window",
            "cause_alerts", "symptom_alerts", "candidates", "root_margin",
        }
        if unknown:
            raise ValueError(f"unknown correlation keys: {', '.join(sorted(unknown))}")
        for key in ("window", "max_span", "label_window"):
            if key in data:
                setattr(cfg, key, parse_duration(data[key]))
        for key in ("max_hops", "depth", "candidates"):
            if key in data:
                value = data[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"correlation.{key} must be a non-negative integer")
                setattr(cfg, key, value)
        for key in ("group_by", "cause_alerts", "symptom_alerts"):
            if key in data:
                value = data[key]
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"correlation.{key} must be a list of strings")
                setattr(cfg, key, list(value))
        return cfg


def _members(incident: Any) -> Iterable[tuple[str, Any]]:
    alerts = getattr(incident, "alerts", {})
    return alerts.items() if isinstance(alerts, Mapping) else ((m.fingerprint, m) for m in alerts)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, Mapping) else getattr(obj, name, default)


def _num(value: Any, default: float) -> float:
    return default if value is None else float(value)


@dataclass(slots=True)
class _Match:
    incident: Any
    link: Link
    member_ci: str
    roots: set[str]  # the incident's leading root hypotheses


class TopologyCorrelator:
    """The `Correlator` of daemon/pipeline.py built on the CMDB dependency graph."""

    def __init__(
        self,
        cmdb: Callable[[], Cmdb] | Cmdb,
        config: CorrelationConfig | None = None,
        fallback: Any = None,
    ) -> None:
        """`fallback` is a Correlator for alerts outside the CMDB (label grouping); built in when None."""
        self._cmdb = cmdb if callable(cmdb) else (lambda: cmdb)
        self.fallback = fallback
        self.config = config or CorrelationConfig()
        self.kinds = AlertKinds.build(
            tuple(self.config.cause_alerts) + DEFAULT_CAUSE,
            tuple(self.config.symptom_alerts) + DEFAULT_SYMPTOM,
        )
        self.weights = RankWeights()
        self._topo: Topology | None = None

    @property
    def topology(self) -> Topology:
        cmdb = self._cmdb()
        if self._topo is None or self._topo.cmdb is not cmdb:
            self._topo = Topology(cmdb, self.config.depth)
        return self._topo

    # -- placement -------------------------------------------------------

    def place(self, event: AlertEvent, incidents: Any, now: float) -> Placement:
        fp = event.fingerprint
        open_incidents = list(incidents.open_incidents())
        for inc in open_incidents:
            members = _get(inc, "alerts", {})
            if fp in members:
                return Placement([inc.id], "the same alert fired again", _get(inc, "group_key", ""))
        topo = self.topology
        ci = event.ci
        window = event.correlation_window or self.config.window
        if ci is None or ci not in topo.cmdb:
            if self.fallback is not None:
                placed = self.fallback.place(event, incidents, now)
                why = "no CMDB CI matches its labels"
                placed.reason = f"{why}; {placed.reason}" if placed.reason else why
                return placed
            return self._place_by_labels(event, open_incidents, now, window)

        matches: list[_Match] = []
        for inc in open_incidents:
            if not self._active(inc, now, window):
                continue
            m = self._relate(ci, inc, topo)
            if m is not None:
                matches.append(m)
        if not matches:
            return Placement([], f"{ci}: no open incident on a related CI", f"ci:{ci}")
        matches.sort(key=lambda m: (m.link.hops, -_get(m.incident, "last_alert_at", 0.0) or 0.0))
        best = matches[0]
        # one fault under both: the alert's CI is a leading root hypothesis of
        # each incident (a late alert on the shared host they both depend on)
        merge = [m for m in matches[1:] if ci in best.roots and ci in m.roots]
        ids = [best.incident.id] + [m.incident.id for m in merge if m.incident.id != best.incident.id]
        reason = self._reason(ci, best, topo)
        if len(ids) > 1:
            reason += f"; {ci} explains the alerts of {len(ids)} incidents: merged"
        return Placement(ids, reason, _get(best.incident, "group_key", "") or f"ci:{ci}")

    def _active(self, inc: Any, now: float, window: float) -> bool:
        opened = _num(_get(inc, "opened_at"), now)
        last = _num(_get(inc, "last_alert_at"), opened)
        return now - last <= window and now - opened <= self.config.max_span

    def _relate(self, ci: str, inc: Any, topo: Topology) -> _Match | None:
        cmdb = topo.cmdb
        cis = {_get(m, "ci") for _, m in _members(inc)}
        cis = {c for c in cis if c is not None and c in cmdb}
        if not cis:
            return None
        best: Link | None = None
        best_member = ""
        for x in sorted(cis):
            link = topo.link(ci, x, self.config.max_hops)
            if link is not None and (best is None or link.hops < best.hops):
                best, best_member = link, x
        if best is None:
            return None
        # consistent with the incident's leading root-cause hypotheses: the
        # alert's CI is one of them or depends on one of them
        roots = self._roots(inc, topo)
        below_ci = topo.below(ci)
        if not any(r in below_ci for r in roots):
            return None
        return _Match(inc, best, best_member, roots)

    def _roots(self, inc: Any, topo: Topology) -> set[str]:
        """The root-cause candidates scoring within `root_margin` of the best."""
        members = [(_get(m, "ci"), _get(m, "labels", {}) or {}, _get(m, "first_at") or 0.0) for _, m in _members(inc)]
        ranked = rank(collect(members, self.kinds, topo.cmdb), topo, self.weights, limit=50)
        if not ranked:
            return set()
        floor = ranked[0].score * self.config.root_margin
        return {c.ci for c in ranked if c.score >= floor}

    def _reason(self, ci: str, m: _Match, topo: Topology) -> str:
        link = m.link
        if link.a == link.b or link.hops == 0:
            return f"{ci} already has alerts in this incident"
        up = topo.chain(link.a, link.via)
        down = topo.chain(link.b, link.via)
        parts = []
        if len(up) > 1:
            parts.append(" -> ".join(up))
        if len(down) > 1:
            parts.append(" -> ".join(down))
        path = describe_path(topo.cmdb.path(ci, m.member_ci, link.hops) or [])
        if link.via == link.b:
            head = f"{ci} depends on {link.b} ({link.hops} hop{'s' if link.hops > 1 else ''})"
        elif link.via == link.a:
            head = f"{link.b} depends on {ci} ({link.hops} hop{'s' if link.hops > 1 else ''})"
        else:
            head = f"{ci} and {link.b} both depend on {link.via} ({link.hops} hops)"
        return f"{head}: {path}" if path else head

    def _place_by_labels(self, event: AlertEvent, open_incidents: list, now: float, window: float) -> Placement:
        labels = event.alert.labels
        group_by = event.group_by or self.config.group_by
        key = "labels:" + ",".join(f"{k}={labels.get(k, '')}" for k in group_by)
        best = None
        for inc in open_incidents:
            if _get(inc, "group_key") != key:
                continue
            last = _num(_get(inc, "last_alert_at"), _num(_get(inc, "opened_at"), now))
            if now - last <= max(window, self.config.label_window) and (
                best is None or (_get(inc, "last_alert_at") or 0) > (_get(best, "last_alert_at") or 0)
            ):
                best = inc
        shown = ", ".join(f"{k}={labels.get(k, '')!s}" for k in group_by)
        why = "no CMDB CI matches its labels"
        if best is not None:
            return Placement([best.id], f"{why}; grouped by labels ({shown})", key)
        return Placement([], f"{why}; new group by labels ({shown})", key)

    # -- analysis --------------------------------------------------------

    def analyze(self, incident: Any, now: float) -> Analysis:
        topo = self.topology
        members = []
        for _, m in _members(incident):
            members.append((_get(m, "ci"), _get(m, "labels", {}) or {}, _get(m, "first_at") or 0.0))
        evidence = collect(members, self.kinds, topo.cmdb)
        if not evidence:
            if self.fallback is not None:
                return self.fallback.analyze(incident, now)
            return Analysis(explanation="no alert of this incident is on a CMDB CI: grouped by labels")
        ranked = rank(evidence, topo, self.weights, limit=max(self.config.candidates, 1))
        root = ranked[0].ci
        imp = impacted(root, evidence, topo)
        candidates = [{"ci": c.ci, "score": c.score, "why": c.why} for c in ranked]
        explanation = f"root cause {ranked[0].why}"
        if len(ranked) > 1:
            explanation += f" (next: {ranked[1].ci}, score {ranked[1].score} vs {ranked[0].score})"
        if imp:
            explanation += f"; impacts {', '.join(imp[:5])}" + (f" and {len(imp) - 5} more" if len(imp) > 5 else "")
        return Analysis(
            root_cause=root,
            candidates=candidates,
            impacted=imp,
            explanation=explanation,
            priority=impact_priority(root, imp, topo.cmdb),
        )


def correlator_from_config(
    cmdb: Callable[[], Cmdb] | Cmdb, section: Mapping[str, Any] | None, fallback: Any = None
) -> TopologyCorrelator:
    return TopologyCorrelator(cmdb, CorrelationConfig.from_mapping(section), fallback)


__all__: Sequence[str] = ("CorrelationConfig", "TopologyCorrelator", "correlator_from_config")
