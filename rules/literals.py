"""What an anchored regex can match, read without the regex engine.

Many label regexes are alternations of literals (`=~"a|b|c"`,
`=~"(?:Kube|Node)Down"`, `=~"api-(exporter|metrics)"`) or lists of literal
prefixes (`=~"db-.*|pg-.*"`). Read as sets of strings, they go into hash
indexes (rules, CMDB matchers) and are tested by set membership instead of
being compiled: compiling thousands of regexes is most of the time it takes to
load a large CMDB.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_META = set(".^$*+?{}[]\\|()")
_RUN = re.compile(r"[^.^$*+?{}\[\]\\|()]+")  # literal characters
_NESTING = re.compile(r"[\\()\[]")  # what makes a `|` other than top-level


def _marks(rx: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """Each `(`, `)` and `|` of a regex from `start`, outside escapes and character
    classes, with the depth of groups it stands in (a group's parentheses stand
    outside it); last, ("", depth left open), or -1 when a class is left open."""
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
            yield i, c, depth
            depth += 1
        elif c == ")":
            depth -= 1
            yield i, c, depth
        elif c == "|":
            yield i, c, depth
        i += 1
    yield len(rx), "", -1 if in_class else depth


def _split_top(rx: str) -> list[str] | None:
    """Split a regex on its top-level `|`; None if it cannot be read simply."""
    if not _NESTING.search(rx):
        return rx.split("|")
    parts, last = [], 0
    for i, c, depth in _marks(rx):
        if depth < 0 or (not c and depth != 0):
            return None
        if c == "|" and depth == 0:
            parts.append(rx[last:i])
            last = i + 1
    parts.append(rx[last:])
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
    for i, c, depth in _marks(rx, start):
        if c == ")" and depth == 0:
            return i
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
        elif c not in _META:
            found = _RUN.match(alt, i)
            run = found.group() if found is not None else c
            if len(run) > 1:  # all but the last character, which a quantifier may follow
                prefixes = {p + run[:-1] for p in prefixes}
                i += len(run) - 1
                continue
            lit, width = c, 1
        else:
            return prefixes, False
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
