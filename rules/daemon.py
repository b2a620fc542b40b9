"""The rules package inside the daemon: its stages, stores, persistence and reload.

`RulesPart` owns the rule set, the silences and the change records, and gives
the pipeline builder its stages, in this order:

    rules -> silences -> maintenance -> inhibition

It is also a change sink (API and replay `change` events), persists silences
and changes in the daemon's SQLite store, reloads the rule files on SIGHUP and
`POST /-/reload` (a bad file keeps the running rules), and marks incidents
with their `suspected_change`.

Config keys (besides `rules:`, CONTRACT.md section 7):

```yaml
changes:
  cover_dependents: true   # alerts from CIs that depend on a changed CI are expected too
  suspect_window: 2h       # a change that ended this long before an incident is suspected
```
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Counter, Gauge

from daemon.config import Config, ConfigError, Section
from daemon.store import Store, Writes, register_schema
from rules.changes import Change, ChangeStore
from rules.inhibit import InhibitStage
from rules.loader import RuleFileError, load_rules, validate_rules
from rules.ruleset import RuleSet
from rules.silences import Silence, SilenceStore
from rules.stages import MaintenanceStage, RulesStage, SilenceStage

if TYPE_CHECKING:
    from daemon.incidents import IncidentManager
    from daemon.pipeline import AlertEvent, IncidentChange

log = structlog.get_logger("incidentd.rules")

CiAttrs = Callable[[str], Mapping[str, Any] | None]
DependsOn = Callable[[str, str], bool]

SCHEMA = """
CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, ends_at REAL NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (id TEXT PRIMARY KEY, ci TEXT NOT NULL, ends_at REAL, doc TEXT NOT NULL);
"""
register_schema("rules", SCHEMA)


@dataclass(slots=True)
class ChangeSettings:
    cover_dependents: bool = False
    suspect_window: float = 7200.0


def change_settings(config: Config) -> tuple[ChangeSettings, list[str]]:
    """The `changes:` section of the config, with `file:line: message` errors."""
    settings, sec = ChangeSettings(), Section(config, "changes")
    for key, value in sec.items():
        if key == "cover_dependents":
            flag = sec.flag(key, value)
            if flag is not None:
                settings.cover_dependents = flag
        elif key == "suspect_window":
            window = sec.duration(key, value)
            if window is not None:
                settings.suspect_window = window
        else:
            sec.unknown(key)
    return settings, sec.errors


def _names(node: Any) -> set[str] | None:
    """Names from a list of strings, a list of `{name: ...}` or a mapping keyed by name."""
    if node is None:
        return None
    if isinstance(node, Mapping):
        return {str(k) for k in node}
    if isinstance(node, list):
        return {str(i["name"]) if isinstance(i, Mapping) and "name" in i else str(i) for i in node}
    return set()


def known_receivers_and_teams(config: Config) -> tuple[set[str], set[str]]:
    """Receivers and teams the config defines (`receivers:` and `teams:`, the
    notification sections); a rule naming any other is an error."""
    raw = config.raw if isinstance(config.raw, Mapping) else {}
    return _names(raw.get("receivers")) or set(), _names(raw.get("teams")) or set()


def check_rules(config: Config) -> list[str]:
    """check-config: the rule files and the `changes:` section."""
    import os

    receivers, teams = known_receivers_and_teams(config)
    present = [p for p in config.rules if os.path.isfile(p)]  # missing files: reported by the core
    return change_settings(config)[1] + validate_rules(present, receivers, teams)


def cmdb_callables(part: Any) -> tuple[CiAttrs | None, DependsOn | None]:
    """`ci_attrs` and `depends_on` from the CMDB part, whatever shape it has:
    callables of those names, or a `holder.cmdb` graph with `get` and `dependencies`."""
    if part is None:
        return None, None
    ci_attrs = getattr(part, "ci_attrs", None)
    depends_on = getattr(part, "depends_on", None)
    if callable(ci_attrs) and callable(depends_on):
        return ci_attrs, depends_on
    holder = getattr(part, "holder", None)
    if holder is None or not hasattr(holder, "cmdb"):
        return None, None

    def attrs(ci: str) -> Mapping[str, Any] | None:
        item = holder.cmdb.get(ci)
        if item is None:
            return None
        if isinstance(item, Mapping):
            return item
        fields = getattr(item, "__dataclass_fields__", None) or getattr(item, "__dict__", {})
        out = {k: getattr(item, k) for k in fields if k not in ("match", "attrs", "source")}
        extra = getattr(item, "attrs", None)
        if isinstance(extra, Mapping):  # free-form CI attributes: ci.<name> too
            out.update({k: v for k, v in extra.items() if k not in out})
        return out

    def depends(a: str, b: str) -> bool:
        return b in holder.cmdb.dependencies(a)

    return attrs, depends


class _Counted:
    """Counts what the wrapped stage marked (silenced, expected, inhibited)."""

    def __init__(self, stage: Any, counter: Counter | None, reason: str, flag: str) -> None:
        self.stage, self.name = stage, stage.name
        self._count = counter.labels(reason) if counter is not None else None
        self._flag = flag

    def process(self, events: list[AlertEvent], now: float) -> list[AlertEvent]:
        if self._count is None:
            return self.stage.process(events, now)
        flag = self._flag
        before = [getattr(e, flag) for e in events]
        out = self.stage.process(events, now)
        n = sum(1 for e, b in zip(events, before, strict=True) if getattr(e, flag) and not b)
        if n:
            self._count.inc(n)
        return out


class RulesPart:
    """The rules package's share of the daemon (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        store: Store | None = None,
        metrics: Any = None,
        ci_attrs: CiAttrs | None = None,
        depends_on: DependsOn | None = None,
    ) -> None:
        self.config = config
        settings, errors = change_settings(config)
        try:
            ruleset = load_rules(config.rules)
        except RuleFileError as exc:
            errors += exc.errors
            ruleset = RuleSet()
        if errors:
            raise ConfigError(errors)
        self.ruleset = ruleset
        self.store = store
        self.incidents: IncidentManager | None = None
        self._writes: list[tuple[str, tuple[Any, ...]]] = []
        self.silences = SilenceStore(on_change=self._silence_changed)
        self.changes = ChangeStore(
            cover_dependents=settings.cover_dependents,
            suspect_window=settings.suspect_window,
            depends_on=depends_on,
            on_change=self._change_changed,
        )
        if store is not None:
            self._load(store)
        self._apply_file_entries(ruleset)
        self.rules_stage = RulesStage(ruleset, ci_attrs, on_drop=lambda: self.dropped.inc(), held=self._held)
        self.inhibit_stage = InhibitStage(
            ruleset.inhibit_rules, ci_attrs, depends_on, on_new_source=self._stages_changed
        )
        registry = getattr(metrics, "registry", None)
        self.rules_loaded = Gauge(
            "incidentd_rules_loaded", "Rules loaded from the rule files, by kind (rule, inhibit_rule, silence, change).",
            ["kind"], registry=registry)  # fmt: skip
        self.dropped = Counter(
            "incidentd_alerts_dropped_total", "Alerts dropped by a rule.", registry=registry
        )
        self._count_loaded(ruleset)
        self.silence_stage = SilenceStage(self.silences, ci_attrs)
        suppressed = getattr(metrics, "suppressed", None)
        self.stages: list[Any] = [
            self.rules_stage,
            _Counted(self.silence_stage, suppressed, "silenced", "silenced_by"),
            _Counted(MaintenanceStage(self.changes), suppressed, "expected", "expected"),
            _Counted(self.inhibit_stage, suppressed, "inhibited", "inhibited_by"),
        ]
        self.listener = SuspectedChangeListener(self)

    def _held(self, fingerprint: str) -> bool:
        return self.incidents is not None and self.incidents.incident_for(fingerprint) is not None

    def set_cmdb(self, ci_attrs: CiAttrs | None, depends_on: DependsOn | None) -> None:
        """Give the stages the CMDB's callables (when it is built after this part)."""
        self.rules_stage.ci_attrs = ci_attrs
        self.silence_stage.ci_attrs = ci_attrs
        self.inhibit_stage.ci_attrs = ci_attrs
        self.inhibit_stage.depends_on = depends_on
        self.changes.depends_on = depends_on

    def on_incidents_loaded(self) -> None:
        """After a restart, the firing alerts of the incidents loaded inhibit as they did."""
        if self.incidents is None:
            return
        self.inhibit_stage.restore(
            (m.fingerprint, m.labels, m.ci, m.ends_at)
            for inc in self.incidents.incidents.values()
            for m in inc.alerts.values()
            if m.status == "firing"
        )

    # -- reload -------------------------------------------------------------------

    def reload(self, fresh: Config) -> list[str]:
        """Read the fresh config's rule files; on any error keep the running rules and
        return the errors."""
        try:
            ruleset = load_rules(fresh.rules)
        except RuleFileError as exc:
            log.error("rule files rejected; the running rules stay", errors=exc.errors)
            return exc.errors
        self.config.rules = list(fresh.rules)
        self.ruleset = ruleset
        self.rules_stage.ruleset = ruleset
        self.inhibit_stage.set_rules(ruleset.inhibit_rules)
        self._apply_file_entries(ruleset)
        self._stages_changed()
        self._count_loaded(ruleset)
        log.info("rules reloaded", rules=len(ruleset), inhibit_rules=len(ruleset.inhibit_rules),
                 files=len(ruleset.files))  # fmt: skip
        return []

    def _count_loaded(self, ruleset: RuleSet) -> None:
        for kind, n in (("rule", len(ruleset.rules)), ("inhibit_rule", len(ruleset.inhibit_rules)),
                        ("silence", len(ruleset.silences)), ("change", len(ruleset.changes))):  # fmt: skip
            self.rules_loaded.labels(kind).set(n)

    def _apply_file_entries(self, ruleset: RuleSet) -> None:
        """Silences and changes written in rule files, replacing the previous ones."""
        silence_files = {s.source for s in self.silences.list() if s.source != "api"}
        for path in silence_files | set(ruleset.files):
            self.silences.replace_source(path, [s for s in ruleset.silences if s.source == path])
        change_files = {c.source for c in self.changes.list() if c.source not in ("api", "replay")}
        for path in change_files | set(ruleset.files):
            self.changes.replace_source(path, [c for c in ruleset.changes if c.source == path])

    # -- changes from the API and replay ---------------------------------------------

    def add_change(self, change: Mapping[str, Any], now: float) -> None:
        # a replay event (it has a `kind`) or a record posted to the API: never a rule
        # file's, whatever `source` it names, so it is kept in the store
        data = dict(change, source="replay" if "kind" in change else "api")
        try:
            c = Change.from_dict(data, now=now)
        except ValueError as exc:  # validated at the API; replay lines may still be wrong
            log.warning("change record ignored", error=str(exc))
            return
        self.changes.add(c)
        self.listener.recheck(c)

    # -- persistence --------------------------------------------------------------

    def _stages_changed(self) -> None:
        """A silence or change came or went, an inhibiting alert began, or the rules changed:
        firing alerts go through the stages again at their next re-post (see
        `IncidentManager.epoch`)."""
        if self.incidents is not None:
            self.incidents.stages_changed()

    def next_start(self, now: float) -> float | None:
        """When the next silence or change recorded ahead of time starts."""
        starts = [t for t in (self.silences.next_start(now), self.changes.next_start(now)) if t is not None]
        return min(starts, default=None)

    def _silence_changed(self, s: Silence) -> None:
        self._stages_changed()
        if s.source == "api":
            self._writes.append((
                "INSERT INTO silences (id, ends_at, doc) VALUES (?,?,?) ON CONFLICT(id) DO UPDATE"
                " SET ends_at=excluded.ends_at, doc=excluded.doc",
                (s.id, s.ends_at, json.dumps(s.to_dict())),
            ))  # fmt: skip

    def _change_changed(self, c: Change) -> None:
        self._stages_changed()
        if c.source in ("api", "replay"):
            self._writes.append((
                "INSERT INTO changes (id, ci, ends_at, doc) VALUES (?,?,?,?) ON CONFLICT(id) DO UPDATE"
                " SET ci=excluded.ci, ends_at=excluded.ends_at, doc=excluded.doc",
                (c.id, c.ci, c.ends_at, json.dumps(c.to_dict())),
            ))  # fmt: skip

    def drain_writes(self, writes: Writes) -> None:
        for sql, params in self._writes:
            writes.add(sql, params)
        self._writes.clear()

    def _load(self, store: Store) -> None:
        silences = [
            Silence.from_dict(json.loads(doc)) for (doc,) in store.query("SELECT doc FROM silences")
        ]
        self.silences.load(silences)
        changes = [
            Change.from_dict(json.loads(doc)) for (doc,) in store.query("SELECT doc FROM changes")
        ]
        self.changes.load(changes)

    def add_routes(self, app: Any, daemon: Any) -> None:
        from rules.api import add_routes

        add_routes(app, daemon, self)


class SuspectedChangeListener:
    """Sets `suspected_change` ({id, summary, ci}) on incidents whose root cause
    (or, without one, one of whose CIs) had a change shortly before they opened."""

    name = "suspected_change"

    def __init__(self, part: RulesPart) -> None:
        self.part = part

    def on_changes(self, changes: list[IncidentChange], now: float) -> None:
        seen: set[str] = set()
        for ch in changes:
            inc = ch.incident
            if inc.id in seen or not inc.is_open:
                continue
            seen.add(inc.id)
            self._mark(inc)

    def recheck(self, change: Change) -> None:
        """A change recorded late may explain incidents already open."""
        incidents = self.part.incidents
        if incidents is None:
            return
        for inc in incidents.open_incidents():
            if change.ci == inc.root_cause or change.ci in inc.cis:
                self._mark(inc)

    def _mark(self, inc: Any) -> None:
        incidents = self.part.incidents
        store = self.part.changes
        cis = [inc.root_cause] if inc.root_cause else sorted(inc.cis)
        found = None
        for ci in cis:
            c = store.suspected_change_for(ci, inc.opened_at)
            if c is not None and (
                found is None or (c.ends_at or float("inf")) > (found.ends_at or float("inf"))
            ):
                found = c
        value = (
            None if found is None else {"id": found.id, "summary": found.summary, "ci": found.ci}
        )
        changed = "suspected_change" not in inc.extra or inc.extra["suspected_change"] != value
        if changed and incidents is not None:
            incidents.set_extra(inc.id, "suspected_change", value)
