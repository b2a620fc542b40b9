"""Maps an alert's labels to its CI without scanning every CI.

Each match block is filed under one of its equality matchers, the one whose
(label, value) pair is rarest among all blocks (a regex that is a finite
alternation of literals counts as one key per literal), so a lookup reads one
short candidate list per alert label and checks the other matchers (regexes,
negations) only on those candidates. Blocks without a usable equality matcher
(only regexes or negations) are few in practice and are checked on every
lookup. Results are cached by label set: alerts are re-sent many times.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from functools import partial
from operator import itemgetter

from cmdb.model import MatchBlock
from rules.matchers import Matcher

_NO_CI = ""


def _key_options(block: MatchBlock) -> list[tuple[tuple[str, str], ...]]:
    """The ways a block can be filed: under one of its equality pairs, or under every
    value of a regex that is a finite alternation of literals (`job=~"api-(a|b)"`)."""
    opts: list[tuple[tuple[str, str], ...]] = []
    for m in block.matchers:
        if m.is_equality and m.value:
            opts.append(((m.name, m.value),))
        elif m.op == "=~" and m.literals and "" not in m.literals:
            opts.append(tuple((m.name, v) for v in sorted(m.literals)))
    return opts


def _sort_key(block: MatchBlock) -> tuple[int, int, int, int]:
    labels, eq, n = block.specificity
    return (-labels, -eq, -n, block.order)


class MatcherIndex:
    """Most specific match wins: most labels, then most equality matchers, then most
    matchers, then file order."""

    def __init__(self, blocks: Iterable[MatchBlock], cache_size: int = 65_536) -> None:
        blocks = list(blocks)
        options = [_key_options(block) for block in blocks]
        freq = Counter(key for opts in options for keys in opts for key in keys)
        # each way of filing, by rarity: its commonest key, then its number of keys (each
        # option's keys are sorted); many blocks share one (`cluster="c1"`)
        rarity = {keys: (max(map(freq.__getitem__, keys)), len(keys), keys)
                  for keys in {keys for opts in options for keys in opts}}
        self._by_pair: dict[tuple[str, str], list[_Entry]] = {}
        self._scan: list[_Entry] = []
        for block, opts in zip(blocks, options, strict=True):
            entry = _entry(block)
            if len(opts) > 1:
                keys = min(opts, key=rarity.__getitem__)
            elif opts:
                keys = opts[0]
            else:
                self._scan.append(entry)
                continue
            for key in keys:
                self._by_pair.setdefault(key, []).append(entry)
        # Candidates are tried best first, so the first full match is the answer
        # within one list; lists are merged by comparing their winners.
        for lst in self._by_pair.values():
            lst.sort(key=_rank)
        self._scan.sort(key=_rank)
        self._cache: dict[frozenset[tuple[str, str]], str] = {}
        self._cache_size = cache_size
        self._blocks = blocks
        self._by_ci: dict[str, list[MatchBlock]] | None = None
        self._by_value: dict[tuple[str, str], list[MatchBlock]] | None = None  # every equality pair

    @property
    def size(self) -> int:
        return sum(len(v) for v in self._by_pair.values()) + len(self._scan)

    def lookup(self, labels: Mapping[str, str]) -> str | None:
        """The CI whose most specific match block the labels satisfy, or None."""
        key = frozenset(labels.items())
        hit = self._cache.get(key)
        if hit is not None:
            return hit or None
        ci = self._lookup(labels)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[key] = ci or _NO_CI
        return ci

    def fits(self, labels: Mapping[str, str], ci: str) -> bool:
        """Whether an alert that matches no CI could still be about `ci`: one of its match
        blocks shares a label value with the alert and none of its matchers is
        contradicted by the alert's labels (a cluster-wide `TargetDown` fits the
        cluster's nodes, not another namespace)."""
        return any(map(partial(_fits, labels), self._blocks_of().get(ci, ())))

    def fitting(self, labels: Mapping[str, str], most: int) -> set[str] | None:
        """Every CI that `fits` the labels, found from the blocks that share one of their
        label values; None when more than `most` blocks do, each counted once per value
        it shares (`cluster="c1"`: asking `fits` of the few CIs in question is cheaper
        then). An alert storm off the CMDB asks for each alert, and an alert whose
        labels the CMDB never mentions fits nothing."""
        if self._by_value is None:
            self._by_value = {}
            for block in self._blocks:
                for pair in {(m.name, m.value) for m in block.matchers if m.is_equality and m.value}:
                    self._by_value.setdefault(pair, []).append(block)
        sharing = [blocks for blocks in map(self._by_value.get, labels.items()) if blocks]
        if sum(map(len, sharing)) > most:
            return None
        return {block.ci for blocks in sharing for block in blocks if _fits(labels, block)}

    def _blocks_of(self) -> dict[str, list[MatchBlock]]:
        if self._by_ci is None:
            self._by_ci = {}
            for block in self._blocks:
                self._by_ci.setdefault(block.ci, []).append(block)
        return self._by_ci

    def lookup_uncached(self, labels: Mapping[str, str]) -> str | None:
        return self._lookup(labels)

    def _lookup(self, labels: Mapping[str, str]) -> str | None:
        best: _Entry | None = None
        by_pair = self._by_pair
        for pair in labels.items():
            cands = by_pair.get(pair)
            if cands is not None:
                best = _first_match(cands, labels, best)
        best = _first_match(self._scan, labels, best)
        return best[3].ci if best is not None else None


# A block as the index tries it: its rank (`_sort_key`), its equality pairs (compared
# inline, the cheap and usual case) and its other matchers.
_Entry = tuple[tuple[int, int, int, int], tuple[tuple[str, str], ...], tuple[Matcher, ...], MatchBlock]


_rank = itemgetter(0)  # an entry's rank


def _fits(labels: Mapping[str, str], block: MatchBlock) -> bool:
    """`MatcherIndex.fits` for one block."""
    shares = any(m.is_equality and m.value and labels.get(m.name) == m.value for m in block.matchers)
    return shares and all(m.name not in labels or m.matches(labels) for m in block.matchers)


def _entry(block: MatchBlock) -> _Entry:
    eqs: list[tuple[str, str]] = []
    rest: list[Matcher] = []
    for m in block.matchers:
        if m.is_equality:
            eqs.append((m.name, m.value))
        else:
            rest.append(m)
    return (_sort_key(block), tuple(eqs), tuple(rest), block)


def _first_match(entries: list[_Entry], labels: Mapping[str, str], best: _Entry | None) -> _Entry | None:
    """The best of `best` and the first of `entries` (sorted by rank) the labels satisfy."""
    get = labels.get
    for entry in entries:
        rank, eqs, rest, _ = entry
        if best is not None and rank >= best[0]:
            break
        for name, value in eqs:
            if get(name, "") != value:
                break
        else:
            if all(m.matches(labels) for m in rest):
                return entry
    return best
