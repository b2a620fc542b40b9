"""The rule index: which rules can possibly match an alert, without testing them all.

Each rule is filed under one of its positive matchers:

- `name="v"` and regexes that are alternations of literals (`=~"a|b|c"`,
  `=~"(?:Kube|Node)Down"`) go into a hash index on the exact values;
- regexes whose every alternative starts with a literal (`=~"db-.*|pg-.*"`)
  go into a prefix index (one dict lookup per distinct prefix length);
- other regexes on the same name go into one RE2 set, a gate that tells in
  one pass which of them match the value;
- rules with only negative matchers are always candidates.

A rule is filed under its rarest keys (counted over the whole rule set), so
that `severity=~"critical|warning"` next to `service="payments"` does not make
every critical alert a candidate. Names may be `ci.ATTR`: the caller resolves
values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rules.literals import regex_keys
from rules.matchers import Matcher, Regexes
from rules.rule import Rule


@dataclass
class Index:
    exact: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    prefix: dict[str, tuple[tuple[int, ...], dict[str, list[int]]]] = field(default_factory=dict)
    gated: dict[str, tuple[Regexes, list[int]]] = field(default_factory=dict)
    always: list[int] = field(default_factory=list)


def _index_options(rule: Rule) -> list[tuple[str, str, set[str]]]:
    """The ways this rule can be indexed: (matcher name, "exact"|"prefix", keys)."""
    out = []
    for m in rule.matchers:
        if m.op == "=":
            out.append((m.name, "exact", {m.value}))
        elif m.op == "=~":
            keys = regex_keys(m.value)
            if keys is not None:
                out.append((m.name, keys[0], keys[1]))
    return out


def build_index(rules: list[Rule]) -> Index:
    options = [_index_options(r) for r in rules]
    # How many rules could be filed under each key: a rule is filed under its
    # rarest keys, so that `severity=~"critical|warning"` next to
    # `service="payments"` does not make every critical alert a candidate.
    popularity: dict[tuple[str, str], int] = {}
    for opts in options:
        for name, _, keys in opts:
            for k in keys:
                popularity[(name, k)] = popularity.get((name, k), 0) + 1
    exact: dict[str, dict[str, list[int]]] = {}
    prefix: dict[str, dict[str, list[int]]] = {}
    gated: dict[str, list[tuple[int, str]]] = {}
    always: list[int] = []
    for idx, rule in enumerate(rules):
        if options[idx]:
            name, kind, keys = min(
                options[idx],
                key=lambda o: (
                    sum(popularity[(o[0], k)] for k in o[2]) * (2 if o[1] == "prefix" else 1)
                ),
            )
            table = exact if kind == "exact" else prefix
            for v in keys:
                table.setdefault(name, {}).setdefault(v, []).append(idx)
            continue
        gate = next((m for m in rule.matchers if m.op == "=~"), None)
        if gate is not None:
            gated.setdefault(gate.name, []).append((idx, gate.value))
        else:
            always.append(idx)
    index = Index(exact=exact, always=always)
    for name, by_prefix in prefix.items():
        index.prefix[name] = (tuple(sorted({len(p) for p in by_prefix})), by_prefix)
    for name, items in gated.items():
        index.gated[name] = (Regexes([m.value for m in _gate_matchers(rules, items, name)]),
                             [i for i, _ in items])
    return index


def _gate_matchers(rules: list[Rule], items: list[tuple[int, str]], name: str) -> list[Matcher]:
    out = []
    for idx, value in items:
        for m in rules[idx].matchers:
            if m.name == name and m.op == "=~" and m.value == value:
                out.append(m)
                break
    return out


def candidates(index: Index, value: Callable[[str], str], after: int = -1) -> list[int]:
    """Indexes of the rules that may match, in rule order; `value(name)` is the
    alert's value for a label or `ci.ATTR` (empty when absent)."""
    found: set[int] = set(index.always)
    for name, table in index.exact.items():
        hit = table.get(value(name))
        if hit:
            found.update(hit)
    for name, (lengths, table) in index.prefix.items():
        v = value(name)
        for n in lengths:
            if n > len(v):
                break
            hit = table.get(v[:n])
            if hit:
                found.update(hit)
    for name, (gates, idxs) in index.gated.items():
        found.update(idxs[k] for k in gates.matching(value(name)))
    if after >= 0:
        return sorted(i for i in found if i > after)
    return sorted(found)
