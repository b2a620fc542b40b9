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


def _literal_prefix(alt: str) -> tuple[str, bool]:
    """The literal text every match of `alt` starts with, and whether `alt` is
    entirely that literal."""
    out: list[str] = []
    i = 0
    while i < len(alt):
        c = alt[i]
        if c == "\\":
            nxt = alt[i + 1 : i + 2]
            if nxt and not nxt.isalnum():
                out.append(nxt)
                i += 2
                continue
            break
        if c in _META:
            break
        out.append(c)
        i += 1
    if i == len(alt):
        return "".join(out), True
    if alt[i] in "*?{" and out:
        out.pop()  # the quantifier makes the last literal optional
    return "".join(out), False


def regex_keys(rx: str) -> tuple[str, set[str]] | None:
    """How an anchored regex can be indexed: ("exact", values), ("prefix",
    prefixes), or None when it cannot."""
    alts = _split_top(_strip_group(rx))
    if alts is None:
        return None
    exact: set[str] = set()
    prefixes: set[str] = set()
    for alt in alts:
        prefix, complete = _literal_prefix(alt)
        if complete:
            exact.add(prefix)
        elif prefix:
            prefixes.add(prefix)
        else:
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


def _build_index(rules: list[Rule]) -> _Index:
    exact: dict[str, dict[str, list[int]]] = {}
    prefix: dict[str, dict[str, list[int]]] = {}
    gated: dict[str, list[tuple[int, str]]] = {}
    always: list[int] = []
    for idx, rule in enumerate(rules):
        best: tuple[int, int, str, str, set[str]] | None = (
            None  # (kind rank, n keys, label, kind, keys)
        )
        gate: tuple[str, str] | None = None
        for m in rule.matchers:
            if m.name.startswith(CI_PREFIX):
                continue
            if m.op == "=":
                cand = (0, 1, m.name, "exact", {m.value})
            elif m.op == "=~":
                keys = regex_keys(m.value)
                if keys is None:
                    if gate is None and not re.search(r"\\\d", m.value):
                        gate = (m.name, m.value)
                    continue
                kind, values = keys
                cand = (0 if kind == "exact" else 1, len(values), m.name, kind, values)
            else:
                continue
            if best is None or cand[:2] < best[:2]:
                best = cand
        if best is not None:
            _, _, name, kind, values = best
            table = exact if kind == "exact" else prefix
            for v in values:
                table.setdefault(name, {}).setdefault(v, []).append(idx)
        elif gate is not None:
            gated.setdefault(gate[0], []).append((idx, gate[1]))
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

    def candidates(self, labels: Mapping[str, str], after: int = -1) -> list[int]:
        """Indexes of the rules that may match these labels, in rule order."""
        ix = self._index
        found: set[int] = set(ix.always)
        for name, table in ix.exact.items():
            hit = table.get(labels.get(name, ""))
            if hit:
                found.update(hit)
        for name, (lengths, table) in ix.prefix.items():
            v = labels.get(name, "")
            for n in lengths:
                if n > len(v):
                    break
                hit = table.get(v[:n])
                if hit:
                    found.update(hit)
        for name, (combined, idxs) in ix.gated.items():
            if combined is None or combined.fullmatch(labels.get(name, "")) is not None:
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
        cands = self.candidates(out.labels)
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
                cands, i = self.candidates(out.labels, after=idx), 0
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
