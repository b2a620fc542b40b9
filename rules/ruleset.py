"""A loaded set of rules, compiled for evaluation on every alert.

Rules are evaluated in order and, as in Alertmanager's routing tree, the first
matching rule stops evaluation unless it says `continue: true`. Later rules
see the labels that earlier ones set.

With a thousand rules, testing each in turn costs far too much per alert, so
each rule is indexed by one of its positive label matchers:

- `name="v"` and regexes that are alternations of literals (`=~"a|b|c"`) go
  into a hash index on the exact values;
- regexes whose every alternative starts with a literal (`=~"db-.*|pg-.*"`)
  go into a prefix index (one dict lookup per distinct prefix length);
- other regexes on the same label are OR-ed into one combined regex, a gate
  that skips all of them with one `fullmatch` when it fails;
- rules with only negative matchers or only CI matchers are always candidates.

An alert's candidates are gathered from these, sorted into rule order and
tested fully; no rule outside them can match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rules.changes import Change
from rules.inhibit import InhibitRule
from rules.matchers import Matcher
from rules.priority import PriorityMatrix
from rules.rule import CI_PREFIX, Outcome, Rule
from rules.silences import Silence
from rules.templates import attr_string

CiAttrs = Callable[[str], Mapping[str, Any] | None]

_META = set(".^$*+?{}[]\\|()")
_OP_CODES = {"=": 0, "!=": 1, "=~": 2, "!~": 3}


class CiView:
    """An alert's CI as matchers and templates see it: `id` plus its attributes,
    fetched lazily (most alerts never reach a rule that asks)."""

    __slots__ = ("ci", "_fetch", "_attrs")

    def __init__(self, ci: str | None, fetch: CiAttrs | None) -> None:
        self.ci = ci
        self._fetch = fetch
        self._attrs: dict[str, Any] | None = None

    def attrs(self) -> dict[str, Any]:
        if self._attrs is None:
            attrs: dict[str, Any] = {}
            if self.ci is not None:
                if self._fetch is not None:
                    attrs.update(self._fetch(self.ci) or {})
                attrs["id"] = self.ci
            self._attrs = attrs
        return self._attrs

    def get(self, key: str, default: Any = None) -> Any:
        return self.attrs().get(key, default)

    def value(self, key: str) -> str:
        return attr_string(self.attrs().get(key))


class AlertView(Mapping[str, str]):
    """Labels plus `ci.ATTR` entries, for matchers that may name CI attributes."""

    __slots__ = ("labels", "ci")

    def __init__(self, labels: Mapping[str, str], ci: CiView) -> None:
        self.labels = labels
        self.ci = ci

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key.startswith(CI_PREFIX):
            v = self.ci.value(key[len(CI_PREFIX) :])
            return v if v else default
        return self.labels.get(key, default)

    def __getitem__(self, key: str) -> str:
        v = self.get(key)
        if v is None:
            raise KeyError(key)
        return v

    def __iter__(self):  # pragma: no cover - matchers only use get()
        return iter(self.labels)

    def __len__(self) -> int:  # pragma: no cover
        return len(self.labels)


# --- regex analysis for the index ----------------------------------------------


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
        depth, i, in_class, end = 0, 0, False, -1
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
                    end = i
                    break
            i += 1
        if end != len(rx) - 1:
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


# --- compiled rules ------------------------------------------------------------

_Compiled = tuple[tuple[str, bool, int, str, Any], ...]


def _compile_matchers(matchers: Iterable[Matcher]) -> _Compiled:
    out = []
    for m in matchers:
        is_ci = m.name.startswith(CI_PREFIX)
        name = m.name[len(CI_PREFIX) :] if is_ci else m.name
        out.append((name, is_ci, _OP_CODES[m.op], m.value, m._regex))
    return tuple(out)


def _matches(compiled: _Compiled, labels: Mapping[str, str], ci: CiView) -> bool:
    for name, is_ci, op, value, rx in compiled:
        v = ci.value(name) if is_ci else labels.get(name, "")
        if op == 0:
            if v != value:
                return False
        elif op == 1:
            if v == value:
                return False
        elif op == 2:
            if rx.fullmatch(v) is None:
                return False
        elif rx.fullmatch(v) is not None:
            return False
    return True


@dataclass
class _Index:
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


def _build_index(rules: list[Rule]) -> _Index:
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
    index = _Index(exact=exact, always=always)
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


class RuleSet:
    """Rules, inhibition rules, file silences and changes loaded together."""

    def __init__(
        self,
        rules: list[Rule] | None = None,
        inhibit_rules: list[InhibitRule] | None = None,
        silences: list[Silence] | None = None,
        changes: list[Change] | None = None,
        matrix: PriorityMatrix | None = None,
        files: list[str] | None = None,
    ) -> None:
        self.rules = list(rules or [])
        self.inhibit_rules = list(inhibit_rules or [])
        self.silences = list(silences or [])
        self.changes = list(changes or [])
        self.matrix = matrix or PriorityMatrix()
        self.files = list(files or [])
        self._compiled = [_compile_matchers(r.matchers) for r in self.rules]
        self._index = _build_index(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def candidates(
        self, labels: Mapping[str, str], after: int = -1, ci: CiView | None = None
    ) -> list[int]:
        """Indexes of the rules that may match these labels (and CI), in rule order."""
        ix = self._index
        ci = ci or CiView(None, None)

        def value(name: str) -> str:
            if name.startswith(CI_PREFIX):
                return ci.value(name[3:])
            return labels.get(name, "")

        found: set[int] = set(ix.always)
        for name, table in ix.exact.items():
            hit = table.get(value(name))
            if hit:
                found.update(hit)
        for name, (lengths, table) in ix.prefix.items():
            v = value(name)
            for n in lengths:
                if n > len(v):
                    break
                hit = table.get(v[:n])
                if hit:
                    found.update(hit)
        for name, (combined, idxs) in ix.gated.items():
            if combined is None or combined.fullmatch(value(name)) is not None:
                found.update(idxs)
        if after >= 0:
            return sorted(i for i in found if i > after)
        return sorted(found)

    def evaluate(
        self,
        labels: Mapping[str, str],
        annotations: Mapping[str, str] | None = None,
        ci: str | None = None,
        ci_attrs: CiAttrs | None = None,
    ) -> Outcome:
        """Apply the rules to one alert; the inputs are not modified."""
        out = Outcome(labels=dict(labels), annotations=dict(annotations or {}))
        view = CiView(ci, ci_attrs)
        rules, compiled = self.rules, self._compiled
        cands = self.candidates(out.labels, ci=view)
        i = 0
        while i < len(cands):
            idx = cands[i]
            i += 1
            if not _matches(compiled[idx], out.labels, view):
                continue
            rule = rules[idx]
            labels_before = out.labels.copy() if rule.changes_labels else None
            self._apply(rule, out, view)
            if rule.drop or not rule.continue_:
                break
            if labels_before is not None and labels_before != out.labels:
                cands, i = self.candidates(out.labels, after=idx, ci=view), 0
        if out.priority is None:
            out.priority = self.matrix.priority(out.impact, out.urgency)
        return out

    @staticmethod
    def _apply(rule: Rule, out: Outcome, ci: CiView) -> None:
        out.matched.append(rule.name)
        if rule.set_labels or rule.set_annotations:
            # All templates of a rule see the alert as it was before the rule.
            labels, annotations = out.labels.copy(), out.annotations.copy()
            for name, tmpl in rule.set_labels.items():
                _set(out.labels, name, tmpl.render(labels, annotations, ci))
            for name, tmpl in rule.set_annotations.items():
                _set(out.annotations, name, tmpl.render(labels, annotations, ci))
        for src, dst in rule.copy_labels:
            _set(
                out.labels,
                dst,
                ci.value(src[len(CI_PREFIX) :])
                if src.startswith(CI_PREFIX)
                else out.labels.get(src, ""),
            )
        for src, dst in rule.copy_annotations:
            _set(
                out.annotations,
                dst,
                ci.value(src[len(CI_PREFIX) :])
                if src.startswith(CI_PREFIX)
                else out.annotations.get(src, ""),
            )
        if rule.drop:
            out.dropped = True
        if rule.impact is not None:
            out.impact = rule.impact
            out.priority = None
        if rule.urgency is not None:
            out.urgency = rule.urgency
            out.priority = None
        if rule.priority is not None:
            out.priority, out.impact, out.urgency = rule.priority, None, None
        if rule.team is not None:
            out.team = rule.team
        if rule.receiver is not None:
            out.receiver = rule.receiver
        if rule.runbook is not None:
            out.runbook = rule.runbook.render(out.labels, out.annotations, ci)
        if rule.correlation_window is not None:
            out.correlation_window = rule.correlation_window
        if rule.group_by is not None:
            out.group_by = list(rule.group_by)

    def evaluate_naive(
        self, labels: Mapping[str, str], ci: str | None = None, ci_attrs: CiAttrs | None = None
    ) -> list[str]:
        """Matched rule names by testing every rule in turn (a reference for tests)."""
        out = Outcome(labels=dict(labels), annotations={})
        view = CiView(ci, ci_attrs)
        for rule in self.rules:
            if all(m.matches(AlertView(out.labels, view)) for m in rule.matchers):
                self._apply(rule, out, view)
                if rule.drop or not rule.continue_:
                    break
        return out.matched


def _set(target: dict[str, str], name: str, value: str) -> None:
    """An empty value removes the label: in Prometheus, empty means absent."""
    if value:
        target[name] = value
    else:
        target.pop(name, None)
