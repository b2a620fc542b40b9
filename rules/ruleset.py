"""A loaded set of rules, compiled for evaluation on every alert.

Rules are evaluated in order and, as in Alertmanager's routing tree, the first
matching rule stops evaluation unless it says `continue: true`. Later rules
see the labels that earlier ones set.

With a thousand rules, testing each in turn costs far too much per alert, so
an index (`rules.index`) gives each alert its candidate rules; they are
tested fully, in rule order, and no rule outside them can match. Matchers are
compiled to tuples once, at load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rules.changes import Change
from rules.index import build_index, candidates
from rules.inhibit import InhibitRule
from rules.matchers import Matcher
from rules.priority import PriorityMatrix
from rules.rule import CI_PREFIX, Outcome, Rule
from rules.silences import Silence
from rules.templates import attr_string

CiAttrs = Callable[[str], Mapping[str, Any] | None]

_OP_CODES = {"=": 0, "!=": 1, "=~": 2, "!~": 3}
_SET_OP_CODES = {"=~": 4, "!~": 5}  # on a regex of literals, looked up in its set of strings


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

    def get(self, key: str, default: Any = None) -> Any:
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


# --- compiled rules ------------------------------------------------------------

_Compiled = tuple[tuple[str, bool, int, Any, Any], ...]  # name, is_ci, op code, value(s), regex


def _compile_matchers(matchers: Iterable[Matcher]) -> _Compiled:
    out: list[tuple[str, bool, int, Any, Any]] = []
    for m in matchers:
        is_ci = m.name.startswith(CI_PREFIX)
        name = m.name[len(CI_PREFIX) :] if is_ci else m.name
        if m.literals is not None:
            out.append((name, is_ci, _SET_OP_CODES[m.op], m.literals, None))
        else:
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
            if not rx.any(v):
                return False
        elif op == 3:
            if rx.any(v):
                return False
        elif op == 4:
            if v not in value:
                return False
        elif v in value:
            return False
    return True


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
        self._index = build_index(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def candidates(
        self, labels: Mapping[str, str], after: int = -1, ci: CiView | None = None
    ) -> list[int]:
        """Indexes of the rules that may match these labels (and CI), in rule order."""
        ci = ci or CiView(None, None)

        def value(name: str) -> str:
            if name.startswith(CI_PREFIX):
                return ci.value(name[3:])
            return labels.get(name, "")

        return candidates(self._index, value, after)

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
