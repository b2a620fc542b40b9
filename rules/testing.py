"""`incidentd test-rules FILE...`: rule unit tests in YAML, in the spirit of `promtool test rules`.

Each test feeds alerts (and silences, changes) at given times through the
daemon's own pipeline on a virtual clock, then checks what happened to each
alert and which alerts share an incident. So one file tests rules,
inhibition, silences, maintenance and grouping together.

```yaml
rule_files: [rules.yaml]          # relative to this file
cmdb: [cmdb.yaml]                 # optional: CMDB files, as in the config
cis:                              # optional: CI attributes without a CMDB file
  orders-db: {criticality: critical, match: {service: orders-db}}
  checkout: {criticality: high, match: {service: checkout}, depends_on: [orders-db]}
config: {changes: {cover_dependents: true}}   # optional: config keys for the run
start: 2026-01-01T00:00:00Z       # optional; the times below are offsets from it
tests:
  - name: database outage pages the data team
    changes: [{id: CHG-1, ci: orders-db, summary: upgrade, start: 0m, end: 30m}]
    silences: [{matchers: ['env="staging"'], start: 0m, end: 1h}]
    alerts:
      - {at: 0m, labels: {alertname: DatabaseDown, service: orders-db, severity: critical}}
      - {at: 1m, labels: {alertname: HighLatency, service: checkout}, ci: checkout}
    expect:
      - alert: {alertname: DatabaseDown}        # input labels (a subset) naming one alert
        at: 0m                                  # optional: that processing (default: last)
        labels: {...}                           # exact, after rules
        annotations: {...}                      # exact
        priority: P1
        team: data
        receiver: data-pager
        runbook: https://...
        dropped: false
        silenced: false
        inhibited: true
        expected: CHG-1                         # or true / false
    incidents:                                  # each entry: alerts that share one incident
      - [{alertname: DatabaseDown}, {alertname: HighLatency}]
      - {alerts: [{alertname: DiskFull}], priority: P3, paging: true, suspected_change: CHG-1}
```

On failure it prints what differs, alert by alert, and exits 1. Errors in the
files themselves (unreadable, not YAML, not of this form) go to stderr, as every
command's errors do; the results and the summary line stay on stdout.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import yaml

from daemon.timefmt import format_rfc3339, parse_duration, parse_rfc3339
from daemon.yamlsrc import LineDict, SourceError, line_of, load_yaml

DEFAULT_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
TOP_KEYS = ("rule_files", "cmdb", "cis", "config", "start", "tests")
TEST_KEYS = ("name", "alerts", "silences", "changes", "expect", "incidents")
ALERT_KEYS = ("at", "labels", "annotations", "ci", "status", "ends_at")
INCIDENT_KEYS = ("alerts", "priority", "paging", "suspected_change", "root_cause")
SILENCE_KEYS = ("id", "matchers", "start", "end", "comment", "createdBy", "created_by")
CHANGE_KEYS = ("id", "ci", "summary", "start", "end")
EXPECT_KEYS = (
    "alert", "at", "labels", "annotations", "priority", "team", "receiver", "runbook",
    "dropped", "silenced", "inhibited", "expected",
)  # fmt: skip


class TestFileError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(slots=True)
class Outcome:
    """One alert after one pass through the stages."""

    at: float
    labels: dict[str, str]
    annotations: dict[str, str]
    dropped: bool
    priority: str | None
    team: str | None
    receiver: str | None
    runbook: str | None
    silenced_by: str | None
    inhibited_by: str | None
    expected: str | None


@dataclass
class _Run:
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)  # fingerprint -> passes
    inputs: list[tuple[float, dict[str, str], str]] = field(default_factory=list)  # at, labels, fp
    incident_of: dict[str, str | None] = field(default_factory=dict)
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)


def _fmt_labels(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _offset(value: Any, where: str, errors: list[str]) -> float:
    try:
        return parse_duration(value if value is not None else 0)
    except ValueError as exc:
        errors.append(f"{where}: {exc}")
        return 0.0


def _unknown(node: Any, allowed: tuple[str, ...], what: str, path: str, errors: list[str]) -> None:
    if isinstance(node, LineDict):
        for key in node:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                more = f"; did you mean {hint[0]!r}?" if hint else ""
                errors.append(f"{path}:{node.line_of(key)}: unknown field {key!r} in {what}{more}")


class _CiMap:
    """CI attributes and dependencies given inline in a test file."""

    def __init__(self, cis: Mapping[str, Any]) -> None:
        self.cis = {str(k): dict(v or {}) for k, v in cis.items()}

    def attrs(self, ci: str) -> Mapping[str, Any] | None:
        item = self.cis.get(ci)
        return None if item is None else {k: v for k, v in item.items() if k != "match"}

    def depends_on(self, a: str, b: str) -> bool:
        seen, todo = set(), [a]
        while todo:
            cur = todo.pop()
            for dep in (self.cis.get(cur) or {}).get("depends_on") or []:
                if dep == b:
                    return True
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return False

    def ci_for(self, labels: Mapping[str, str]) -> str | None:
        best, best_n = None, 0
        for ci, item in self.cis.items():
            match = item.get("match") or {}
            if (
                match
                and all(labels.get(k) == str(v) for k, v in match.items())
                and len(match) > best_n
            ):
                best, best_n = ci, len(match)
        return best


class _Tap:
    """A stage that remembers the events entering the rules, to read them afterwards."""

    name = "test-tap"

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def process(self, events: list[Any], now: float) -> list[Any]:
        self.seen.extend(events)
        return events


class _SetCi:
    """Sets the CI of test alerts that name one (or match an inline CI)."""

    name = "test-ci"

    def __init__(self, explicit: dict[str, str], cimap: _CiMap | None) -> None:
        self.explicit = explicit
        self.cimap = cimap

    def process(self, events: list[Any], now: float) -> list[Any]:
        for ev in events:
            ci = self.explicit.get(ev.fingerprint)
            if ci is None and ev.ci is None and self.cimap is not None:
                ci = self.cimap.ci_for(ev.alert.labels)
            if ci is not None:
                ev.ci = ci
        return events


def _build_config(doc: LineDict, path: str, workdir: str) -> Any:
    from daemon.config import load_config

    base = os.path.dirname(os.path.abspath(path))
    raw: dict[str, Any] = dict(doc.get("config") or {})
    raw["rules"] = [os.path.join(base, p) for p in _paths(doc.get("rule_files"))]
    raw["cmdb"] = [os.path.join(base, p) for p in _paths(doc.get("cmdb"))]
    raw["data_dir"] = workdir
    cfg_path = os.path.join(workdir, "config.yaml")
    with open(cfg_path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(_plain(raw), fh)
    return load_config(cfg_path)


def _relocated(errors: list[str], doc: LineDict, path: str, workdir: str) -> list[str]:
    """Errors in the config `_build_config` wrote, named after the test file's `config:`."""
    written = os.path.join(workdir, "config.yaml") + ":"
    here = f"{path}:{doc.line_of('config')}: config: "
    return [here + e[len(written):].split(": ", 1)[-1] if e.startswith(written) else e for e in errors]


def _paths(value: Any) -> list[str]:
    """A file list, or one file as a string (as the config takes them)."""
    return [value] if isinstance(value, str) else list(value or [])


def _shape_errors(doc: LineDict, path: str) -> list[str]:
    """What in the file is not of the form the module docstring shows, as
    `file:line: message` (before anything runs, so no test fails on a typo's
    Python error)."""
    errors: list[str] = []

    def err(node: Any, key: str | int | None, message: str) -> None:
        errors.append(f"{path}:{line_of(node, key) or line_of(node) or 1}: {message}")

    def mappings(node: Any, key: str, where: str) -> list[Any]:
        items = node.get(key)
        if items is None:
            return []
        if not isinstance(items, list) or not all(isinstance(x, Mapping) for x in items):
            err(node, key, f"{where}: expected a list of mappings")
            return []
        return items

    for key in ("rule_files", "cmdb"):
        value = doc.get(key)
        if value is not None and not isinstance(value, str) and not (
                isinstance(value, list) and all(isinstance(x, str) for x in value)):
            err(doc, key, f"{key}: expected a file path or a list of them")
    cis = doc.get("cis")
    if cis is not None and not (isinstance(cis, Mapping) and all(isinstance(v, Mapping) for v in cis.values())):
        err(doc, "cis", "cis: expected a mapping of CI ids to their attributes")
    elif cis is not None:
        for ci, item in cis.items():
            match, deps = item.get("match"), item.get("depends_on")
            if match is not None and not (isinstance(match, Mapping) and all(
                    isinstance(v, str | int | float | bool) for v in match.values())):
                err(item, "match", f"cis.{ci}.match: expected a mapping of label names to values")
            if deps is not None and not (isinstance(deps, list) and all(isinstance(d, str) for d in deps)):
                err(item, "depends_on", f"cis.{ci}.depends_on: expected a list of CI ids")
            elif deps is not None:
                for d in deps:
                    if d not in cis:
                        err(item, "depends_on", f"cis.{ci}.depends_on: unknown CI {d!r} (not in cis)")
    if doc.get("config") is not None and not isinstance(doc["config"], Mapping):
        err(doc, "config", "config: expected a mapping of config keys")
    for i, test in enumerate(doc["tests"]):
        where = f"tests[{i}]"
        if not isinstance(test, Mapping):
            err(doc["tests"], i, f"{where}: expected a mapping (name, alerts, expect, ...)")
            continue
        for j, silence in enumerate(mappings(test, "silences", f"{where}.silences")):
            _unknown(silence, SILENCE_KEYS, f"{where}.silences[{j}]", path, errors)
        for j, change in enumerate(mappings(test, "changes", f"{where}.changes")):
            _unknown(change, CHANGE_KEYS, f"{where}.changes[{j}]", path, errors)
        for j, alert in enumerate(mappings(test, "alerts", f"{where}.alerts")):
            if not isinstance(alert.get("labels"), Mapping):
                err(alert, "labels", f"{where}.alerts[{j}].labels: expected a mapping of label names to values")
            if alert.get("annotations") is not None and not isinstance(alert["annotations"], Mapping):
                err(alert, "annotations", f"{where}.alerts[{j}].annotations: expected a mapping")
        for j, exp in enumerate(mappings(test, "expect", f"{where}.expect")):
            if not isinstance(exp.get("alert"), Mapping):
                err(exp, "alert", f"{where}.expect[{j}].alert: expected the labels that name one alert")
            for key in ("labels", "annotations"):
                if exp.get(key) is not None and not isinstance(exp[key], Mapping):
                    err(exp, key, f"{where}.expect[{j}].{key}: expected a mapping")
        incidents = test.get("incidents")
        if incidents is not None and not isinstance(incidents, list):
            err(test, "incidents", f"{where}.incidents: expected a list of incidents")
        for j, inc in enumerate(incidents if isinstance(incidents, list) else []):
            if isinstance(inc, Mapping):
                _unknown(inc, INCIDENT_KEYS, f"{where}.incidents[{j}]", path, errors)
            alerts = inc.get("alerts") if isinstance(inc, Mapping) else inc
            if not isinstance(alerts, list) or not all(isinstance(x, Mapping) for x in alerts):
                err(incidents, j, f"{where}.incidents[{j}]: expected a list of alert selectors"
                                  " (or {alerts: [...], ...})")
    return errors


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _run_test(doc: LineDict, test: LineDict, path: str, start: float, workdir: str) -> _Run:
    from daemon.build import build_pipeline
    from daemon.clock import VirtualClock
    from daemon.ingest import PayloadError, parse_alert
    from daemon.metrics import Metrics
    from daemon.store import Store
    from rules.changes import Change, ChangeError
    from rules.silences import Silence, SilenceError

    errors: list[str] = []
    config = _build_config(doc, path, workdir)
    clock = VirtualClock(start)
    store = Store(os.path.join(workdir, f"test-{test.line}.sqlite3"), threaded=False)
    try:
        components = build_pipeline(config, clock, Metrics(), store)
        part = components.parts["rules"]
        cimap = _CiMap(doc["cis"]) if isinstance(doc.get("cis"), Mapping) else None
        if cimap is not None:
            part.set_cmdb(cimap.attrs, cimap.depends_on)
        pipeline = components.pipeline
        explicit: dict[str, str] = {}
        tap = _Tap()
        at_rules = pipeline.stages.index(part.rules_stage)
        pipeline.stages[at_rules:at_rules] = [_SetCi(explicit, cimap), tap]

        for i, raw in enumerate(test.get("silences") or []):
            where = f"{path}:{line_of(test['silences'], i)}"
            try:
                data = dict(raw)
                data["starts_at"] = start + _offset(data.pop("start", 0), where, errors)
                data["ends_at"] = start + _offset(data.pop("end", "100y"), where, errors)
                data.setdefault("id", f"silence-{i + 1}")
                part.silences.add(Silence.from_dict(data, now=start), now=start)
            except (SilenceError, TypeError, ValueError) as exc:
                errors.append(f"{where}: silences[{i}]: {exc}")
        for i, raw in enumerate(test.get("changes") or []):
            where = f"{path}:{line_of(test['changes'], i)}"
            try:
                data = dict(raw)
                data["start"] = start + _offset(data.get("start", 0), where, errors)
                if data.get("end") is not None:
                    data["end"] = start + _offset(data["end"], where, errors)
                part.changes.add(Change.from_dict(data, now=start))
            except (ChangeError, TypeError, ValueError) as exc:
                errors.append(f"{where}: changes[{i}]: {exc}")

        inputs = []
        for i, raw in enumerate(test.get("alerts") or []):
            where = f"{path}:{line_of(test['alerts'], i)}"
            if not isinstance(raw, Mapping):
                errors.append(f"{where}: alerts[{i}]: expected a mapping")
                continue
            _unknown(raw, ALERT_KEYS, f"alerts[{i}]", path, errors)
            at = start + _offset(raw.get("at", 0), where, errors)
            body: dict[str, Any] = {"labels": raw.get("labels"), "annotations": raw.get("annotations") or {},
                                    "status": raw.get("status", "firing"),
                                    "startsAt": format_rfc3339(at)}  # fmt: skip
            if raw.get("ends_at") is not None:
                body["endsAt"] = format_rfc3339(start + _offset(raw["ends_at"], where, errors))
            elif body["status"] == "resolved":
                body["endsAt"] = format_rfc3339(at)
            try:
                alert = parse_alert(body, f"alerts[{i}]", now=at, source="test", status_field=True,
                                    resolve_timeout=config.incidents.resolve_timeout)  # fmt: skip
            except PayloadError as exc:
                errors.append(f"{where}: {exc}")
                continue
            if raw.get("ci") is not None:
                explicit[alert.fingerprint] = str(raw["ci"])
            inputs.append((at, i, alert))
        if errors:
            raise TestFileError(errors)

        run = _Run()
        for at, _, alert in sorted(inputs, key=lambda x: (x[0], x[1])):
            while (due := pipeline.next_deadline()) is not None and due <= at:
                clock.set(due)
                pipeline.tick(clock.now())
            clock.set(at)
            tap.seen.clear()
            pipeline.process_alerts([alert], at)
            run.inputs.append((at, dict(alert.labels), alert.fingerprint))
            passes = run.outcomes.setdefault(alert.fingerprint, [])
            if tap.seen:
                ev = tap.seen[-1]
                passes.append(Outcome(at, dict(ev.alert.labels), dict(ev.alert.annotations), ev.dropped,
                                      ev.priority, ev.team, ev.receiver, ev.runbook,
                                      ev.silenced_by, ev.inhibited_by, ev.expected))  # fmt: skip
            elif passes:  # re-posted while firing: the daemon keeps what it decided
                prev = passes[-1]
                passes.append(
                    Outcome(at, **{k: getattr(prev, k) for k in Outcome.__slots__ if k != "at"})
                )
        incidents = components.incidents
        for _, _, fp in run.inputs:
            inc = incidents.incident_for(fp)
            run.incident_of[fp] = inc.id if inc is not None else None
            if inc is not None:
                run.incidents[inc.id] = {
                    "priority": inc.priority,
                    "paging": inc.paging,
                    "suspected_change": (inc.extra.get("suspected_change") or {}).get("id"),
                    "root_cause": inc.root_cause,
                }  # fmt: skip
        return run
    finally:
        store.close()


def _select(selector: Any, run: _Run, where: str) -> str:
    """The fingerprint of the one input alert whose labels include `selector`."""
    if not isinstance(selector, Mapping) or not selector:
        raise TestFileError([f"{where}: alert: expected a mapping of input labels"])
    fps = {fp for _, labels, fp in run.inputs
           if all(labels.get(str(k)) == str(v) for k, v in selector.items())}  # fmt: skip
    if len(fps) != 1:
        what = "no input alert" if not fps else f"{len(fps)} input alerts"
        raise TestFileError([f"{where}: {what} with labels {_fmt_labels(selector)}"])
    return fps.pop()


def _diff_map(name: str, want: Mapping[str, Any], got: Mapping[str, str]) -> list[str]:
    want = {str(k): str(v) for k, v in want.items()}
    if want == got:
        return []
    out = [f"    {name}:"]
    for k in sorted(set(want) | set(got)):
        if want.get(k) != got.get(k):
            if k in want:
                out.append(f'      - {k}="{want[k]}"   (expected)')
            if k in got:
                out.append(f'      + {k}="{got[k]}"   (got)')
    return out


def _check_alert(exp: LineDict, run: _Run, path: str, start: float) -> list[str]:
    where = f"{path}:{exp.line}"
    fp = _select(exp.get("alert"), run, where)
    passes = run.outcomes.get(fp) or []
    if "at" in exp:
        try:
            at = start + parse_duration(exp["at"])
        except ValueError as exc:
            raise TestFileError([f"{path}:{exp.line_of('at')}: at: {exc}"]) from None
        passes = [p for p in passes if p.at == at]
        if not passes:
            raise TestFileError([f"{where}: the alert is not sent at {exp['at']}"])
    if not passes:
        return ["    the alert never reached the rules (check its labels and times)"]
    got = passes[-1]
    out: list[str] = []
    if "labels" in exp:
        out += _diff_map("labels", exp["labels"], got.labels)
    if "annotations" in exp:
        out += _diff_map("annotations", exp["annotations"], got.annotations)
    for key in ("priority", "team", "receiver", "runbook"):
        if key in exp and exp[key] != getattr(got, key):
            out.append(f"    {key}: expected {exp[key]!r}, got {getattr(got, key)!r}")
    flags = {"dropped": got.dropped, "silenced": got.silenced_by, "inhibited": got.inhibited_by,
             "expected": got.expected}  # fmt: skip
    for key, value in flags.items():
        if key not in exp:
            continue
        want = exp[key]
        ok = bool(value) == want if isinstance(want, bool) else value == want
        if not ok:
            shown = value if value not in (None, False) else "no"
            out.append(f"    {key}: expected {want!r}, got {shown!r}")
    return out


def _check_incidents(test: LineDict, run: _Run, path: str) -> list[str]:
    spec = test.get("incidents")
    if spec is None:
        return []
    out: list[str] = []
    groups: list[tuple[int, list[str], set[str | None]]] = []
    for i, entry in enumerate(spec):
        where = f"{path}:{line_of(spec, i)}"
        selectors = entry.get("alerts") if isinstance(entry, Mapping) else entry
        if not isinstance(selectors, list) or not selectors:
            raise TestFileError([f"{where}: incidents[{i}]: expected a list of alert selectors"])
        fps = [_select(s, run, where) for s in selectors]
        ids = {run.incident_of.get(fp) for fp in fps}
        names = [_fmt_labels(s) for s in selectors]
        if None in ids:
            missing = [
                n for n, fp in zip(names, fps, strict=True) if run.incident_of.get(fp) is None
            ]
            out.append(f"    incidents[{i}]: {', '.join(missing)} opened no incident")
        elif len(ids) > 1:
            got = ", ".join(
                f"{n} in {run.incident_of[fp]}" for n, fp in zip(names, fps, strict=True)
            )
            out.append(f"    incidents[{i}]: expected one incident, got {got}")
        elif isinstance(entry, Mapping):
            inc = run.incidents[next(iter(ids))]  # type: ignore[index]
            for key in ("priority", "paging", "suspected_change", "root_cause"):
                if key in entry and entry[key] != inc[key]:
                    out.append(
                        f"    incidents[{i}]: {key}: expected {entry[key]!r}, got {inc[key]!r}"
                    )
        groups.append((i, names, ids))
    for a in range(len(groups)):
        for b in range(a + 1, len(groups)):
            shared = (groups[a][2] & groups[b][2]) - {None}
            if shared:
                out.append(f"    incidents[{groups[a][0]}] and incidents[{groups[b][0]}]: expected separate"
                           f" incidents, both are in {', '.join(sorted(s for s in shared if s))}")  # fmt: skip
    return out


def run_rule_tests(paths: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run rule test files; print failures as readable diffs and a summary on `out`,
    errors in the files on `err`; return the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    passed = failed = 0
    file_errors = False
    for path in paths:
        try:
            doc = load_yaml(path)
        except SourceError as exc:
            print(exc, file=err)
            file_errors = True
            continue
        errors: list[str] = []
        if not isinstance(doc, LineDict) or not isinstance(doc.get("tests"), list):
            print(f"{path}:{line_of(doc) or 1}: expected a mapping with a 'tests' list", file=err)
            file_errors = True
            continue
        _unknown(doc, TOP_KEYS, "the test file", path, errors)
        start = DEFAULT_START
        if doc.get("start") is not None:
            raw = doc["start"]
            if hasattr(raw, "timestamp"):
                from datetime import UTC

                start = raw.replace(tzinfo=raw.tzinfo or UTC).timestamp()
            else:
                try:
                    start = parse_rfc3339(str(raw)) or DEFAULT_START
                except ValueError as exc:
                    errors.append(f"{path}:{doc.line_of('start')}: start: {exc}")
        errors += _shape_errors(doc, path)
        for test in doc["tests"]:
            _unknown(test, TEST_KEYS, "a test", path, errors)
            expect = test.get("expect") if isinstance(test, Mapping) else None
            for exp in expect if isinstance(expect, list) else []:
                _unknown(exp, EXPECT_KEYS, "expect", path, errors)
        if errors:
            print("\n".join(errors), file=err)
            file_errors = True
            continue
        for test in doc["tests"]:
            name = test.get("name") or f"test at line {test.line}"
            try:
                with tempfile.TemporaryDirectory(prefix="incidentd-test-rules-") as workdir:
                    run = _run_test(doc, test, path, start, workdir)
                problems: list[str] = []
                for exp in test.get("expect") or []:
                    diff = _check_alert(exp, run, path, start)
                    if diff:
                        problems.append(f"  alert {_fmt_labels(exp['alert'])} ({path}:{exp.line}):")
                        problems += diff
                inc = _check_incidents(test, run, path)
                if inc:
                    problems.append(f"  incidents ({path}:{test.line_of('incidents')}):")
                    problems += inc
            except TestFileError as exc:
                print("\n".join(exc.errors), file=err)
                file_errors = True
                continue
            except Exception as exc:  # a config or rule file error surfaces here
                errs = _relocated(getattr(exc, "errors", None) or [str(exc)], doc, path, workdir)
                print("\n".join(errs), file=err)
                file_errors = True
                break
            if problems:
                failed += 1
                print(f"FAILED {path}:{test.line}: {name}", file=out)
                print("\n".join(problems), file=out)
            else:
                passed += 1
    print(
        f"{passed} passed, {failed} failed" + (", errors in test files" if file_errors else ""),
        file=out,
    )
    return 1 if failed or file_errors else 0


def configure_test_rules(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="rule test files (YAML)")


def run_test_rules_command(args: argparse.Namespace) -> int:
    from daemon.logs import quiet_logging

    quiet_logging()
    return run_rule_tests(args.files)
