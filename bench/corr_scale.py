"""Scale figures: replay events/s on a generated 50,000-event file, and µs per alert
to map labels to a CI on a generated 50,000-CI CMDB.

    python bench/corr_scale.py [--events 50000] [--cis 50000] [--replay KINDS] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import timed  # noqa: E402

from cmdb import load_cmdb_docs  # noqa: E402
from daemon import heap  # noqa: E402
from daemon.model import fingerprint  # noqa: E402
from daemon.timefmt import format_rfc3339  # noqa: E402


def _infrastructure(cis: list[dict], rnd: random.Random, c: int, cl: str, n_nodes: int, n_dbs: int
                    ) -> tuple[list[str], list[str]]:
    """A cluster's three zone networks, its nodes (each in a zone) and its datastores
    (each on a node), appended to `cis`; returns the nodes and the datastores."""
    zones = [f"net-{cl}-{z}" for z in "abc"]
    for z, zid in enumerate(zones):
        cis.append({"id": zid, "type": "network", "match": {"cluster": cl, "job": "blackbox", "instance": f"10.{c}.{z}.1"}})
    nodes = [f"node-{cl}-{i}" for i in range(n_nodes)]
    for nid in nodes:
        cis.append({"id": nid, "type": "host", "match": {"cluster": cl, "node": nid}, "depends_on": [rnd.choice(zones)]})
    dbs = [f"db{i}.{cl}" for i in range(n_dbs)]
    for d in dbs:
        cis.append({"id": d, "type": "database", "match": {"cluster": cl, "namespace": "app", "service": d.split(".")[0]},
                    "depends_on": [rnd.choice(nodes)]})
    return nodes, dbs


def topology(n_cis: int, seed: int = 7) -> dict:
    """Clusters of zones > nodes > datastores and services, a gateway and a business service."""
    rnd = random.Random(seed)
    cis: list[dict] = []
    per_cluster = 1000
    clusters = max(1, n_cis // per_cluster)
    for c in range(clusters):
        cl = f"c{c}"
        nodes, dbs = _infrastructure(cis, rnd, c, cl, 100, 200)
        svcs = [f"svc{i}.{cl}" for i in range(694)]
        for i, s in enumerate(svcs):
            deps = rnd.sample(svcs[:i], min(i, 2)) + [rnd.choice(dbs)] + rnd.sample(nodes, 2)
            cis.append({"id": s, "type": "service", "criticality": "high",
                        "matches": [{"cluster": cl, "namespace": "app", "service": s.split(".")[0]},
                                    [f'cluster="{cl}"', f'job=~"{s.split(".")[0]}-(exporter|metrics)"']],
                        "depends_on": deps})
        cis.append({"id": f"gw.{cl}", "type": "load_balancer", "match": {"cluster": cl, "ingress": "gw"},
                    "depends_on": svcs[-20:]})
    cis.append({"id": "biz", "type": "business_service", "match": {"slo": "biz"},
                "depends_on": [f"gw.c{c}" for c in range(clusters)]})
    return {"cis": cis[:n_cis] if len(cis) > n_cis else cis}


def tiered_topology(n_cis: int, seed: int = 7) -> dict:
    """Clusters shaped like a microservice shop (Sock Shop, DeathStarBench): an ingress,
    four tiers of services each calling two or three services of the next tier, the
    back tier on datastores, everything on nodes in three zones; 100 CIs a cluster."""
    rnd = random.Random(seed)
    cis: list[dict] = []
    clusters = max(1, n_cis // 100)
    for c in range(clusters):
        cl = f"t{c}"
        nodes, dbs = _infrastructure(cis, rnd, c, cl, 12, 12)
        tiers = [[f"svc{t}{i}.{cl}" for i in range(n)] for t, n in enumerate((4, 14, 24, 30))]
        for t, tier in enumerate(tiers):
            for s in tier:
                below = rnd.sample(tiers[t + 1], rnd.randint(2, 3)) if t + 1 < len(tiers) else [rnd.choice(dbs)]
                cis.append({"id": s, "type": "service", "criticality": "high",
                            "match": {"cluster": cl, "namespace": "app", "service": s.split(".")[0]},
                            "depends_on": below + rnd.sample(nodes, 2)})
        cis.append({"id": f"gw.{cl}", "type": "load_balancer", "match": {"cluster": cl, "ingress": "gw"},
                    "depends_on": tiers[0]})
    cis.append({"id": "biz", "type": "business_service", "match": {"slo": "biz"},
                "depends_on": [f"gw.t{c}" for c in range(clusters)]})
    return {"cis": cis}


def bench_mapping(n_cis: int) -> None:
    doc = topology(n_cis)
    t0 = time.perf_counter()
    cmdb = load_cmdb_docs([("generated", doc)])
    heap.settle()  # as the daemon does once start-up is done: the CMDB is long-lived
    print(f"CMDB: {len(cmdb)} CIs, {cmdb.graph.number_of_edges()} relations, built (and settled) in "
          f"{time.perf_counter() - t0:.2f}s")
    with tempfile.TemporaryDirectory() as tmp:
        path, cfg = os.path.join(tmp, "cmdb.yaml"), os.path.join(tmp, "config.yaml")
        with open(path, "w") as fh:
            json.dump(doc, fh)  # JSON is YAML
        with open(cfg, "w") as fh:
            fh.write(f"cmdb: [{path}]\n")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "daemon.cli", "check-config", "--config", cfg], cwd=ROOT,
                       check=True, capture_output=True)
        print(f"  incidentd check-config on it, a whole process (read and validate; the graph and the "
              f"index are built by a start or a replay): "
              f"{time.perf_counter() - t0:.2f}s")
    rnd = random.Random(1)
    clusters = max(1, n_cis // 1000)
    label_sets = []
    for _ in range(20000):
        c = rnd.randrange(clusters)
        kind = rnd.random()
        if kind < 0.5:
            labels = {"alertname": "HighErrorRate", "cluster": f"c{c}", "namespace": "app", "service": f"svc{rnd.randrange(694)}", "severity": "critical"}
        elif kind < 0.7:
            labels = {"alertname": "NodeDown", "cluster": f"c{c}", "node": f"node-c{c}-{rnd.randrange(100)}"}
        elif kind < 0.85:
            labels = {"alertname": "ExporterDown", "cluster": f"c{c}", "job": f"svc{rnd.randrange(694)}-exporter"}
        else:
            labels = {"alertname": "KubeJobFailed", "cluster": f"c{c}", "namespace": "ops", "job_name": f"j{rnd.randrange(999)}"}
        label_sets.append(labels)
    idx = cmdb.index
    t0 = time.perf_counter()
    hits = sum(1 for ls in label_sets if idx.lookup_uncached(ls) is not None)
    cold = (time.perf_counter() - t0) / len(label_sets) * 1e6
    t0 = time.perf_counter()
    for ls in label_sets:
        cmdb.ci_for(ls)
    first = (time.perf_counter() - t0) / len(label_sets) * 1e6
    t0 = time.perf_counter()
    for ls in label_sets:
        cmdb.ci_for(ls)
    warm = (time.perf_counter() - t0) / len(label_sets) * 1e6
    print(f"CI mapping on {len(cmdb)} CIs: {cold:.2f} µs/alert uncached, {first:.2f} µs first call (fills cache), "
          f"{warm:.2f} µs cached; {hits}/{len(label_sets)} matched a CI")


def events_file(path: str, n_events: int, cmdb_path: str, n_cis: int) -> None:
    """Faults on random CIs that propagate to dependents, plus re-sends and noise, as a webhook would deliver."""
    doc = topology(n_cis)
    with open(cmdb_path, "w") as fh:
        json.dump(doc, fh)  # JSON is YAML
    cmdb = load_cmdb_docs([("generated", doc)])
    rnd = random.Random(3)
    ids = list(cmdb.cis)
    t = 1_767_225_600.0
    lines = []
    firing: dict[str, tuple[dict, float]] = {}
    while len(lines) < n_events:
        t += rnd.uniform(0.5, 3)
        r = rnd.random()
        if r < 0.01:
            root = rnd.choice(ids)
            hit = [root] + [c for c, h in cmdb.dependents(root, 2).items() if rnd.random() < 0.5][:8]
            for c in hit:
                labels = {"alertname": rnd.choice(["HighErrorRate", "InstanceDown"]), "ci": c}
                for m in cmdb.cis[c].match[0].matchers:
                    labels[m.name] = m.value
                firing[json.dumps(labels, sort_keys=True)] = (labels, t + rnd.uniform(600, 3600))
        elif r < 0.03:
            labels = {"alertname": "KubeJobFailed", "cluster": "c0", "namespace": "ops", "job_name": f"j{rnd.randrange(500)}"}
            firing[json.dumps(labels, sort_keys=True)] = (labels, t + 600)
        for key, (labels, end) in list(firing.items()):
            if rnd.random() < 0.05 or end <= t:
                status = "resolved" if end <= t else "firing"
                at = format_rfc3339(t)
                lines.append(json.dumps({"kind": "alert", "at": at, "alert": {
                    "status": status, "labels": labels, "annotations": {}, "startsAt": at,
                    "endsAt": at if status == "resolved" else "0001-01-01T00:00:00Z"}}))
                if status == "resolved":
                    del firing[key]
    with open(path, "w") as fh:
        fh.write("\n".join(lines[:n_events]) + "\n")


def realistic_events_file(path: str, n_events: int, cmdb_path: str, n_cis: int, seed: int = 11,
                          shape: str = "dense", truth_path: str | None = None) -> None:
    """Alertmanager-like delivery over days: per 1,000-CI cluster about one fault an hour
    (root plus dependents within two hops, each after a delay, for 10-60 minutes) and two
    noise alerts an hour; every firing alert re-sent every 5 minutes, resolved once.
    With `truth_path`, also writes which fault (or noise) each alert came from, in the
    ground-truth form of ../shared/corr, for its scorer."""
    doc = tiered_topology(n_cis) if shape == "tiered" else topology(n_cis)
    with open(cmdb_path, "w") as fh:
        json.dump(doc, fh)
    # faults travel along the dependencies the file records, not the ones the loader
    # infers from other clusters (see cmdb.drift): those are for correlation to judge
    cmdb = load_cmdb_docs([("generated", doc)], infer_edges=False)
    rnd = random.Random(seed)
    ids = list(cmdb.cis)
    clusters = max(1, n_cis // 1000)  # the fault and noise rates are per 1,000 CIs
    t0 = 1_767_225_600.0
    pending: list[tuple[float, int, str, dict, float]] = []  # (send at, seq, status, labels, ends)
    seq = 0
    occurrences: list[dict] = []  # each alert's fault ("noise" for noise), for the ground truth
    faults: list[dict] = []

    def labels_of(ci: str, name: str) -> dict:
        out = {"alertname": name, "severity": "critical" if name.endswith("Down") else "warning"}
        for m in cmdb.cis[ci].match[0].matchers:
            out[m.name] = m.value
        return out

    def alert(at: float, labels: dict, duration: float, ci: str, fault: str, group: str) -> None:
        nonlocal seq
        seq += 1
        pending.append((at, seq, "firing", labels, at + duration))
        occurrences.append({"fingerprint": fingerprint(labels), "labels": labels, "ci": ci, "fault": fault,
                            "group": group, "first_at": at, "last_at": at + duration})

    t = t0
    while t < t0 + 86400 * 60 and len(pending) < n_events * 2:
        t += rnd.expovariate(clusters * 3 / 3600)
        if rnd.random() < 1 / 3:
            root = rnd.choice(ids)
            deps = [c for c in cmdb.dependents(root, 2) if rnd.random() < 0.6][:8]
            duration = rnd.uniform(600, 3600)
            fid = f"F{len(faults) + 1:05d}"
            faults.append({"id": fid, "root_ci": root, "root_kind": cmdb.cis[root].type, "start": t,
                           "impacted": sorted(cmdb.dependents(root)), "alerting_cis": [root, *deps]})
            alert(t, labels_of(root, rnd.choice(["InstanceDown", "HighErrorRate", "HighLatency"])), duration,
                  root, fid, fid)
            for c in deps:
                alert(t + rnd.uniform(30, 600), labels_of(c, rnd.choice(["HighErrorRate", "HighLatency"])), duration,
                      c, fid, fid)
        else:
            ci = rnd.choice(ids)
            alert(t, labels_of(ci, rnd.choice(["CPUThrottlingHigh", "DiskFillingUp"])), rnd.uniform(300, 1800),
                  ci, "noise", f"N{len(occurrences) + 1:05d}")
    import heapq

    heapq.heapify(pending)
    lines = []
    last = t0
    while pending and len(lines) < n_events:
        at, s_, status, labels, ends = heapq.heappop(pending)
        last = at
        stamp = format_rfc3339(at)
        resolved = at >= ends
        lines.append(json.dumps({"kind": "alert", "at": stamp, "alert": {
            "status": "resolved" if resolved else "firing", "labels": labels, "annotations": {},
            "startsAt": stamp, "endsAt": stamp if resolved else "0001-01-01T00:00:00Z"}}))
        if not resolved:
            heapq.heappush(pending, (min(at + 300 + rnd.uniform(-20, 20), ends), s_, status, labels, ends))
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    if truth_path is not None:
        with open(truth_path, "w") as fh:
            json.dump(_truth(shape, n_cis, occurrences, faults, last), fh)


def _truth(shape: str, n_cis: int, occurrences: list[dict], faults: list[dict], last: float) -> dict:
    """The ground truth of the alerts a generated file holds (those that began by its
    last event, cut at it), in ../shared/corr's form."""
    occs = []
    for o in occurrences:
        if o["first_at"] <= last:
            occs.append({**o, "first_at": format_rfc3339(o["first_at"]),
                         "last_at": format_rfc3339(min(o["last_at"], last))})
    out = []
    for f in faults:
        if f["start"] <= last:
            at = format_rfc3339(f["start"])
            out.append({**f, "mode": "generated", "start": at, "first_alert_at": at, "root_alerted": True,
                        "problem": f["id"], "recurring": False, "change": None, "concurrent_with": []})
    return {"version": 1, "scenario": {"name": f"generated-{shape}-{n_cis}"}, "faults": out, "problems": [],
            "alerts": occs}


SCENARIO = os.path.join(ROOT, "..", "shared", "corr", "dev-sockshop")


def scenario_events_file(path: str, n_events: int, cmdb_path: str) -> None:
    """The development scenario's week (its CMDB and its Alertmanager deliveries, changes
    included) repeated week after week until `n_events` events: corr_variants' `long`."""
    from corr_variants import _read, long

    events, truth, cmdb = _read(SCENARIO)
    events, _, _ = long(events, truth, cmdb, random.Random(0), weeks=-(-n_events // len(events)))
    with open(cmdb_path, "w") as fh:
        json.dump(cmdb, fh)
    with open(path, "w") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in events[:n_events])


KINDS = {
    "scenario": "the development scenario's week repeated (its 49-CI CMDB), 15 weeks",
    "tiered": "Alertmanager-like delivery, tiered shop topology (100-CI clusters)",
    "random": "Alertmanager-like delivery, random service DAG (1,000-CI clusters)",
    "stream": "dense stream (a fault every ~3 minutes, re-sends every ~35 s), random service DAG",
}


def bench_replay(n_events: int, n_cis: int, kind: str, runs: int = 1) -> None:
    """`incidentd replay` as a whole process (`runs` times: the best and the median),
    then the same run in this process split into start-up (config, CMDB load and
    check) and the event loop."""
    from daemon import checks
    from daemon.config import load_config
    from daemon.logs import quiet_logging
    from daemon.replay import build_result, replay_events

    with tempfile.TemporaryDirectory() as tmp:
        ev, cm, cfg, out, truth = (os.path.join(tmp, n) for n in
                                   ("events.jsonl", "cmdb.yaml", "config.yaml", "r.json", "truth.json"))
        if kind == "scenario":
            if not os.path.isdir(SCENARIO):
                print(f"replay, {KINDS[kind]}: skipped ({SCENARIO} not found)")
                return
            scenario_events_file(ev, n_events, cm)
        elif kind == "stream":
            events_file(ev, n_events, cm, n_cis)
        else:
            realistic_events_file(ev, n_events, cm, n_cis, shape="tiered" if kind == "tiered" else "dense",
                                  truth_path=truth)
        with open(cfg, "w") as fh:
            fh.write(f"cmdb: [{cm}]\n")
        times = []
        for _ in range(runs):
            took, res = timed.replay(cfg, ev, out)
            times.append(took)
        whole = min(times)
        median = statistics.median(times)
        quiet_logging()
        t0 = time.perf_counter()
        config = load_config(cfg)
        assert not checks.check_all(config)
        t1 = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:
            components, store = replay_events(config, ev, work)
            t2 = time.perf_counter()
            build_result(components, store)
            store.close()
        size = "the scenario's CMDB" if kind == "scenario" else f"a {n_cis}-CI CMDB"
        print(f"replay, {KINDS[kind]}: {n_events} events on {size}, {len(res['incidents'])} incidents\n"
              f"  whole process {whole:.2f}s = {n_events / whole:,.0f} events/s"
              + (f" (best of {runs}; median {median:.2f}s = {n_events / median:,.0f} events/s)" if runs > 1 else "")
              + f"; in process: start-up "
              f"{t1 - t0:.2f}s, event loop {t2 - t1:.2f}s = {n_events / (t2 - t1):,.0f} events/s")
        if os.path.exists(truth):  # the generated files with a ground truth
            _score(truth, out)


SCORER = os.path.join(ROOT, "..", "shared", "corr", "score.py")


def _score(truth: str, result: str) -> None:
    """How well the replay grouped the generated faults and found their roots, by the
    correlation benchmark's scorer (when ../shared is there)."""
    if not os.path.exists(SCORER):
        print(f"  quality: skipped ({SCORER} not found)")
        return
    got = subprocess.run([sys.executable, SCORER, "--truth", truth, "--result", result, "--json"],
                         check=True, capture_output=True, text=True)
    s = json.loads(got.stdout)
    g, rc = s["grouping"], s["root_cause"]
    print(f"  quality: pairwise P {g['precision']:.3f} R {g['recall']:.3f} F1 {g['f1']:.3f}, "
          f"root cause AC@1 {rc['ac1']:.3f} AC@3 {rc['ac3']:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--cis", type=int, default=50_000)
    p.add_argument("--replay-cis", type=int, default=5_000)
    p.add_argument("--replay", default=",".join(KINDS), help="which event files: " + ", ".join(KINDS))
    p.add_argument("--runs", type=int, default=1, help="whole-process replays of each file (best and median)")
    args = p.parse_args()
    kinds = [k for k in args.replay.split(",") if k]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        p.error(f"--replay: unknown {', '.join(unknown)} (known: {', '.join(KINDS)})")
    if args.cis:
        bench_mapping(args.cis)
    if args.events:
        for kind in kinds:
            bench_replay(args.events, args.replay_cis, kind, args.runs)


if __name__ == "__main__":
    main()
