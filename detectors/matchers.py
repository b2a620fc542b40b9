"""Alertmanager-style label matchers for choosing the series a detector watches.

A deliberately tiny stand-in with the same names as the project's shared
matcher module (`parse_matchers`, `matches_all`), so that swapping it is a
one-line import change. Semantics follow Alertmanager: ``=``, ``!=``, ``=~``,
``!~``; a missing label matches as ""; regexes are fully anchored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$', re.S)


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = self.regex is not None and self.regex.fullmatch(got) is not None
        return hit if self.op == "=~" else not hit


def _make(name: str, op: str, value: str) -> Matcher:
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(f"(?:{value})", re.S)
        except re.error as exc:
            raise ValueError(f"invalid regex in {name}{op}{value!r}: {exc}") from exc
    return Matcher(name, op, value, regex)


def parse_matcher(text: str) -> Matcher:
    """Parse ``name<op>value`` where value may be double-quoted."""
    m = _MATCHER.match(text)
    if not m:
        raise ValueError(f"invalid matcher {text!r} (expected name=\"value\", !=, =~ or !~)")
    name, op, value = m.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return _make(name, op, value)


def parse_matchers(spec: str | Iterable[str] | Mapping[str, str] | None) -> list[Matcher]:
    """Matchers from a list of strings, a mapping (equality) or one string."""
    if spec is None:
        return []
    if isinstance(spec, Mapping):
        return [_make(str(k), "=", str(v)) for k, v in spec.items()]
    if isinstance(spec, str):
        spec = [spec]
    return [parse_matcher(s) for s in spec]


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
