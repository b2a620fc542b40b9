"""Rule files: the YAML schema, validated at load with `file:line: message` errors.

```yaml
priority_matrix:            # optional: ITIL impact × urgency (rows: impact)
  high:   {high: P1, medium: P2, low: P3}
  medium: {high: P2, medium: P3, low: P4}
  low:    {high: P3, medium: P4, low: P5}
rules:                      # evaluated in order; the first match stops unless `continue: true`
  - name: payments-owner
    match: ['service=~"payments|checkout"', 'ci.criticality="high"']
    set_labels: {team: payments}
    set_annotations: {summary: "{{ $labels.instance }} is slow"}
    copy_labels: [{from: ci.owner, to: owner}]
    impact: high
    urgency: medium          # priority from the matrix (or `priority: P2`)
    team: payments
    receiver: payments-pager
    runbook: "https://runbooks.example.com/{{ $labels.alertname }}"
    correlation_window: 10m
    group_by: [service, cluster]
    continue: true
  - name: drop-watchdog
    match: ['alertname="Watchdog"']
    drop: true
inhibit_rules:              # Alertmanager's, plus `sources` and `ci_relation`
  - source_matchers: ['alertname="ClusterDown"']
    target_matchers: ['severity!="critical"']
    equal: [cluster]
silences:                   # as created by the API
  - matchers: ['env="staging"']
    starts_at: 2026-01-01T00:00:00Z
    ends_at: 2026-01-02T00:00:00Z
    created_by: jane
    comment: staging rebuild
changes:                    # planned maintenance windows
  - {id: CHG-7, ci: orders-db, summary: upgrade, start: ..., end: ...}
```

A file with any error is rejected whole; `load_rules` raises `RuleFileError`
with every error found, `validate_rules` returns them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from daemon.model import LABEL_NAME
from daemon.timefmt import parse_duration
from daemon.yamlsrc import LineDict, SourceError, line_of, load_yaml
from rules.changes import Change, ChangeError
from rules.inhibit import InhibitRule
from rules.matchers import Matcher, MatcherError, parse_matchers
from rules.priority import PriorityMatrix
from rules.rule import Rule
from rules.ruleset import RuleSet
from rules.silences import Silence, SilenceError
from rules.templates import Template, TemplateError

TOP_KEYS = ("rules", "inhibit_rules", "silences", "changes", "priority_matrix")
RULE_KEYS = (
    "name", "match", "set_labels", "set_annotations", "copy_labels", "copy_annotations",
    "drop", "impact", "urgency", "priority", "team", "receiver", "runbook",
    "correlation_window", "group_by", "continue",
)  # fmt: skip
INHIBIT_KEYS = (
    "name", "source_matchers", "target_matchers", "sources", "equal", "ci_relation",
    "source_match", "source_match_re", "target_match", "target_match_re",
)  # fmt: skip
CI_RELATIONS = ("depends_on", "same")


class RuleFileError(Exception):
    """Rule files that cannot be loaded; `errors` are `file:line: message` lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class _Errors:
    def __init__(self, path: str) -> None:
        self.path = path
        self.items: list[str] = []

    def add(self, line: int, message: str) -> None:
        self.items.append(f"{self.path}:{line}: {message}")


def _unknown_keys(node: LineDict, allowed: Iterable[str], what: str, err: _Errors) -> None:
    allowed = tuple(allowed)
    for key in node:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            more = f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(allowed)})"
            err.add(node.line_of(key), f"unknown field {key!r} in {what}{more}")


def _matchers(node: Any, key: str, parent: LineDict, err: _Errors) -> list[Matcher] | None:
    """Matchers from a list of strings, a `{...}` selector string or a mapping."""
    raw = parent.get(key)
    line = parent.line_of(key)
    if raw is None:
        return []
    if isinstance(raw, list):
        out: list[Matcher] = []
        ok = True
        for i, item in enumerate(raw):
            try:
                if not isinstance(item, str):
                    raise MatcherError(f'expected a matcher string like name="value", got {item!r}')
                out.extend(parse_matchers([item]))
            except MatcherError as exc:
                err.add(line_of(raw, i), f"{key}[{i}]: {exc}")
                ok = False
        return out if ok else None
    try:
        return parse_matchers(raw)
    except MatcherError as exc:
        err.add(line, f"{key}: {exc}")
        return None


def _string(node: LineDict, key: str, err: _Errors) -> str | None:
    value = node.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        err.add(node.line_of(key), f"{key}: expected a non-empty string, got {value!r}")
        return None
    return value


def _template_map(node: LineDict, key: str, err: _Errors) -> dict[str, Template]:
    raw = node.get(key)
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        err.add(node.line_of(key), f"{key}: expected a mapping of name: value")
        return {}
    out: dict[str, Template] = {}
    for name, value in raw.items():
        line = line_of(raw, name)
        if not isinstance(name, str) or not LABEL_NAME.match(name):
            err.add(line, f"{key}: invalid name {name!r}")
            continue
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            err.add(line, f"{key}.{name}: expected a string, got {value!r}")
            continue
        try:
            out[name] = Template(str(value))
        except TemplateError as exc:
            err.add(line, f"{key}.{name}: {exc}")
    return out


def _copies(node: LineDict, key: str, err: _Errors) -> list[tuple[str, str]]:
    raw = node.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        err.add(node.line_of(key), f"{key}: expected a list of {{from: NAME, to: NAME}}")
        return []
    out = []
    for i, item in enumerate(raw):
        line = line_of(raw, i)
        if not isinstance(item, Mapping) or set(item) != {"from", "to"}:
            err.add(line, f"{key}[{i}]: expected {{from: NAME, to: NAME}}")
            continue
        src, dst = item["from"], item["to"]
        if not isinstance(src, str) or not isinstance(dst, str) or not src or not dst:
            err.add(line, f"{key}[{i}]: from and to must be names")
            continue
        if not LABEL_NAME.match(dst):
            err.add(line, f"{key}[{i}]: invalid target name {dst!r}")
            continue
        out.append((src, dst))
    return out


def _parse_rule(
    node: Any, index: int, rules_node: Any, path: str, matrix: PriorityMatrix, err: _Errors
) -> Rule | None:
    line = line_of(rules_node, index)
    if not isinstance(node, LineDict):
        err.add(line, f"rules[{index}]: expected a mapping")
        return None
    before = len(err.items)
    _unknown_keys(node, RULE_KEYS, f"rules[{index}]", err)
    name = _string(node, "name", err) or f"rules[{index}]"
    if "match" not in node:
        err.add(
            node.line, f"rule {name!r}: 'match' is required (use match: [] to match every alert)"
        )
    elif node["match"] is None:  # `match:` left empty: not taken as "every alert" by mistake
        err.add(
            node.line_of("match"),
            f"rule {name!r}: 'match' is empty (use match: [] to match every alert)",
        )
    matchers = _matchers(node, "match", node, err) or []
    drop = node.get("drop", False)
    cont = node.get("continue", False)
    for key, value in (("drop", drop), ("continue", cont)):
        if not isinstance(value, bool):
            err.add(node.line_of(key), f"{key}: expected true or false, got {value!r}")
    impact, urgency, prio = (
        _string(node, "impact", err),
        _string(node, "urgency", err),
        _string(node, "priority", err),
    )
    if impact is not None and impact not in matrix.impacts:
        err.add(node.line_of("impact"), f"impact: {impact!r} is not one of {matrix.impacts}")
    if urgency is not None and urgency not in matrix.urgencies:
        err.add(node.line_of("urgency"), f"urgency: {urgency!r} is not one of {matrix.urgencies}")
    if prio is not None and (impact is not None or urgency is not None):
        err.add(
            node.line_of("priority"), "priority: set either priority or impact/urgency, not both"
        )
    if prio is not None and not (len(prio) == 2 and prio[0] == "P" and prio[1] in "123456789"):
        err.add(node.line_of("priority"), f"priority: expected P1..P9, got {prio!r}")
    runbook = None
    if node.get("runbook") is not None:
        rb = _string(node, "runbook", err)
        if rb is not None:
            try:
                runbook = Template(rb)
            except TemplateError as exc:
                err.add(node.line_of("runbook"), f"runbook: {exc}")
    window = None
    if node.get("correlation_window") is not None:
        try:
            window = parse_duration(node["correlation_window"])
        except ValueError as exc:
            err.add(node.line_of("correlation_window"), f"correlation_window: {exc}")
    group_by = node.get("group_by")
    if group_by is not None and (
        not isinstance(group_by, list) or not all(isinstance(g, str) and g for g in group_by)
    ):
        err.add(node.line_of("group_by"), "group_by: expected a list of label names")
        group_by = None
    rule = Rule(
        name=name,
        matchers=tuple(matchers),
        origin=f"{path}:{node.line}",
        set_labels=_template_map(node, "set_labels", err),
        set_annotations=_template_map(node, "set_annotations", err),
        copy_labels=tuple(_copies(node, "copy_labels", err)),
        copy_annotations=tuple(_copies(node, "copy_annotations", err)),
        drop=drop is True,
        impact=impact,
        urgency=urgency,
        priority=prio,
        team=_string(node, "team", err),
        receiver=_string(node, "receiver", err),
        runbook=runbook,
        correlation_window=window,
        group_by=tuple(group_by) if group_by is not None else None,
        continue_=cont is True,
    )
    return rule if len(err.items) == before else None


def _parse_inhibit(node: Any, index: int, parent: Any, err: _Errors) -> InhibitRule | None:
    line = line_of(parent, index)
    if not isinstance(node, LineDict):
        err.add(line, f"inhibit_rules[{index}]: expected a mapping")
        return None
    before = len(err.items)
    _unknown_keys(node, INHIBIT_KEYS, f"inhibit_rules[{index}]", err)
    name = _string(node, "name", err) or f"inhibit_rules[{index}]"

    def legacy(key: str, op: str) -> list[Matcher]:
        raw = node.get(key)
        if raw is None:
            return []
        if not isinstance(raw, Mapping):
            err.add(node.line_of(key), f"{key}: expected a mapping of label: value")
            return []
        out = []
        for k, v in raw.items():
            try:
                out.append(Matcher.create(str(k), op, str(v)))
            except MatcherError as exc:
                err.add(line_of(raw, k), f"{key}.{k}: {exc}")
        return out

    target = (
        (_matchers(node, "target_matchers", node, err) or [])
        + legacy("target_match", "=")
        + legacy("target_match_re", "=~")
    )
    source = (
        (_matchers(node, "source_matchers", node, err) or [])
        + legacy("source_match", "=")
        + legacy("source_match_re", "=~")
    )
    sources: list[tuple[Matcher, ...]] = []
    if source:
        sources.append(tuple(source))
    raw_sources = node.get("sources")
    if raw_sources is not None:
        if "source_matchers" in node:
            err.add(
                node.line_of("sources"), "sources: use either source_matchers or sources, not both"
            )
        if not isinstance(raw_sources, list) or not raw_sources:
            err.add(node.line_of("sources"), "sources: expected a non-empty list of matcher lists")
        else:
            for i, item in enumerate(raw_sources):
                try:
                    ms = parse_matchers(item)
                except MatcherError as exc:
                    err.add(line_of(raw_sources, i), f"sources[{i}]: {exc}")
                    continue
                if not ms:
                    err.add(line_of(raw_sources, i), f"sources[{i}]: no matchers")
                sources.append(tuple(ms))
    relation = node.get("ci_relation")
    if relation is not None and relation not in CI_RELATIONS:
        err.add(
            node.line_of("ci_relation"),
            f"ci_relation: expected one of {', '.join(CI_RELATIONS)}, got {relation!r}",
        )
    if not sources:
        err.add(node.line, f"inhibit rule {name!r}: source_matchers (or sources) are required")
    if not target:
        err.add(node.line, f"inhibit rule {name!r}: target_matchers are required")
    equal = node.get("equal", [])
    if not isinstance(equal, list) or not all(
        isinstance(e, str) and LABEL_NAME.match(e) for e in equal
    ):
        err.add(node.line_of("equal"), "equal: expected a list of label names")
        equal = []
    if len(err.items) != before:
        return None
    return InhibitRule(
        name=name, sources=tuple(sources), target=tuple(target), equal=tuple(equal),
        ci_relation=relation,
    )  # fmt: skip


def _parse_matrix(node: Any, key_line: int, err: _Errors) -> PriorityMatrix | None:
    if not isinstance(node, Mapping):
        err.add(key_line, "priority_matrix: expected a mapping of impact: {urgency: priority}")
        return None
    rows = {
        str(k): dict(v) if isinstance(v, Mapping) else v for k, v in node.items() if k != "defaults"
    }
    defaults = node.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        err.add(key_line, "priority_matrix.defaults: expected {impact: ..., urgency: ...}")
        defaults = {}
    # Without defaults, a rule that sets only impact (or urgency) gets the middle level.
    impacts = list(rows)
    first_row = next((r for r in rows.values() if isinstance(r, Mapping)), {})
    urgencies = list(first_row)
    matrix = PriorityMatrix(
        rows,
        default_impact=str(defaults.get("impact", impacts[len(impacts) // 2] if impacts else "")),
        default_urgency=str(
            defaults.get("urgency", urgencies[len(urgencies) // 2] if urgencies else "")
        ),
    )
    problems = matrix.validate()
    for p in problems:
        err.add(key_line, f"priority_matrix: {p}")
    return None if problems else matrix


def _parse_file(path: str, matrix: PriorityMatrix | None) -> tuple[dict[str, Any], list[str]]:
    err = _Errors(path)
    try:
        doc = load_yaml(path)
    except SourceError as exc:
        return {}, [str(exc)]
    if doc is None:
        doc = LineDict()
        doc.line, doc.key_lines = 1, {}
    if not isinstance(doc, LineDict):
        return {}, [
            f"{path}:{line_of(doc) or 1}: expected a mapping with 'rules', 'inhibit_rules', 'silences', 'changes'"
        ]
    _unknown_keys(doc, TOP_KEYS, "the rule file", err)
    out: dict[str, Any] = {
        "rules": [],
        "inhibit_rules": [],
        "silences": [],
        "changes": [],
        "matrix": None,
    }
    if "priority_matrix" in doc:
        out["matrix"] = _parse_matrix(doc["priority_matrix"], doc.line_of("priority_matrix"), err)
        out["matrix_line"] = doc.line_of("priority_matrix")
    effective = out["matrix"] or matrix or PriorityMatrix()
    for key in ("rules", "inhibit_rules", "silences", "changes"):
        if key in doc and not isinstance(doc[key], list | type(None)):
            err.add(doc.line_of(key), f"{key}: expected a list")
    rules_node = doc.get("rules") or []
    names: dict[str, int] = {}
    for i, node in enumerate(rules_node if isinstance(rules_node, list) else []):
        rule = _parse_rule(node, i, rules_node, path, effective, err)
        if rule is None:
            continue
        if isinstance(node, LineDict) and "name" in node:
            if rule.name in names:
                err.add(
                    node.line_of("name"),
                    f"duplicate rule name {rule.name!r} (first at line {names[rule.name]})",
                )
            names[rule.name] = node.line_of("name")
        out["rules"].append(rule)
    inhibit_node = doc.get("inhibit_rules") or []
    for i, node in enumerate(inhibit_node if isinstance(inhibit_node, list) else []):
        inhibit = _parse_inhibit(node, i, inhibit_node, err)
        if inhibit is not None:
            out["inhibit_rules"].append(inhibit)
    silences_node = doc.get("silences") or []
    silence_ids: dict[str, int] = {}
    for i, node in enumerate(silences_node if isinstance(silences_node, list) else []):
        line = line_of(silences_node, i)
        if isinstance(node, LineDict):
            _unknown_keys(
                node,
                ("id", "matchers", "starts_at", "ends_at", "created_by", "comment"),
                f"silences[{i}]",
                err,
            )
        try:
            data = dict(node) if isinstance(node, Mapping) else node
            if isinstance(data, dict):
                data.setdefault("id", f"{path}#{i}")
                data["source"] = path
                data.setdefault("created_by", "rule file")
            s = Silence.from_dict(data)
        except SilenceError as exc:
            field = str(exc).split(":", 1)[0]
            key = {"startsAt": "starts_at", "endsAt": "ends_at", "createdBy": "created_by"}.get(
                field, field.split("[")[0]
            )
            err.add(
                line_of(node, key) if isinstance(node, LineDict) else line, f"silences[{i}]: {exc}"
            )
            continue
        if s.id in silence_ids:  # the later one would replace the earlier one unseen
            err.add(line_of(node, "id") or line,
                    f"silences[{i}]: duplicate silence id {s.id!r} (first at line {silence_ids[s.id]})")  # fmt: skip
            continue
        silence_ids[s.id] = line_of(node, "id") or line
        out["silences"].append(s)
    changes_node = doc.get("changes") or []
    for i, node in enumerate(changes_node if isinstance(changes_node, list) else []):
        line = line_of(changes_node, i)
        if isinstance(node, LineDict):
            _unknown_keys(node, ("id", "ci", "summary", "start", "end"), f"changes[{i}]", err)
        try:
            data = dict(node) if isinstance(node, Mapping) else node
            if isinstance(data, dict):
                data["source"] = path
                if data.get("start") is None:
                    raise ChangeError("start: required")
            c = Change.from_dict(data)
        except ChangeError as exc:
            key = str(exc).split(":", 1)[0]
            err.add(
                line_of(node, key) if isinstance(node, LineDict) else line, f"changes[{i}]: {exc}"
            )
            continue
        out["changes"].append(c)
    return out, err.items


def validate_rules(
    paths: Iterable[str],
    receivers: set[str] | None = None,
    teams: set[str] | None = None,
) -> list[str]:
    """Every error in these rule files as `file:line: message` (empty when valid).

    With `receivers`/`teams` given, a rule naming one not in the set is an error.
    """
    return _load(list(paths), receivers, teams)[1]


def load_rules(
    paths: Iterable[str],
    receivers: set[str] | None = None,
    teams: set[str] | None = None,
) -> RuleSet:
    """Load rule files, in order, into one `RuleSet`; raise `RuleFileError` on any error."""
    ruleset, errors = _load(list(paths), receivers, teams)
    if errors:
        raise RuleFileError(errors)
    return ruleset


def _load(
    paths: list[str], receivers: set[str] | None, teams: set[str] | None
) -> tuple[RuleSet, list[str]]:
    errors: list[str] = []
    parsed: list[tuple[str, dict[str, Any]]] = []
    matrix: PriorityMatrix | None = None
    matrix_file = ""
    # The matrix may be defined once, in any file. Files are parsed against the
    # default matrix, and again against a custom one when a file defines it, so
    # that every file's impact/urgency values are checked against the matrix in force.
    first = [_parse_file(path, None) for path in paths]
    defined = [
        (path, out["matrix"])
        for path, (out, _) in zip(paths, first, strict=True)
        if out.get("matrix")
    ]
    if defined:
        matrix_file, matrix = defined[0]
        first = [_parse_file(path, matrix) for path in paths]
    for path, (out, errs) in zip(paths, first, strict=True):
        if out.get("matrix") is not None and path != matrix_file:
            errs.append(
                f"{path}:{out['matrix_line']}: priority_matrix: already defined in {matrix_file}"
            )
        for rule in out.get("rules", []):
            line = rule.origin.rsplit(":", 1)[1]
            if (
                receivers is not None
                and rule.receiver is not None
                and rule.receiver not in receivers
            ):
                errs.append(
                    f"{path}:{line}: rule {rule.name!r}: unknown receiver {rule.receiver!r}"
                )
            if teams is not None and rule.team is not None and rule.team not in teams:
                errs.append(f"{path}:{line}: rule {rule.name!r}: unknown team {rule.team!r}")
        errors.extend(errs)
        parsed.append((path, out))
    seen_ids: dict[str, str] = {}
    for path, out in parsed:
        for c in out.get("changes", []):
            if c.id in seen_ids:
                errors.append(f"{path}:1: change {c.id!r} already defined in {seen_ids[c.id]}")
            seen_ids[c.id] = path
    seen_ids = {}
    for path, out in parsed:
        for s in out.get("silences", []):
            if s.id in seen_ids and seen_ids[s.id] != path:
                errors.append(f"{path}:1: silence {s.id!r} already defined in {seen_ids[s.id]}")
            seen_ids.setdefault(s.id, path)
    ruleset = RuleSet(
        rules=[r for _, out in parsed for r in out.get("rules", [])],
        inhibit_rules=[r for _, out in parsed for r in out.get("inhibit_rules", [])],
        silences=[s for _, out in parsed for s in out.get("silences", [])],
        changes=[c for _, out in parsed for c in out.get("changes", [])],
        matrix=matrix or PriorityMatrix(),
        files=list(paths),
    )
    return ruleset, errors
