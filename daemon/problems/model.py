"""Problem records (ITIL): what recurs, how often, at what cost, and what is known about it.

Status goes open -> known_error (a person has written down the cause or a
workaround) -> resolved (the fix is in). A resolved problem that recurs is
open again. Counts, times to resolve and the trend derive from the linked
incidents, so they are never out of step with them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from correlation.problems import Profile, most_common_names, signature_of, where_of
from daemon.store import Store, register_schema
from daemon.timefmt import format_rfc3339

OPEN, KNOWN_ERROR, RESOLVED = "open", "known_error", "resolved"
STATUSES = (OPEN, KNOWN_ERROR, RESOLVED)
KNOWN_ERROR_FIELDS = ("cause", "workaround", "fix_ref")
DAY = 86400.0
TITLE_BASIS = 50  # a problem's title is taken from this many of its latest incidents

# A problem's own fields are a document in `problems`; each incident linked to it is a
# row of `problem_links` with the part of the problem it is in and its place there
# (`Link.pos`). Problems written by an incidentd that kept the links inside the
# problem's document are read as they are, and their links written as rows when the
# daemon next commits (see `read_problems`).
SCHEMA = """
CREATE TABLE IF NOT EXISTS problems (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    updated_at REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS problems_by_status ON problems (status);
CREATE TABLE IF NOT EXISTS problem_links (
    incident_id TEXT PRIMARY KEY,
    problem_id TEXT NOT NULL,
    part INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    opened_at REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS problem_links_by_problem ON problem_links (problem_id);
CREATE TABLE IF NOT EXISTS problem_candidates (
    incident_id TEXT PRIMARY KEY,
    resolved_at REAL,
    doc TEXT NOT NULL
);
"""
register_schema("problems", SCHEMA)


@dataclass(slots=True)
class Link:
    """An incident linked to a problem."""

    incident_id: str
    opened_at: float
    resolved_at: float | None = None
    root: str | None = None
    how: str = "resolve"  # open (matched while open), resolve (clustered), person
    profile: Profile | None = None  # set once the incident resolved: what clustering compares
    # the order of the problem's links within their parts: the link that joined its part
    # last has the largest (kept in the store beside the link, not in its document)
    pos: int = field(default=0, compare=False)

    def to_dict(self) -> dict[str, Any]:
        prof = self.profile
        return {
            "incident_id": self.incident_id,
            "opened_at": self.opened_at,
            "resolved_at": self.resolved_at,
            "root": self.root,
            "how": self.how,
            "profile": prof.to_dict() if prof else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Link:
        prof = d.get("profile")
        return cls(
            incident_id=d["incident_id"],
            opened_at=d["opened_at"],
            resolved_at=d.get("resolved_at"),
            root=d.get("root"),
            how=d.get("how", "resolve"),
            profile=Profile.from_dict(prof) if prof else None,
        )


@dataclass(slots=True)
class Problem:
    id: str
    seq: int
    created_at: float
    updated_at: float
    status: str = OPEN
    title: str = ""
    title_by_person: bool = False
    created_by: str = "incidentd"
    links: dict[str, Link] = field(default_factory=dict)
    parts: list[list[str]] = field(
        default_factory=list
    )  # incident ids; several after a person's merge
    cause: str = ""
    workaround: str = ""
    fix_ref: str = ""
    known_error_at: float | None = None
    resolved_at: float | None = None
    merged_into: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # what people did, and reopenings
    # how many links name each root CI: every new title asks for them, and a problem may
    # have thousands of links (kept by `put_link`, `pop_link` and `set_root`; after
    # `links` is replaced whole, by `recount_roots`)
    _roots: dict[str, int] = field(init=False, default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.recount_roots()

    # -- links ----------------------------------------------------------------------

    def put_link(self, link: Link) -> None:
        """Add a link, or replace the one of the same incident."""
        old = self.links.get(link.incident_id)
        if old is not None:
            self._count_root(old.root, -1)
        self.links[link.incident_id] = link
        self._count_root(link.root, 1)

    def pop_link(self, incident_id: str) -> Link | None:
        link = self.links.pop(incident_id, None)
        if link is not None:
            self._count_root(link.root, -1)
        return link

    def set_root(self, link: Link, root: str | None) -> None:
        """Change the root CI of one of the problem's links."""
        self._count_root(link.root, -1)
        link.root = root
        self._count_root(root, 1)

    def recount_roots(self) -> None:
        self._roots = {}
        for link in self.links.values():
            self._count_root(link.root, 1)

    def _count_root(self, root: str | None, n: int) -> None:
        if root:
            left = self._roots.get(root, 0) + n
            if left > 0:
                self._roots[root] = left
            else:
                self._roots.pop(root, None)

    # -- derived ------------------------------------------------------------------

    @property
    def profiles(self) -> list[Profile]:
        return [link.profile for link in self.links.values() if link.profile is not None]

    def profiles_of(self, incident_ids: Iterable[str]) -> list[Profile]:
        """The profiles of these incidents' links, of those that have one."""
        out = []
        for i in incident_ids:
            link = self.links.get(i)
            if link is not None and link.profile is not None:
                out.append(link.profile)
        return out

    def part_profiles(self) -> list[list[Profile]]:
        """The profiles of each part, of the parts with any."""
        return [profs for profs in map(self.profiles_of, self.parts) if profs]

    @property
    def root_cause(self) -> str | None:
        """The root CI most of its incidents had (the first by name of those tied)."""
        if not self._roots:
            return None
        return max(sorted(self._roots), key=self._roots.__getitem__)

    @property
    def root_cis(self) -> list[str]:
        return sorted(self._roots)

    @property
    def signature(self) -> str:
        profs = self.profiles
        if not profs:
            return signature_of(None, ())
        types = [p.ci_type for p in profs]
        ctype = max(sorted({t or "" for t in types}), key=lambda t: types.count(t or None)) or None
        return signature_of(ctype, most_common_names(profs))

    def retitle(self) -> None:
        """The incidents changed: a title not set by a person is worked out again."""
        if not self.title_by_person:
            self.title = self.default_title()

    def default_title(self) -> str:
        """`NodeDown, KubeNodeNotReady on node-3`: the alert names that at least half of
        the last `TITLE_BASIS` incidents share (a long-lived problem is named by its
        current form, and naming it stays cheap), and where it happens."""
        recent = [
            link.profile
            for link in islice(reversed(self.links.values()), TITLE_BASIS)
            if link.profile is not None
        ]
        names = most_common_names(recent) if recent else ()
        what = ", ".join(names[:3]) or "recurring incident"
        roots = self.root_cis or sorted({where_of(r) for r in {p.root for p in recent}})
        where = (
            roots[0]
            if len(roots) == 1
            else (
                f"{len(roots)} CIs ({', '.join(roots[:3])}"
                + (", ..." if len(roots) > 3 else "")
                + ")"
            )
        )
        return f"{what} on {where}" if roots else what

    def sorted_links(self) -> list[Link]:
        return sorted(self.links.values(), key=lambda link: (link.opened_at, link.incident_id))

    def stats(self) -> dict[str, Any]:
        links = self.sorted_links()
        ttrs = [link.resolved_at - link.opened_at for link in links if link.resolved_at is not None]
        total = sum(ttrs)
        mean = total / len(ttrs) if ttrs else None
        return {
            "count": len(links),
            "first_occurrence": links[0].opened_at if links else None,
            "last_occurrence": links[-1].opened_at if links else None,
            "ttr_total_seconds": total,
            "ttr_mean_seconds": mean,
            "cost_seconds": len(links) * mean if mean is not None else 0.0,
        }

    def trend(self, now: float, bucket: float = 7 * DAY, buckets: int = 4) -> dict[str, Any]:
        """Occurrences in the last `buckets` periods (oldest first) and their direction,
        the least-squares slope per period."""
        start = now - bucket * buckets
        counts = [0] * buckets
        for link in self.links.values():
            if link.opened_at >= start:
                counts[min(buckets - 1, int((link.opened_at - start) // bucket))] += 1
        n = buckets
        xbar, ybar = (n - 1) / 2, sum(counts) / n
        den = sum((x - xbar) ** 2 for x in range(n))
        slope = sum((x - xbar) * (y - ybar) for x, y in zip(range(n), counts, strict=True)) / den
        direction = "steady"
        if slope > 0.25 * max(ybar, 1) / 2:
            direction = "rising"
        elif slope < -0.25 * max(ybar, 1) / 2:
            direction = "falling"
        if sum(counts) == 0:
            direction = "quiet"
        return {
            "period_days": bucket / DAY,
            "counts": counts,
            "slope": round(slope, 3),
            "direction": direction,
        }

    # -- persistence ----------------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        """The problem's own fields, as the store keeps them: its links are rows of their
        own (`problem_links`), so that a new incident of a problem with a long history
        writes one row, not the whole history again."""
        return {
            "id": self.id,
            "seq": self.seq,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "status": self.status,
            "title": self.title,
            "title_by_person": self.title_by_person,
            "created_by": self.created_by,
            "cause": self.cause,
            "workaround": self.workaround,
            "fix_ref": self.fix_ref,
            "known_error_at": self.known_error_at,
            "resolved_at": self.resolved_at,
            "merged_into": self.merged_into,
            "history": self.history,
        }

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Problem:
        p = cls(id=d["id"], seq=d["seq"], created_at=d["created_at"], updated_at=d["updated_at"])
        for k in (
            "status",
            "title",
            "title_by_person",
            "created_by",
            "parts",
            "cause",
            "workaround",
            "fix_ref",
            "known_error_at",
            "resolved_at",
            "merged_into",
            "history",
        ):
            if k in d:
                setattr(p, k, d[k])
        for x in d.get("links", []):
            p.put_link(Link.from_dict(x))
        return p


def read_problems(store: Store) -> tuple[list[Problem], list[Problem]]:
    """The problems in the store in the order they were created, each with its links (in
    the order their incidents opened) and its parts; and those of them whose links were
    kept in the problem's document, which are still to be written as rows."""
    problems: dict[str, Problem] = {}
    embedded: dict[str, Problem] = {}
    pos = 0
    for (doc,) in store.query("SELECT doc FROM problems ORDER BY seq"):
        d = json.loads(doc)
        p = problems[d["id"]] = Problem.from_doc(d)
        if "links" in d:
            embedded[p.id] = p
            for part in p.parts:
                for iid in part:
                    if iid in p.links:
                        pos += 1
                        p.links[iid].pos = pos
    parts: dict[str, dict[int, list[tuple[int, str]]]] = {}
    rows = store.query(
        "SELECT problem_id, part, pos, doc FROM problem_links ORDER BY opened_at, incident_id"
    )
    for pid, part, at, doc in rows:
        holder = problems.get(pid)
        if holder is None or pid in embedded:
            continue
        link = Link.from_dict(json.loads(doc))
        link.pos = at
        holder.put_link(link)
        parts.setdefault(pid, {}).setdefault(part, []).append((at, link.incident_id))
    for pid, by_part in parts.items():
        problems[pid].parts = [[iid for _, iid in sorted(by_part[k])] for k in sorted(by_part)]
    return list(problems.values()), list(embedded.values())


def problem_view(p: Problem, now: float, *, detail: bool = False) -> dict[str, Any]:
    """The problem as the API and the replay result show it."""
    ts = format_rfc3339
    st = p.stats()
    view: dict[str, Any] = {
        "id": p.id,
        "title": p.title or p.default_title(),
        "status": p.status,
        "incidents": [link.incident_id for link in p.sorted_links()],
        "root_cause": p.root_cause,
        "root_cause_cis": p.root_cis,
        "signature": p.signature,
        "count": st["count"],
        "first_occurrence": ts(st["first_occurrence"]),
        "last_occurrence": ts(st["last_occurrence"]),
        "ttr_total_seconds": round(st["ttr_total_seconds"], 3),
        "ttr_mean_seconds": round(st["ttr_mean_seconds"], 3)
        if st["ttr_mean_seconds"] is not None
        else None,
        "trend": p.trend(now),
        "known_error": {"cause": p.cause, "workaround": p.workaround, "fix_ref": p.fix_ref},
        "created_at": ts(p.created_at),
        "created_by": p.created_by,
        "updated_at": ts(p.updated_at),
        "known_error_at": ts(p.known_error_at),
        "resolved_at": ts(p.resolved_at),
    }
    if detail:
        view["links"] = [
            {
                "incident_id": link.incident_id,
                "opened_at": ts(link.opened_at),
                "resolved_at": ts(link.resolved_at),
                "root_cause": link.root,
                "linked": link.how,
                "alert_names": list(link.profile.root_names) if link.profile else [],
            }
            for link in p.sorted_links()
        ]
        view["history"] = [dict(h, at=ts(h.get("at"))) for h in p.history]
    return view


def known_problem_note(p: Problem) -> dict[str, Any]:
    """What an incident linked to this problem shows on-call. `occurrences` is the
    problem's number of incidents when the note was last written on this one: a new
    link rewrites the notes of the earlier incidents only when something else in
    the note changed."""
    return {
        "id": p.id,
        "title": p.title or p.default_title(),
        "status": p.status,
        "cause": p.cause or None,
        "workaround": p.workaround or None,
        "fix_ref": p.fix_ref or None,
        "occurrences": len(p.links),
    }


def humanize_seconds(s: float | None) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 2 * DAY:
        return f"{s / 3600:.1f} h"
    return f"{s / DAY:.1f} d"
