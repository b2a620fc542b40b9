"""Root-cause ranking and impact for one incident.

Every CI of the incident, and every unalerted CI that two or more of its
alerting CIs depend on (a shared host, a zone network), is a candidate. A
candidate scores high when a fault there explains the alerts:

- coverage: the share of alerting CIs that depend on it (or are it);
- its own alerts: an instance down or a crash loop points at the CI itself,
  high latency points at something below it (see `kinds.py`);
- healthy dependencies: nothing it depends on is alerting;
- focus: its direct dependents are the ones alerting (a host whose pods all
  fail, rather than a network under a hundred quiet hosts);
- time: it alerted first (or, unalerted, it explains the first alert).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cmdb.graph import Cmdb
from correlation.kinds import CAUSE, AlertKinds
from correlation.topology import Topology


@dataclass(slots=True)
class Evidence:
    """The alerts of an incident seen per CI."""

    ci: str
    first_at: float
    weight: float  # strongest kind weight of its alerts
    alertnames: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Candidate:
    ci: str
    score: float
    covered: int
    total: int
    alerted: bool
    why: str


@dataclass(frozen=True, slots=True)
class RankWeights:
    coverage: float = 0.55
    own: float = 0.2
    healthy: float = 0.1
    focus: float = 0.1
    time: float = 0.1
    time_scale: float = 900.0  # seconds over which "alerted first" fades


def collect(members: Iterable[tuple[str | None, dict, float]], kinds: AlertKinds, cmdb: Cmdb) -> dict[str, Evidence]:
    """Group an incident's alerts `(ci, labels, first_at)` by CI (CIs in the CMDB only)."""
    out: dict[str, Evidence] = {}
    for ci, labels, first_at in members:
        if ci is None or ci not in cmdb:
            continue
        w = kinds.weight(labels)
        ev = out.get(ci)
        if ev is None:
            out[ci] = Evidence(ci, first_at, w, [labels.get("alertname", "")])
        else:
            ev.first_at = min(ev.first_at, first_at)
            ev.weight = max(ev.weight, w)
            ev.alertnames.append(labels.get("alertname", ""))
    return out


def rank(evidence: dict[str, Evidence], topo: Topology, weights: RankWeights = RankWeights(), limit: int = 10) -> list[Candidate]:
    """Candidates best first."""
    if not evidence:
        return []
    cmdb = topo.cmdb
    alerting = set(evidence)
    total = len(alerting)
    cover: dict[str, list[str]] = {}
    for x in alerting:
        for r in topo.below(x):
            cover.setdefault(r, []).append(x)
    t0 = min(ev.first_at for ev in evidence.values())
    out: list[Candidate] = []
    for c, xs in cover.items():
        alerted = c in alerting
        # An unalerted CI is a candidate when it explains two alerting CIs, or
        # is below the only one (a partitioned network under a database that is down).
        if not alerted and len(xs) < 2 and total > 1:
            continue
        coverage = len(xs) / total
        own = evidence[c].weight if alerted else 0.0
        below_c = topo.below(c)
        sick = [evidence[d].weight for d in alerting if d != c and d in below_c]
        healthy = 1.0 - (max(sick) if sick else 0.0)
        deps = cmdb.dependents_of(c)
        focus = (sum(1 for d in deps if d in alerting) / len(deps)) if deps else (1.0 if alerted else 0.0)
        first = evidence[c].first_at if alerted else min(evidence[x].first_at for x in xs)
        time = max(0.0, 1.0 - (first - t0) / weights.time_scale)
        score = (
            weights.coverage * coverage**2
            + weights.own * own
            + weights.healthy * healthy
            + weights.focus * focus
            + weights.time * time
        )
        why = _why(c, evidence.get(c), len(xs), total, sick, alerted)
        out.append(Candidate(c, round(score, 4), len(xs), total, alerted, why))
    out.sort(key=lambda k: (-k.score, not k.alerted, k.ci))
    return out[:limit]


def _why(c: str, ev: Evidence | None, covered: int, total: int, sick: list[float], alerted: bool) -> str:
    parts = []
    if total > 1:
        parts.append(f"{covered} of {total} alerting CIs depend on it" if covered < total else f"all {total} alerting CIs depend on it")
    if alerted and ev is not None:
        kind = "cause" if ev.weight >= CAUSE else "symptom" if ev.weight < 0.5 else "state"
        names = ", ".join(sorted(set(ev.alertnames)))
        parts.append(f"its own alert ({names}) is a {kind} alert")
    else:
        parts.append("it raised no alert of its own")
    if not sick:
        parts.append("nothing it depends on is alerting")
    return f"{c}: " + "; ".join(parts)


def impacted(root: str | None, evidence: dict[str, Evidence], topo: Topology) -> list[str]:
    """CIs the fault at `root` reaches: its alerting dependents and the chains between, business services first."""
    if root is None or root not in topo.cmdb:
        return []
    out: set[str] = set()
    for x in evidence:
        if x != root and root in topo.below(x):
            out.update(topo.chain(x, root))
    out.discard(root)
    cis = topo.cmdb.cis
    return sorted(out, key=lambda c: (not cis[c].business_service, -cis[c].criticality_rank, c))


PRIORITY_BY_CRITICALITY = {4: "P1", 3: "P2", 2: "P3", 1: "P4"}


def impact_priority(root: str | None, impacted_cis: list[str], cmdb: Cmdb) -> str | None:
    """The priority the impact justifies: a business service or a critical CI hit is P1."""
    cis = [c for c in ([root] if root else []) + impacted_cis if c in cmdb]
    if not cis:
        return None
    if any(cmdb.cis[c].business_service for c in cis):
        return "P1"
    top = max(cmdb.cis[c].criticality_rank for c in cis)
    return PRIORITY_BY_CRITICALITY.get(top)
