"""Replay time of one fault that raises thousands of alerts: the work per alert must not
grow with the alerts already in its incident.

- `pods`: N alerts of one deployment's pods on one CI, at once (one Alertmanager
  notification carries a whole group);
- `zone`: a zone network of a generated cluster failing: its nodes, then the
  datastores on them (three pods each), then every service of the cluster (three
  pods each), on a 5,000-CI CMDB.

    python bench/big_incident.py [--pods 1000,2000,4000,8000] [--zone] [--resolve] [--refire 500,1000,2000]

With `--resolve`, the pods' alerts then resolve one by one: the work per resolution
must not grow with the alerts of the incident either.

With `--refire N,...`, a zone outage of N services (three pods each) resolves, and five
minutes later the services' alerts fire again: the fault is over, so each is let go
from its incident as a new occurrence. Deciding that must not look at all the others.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import timed  # noqa: E402
from corr_scale import topology  # noqa: E402

from daemon.timefmt import format_rfc3339  # noqa: E402

T0 = 1_767_225_600.0


def _write(path: str, timed: list[tuple[float, dict[str, str]]], resolve_at: float | None = None) -> None:
    """The alerts firing at their times; with `resolve_at`, each then resolves on its own,
    one after another from that time on (in the order they fired)."""
    events = []
    for t, labels in sorted(timed, key=lambda x: x[0]):
        at = format_rfc3339(T0 + t)
        events.append((t, {"kind": "alert", "at": at,
                           "alert": {"labels": labels, "status": "firing", "startsAt": at}}))
    if resolve_at is not None:
        for i, (_, ev) in enumerate(list(events)):
            end = format_rfc3339(T0 + resolve_at + i * 0.1)
            events.append((resolve_at + i * 0.1, {"kind": "alert", "at": end, "alert": {
                "labels": ev["alert"]["labels"], "status": "resolved", "startsAt": ev["at"], "endsAt": end}}))
    with open(path, "w") as fh:
        for _, ev in events:
            fh.write(json.dumps(ev) + "\n")


def pods(path: str, n: int, resolve: bool = False) -> None:
    _write(path, [(0.0, {"alertname": "HighErrorRate", "cluster": "c0", "namespace": "app",
                                        "service": "svc7", "pod": f"svc7-{i}", "instance": f"10.0.{i // 250}.{i % 250}:8080",
                                        "severity": "warning"})
                  for i in range(n)], 900.0 if resolve else None)


def _zone_alerts(services: int = 694) -> tuple[list[tuple[float, dict[str, str]]], list[dict[str, str]]]:
    """A zone network of the generated cluster failing: its nodes, the datastores on them,
    then `services` services; the alerts at their times, and the services' alerts."""
    rnd = random.Random(3)
    timed = [(rnd.uniform(0, 60), {"alertname": "NodeDown", "cluster": "c0", "node": f"node-c0-{i}",
                                   "severity": "critical"}) for i in range(100)]
    timed += [(rnd.uniform(30, 240), {"alertname": "DbDown", "cluster": "c0", "namespace": "app",
                                      "service": f"db{i}", "pod": f"db{i}-{p}", "severity": "critical"})
              for i in range(200) for p in range(3)]
    svc = [(rnd.uniform(60, 600), {"alertname": "HighErrorRate", "cluster": "c0", "namespace": "app",
                                   "service": f"svc{i}", "pod": f"svc{i}-{p}", "severity": "warning"})
           for i in range(services) for p in range(3)]
    return timed + svc, [labels for _, labels in svc]


def zone(path: str) -> None:
    _write(path, _zone_alerts()[0])


def refire(path: str, services: int) -> None:
    """The zone outage resolves, alert by alert from 900 s on; five minutes after the last,
    the services' alerts fire again, one by one."""
    timed, svc = _zone_alerts(services)
    _write(path, timed, resolve_at=900.0)
    again = 900.0 + len(timed) * 0.1 + 300.0
    with open(path, "a") as fh:
        for i, labels in enumerate(svc):
            at = format_rfc3339(T0 + again + i * 0.1)
            fh.write(json.dumps({"kind": "alert", "at": at,
                                 "alert": {"labels": labels, "status": "firing", "startsAt": at}}) + "\n")


def replay(tmp: str, events: str, label: str) -> dict:
    took, result = timed.replay(os.path.join(tmp, "config.yaml"), events, os.path.join(tmp, "result.json"))
    with open(events) as fh:
        n = sum(1 for _ in fh)
    incidents = result["incidents"]
    biggest = max(incidents, key=lambda i: len(i["alerts"]))
    print(f"{label}: {n} alerts in {took:.2f}s whole process ({n / took:,.0f} alerts/s); "
          f"{len(incidents)} incident(s), the largest {len(biggest['alerts'])} alerts, "
          f"root cause {biggest['root_cause']}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", default="1000,2000,4000,8000", help="alert counts for `pods` (empty: none)")
    ap.add_argument("--zone", action="store_true", help="also the zone outage")
    ap.add_argument("--resolve", action="store_true",
                    help="the pods' alerts then resolve one by one (a notification each)")
    ap.add_argument("--refire", default="", help="service counts of a zone outage whose services' "
                    "alerts fire again after it is over (empty: none)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="incidentd-big-") as tmp:
        cmdb = os.path.join(tmp, "cmdb.yaml")
        with open(cmdb, "w") as fh:
            json.dump(topology(5000), fh)  # JSON is YAML
        with open(os.path.join(tmp, "config.yaml"), "w") as fh:
            fh.write(f"cmdb: [{cmdb}]\n")
        for n in [int(x) for x in args.pods.split(",") if x]:
            events = os.path.join(tmp, f"pods{n}.jsonl")
            pods(events, n, args.resolve)
            replay(tmp, events, f"pods of one deployment, {n}" + (", then resolving" if args.resolve else ""))
        if args.zone:
            events = os.path.join(tmp, "zone.jsonl")
            zone(events)
            replay(tmp, events, "zone outage")
        for n in [int(x) for x in args.refire.split(",") if x]:
            events = os.path.join(tmp, f"refire{n}.jsonl")
            refire(events, n)
            result = replay(tmp, events, f"zone outage of {n} services, over, then their alerts again")
            again = sum(1 for inc in result["incidents"] for m in inc["alerts"]
                        if m["status"] == "firing" and m["labels"]["alertname"] == "HighErrorRate")
            print(f"  {again} of the {3 * n} services' alerts firing again are in an incident as firing")


if __name__ == "__main__":
    main()
