"""The CMDB as a dependency graph and the queries correlation asks of it.

Edge `A -> B` means "A depends on B" (a fault in B can show in A); the edge
attribute `relation` is `depends_on`, `runs_on` or `connects_to`. Cycles are
legal (two services calling each other); every query here terminates on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from cmdb.drift import INFERRED, NAMED
from cmdb.index import MatcherIndex
from cmdb.model import CI

if TYPE_CHECKING:  # imported where a graph is made: see cmdb.loader
    import networkx as nx


@dataclass(frozen=True, slots=True)
class PathStep:
    """One hop of a dependency chain: `src` depends on `dst` (by `relation`)."""

    src: str
    dst: str
    relation: str

    def describe(self) -> str:
        if self.relation == INFERRED:
            return f"{self.src} depends_on {self.dst} (inferred: other deployments record it)"
        if self.relation == NAMED:
            return f"{self.src} depends_on {self.dst} (inferred: named after {self.src}, and no CI is recorded to use it)"
        return f"{self.src} {self.relation} {self.dst}"


class Cmdb:
    """An immutable, loaded CMDB: CIs, the dependency graph and the alert-to-CI index."""

    def __init__(self, cis: Mapping[str, CI], graph: nx.DiGraph, sources: Iterable[str] = ()) -> None:
        self.cis: dict[str, CI] = dict(cis)
        self.graph = graph
        self.sources = list(sources)
        self.index = MatcherIndex(block for ci in self.cis.values() for block in ci.match)

    @classmethod
    def empty(cls) -> Cmdb:
        import networkx as nx

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

    def fitting(self, labels: Mapping[str, str], most: int) -> set[str] | None:
        """Every CI an alert that matches no CI could be about (see `fits`), unless more
        than `most` match blocks would have to be tried (None)."""
        return self.index.fitting(labels, most)

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
    def _bfs(start: str, adj: Mapping[str, tuple[str, ...]], hops: int | None,
             parents: dict[str, str] | None = None) -> dict[str, int]:
        """Breadth first, one hop level at a time, up to `hops` levels; with `parents`,
        records there the node each reached node was first reached from."""
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
                        if parents is not None:
                            parents[nxt] = node
            frontier = reached
        del seen[start]
        return seen

    def dependency_path(self, a: str, b: str, max_hops: int | None = None) -> list[PathStep] | None:
        """A shortest chain of dependencies from `a` down to `b` (`a` depends on ... on
        `b`), within `max_hops`: the way a fault at `b` reaches `a`. [] when a == b;
        None when `a` does not depend on `b` within the bound."""
        if a == b:
            return [] if a in self._down else None
        parents: dict[str, str] = {}
        if b not in self._bfs(a, self._down, max_hops, parents):
            return None
        chain = [b]
        while chain[-1] != a:
            chain.append(parents[chain[-1]])
        chain.reverse()
        return [PathStep(src, dst, self.relation(src, dst) or "depends_on")
                for src, dst in zip(chain, chain[1:], strict=False)]

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


def describe_path(steps: list[PathStep]) -> str:
    """`payments depends_on orders-db, orders-db runs_on db-host-1`."""
    return ", ".join(s.describe() for s in steps)
