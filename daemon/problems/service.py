"""The problems package inside the daemon: it listens to incident changes, clusters
resolved incidents into problems (`correlation.problems`), links opening incidents
to known problems at once, keeps the records in the store and serves the people's
edits (status, known-error fields, merge, split).

Config (all optional):

```yaml
problems:
  min_incidents: 2          # a problem is created at the 2nd similar incident
  same_ci_threshold: 0.4    # similarity for incidents with the same root-cause CI
  cross_ci: true            # also group the same pattern on CIs of one role
  cross_ci_threshold: 0.9   # ... only when this similar
  candidate_window: 30d     # how long an unmatched incident waits for a recurrence
```
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping
from itertools import chain
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Counter, Gauge

from correlation.problems import ClusterSettings, ProblemClusterer, Profile, Scan, build_profile
from daemon.config import Config, Section
from daemon.model import MAX_TEXT
from daemon.problems.model import (
    KNOWN_ERROR,
    KNOWN_ERROR_FIELDS,
    OPEN,
    RESOLVED,
    STATUSES,
    Link,
    Problem,
    known_problem_note,
    read_problems,
)
from daemon.store import Store, Writes, dumps

if TYPE_CHECKING:
    from daemon.incidents import Incident, IncidentManager
    from daemon.pipeline import IncidentChange

log = structlog.get_logger("incidentd.problems")


_OPEN_KINDS = {"opened", "alert_added", "root_cause_changed", "reopened", "merged"}
TAIL = 16  # the links at the end of a part looked at first when one is taken out


class ProblemError(Exception):
    """A request about problems that cannot be done (unknown id, bad field, wrong state)."""

    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


def _shown(p: Problem) -> tuple[Any, ...]:
    """The parts of a problem's note that every linked incident shows alike."""
    return (p.title or p.default_title(), p.status, p.cause, p.workaround, p.fix_ref)


def problem_settings(config: Config) -> tuple[ClusterSettings, list[str]]:
    """The `problems:` section, with `file:line: message` errors."""
    s, sec = ClusterSettings(), Section(config, "problems")
    for key, value in sec.items():
        if key == "min_incidents":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                sec.error(sec.raw, key, "problems.min_incidents must be an integer >= 1")
            else:
                s.min_incidents = value
        elif key in ("same_ci_threshold", "cross_ci_threshold", "role_similarity"):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                sec.error(sec.raw, key, f"problems.{key} must be a number in (0, 1]")
            else:
                setattr(s, key, float(value))
        elif key == "cross_ci":
            flag = sec.flag(key, value)
            if flag is not None:
                s.cross_ci = flag
        elif key == "candidate_window":
            window = sec.duration(key, value)
            if window is not None:
                s.candidate_window = window
        else:
            sec.unknown(key)
    return s, sec.errors


def check_problems(config: Config) -> list[str]:
    return problem_settings(config)[1]


_UNKNOWN = object()


class ProblemsPart:
    """Problem management's share of the daemon; an incident listener and a component."""

    name = "problems"

    def __init__(
        self,
        config: Config,
        incidents: IncidentManager,
        store: Store | None = None,
        metrics: Any = None,
        cmdb: Any = None,
    ) -> None:
        settings, errors = problem_settings(config)
        if errors:
            from daemon.config import ConfigError

            raise ConfigError(errors)
        self.incidents = incidents
        self.store = store
        self.cmdb_part = cmdb
        # the roles of CIs, per CMDB (see `key`)
        self._roles_of: weakref.ref[Any] | None = None
        self._roles_version = 0
        self._keys: dict[str, tuple[Any, ...] | None] = {}
        self._peers: dict[tuple[Any, ...], frozenset[tuple[Any, ...]]] = {}
        self._nbrs: dict[str, frozenset[str]] = {}
        self._classes_near: dict[str, set[tuple[Any, ...]]] = {}  # see `_near`
        kinds = getattr(incidents.correlator, "kinds", None)
        self._kind_weight = kinds.weight if kinds is not None else None
        self.clusterer = ProblemClusterer(settings, roles=self if cmdb else None)
        self.problems: dict[str, Problem] = {}
        self.by_incident: dict[str, str] = {}  # incident id -> problem id
        self._next_seq = 1
        self._dirty: set[str] = set()
        self._link_writes: dict[str, str | None] = {}  # incident id -> problem whose link to write (None: none)
        self._next_pos = 1  # the next `Link.pos`
        self._touched: dict[str, str | None] = {}  # incident id -> problem id to write on it
        self._looked: dict[str, tuple[str, dict[str, float]]] = {}  # open incident -> profile last matched
        self._scans: dict[str, Scan] = {}  # see `build_profile`
        self._shown: dict[str, tuple[Any, ...]] = {}  # problem id -> its note as last written on its links
        self._candidate_writes: dict[str, Profile | None] = {}
        self._now = 0.0
        registry = getattr(metrics, "registry", None)
        self.m_problems = Gauge(
            "incidentd_problems", "Problem records, by status.", ["status"], registry=registry
        )
        self.m_linked = Counter(
            "incidentd_problem_incidents_linked_total",
            "Incidents linked to a problem, by when (open: matched a known problem while open; "
            "resolve: clustered when resolved; person).",
            ["at"],
            registry=registry,
        )
        self.m_open_known = Gauge(
            "incidentd_open_incidents_with_known_problem",
            "Open incidents linked to a problem that has a known-error record (cause or workaround).",
            registry=registry,
        )
        for st in STATUSES:
            self.m_problems.labels(st)
        for at in ("open", "resolve", "person"):
            self.m_linked.labels(at)
        if store is not None:
            self._load(store)
        self._count()

    def add_routes(self, app: Any, daemon: Any) -> None:
        from daemon.problems.api import add_routes

        add_routes(app, daemon)

    # -- CMDB ---------------------------------------------------------------------------

    def _cmdb(self) -> Any:
        holder = getattr(self.cmdb_part, "holder", None)
        return getattr(holder, "cmdb", None)

    def _ci_type(self, ci: str) -> str | None:
        cmdb = self._cmdb()
        item = cmdb.get(ci) if cmdb is not None else None
        return getattr(item, "type", None)

    # -- roles (the clusterer's `Roles`) -------------------------------------------------

    @property
    def version(self) -> int:
        """Moves with each CMDB the roles are worked out for."""
        self._roles_cmdb()
        return self._roles_version

    def _roles_cmdb(self) -> Any:
        """The CMDB, forgetting what was worked out for the one before (a reload)."""
        cmdb = self._cmdb()
        if cmdb is not None and (self._roles_of is None or self._roles_of() is not cmdb):
            # (a weak reference: the replaced CMDB is not kept alive)
            self._roles_of, self._keys, self._peers, self._nbrs = weakref.ref(cmdb), {}, {}, {}
            self._classes_near = {}
            self._roles_version += 1
        return cmdb

    def key(self, ci: str) -> tuple[Any, ...] | None:
        """The class of CIs interchangeable with `ci`'s way: those of its type and `role`
        attribute when the CMDB gives one, else those of its type without one and with
        the very same neighbours in the dependency graph (a fleet's hosts of one pool).
        None for a CI the CMDB does not have."""
        cmdb = self._roles_cmdb()
        if cmdb is None:
            return None
        got: Any = self._keys.get(ci, _UNKNOWN)
        if got is _UNKNOWN:
            item = cmdb.get(ci)
            role = item.attrs.get("role") if item is not None else None
            got = None if item is None else ("role", item.type, role) if role is not None \
                else ("like", item.type, self._neighbours(cmdb, ci))
            self._keys[ci] = got
        return got

    def peers(self, key: Any) -> frozenset[Any]:
        """The classes whose CIs are interchangeable with those of class `key`: its own for
        a `role` attribute; else the classes of its type without a role whose neighbours
        overlap its own by `role_similarity` (Jaccard), structurally equivalent (Lorrain
        and White): of one type, with nearly the same neighbours, both what they serve
        and what they need, as the hosts of one pool running the same workloads. Worked
        out once per class (and again after a reload)."""
        cmdb = self._roles_cmdb()
        got = self._peers.get(key)
        if got is None:
            got = self._peers[key] = frozenset((key,)) if key[0] == "role" \
                else self._structural_peers(cmdb, key[1], key[2])
        return got

    def _neighbours(self, cmdb: Any, ci: str) -> frozenset[str]:
        got = self._nbrs.get(ci)
        if got is None:
            got = self._nbrs[ci] = frozenset((*cmdb.dependents_of(ci), *cmdb.depends_on(ci)))
        return got

    def _near(self, cmdb: Any, n: str) -> set[tuple[Any, ...]]:
        """The classes of `n`'s neighbours without a role attribute."""
        got = self._classes_near.get(n)
        if got is None:
            got = self._classes_near[n] = {k for b in self._neighbours(cmdb, n) if (k := self.key(b)) and k[0] == "like"}
        return got

    def _structural_peers(self, cmdb: Any, ci_type: str, na: frozenset[str]) -> frozenset[tuple[Any, ...]]:
        """The classes of type `ci_type` without a role whose neighbours overlap `na` by
        `role_similarity`, found as a set-similarity join finds them (prefix filtering):
        the index is at most the share of `na` that the other class has too (those are
        its neighbours, so the union is no smaller than `na`), so a peer has at least
        `least` of them, and then one of any `len(na) - least + 1` of them. Only the
        classes next to those (the ones with the fewest neighbours) are compared."""
        size = len(na)
        need = self.clusterer.settings.role_similarity
        # the fewest shared neighbours that pass, rounded as the test rounds
        least = next((c for c in range(1, size + 1) if c / size >= need), None)
        if least is None:
            return frozenset()
        prefix = sorted(na, key=lambda n: len(self._neighbours(cmdb, n)))[: size - least + 1]
        found = set()
        for k in set(chain.from_iterable(self._near(cmdb, n) for n in prefix)):
            if k[1] != ci_type:
                continue
            nb = k[2]
            common = len(na & nb)
            if common / (size + len(nb) - common) >= need:
                found.add(k)
        return frozenset(found)

    # -- loading --------------------------------------------------------------------------

    def _load(self, store: Store) -> None:
        problems, embedded = read_problems(store)
        for p in problems:
            self._next_seq = max(self._next_seq, p.seq + 1)
            self.problems[p.id] = p
            for link in p.links.values():
                self._next_pos = max(self._next_pos, link.pos + 1)
            if p.merged_into:
                continue
            for iid in p.links:
                self.by_incident[iid] = p.id
            self.clusterer.add_cluster(p.id, p.part_profiles())
        for p in embedded:  # written as rows, and the document without them, at the next commit
            self._links_moved(p)
            self._dirty.add(p.id)
        for (doc,) in store.query("SELECT doc FROM problem_candidates ORDER BY resolved_at"):
            prof = Profile.from_dict(json.loads(doc))
            if prof.incident_id not in self.by_incident:
                self.clusterer.add_candidate(prof)

    # -- listening ------------------------------------------------------------------------

    def on_changes(self, changes: list[IncidentChange], now: float) -> None:
        self._now = now
        seen: dict[str, IncidentChange] = {}
        for ch in changes:
            if ch.kind == "merged":
                self._forget(str(ch.detail.get("merged", "")), now)
            if ch.kind in _OPEN_KINDS or ch.kind == "resolved":
                seen[ch.incident.id] = ch  # the last change of each incident decides
        for ch in seen.values():
            inc = ch.incident
            if inc.state == "merged":
                continue
            if inc.is_open:
                if ch.kind in _OPEN_KINDS:
                    self._link_open(inc, now)
            elif inc.state == "resolved":
                self._on_resolved(inc, now)

    def _profile(self, inc: Incident) -> Profile:
        return build_profile(inc, self._ci_type, self._kind_weight, self._scans)

    def _link_open(self, inc: Incident, now: float) -> None:
        """Link an open incident to the known problem it matches, or drop a link made
        on an earlier, thinner picture of it."""
        current = self.by_incident.get(inc.id)
        if current is not None and self.problems[current].links[inc.id].how != "open":
            return  # a person's (or an earlier resolve's) link stands
        prof = self._profile(inc)
        looked = (prof.root, prof.tokens)
        if self._looked.get(inc.id) == looked:
            return  # the same picture as last time: the problems it resembles are known
        self._looked[inc.id] = looked
        match = self.clusterer.best_cluster(prof)
        target = match.cluster_id if match else None
        if target == current:
            return
        if current is not None:
            self._unlink(inc.id, now)
        if target is not None:
            self._link(self.problems[target], inc, "open", None, now)
            self.m_linked.labels("open").inc()
            log.info(
                "incident matches a known problem",
                incident_id=inc.id,
                problem_id=target,
                reason=match.reason if match else "",
            )

    def _on_resolved(self, inc: Incident, now: float) -> None:
        self._looked.pop(inc.id, None)
        current = self.by_incident.get(inc.id)
        prof = self._profile(inc)
        # the scan holds the incident, and with it every alert and hypothesis: a resolved
        # incident is profiled once (should it reopen, it is scanned afresh)
        self._scans.pop(inc.id, None)
        self.clusterer.idf.add(prof)
        if current is not None:
            link = self.problems[current].links[inc.id]
            if link.how == "person":
                self._set_profile(self.problems[current], inc, prof, now)
                return
            # re-decided on the full picture; the problem it leaves is titled once the
            # incident has its place (most often it is linked to the same one again)
            left = self._unlink(inc.id, now, retitle=False)
        else:
            left = None
        placed = self._place_resolved(inc, prof, now)
        if left is not None and left is not placed:
            left.retitle()

    def _place_resolved(self, inc: Incident, prof: Profile, now: float) -> Problem | None:
        """Link a resolved incident to the problem it belongs to (a new one when it recurs
        with candidates), or keep it as a candidate; the problem it is linked to, or None."""
        self.clusterer.remove_incident(inc.id)
        self.clusterer.expire(now)
        match = self.clusterer.best_cluster(prof)
        if match is not None and match.cluster_id is not None:
            p = self.problems[match.cluster_id]
            self._link(p, inc, "resolve", prof, now)
            self._reopen_if_resolved(p, inc.id, inc.opened_at, now)
            self.m_linked.labels("resolve").inc()
            return p
        rec = self.clusterer.recurrence(prof)
        if rec is None:
            self.clusterer.add_candidate(prof)
            self._candidate_writes[inc.id] = prof
            return None
        p = self._create(now)
        for cand in rec.with_candidates:
            self.clusterer.drop_candidate(cand.incident_id)
            self._candidate_writes[cand.incident_id] = None
            link = Link(
                cand.incident_id, cand.opened_at, cand.resolved_at, cand.ci, "resolve", cand
            )
            self._attach(p, link)
            self.m_linked.labels("resolve").inc()
        self._link(p, inc, "resolve", prof, now)
        self.m_linked.labels("resolve").inc()
        log.info("problem created", problem_id=p.id, incidents=list(p.links), reason=rec.reason)
        return p

    # -- bookkeeping ----------------------------------------------------------------------

    def _create(self, now: float, created_by: str = "incidentd") -> Problem:
        seq = self._next_seq
        self._next_seq += 1
        p = Problem(
            id=f"PRB-{seq:06d}", seq=seq, created_at=now, updated_at=now, created_by=created_by
        )
        p.parts = [[]]
        self.problems[p.id] = p
        self.clusterer.add_cluster(p.id, [])
        self._dirty.add(p.id)
        return p

    def _attach(self, p: Problem, link: Link, part: int = 0) -> None:
        replaced = link.incident_id in p.links
        p.put_link(link)
        if not p.parts:
            p.parts = [[]]
        # (a part holds only linked incidents: a new link is in none)
        appended = not replaced or not any(link.incident_id in prt for prt in p.parts)
        if appended:
            part = min(part, len(p.parts) - 1)
            self._append(p, part, link)
        self._link_writes[link.incident_id] = p.id
        self.by_incident[link.incident_id] = p.id
        p.updated_at = max(p.updated_at, self._now)
        p.retitle()
        self._dirty.add(p.id)
        if replaced or not appended:
            self._sync_cluster(p)
        elif link.profile is not None and not self.clusterer.append(p.id, part, link.profile, len(p.parts)):
            self._sync_cluster(p)
        self._touch(link.incident_id, p.id)

    def _link(self, p: Problem, inc: Incident, how: str, prof: Profile | None, now: float) -> None:
        # a merged problem: join the part it resembles
        closest = self._closest_part(p, prof) if len(p.parts) > 1 else None
        part = closest if closest is not None else 0
        root = inc.root_cause or (prof.ci if prof is not None else None)
        self._attach(p, Link(inc.id, inc.opened_at, inc.resolved_at, root, how, prof), part)

    def _set_profile(self, p: Problem, inc: Incident, prof: Profile, now: float) -> None:
        link = p.links[inc.id]
        if link.profile is None:  # linked by a person while open: now it can go to its part
            self._take_out(p, inc.id)
            self._append(p, self._part_for(p, prof), link)
            self._drop_empty_parts(p)
        link.profile, link.resolved_at = prof, inc.resolved_at
        p.set_root(link, inc.root_cause or prof.ci)
        self._link_writes[inc.id] = p.id
        p.updated_at = now
        p.retitle()
        self._dirty.add(p.id)
        self._sync_cluster(p)

    def _unlink(self, incident_id: str, now: float, retitle: bool = True) -> Problem | None:
        """Take the incident out of its problem; returns that problem. `retitle=False`:
        the caller retitles it (see `_on_resolved`)."""
        pid = self.by_incident.pop(incident_id, None)
        if pid is None:
            return None
        p = self.problems[pid]
        link = p.pop_link(incident_id)
        self._take_out(p, incident_id)
        self._drop_empty_parts(p)
        self._link_writes[incident_id] = None
        p.updated_at = now
        if retitle:
            p.retitle()
        self._dirty.add(pid)
        if link is None or link.profile is not None:
            self._sync_cluster(p)  # a link without a profile (an open incident's) is not in it
        self._touch(incident_id, None)
        return p

    def _forget(self, incident_id: str, now: float) -> None:
        """An incident merged into another one is no occurrence of its own."""
        if not incident_id:
            return
        self._looked.pop(incident_id, None)
        self._scans.pop(incident_id, None)
        self._unlink(incident_id, now)
        self.clusterer.remove_incident(incident_id)
        self._candidate_writes[incident_id] = None

    def _sync_cluster(self, p: Problem) -> None:
        if p.merged_into:
            self.clusterer.clusters.pop(p.id, None)
            return
        self.clusterer.clusters.pop(p.id, None)
        self.clusterer.add_cluster(p.id, p.part_profiles())

    def _append(self, p: Problem, part: int, link: Link) -> None:
        """Put a link at the end of part `part` of `p`."""
        p.parts[part].append(link.incident_id)
        link.pos = self._next_pos
        self._next_pos += 1

    @staticmethod
    def _take_out(p: Problem, incident_id: str) -> None:
        # most often one of the last links of its part (an incident linked while open,
        # now resolved and linked again): looked for from the end of each part first,
        # not through the whole history of a long-lived problem
        for prt in p.parts:
            for i in range(len(prt) - 1, max(len(prt) - 1 - TAIL, -1), -1):
                if prt[i] == incident_id:
                    del prt[i]
                    return
        for prt in p.parts:
            if incident_id in prt:
                prt.remove(incident_id)
                return

    def _drop_empty_parts(self, p: Problem) -> None:
        """Parts left empty go (a problem keeps one part even when empty); the parts
        after them move up, and so do their links' rows."""
        if len(p.parts) > 1 and not all(p.parts):
            p.parts = [prt for prt in p.parts if prt] or [[]]
            self._links_moved(p)
        elif not p.parts:
            p.parts = [[]]

    def _links_moved(self, p: Problem) -> None:
        """Every link of `p` is to be written again (its parts were rearranged)."""
        for iid in p.links:
            self._link_writes[iid] = p.id

    def _reopen_if_resolved(self, p: Problem, incident_id: str, opened_at: float, now: float) -> None:
        """A problem recurs after it was resolved when an incident of it began after that
        (one that was already open when a person resolved it is not a recurrence)."""
        if p.status == RESOLVED and (p.resolved_at is None or opened_at > p.resolved_at):
            p.status = KNOWN_ERROR if (p.cause or p.workaround) else OPEN
            p.resolved_at = None
            p.history.append(
                {
                    "at": now,
                    "actor": "incidentd",
                    "action": "reopened",
                    "text": f"recurred in {incident_id} after it was resolved",
                }
            )
            self._dirty.add(p.id)

    def _touch(self, incident_id: str, problem_id: str | None) -> None:
        """Write the link on the incident: through the manager while it holds the
        incident, and in the store in any case (an incident linked long after it
        resolved is no longer in memory)."""
        self.incidents.set_problem_id(incident_id, problem_id)
        self._show_note(incident_id, self.problems.get(problem_id) if problem_id else None)
        self._touched[incident_id] = problem_id

    def _show_note(self, incident_id: str, problem: Problem | None) -> dict[str, Any] | None:
        """The known-problem note of `problem` (None without one), shown on the incident
        while the manager holds it: notifications read it there."""
        note = known_problem_note(problem) if problem is not None else None
        live = self.incidents.get(incident_id)
        if live is not None:
            if note is None:
                live.extra.pop("known_problem", None)
                live.extra.pop("workaround", None)
            else:
                live.extra["known_problem"] = note
                live.extra["workaround"] = note["workaround"]
        return note

    def on_incidents_loaded(self) -> None:
        """The open incidents are back after a restart: count those with a known problem."""
        self._count()

    def _count(self) -> None:
        counts = dict.fromkeys(STATUSES, 0)
        for p in self.problems.values():
            if not p.merged_into and p.links:
                counts[p.status] += 1
        for st, n in counts.items():
            self.m_problems.labels(st).set(n)
        known = 0
        for inc in self.incidents.open_incidents():
            pid = self.by_incident.get(inc.id)
            if pid and (self.problems[pid].cause or self.problems[pid].workaround):
                known += 1
        self.m_open_known.set(known)

    # -- persistence ------------------------------------------------------------------------

    def drain_writes(self, writes: Writes) -> None:
        for pid in sorted(self._dirty):
            p = self.problems[pid]
            writes.add(
                "INSERT INTO problems (id, seq, status, updated_at, doc) VALUES (?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET status=excluded.status,"
                " updated_at=excluded.updated_at, doc=excluded.doc",
                (
                    p.id,
                    p.seq,
                    "merged" if p.merged_into else p.status,
                    p.updated_at,
                    dumps(p.to_doc()),
                ),
            )
            # keep the note (title, status, cause, workaround) on linked incidents
            # current; a new link alone changes only the count, written on the new one
            shown = _shown(p)
            if self._shown.get(pid) != shown:
                self._shown[pid] = shown
                for iid in p.links:
                    self._touched.setdefault(iid, pid)
        self._write_links(writes)
        for iid, prof in sorted(self._candidate_writes.items()):
            if prof is None:
                writes.add("DELETE FROM problem_candidates WHERE incident_id=?", (iid,))
            else:
                writes.add(
                    "INSERT INTO problem_candidates (incident_id, resolved_at, doc) VALUES (?,?,?)"
                    " ON CONFLICT(incident_id) DO UPDATE SET resolved_at=excluded.resolved_at,"
                    " doc=excluded.doc",
                    (iid, prof.resolved_at, dumps(prof.to_dict())),
                )
        for iid, problem_id in sorted(self._touched.items()):
            known = self._show_note(iid, self.problems.get(problem_id) if problem_id else None)
            writes.add(
                "UPDATE incidents SET doc=json_set(doc, '$.problem_id', ?,"
                " '$.extra.known_problem', json(?), '$.extra.workaround', ?) WHERE id=?",
                (problem_id, dumps(known) if known is not None else None,
                 known["workaround"] if known is not None else None, iid),
            )
        self._dirty.clear()
        self._link_writes.clear()
        self._candidate_writes.clear()
        self._touched.clear()
        self._count()  # gauges: once per commit, not per alert

    def _write_links(self, writes: Writes) -> None:
        """The links added, changed, moved or taken away since the last commit."""
        parts: dict[str, dict[str, int]] = {}  # problem -> incident -> its part, for those of several parts
        for iid, pid in sorted(self._link_writes.items()):
            p = self.problems.get(pid) if pid else None
            link = p.links.get(iid) if p is not None else None
            if p is None or link is None or pid is None:
                writes.add("DELETE FROM problem_links WHERE incident_id=?", (iid,))
                continue
            if len(p.parts) == 1:
                part = 0
            else:
                if pid not in parts:
                    parts[pid] = {i: k for k, prt in enumerate(p.parts) for i in prt}
                part = parts[pid].get(iid, 0)
            writes.add(
                "INSERT INTO problem_links (incident_id, problem_id, part, pos, opened_at, doc)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT(incident_id) DO UPDATE SET"
                " problem_id=excluded.problem_id, part=excluded.part, pos=excluded.pos,"
                " opened_at=excluded.opened_at, doc=excluded.doc",
                (iid, pid, part, link.pos, link.opened_at, dumps(link.to_dict())),
            )

    # -- people's edits ---------------------------------------------------------------------

    def get(self, problem_id: str) -> Problem:
        p = self.problems.get(problem_id)
        if p is None:
            raise ProblemError(404, "no such problem", problem_id)
        if p.merged_into:
            raise ProblemError(
                409,
                f"problem {problem_id} was merged into {p.merged_into}",
                {"merged_into": p.merged_into},
            )
        return p

    def listing(self, status: str | None = None) -> list[Problem]:
        out = [p for p in self.problems.values() if not p.merged_into and p.links]
        if status:
            out = [p for p in out if p.status == status]
        return sorted(out, key=lambda p: p.seq)

    def update(self, problem_id: str, fields: Mapping[str, Any], actor: str, now: float) -> Problem:
        """PATCH: status, title and the known-error fields."""
        p = self.get(problem_id)
        allowed = {"status", "title", *KNOWN_ERROR_FIELDS}
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise ProblemError(
                400,
                "invalid body",
                f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}",
            )
        for key, value in fields.items():
            if not isinstance(value, str):
                raise ProblemError(400, "invalid body", f"{key}: expected a string")
            if len(value) > MAX_TEXT:
                raise ProblemError(400, "invalid body", f"{key}: at most {MAX_TEXT} characters")
        status = fields.get("status")
        if status is not None and status not in STATUSES:
            raise ProblemError(
                400, "invalid status", f"status must be one of {', '.join(STATUSES)}"
            )
        changed = []
        for key in ("title", *KNOWN_ERROR_FIELDS):
            if key in fields and fields[key] != getattr(p, key):
                setattr(p, key, fields[key])
                changed.append(key)
        if "title" in fields:
            p.title_by_person = bool(fields["title"].strip())
            p.retitle()
        if (
            status is None
            and p.status == OPEN
            and (p.cause or p.workaround)
            and {"cause", "workaround"} & set(changed)
        ):
            status = KNOWN_ERROR  # writing down the cause or a workaround makes it a known error
        if status is not None and status != p.status:
            p.status = status
            changed.append("status")
            if status == KNOWN_ERROR:
                p.known_error_at = now
            if status == RESOLVED:
                p.resolved_at = now
            else:
                p.resolved_at = None
        if changed:
            p.updated_at = now
            p.history.append(
                {
                    "at": now,
                    "actor": actor,
                    "action": "update",
                    "text": f"set {', '.join(changed)}",
                    "fields": changed,
                }
            )
            self._dirty.add(p.id)
        self._count()
        return p

    def merge(self, target_id: str, source_ids: list[str], actor: str, now: float) -> Problem:
        """A person says these problems are one: the sources' incidents move to the target,
        which keeps each source as a part, so later incidents like any of them join it."""
        target = self.get(target_id)
        sources = []
        for sid in source_ids:
            if sid == target_id:
                raise ProblemError(400, "invalid body", "a problem cannot be merged into itself")
            sources.append(self.get(sid))
        if not sources:
            raise ProblemError(
                400, "invalid body", "problems: name at least one problem to merge in"
            )
        for src in sources:
            target.parts = [prt for prt in target.parts if prt] + [
                list(prt) for prt in src.parts if prt
            ]
            for iid, link in src.links.items():
                target.put_link(link)
                self.by_incident[iid] = target.id
                self._touch(iid, target.id)
            for key in KNOWN_ERROR_FIELDS:
                if not getattr(target, key) and getattr(src, key):
                    setattr(target, key, getattr(src, key))
            src.links = {}
            src.recount_roots()
            src.parts = []
            src.merged_into = target.id
            src.updated_at = now
            src.history.append(
                {"at": now, "actor": actor, "action": "merged", "text": f"merged into {target.id}"}
            )
            self._dirty.add(src.id)
            self.clusterer.clusters.pop(src.id, None)
        self._links_moved(target)  # the sources' links, and the target's parts renumbered
        if target.status == OPEN and (target.cause or target.workaround):
            target.status, target.known_error_at = KNOWN_ERROR, now  # as a PATCH writing them would
        target.updated_at = now
        target.retitle()
        target.history.append(
            {
                "at": now,
                "actor": actor,
                "action": "merge",
                "text": f"merged in {', '.join(s.id for s in sources)}",
            }
        )
        self._dirty.add(target.id)
        self._sync_cluster(target)
        self._count()
        return target

    def split(
        self, problem_id: str, incident_ids: list[str], actor: str, now: float, title: str = ""
    ) -> Problem:
        """A person says these incidents are another problem: they move to a new one, and
        later incidents are compared with each problem on its own."""
        p = self.get(problem_id)
        if not incident_ids:
            raise ProblemError(
                400, "invalid body", "incidents: name at least one incident to split off"
            )
        missing = [i for i in incident_ids if i not in p.links]
        if missing:
            raise ProblemError(
                400, "invalid body", f"not linked to {problem_id}: {', '.join(missing)}"
            )
        if len(set(incident_ids)) >= len(p.links):
            raise ProblemError(
                400, "invalid body", "a split must leave at least one incident behind"
            )
        new = self._create(now, created_by=actor)
        for iid in dict.fromkeys(incident_ids):
            link = p.pop_link(iid)
            if link is None:
                continue  # (every one was checked to be linked to `p`)
            link.how = "person"
            self._take_out(p, iid)
            self._attach(new, link)
        self._drop_empty_parts(p)
        if title:
            new.title, new.title_by_person = title, True
        p.retitle()
        p.updated_at = now
        text = f"split {', '.join(incident_ids)} off into {new.id}"
        p.history.append({"at": now, "actor": actor, "action": "split", "text": text})
        new.history.append(
            {"at": now, "actor": actor, "action": "split", "text": f"split off {p.id}"}
        )
        self._dirty.add(p.id)
        self._sync_cluster(p)
        self._sync_cluster(new)
        self._count()
        return new

    def link_incident(self, problem_id: str, incident_id: str, actor: str, now: float) -> Problem:
        """A person links an incident to a problem (moving it from any other)."""
        p = self.get(problem_id)
        inc = self.incidents.get(incident_id)
        prof = None
        opened, resolved, root = now, None, None
        if inc is not None:
            opened, resolved, root = inc.opened_at, inc.resolved_at, inc.root_cause
            if not inc.is_open:
                prof = self._profile(inc)
        else:
            doc = self._stored_incident(incident_id)
            if doc is None:
                raise ProblemError(400, "invalid body", f"no such incident: {incident_id}")
            from daemon.incidents import Incident as _Incident

            stored = _Incident.from_doc(doc)
            opened, resolved, root = stored.opened_at, stored.resolved_at, stored.root_cause
            if not stored.is_open:
                prof = self._profile(stored)
        self._unlink(incident_id, now)
        self.clusterer.remove_incident(incident_id)
        self._candidate_writes[incident_id] = None
        self._attach(p, Link(incident_id, opened, resolved, root, "person", prof), self._part_for(p, prof))
        self._reopen_if_resolved(p, incident_id, opened, now)
        p.history.append(
            {"at": now, "actor": actor, "action": "link", "text": f"linked {incident_id}"}
        )
        self.m_linked.labels("person").inc()
        self._count()
        return p

    def _part_for(self, p: Problem, prof: Profile | None) -> int:
        """The part of `p` an incident a person links goes to: the one it resembles most,
        or a part of its own when it is like none of them (another CI or failure mode).
        In a part it is not comparable with, it would stop that part from matching the
        problem's later recurrences (see ProblemClusterer._linkage)."""
        if prof is None or not any(p.parts):
            return 0
        part = self._closest_part(p, prof)
        if part is None:
            p.parts.append([])
            part = len(p.parts) - 1
        return part

    def _closest_part(self, p: Problem, prof: Profile | None) -> int | None:
        """The index of the part of `p` whose resolved incidents `prof` resembles most,
        of those it is comparable with; None when there is none."""
        if prof is None:
            return None
        best, part = -1.0, None
        for i, ids in enumerate(p.parts):
            profs = p.profiles_of(ids)
            link = self.clusterer._linkage(prof, profs) if profs else None
            if link is not None and link[0] > best:
                best, part = link[0], i
        return part

    def _stored_incident(self, incident_id: str) -> dict[str, Any] | None:
        if self.store is None:
            return None
        row = self.store.query_one("SELECT doc FROM incidents WHERE id=?", (incident_id,))
        return json.loads(row[0]) if row else None
