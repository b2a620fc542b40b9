"""The CMDB as a dependency graph and the queries correlation asks of it.

Edge `A -> B` means "A depends on B" (a fault in B can show in A); the edge
attribute `relation` is `depends_on`, `runs_on` or `connects_to`. Cycles are
legal (two services calling each other); every query here terminates on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

import networkx as nx

from cmdb.index import MatcherIndex
from cmdb.model import CI


@dataclass(frozen=True, slots=True)
class PathStep:
    """One hop of a path: from `src` to `dst`, along (`down`) or against a dependency edge."""

    src: str
    dst: str
    relation: str
    down: bool  # True: src depends on dst; False: dst depends on src

    def describe(self) -> str:
        a, b = (self.src, self.dst) if self.down else (self.dst, self.src)
        if self.relation == "inferred":
            return f"{a} depends_on {b} (inferred: other deployments record it)"
        return f"{a} {self.relation} {b}"


class Cmdb:
    """An immutable, loaded CMDB: CIs, the dependency graph and the alert-to-CI index."""

    def __init__(self, cis: Mapping[str, CI], graph: nx.DiGraph, sources: Iterable[str] = ()) -> None:
        self.cis: dict[str, CI] = dict(cis)
        self.graph = graph
        self.sources = list(sources)
        self.index = MatcherIndex(block for ci in self.cis.values() for block in ci.match)

    @classmethod
    def empty(cls) -> Cmdb:
        return cls({}, nx.DiGraph())

    def __contains__(self, ci: object) -> bool:
        return ci in self.cis

    def __len__(self) -> int:
        return len(self.cis)

    def get(self, ci: str) -> CI | None:
        return self.cis.get(ci)

    def ci_for(self, labels: Mapping[str, str]) -> str | None:
        """The CI an alert with these labels belongs to (its most specific match), or None."""
        return self.index.lookup(labels)

    def fits(self, labels: Mapping[str, str], ci: str) -> bool:
        """Whether an alert that matches no CI could be about `ci` (see `MatcherIndex.fits`)."""
        return self.index.fits(labels, ci)

    # -- direct neighbours -------------------------------------------------

    def depends_on(self, ci: str) -> list[str]:
        """What `ci` needs (one hop)."""
        return list(self._down.get(ci, ()))

    def dependents_of(self, ci: str) -> list[str]:
        """What needs `ci` (one hop)."""
        return list(self._up.get(ci, ()))

    def dependent_count(self, ci: str) -> int:
        """How many CIs need `ci` directly."""
        return len(self._up.get(ci, ()))

    def relation(self, a: str, b: str) -> str | None:
        data = self.graph.get_edge_data(a, b)
        return data.get("relation", "depends_on") if data is not None else None

    # -- bounded and transitive queries -------------------------------------

    def dependencies(self, ci: str, hops: int | None = None) -> dict[str, int]:
        """Everything `ci` depends on, directly or transitively, with the hop count."""
        return self._bfs(ci, self._down, hops)

    def dependents(self, ci: str, hops: int | None = None) -> dict[str, int]:
        """Everything that depends on `ci`, directly or transitively, with the hop count."""
        return self._bfs(ci, self._up, hops)

    def ancestors(self, ci: str) -> set[str]:
        """networkx naming: the CIs that depend on `ci` (they reach it)."""
        return set(self.dependents(ci))

    def descendants(self, ci: str) -> set[str]:
        """networkx naming: the CIs `ci` depends on (it reaches them)."""
        return set(self.dependencies(ci))

    # adjacency as plain tuples, built on first use: walks run on every new alert
    @cached_property
    def _down(self) -> dict[str, tuple[str, ...]]:
        return {n: tuple(nbrs) for n, nbrs in self.graph.succ.items()}

    @cached_property
    def _up(self) -> dict[str, tuple[str, ...]]:
        return {n: tuple(nbrs) for n, nbrs in self.graph.pred.items()}

    @staticmethod
    def _bfs(start: str, adj: Mapping[str, tuple[str, ...]], hops: int | None) -> dict[str, int]:
        """Breadth first, one hop level at a time, up to `hops` levels."""
        if start not in adj:
            return {}
        seen = {start: 0}
        frontier = [start]
        d = 0
        while frontier and (hops is None or d < hops):
            d += 1
            reached = []
            for node in frontier:
                for nxt in adj[node]:
                    if nxt not in seen:
                        seen[nxt] = d
                        reached.append(nxt)
            frontier = reached
        del seen[start]
        return seen

    def path(self, a: str, b: str, max_hops: int | None = None) -> list[PathStep] | None:
        """A shortest path between two CIs ignoring edge direction, within `max_hops`.

        [] when a == b; None when there is none within the bound. Searches from
        both ends, so a hub (a zone network under a thousand hosts) costs only
        when it is on the way.
        """
        g = self.graph
        if a not in g or b not in g:
            return None
        if a == b:
            return []
        limit = max_hops if max_hops is not None else len(g)
        # parents on each side: node -> previous node toward the side's start
        pa: dict[str, str | None] = {a: None}
        pb: dict[str, str | None] = {b: None}
        fa, fb = [a], [b]
        da = db = 0
        while fa and fb and da + db < limit:
            # expand the smaller frontier
            if len(fa) <= len(fb):
                fa, meet = self._expand(fa, pa, pb)
                da += 1
            else:
                fb, meet = self._expand(fb, pb, pa)
                db += 1
            if meet is not None:
                return self._steps(meet, pa, pb)
        return None

    def _expand(self, frontier: list[str], parents: dict, other: dict) -> tuple[list[str], str | None]:
        g = self.graph
        nxt: list[str] = []
        for node in frontier:
            for n in _undirected_neighbours(g, node):
                if n in parents:
                    continue
                parents[n] = node
                if n in other:
                    return nxt, n
                nxt.append(n)
        return nxt, None

    def _steps(self, meet: str, pa: dict, pb: dict) -> list[PathStep]:
        left: list[str] = []
        n: str | None = meet
        while n is not None:
            left.append(n)
            n = pa[n]
        left.reverse()
        n = pb[meet]
        while n is not None:
            left.append(n)
            n = pb[n]
        steps = []
        for src, dst in zip(left, left[1:], strict=False):
            if self.graph.has_edge(src, dst):
                steps.append(PathStep(src, dst, self.relation(src, dst) or "depends_on", True))
            else:
                steps.append(PathStep(src, dst, self.relation(dst, src) or "depends_on", False))
        return steps

    def to_dict(self, ci: str, hops: int | None = 1) -> dict:
        """The CI with its dependencies and dependents, for the API."""
        item = self.cis[ci]
        out = item.to_dict()
        out["dependencies"] = [
            {"ci": d, "hops": h, "relation": self.relation(ci, d) if h == 1 else None}
            for d, h in sorted(self.dependencies(ci, hops).items(), key=lambda x: (x[1], x[0]))
        ]
        out["dependents"] = [
            {"ci": d, "hops": h, "relation": self.relation(d, ci) if h == 1 else None}
            for d, h in sorted(self.dependents(ci, hops).items(), key=lambda x: (x[1], x[0]))
        ]
        return out


def _undirected_neighbours(g: nx.DiGraph, node: str):
    yield from g._succ[node]
    yield from g._pred[node]


def describe_path(steps: list[PathStep]) -> str:
    """`payments depends_on orders-db, orders-db runs_on db-host-1`."""
    return ", ".join(s.describe() for s in steps)
