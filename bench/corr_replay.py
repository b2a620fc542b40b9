"""A minimal stand-alone replay of alerts through the CMDB stage and the correlator.

It keeps incidents the simple way (an incident resolves when all its alerts
have resolved) and writes the result JSON of CONTRACT.md section 4. It is a
development harness for correlation; `incidentd replay` runs the full pipeline.

    python bench/corr_replay.py --cmdb CMDB.yaml --input EVENTS.jsonl --output R.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cmdb import CmdbHolder, CmdbStage  # noqa: E402
from correlation.engine import CorrelationConfig, TopologyCorrelator  # noqa: E402
from daemon.model import Alert  # noqa: E402
from daemon.pipeline import AlertEvent  # noqa: E402
from daemon.timefmt import format_rfc3339, parse_rfc3339  # noqa: E402


@dataclass
class Member:
    fingerprint: str
    labels: dict
    ci: str | None
    first_at: float
    last_at: float
    status: str = "firing"
    reason: str = ""


@dataclass
class Incident:
    id: str
    opened_at: float
    last_alert_at: float
    group_key: str = ""
    state: str = "open"
    resolved_at: float | None = None
    alerts: dict[str, Member] = field(default_factory=dict)
    analysis: object = None
    timeline: list[str] = field(default_factory=list)

    @property
    def cis(self) -> set[str]:
        return {m.ci for m in self.alerts.values() if m.ci}


class Incidents:
    def __init__(self) -> None:
        self.all: list[Incident] = []
        self.open: dict[str, Incident] = {}
        self.by_fp: dict[str, Incident] = {}

    def open_incidents(self):
        return list(self.open.values())


def replay(cmdb_paths: list[str], events_path: str, config: CorrelationConfig | None = None) -> tuple[dict, int, float]:
    holder = CmdbHolder(cmdb_paths)
    holder.load()
    stage = CmdbStage(holder)
    corr = TopologyCorrelator(lambda: holder.cmdb, config)
    incs = Incidents()
    n = 0
    t_start = time.perf_counter()
    with open(events_path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            ev = json.loads(line)
            n += 1
            if ev.get("kind") != "alert":
                continue
            now = parse_rfc3339(ev["at"])
            a = ev["alert"]
            alert = Alert(
                labels=a["labels"], annotations=a.get("annotations", {}),
                starts_at=parse_rfc3339(a["startsAt"]) if a.get("startsAt") else None,
                ends_at=parse_rfc3339(a["endsAt"]) if a.get("endsAt") else None,
                status=a.get("status", "firing"),
            )
            fp = alert.fingerprint
            inc = incs.by_fp.get(fp)
            if alert.status == "resolved":
                if inc is not None and inc.state == "open":
                    inc.alerts[fp].status = "resolved"
                    inc.alerts[fp].last_at = now
                    if all(m.status == "resolved" for m in inc.alerts.values()):
                        inc.state = "resolved"
                        inc.resolved_at = now
                        del incs.open[inc.id]
                continue
            if inc is not None and inc.state == "open" and inc.alerts[fp].status == "firing":
                inc.alerts[fp].last_at = now
                continue
            event = AlertEvent(alert)
            stage.process([event], now)
            placement = corr.place(event, incs, now)
            if placement.incident_ids:
                target = incs.open[placement.incident_ids[0]]
                for other_id in placement.incident_ids[1:]:
                    other = incs.open.pop(other_id)
                    other.state = "merged"
                    for ofp, m in other.alerts.items():
                        target.alerts[ofp] = m
                        incs.by_fp[ofp] = target
                    target.opened_at = min(target.opened_at, other.opened_at)
                    target.timeline.append(f"merged {other_id}")
            else:
                target = Incident(f"INC-{len(incs.all) + 1:05d}", now, now, placement.group_key)
                incs.all.append(target)
                incs.open[target.id] = target
            if fp in target.alerts:
                target.alerts[fp].status = "firing"
                target.alerts[fp].last_at = now
            else:
                target.alerts[fp] = Member(fp, dict(alert.labels), event.ci, now, now, reason=placement.reason)
            target.last_alert_at = now
            incs.by_fp[fp] = target
            target.analysis = corr.analyze(target, now)
    elapsed = time.perf_counter() - t_start
    out = []
    for inc in incs.all:
        if inc.state == "merged":
            continue
        an = inc.analysis
        out.append({
            "id": inc.id,
            "opened_at": format_rfc3339(inc.opened_at),
            "resolved_at": format_rfc3339(inc.resolved_at),
            "severity": "", "priority": an.priority if an else None,
            "alerts": [{"fingerprint": m.fingerprint, "labels": m.labels, "ci": m.ci, "reason": m.reason} for m in inc.alerts.values()],
            "root_cause": an.root_cause if an else None,
            "root_cause_candidates": an.candidates if an else [],
            "impacted": an.impacted if an else [],
            "explanation": an.explanation if an else "",
            "problem_id": None,
        })
    return {"incidents": out, "problems": [], "anomalies": []}, n, elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cmdb", action="append", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    args = p.parse_args()
    result, n, elapsed = replay(args.cmdb, args.input)
    Path(args.output).write_text(json.dumps(result, indent=1))
    print(f"{n} events in {elapsed:.2f}s ({n / elapsed:,.0f} events/s), {len(result['incidents'])} incidents")


if __name__ == "__main__":
    main()
