"""Dependencies a stale CMDB is missing, inferred from its other deployments.

The same application deployed in several clusters (or regions, or zones)
has the same dependencies in each. When the CMDB records `carts -> carts-db`
in enough clusters (at least a third of those that have both CIs) but not in
another, the edge was most likely forgotten there. Such edges are added with
relation `inferred`, so correlation can follow them and every explanation
that uses one says so. Clusters that run different versions of an application,
each recorded with its own dependencies, are not made alike: an edge that only
a few of many record is left where it is.

A CI's *role* is its type and its match labels without the partition
labels; partition labels (`cluster`, `region`, ...) are found from the
data: labels that most CIs carry, with a few distinct values each shared
by many CIs, that dependencies rarely cross. CIs whose match labels are
unique to them (a node name, an instance address) have no counterpart
elsewhere and are left alone.
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


def partition_labels(cis: Mapping[str, CI], graph: nx.DiGraph | None = None) -> set[str]:
    """Labels that split the CMDB into a few large partitions (such as `cluster`).

    With many partitions a role label looks like one too (`service: carts` in twelve
    clusters is twelve CIs, as `cluster: c1` is a dozen), but dependencies tell them
    apart: they stay within a partition and connect different roles. So with the graph
    a label is a partition only if most dependencies between CIs that carry it join
    two CIs with the same value.
    """
    return _partitions({cid: _equalities(ci) for cid, ci in cis.items()}, graph)


def _partitions(eqs: Mapping[str, Mapping[str, str]], graph: nx.DiGraph | None) -> set[str]:
    carriers: Counter[str] = Counter()
    values: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for eq in eqs.values():
        for k, v in eq.items():
            carriers[k] += 1
            values[k][v] += 1
    n = len(eqs)
    out = set()
    for label, count in carriers.items():
        vals = values[label]
        if count >= n / 2 and 2 <= len(vals) <= max(2, n // 10) and min(vals.values()) >= 3:
            out.add(label)
    if graph is not None and out:
        same: Counter[str] = Counter()
        both: Counter[str] = Counter()
        for a, b in graph.edges():
            ea, eb = eqs.get(a), eqs.get(b)
            if ea is None or eb is None:
                continue
            for label in out:
                va, vb = ea.get(label), eb.get(label)
                if va is not None and vb is not None:
                    both[label] += 1
                    same[label] += va == vb
        out = {label for label in out if not both[label] or same[label] * 2 >= both[label]}
    return out


def infer_missing_edges(cis: Mapping[str, CI], graph: nx.DiGraph) -> list[tuple[str, str]]:
    """Add (and return) `a -> b` where a's role depends on b's role in another partition."""
    eqs = {cid: _equalities(ci) for cid, ci in cis.items()}
    parts = _partitions(eqs, graph)
    if not parts:
        return []
    # roles and places by number: the passes below touch every relation
    role_ids: dict[tuple, int] = {}
    place_ids: dict[tuple, int] = {}
    role_of: dict[str, int] = {}
    place_of: dict[str, int] = {}
    members: defaultdict[int, dict[int, str]] = defaultdict(dict)  # role -> place -> CI
    for cid, ci in cis.items():
        eq = eqs[cid]
        place = tuple(sorted((k, v) for k, v in eq.items() if k in parts))
        rest = tuple(sorted((k, v) for k, v in eq.items() if k not in parts))
        if not place or not rest:
            continue
        role = role_ids.setdefault((ci.type, rest), len(role_ids))
        where = place_ids.setdefault(place, len(place_ids))
        role_of[cid], place_of[cid] = role, where
        members[role][where] = cid
    # where each role-to-role dependency is recorded
    recorded: dict[tuple[int, int], set[int]] = {}
    for a, b in graph.edges():
        ra, rb = role_of.get(a), role_of.get(b)
        if ra is not None and rb is not None and place_of[a] == place_of[b]:
            recorded.setdefault((ra, rb), set()).add(place_of[a])
    added: list[tuple[str, str]] = []
    everywhere = len(place_ids)
    for (ra, rb), places in recorded.items():
        peers_a, peers_b = members[ra], members[rb]
        # forgotten where it is missing only if at least a third of the partitions that
        # have both roles record it (with two or three, any one): many deployments that
        # differ are not drift. (The partitions with both are at least as many as
        # those with either, less those without the other: no need to count them then.)
        n = len(places)
        if n * 3 < len(peers_a) + len(peers_b) - everywhere:
            continue
        both = len(peers_a.keys() & peers_b.keys())
        if both < 2 or both == n or n * 3 < both:
            continue
        for place, a2 in peers_a.items():
            b2 = peers_b.get(place)
            if b2 is not None and place not in places and a2 != b2 and not graph.has_edge(a2, b2):
                graph.add_edge(a2, b2, relation=INFERRED)
                added.append((a2, b2))
    return added
