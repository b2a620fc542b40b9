"""Replay time of a problem with a long history: the work per incident must not grow with
the incidents the problem already has.

One service's latency alert fires for five minutes every half hour (a noisy check
nobody fixed), N times: N incidents, all of one problem. The whole process is
timed, as `incidentd replay` runs.

    python bench/long_problem.py [--counts 2000,4000,8000,16000]
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
LABELS = {"alertname": "HighLatencyP99", "cluster": "c0", "namespace": "app", "service": "svc1",
          "severity": "warning"}
CMDB = {"cis": [{"id": "svc1", "type": "service", "match": {"cluster": "c0", "namespace": "app", "service": "svc1"}}]}


def write_events(path: str, n: int) -> None:
    with open(path, "w") as fh:
        for i in range(n):
            start, end = format_rfc3339(T0 + i * 1800.0), format_rfc3339(T0 + i * 1800.0 + 300.0)
            fh.write(json.dumps({"kind": "alert", "at": start,
                                 "alert": {"labels": LABELS, "status": "firing", "startsAt": start}}) + "\n")
            fh.write(json.dumps({"kind": "alert", "at": end,
                                 "alert": {"labels": LABELS, "status": "resolved", "startsAt": start,
                                           "endsAt": end}}) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="2000,4000,8000,16000", help="how many times the alert recurs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="incidentd-problem-") as tmp:
        with open(os.path.join(tmp, "cmdb.yaml"), "w") as fh:
            json.dump(CMDB, fh)  # JSON is YAML
        config = os.path.join(tmp, "config.yaml")
        with open(config, "w") as fh:
            fh.write("cmdb: [cmdb.yaml]\n")
        for n in [int(x) for x in args.counts.split(",") if x]:
            events = os.path.join(tmp, f"events{n}.jsonl")
            write_events(events, n)
            took, result = timed.replay(config, events, os.path.join(tmp, "result.json"))
            problems = result["problems"]
            biggest = max((len(p["incidents"]) for p in problems), default=0)
            print(f"{n} recurrences: {took:.2f}s whole process ({1000 * took / n:.3f} ms per incident); "
                  f"{len(problems)} problem(s), the largest {biggest} incidents")


if __name__ == "__main__":
    main()
