"""What a fault hurts: the impacted CIs and the priority their criticality justifies.

Root-cause ranking itself is the likelihood model's (`model.py`); this module
turns its answer into what on-call reads: which CIs the fault reaches, business
services first, and how urgent that makes the incident.
"""

from __future__ import annotations

from collections.abc import Iterable

from cmdb.graph import Cmdb
from correlation.topology import Topology


def impacted(root: str | None, alerting: Iterable[str], topo: Topology) -> list[str]:
    """CIs the fault at `root` reaches: its alerting dependents and the chains between, business services first."""
    if root is None or root not in topo.cmdb:
        return []
    out: set[str] = set()
    for x in alerting:
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
