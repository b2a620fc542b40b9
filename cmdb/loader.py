"""Loading and validating CMDB files (CONTRACT.md section 6 and beyond).

```yaml
cis:
  - id: checkout
    type: service                 # service, host, database, queue, network, ...
    criticality: high             # low | medium | high | critical
    owner: team-shop
    tier: 1
    business_service: false       # true for what customers buy (default: type business_service)
    match: {service: checkout}    # one block: a {label: value} mapping, a selector
                                  # string '{service=~"checkout|co"}' or a list of matcher strings
    matches:                      # or several blocks: any one of them maps an alert here
      - {job: checkout}
      - ['service="checkout"', 'env!="dev"']
    depends_on: [payments, orders-db]
    runs_on: [host-1]
    connects_to: [edge-net]
    attrs: {cost_center: "42"}    # anything else the CMDB holds
relations:                        # relations may also be listed apart (CMDB exports)
  - {from: checkout, to: payments, type: depends_on}
```

Several files merge into one CMDB; a CI id must be unique across them and
relations may point into another file. Every problem is reported as
`file:line: message`, all of them at once.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from cmdb.drift import infer_missing_edges, infer_named_edges
from cmdb.graph import Cmdb
from cmdb.model import CI, CRITICALITIES, RELATIONS, MatchBlock
from daemon import heap
from daemon.yamlsrc import SourceError, line_of, load_yaml
from rules.matchers import Matcher, MatcherError, parse_matchers

_CI_KEYS = {
    "id", "type", "criticality", "owner", "tier", "business_service", "description",
    "match", "matches", "attrs", *RELATIONS,
}
_TOP_KEYS = {"cis", "relations"}
# isinstance() tests, made once: `str | int` written in a test builds the union anew each time
_TEXT = str | int | float
_COLLECTION = Mapping | list


class CmdbError(Exception):
    """A CMDB that cannot be loaded; `errors` holds every `file:line: message`."""

    def __init__(self, errors: list[SourceError]) -> None:
        self.errors = errors
        first = str(errors[0]) if errors else "invalid CMDB"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)


_LAST: tuple[tuple, _Loaded] | None = None


def _stamp(path: str) -> tuple[str, int, int]:
    """What tells whether a file changed since it was read (one `stat`)."""
    st = os.stat(path)
    return path, st.st_mtime_ns, st.st_size


def _load_once(paths: list[str]) -> _Loaded:
    """The files read (`_Loaded`), remembered while they stay the same: check-config and
    start-up (or replay) read the same CMDB, and building a large one takes seconds. A
    Cmdb is never modified after it is built, so sharing it is safe."""
    global _LAST
    try:
        stamp = tuple(map(_stamp, paths))
    except OSError:
        return _Loaded(paths)
    if _LAST is not None and _LAST[0] == stamp:
        return _LAST[1]
    result = _Loaded(paths)
    _LAST = (stamp, result)
    return result


def load_cmdb(paths: Iterable[str]) -> Cmdb:
    """Load and merge CMDB files; raises CmdbError listing every problem."""
    loaded = _load_once(list(paths))
    if loaded.errors:
        raise CmdbError(loaded.errors)
    return loaded.cmdb()


def validate_cmdb(paths: Iterable[str], finish: bool = True) -> list[str]:
    """Every problem in the files as `file:line: message` (empty when valid). With
    `finish`, a valid CMDB is also built whole for the load of the same files that
    follows (the daemon checks a reload in a thread, then takes the CMDB in its event
    loop); without, only what can hold an error is done (`incidentd check-config`)."""
    loaded = _load_once(list(paths))
    if finish and not loaded.errors:
        loaded.cmdb()
    return [str(e) for e in loaded.errors]


def cmdb_warnings(paths: Iterable[str]) -> list[str]:
    """What is valid in the files but likely not meant, as `file:line: warning: ...`."""
    return [str(w) for w in _load_once(list(paths)).warnings]


def load_cmdb_docs(docs: Iterable[tuple[str, Any]], infer_edges: bool = True) -> Cmdb:
    """Build a CMDB from already parsed documents `(name, data)` (tests, generators);
    without `infer_edges`, the graph holds only the dependencies the documents record
    (no `cmdb.drift` inference)."""
    b = _Builder(infer_edges)
    with heap.paused(keep=True):
        for name, data in docs:
            b.add_document(name, data)
        cmdb = b.finish()
    if b.errors:
        raise CmdbError(b.errors)
    return cmdb


class _Loaded:
    """The CMDB files read and checked: every error is known (`errors`); the Cmdb is
    built (its graph, the dependencies inferred missing, the alert index), which no
    error can come from, when it is first wanted."""

    def __init__(self, paths: list[str]) -> None:
        b = self._builder = _Builder()
        with heap.paused(keep=True):  # a CMDB is built once and lives long: see daemon.heap
            for path in paths:
                try:
                    data = load_yaml(path)
                except SourceError as exc:
                    b.errors.append(exc)
                    continue
                b.add_document(path, data)
            b.check_relations()
        self.errors = b.errors
        self.warnings = b.warnings
        self._cmdb: Cmdb | None = None
        self._lock = threading.Lock()

    def cmdb(self) -> Cmdb:
        with self._lock:
            if self._cmdb is None:
                with heap.paused(keep=True):
                    self._cmdb = self._builder.complete()
                del self._builder
            return self._cmdb


def _plain(value: Any, within: tuple[int, ...] = ()) -> Any:
    """`attrs` as the API shows them (JSON): what YAML reads as a date or as a number
    that is not finite (`.nan`) is shown as text; a value that holds itself (through a
    YAML alias) is refused."""
    if isinstance(value, _COLLECTION):
        if id(value) in within:
            raise ValueError("hold themselves (a YAML alias inside its own anchor)")
        inner = (*within, id(value))
        if isinstance(value, Mapping):
            return {str(k): _plain(v, inner) for k, v in value.items()}
        return [_plain(v, inner) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, _TEXT):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class _Builder:
    def __init__(self, infer_edges: bool = True) -> None:
        self.infer_edges = infer_edges
        self.errors: list[SourceError] = []
        self.warnings: list[SourceError] = []
        self._blocks_at: dict[frozenset[Matcher], tuple[str, str, int]] = {}  # block -> (CI, file, line)
        self.cis: dict[str, CI] = {}
        self.edges: list[tuple[str, str, str, str, int]] = []  # a, b, relation, path, line
        self.order = 0
        self.sources: list[str] = []

    def err(self, path: str, line: int, msg: str) -> None:
        self.errors.append(SourceError(path, line, msg))

    def add_document(self, path: str, data: Any) -> None:
        self.sources.append(path)
        if data is None:  # most likely an export cut short: taking it would empty the graph
            self.err(path, 1, "the file is empty (a CMDB without CIs is `cis: []`)")
            return
        if not isinstance(data, Mapping):
            self.err(path, line_of(data) or 1, "a CMDB file must be a mapping with a `cis` list")
            return
        for key in data:
            # `x-...` keys are the file's own (YAML anchors shared by CIs, as in Compose files)
            if key not in _TOP_KEYS and not (isinstance(key, str) and key.startswith("x-")):
                self.err(path, line_of(data, key), f"unknown key {key!r} (expected cis, relations, or x-...)")
        cis = data.get("cis", [])
        if not isinstance(cis, list):
            self.err(path, line_of(data, "cis"), "`cis` must be a list of CIs")
        else:
            for i, item in enumerate(cis):
                self.add_ci(path, item, line_of(cis, i))
        rels = data.get("relations", [])
        if not isinstance(rels, list):
            self.err(path, line_of(data, "relations"), "`relations` must be a list")
        else:
            for i, item in enumerate(rels):
                self.add_relation(path, item, line_of(rels, i))

    def add_ci(self, path: str, item: Any, line: int) -> None:
        if not isinstance(item, Mapping):
            self.err(path, line, "a CI must be a mapping with at least an `id`")
            return
        for key in item:
            if key not in _CI_KEYS:
                self.err(path, line_of(item, key), f"unknown CI key {key!r}")
        cid = item.get("id")
        if not isinstance(cid, str) or not cid:
            self.err(path, line_of(item, "id") if "id" in item else line, "a CI needs a non-empty string `id`")
            return
        if cid in self.cis:
            self.err(path, line_of(item, "id"), f"duplicate CI id {cid!r} (first defined at {self.cis[cid].source})")
            return
        ci = CI(id=cid, source=f"{path}:{line}")

        def text(key: str) -> str | None:
            value = item.get(key)
            if value is None:
                return None
            if not isinstance(value, _TEXT) or isinstance(value, bool):
                self.err(path, line_of(item, key), f"CI {cid!r}: `{key}` must be a string")
                return None
            return str(value)

        ci.type = text("type") or "service"
        ci.owner = text("owner")
        ci.description = text("description") or ""
        crit = text("criticality")
        if crit is not None:
            if crit.lower() not in CRITICALITIES:
                self.err(path, line_of(item, "criticality"),
                         f"CI {cid!r}: criticality must be one of {', '.join(CRITICALITIES)}, got {crit!r}")
            else:
                ci.criticality = crit.lower()
        if "tier" in item and item["tier"] is not None:
            tier = item["tier"]
            if isinstance(tier, bool) or not isinstance(tier, int):
                self.err(path, line_of(item, "tier"), f"CI {cid!r}: `tier` must be an integer")
            else:
                ci.tier = tier
        bs = item.get("business_service")
        if bs is None:
            ci.business_service = ci.type == "business_service"
        elif isinstance(bs, bool):
            ci.business_service = bs
        else:
            self.err(path, line_of(item, "business_service"), f"CI {cid!r}: `business_service` must be true or false")
        attrs = item.get("attrs", {})
        if isinstance(attrs, Mapping):
            try:
                ci.attrs = _plain(attrs)
            except ValueError as exc:
                self.err(path, line_of(item, "attrs"), f"CI {cid!r}: `attrs` {exc}")
        else:
            self.err(path, line_of(item, "attrs"), f"CI {cid!r}: `attrs` must be a mapping")

        for key in ("match", "matches"):
            if key in item:
                for block, bline in self._blocks(path, item, key, cid):
                    self._same_block(block, cid, path, bline)
                    ci.match.append(MatchBlock(cid, tuple(block), self.order))
                    self.order += 1
        for rel in RELATIONS:
            if rel not in item or item[rel] is None:
                continue
            targets = item[rel]
            if isinstance(targets, str):
                targets = [targets]
            if not isinstance(targets, list):
                self.err(path, line_of(item, rel), f"CI {cid!r}: `{rel}` must be a list of CI ids")
                continue
            for j, target in enumerate(targets):
                tline = line_of(targets, j) if hasattr(targets, "item_lines") else line_of(item, rel)
                if not isinstance(target, str) or not target:
                    self.err(path, tline, f"CI {cid!r}: `{rel}` entries must be CI ids")
                    continue
                self.edges.append((cid, target, rel, path, tline))
        self.cis[cid] = ci

    def _same_block(self, block: list[Matcher], cid: str, path: str, line: int) -> None:
        """A warning when another CI has the very same match block: every alert it
        matches goes to the CI defined first, and the other never gets one through it
        (often two records of one thing in an export)."""
        first_ci, first_path, first_line = self._blocks_at.setdefault(frozenset(block), (cid, path, line))
        if first_ci != cid:
            self.warnings.append(SourceError(
                path, line, f"warning: CI {cid!r} has the same match block as CI {first_ci!r} "
                            f"({first_path}:{first_line}): the alerts it matches go to {first_ci!r}"))

    def _blocks(self, path: str, item: Mapping, key: str, cid: str) -> list[tuple[list[Matcher], int]]:
        spec = item[key]
        line = line_of(item, key)
        # `match` is one block unless it is a list of blocks; `matches` is always a list of blocks.
        if key == "match" and not (isinstance(spec, list) and spec and all(isinstance(s, _COLLECTION) for s in spec)):
            raw = [(spec, line)]
        elif isinstance(spec, list):
            raw = [(s, line_of(spec, i)) for i, s in enumerate(spec)]
        else:
            self.err(path, line, f"CI {cid!r}: `{key}` must be a list of match blocks")
            return []
        out = []
        for block, bline in raw:
            try:
                matchers = parse_matchers(block)
            except MatcherError as exc:
                self.err(path, bline, f"CI {cid!r}: bad matcher: {exc}")
                continue
            if not matchers:
                self.err(path, bline, f"CI {cid!r}: an empty match block would match every alert")
                continue
            if not any(m.matches_value("") is False for m in matchers):
                self.err(path, bline, f"CI {cid!r}: match block {block!r} also matches alerts without any of its labels")
                continue
            out.append((matchers, bline))
        return out

    def add_relation(self, path: str, item: Any, line: int) -> None:
        if not isinstance(item, Mapping):
            self.err(path, line, "a relation must be a mapping {from, to, type}")
            return
        src, dst, rel = item.get("from"), item.get("to"), item.get("type", "depends_on")
        for key in item:
            if key not in ("from", "to", "type"):
                self.err(path, line_of(item, key), f"unknown relation key {key!r}")
        if not isinstance(src, str) or not isinstance(dst, str) or not src or not dst:
            self.err(path, line, "a relation needs string `from` and `to` CI ids")
            return
        if rel not in RELATIONS:
            self.err(path, line_of(item, "type"), f"unknown relation type {rel!r} (use {', '.join(RELATIONS)})")
            return
        self.edges.append((src, dst, rel, path, line))

    def finish(self) -> Cmdb:
        self.check_relations()
        return self.complete()

    def check_relations(self) -> None:
        """Keeps the relations between known CIs in `relations`; any other is an error."""
        self.relations: list[tuple[str, str, str]] = []
        for a, b, rel, path, line in self.edges:
            if a not in self.cis:
                self.err(path, line, f"relation from unknown CI {a!r}")
                continue
            if b not in self.cis:
                self.err(path, line, f"CI {a!r}: `{rel}` refers to unknown CI {b!r}")
                continue
            if a == b:
                self.err(path, line, f"CI {a!r} cannot depend on itself")
                continue
            self.relations.append((a, b, rel))

    def complete(self) -> Cmdb:
        """The Cmdb, once the relations are checked: the graph (the first relation given
        between two CIs is theirs), the dependencies inferred missing, the alert index."""
        # networkx is imported here, where a graph is first made, not with this module:
        # it takes 50 ms, and `incidentd check-config` makes none
        import networkx as nx

        g: nx.DiGraph[str] = nx.DiGraph()
        for cid, ci in self.cis.items():
            g.add_node(cid, type=ci.type)
        for a, b, rel in self.relations:
            if not g.has_edge(a, b):
                g.add_edge(a, b, relation=rel)
        if self.infer_edges:
            infer_missing_edges(self.cis, g)
            infer_named_edges(self.cis, g)  # after: an edge other deployments record comes first
        return Cmdb(self.cis, g, self.sources)
