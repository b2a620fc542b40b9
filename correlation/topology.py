"""Graph relations that correlation needs, cached per CMDB generation.

A fault in a CI shows up in the CIs that depend on it, hop by hop. So two
alerts can share a fault when their CIs share a *common cause*: a CI that
both depend on (either one may be that CI itself). The shortest such link is
a "valley" path: down from one CI to the common cause, up to the other.
Sharing a *dependent* (two services behind the same gateway) is no evidence
at all: a gateway sees every fault below it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, TypeVar

from cmdb.drift import DependencyShapes
from cmdb.graph import Cmdb

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """Store `value` in a cache that is emptied when it reaches `limit` entries (what
    is asked again is recomputed once; no bookkeeping on the hot path)."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


class Budgeted(Generic[K, V]):
    """A cache of at most `limit` entries whose sizes (what each holds, such as the CIs
    of its key) add up to at most `budget`; the oldest entries make room. Unlike
    `remember`, the entries just stored stay: a large incident's next alert asks for
    what its last one stored, each of which may hold a thousand CIs."""

    def __init__(self, budget: int, limit: int) -> None:
        self.budget = budget
        self.limit = limit
        self.size = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def get(self, key: K) -> V | None:
        got = self._entries.get(key)
        return None if got is None else got[0]

    def put(self, key: K, value: V, size: int) -> V:
        entries = self._entries
        old = entries.pop(key, None)
        total = self.size + size - (old[1] if old is not None else 0)
        while entries and (len(entries) >= self.limit or total > self.budget):
            total -= entries.popitem(last=False)[1][1]
        entries[key] = (value, size)
        self.size = total
        return value

    def keys(self) -> Iterable[K]:
        return self._entries.keys()

    def __len__(self) -> int:
        return len(self._entries)


RELATED_CIS = 1_000_000  # see `Topology.related`


class Topology:
    """Cached downward closures (`below`) of the CMDB graph."""

    def __init__(self, cmdb: Cmdb, depth: int = 8) -> None:
        self.cmdb = cmdb
        self.depth = depth
        self._below: dict[str, dict[str, int]] = {}
        self._dependents: dict[str, dict[str, int]] = {}
        self._near: dict[tuple[str, int], list[str]] = {}
        self._shells: dict[str, tuple[tuple[str, ...], ...]] = {}
        self._layer_cache: dict[tuple[str, int], tuple[frozenset[str], ...]] = {}
        self._related: Budgeted[tuple[str, int], frozenset[str]] = Budgeted(RELATED_CIS, RELATED_CIS)
        self._chains: dict[tuple[str, str], tuple[str, ...]] = {}
        self._shapes: DependencyShapes | None = None

    @property
    def shapes(self) -> DependencyShapes:
        """Which dependencies the CMDB could lack (worked out when first asked)."""
        if self._shapes is None:
            self._shapes = DependencyShapes(self.cmdb.cis, self.cmdb.graph)
        return self._shapes

    def below(self, ci: str) -> dict[str, int]:
        """`ci` itself (0) and everything it depends on within `depth` hops."""
        got = self._below.get(ci)
        if got is None:
            got = self.cmdb.dependencies(ci, self.depth)
            got[ci] = 0
            remember(self._below, ci, got, 200_000)
        return got

    def shells(self, ci: str) -> tuple[tuple[str, ...], ...]:
        """What `ci` depends on by distance: the CIs exactly 0, 1, ... hops below it
        (within `depth`), each by name."""
        got = self._shells.get(ci)
        if got is None:
            by_hops: list[list[str]] = [[] for _ in range(self.depth + 1)]
            for r, d in self.below(ci).items():
                by_hops[d].append(r)
            got = tuple(tuple(sorted(shell)) for shell in by_hops)
            remember(self._shells, ci, got, 200_000)
        return got

    def below_within(self, ci: str, hops: int) -> list[str]:
        """What `ci` depends on within `hops` (and `ci` itself)."""
        key = (ci, hops)
        got = self._near.get(key)
        if got is None:
            got = [r for r, d in self.below(ci).items() if d <= hops]
            remember(self._near, key, got, 200_000)
        return got

    def above(self, ci: str) -> dict[str, int]:
        """Everything that depends on `ci` within `depth` hops (not `ci` itself)."""
        got = self._dependents.get(ci)
        if got is None:
            got = self.cmdb.dependents(ci, self.depth)
            remember(self._dependents, ci, got, 200_000)
        return got

    def related_to_any(self, a: str, cis: Iterable[str], max_hops: int) -> bool:
        """Whether `a` shares a common cause within `max_hops` with one of `cis`: for some
        split k + (max_hops - k), a CI within k hops below `a` lies within the rest
        below one of them. Set intersections over cached layers keep this cheap when
        everything near a hub is within reach of everything else."""
        mine = self._layers(a, max_hops)
        cached = self._layer_cache
        splits = range(max_hops + 1)
        for c in cis:
            theirs = cached.get((c, max_hops)) or self._layers(c, max_hops)
            for k in splits:
                if not mine[k].isdisjoint(theirs[max_hops - k]):
                    return True
        return False

    def related(self, a: str, max_hops: int) -> frozenset[str]:
        """The CIs `related_to_any` finds related to `a`: those within `max_hops - k` above
        a CI `k` hops below `a` (`a` and what it depends on included). Kept up to a
        million CIs in all: near a hub, a set holds everything around it."""
        key = (a, max_hops)
        got = self._related.get(key)
        if got is None:
            found: set[str] = set()
            for r, k in self.below(a).items():
                if k <= max_hops:
                    found.add(r)
                    if k < max_hops:
                        rest = max_hops - k
                        found.update(x for x, d in self.above(r).items() if d <= rest)
            got = self._related.put(key, frozenset(found), len(found))
        return got

    def _layers(self, ci: str, hops: int) -> tuple[frozenset[str], ...]:
        """What lies within 0, 1, ..., `hops` hops below `ci` (each including `ci`)."""
        key = (ci, hops)
        got = self._layer_cache.get(key)
        if got is None:
            below = self.below(ci)
            near = self.below_within(ci, hops)
            got = tuple(frozenset(r for r in near if below[r] <= k) for k in range(hops + 1))
            remember(self._layer_cache, key, got, 100_000)
        return got

    def chain(self, top: str, bottom: str) -> tuple[str, ...]:
        """CIs on a shortest dependency chain from `top` down to `bottom` (both included).
        Remembered: an incident's impact is worked out again with every alert it gains."""
        key = (top, bottom)
        got = self._chains.get(key)
        if got is None:
            got = remember(self._chains, key, tuple(self._chain(top, bottom)), 200_000)
        return got

    def _chain(self, top: str, bottom: str) -> list[str]:
        if top == bottom:
            return [top]
        g = self.cmdb.graph
        below_top = self.below(top)
        if bottom not in below_top:
            return [top, bottom]
        # walk down from top, always to a neighbour one hop closer to bottom
        dist_to_bottom = self.above(bottom)
        path = [top]
        node = top
        while node != bottom:
            nxt = None
            for s in g.successors(node):
                if s == bottom:
                    nxt = s
                    break
                d = dist_to_bottom.get(s)
                if d is not None and d < dist_to_bottom.get(node, 1 << 30):
                    if nxt is None or d < dist_to_bottom[nxt] or (d == dist_to_bottom[nxt] and s < nxt):
                        nxt = s
            if nxt is None:
                break
            path.append(nxt)
            node = nxt
        return path
