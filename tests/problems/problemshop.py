"""A small shop, its CMDB and a pipeline on a virtual clock, for the problem tests."""

from __future__ import annotations

import json
from typing import Any

from daemon.build import build_pipeline, load_state
from daemon.clock import VirtualClock
from daemon.config import load_config
from daemon.metrics import Metrics
from daemon.model import Alert
from daemon.store import Store, Writes
from daemon.views import incident_view, load_incident_docs

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOUR = 3600.0
DAY = 86400.0

CMDB = """
cis:
  - {id: shop, type: service, match: {service: shop}, depends_on: [shop-db, web-1, web-2, web-3]}
  - {id: shop-db, type: database, match: {service: shop-db}, depends_on: [db-1]}
  - {id: web-1, type: host, match: {node: web-1}, attrs: {role: web}}
  - {id: web-2, type: host, match: {node: web-2}, attrs: {role: web}}
  - {id: web-3, type: host, match: {node: web-3}, attrs: {role: web}}
  - {id: db-1, type: host, match: {node: db-1}, attrs: {role: database}}
"""


def write_config(tmp_path, problems: str = "") -> str:
    (tmp_path / "cmdb.yaml").write_text(CMDB)
    path = tmp_path / "config.yaml"
    text = "data_dir: data\ncmdb: [cmdb.yaml]\n"
    if problems:
        text += "problems:\n" + "".join(f"  {line}\n" for line in problems.splitlines())
    path.write_text(text)
    return str(path)


def disk_full(node: str) -> tuple[dict[str, str], dict[str, str]]:
    return (
        {
            "alertname": "NodeFilesystemAlmostOutOfSpace",
            "node": node,
            "instance": f"{node}:9100",
            "mountpoint": "/var/log",
            "fstype": "ext4",
            "severity": "warning",
        },
        {
            "summary": f"Filesystem /var/log on {node} has less than 5% space left",
            "description": f"Filesystem on {node} at 10.0.0.4:9100 has only 3.2% available space left.",
        },
    )


def db_down() -> list[tuple[dict[str, str], dict[str, str]]]:
    return [
        (
            {"alertname": "MysqlDown", "service": "shop-db", "severity": "critical"},
            {"summary": "MySQL instance is down"},
        ),
        (
            {"alertname": "HighErrorRate", "service": "shop", "severity": "warning"},
            {"summary": "shop answers 7% of requests with errors"},
        ),
    ]


def db_slow() -> list[tuple[dict[str, str], dict[str, str]]]:
    return [
        (
            {"alertname": "MysqlSlowQueries", "service": "shop-db", "severity": "warning"},
            {"summary": "MySQL has slow queries"},
        ),
        (
            {"alertname": "MysqlHighThreadsRunning", "service": "shop-db", "severity": "warning"},
            {"summary": "more than 60% of MySQL connections are running"},
        ),
        (
            {"alertname": "HighLatencyP99", "service": "shop", "severity": "warning"},
            {"summary": "shop p99 latency above 1s"},
        ),
    ]


class Shop:
    """The pipeline as `run` builds it, with its store, driven by hand on a virtual clock."""

    def __init__(self, tmp_path, problems: str = "") -> None:
        self.config = load_config(write_config(tmp_path, problems))
        self.clock = VirtualClock(T0)
        self.store = Store(str(tmp_path / "store.sqlite3"), threaded=False)
        self.components = build_pipeline(self.config, self.clock, Metrics(), self.store)
        self.pipeline = self.components.pipeline
        self.problems = self.components.parts["problems"]
        load_state(self.components, self.store, self.clock.now())  # as the daemon does at start

    def at(self, t: float) -> float:
        """Move the clock to T0 + t, firing the timers due on the way."""
        target = T0 + t
        while True:
            due = self.pipeline.next_deadline()
            if due is None or due > target:
                break
            self.clock.set(max(due, self.clock.now()))
            self.pipeline.tick(self.clock.now())
        self.clock.set(target)
        return target

    def post(
        self, t: float, alerts: list[tuple[dict[str, str], dict[str, str]]], status: str = "firing"
    ) -> None:
        now = self.at(t)
        batch = [
            Alert(
                labels=dict(labels),
                annotations=dict(ann),
                starts_at=now,
                ends_at=now if status == "resolved" else None,
                status=status,
            )
            for labels, ann in alerts
        ]
        self.pipeline.process_alerts(batch, now)
        self.flush()

    def fault(
        self,
        t: float,
        alerts: list[tuple[dict[str, str], dict[str, str]]],
        duration: float = 1800.0,
    ) -> str:
        """Fire the alerts at T0 + t, resolve them `duration` later; the incident id."""
        self.post(t, alerts)
        iid = self.incident_of(alerts[0][0])
        self.post(t + duration, alerts, status="resolved")
        return iid

    def incident_of(self, labels: dict[str, str]) -> str:
        from daemon.model import fingerprint

        inc = self.components.incidents.incident_for(fingerprint(labels))
        assert inc is not None, labels
        return inc.id

    def flush(self) -> None:
        writes = Writes()
        self.pipeline.drain_writes(writes)
        self.store.apply_sync(writes)

    def incident(self, iid: str) -> dict[str, Any]:
        self.flush()
        row = self.store.query_one("SELECT doc FROM incidents WHERE id=?", (iid,))
        return incident_view(json.loads(row[0]))

    def problem_of(self, iid: str) -> str | None:
        return self.incident(iid)["problem_id"]

    def incidents(self) -> list[dict[str, Any]]:
        self.flush()
        return [incident_view(d) for d in load_incident_docs(self.store)]
