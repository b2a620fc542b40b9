"""Robustness of correlation: the scenario and harder variants of it, replayed and scored.

    python bench/corr_variants.py [--shared ../shared/corr] [--scenario dev-sockshop]
                                  [--only slow1.5,busy,...] [--seed 1] [--keep DIR]

One scenario is a small sample of the settings correlation meets, and its
scores flatter whatever was tuned on it. The variants change one condition
each, the way deployments differ:

- `slow1.5`, `slow2`: every time stretched 1.5x or 2x, so faults propagate
  (and `for:` delays run) that much slower;
- `busy`: a copy of the scenario shifted by 2h13m laid over it: twice the
  faults and noise, with unrelated faults overlapping;
- `long`: four weeks, the scenario's week repeated with its faults, noise
  and changes, so every fault recurs weekly and problems grow long;
- `stale`: a fifth of the service-to-service and service-to-datastore
  dependencies dropped from the CMDB in every cluster alike (so no other
  cluster's records reveal them).
- `stale1`: the same share dropped in each cluster on its own, as CMDBs kept
  per cluster go stale: what one cluster lacks the other may still record.
- `moved`: a fifth of the workloads' node placements are out of date: the
  CMDB says a replica runs on another node of the same pool than the one
  it runs on (pods were rescheduled since the CMDB was written).
- `wide`: the shop in four clusters instead of two: a copy of every
  cluster's CIs and alerts in two more clusters with their own nodes and
  networks, its week shifted by 3h41m, behind the same business service
  (the copy's SLO alerts are a second SLO of it); twice the faults and
  noise, overlapping anywhere in a graph twice the size (unlike `busy`, no
  alert of the copy shares a label set with the original).
- `wide8`: the same with three copies, in eight clusters (each copy shifted
  by another 3h41m): four times the faults and noise; every service name is
  now carried by eight CIs.
- `wide32`: fifteen copies, in 32 clusters: sixteen times the faults and
  noise, and sixteen SLOs on the one business service, so that CI alerts
  for some fault almost all the time.
- `extra`: the CMDB still records dependencies that no longer exist: a fifth
  more service -> service / datastore edges, in each cluster on its own,
  between CIs of the cluster neither of which depends on the other (the
  opposite of `stale`; it tempts correlation into merging unrelated faults).
- `lossy`: a fifth of the faults' alert occurrences never arrive (a dropped
  exporter or rule), sometimes the root's own; a fault none of whose alerts
  arrives leaves the truth, having nothing to be found by.
- `late`: every notification reaches the daemon 0-90 s late (a slow
  pipeline, webhook retries), so the events no longer arrive in the order
  the alerts started; one alert's notifications keep their order.
- `noisy`: three times the noise: every noise episode twice more, each copy
  at a random time of the week (never within 30 minutes of an occurrence of
  the same label set; an episode that finds no such time is not copied), so
  unrelated alerts fire during faults and on the CIs they reach.
- `staler`: like `stale`, but two fifths of the dependencies dropped.
- `crowded`: `busy` and then `noisy`: unrelated faults overlapping, and three
  times the noise of either copy.
- `hard`: `busy`, `noisy`, `stale1`, `slow1.5` and `late` at once, in that
  order, as a deployment meets them together: every condition above that
  costs the others something, none of them extreme.

The truth is transformed with the events, so the scenario's own `score.py`
scores each variant. `--keep DIR` keeps each variant's files (events.jsonl,
truth.json, cmdb.yaml, config.yaml and the result r.json) in DIR/<variant>
for error analysis; without it they go to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from daemon.timefmt import format_rfc3339  # noqa: E402

ZERO = "0001-01-01T00:00:00Z"


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _retime(obj, f: Callable[[float], float]):
    """Every RFC 3339 time in a JSON value, mapped through `f`."""
    if isinstance(obj, dict):
        return {k: _retime(v, f) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_retime(v, f) for v in obj]
    if isinstance(obj, str) and len(obj) >= 20 and obj[4] == "-" and obj[10] == "T" and obj.endswith("Z"):
        return obj if obj == ZERO else format_rfc3339(f(_ts(obj)), millis=True)
    return obj


def _read(scen: str) -> tuple[list[dict], dict, dict]:
    with open(os.path.join(scen, "events.jsonl")) as fh:
        events = [json.loads(line) for line in fh if line.strip()]
    with open(os.path.join(scen, "truth.json")) as fh:
        truth = json.load(fh)
    with open(os.path.join(scen, "cmdb.yaml")) as fh:
        cmdb = yaml.safe_load(fh)
    return events, truth, cmdb


def _tag_copy(events: list[dict], truth: dict, tag: str) -> None:
    """Mark a copy of the scenario: its change ids, and its faults, noise groups and
    changes in the truth, get `tag` appended."""
    for e in events:
        if e.get("kind") == "change" and "id" in e:
            e["id"] += tag
    for a in truth["alerts"]:
        if a["fault"] != "noise":
            a["fault"] += tag
        a["group"] += tag
    for fault in truth["faults"]:
        fault["id"] += tag
        fault["concurrent_with"] = [c + tag for c in fault.get("concurrent_with", [])]
    for c in truth.get("changes", []):
        c["id"] += tag
        if c.get("caused_fault"):
            c["caused_fault"] += tag


def stretched(k: float):
    def make(events, truth, cmdb, rnd):
        t0 = min(_ts(e["at"]) for e in events)
        f = lambda t: t0 + (t - t0) * k  # noqa: E731
        return _retime(events, f), _retime(truth, f), cmdb
    return make


def busy(events, truth, cmdb, rnd, shift: float = 2 * 3600 + 13 * 60):
    """The scenario and a shifted copy of it: fault and noise ids of the copy get a `b`."""
    f = lambda t: t + shift  # noqa: E731
    copy = _retime(events, f)
    t2 = _retime(truth, f)
    _tag_copy(copy, t2, "b")
    merged = sorted(events + copy, key=lambda e: _ts(e["at"]))
    out = dict(truth)
    out["alerts"] = truth["alerts"] + t2["alerts"]
    out["faults"] = truth["faults"] + t2["faults"]
    return merged, out, cmdb


def long(events, truth, cmdb, rnd, weeks: int = 4):
    """The scenario's week and `weeks - 1` copies after it: ids of the copies' faults,
    noise groups and changes get `w2`, `w3`, ...; a fault recurs as the same problem."""
    all_events, alerts, faults, changes = list(events), list(truth["alerts"]), list(truth["faults"]), \
        list(truth.get("changes", []))
    for w in range(2, weeks + 1):
        f = lambda t, w=w: t + (w - 1) * 7 * 86400  # noqa: E731
        copy, t2 = _retime(events, f), _retime(truth, f)
        _tag_copy(copy, t2, f"w{w}")
        all_events += copy
        alerts += t2["alerts"]
        faults += t2["faults"]
        changes += t2.get("changes", [])
    by_key: dict[str, list[str]] = {}
    for fault in faults:
        by_key.setdefault(fault["problem"], []).append(fault["id"])
    out = dict(truth)
    out.update(alerts=alerts, faults=faults, changes=changes,
               problems=[dict(p, faults=by_key.get(p["key"], [])) for p in truth["problems"]])
    return sorted(all_events, key=lambda e: _ts(e["at"])), out, cmdb


APP_TYPES = ("service", "database", "datastore", "queue", "cache")  # what an application is made of


def stale(events, truth, cmdb, rnd, share: float = 0.2, alike: bool = True):
    """Drop a share of service dependencies on services and datastores, by name in
    every cluster (`orders.euw1 -> carts.euw1` and `orders.use1 -> carts.use1` alike),
    or with `alike=False` in each cluster on its own."""
    types = {c["id"]: c.get("type") for c in cmdb["cis"]}
    dropped: dict[tuple[str, str], bool] = {}
    for ci in cmdb["cis"]:
        if types[ci["id"]] != "service":
            continue
        keep = []
        for dep in ci.get("depends_on", []):
            if types.get(dep) in APP_TYPES:
                name = (ci["id"].split(".")[0], dep.split(".")[0]) if alike else (ci["id"], dep)
                if name not in dropped:
                    dropped[name] = rnd.random() < share
                if dropped[name]:
                    continue
            keep.append(dep)
        ci["depends_on"] = keep
    return events, truth, cmdb


def moved(events, truth, cmdb, rnd, share: float = 0.2):
    """Point a share of the workload -> host (node) edges at another host that CIs of the
    workload's type in its cluster run on, one it is not on yet."""
    types = {c["id"]: c.get("type") for c in cmdb["cis"]}
    cis = [dict(c) for c in cmdb["cis"]]
    pools: dict[tuple[str, str | None], set[str]] = {}  # (cluster, workload type) -> nodes
    for ci in cis:
        if types[ci["id"]] != "host":
            for dep in ci.get("depends_on", []):
                if types.get(dep) == "host":
                    pools.setdefault((ci["id"].split(".")[-1], types[ci["id"]]), set()).add(dep)
    for ci in cis:
        deps = list(ci.get("depends_on", []))
        pool = sorted(pools.get((ci["id"].split(".")[-1], types[ci["id"]]), ()))
        for i, dep in enumerate(deps):
            if types.get(dep) == "host" and rnd.random() < share:
                others = [n for n in pool if n not in deps]
                if others:
                    deps[i] = rnd.choice(others)
        ci["depends_on"] = deps
    return events, truth, dict(cmdb, cis=cis)


def extra(events, truth, cmdb, rnd, share: float = 0.2):
    """Add, in each cluster, `share` times its service -> service / datastore edges of
    false ones: between two application CIs of the cluster neither of which reaches the
    other through the true application dependencies (the CMDB's and the truth's
    `cmdb_drift` missing edges), so the graph stays acyclic."""
    types, app = {c["id"]: c.get("type") for c in cmdb["cis"]}, APP_TYPES
    cis = [dict(c, depends_on=list(c.get("depends_on", []))) for c in cmdb["cis"]]
    deps = {c["id"]: [d for d in c["depends_on"] if types.get(d) in app] for c in cis if types[c["id"]] in app}
    for src, dst in truth.get("cmdb_drift", {}).get("missing_edges", []):
        if src in deps and types.get(dst) in app:
            deps[src].append(dst)

    def reach(a: str) -> set[str]:
        seen, todo = set(), [a]
        while todo:
            for d in deps.get(todo.pop(), []):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    by_id = {c["id"]: c for c in cis}
    clusters: dict[str, list[str]] = {}
    for ci in deps:
        clusters.setdefault(ci.split(".")[-1], []).append(ci)
    added = []
    for cluster in sorted(clusters):
        members = sorted(clusters[cluster])
        n = round(share * sum(1 for ci in members if types[ci] == "service" for _ in deps[ci]))
        for _ in range(n):
            pairs = [(a, b) for a in members if types[a] == "service" for b in members
                     if a != b and b not in reach(a) and a not in reach(b)]
            if not pairs:
                break
            a, b = rnd.choice(pairs)
            deps[a].append(b)
            by_id[a]["depends_on"].append(b)
            added.append([a, b])
    out = dict(truth, cmdb_drift=dict(truth.get("cmdb_drift", {}), extra_edges=added))
    return events, out, dict(cmdb, cis=cis)


def _occurrence_of(events: list[dict], truth: dict) -> list[int | None]:
    """For each event, the index of the truth occurrence it is a notification of (None
    for changes): the occurrence of its label set whose first and last delivery hold it."""
    by_fp: dict[str, list[int]] = {}
    for i, a in enumerate(truth["alerts"]):
        by_fp.setdefault(a["fingerprint"], []).append(i)
    out: list[int | None] = []
    for e in events:
        alert = e.get("alert") if e.get("kind") == "alert" else None
        if not isinstance(alert, dict):
            out.append(None)
            continue
        at = _ts(e["at"])
        hit = [i for i in by_fp.get(alert.get("fingerprint"), [])
               if _ts(truth["alerts"][i]["first_at"]) <= at <= _ts(truth["alerts"][i]["last_at"])]
        out.append(hit[0] if hit else None)
    return out


def _refresh_faults(truth: dict, lost: list[dict] | tuple = ()) -> dict:
    """The faults' alert-derived fields again after the occurrences `lost` were dropped
    or alerts were delivered at other times; a fault with no alert left leaves the truth
    (and its problem's list)."""
    alerts_of: dict[str, list[dict]] = {}
    for a in truth["alerts"]:
        if a["fault"] != "noise":
            alerts_of.setdefault(a["fault"], []).append(a)
    faults = []
    for f in truth["faults"]:
        own = alerts_of.get(f["id"])
        if not own:
            continue
        kept_cis = {a.get("ci") for a in own}
        lost_cis = {a.get("ci") for a in lost if a["fault"] == f["id"]}
        cis = [c for c in f.get("alerting_cis", []) if c in kept_cis or c not in lost_cis]
        faults.append(dict(f, alerts=len(own), alerting_cis=cis, root_alerted=f["root_ci"] in cis,
                           first_alert_at=min(own, key=lambda a: _ts(a["first_at"]))["first_at"]))
    kept = {f["id"] for f in faults}
    for f in faults:
        f["concurrent_with"] = [c for c in f.get("concurrent_with", []) if c in kept]
    out = dict(truth, faults=faults)
    out["problems"] = [dict(p, faults=[i for i in p.get("faults", []) if i in kept])
                       for p in truth.get("problems", [])]
    out["changes"] = [dict(c, caused_fault=c["caused_fault"] if c.get("caused_fault") in kept else None)
                      for c in truth.get("changes", [])]
    return out


def lossy(events, truth, cmdb, rnd, share: float = 0.2):
    """Drop a `share` of the fault alert occurrences, chosen at random, with every
    notification of them."""
    lost = {i for i, a in enumerate(truth["alerts"]) if a["fault"] != "noise" and rnd.random() < share}
    occ = _occurrence_of(events, truth)
    kept_events = [e for e, i in zip(events, occ, strict=True) if i not in lost]
    out = dict(truth, alerts=[a for i, a in enumerate(truth["alerts"]) if i not in lost])
    return kept_events, _refresh_faults(out, [truth["alerts"][i] for i in sorted(lost)]), cmdb


def late(events, truth, cmdb, rnd, max_delay: float = 90.0):
    """Deliver each alert notification 0 to `max_delay` s after its time, never before the
    label set's previous notification; events are in delivery order, the truth's first and
    last deliveries follow."""
    occ = _occurrence_of(events, truth)
    last: dict[str, float] = {}
    delivered = []
    for e, i in zip(events, occ, strict=True):
        at = _ts(e["at"])
        if e.get("kind") == "alert":
            fp = e["alert"].get("fingerprint")
            at = max(at + rnd.uniform(0.0, max_delay), last.get(fp, at))
            last[fp] = at
        delivered.append((at, e, i))
    first_at: dict[int, float] = {}
    last_at: dict[int, float] = {}
    out_events = []
    for at, e, i in sorted(delivered, key=lambda x: x[0]):
        if e.get("kind") == "alert":
            e = dict(e, at=format_rfc3339(at))
        if i is not None:
            first_at.setdefault(i, at)
            last_at[i] = at
        out_events.append(e)
    alerts = [dict(a, first_at=format_rfc3339(first_at[i]), last_at=format_rfc3339(last_at[i]))
              if i in first_at else a for i, a in enumerate(truth["alerts"])]
    return out_events, _refresh_faults(dict(truth, alerts=alerts)), cmdb


def noisy(events, truth, cmdb, rnd, copies: int = 2, gap: float = 1800.0, tries: int = 20):
    """Each noise episode (the noise occurrences of one truth `group`) and its
    notifications `copies` more times, shifted to a random time inside the scenario's
    span where each of its label sets stays `gap` s clear of every other occurrence of
    that label set; the j-th copy's episode id gets `n{j + 1}`. Episodes that find no
    such time in `tries` draws are not copied. Faults are unchanged."""
    occ = _occurrence_of(events, truth)
    t0, t1 = _ts(events[0]["at"]), _ts(events[-1]["at"])
    episodes: dict[str, list[int]] = {}
    for i, a in enumerate(truth["alerts"]):
        if a["fault"] == "noise":
            episodes.setdefault(a["group"], []).append(i)
    events_of: dict[int, list[dict]] = {}
    for e, i in zip(events, occ, strict=True):
        if i is not None:
            events_of.setdefault(i, []).append(e)
    spans: dict[str, list[tuple[float, float]]] = {}
    for a in truth["alerts"]:
        spans.setdefault(a["fingerprint"], []).append((_ts(a["first_at"]), _ts(a["last_at"])))
    new_events, new_alerts = list(events), list(truth["alerts"])
    for j in range(2, copies + 2):
        for group in sorted(episodes):
            idxs = episodes[group]
            own = [(_ts(a["first_at"]), _ts(a["last_at"]), a["fingerprint"])
                   for a in (truth["alerts"][i] for i in idxs)]
            first = min(a for a, _, _ in own)
            last = max(b for _, b, _ in own)
            if last - first > t1 - t0:
                continue
            for _ in range(tries):
                d = rnd.uniform(t0 - first, t1 - last)
                if all(b + d + gap < s or e + gap < a + d for a, b, fp in own for s, e in spans[fp]):
                    break
            else:
                continue
            f = lambda t, d=d: t + d  # noqa: E731
            for i in idxs:
                a = _retime(truth["alerts"][i], f)
                a["group"] = f"{group}n{j}"
                new_alerts.append(a)
                spans[a["fingerprint"]].append((_ts(a["first_at"]), _ts(a["last_at"])))
                new_events += _retime(events_of.get(i, []), f)
    return sorted(new_events, key=lambda e: _ts(e["at"])), dict(truth, alerts=new_alerts), cmdb


def _wide_subs(j: int) -> tuple:
    """Renames for the `j`-th extra deployment (1, 2, ...): clusters euw1/use1 become
    euw{j+1}/use{j+1}, their node and network addresses move to their own ranges."""
    return (
        (re.compile(r"(euw|use)1(?!\d)"), rf"\g<1>{j + 1}"),
        (re.compile(r"\bip-10-([12])-"), lambda m: f"ip-10-{int(m[1]) + 2 * j}-"),
        (re.compile(r"\b10\.([12])\.(?=\d)"), lambda m: f"10.{int(m[1]) + 2 * j}."),
        (re.compile(r"^sock-shop-availability$"), "sock-shop-latency" if j == 1 else f"sock-shop-latency-{j}"),
    )


def _renamed(obj, subs: tuple):
    """Every string in a JSON value with another deployment's names."""
    if isinstance(obj, dict):
        return {k: _renamed(v, subs) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_renamed(v, subs) for v in obj]
    if isinstance(obj, str):
        for pattern, repl in subs:
            obj = pattern.sub(repl, obj)
    return obj


def wide(events, truth, cmdb, rnd, shift: float = 3 * 3600 + 41 * 60, copies: int = 1):
    """The scenario and `copies` copies of it, each in two more clusters and shifted by
    another `shift`: ids of the j-th copy's faults, noise groups and changes get `x`
    (`x2`, `x3`, ... after the first)."""
    from daemon.model import fingerprint

    all_events, out = list(events), dict(truth)
    for key in ("alerts", "faults", "changes", "problems"):
        out[key] = list(truth.get(key, []))
    cis = [dict(ci) for ci in cmdb["cis"]]
    original = {ci["id"]: ci for ci in cmdb["cis"]}
    added: list[dict] = []
    for j in range(1, copies + 1):
        subs = _wide_subs(j)
        f = lambda t, j=j: t + shift * j  # noqa: E731
        copy = _renamed(_retime(events, f), subs)
        t2 = _renamed(_retime(truth, f), subs)
        tag = "x" if j == 1 else f"x{j}"
        _tag_copy(copy, t2, tag)
        for e in copy:
            alert = e.get("alert")
            if isinstance(alert, dict) and "fingerprint" in alert:
                alert["fingerprint"] = fingerprint(alert["labels"])
        for a in t2["alerts"]:
            a["fingerprint"] = fingerprint(a["labels"])
        for prob in t2.get("problems", []):
            prob["faults"] = [i + tag for i in prob.get("faults", [])]
        for key in ("alerts", "faults", "changes", "problems"):
            out[key] += t2.get(key, [])
        all_events += copy
        for ci in cis:
            if ci.get("type") == "business_service":
                twin = _renamed(original[ci["id"]], subs)
                matches = ci["match"] if isinstance(ci["match"], list) else [ci["match"]]
                ci["match"] = matches + [twin["match"]]
                ci["depends_on"] = list(ci.get("depends_on", [])) + twin.get("depends_on", [])
        added += [c for c in _renamed(cmdb["cis"], subs) if c.get("type") != "business_service"]
    out_cmdb = dict(cmdb, cis=cis + added)
    return sorted(all_events, key=lambda e: _ts(e["at"])), out, out_cmdb


def combined(*names: str):
    """The variants `names` applied one after the other, each to what the last one made,
    with the one random generator."""
    def make(events, truth, cmdb, rnd):
        for name in names:
            events, truth, cmdb = VARIANTS[name](events, truth, cmdb, rnd)
        return events, truth, cmdb
    return make


VARIANTS = {
    "as is": lambda events, truth, cmdb, rnd: (events, truth, cmdb),
    "slow1.5": stretched(1.5),
    "slow2": stretched(2.0),
    "busy": busy,
    "long": long,
    "stale": stale,
    "stale1": lambda events, truth, cmdb, rnd: stale(events, truth, cmdb, rnd, alike=False),
    "moved": moved,
    "wide": wide,
    "wide8": lambda events, truth, cmdb, rnd: wide(events, truth, cmdb, rnd, copies=3),
    "wide32": lambda events, truth, cmdb, rnd: wide(events, truth, cmdb, rnd, copies=15),
    "extra": extra,
    "lossy": lossy,
    "late": late,
    "noisy": noisy,
    "staler": lambda events, truth, cmdb, rnd: stale(events, truth, cmdb, rnd, share=0.4),
    "crowded": combined("busy", "noisy"),
    "hard": combined("busy", "noisy", "stale1", "slow1.5", "late"),
}


def run(scen: str, name: str, seed: int, score_py: str, tmp: str) -> dict:
    events, truth, cmdb = _read(scen)
    events, truth, cmdb = VARIANTS[name](events, truth, cmdb, random.Random(seed))
    d = os.path.join(tmp, name.replace(" ", "_"))
    os.makedirs(d)
    paths = {n: os.path.join(d, n) for n in ("events.jsonl", "truth.json", "cmdb.yaml", "config.yaml", "r.json")}
    with open(paths["events.jsonl"], "w") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in events)
    with open(paths["truth.json"], "w") as fh:
        json.dump(truth, fh)
    with open(paths["cmdb.yaml"], "w") as fh:
        yaml.safe_dump(cmdb, fh)
    with open(paths["config.yaml"], "w") as fh:
        fh.write(f"data_dir: {d}\ncmdb: [{paths['cmdb.yaml']}]\n")
    subprocess.run([sys.executable, "-m", "daemon.cli", "replay", "--config", paths["config.yaml"],
                    "--input", paths["events.jsonl"], "--output", paths["r.json"]], check=True, cwd=ROOT)
    out = subprocess.run([sys.executable, score_py, "--truth", paths["truth.json"], "--result", paths["r.json"],
                          "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "corr"))
    p.add_argument("--scenario", default="dev-sockshop")
    p.add_argument("--only", default=",".join(VARIANTS))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", metavar="DIR", help="keep each variant's files in DIR/<variant>")
    args = p.parse_args()
    scen = os.path.join(args.shared, args.scenario)
    if not os.path.isdir(scen):
        print(f"scenario not found: {scen}", file=sys.stderr)
        return 1
    print(f"{'variant':10s} {'P':>6s} {'R':>6s} {'F1':>6s} {'AC@1':>6s} {'AC@3':>6s} {'impact':>7s} "
          f"{'problems':>8s}")
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        taken = [n for n in args.only.split(",") if os.path.exists(os.path.join(args.keep, n.replace(" ", "_")))]
        if taken:
            print(f"{args.keep} already holds {', '.join(taken)}", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            s = run(scen, name, args.seed, os.path.join(args.shared, "score.py"), args.keep or tmp)
            g, rc = s["grouping"], s["root_cause"]
            print(f"{name:10s} {g['precision']:6.3f} {g['recall']:6.3f} {g['f1']:6.3f} "
                  f"{rc['ac1']:6.3f} {rc['ac3']:6.3f} {s['impact']['jaccard']:7.3f} {s['problems']['f1']:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
