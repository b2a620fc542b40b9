"""Small hand-built CMDBs and incidents for the correlation tests."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cmdb import load_cmdb_docs
from correlation.engine import TopologyCorrelator
from daemon.model import Alert
from daemon.pipeline import AlertEvent


def cmdb_of(*cis: dict):
    return load_cmdb_docs([("test.yaml", {"cis": list(cis)})])


def random_cmdb(seed: int, n: int = 40):
    """`n` CIs, each depending on up to three others at random (cycles included)."""
    rnd = random.Random(seed)
    cis = []
    for i in range(n):
        deps = rnd.sample(range(n), rnd.randint(0, 3))
        cis.append({"id": f"c{i}", "depends_on": [f"c{d}" for d in deps if d != i]})
    return cmdb_of(*cis)


@dataclass
class M:
    fingerprint: str
    labels: dict
    ci: str | None
    first_at: float
    status: str = "firing"


@dataclass
class Inc:
    id: str
    opened_at: float
    last_alert_at: float
    group_key: str = ""
    alerts: dict = field(default_factory=dict)

    @property
    def cis(self):
        return {m.ci for m in self.alerts.values() if m.ci}

    def any_firing(self):
        return any(m.status == "firing" for m in self.alerts.values())


class Manager:
    """Applies placements the way the incident manager does (open, join, merge)."""

    def __init__(self, correlator: TopologyCorrelator) -> None:
        self.corr = correlator
        self.open: dict[str, Inc] = {}
        self.reasons: list[str] = []

    def open_incidents(self):
        return list(self.open.values())

    def fire(self, alertname: str, ci: str | None, at: float, **labels: str) -> Inc:
        labels = {"alertname": alertname, **({"ci": ci} if ci else {}), **labels}
        event = AlertEvent(Alert(labels, {}, at, None, "firing"), ci=ci)
        p = self.corr.place(event, self, at)
        self.reasons.append(p.reason)
        if p.incident_ids:
            inc = self.open[p.incident_ids[0]]
            for other in p.incident_ids[1:]:
                inc.alerts.update(self.open.pop(other).alerts)
        else:
            inc = Inc(f"I{len(self.reasons)}", at, at, p.group_key)
            self.open[inc.id] = inc
        inc.alerts[event.fingerprint] = M(event.fingerprint, labels, ci, at)
        inc.last_alert_at = at
        return inc

    def groups(self) -> list[set[str]]:
        return sorted(({m.labels["alertname"] + "@" + (m.ci or "-") for m in i.alerts.values()}
                       for i in self.open.values()), key=lambda s: sorted(s))
