"""The rule index: which rules can possibly match an alert, without testing them all.

Each rule is filed under one of its positive matchers:

- `name="v"` and regexes that are alternations of literals (`=~"a|b|c"`,
  `=~"(?:Kube|Node)Down"`) go into a hash index on the exact values;
- regexes whose every alternative starts with a literal (`=~"db-.*|pg-.*"`)
  go into a prefix index (one dict lookup per distinct prefix length);
- other regexes on the same name are OR-ed into one combined regex, a gate
  that skips all of them with one `fullmatch` when it fails;
- rules with only negative matchers are always candidates.

A rule is filed under its rarest keys (counted over the whole rule set), so
that `severity=~"critical|warning"` next to `service="payments"` does not make
every critical alert a candidate. Names may be `ci.ATTR`: the caller resolves
values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from rules.matchers import Matcher
from rules.rule import Rule

_META = set(".^$*+?{}[]\\|()")


def _split_top(rx: str) -> list[str] | None:
    """Split a regex on its top-level `|`; None if it cannot be read simply."""
    parts, cur, depth, i = [], [], 0, 0
    in_class = False
    while i < len(rx):
        c = rx[i]
        if c == "\\":
            cur.append(rx[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return None
        elif c == "|" and depth == 0:
            parts.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    if depth != 0 or in_class:
        return None
    parts.append("".join(cur))
    return parts


def _strip_group(rx: str) -> str:
    """`(?:a|b)` or `(a|b)` spanning the whole regex → `a|b`."""
    while rx.startswith("(") and rx.endswith(")") and (rx[:2] != "(?" or rx[:3] == "(?:"):
        if _matching_paren(rx, 0) != len(rx) - 1:
            return rx
        rx = rx[3:-1] if rx.startswith("(?:") else rx[1:-1]
    return rx


_MAX_EXPANSION = 64


def _matching_paren(rx: str, start: int) -> int:
    depth, i, in_class = 0, start, False
    while i < len(rx):
        c = rx[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _expand(alt: str) -> tuple[set[str], bool] | None:
    """The literal strings every match of `alt` starts with, and whether `alt`
    matches exactly those strings. Understands literals, escapes and groups of
    literal alternatives (`(?:Kube|Node)Down`); stops at anything else."""
    prefixes = {""}
    i = 0
    while i < len(alt):
        c = alt[i]
        if c == "(":
            close = _matching_paren(alt, i)
            if close < 0 or (alt[i + 1 : i + 2] == "?" and alt[i + 1 : i + 3] != "?:"):
                return prefixes, False
            inner = alt[i + 3 : close] if alt[i + 1 : i + 3] == "?:" else alt[i + 1 : close]
            parts = _split_top(inner)
            options: set[str] = set()
            for part in parts or []:
                sub = _expand(part)
                if sub is None or not sub[1]:
                    return prefixes, False
                options |= sub[0]
            if not parts or len(prefixes) * len(options) > _MAX_EXPANSION:
                return prefixes, False
            if alt[close + 1 : close + 2] in ("*", "?", "{"):
                return prefixes, False
            prefixes = {p + o for p in prefixes for o in options}
            if alt[close + 1 : close + 2] == "+":
                return prefixes, False
            i = close + 1
            continue
        if c == "\\":
            lit = alt[i + 1 : i + 2]
            if not lit or lit.isalnum():
                return prefixes, False
            width = 2
        elif c in _META:
            return prefixes, False
        else:
            lit, width = c, 1
        nxt = alt[i + width : i + width + 1]
        if nxt in ("*", "?", "{"):
            return prefixes, False  # the quantifier makes this literal optional
        prefixes = {p + lit for p in prefixes}
        if nxt == "+":
            return prefixes, False
        i += width
    return prefixes, True


def regex_keys(rx: str) -> tuple[str, set[str]] | None:
    """How an anchored regex can be indexed: ("exact", values), ("prefix",
    prefixes), or None when it cannot."""
    alts = _split_top(_strip_group(rx))
    if alts is None:
        return None
    exact: set[str] = set()
    prefixes: set[str] = set()
    for alt in alts:
        got = _expand(alt)
        if got is None:
            return None
        values, complete = got
        if complete:
            exact |= values
        elif "" in values:
            return None
        else:
            prefixes |= values
        if len(exact) + len(prefixes) > _MAX_EXPANSION:
            return None
    if not prefixes:
        return "exact", exact
    return "prefix", prefixes | exact


@dataclass
class Index:
    exact: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    prefix: dict[str, tuple[tuple[int, ...], dict[str, list[int]]]] = field(default_factory=dict)
    gated: dict[str, tuple[re.Pattern[str] | None, list[int]]] = field(default_factory=dict)
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
        gate = next(
            (m for m in rule.matchers if m.op == "=~" and not re.search(r"\\\d", m.value)), None
        )
        if gate is not None:
            gated.setdefault(gate.name, []).append((idx, gate.value))
        else:
            always.append(idx)
    index = Index(exact=exact, always=always)
    for name, table in prefix.items():
        index.prefix[name] = (tuple(sorted({len(p) for p in table})), table)
    for name, items in gated.items():
        try:
            combined: re.Pattern[str] | None = re.compile(
                "|".join(f"(?:{m._regex.pattern})" for m in _gate_matchers(rules, items, name))
            )
        except re.error:
            combined = None  # e.g. repeated group names; test each rule instead
        index.gated[name] = (combined, [i for i, _ in items])
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
    for name, (combined, idxs) in index.gated.items():
        if combined is None or combined.fullmatch(value(name)) is not None:
            found.update(idxs)
    if after >= 0:
        return sorted(i for i in found if i > after)
    return sorted(found)
