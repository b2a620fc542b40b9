"""Dependencies a stale CMDB is missing, inferred from its other deployments.

The same application deployed in several clusters (or regions, or zones)
has the same dependencies in each. When the CMDB records `carts -> carts-db`
in enough clusters (at least a third of those that have both CIs) but not in
another, the edge was most likely forgotten there. Such edges are added with
relation `inferred`, so correlation can follow them and every explanation
that uses one says so. Clusters that run different versions of an application,
each recorded with its own dependencies, are not made alike: an edge that only
a few of many record is left where it is, and a deployment whose recorded
dependencies are mostly not those of a deployment with the edge is not a stale
copy of it (with two or three clusters, one of them recording an edge is
enough, and this is what tells drift from design).

A CI's *role* is its type and its match labels without the partition
labels; partition labels (`cluster`, `region`, ...) are found from the
data: labels that most CIs carry, with a few distinct values each shared
by many CIs, that dependencies rarely cross. CIs whose match labels are
unique to them (a node name, an instance address) have no counterpart
elsewhere and are left alone.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from cmdb.model import CI

if TYPE_CHECKING:
    import networkx as nx

INFERRED = "inferred"
NAMED = "inferred_by_name"  # see `infer_named_edges`


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
    for (k, v), count in Counter(pair for eq in eqs.values() for pair in eq.items()).items():
        carriers[k] += count
        values[k][v] += count
    n = len(eqs)
    out = set()
    for label, count in carriers.items():
        vals = values[label]
        if count >= n / 2 and 2 <= len(vals) <= max(2, n // 10) and min(vals.values()) >= 3:
            out.add(label)
    if graph is not None and out:
        out = {label for label in out if _kept_within(label, eqs, graph)}
    return out


def _kept_within(label: str, eqs: Mapping[str, Mapping[str, str]], graph: nx.DiGraph) -> bool:
    """Whether most dependencies between CIs that both carry `label` join two CIs with
    the same value (or there are none)."""
    value_of = {cid: eq[label] for cid, eq in eqs.items() if label in eq}
    same = both = 0
    for a, nbrs in graph.adjacency():
        va = value_of.get(a)
        if va is None:
            continue
        for b in nbrs:
            vb = value_of.get(b)
            if vb is not None:
                both += 1
                same += va == vb
    return not both or same * 2 >= both


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
        pairs = sorted(eqs[cid].items())
        place = tuple([p for p in pairs if p[0] in parts])
        rest = tuple([p for p in pairs if p[0] not in parts])
        if not place or not rest:
            continue
        role = role_ids.setdefault((ci.type, rest), len(role_ids))
        where = place_ids.setdefault(place, len(place_ids))
        role_of[cid], place_of[cid] = role, where
        members[role][where] = cid
    # where each role-to-role dependency is recorded, by `role * roles + role` (a number
    # is quicker to hash than a pair, and there is one per relation)
    roles = len(role_ids)
    everywhere = len(place_ids)
    recorded: defaultdict[int, set[int]] = defaultdict(set)
    # by `role * places + place`: the roles deployed in several places it depends on there
    # (a host named for its node is deployed once: nothing to compare it with)
    needs: defaultdict[int, set[int]] = defaultdict(set)
    for a, nbrs in graph.adjacency():
        ra = role_of.get(a)
        if ra is None:
            continue
        pa = place_of[a]
        for b in nbrs:
            rb = role_of.get(b)
            if rb is not None and place_of[b] == pa:
                recorded[ra * roles + rb].add(pa)
                if len(members[rb]) > 1:
                    needs[ra * everywhere + pa].add(rb)
    added: list[tuple[str, str]] = []
    for pair, places in recorded.items():
        ra, rb = divmod(pair, roles)
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
        for at, a2 in peers_a.items():
            b2 = peers_b.get(at)
            if b2 is not None and at not in places and a2 != b2 and not graph.has_edge(a2, b2) \
                    and _alike(needs, ra * everywhere, at, places):
                graph.add_edge(a2, b2, relation=INFERRED)
                added.append((a2, b2))
    return added


_words_in = re.compile(r"[0-9a-z]+").findall


def _words(name: str) -> tuple[str, ...]:
    return tuple(_words_in(name.lower()))


def infer_named_edges(cis: Mapping[str, CI], graph: nx.DiGraph) -> list[tuple[str, str]]:
    """Add (and return) `a -> b` where `b` is a CI nothing is recorded to depend on,
    named after `a`, of a type that CIs of a's type are recorded to depend on.

    A database, queue or cache that no CI uses is a gap in the records: something
    uses it. Teams name a service's own datastore after it (`carts` keeps its data
    in `carts-db`), so when one service's name begins the name of such a CI, in the
    same deployment, that service is the one. Names are compared word by word: the
    CI ids, with the words they share at the end set aside (`carts.eu` and
    `carts-db.eu`), and the values of the label they are told apart by (`service:
    carts`, `service: carts-db`), their other equality labels agreeing (a cluster's
    `carts-db` is not another cluster's). Only a single longest such name counts,
    and never between CIs of one type (`orders-worker` is no part of `orders`)."""
    types, kinds, used = _recorded(cis, graph)
    targets = {b for _, b in kinds}
    orphans = [c for c, t in types.items() if t in targets and c not in used]
    if not orphans:
        return []
    orphan_types = {types[b] for b in orphans}
    sources = {a for a, b in kinds if b in orphan_types and a != b}
    eqs = {cid: _equalities(cis[cid]) for cid in orphans}
    by_id: defaultdict[tuple[str, ...], list[str]] = defaultdict(list)
    by_label: defaultdict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    value_words: dict[str, tuple[str, ...]] = {}  # (label values recur: a cluster's, a namespace's)
    for cid, ci in cis.items():
        if ci.type not in sources:
            continue
        eqs[cid] = eq = _equalities(ci)
        by_id[_words(cid)].append(cid)
        for label, value in eq.items():
            words = value_words.get(value)
            if words is None:
                words = value_words[value] = _words(value)
            by_label[(label, words)].append(cid)
    added: list[tuple[str, str]] = []
    for b in orphans:
        kind = types[b]
        found: dict[str, int] = {}  # candidate -> the length of the name it matched
        for a, length, told_by in _namesakes(b, eqs[b], by_id, by_label):
            if types[a] != kind and (types[a], kind) in kinds and _agree(eqs[a], eqs[b], told_by):
                found[a] = max(found.get(a, 0), length)
        if not found:
            continue
        longest = max(found.values())
        best = [a for a, n in found.items() if n == longest]
        if len(best) == 1:
            graph.add_edge(best[0], b, relation=NAMED)
            added.append((best[0], b))
    return added


def _recorded(cis: Mapping[str, CI], graph: nx.DiGraph) -> tuple[dict[str, str], set[tuple[str, str]], set[str]]:
    """Each CI's type, the kinds of dependency the CMDB records (pairs of CI types),
    and the CIs something is recorded to depend on: one walk over the relations."""
    types = {cid: ci.type for cid, ci in cis.items()}
    kinds: set[tuple[str, str]] = set()
    used: set[str] = set()
    for a, b in graph.edges():
        used.add(b)
        if a in types and b in types:
            kinds.add((types[a], types[b]))
    return types, kinds, used


def _namesakes(ci: str, eq: Mapping[str, str], by_id: Mapping[tuple[str, ...], list[str]],
               by_label: Mapping[tuple[str, tuple[str, ...]], list[str]]) -> Iterable[tuple[str, int, str | None]]:
    """The CIs whose name begins the name of `ci` (more words follow it), with the
    number of words and the label they were found by (None: by id)."""
    words = _words(ci)
    for k in range(1, len(words)):  # their name, then more words, then the words both end with
        for j in range(k + 1, len(words) + 1):
            for a in by_id.get(words[:k] + words[j:], ()):
                yield a, k, None
    for label, value in eq.items():
        words = _words(value)
        for k in range(1, len(words)):
            for a in by_label.get((label, words[:k]), ()):
                yield a, k, label


def _agree(a: Mapping[str, str], b: Mapping[str, str], but: str | None) -> bool:
    """Whether two CIs' equality labels agree on every label both have, but `but`."""
    return all(v == b[k] for k, v in a.items() if k != but and k in b)


def _alike(needs: Mapping[int, set[int]], base: int, place: int, places: Iterable[int]) -> bool:
    """Whether a role's deployment at `place` is a stale record of one at `places`: what
    it is recorded to depend on there is mostly recorded at one of them too. A CMDB that
    forgot some of a deployment's dependencies keeps the rest; deployments that differ
    (another version, another design) record other dependencies altogether."""
    mine = needs.get(base + place)
    return not mine or any(len(mine & needs.get(base + p, frozenset())) * 2 >= len(mine) for p in places)


class DependencyShapes:
    """Which dependency the CMDB could lack between two given CIs: one of a kind it
    records elsewhere (a service on a database, a host in a network: by CI types), between
    CIs of one partition (dependencies do not cross clusters). Asked when a fault elsewhere
    may be what an incident's alerts come from, over a dependency nobody recorded."""

    def __init__(self, cis: Mapping[str, CI], graph: nx.DiGraph) -> None:
        self._cis = cis
        self._parts = sorted(partition_labels(cis, graph), key=str)
        _, self._kinds, _ = _recorded(cis, graph)
        self._targets: defaultdict[str, set[str]] = defaultdict(set)  # type -> the types it depends on
        for a, b in self._kinds:
            self._targets[a].add(b)
        self._place: dict[str, tuple[str | None, ...]] = {}
        self._counts: Counter[tuple[tuple[str | None, ...], str]] | None = None
        self._choices: dict[str, int] = {}

    def _place_of(self, ci: str) -> tuple[str | None, ...]:
        got = self._place.get(ci)
        if got is None:
            eq = _equalities(self._cis[ci])
            got = self._place[ci] = tuple(eq.get(label) for label in self._parts)
        return got

    def choices(self, a: str) -> int:
        """How many CIs `a` could depend on so: those of its partition (or without one) of
        the types CIs of its type depend on. A dependency nobody recorded is one of them."""
        got = self._choices.get(a)
        if got is None:
            if self._counts is None:
                self._counts = Counter((self._place_of(c), ci.type) for c, ci in self._cis.items())
            place = self._place_of(a)
            got = 0
            targets = self._targets.get(self._cis[a].type, ())
            for (where, kind), n in self._counts.items():
                if kind in targets and _same_place(place, where):
                    got += n
            self._choices[a] = got
        return got

    def could_depend(self, a: str, b: str) -> bool:
        """Whether `a -> b` is a dependency of a kind the CMDB records, within a partition."""
        cis = self._cis
        if a == b or a not in cis or b not in cis or (cis[a].type, cis[b].type) not in self._kinds:
            return False
        return _same_place(self._place_of(a), self._place_of(b))


def _same_place(a: tuple[str | None, ...], b: tuple[str | None, ...]) -> bool:
    """Whether two CIs' partition label values agree wherever both carry the label."""
    return all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))
