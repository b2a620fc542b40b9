"""Assembles the pipeline: the one place where the order of the stages is set.

    samples -> detectors -> MetricAnomaly alerts, which enter below like any alert
    cmdb (alert -> CI) -> rules -> silences/maintenance/inhibition
      -> incidents (correlation decides the grouping) -> problems (recurrences) -> notifications

`run` and `replay` both call `build_pipeline`, so they process alerts with
the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from correlation.grouping import LabelGrouper
from daemon.auth import AuthPart
from daemon.clock import Clock
from daemon.config import Config, ConfigError
from daemon.incidents import IncidentManager
from daemon.metrics import Metrics
from daemon.notify.part import NotifyPart  # also registers the outbox tables before a store opens
from daemon.pipeline import Pipeline
from daemon.problems.service import ProblemsPart
from daemon.sla import SlaPart
from daemon.store import Store
from detectors.setup import build_detectors
from rules.daemon import RulesPart, cmdb_callables


@dataclass
class Components:
    """What the daemon's API and reload need to reach besides the pipeline."""

    pipeline: Pipeline
    incidents: IncidentManager
    parts: dict[str, Any] = field(default_factory=dict)


def build_pipeline(config: Config, clock: Clock, metrics: Metrics, store: Store) -> Components:
    stages: list[Any] = []
    parts: dict[str, Any] = {}
    # The correlator: topology-aware over the CMDB when one is configured (label
    # grouping stays the fallback for alerts outside it), label grouping alone otherwise.
    correlator: Any = LabelGrouper(config.incidents.group_by, config.incidents.group_window)
    if config.cmdb:
        from correlation.setup import CorrelationSetupError, build_correlation

        fallback = LabelGrouper(config.incidents.group_by, config.incidents.group_window, while_firing=False)
        try:
            cmdb_stage, correlator, parts["cmdb"] = build_correlation(
                config, fallback, metrics.registry, clock)
        except CorrelationSetupError as exc:
            raise ConfigError(exc.errors) from exc
        stages.append(cmdb_stage)
    incidents = IncidentManager(config.incidents, correlator, metrics)
    # rules, then silences, maintenance and inhibition
    ci_attrs, depends_on = cmdb_callables(parts.get("cmdb"))
    parts["rules"] = rules_part = RulesPart(config, store, metrics, ci_attrs, depends_on)
    rules_part.incidents = incidents
    incidents.must_see = rules_part.inhibit_stage.sources  # they keep their inhibition alive
    incidents.next_start = rules_part.next_start  # silences and changes recorded ahead of time
    if hasattr(correlator, "attach_changes"):  # recorded changes are evidence for root causes
        correlator.attach_changes(rules_part.changes)
    stages.extend(rules_part.stages)
    parts["problems"] = problems = ProblemsPart(config, incidents, store, metrics, parts.get("cmdb"))
    listeners: list[Any] = [rules_part.listener, problems]
    # notifications: policy and escalation (a listener with timers; outbox rows
    # commit with the incident changes), delivery in the daemon only. After
    # problems, so a first message can carry a known problem's workaround.
    parts["notify"] = notify = NotifyPart(config, incidents, store, clock, metrics.registry)
    listeners.append(notify.policy)
    parts["auth"] = AuthPart(config)  # the API middleware reads it (daemon.api)
    parts["sla"] = sla = SlaPart(config, incidents, store, clock, metrics.registry)
    listeners.append(sla.tracker)
    # detectors: the samples component; its anomaly alerts enter at the first stage
    parts["detectors"] = detector_part = build_detectors(config, clock, metrics, store)
    pipeline = Pipeline(stages, incidents, listeners, samples=detector_part,
                        change_sinks=[rules_part], metrics=metrics)
    return Components(pipeline=pipeline, incidents=incidents, parts=parts)


def load_state(components: Components, store: Store, now: float) -> None:
    """Restore the incidents that can still change from the store; parts that count them
    (`on_incidents_loaded`) count again."""
    import orjson

    reopen = components.incidents.settings.reopen_window
    rows = store.query(
        "SELECT doc FROM incidents WHERE state IN ('open', 'acknowledged')"
        " OR (state = 'resolved' AND resolved_at >= ?) ORDER BY seq",
        (now - reopen,),
    )
    seq = int(store.get_meta("next_incident_seq", "1") or 1)
    seen = store.query("SELECT fingerprint, incident_id, last_at, ends_at FROM alert_seen")
    components.incidents.load((orjson.loads(r[0]) for r in rows), seq, now, seen)
    for part in components.parts.values():
        loaded = getattr(part, "on_incidents_loaded", None)
        if loaded is not None:
            loaded()
