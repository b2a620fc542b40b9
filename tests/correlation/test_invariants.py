"""Whatever comes in, in whatever order, every alert is held by one incident.

Random dependency graphs (cycles included) and random streams of faults: alerts
firing on CMDB CIs and off them, re-sent, resolved, outlasting their faults (so
that they are let go and placed again), firing again soon after they end (so that
incidents reopen); people splitting and merging. After every event the manager's
books agree with its incidents.
"""

from __future__ import annotations

import random

import pytest
from helpers import random_cmdb

from correlation.engine import TopologyCorrelator
from daemon.config import IncidentSettings
from daemon.incidents import IncidentError, IncidentManager
from daemon.model import Alert
from daemon.pipeline import AlertEvent

T0 = 1_767_225_600.0
NAMES = ("NodeDown", "KubePodNotReady", "HighLatency", "NodeFilesystemSpaceFillingUp")


def _check(mgr: IncidentManager, resent: set[str]) -> None:
    """No alert fires in two incidents; the index by fingerprint and the one by CI
    agree with the members, and so does whether an incident has a member firing;
    rankings are in order; the incidents with an alert on any CI are known; what was just sent firing (`resent`) fires in one incident,
    the one its fingerprint leads to."""
    holders: dict[str, list[str]] = {}
    for inc in mgr.incidents.values():
        if inc.state == "merged":
            assert not inc.is_open
            continue
        for fp, m in inc.alerts.items():
            assert m.fingerprint == fp
            if m.status == "firing":
                holders.setdefault(fp, []).append(inc.id)
        assert inc.any_firing() == any(m.status == "firing" for m in inc.alerts.values()), inc.id
        for ci in inc.cis:  # the index by CI knows every CI an incident holds alerts on
            assert inc.id in mgr._on_ci.get(ci, ()), (inc.id, ci)
        if inc.root_cause is not None:
            scores = [c["score"] for c in inc.root_cause_candidates]
            assert scores == sorted(scores, reverse=True)
    counted: dict[str, int] = {}  # how many CIs the index has each incident under
    for ids in mgr._on_ci.values():
        for iid in ids:
            counted[iid] = counted.get(iid, 0) + 1
    assert mgr._cis_held == counted  # (what finds the incidents with an alert on any CI)
    for fp, ids in holders.items():
        assert len(ids) == 1, f"{fp} fires in {ids}"
    for fp, iid in mgr.by_fingerprint.items():
        held = mgr.incidents.get(iid)
        assert held is not None and fp in held.alerts, (fp, iid)
    for fp in resent:  # what was just sent firing is in one incident, and found there
        assert len(holders.get(fp, ())) == 1, fp
        assert mgr.by_fingerprint.get(fp) == holders[fp][0]


def _stream(cmdb, rnd: random.Random, faults: int) -> list[tuple[float, str, str, str]]:
    """(at, what, CI, alertname) events, what being fire, resend or resolve: faults that
    start on a CI and reach some of its dependents minutes later, whose alerts end at
    random (a dependent's often long after the root's: it outlasts the fault), some
    firing again soon after they end; noise alerts, on CMDB CIs and off them."""
    ids = sorted(cmdb.cis)
    out = []
    t = T0
    for _ in range(faults):
        t += rnd.choice((30.0, 120.0, 600.0, 2400.0))
        root = rnd.choice(ids)
        if rnd.random() < 0.25:  # noise
            hit = [(root if rnd.random() < 0.8 else f"off-{rnd.randrange(3)}", rnd.choice(NAMES), 0.0)]
        else:
            above = sorted(cmdb.dependents(root, 3).items())
            hit = [(root, "NodeDown", 0.0)] + [(ci, rnd.choice(NAMES[1:]), hops * rnd.uniform(30, 240))
                                               for ci, hops in rnd.sample(above, min(len(above), 4))]
        for ci, name, delay in hit:
            start = t + delay
            end = start + rnd.choice((120.0, 600.0, 1800.0, 5400.0))
            out.append((start, "fire", ci, name))
            out += [(x, "resend", ci, name) for x in range(int(start) + 60, int(end), 300)]
            out.append((end, "resolve", ci, name))
            if rnd.random() < 0.2:  # flaps: fires again a little later
                again = end + rnd.uniform(60, 600)
                out += [(again, "fire", ci, name), (again + 300, "resolve", ci, name)]
    return sorted(out)


@pytest.mark.parametrize("seed", range(4))
def test_every_firing_alert_is_held_by_exactly_one_incident(seed):
    cmdb = random_cmdb(seed, n=50)
    rnd = random.Random(900 + seed)
    mgr = IncidentManager(IncidentSettings(reopen_window=900.0), TopologyCorrelator(cmdb))
    starts: dict[tuple[str, str], float] = {}  # what fires, with its startsAt
    seen: set[str] = set()
    for n, (now, what, ci, name) in enumerate(_stream(cmdb, rnd, 150)):
        key = (ci, name)
        if what == "resend" and key not in starts or what == "resolve" and key not in starts:
            continue  # (two of a fault's alerts on one CI: the first one's end ended both)
        if what == "fire":
            starts.setdefault(key, now)
        alert = Alert({"alertname": name, "ci": ci}, {}, starts[key], now if what == "resolve" else None,
                      "resolved" if what == "resolve" else "firing")
        if what == "resolve":
            del starts[key]
        mgr.tick(now)
        mgr.apply([AlertEvent(alert, ci=ci if ci in cmdb else None)], now)
        if n % 40 == 39:  # now and then a person splits or merges
            held = [i for i in mgr.incidents.values() if i.is_open and len(i.alerts) > 1]
            try:
                if held and n % 80 == 39:
                    inc = rnd.choice(held)
                    mgr.split(inc.id, rnd.sample(sorted(inc.alerts), 1), "alice", now)
                elif len(held) > 1:
                    a, b = rnd.sample(held, 2)
                    mgr.merge(a.id, [b.id], "alice", now)
            except IncidentError:
                pass  # kept apart by an earlier split
        _check(mgr, {alert.fingerprint} if alert.status == "firing" else set())
        seen.update(f"{e.kind} by {e.actor}" for e in mgr._timeline)
    # the stream took every path that moves an alert between incidents
    assert {"alert_detached by incidentd", "merged by incidentd", "merged by alice", "split by alice",
            "reopened by incidentd"} <= seen, seen
