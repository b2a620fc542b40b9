"""Replay time of an alert storm: many unrelated faults at once, each its own incident.
Placing an alert must weigh the incidents near its CI, not every incident open.

N stacks (a service on its own database) fail independently within one hour: each
database alerts, its service a minute later. The result should be N incidents of
two alerts, each rooted at its database. The whole process is timed, as
`incidentd replay` runs.

With `--off-cmdb` the CMDB lists none of the stacks: every alert matches no CI
and falls back to grouping by labels, so the result should be 2N incidents of
one alert each. Such an alert joins an incident only through a CI its labels
fit, and these labels fit none. With `--in-cluster` as well, the alerts carry
the cluster label of 200 CIs the CMDB does list: too many to list the CIs the
labels fit from the index, so each alert weighs the incidents open, and the
result should be the same.

    python bench/storm.py [--counts 1000,2000,4000,8000] [--off-cmdb [--in-cluster]]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import timed  # noqa: E402

from daemon.timefmt import format_rfc3339  # noqa: E402

T0 = 1_767_225_600.0


def write_files(tmp: str, n: int, on_cmdb: bool = True, in_cluster: bool = False) -> tuple[str, str]:
    cis = [] if on_cmdb else [{"id": "elsewhere", "type": "service", "match": {"service": "elsewhere"}}]
    cluster = {"cluster": "c0"} if in_cluster else {}
    if in_cluster:
        cis.extend({"id": f"listed{i}", "type": "service", "match": {"cluster": "c0", "service": f"listed{i}"}}
                   for i in range(200))
    for i in range(n if on_cmdb else 0):
        cis.append({"id": f"db{i}", "type": "database", "match": {"service": f"db{i}"}})
        cis.append({"id": f"svc{i}", "type": "service", "match": {"service": f"svc{i}"}, "depends_on": [f"db{i}"]})
    with open(os.path.join(tmp, f"cmdb{n}.yaml"), "w") as fh:
        json.dump({"cis": cis}, fh)  # JSON is YAML
    config = os.path.join(tmp, f"config{n}.yaml")
    with open(config, "w") as fh:
        fh.write(f"cmdb: [cmdb{n}.yaml]\n")
    events = os.path.join(tmp, f"events{n}.jsonl")
    timed = []
    for i in range(n):
        t = T0 + i * 3600.0 / n
        timed.append((t, {"alertname": "MySQLDown", "service": f"db{i}", "severity": "critical", **cluster}))
        timed.append((t + 60.0, {"alertname": "HighErrorRate", "service": f"svc{i}", "severity": "warning",
                                 **cluster}))
    timed.sort(key=lambda x: x[0])
    with open(events, "w") as fh:
        for t, labels in timed:
            at = format_rfc3339(t)
            fh.write(json.dumps({"kind": "alert", "at": at, "alert": {
                "labels": labels, "status": "firing", "startsAt": at, "endsAt": format_rfc3339(t + 7200.0)}}) + "\n")
    return config, events


def _two_rooted_at_database(incident: dict) -> bool:
    services = sorted(a["labels"]["service"] for a in incident["alerts"])
    return len(services) == 2 and services[0].startswith("db") and services[1] == "svc" + services[0][2:] \
        and incident["root_cause"] == services[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1000,2000,4000,8000", help="how many faults at once")
    ap.add_argument("--off-cmdb", action="store_true", help="stacks the CMDB does not list")
    ap.add_argument("--in-cluster", action="store_true",
                    help="with --off-cmdb: in a cluster whose other CIs the CMDB lists")
    args = ap.parse_args()
    if args.in_cluster and not args.off_cmdb:
        ap.error("--in-cluster goes with --off-cmdb")
    with tempfile.TemporaryDirectory(prefix="incidentd-storm-") as tmp:
        for n in [int(x) for x in args.counts.split(",") if x]:
            config, events = write_files(tmp, n, on_cmdb=not args.off_cmdb, in_cluster=args.in_cluster)
            took, result = timed.replay(config, events, os.path.join(tmp, "result.json"))
            incidents = result["incidents"]
            if args.off_cmdb:
                right = sum(len(i["alerts"]) == 1 for i in incidents)
                expected = "of them one alert"
            else:
                right = sum(_two_rooted_at_database(i) for i in incidents)
                expected = "of them two alerts rooted at their database"
            print(f"{n} faults, {2 * n} alerts: {took:.2f}s whole process ({2 * n / took:,.0f} events/s); "
                  f"{len(incidents)} incidents, {right} {expected}")


if __name__ == "__main__":
    main()
