"""What a fault hurts: the impacted CIs and the priority their criticality justifies.

Root-cause ranking itself is the likelihood model's (`model.py`); this module
turns its answer into what on-call reads: which CIs the fault reaches, business
services first, and how urgent that makes the incident.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection, Iterable

from cmdb.graph import Cmdb
from correlation.topology import Topology, remember


def impacted(root: str | None, alerting: Iterable[str], topo: Topology) -> list[str]:
    """CIs the fault at `root` reaches: its alerting dependents and the chains between, business services first."""
    if root is None or root not in topo.cmdb:
        return []
    out = _reached(root, alerting, topo)
    return sorted(out, key=_order(topo))


def with_first(ci: str, impacted_cis: list[str], topo: Topology) -> list[str]:
    """`impacted_cis` with `ci` among them, in `impacted`'s order (a fault whose root lies
    outside the graph's reach impacts the CI it reaches first)."""
    return sorted({ci, *impacted_cis}, key=_order(topo))


def _reached(root: str, alerting: Iterable[str], topo: Topology) -> set[str]:
    out: set[str] = set()
    for x in alerting:
        if x != root and root in topo.below(x):
            out.update(topo.chain(x, root))
    out.discard(root)
    return out


def _order(topo: Topology) -> Callable[[str], tuple[bool, int, str]]:
    """The order of `impacted`: business services first, then by criticality, then by name."""
    cis = topo.cmdb.cis
    return lambda c: (not cis[c].business_service, -cis[c].criticality_rank, c)


class Impacts:
    """`impacted`, remembered per incident: when the incident kept its root cause and only
    gained alerting CIs, as it does with most alerts, the answer is worked out from the
    last one by adding what the new CIs reach (an incident may gain a thousand CIs)."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        # incident -> (root, its alerting CIs, the CIs reached, their sort keys and names in order)
        self._known: dict[str, tuple[str, frozenset[str], set[str], list[tuple], list[str]]] = {}

    def forget(self, incident_id: str) -> None:
        self._known.pop(incident_id, None)

    def of(self, incident_id: str, root: str | None, alerting: Collection[str]) -> list[str]:
        topo = self.topo
        if root is None or root not in topo.cmdb:
            self._known.pop(incident_id, None)
            return []
        cis = frozenset(alerting)
        known = self._known.get(incident_id)
        order = _order(topo)
        if known is not None and known[0] == root and known[1] <= cis:
            _, was, reached, keys, names = known
            for c in _reached(root, cis - was, topo) - reached:
                key = order(c)
                i = bisect.bisect(keys, key)
                keys.insert(i, key)
                names.insert(i, c)
                reached.add(c)
        else:
            reached = _reached(root, cis, topo)
            names = sorted(reached, key=order)
            keys = [order(c) for c in names]
        remember(self._known, incident_id, (root, cis, reached, keys, names), 20_000)
        return list(names)


PRIORITY_BY_CRITICALITY = {4: "P1", 3: "P2", 2: "P3", 1: "P4"}


def impact_priority(root: str | None, impacted_cis: list[str], cmdb: Cmdb) -> str | None:
    """The priority the impact justifies: a business service or a critical CI hit is P1.
    `impacted_cis` in `impacted`'s order: the first of them says it for them all."""
    cis = [c for c in ([root] if root else []) + impacted_cis[:1] if c in cmdb]
    if not cis:
        return None
    if any(cmdb.cis[c].business_service for c in cis):
        return "P1"
    top = max(cmdb.cis[c].criticality_rank for c in cis)
    return PRIORITY_BY_CRITICALITY.get(top)
