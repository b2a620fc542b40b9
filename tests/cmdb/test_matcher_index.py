"""The CMDB's matcher index finds what trying every block in turn finds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cmdb.index import MatcherIndex
from cmdb.model import MatchBlock
from rules.matchers import parse_matcher

NAMES = ["cluster", "service", "job", "node"]
VALUES = ["a", "b", "c", ""]
REGEXES = ["a|b", "b", "(a|c)", "a.*", ".+", "c|"]

matcher = st.one_of(
    st.builds(lambda n, v: parse_matcher(f'{n}="{v}"'), st.sampled_from(NAMES), st.sampled_from(VALUES)),
    st.builds(lambda n, v: parse_matcher(f'{n}!="{v}"'), st.sampled_from(NAMES), st.sampled_from(VALUES)),
    st.builds(lambda n, r: parse_matcher(f'{n}=~"{r}"'), st.sampled_from(NAMES), st.sampled_from(REGEXES)),
    st.builds(lambda n, r: parse_matcher(f'{n}!~"{r}"'), st.sampled_from(NAMES), st.sampled_from(REGEXES)),
)
blocks = st.lists(st.lists(matcher, min_size=1, max_size=4), max_size=12).map(
    lambda ms: [MatchBlock(f"ci{i}", tuple(m), i) for i, m in enumerate(ms)]
)
label_sets = st.dictionaries(st.sampled_from(NAMES), st.sampled_from(VALUES[:3]))


def naive(bs: list[MatchBlock], labels: dict[str, str]) -> str | None:
    """The most specific block whose every matcher holds (most labels, then most
    equalities, then most matchers, then the first defined)."""
    hits = [b for b in bs if all(m.matches(labels) for m in b.matchers)]
    if not hits:
        return None
    return min(hits, key=lambda b: (-len({m.name for m in b.matchers}),
                                    -sum(m.is_equality for m in b.matchers), -len(b.matchers), b.order)).ci


@settings(max_examples=400, deadline=None)
@given(blocks, st.lists(label_sets, min_size=1, max_size=6))
def test_index_lookup_equals_trying_every_block(bs, alerts):
    index = MatcherIndex(bs)
    for labels in alerts:
        assert index.lookup_uncached(labels) == naive(bs, labels)
        assert index.lookup(labels) == naive(bs, labels)  # and through the cache


def naive_fits(bs: list[MatchBlock], labels: dict[str, str], ci: str) -> bool:
    """A block of `ci` shares an equality's value with the labels, and none of its
    matchers on a label the alert has fails."""
    return any(
        any(m.is_equality and m.value and labels.get(m.name) == m.value for m in b.matchers)
        and all(m.name not in labels or m.matches(labels) for m in b.matchers)
        for b in bs if b.ci == ci)


@settings(max_examples=400, deadline=None)
@given(blocks, st.lists(label_sets, min_size=1, max_size=6))
def test_fitting_finds_every_ci_the_labels_fit(bs, alerts):
    bs = [MatchBlock(f"ci{b.order % 5}", b.matchers, b.order) for b in bs]  # CIs with several blocks
    index = MatcherIndex(bs)
    cis = {b.ci for b in bs}
    for labels in alerts:
        want = {ci for ci in cis if naive_fits(bs, labels, ci)}
        assert index.fitting(labels, 10**6) == want
        assert {ci for ci in cis if index.fits(labels, ci)} == want
        # more blocks sharing a label value with the alert than it may try: not listed
        sharing = sum(len({(m.name, m.value) for m in b.matchers
                           if m.is_equality and m.value and labels.get(m.name) == m.value}) for b in bs)
        assert index.fitting(labels, sharing - 1) is None if sharing else index.fitting(labels, 0) == set()
