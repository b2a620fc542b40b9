"""Problem clustering: which earlier incidents is this one a recurrence of?

An incident is described by a *profile*: its root-cause CI, that CI's type and
role, and a bag of weighted tokens taken from its alerts: the alert names on
the root CI (the failure mode shows there: `MysqlDown` is not `MysqlSlowQueries`),
the alert names it caused elsewhere, the root alerts' labels with
instance-specific values masked, and the words of their annotations.

Similarity is the cosine of TF-IDF vectors of those bags (Salton's vector
space model, as in document clustering): tokens every incident has
(`HighErrorRate`, `severity=warning`) count for little, rare ones (`MysqlDown`,
`mountpoint=/var/lib/docker`) for much, and the IDF is learned online from the
incidents seen so far, so no alert vocabulary is built in. Clusters are formed
by threshold-based average linkage (agglomerative clustering, the standard
choice when the number of clusters is unknown): an incident joins the problem
whose members it resembles most *on average* (average linkage does not chain
the way single linkage does), if that average clears the threshold; otherwise
it waits as a candidate, and a new problem is created once `min_incidents`
similar incidents exist. Assignment is online and final: nothing already
linked is moved by later clustering, so a person's merge or split stands.

Two matching rules:

- same root CI: `same_ci_threshold` (moderate: the CI already agrees, the
  alert pattern only has to tell one failure mode from another);
- different root CIs: only between CIs of the same role (same type and either
  the same `role` attribute in the CMDB or nearly the same dependents, that is
  interchangeable replicas such as the hosts of one pool), and only above the
  strict `cross_ci_threshold` on the whole profile (labels and annotation text
  included), the "same disk-full pattern on many hosts" case. The same service
  in two clusters is not one role: its dependents differ.

A problem merged by a person keeps its parts; an incident matches it when it
matches any part (max over the parts' average linkage), so the merge holds
for later incidents too. Nothing here touches the store or the clock.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import attrgetter, itemgetter, mul, truediv
from typing import Any, Protocol

from correlation.kinds import RESOURCE
from correlation.topology import remember

ROOT_NAME = 3.0  # weight of an alert name on the root CI: the failure mode
SYMPTOM_NAME = 0.75  # an alert name on another CI: how the fault spread
LABEL = 0.5  # a root alert's label (key=masked value)
WORD = 0.25  # a word of a root alert's annotations
RESOURCE_FACTOR = 0.4  # a resource alert's name on the root CI counts this much of ROOT_NAME
# the alerts on the root CI an incident is profiled by, the first ones: a failure mode
# shows in a few, and the thousandth pod of a deployment alerting alike adds nothing
# to it but the cost of profiling every alert again with each one that joins
PROFILE_ALERTS = 50

_IGNORED_LABELS = {"alertname", "__name__", "prometheus", "receiver", "alertstate"}
_DIGITS = re.compile(r"\d+")
_WORD = re.compile(r"[a-z][a-z_\-]{2,}")
_STOP = {
    "the",
    "and",
    "for",
    "has",
    "have",
    "are",
    "been",
    "than",
    "with",
    "this",
    "that",
    "was",
    "its",
    "not",
    "from",
    "over",
    "more",
    "less",
    "last",
    "minutes",
    "seconds",
}


@dataclass(slots=True)
class Profile:
    """What an incident looks like to problem clustering."""

    incident_id: str
    root: str  # root-cause CI, or "group:<key>" when the correlator named none
    ci_type: str | None
    root_names: tuple[str, ...]  # alert names on the root CI, sorted
    tokens: dict[str, float]  # token -> raw weight (before IDF)
    opened_at: float = 0.0
    resolved_at: float | None = None
    cached: tuple[int, dict[str, float]] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "root": self.root,
            "ci_type": self.ci_type,
            "root_names": list(self.root_names),
            "tokens": self.tokens,
            "opened_at": self.opened_at,
            "resolved_at": self.resolved_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Profile:
        return cls(
            incident_id=d["incident_id"],
            root=d["root"],
            ci_type=d.get("ci_type"),
            root_names=tuple(d.get("root_names", ())),
            tokens=dict(d.get("tokens", {})),
            opened_at=d.get("opened_at", 0.0),
            resolved_at=d.get("resolved_at"),
        )

    @property
    def signature(self) -> str:
        return signature_of(self.ci_type, self.root_names)

    @property
    def ci(self) -> str | None:
        """The root-cause CI; None for incidents grouped by labels outside the CMDB."""
        return None if self.root.startswith("group:") else self.root

    @property
    def where(self) -> str:
        """The root CI, or for label-grouped incidents their grouping labels' values."""
        return where_of(self.root)


def where_of(root: str) -> str:
    """`Profile.where` of a profile with this root."""
    if not root.startswith("group:"):
        return root
    values = [
        kv.partition("=")[2]
        for kv in root[6:].split(",")
        if kv and not kv.startswith("alertname=")
    ]
    return "/".join(v for v in values if v) or "unmatched alerts"


def signature_of(ci_type: str | None, names: Iterable[str]) -> str:
    """A short, stable description of a failure pattern: `host:KubeNodeNotReady+NodeDown`."""
    return f"{ci_type or 'unmatched'}:{'+'.join(sorted(names)) or '-'}"


def _mask(value: str, identity: tuple[str, ...]) -> str:
    if value in identity:
        return "<ci>"
    for ident in identity:
        if len(ident) > 3 and ident in value:
            value = value.replace(ident, "<ci>")
    return _DIGITS.sub("#", value)


def _words(text: str, identity: tuple[str, ...]) -> Iterable[str]:
    lowered = text.lower()
    for ident in identity:
        if len(ident) > 3:
            lowered = lowered.replace(ident.lower(), " ")
    for w in _WORD.findall(lowered):
        if w not in _STOP:
            yield w


# (annotation text, identity) -> its word tokens in order, repeats included: an incident is
# profiled again with each alert it gains and each time it resolves, and the same alerts'
# texts recur on every incident of a problem (emptied at 20,000 entries)
_WORD_TOKENS: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}
# (an alert's labels in their order, identity) -> its label tokens in order: the same (emptied
# at 20,000 entries)
_LABEL_TOKENS: dict[tuple[tuple[tuple[str, str], ...], tuple[str, ...]], tuple[str, ...]] = {}


def _label_tokens(labels: Mapping[str, str], identity: tuple[str, ...]) -> tuple[str, ...]:
    key = (tuple(labels.items()), identity)
    got = _LABEL_TOKENS.get(key)
    if got is None:
        made = tuple(f"l:{k}={_mask(v, identity)}" for k, v in labels.items() if k not in _IGNORED_LABELS)
        got = remember(_LABEL_TOKENS, key, made, 20_000)
    return got


def _word_tokens(text: str, identity: tuple[str, ...]) -> tuple[str, ...]:
    key = (text, identity)
    got = _WORD_TOKENS.get(key)
    if got is None:
        got = remember(_WORD_TOKENS, key, tuple(f"w:{w}" for w in _words(text, identity)), 20_000)
    return got


_NAME_LABELS = ("instance", "node", "pod", "host", "hostname", "container")
# id(labels), id(annotations), identity -> (labels, annotations, their tokens with weights): an
# incident is profiled again with each alert it gains, and its alerts keep their label and
# annotation dicts (the entry holds them, so their ids stay theirs; emptied at 20,000 entries)
_MEMBER_TOKENS: dict[tuple[int, int, tuple[str, ...]], tuple[Any, Any, tuple[tuple[str, float], ...]]] = {}


def _member_tokens(labels: Mapping[str, str], annotations: Mapping[str, str] | None,
                   identity: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    """An on-root alert's label and word tokens, in order, each with its weight."""
    key = (id(labels), id(annotations), identity)
    got = _MEMBER_TOKENS.get(key)
    if got is not None and got[0] is labels and got[1] is annotations:
        return got[2]
    pairs = [(t, LABEL) for t in _label_tokens(labels, identity)]
    for text in (annotations or {}).values():
        pairs.extend((w, WORD) for w in _word_tokens(str(text), identity))
    made = tuple(pairs)
    remember(_MEMBER_TOKENS, key, (labels, annotations, made), 20_000)
    return made


@dataclass(slots=True)
class Scan:
    """What `build_profile` takes from an incident's members for its root cause: the
    first `PROFILE_ALERTS` alerts on the root, and the names of the alerts elsewhere in
    the order they first come. Kept per incident, it follows an incident that gains
    one alert at a time (see `Incident.appended`) without looking through them all."""

    incident: Any  # the very object scanned
    revision: int
    root: str
    on_root: list[Any]
    elsewhere: dict[str, None]  # alert names, as an ordered set


def _scan(incident: Any, root: str, scans: dict[str, Scan] | None) -> Scan:
    grouped = root.startswith("group:")
    revision = getattr(incident, "revision", None)
    known = scans.get(incident.id) if scans is not None and revision is not None else None
    if known is not None and revision is not None and known.incident is incident and known.root == root:
        appended = getattr(incident, "appended", None)
        if known.revision == revision:
            return known
        if known.revision == revision - 1 and appended is not None and appended[0] == revision:
            m = appended[1]
            if grouped or m.ci == root:
                if len(known.on_root) < PROFILE_ALERTS:
                    known.on_root.append(m)
            else:
                known.elsewhere[m.labels.get("alertname", "")] = None
            known.revision = revision
            return known
    members = incident.alerts.values()
    on_root = list(islice(members if grouped else (m for m in members if m.ci == root), PROFILE_ALERTS))
    elsewhere = {} if grouped else dict.fromkeys(m.labels.get("alertname", "") for m in members if m.ci != root)
    got = Scan(incident, revision if revision is not None else -1, root, on_root, elsewhere)
    if scans is not None and revision is not None:
        remember(scans, incident.id, got, 20_000)
    return got


def build_profile(
    incident: Any,
    ci_type: Callable[[str], str | None] | None = None,
    kind_weight: Callable[[Mapping[str, str]], float] | None = None,
    scans: dict[str, Scan] | None = None,
) -> Profile:
    """The profile of an incident (an `Incident`, or anything with its fields).

    `kind_weight(labels)` (the correlator's alert kinds) scales each root alert
    name: a resource alert (CPU throttling, a filling disk) describes the CI's
    own condition and often just happens to fire during a fault, so it says
    less about the failure mode than `NodeDown` or `HighLatencyP99`.
    `scans`: where the caller keeps what was taken from each incident's members
    (see `Scan`), to profile an incident that gained an alert from its last scan.
    """
    root = incident.root_cause
    if root is None:
        cis = Counter(m.ci for m in incident.alerts.values() if m.ci)
        root = cis.most_common(1)[0][0] if cis else f"group:{incident.group_key}"
    grouped = root.startswith("group:")
    scan = _scan(incident, root, scans)
    on_root = scan.on_root
    names = {root}
    for m in on_root:
        labels = m.labels
        names.update(labels[k] for k in _NAME_LABELS if k in labels)
    # what names the root CI is masked out of label values and text, longest first
    # (`node-10` before `node-1`) and in the same order in every process
    identity = tuple(sorted(names, key=lambda s: (-len(s), s)))
    tokens: dict[str, float] = {}
    root_names = set()
    for m in on_root:
        labels = m.labels
        name = labels.get("alertname", "")
        root_names.add(name)
        weight = ROOT_NAME * RESOURCE_FACTOR if kind_weight is not None and kind_weight(labels) == RESOURCE \
            else ROOT_NAME
        key = "n:" + name
        tokens[key] = max(tokens.get(key, 0.0), weight)
        tokens.update(_member_tokens(labels, m.annotations, identity))
    for name in scan.elsewhere:  # (none when label-grouped: every alert is on its "root")
        if "n:" + name not in tokens:
            tokens["s:" + name] = SYMPTOM_NAME
    ctype = ci_type(root) if ci_type and not grouped else None
    return Profile(
        incident_id=incident.id,
        root=root,
        ci_type=ctype,
        root_names=tuple(sorted(root_names)),
        tokens=tokens,
        opened_at=incident.opened_at,
        resolved_at=incident.resolved_at,
    )


class Idf:
    """Document frequencies of tokens over the incidents profiled so far (online IDF).

    The weights in use come from a snapshot of the counts, renewed once the number
    of documents has grown by `refresh` (a quarter) since the last one. Every
    vector depends on the document count, so weights that moved with each new
    incident would make each one recompute every vector it is compared with; a
    snapshot keeps them valid for many incidents. Between snapshots the document
    count's share of every weight lags by at most ln(1 + refresh) (0.22), the same
    for all tokens; a new token weighs as if no document had it. While fewer
    than 1 / `refresh` documents, it is renewed with every incident.
    """

    def __init__(self, refresh: float = 0.25) -> None:
        self.docs = 0
        self.df: Counter[str] = Counter()
        self._seen: set[str] = set()
        self.refresh = refresh
        self.version = 0  # the snapshot in use; vectors are cached per snapshot
        self._snap_docs = 0
        self._weights: dict[str, float] = {}
        self._unseen = 1.0  # the weight of a token no snapshot document had

    def add(self, profile: Profile) -> None:
        if profile.incident_id in self._seen:
            return
        self._seen.add(profile.incident_id)
        self.docs += 1
        self.df.update(profile.tokens.keys())
        if self.docs - self._snap_docs >= max(1.0, self._snap_docs * self.refresh):
            # scikit-learn's smoothed idf: ln((1 + n) / (1 + df)) + 1
            n = self._snap_docs = self.docs
            log_n = math.log(1 + n)
            self._weights = {t: log_n - math.log(1 + df) + 1.0 for t, df in self.df.items()}
            self._unseen = log_n + 1.0
            self.version += 1

    def weight(self, token: str) -> float:
        return self._weights.get(token, self._unseen)


def vector(profile: Profile, idf: Idf) -> dict[str, float]:
    """The profile's unit TF-IDF vector (cached for the IDF's snapshot)."""
    if profile.cached is not None and profile.cached[0] == idf.version:
        return profile.cached[1]
    # mapped in C rather than looped in Python: the same products and sums, in the same order
    tokens = profile.tokens
    v = list(map(mul, tokens.values(), map(idf._weights.get, tokens, repeat(idf._unseen))))
    norm = math.sqrt(sum(map(mul, v, v))) or 1.0
    unit = dict(zip(tokens, map(truediv, v, repeat(norm)), strict=True))
    profile.cached = (idf.version, unit)
    return unit


def cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(map(mul, a.values(), map(b.get, a, repeat(0.0))))


def _shown(unit: Mapping[str, float], total: Mapping[str, float], whole: float) -> float:
    """The share of the members' centroid (by its norm) that lies on this incident's tokens,
    from the sum of their vectors (`_Group.total`: the centroid times their number).

    Alerts get lost (a dropped exporter or rule, a failed scrape): a recurrence that
    lost some of its alerts shares less with each member than a complete one would,
    though all it shows is what the problem shows. Dividing the similarity by the
    share of the problem it shows forgives what is missing, and only that: tokens the
    incident has and the members lack still count against it (the share is 1 when
    the incident shows all of the problem and more). `whole`: the sum's squared norm
    (`_Group.norm2`).
    """
    get = total.get
    part = 0.0
    for t in unit:
        c = get(t, 0.0)
        part += c * c
    return math.sqrt(part / whole) if whole > 0.0 else 1.0


@dataclass(slots=True)
class ClusterSettings:
    same_ci_threshold: float = 0.4
    cross_ci: bool = True
    cross_ci_threshold: float = 0.9
    role_similarity: float = 0.8  # Jaccard of dependents for two CIs to share a role
    min_incidents: int = 2  # a problem is created at this many similar incidents
    candidate_window: float = 30 * 86400.0  # how long an unmatched incident waits for a recurrence
    max_members: int = 50  # an incident is compared with at most this many recent members of a part


@dataclass(slots=True)
class Cluster:
    """A problem as clustering sees it: its parts (one unless a person merged problems)."""

    id: str
    parts: list[list[Profile]] = field(default_factory=list)
    version: int = 0  # moves whenever `parts` changes in place (see `ProblemClusterer._recent`)
    recent: dict[int, _Recent] = field(default_factory=dict, repr=False, compare=False)  # by part

    @property
    def members(self) -> list[Profile]:
        return [p for part in self.parts for p in part]


@dataclass(slots=True)
class _Recent:
    """A part's most recent members as `ProblemClusterer._recent` found them."""

    valid: tuple[int, int, int]  # for (the cluster's version, the IDF snapshot, the `_group` cache's life)
    window: list[Profile]  # the last `max_members` and one more
    ids: frozenset[str]  # their incidents
    members: list[Profile]  # the last `max_members`
    group: _Group | None = None  # theirs, once asked for


@dataclass(slots=True)
class _Group:
    members: tuple[Profile, ...]
    total: dict[str, float]  # the sum of the members' unit vectors
    roots: dict[tuple[str, str | None], int]  # how many members sit on each (root, CI type)
    # what `_linkage` asks of the members whenever an incident falls short of them, worked
    # out once per group: every incident near a problem is compared with the same group
    _common: frozenset[str] | None = None
    _norm2: float | None = None

    def common(self) -> frozenset[str]:
        """`most_common_names` of the members."""
        if self._common is None:
            self._common = frozenset(most_common_names(self.members))
        return self._common

    def norm2(self) -> float:
        """The squared norm of `total` (see `_shown`)."""
        if self._norm2 is None:
            self._norm2 = sum(c * c for c in self.total.values())
        return self._norm2


@dataclass(slots=True)
class Match:
    cluster_id: str | None  # an existing problem, or None: a new one from `with_candidates`
    score: float
    with_candidates: list[Profile] = field(default_factory=list)
    reason: str = ""


class Roles(Protocol):
    """Which CIs are interchangeable (for the cross-CI rule), by classes of CIs: a fleet's
    thousands of like hosts are one class, not thousands of lists of each other."""

    @property
    def version(self) -> Hashable:
        """Moves whenever the classes may have changed (a reloaded CMDB)."""

    def key(self, ci: str) -> Hashable | None:
        """The CI's class (None: in none)."""

    def peers(self, key: Hashable) -> frozenset[Hashable]:
        """The classes whose CIs are interchangeable with those of class `key`."""


class _PeersByCi:
    """`Roles` from a function giving each CI the CIs interchangeable with it: a class per CI."""

    version = 0

    def __init__(self, role_peers: Callable[[str], frozenset[str]]) -> None:
        self.role_peers = role_peers

    def key(self, ci: str) -> str:
        return ci

    def peers(self, key: Hashable) -> frozenset[Hashable]:
        return frozenset(self.role_peers(str(key)) or ())


class ProblemClusterer:
    """Online threshold clustering of resolved incidents into problems (see the module docstring).

    `roles` tells which CIs are interchangeable (for the cross-CI rule), or
    `role_peers(ci)` gives those interchangeable with `ci`; without either only
    incidents with the same root CI are compared. Candidates and the CIs problems
    sit on are indexed by root CI and by class of CIs, so a resolved incident is
    compared only with those on its own CI and on CIs of its role.
    """

    def __init__(
        self,
        settings: ClusterSettings | None = None,
        role_peers: Callable[[str], frozenset[str]] | None = None,
        roles: Roles | None = None,
    ) -> None:
        self.settings = settings or ClusterSettings()
        self.roles: Roles | None = roles if roles is not None else \
            (_PeersByCi(role_peers) if role_peers is not None else None)
        self.idf = Idf()
        self.clusters: dict[str, Cluster] = {}
        self.candidates: dict[str, Profile] = {}  # resolved incidents in no problem yet
        self._by_root: dict[str, dict[str, Profile]] = {}  # the same, by root CI
        self._clusters_of: dict[str, set[str]] = {}  # incident -> clusters that held it (or still do)
        self._clusters_at: dict[str, set[str]] = {}  # root CI -> clusters that had it (or still do)
        # the same two by class of root CI (see `Roles`), for the classes' `version`
        self._by_class: dict[Hashable, dict[str, Profile]] = {}
        self._clusters_in: dict[Hashable, set[str]] = {}
        self._classes_of: Hashable = None
        self._groups: dict[tuple[int, tuple[int, ...]], _Group] = {}  # see `_group`
        self._slid: dict[tuple[int, tuple[int, ...]], _Group] = {}  # the same, by all members but the first
        self._groups_emptied = 0  # how many times `_groups` was emptied (see `_recent`)

    # -- state ----------------------------------------------------------------------

    def add_cluster(self, cluster_id: str, parts: list[list[Profile]]) -> Cluster:
        c = Cluster(cluster_id, [list(p) for p in parts if p])
        self.clusters[cluster_id] = c
        for p in c.members:
            self._enlist(cluster_id, p)
        for part in c.parts:
            for p in part[: -self.settings.max_members - 1]:
                p.cached = None  # out of the window (see `_left_behind`)
        return c

    def _enlist(self, cluster_id: str, profile: Profile) -> None:
        """The indexes' side of a member joining a cluster: no longer a candidate."""
        self.idf.add(profile)
        self.drop_candidate(profile.incident_id)
        self._clusters_of.setdefault(profile.incident_id, set()).add(cluster_id)
        self._clusters_at.setdefault(profile.root, set()).add(cluster_id)
        k = self._class_of(profile.root)
        if k is not None:
            self._clusters_in.setdefault(k, set()).add(cluster_id)

    def _class_of(self, root: str) -> Hashable | None:
        """The class of a root CI (see `Roles`), with the indexes by class up to date."""
        roles = self.roles
        if roles is None:
            return None
        self._classes_current(roles)
        return roles.key(root)

    def _classes_current(self, roles: Roles) -> None:
        """Make the indexes by class again from the ones by root CI when the classes may
        have changed (a reloaded CMDB)."""
        if self._classes_of == roles.version:
            return
        self._by_class, self._clusters_in = {}, {}
        for root, by_id in self._by_root.items():
            k = roles.key(root)
            if k is not None:
                self._by_class.setdefault(k, {}).update(by_id)
        for root, ids in self._clusters_at.items():
            k = roles.key(root)
            if k is not None:
                self._clusters_in.setdefault(k, set()).update(ids)
        self._classes_of = roles.version

    def append(self, cluster_id: str, part: int, profile: Profile, parts: int) -> bool:
        """Add a member at the end of a part, as `add_cluster` would place it on a rebuild.
        False (nothing done) when the cluster does not have `parts` parts, that is when
        its parts do not line up with the problem's."""
        c = self.clusters.get(cluster_id)
        if c is None or len(c.parts) != parts:
            return False
        members = c.parts[part]
        members.append(profile)
        c.version += 1
        self._enlist(cluster_id, profile)
        self._left_behind(members)
        return True

    def _left_behind(self, members: list[Profile]) -> None:
        """The member a part's growth just left behind the window `_recent` looks at
        will not be compared again (parts grow at the end), unless the part is rebuilt:
        its vector goes, or a problem would hold one for every incident of its history.
        Asked again, it is worked out again, the same for the same IDF snapshot."""
        keep = self.settings.max_members
        if len(members) > keep + 1:
            members[-keep - 2].cached = None

    def add_candidate(self, profile: Profile) -> None:
        self.idf.add(profile)
        self.drop_candidate(profile.incident_id)
        self.candidates[profile.incident_id] = profile
        self._by_root.setdefault(profile.root, {})[profile.incident_id] = profile
        k = self._class_of(profile.root)
        if k is not None:
            self._by_class.setdefault(k, {})[profile.incident_id] = profile

    def drop_candidate(self, incident_id: str) -> None:
        p = self.candidates.pop(incident_id, None)
        if p is not None:
            same = self._by_root.get(p.root)
            if same is not None:
                same.pop(incident_id, None)
                if not same:
                    del self._by_root[p.root]
            k = self._class_of(p.root)
            alike = self._by_class.get(k) if k is not None else None
            if alike is not None:
                alike.pop(incident_id, None)
                if not alike:
                    del self._by_class[k]

    def remove_incident(self, incident_id: str) -> None:
        """Forget an incident (merged into another, or moved by a person)."""
        self.drop_candidate(incident_id)
        for cid in self._clusters_of.pop(incident_id, ()):
            c = self.clusters.get(cid)
            if c is not None and any(p.incident_id == incident_id for part in c.parts for p in part):
                for part in c.parts:
                    part[:] = [p for p in part if p.incident_id != incident_id]
                c.parts = [part for part in c.parts if part]
                c.version += 1

    def expire(self, now: float) -> None:
        """Drop candidates older than the window. They were added as they resolved, so
        the oldest come first and the look stops at the first one still waiting."""
        horizon = now - self.settings.candidate_window
        while self.candidates:
            p = next(iter(self.candidates.values()))
            if (p.resolved_at or p.opened_at) >= horizon:
                return
            self.drop_candidate(p.incident_id)

    def _peer_classes(self, profile: Profile) -> frozenset[Hashable]:
        """The classes of the CIs of the incident's role (see `_comparable`)."""
        if self.settings.cross_ci and profile.ci_type is not None and not profile.root.startswith("group:"):
            k = self._class_of(profile.root)
            if k is not None and self.roles is not None:  # (a class: there are roles)
                return self.roles.peers(k)
        return frozenset()

    def _comparable_candidates(self, profile: Profile) -> list[Profile]:
        """Candidates on the incident's root CI and on CIs of its role."""
        out = list(self._by_root.get(profile.root, {}).values())
        for k in self._peer_classes(profile):
            out.extend(p for p in self._by_class.get(k, {}).values() if p.root != profile.root)
        return out

    # -- similarity ---------------------------------------------------------------------

    def _comparable(self, a: Profile, b: Profile) -> tuple[bool, float]:
        """Whether two profiles may be the same problem, and the threshold that applies."""
        return self._comparable_to(a, b.root, b.ci_type)

    def _comparable_to(self, a: Profile, root: str, ci_type: str | None) -> tuple[bool, float]:
        s = self.settings
        if a.root == root:
            return True, s.same_ci_threshold
        roles = self.roles
        if (
            s.cross_ci
            and roles is not None
            and a.ci_type is not None
            and a.ci_type == ci_type
            and not a.root.startswith("group:")
            and not root.startswith("group:")
        ):
            k, theirs = roles.key(a.root), roles.key(root)
            if k is not None and theirs is not None and theirs in roles.peers(k):
                return True, s.cross_ci_threshold
        return False, 1.0

    def similarity(self, a: Profile, b: Profile) -> float:
        return cosine(vector(a, self.idf), vector(b, self.idf))

    def _group(self, members: list[Profile]) -> _Group:
        """The sum of the members' unit vectors and how many sit on each root, cached for
        the IDF snapshot: the mean of the cosines to the members is the cosine to their
        centroid, the sum divided by their number.

        A part grows by appending, and its most recent `max_members` slide along: a
        group one member longer, or one that slid by a member, is derived from the
        previous one instead of summing every member again.
        """
        version = self.idf.version
        ids = tuple(map(id, members))
        got = self._groups.get((version, ids))
        if got is not None:
            return got
        head = (version, ids[:-1])
        prev = self._groups.get(head)  # the same members but the last
        dropped = None
        if prev is None:
            prev = self._slid.get(head)  # the window before it slid by one
            dropped = prev.members[0] if prev is not None else None
        if prev is not None:
            total, roots = dict(prev.total), dict(prev.roots)
            if dropped is not None:
                for t, x in vector(dropped, self.idf).items():
                    left = total[t] - x
                    if abs(left) > 1e-12:
                        total[t] = left
                    else:
                        del total[t]
                key = (dropped.root, dropped.ci_type)
                if roots[key] > 1:
                    roots[key] -= 1
                else:
                    del roots[key]
            new = members[-1]
            get = total.get
            for t, x in vector(new, self.idf).items():
                total[t] = get(t, 0.0) + x
            key = (new.root, new.ci_type)
            roots[key] = roots.get(key, 0) + 1
        else:
            total, roots = {}, {}
            get = total.get
            for m in members:
                for t, x in vector(m, self.idf).items():
                    total[t] = get(t, 0.0) + x
                key = (m.root, m.ci_type)
                roots[key] = roots.get(key, 0) + 1
        # the group holds its members, so the ids in its keys stay theirs
        got = _Group(tuple(members), total, roots)
        if len(self._groups) >= 4096:
            self._groups_emptied += 1
        remember(self._groups, (version, ids), got, 4096)
        remember(self._slid, (version, ids[1:]), got, 4096)
        return got

    def _recent(self, c: Cluster, i: int, incident_id: str) -> tuple[list[Profile], _Group | None]:
        """The most recent `max_members` members of part `i` of `c`, leaving out the
        incident itself, and their group (None: not worked out). Bounded work on
        long-lived problems, and a problem whose pattern drifted over months is judged
        by its recent form.

        Every incident near a problem asks, so the members and their group are kept
        on the cluster per part, for its `version`, the IDF snapshot and the life of
        the `_group` cache they came from (while it lives, `_group` gives the very
        same group for them)."""
        keep = self.settings.max_members
        valid = (c.version, self.idf.version, self._groups_emptied)
        got = c.recent.get(i)
        if got is None or got.valid != valid:
            window = c.parts[i][-keep - 1 :]
            got = c.recent[i] = _Recent(valid, window, frozenset(map(_incident_id, window)), window[-keep:])
        if incident_id in got.ids:
            return [m for m in got.window if m.incident_id != incident_id][-keep:], None
        if got.group is None and got.members:  # worked out when first needed, as `_linkage` would
            got.group = self._group(got.members)
        return got.members, got.group

    def _linkage(
        self, profile: Profile, members: list[Profile], group: _Group | None = None
    ) -> tuple[float, float] | None:
        """Average linkage: the mean similarity to the members and the mean margin over
        each pair's threshold (same-CI members count with the lenient threshold, members
        on other CIs of the role with the strict one). None when a member is not comparable.
        `group`: the members' group, when the caller has it."""
        if not members:
            return None
        if group is None:
            group = self._group(members)
        thresholds = 0.0
        for (root, ci_type), count in group.roots.items():
            ok, threshold = self._comparable_to(profile, root, ci_type)
            if not ok:
                return None  # a part spanning CIs of another role is not this incident's
            thresholds += count * threshold
        unit = vector(profile, self.idf)
        sim = cosine(unit, group.total) / len(members)
        need = thresholds / len(members)
        if sim < need and len(group.roots) == 1 and (profile.root, profile.ci_type) in group.roots \
                and profile.root_names and group.common().issuperset(profile.root_names):
            # the same CI showing only alerts the problem commonly shows there: what it
            # lacks may have been lost (see `_shown`); the geometric mean of the similarity
            # and the similarity with what is missing forgiven
            shown = _shown(unit, group.total, group.norm2())
            if shown > 0.0:
                sim = min(1.0, sim / math.sqrt(shown))
        return sim, sim - need

    def best_cluster(self, profile: Profile, exclude: set[str] | None = None) -> Match | None:
        """The problem this incident belongs to, if one is similar enough (the largest
        margin over the thresholds wins)."""
        best: Match | None = None
        best_margin = 0.0
        # a cluster is comparable only through a member on the incident's root or a
        # CI of its role: look at those only, oldest first (ids sort by creation), so
        # that of two equally good problems the older one wins
        near = set(self._clusters_at.get(profile.root, ()))
        for k in self._peer_classes(profile):
            near.update(self._clusters_in.get(k, ()))
        for cid in sorted(near):
            c = self.clusters.get(cid)
            if c is None or (exclude and cid in exclude):
                continue
            for i in range(len(c.parts)):
                members, group = self._recent(c, i, profile.incident_id)
                link = self._linkage(profile, members, group)
                if link is None:
                    continue
                score, margin = link
                if margin >= 0 and (best is None or margin > best_margin):
                    best_margin = margin
                    best = Match(
                        c.id, score, reason=f"similarity {score:.2f} to {len(members)} incident(s)"
                    )
        return best

    def recurrence(self, profile: Profile) -> Match | None:
        """Candidates this incident recurs with: a new problem when there are enough.

        Greedy average linkage: take the most similar comparable candidate, then
        the next one whose average similarity to the group still clears the
        threshold, and so on.
        """
        need = self.settings.min_incidents - 1
        scored = []
        for cand in self._comparable_candidates(profile):
            if cand.incident_id == profile.incident_id:
                continue
            ok, threshold = self._comparable(profile, cand)
            if ok:
                sim = self.similarity(profile, cand)
                if sim >= threshold:
                    scored.append((sim, cand.opened_at, cand))
        scored.sort(key=lambda x: (-x[0], x[1], x[2].incident_id))
        group: list[Profile] = []
        for _sim, _at, cand in scored:
            everyone = [profile, *group]
            link = self._linkage(cand, everyone)
            if link is not None and link[1] >= 0:
                group.append(cand)
        if len(group) >= need and need >= 0:
            score = sum(self.similarity(profile, g) for g in group) / max(len(group), 1)
            return Match(
                None,
                score,
                with_candidates=sorted(group, key=lambda p: p.opened_at),
                reason=f"recurs with {len(group)} earlier incident(s), similarity {score:.2f}",
            )
        return None


_root_names = attrgetter("root_names")
_incident_id = attrgetter("incident_id")


def most_common_names(members: Sequence[Profile]) -> tuple[str, ...]:
    """The alert names on the root CI that at least half of the incidents share."""
    # counted by pattern first (the members share a few): the same counts, first seen
    # in the same order as counting each member's names in turn. Plain dicts: this runs
    # whenever a problem gains or loses an incident, and a Counter's constructor and
    # missing-key hook, in Python, cost more than the counting.
    patterns: dict[tuple[str, ...], int] = {}
    for names in map(_root_names, members):
        patterns[names] = patterns.get(names, 0) + 1
    counts: dict[str, int] = {}
    for names, times in patterns.items():
        for n in set(names):
            counts[n] = counts.get(n, 0) + times
    half = max(1, math.ceil(len(members) / 2))
    common = [n for n, c in counts.items() if c >= half]
    if not common and counts:
        common = [max(counts.items(), key=itemgetter(1))[0]]  # the first of the most common
    return tuple(sorted(common))
