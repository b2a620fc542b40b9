"""The shortcuts grouping takes give the answers the plain definitions give.

On random dependency graphs (cycles included): hop-bounded relatedness against
a search over common causes, the census extended by one CI against one worked
out from scratch, and the best hypothesis for an incident plus a new alert
against ranking the joint alerts in a fresh explainer.
"""

from __future__ import annotations

import random

import pytest
from helpers import cmdb_of, random_cmdb

from correlation import model
from correlation.kinds import CAUSE, STATE, SYMPTOM
from correlation.model import Evidence, Explainer, Weights
from correlation.topology import Budgeted, Topology


def related_by_definition(topo: Topology, a: str, b: str, max_hops: int) -> bool:
    below_a, below_b = topo.below(a), topo.below(b)
    return any(d + below_b[r] <= max_hops for r, d in below_a.items() if r in below_b)


@pytest.mark.parametrize("seed", range(6))
def test_hop_bounded_relatedness_matches_a_search_for_common_causes(seed):
    topo = Topology(random_cmdb(seed))
    rnd = random.Random(seed)
    ids = sorted(topo.cmdb.cis)
    for _ in range(200):
        a = rnd.choice(ids)
        group = frozenset(rnd.sample(ids, rnd.randint(1, 4)))
        hops = rnd.randint(1, 4)
        expected = any(related_by_definition(topo, a, b, hops) for b in group)
        assert topo.related_to_any(a, group, hops) == expected


def random_evidence(rnd: random.Random, t: float) -> Evidence:
    return Evidence(rnd.choice((CAUSE, STATE, SYMPTOM)), rnd.choice((0.01, 0.02, 0.25)), (t,))


@pytest.mark.parametrize("seed", range(6))
def test_best_with_a_new_alert_matches_ranking_the_joint_alerts_afresh(seed):
    cmdb = random_cmdb(seed)
    rnd = random.Random(100 + seed)
    ids = sorted(cmdb.cis)
    grouping = Explainer(Topology(cmdb))
    checked = 0
    for _ in range(150):
        weights = {ci: random_evidence(rnd, rnd.uniform(0, 600)) for ci in rnd.sample(ids, rnd.randint(1, 6))}
        ci = rnd.choice(ids)
        ev = random_evidence(rnd, 700.0)
        grouping.rank(weights)  # as when the incident was analysed
        cis = frozenset(weights)
        assert grouping.census_with(cis, ci) == Explainer(Topology(cmdb)).census(cis | {ci})
        joint = dict(weights)
        joint[ci] = ev.stronger(weights.get(ci))
        fresh = Explainer(Topology(cmdb)).best(joint)
        got = grouping.best_with(weights, ci, ev)
        if fresh is None or ci in fresh.unexplained:
            assert got is None
        else:
            assert got is not None and (got.ci, round(got.loglik, 9)) == (fresh.ci, round(fresh.loglik, 9))
            checked += 1
    assert checked > 20  # the comparison ran on alerts that do join


@pytest.mark.parametrize("seed", range(4))
def test_weights_one_alert_on_carry_the_items_their_rankings_are_remembered_by(seed):
    """`Weights.adding` derives the items key from the weights before: it is the set of
    the new weights' items whether the alert brings a new CI, a stronger or later
    alert on a CI, or nothing new; and rankings through it match a fresh explainer's."""
    cmdb = random_cmdb(seed)
    rnd = random.Random(500 + seed)
    ids = sorted(cmdb.cis)
    ex = Explainer(Topology(cmdb))
    weights = Weights()
    for i in range(120):
        ci = rnd.choice(ids[:15])
        ev = weights[ci] if ci in weights and rnd.random() < 0.2 else random_evidence(rnd, float(rnd.randrange(0, 600, 60)))
        if i % 10 == 0:
            model._items_key(weights)  # as when the incident's weights were ranked; later ones derive
        if weights:
            ex.best_adding(weights, ci, ev)
        grown = weights.adding(ci, ev)
        assert grown == {**weights, ci: ev.stronger(weights.get(ci))}
        assert model._items_key(grown) == frozenset(grown.items())
        assert ex.noise_of(grown) == ex.noise_of(dict(grown)) == ex.noise_of(grown)  # (the second time kept)
        if len(grown) > 1:
            fresh = Explainer(Topology(cmdb)).rank(dict(grown), limit=5)
            assert [(h.ci, round(h.loglik, 9)) for h in ex.rank(grown, limit=5)] == \
                [(h.ci, round(h.loglik, 9)) for h in fresh]
        weights = grown
    assert len(weights) > 5


@pytest.mark.parametrize("seed", range(4))
def test_joined_evidence_derives_its_items_from_the_first_incidents(seed):
    from correlation.model import Weights

    rnd = random.Random(600 + seed)
    ids = [f"c{i}" for i in range(12)]
    for _ in range(100):
        maps = [{ci: random_evidence(rnd, float(rnd.randrange(0, 600, 60))) for ci in rnd.sample(ids, rnd.randint(1, 8))}
                for _ in range(rnd.randint(2, 3))]
        first = Weights(maps[0])
        if rnd.random() < 0.2:  # a later map with the first's very evidence on a CI
            ci = next(iter(first))
            maps[1][ci] = first[ci]
        model._items_key(first)
        got = Weights.union(first, *maps[1:])
        want: dict[str, Evidence] = {}
        for m in maps:
            for x, ev in m.items():
                want[x] = ev.stronger(want.get(x))
        assert got == want and list(got) == list(want)
        assert got.items_key == frozenset(want.items())


@pytest.mark.parametrize("seed", range(4))
def test_impact_worked_out_from_the_last_is_the_impact_worked_out_afresh(seed):
    """An incident gains alerting CIs one by one, now and then its root moves or a CI
    leaves it: the impact remembered per incident is the one `impacted` gives."""
    from correlation.impact import Impacts, impacted

    cmdb = random_cmdb(seed, n=60)
    topo = Topology(cmdb)
    rnd = random.Random(700 + seed)
    ids = sorted(cmdb.cis)
    impacts = Impacts(topo)
    alerting: list[str] = []
    root = rnd.choice(ids)
    grown = 0
    for _ in range(200):
        r = rnd.random()
        if r < 0.05:
            root = rnd.choice(ids)
        elif r < 0.1 and alerting:
            alerting.remove(rnd.choice(alerting))
        else:
            alerting.append(rnd.choice([c for c in ids if root in topo.below(c)] or ids))
            grown += 1
        assert impacts.of("INC-1", root, alerting) == impacted(root, alerting, topo)
    assert grown > 150 and len(impacted(root, alerting, topo)) > 3


@pytest.mark.parametrize("seed", range(4))
def test_the_priority_an_impact_justifies_is_read_off_its_first_ci(seed):
    from correlation.impact import PRIORITY_BY_CRITICALITY, impact_priority, impacted

    rnd = random.Random(800 + seed)
    cis = []
    for i in range(50):
        deps = rnd.sample(range(50), rnd.randint(0, 3))
        cis.append({"id": f"c{i}", "depends_on": [f"c{d}" for d in deps if d != i],
                    "criticality": rnd.choice([None, "low", "medium", "high", "critical"]),
                    "business_service": rnd.random() < 0.05})
    cmdb = cmdb_of(*cis)
    topo = Topology(cmdb)
    ids = sorted(cmdb.cis)
    seen = set()
    for _ in range(100):
        root = rnd.choice(ids)
        imp = impacted(root, rnd.sample(ids, rnd.randint(1, 20)), topo)
        every = [cmdb.cis[c] for c in [root, *imp]]
        want = "P1" if any(c.business_service for c in every) else \
            PRIORITY_BY_CRITICALITY.get(max(c.criticality_rank for c in every))
        assert impact_priority(root, imp, cmdb) == want
        seen.add(want)
    assert {"P1", "P2"} <= seen


def test_candidates_kept_with_a_census_are_those_picked_afresh():
    cmdb = random_cmdb(4, n=60)
    rnd = random.Random(8)
    ids = sorted(cmdb.cis)
    ex = Explainer(Topology(cmdb))
    for _ in range(60):
        weights = {ci: random_evidence(rnd, 0.0) for ci in rnd.sample(ids, rnd.randint(1, 12))}
        if rnd.random() < 0.5:  # as grouping gets it: from the census of all the CIs but one
            ci = rnd.choice(sorted(weights))
            count = ex.census_with(frozenset(weights) - {ci}, ci)
        else:
            count = ex.census(frozenset(weights))
        first = ex.candidates(weights, count)
        assert ex.candidates(weights) is first  # kept with the census of these CIs
        assert first == Explainer(Topology(cmdb)).candidates(weights, dict(count))


def test_a_budgeted_cache_lets_its_oldest_entries_go_to_stay_within_its_budget():
    cache: Budgeted[str, int] = Budgeted(budget=10, limit=3)
    cache.put("a", 1, 4)
    cache.put("b", 2, 4)
    cache.put("c", 3, 4)  # over the budget: "a" goes
    assert (cache.get("a"), cache.get("b"), cache.get("c"), cache.size) == (None, 2, 3, 8)
    cache.put("b", 20, 1)  # stored again: its size counts once
    assert (cache.get("b"), cache.size, len(cache)) == (20, 5, 2)
    cache.put("d", 4, 1)
    cache.put("e", 5, 1)  # over the limit of entries: the oldest, "c", goes
    assert list(cache.keys()) == ["b", "d", "e"] and cache.size == 3
    cache.put("f", 6, 50)  # larger than the budget alone: it is still stored, alone
    assert list(cache.keys()) == ["f"] and cache.get("f") == 6


def test_ranking_keeps_its_top_exact_when_branch_and_bound_stops_early():
    cmdb = random_cmdb(3, n=60)
    topo = Topology(cmdb)
    rnd = random.Random(5)
    ids = sorted(cmdb.cis)
    for _ in range(60):
        weights = {ci: random_evidence(rnd, rnd.uniform(0, 600)) for ci in rnd.sample(ids, rnd.randint(2, 8))}
        ex = Explainer(topo)
        ranked = ex.rank(weights, limit=ex.keep)
        cands = sorted(ex.candidates(weights))
        belows = {x: topo.below(x) for x in weights}
        bounds = ex._bounds(cands, weights, belows)
        tried = sorted(cands, key=lambda r: (-bounds[r], r))[: ex.full_scores]
        exact = sorted((ex.score(r, weights).loglik for r in tried), reverse=True)[: len(ranked)]
        assert [round(h.loglik, 9) for h in ranked] == [round(v, 9) for v in exact]
        assert all(bounds[r] >= ex.score(r, weights).loglik - 1e-9 for r in tried)


@pytest.mark.parametrize("seed", range(4))
def test_a_fault_that_reached_many_cis_scores_as_with_the_search_over_all_reached(seed, monkeypatch):
    """Past `FEW_REACHED` CIs, the nearest explained CI below each next one is found hop by
    hop below it: the same parent (and so the same score) as looking through every one."""
    cmdb = random_cmdb(seed, n=80)
    rnd = random.Random(200 + seed)
    ids = sorted(cmdb.cis)
    cases = [{ci: random_evidence(rnd, rnd.uniform(0, 900)) for ci in rnd.sample(ids, rnd.randint(12, 40))}
             for _ in range(30)]
    roots = [rnd.choice(ids) for _ in cases]
    fast = [Explainer(Topology(cmdb)).score(r, w) for r, w in zip(roots, cases, strict=True)]
    monkeypatch.setattr(model, "FEW_REACHED", 10**9)
    plain = [Explainer(Topology(cmdb)).score(r, w) for r, w in zip(roots, cases, strict=True)]
    assert [(h.ci, h.loglik, h.explained) for h in fast] == [(h.ci, h.loglik, h.explained) for h in plain]
    assert max(len(h.explained) for h in fast) > 8  # the default `FEW_REACHED`: the other way was taken


def _same(a, b) -> bool:
    return (a.ci, a.loglik, a.explained, a.unexplained, a.alerted, a.quiet) == \
        (b.ci, b.loglik, b.explained, b.unexplained, b.alerted, b.quiet)


@pytest.mark.parametrize("seed", range(12))
def test_a_score_grown_by_one_alerting_ci_at_a_time_is_the_score_worked_out_afresh(seed):
    """Kept in parts and grown by one CI at a time, the score of every root is exactly (to
    the bit) what `score` works out over all the CIs: CIs joining below and above those
    already explained, earlier than them (moving a silent root's first onset) and later,
    CIs alerting again later (what follows them arrived sooner after them), on quiet
    and alerting roots."""
    cmdb = random_cmdb(seed, n=70)
    rnd = random.Random(300 + seed)
    ids = sorted(cmdb.cis)
    ex = Explainer(Topology(cmdb))
    fresh = Explainer(Topology(cmdb))
    grown = 0
    for _ in range(6):
        order = rnd.sample(ids, rnd.randint(20, 60))
        roots = rnd.sample(ids, 6)
        weights = {ci: random_evidence(rnd, rnd.uniform(0, 3600)) for ci in order[:2]}
        parts = {r: ex._parts_of(r, weights) for r in roots}
        for ci in order[2:]:
            old = None
            if rnd.random() < 0.3:  # a CI already alerting alerts again, often only later
                ci = rnd.choice(sorted(weights))
                old = weights[ci]
                again = Evidence(old.kind, old.noise, (old.onsets[-1] + rnd.uniform(1, 900),)) \
                    if rnd.random() < 0.8 else random_evidence(rnd, rnd.uniform(0, 3600))
                weights = {**weights, ci: again.stronger(old)}
            else:
                weights = {**weights, ci: random_evidence(rnd, rnd.uniform(0, 3600))}
            for r in roots:
                got = ex._grown(r, parts[r], weights, ci) if old is None else ex._restated(parts[r], weights, ci, old)
                if got is None:  # the root itself joined, or a CI's alerts say something else now
                    got = ex._parts_of(r, weights)
                else:
                    grown += 1
                parts[r] = got
                assert _same(ex._hypothesis(r, got, weights), fresh.score(r, weights))
                assert _same(ex._hypothesis(r, ex._parts_of(r, weights), weights), fresh.score(r, weights))
    assert grown > 500


@pytest.mark.parametrize("seed", range(4))
def test_rankings_of_a_growing_incident_are_those_of_a_fresh_explainer(seed, monkeypatch):
    """Through `best_adding`, with scores kept in parts from a few alerting CIs on: the
    rankings an incident goes through as it gains alerts are a fresh explainer's."""
    monkeypatch.setattr(model, "PARTS_FROM", 3)
    cmdb = random_cmdb(seed, n=70)
    rnd = random.Random(400 + seed)
    ids = sorted(cmdb.cis)
    grouping = Explainer(Topology(cmdb))
    weights: dict[str, Evidence] = {}
    for ci in rnd.sample(ids, 50):
        ev = random_evidence(rnd, rnd.uniform(0, 3600))
        if weights:
            grouping.best_adding(weights, ci, ev)
        weights = {**weights, ci: ev.stronger(weights.get(ci))}
        monkeypatch.setattr(model, "PARTS_FROM", 10**9)
        want = Explainer(Topology(cmdb)).rank(weights, limit=5)
        monkeypatch.setattr(model, "PARTS_FROM", 3)
        got = grouping.rank(weights, limit=5)
        assert [(h.ci, h.loglik, h.explained, h.quiet) for h in got] == \
            [(h.ci, h.loglik, h.explained, h.quiet) for h in want]
    assert grouping._parts  # the kept way was taken


@pytest.mark.parametrize("seed", range(4))
def test_the_census_counts_for_each_possible_root_the_alerting_cis_above_it(seed):
    cmdb = random_cmdb(seed, n=80)
    topo = Topology(cmdb)
    rnd = random.Random(300 + seed)
    ids = sorted(cmdb.cis)
    for _ in range(40):
        cis = frozenset(rnd.sample(ids, rnd.randint(1, 30)))
        got = Explainer(topo).census(cis)
        assert got == {r: sum(r in topo.below(x) for x in cis) for r in got}
        assert cis <= got.keys()


def an_incident_on(cmdb):
    """A correlator over `cmdb` and an empty open incident for it."""
    from correlation.engine import TopologyCorrelator
    from daemon.incidents import Incident

    return TopologyCorrelator(cmdb), Incident(id="INC-1", seq=1, state="open", opened_at=0.0, updated_at=0.0)


def test_evidence_of_an_incident_that_only_gained_an_alert_is_what_all_its_alerts_give():
    from daemon.incidents import Member

    cmdb = random_cmdb(1, n=30)
    rnd = random.Random(7)
    correlator, inc = an_incident_on(cmdb)
    for i in range(300):
        t = float(rnd.randrange(0, 600, 30))  # onsets often shared
        m = Member(fingerprint=f"f{i}", labels={"alertname": rnd.choice(["NodeDown", "HighLatency", "CPUThrottlingHigh"]),
                                                "severity": rnd.choice(["critical", "warning", "info"])},
                   annotations={}, status="firing", starts_at=t, ends_at=None, first_at=t, last_at=t, since=t,
                   ci=rnd.choice([*sorted(cmdb.cis)[:8], None, "not-in-the-cmdb"]))
        inc.alerts[m.fingerprint] = m
        inc.revision += 1
        inc.appended = (inc.revision, m)
        if i % 50 == 49:  # now and then a change that is not an alert joining
            inc.revision += 1
        assert correlator.evidence(inc) == correlator._evidence(inc, cmdb)
    assert list(correlator._evidence_of) == ["INC-1"]  # its latest revision only


def test_an_incidents_members_by_ci_follow_it_through_each_alert_it_gains():
    from daemon.incidents import Member

    cmdb = random_cmdb(2, n=30)
    rnd = random.Random(9)
    correlator, inc = an_incident_on(cmdb)
    for i in range(300):
        if i % 40 == 39 and inc.alerts:  # now and then an alert leaves
            del inc.alerts[rnd.choice(sorted(inc.alerts))]
            inc.revision += 1
            inc.appended = None
        else:
            m = Member(fingerprint=f"f{i}", labels={"alertname": "NodeDown"}, annotations={}, status="firing",
                       starts_at=0.0, ends_at=None, first_at=0.0, last_at=0.0, since=0.0,
                       ci=rnd.choice([*sorted(cmdb.cis)[:6], None]))
            inc.alerts[m.fingerprint] = m
            inc.revision += 1
            inc.appended = (inc.revision, m)
        want: dict = {}
        for m in inc.alerts.values():
            want.setdefault(m.ci, []).append(m)
        got = correlator._members_on(inc)
        assert {ci: [m.fingerprint for m in ms] for ci, ms in got.items()} == \
            {ci: [m.fingerprint for m in ms] for ci, ms in want.items()}
    assert list(correlator._on_of) == ["INC-1"]


def test_rankings_of_large_incidents_are_remembered_within_a_bound(monkeypatch):
    """An incident of hundreds of CIs asks for a ranking with each alert it gains: the
    rankings remembered hold a bounded number of CIs in all, and what is ranked
    after the cache was emptied is what a fresh explainer ranks."""
    monkeypatch.setattr(model, "RANKED_CIS", 100)
    cmdb = random_cmdb(2, n=80)
    rnd = random.Random(11)
    ids = sorted(cmdb.cis)
    ex = Explainer(Topology(cmdb))
    weights: dict[str, Evidence] = {}
    for i, ci in enumerate(rnd.sample(ids, 60)):
        weights[ci] = random_evidence(rnd, 10.0 * i)
        got = ex.rank(weights)
        assert ex._ranked.size == sum(len(key[0]) for key in ex._ranked.keys()) <= 100
        fresh = Explainer(Topology(cmdb)).rank(weights)
        assert [(h.ci, round(h.loglik, 9)) for h in got] == [(h.ci, round(h.loglik, 9)) for h in fresh]


@pytest.mark.parametrize("seed", range(4))
def test_the_cis_related_to_one_are_those_sharing_a_common_cause_with_it(seed):
    topo = Topology(random_cmdb(seed))
    ids = sorted(topo.cmdb.cis)
    for hops in (1, 2, 3):
        for a in ids:
            assert topo.related(a, hops) == {b for b in ids if related_by_definition(topo, a, b, hops)}


def _storm(seed: int, indexed_from: int, monkeypatch) -> tuple[list, list]:
    """Random alerts, resolutions, a person's splits and merges on a random CMDB through
    the incident manager; what it ends with, and its timeline. Along the way, the
    incidents it finds by CI are those holding an alert there, and the incident in which an
    alert fires, found by its fingerprint, is the one a look through them all finds."""
    from correlation import engine
    from correlation.engine import TopologyCorrelator
    from daemon.config import IncidentSettings
    from daemon.incidents import IncidentError, IncidentManager
    from daemon.model import Alert
    from daemon.pipeline import AlertEvent

    monkeypatch.setattr(engine, "INDEXED_FROM", indexed_from)
    cmdb = random_cmdb(seed, n=60)
    ids = sorted(cmdb.cis)
    rnd = random.Random(400 + seed)
    mgr = IncidentManager(IncidentSettings(reopen_window=900.0), TopologyCorrelator(cmdb))
    now = 1_767_225_600.0
    firing: dict[tuple[str, str], float] = {}
    for _ in range(400):
        now += rnd.choice((5.0, 30.0, 120.0, 900.0))
        roll = rnd.random()
        if roll < 0.6 or not firing:
            key = (rnd.choice(ids), rnd.choice(("NodeDown", "KubePodNotReady", "HighLatency")))
            firing.setdefault(key, now)
            alert = Alert({"alertname": key[1], "ci": key[0]}, {}, firing[key], None, "firing")
        elif roll < 0.9:
            key = rnd.choice(sorted(firing))
            alert = Alert({"alertname": key[1], "ci": key[0]}, {}, firing.pop(key), now, "resolved")
        else:
            held = [i for i in mgr.incidents.values() if i.is_open and len(i.alerts) > 1]
            try:
                if held and roll < 0.95:
                    inc = rnd.choice(held)
                    mgr.split(inc.id, rnd.sample(sorted(inc.alerts), 1), "alice", now)
                elif len(held) > 1:
                    mgr.merge(held[0].id, [held[1].id], "alice", now)
            except IncidentError:
                pass  # kept apart by an earlier split
            mgr.tick(now)
            continue
        fp = alert.fingerprint
        assert TopologyCorrelator._firing_in(mgr, now, fp) == next(
            (i for i in mgr.joinable_incidents(now) if fp in i.alerts and i.alerts[fp].status != "resolved"), None)
        mgr.apply([AlertEvent(alert, ci=alert.labels["ci"])], now)
        mgr.tick(now)
        for ci in ids:
            assert mgr.joinable_incidents(now, on={ci}) == [i for i in mgr.joinable_incidents(now) if ci in i.cis]
    held = [(i.id, i.state, sorted(i.alerts), i.root_cause) for i in mgr.incidents.values()]
    return held, [(e.incident_id, e.kind, e.text) for e in mgr._timeline]


@pytest.mark.parametrize("seed", range(3))
def test_placing_through_the_index_by_ci_is_placing_after_looking_through_every_incident(seed, monkeypatch):
    indexed = _storm(seed, 0, monkeypatch)
    scanned = _storm(seed, 10**9, monkeypatch)
    assert indexed == scanned
    texts = " ".join(text for _, _, text in indexed[1])
    assert "merged" in texts and "split" in texts and "attached" in texts  # all of it was taken through
