"""Label-based grouping: the fallback for alerts that the CMDB cannot place.

Alerts with the same alert name and the same identifying labels (the CI when
the alert has one, else the configured `group_by` labels) join a matching open
incident:

- grouping by labels alone (no CMDB): while the incident is active, as
  Alertmanager's `group_by` would keep a group while any of its alerts fires;
- beside the CMDB's correlation, for the alerts it cannot place: when they come
  within the group window of the incident's last new alert, since the alerts of
  one fault start together (an alert the incident held before still rejoins it
  while it fires). What the CMDB leaves out is mostly what it does not model (a
  batch job, a probe), where the group is a weak tie: an alert that lingers, a
  failed job, would otherwise gather every alert of its group for hours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daemon.pipeline import AlertEvent, Analysis, Placement

if TYPE_CHECKING:
    from daemon.incidents import Incident, IncidentManager


def group_key(event: AlertEvent, group_by: list[str]) -> str:
    labels = event.alert.labels
    keys = event.group_by if event.group_by is not None else group_by
    parts = [f"alertname={labels.get('alertname', '')}"]
    if event.ci and event.group_by is None:
        parts.append(f"ci={event.ci}")
    else:
        parts.extend(f"{k}={labels.get(k, '')}" for k in keys if k != "alertname")
    return ",".join(parts)


class LabelGrouper:
    """A `Correlator` that groups by labels only; it names no root cause beyond the CI."""

    def __init__(self, group_by: list[str], group_window: float, while_firing: bool = True) -> None:
        self.group_by = group_by
        self.group_window = group_window
        self.while_firing = while_firing  # see the module docstring

    def place(self, event: AlertEvent, incidents: IncidentManager, now: float,
              since: float | None = None, leaving: str | None = None) -> Placement:
        key = group_key(event, self.group_by)
        at = now if since is None else min(since, now)  # (see TopologyCorrelator.place)
        window = event.correlation_window if event.correlation_window is not None else self.group_window
        in_group = getattr(incidents, "open_in_group", None)
        candidates = in_group(key) if in_group is not None else incidents.open_incidents()
        for inc in candidates:
            if inc.group_key != key or inc.id == leaving:
                continue
            if at - inc.last_alert_at <= window or \
                    ((self.while_firing or event.fingerprint in inc.alerts) and inc.any_firing()):
                return Placement([inc.id], f"same {key}", key)
        return Placement([], "", key)

    def analyze(self, incident: Incident, now: float, incidents: Any = None) -> Analysis:
        cis = sorted(incident.cis)
        if len(cis) == 1:
            return Analysis(root_cause=cis[0], candidates=[{"ci": cis[0], "score": 1.0}],
                            explanation=f"every alert is on {cis[0]}")
        return Analysis()

    def outlasting(self, incident: Incident) -> tuple[float, float, list[str]] | None:
        return None  # alerts grouped by their labels alone tell no root cause to outlast
