"""Replay time of a problem with a long history: the work per incident must not grow with
the incidents the problem already has.

One service's latency alert fires for five minutes every half hour (a noisy check
nobody fixed), N times: N incidents, all of one problem. The whole process is
timed, as `incidentd replay` runs.

With `--pool`, the N incidents are on N hosts of one pool instead (like hosts on one
network, interchangeable for the problem), each going down once for ten minutes:
the work per incident must not grow with the pool either. The peak memory of the
replay is shown as well.

    python bench/long_problem.py [--counts 2000,4000,8000,16000] [--pool]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import timed  # noqa: E402

from daemon.timefmt import format_rfc3339  # noqa: E402

T0 = 1_767_225_600.0
LABELS = {"alertname": "HighLatencyP99", "cluster": "c0", "namespace": "app", "service": "svc1",
          "severity": "warning"}
CMDB = {"cis": [{"id": "svc1", "type": "service", "match": {"cluster": "c0", "namespace": "app", "service": "svc1"}}]}


def _episode(fh, labels: dict[str, str], at: float, lasting: float) -> None:
    """An alert firing at `at` and resolved `lasting` seconds later."""
    start, end = format_rfc3339(at), format_rfc3339(at + lasting)
    fh.write(json.dumps({"kind": "alert", "at": start,
                         "alert": {"labels": labels, "status": "firing", "startsAt": start}}) + "\n")
    fh.write(json.dumps({"kind": "alert", "at": end,
                         "alert": {"labels": labels, "status": "resolved", "startsAt": start, "endsAt": end}}) + "\n")


def write_events(path: str, n: int) -> None:
    with open(path, "w") as fh:
        for i in range(n):
            _episode(fh, LABELS, T0 + i * 1800.0, 300.0)


def pool_cmdb(n: int) -> dict:
    cis = [{"id": "net-1", "type": "network", "match": {"zone": "z1"}}]
    cis += [{"id": f"host-{i}", "type": "host", "match": {"node": f"host-{i}"}, "depends_on": ["net-1"]}
            for i in range(n)]
    return {"cis": cis}


def write_pool_events(path: str, n: int) -> None:
    with open(path, "w") as fh:
        for i in range(n):
            _episode(fh, {"alertname": "NodeDown", "node": f"host-{i}", "severity": "critical"},
                     T0 + i * 1800.0, 600.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="2000,4000,8000,16000", help="how many times the alert recurs")
    ap.add_argument("--pool", action="store_true", help="on as many hosts of one pool, once each")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="incidentd-problem-") as tmp:
        config = os.path.join(tmp, "config.yaml")
        # (ascending counts: the peak memory of the replays so far is the last one's)
        for n in sorted(int(x) for x in args.counts.split(",") if x):
            with open(os.path.join(tmp, "cmdb.yaml"), "w") as fh:
                json.dump(pool_cmdb(n) if args.pool else CMDB, fh)  # JSON is YAML
            with open(config, "w") as fh:
                fh.write("cmdb: [cmdb.yaml]\n")
            events = os.path.join(tmp, f"events{n}.jsonl")
            (write_pool_events if args.pool else write_events)(events, n)
            took, result = timed.replay(config, events, os.path.join(tmp, "result.json"))
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            problems = result["problems"]
            biggest = max((len(p["incidents"]) for p in problems), default=0)
            what = "hosts of a pool down in turn" if args.pool else "recurrences"
            print(f"{n} {what}: {took:.2f}s whole process ({1000 * took / n:.3f} ms per incident), "
                  f"peak {peak:.0f} MB; {len(problems)} problem(s), the largest {biggest} incidents")


if __name__ == "__main__":
    main()
