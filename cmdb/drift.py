"""Dependencies a stale CMDB is missing, inferred from its other deployments.

The same application deployed in several clusters (or regions, or zones)
has the same dependencies in each. When the CMDB records `carts -> carts-db`
in one cluster but not in another that has both CIs, the edge was most
likely forgotten there. Such edges are added with relation `inferred`, so
correlation can follow them and every explanation that uses one says so.

A CI's *role* is its type and its match labels without the partition
labels; partition labels (`cluster`, `region`, ...) are found from the
data: labels that most CIs carry, with a few distinct values each shared
by many CIs. CIs whose match labels are unique to them (a node name, an
instance address) have no counterpart elsewhere and are left alone.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping

import networkx as nx

from cmdb.model import CI

INFERRED = "inferred"


def _equalities(ci: CI) -> dict[str, str]:
    out: dict[str, str] = {}
    for block in ci.match[:1]:
        for m in block.matchers:
            if m.is_equality:
                out[m.name] = m.value
    return out


def partition_labels(cis: Mapping[str, CI]) -> set[str]:
    """Labels that split the CMDB into a few large partitions (such as `cluster`)."""
    carriers: Counter[str] = Counter()
    values: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for ci in cis.values():
        for k, v in _equalities(ci).items():
            carriers[k] += 1
            values[k][v] += 1
    n = len(cis)
    out = set()
    for label, count in carriers.items():
        vals = values[label]
        if count >= n / 2 and 2 <= len(vals) <= max(2, n // 10) and min(vals.values()) >= 3:
            out.add(label)
    return out


def infer_missing_edges(cis: Mapping[str, CI], graph: nx.DiGraph) -> list[tuple[str, str]]:
    """Add (and return) `a -> b` where a's role depends on b's role in another partition."""
    parts = partition_labels(cis)
    if not parts:
        return []
    role_of: dict[str, tuple] = {}
    place_of: dict[str, tuple] = {}
    members: defaultdict[tuple, dict[tuple, str]] = defaultdict(dict)  # role -> place -> CI
    for cid, ci in cis.items():
        eq = _equalities(ci)
        place = tuple(sorted((k, v) for k, v in eq.items() if k in parts))
        rest = tuple(sorted((k, v) for k, v in eq.items() if k not in parts))
        if not place or not rest:
            continue
        role = (ci.type, rest)
        role_of[cid], place_of[cid] = role, place
        members[role][place] = cid
    added: list[tuple[str, str]] = []
    for a, b in list(graph.edges()):
        ra, rb = role_of.get(a), role_of.get(b)
        if ra is None or rb is None or place_of[a] != place_of[b]:
            continue
        peers_b = members[rb]
        if len(members[ra]) < 2 or len(peers_b) < 2:
            continue
        for place, a2 in members[ra].items():
            b2 = peers_b.get(place)
            if b2 is not None and a2 != b2 and not graph.has_edge(a2, b2):
                graph.add_edge(a2, b2, relation=INFERRED)
                added.append((a2, b2))
    return added
