"""What the daemon keeps of an incident in memory goes once the incident leaves the
incident manager: a daemon that runs for months holds its open incidents and the
recent ones that may reopen, not every incident it ever had (those are in the store)."""

from __future__ import annotations

import gc
import json

from daemon.config import load_config
from daemon.incidents import Incident
from daemon.logs import quiet_logging
from daemon.replay import replay_events
from daemon.timefmt import format_rfc3339

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z

CMDB = {
    "cis": [
        {"id": "db", "type": "database", "match": {"service": "db"}},
        {"id": "api", "type": "service", "match": {"service": "api"}, "depends_on": ["db"]},
        {"id": "web", "type": "service", "match": {"service": "web"}, "depends_on": ["api"]},
        {"id": "cache", "type": "database", "match": {"service": "cache"}},
        {"id": "net", "type": "network", "match": {"zone": "a"}},
        *(
            {"id": h, "type": "host", "match": {"instance": h}, "depends_on": ["net"]}
            for h in ("h1", "h2", "h3")
        ),
    ]
}


def _alert(at: float, service: str, name: str, status: str, label: str = "service") -> dict:
    stamp = format_rfc3339(T0 + at)
    return {
        "kind": "alert",
        "at": stamp,
        "alert": {
            "status": status,
            "labels": {"alertname": name, label: service},
            "annotations": {},
            "startsAt": stamp,
            "endsAt": stamp if status == "resolved" else "0001-01-01T00:00:00Z",
        },
    }


def _faults(days: int) -> list[dict]:
    """Every six hours a database outage that reaches the services above it, a noise
    alert on the other database, and three hosts of a network going down one after
    another (an incident each for the first two, merged when the third shows their
    common cause): recurring incidents, which problems link."""
    out = []
    for k in range(days * 4):
        t = k * 6 * 3600.0
        out += [
            _alert(t, "db", "PostgresDown", "firing"),
            _alert(t + 120, "api", "HighErrorRate", "firing"),
            _alert(t + 240, "web", "HighLatency", "firing"),
            _alert(t + 1800, "cache", "DiskFillingUp", "firing"),
            _alert(t + 3000, "db", "PostgresDown", "resolved"),
            _alert(t + 3060, "api", "HighErrorRate", "resolved"),
            _alert(t + 3120, "web", "HighLatency", "resolved"),
            _alert(t + 3300, "cache", "DiskFillingUp", "resolved"),
            *(
                _alert(t + 7200 + 2 * i, h, "NodeDown", "firing", "instance")
                for i, h in enumerate(("h1", "h2", "h3"))
            ),
            *(_alert(t + 9000, h, "NodeDown", "resolved", "instance") for h in ("h1", "h2", "h3")),
        ]
    return out


def test_incidents_gone_from_the_manager_are_not_kept_alive(tmp_path):
    (tmp_path / "cmdb.yaml").write_text(json.dumps(CMDB))
    (tmp_path / "config.yaml").write_text(f"cmdb: [{tmp_path / 'cmdb.yaml'}]\n")
    events = _faults(days=5)
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    quiet_logging()
    work = tmp_path / "work"
    work.mkdir()
    # incidents other tests left alive in this process are not this replay's: held, so
    # that none of their ids is taken by one of the replay's
    gc.unfreeze()
    gc.collect()
    earlier = [o for o in gc.get_objects() if isinstance(o, Incident)]
    theirs = {id(o) for o in earlier}
    components, store = replay_events(
        load_config(str(tmp_path / "config.yaml")), str(tmp_path / "events.jsonl"), str(work)
    )
    try:
        written = store.query("SELECT COUNT(*) FROM incidents")[0][0]
        problems = components.parts["problems"].listing()
        # the replay freezes what it built out of the collector's passes (see daemon.heap)
        gc.unfreeze()
        gc.collect()
        alive = [o for o in gc.get_objects() if isinstance(o, Incident) and id(o) not in theirs]
        kept = components.incidents.incidents
        merged = store.query("SELECT COUNT(*) FROM incidents WHERE state = 'merged'")[0][0]
        assert written >= 5 * 4 * 3  # an incident for each outage, noise alert and network fault
        assert merged >= 5 * 4  # the first host's incident or the second's, each time
        assert problems and sum(len(p.links) for p in problems) >= 5 * 4  # the outages recur
        assert len(kept) < 4  # those of the last day, within the reopen window after the drain
        assert {o.id for o in alive} == set(kept), (
            "incidents evicted or merged away are still referred to"
        )
    finally:
        store.close()
