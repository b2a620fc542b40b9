"""Topology-aware correlation: which incident a new alert belongs to, and why.

An alert on a CMDB CI joins an open incident when

- the incident is still active: its last new alert is at most `window` old,
  or a CI within `max_hops` below the alert's CI is still down in it (a fault
  that goes on reaches dependents as late as their `for:` delays make them
  alert), and it opened at most `max_span` ago;
- the alert's CI and one of the incident's CIs share a common cause within
  `max_hops` (one depends on the other, or both depend on the same CI);
- the alert is consistent with the incident's root-cause hypotheses: it
  depends on (or is) a CI that explains the incident's alerts so far.

When it relates to several incidents it merges them only if its CI lies
below CIs of each of them (a late alert on a shared host reveals one fault);
a symptom shared by two incidents (the gateway, the SLO) joins the closest
one instead: a gateway sees every fault below it. Between such incidents, one
whose fault still fires on or right below the alert's CI, and one behind the
dependency the alert's labels name (a gateway's `route`), are the likelier.
An alert that no incident explains on its own may still reveal the common
cause of several (the third host of a zone going down): those incidents
merge with it when one fault explains them all better than separate ones.
Alerts on CIs outside the CMDB fall back to Alertmanager-style grouping by
labels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from cmdb.graph import Cmdb, describe_path
from correlation.grouping import LabelGrouper
from correlation.impact import Impacts, impact_priority, impacted, with_first
from correlation.kinds import (
    CAUSE,
    DEFAULT_CAUSE,
    DEFAULT_RESOURCE,
    DEFAULT_SYMPTOM,
    KIND_NAMES,
    RESOURCE,
    AlertKinds,
)
from correlation.model import (
    Evidence,
    Explainer,
    FaultModel,
    Hypothesis,
    Weights,
    normalised_scores,
)
from correlation.settings import CorrelationConfig
from correlation.topology import Topology, remember
from daemon.config import IncidentSettings
from daemon.pipeline import AlertEvent, Analysis, Placement

INDEXED_FROM = 128  # held incidents from which placing looks them up by CI (see `_joinable`)
FITTING_BLOCKS = 64  # match blocks tried at most to list the CIs an alert on no CI fits
# open incidents looked at, the most recently opened first, for a fault that began near the
# time of an incident's alerts (see `_from_elsewhere`, `_read_elsewhere`): bounded work in
# an alert storm
OTHERS_LOOKED_AT = 64


def _members(incident: Any) -> Iterable[tuple[str, Any]]:
    alerts = getattr(incident, "alerts", {})
    return alerts.items() if isinstance(alerts, Mapping) else ((m.fingerprint, m) for m in alerts)


V = TypeVar("V")  # what `TopologyCorrelator._per_revision` keeps
_IS_MAPPING: dict[type, bool] = {}
_WORDS = re.compile(r"[^A-Za-z0-9_.-]+")  # what separates the words of a label value (a path, a list)


def _same_part(parts: set[str], theirs: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether two alerts are on the same part of a CI whose parts the labels `parts`
    tell apart (see `TopologyCorrelator._part_labels`): they agree on all of them."""
    return all(theirs.get(n) == labels[n] for n in parts)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """A field of an incident or alert given as an object or as a mapping (its
    stored document). Whether a type is a mapping is looked up once: an ABC check
    on every call cost as much as the rest of this hot helper."""
    t = type(obj)
    mapping = _IS_MAPPING.get(t)
    if mapping is None:
        mapping = _IS_MAPPING[t] = issubclass(t, Mapping)
    return obj.get(name, default) if mapping else getattr(obj, name, default)


def _num(value: Any, default: float) -> float:
    return default if value is None else float(value)


def _ended_at(m: Any) -> float:
    """When a member ended, or (no end known) when it was last heard of (`Member.ended_at`)."""
    end = _get(m, "ends_at")
    return _num(_get(m, "last_at"), 0.0) if end is None else end


def _both(ex: Explainer, s_a: float, h_a: Any, s_b: float, h_b: Any, weights_b: Mapping[str, Evidence]) -> float:
    """log L of two alert sets as separate faults (or noise), from each one's: a change
    recorded on a CI explains the start of one fault there, not of two, so when both
    rest on a change on the same CI the second does without it."""
    if h_a is not None and h_b is not None and h_a.change and h_b.change and h_a.ci == h_b.ci:
        return s_a + max(s_b - h_b.change_bonus, ex.noise_of(weights_b))
    return s_a + s_b


# the labels Prometheus gives every series it scrapes: they name the target, not a part of a CI
TARGET_LABELS = frozenset({"instance", "job"})


def _identity(labels: Mapping[str, str]) -> dict[str, str]:
    """What an alert is about: its labels but its name and severity."""
    return {k: v for k, v in labels.items() if k != "alertname" and k != "severity"}


def _with_member(on: dict[Any, list[Any]], m: Any) -> dict[Any, list[Any]]:
    """`on` (members by CI) with the member `m` added."""
    on.setdefault(_get(m, "ci"), []).append(m)
    return on


def _members_by_ci(incident: Any) -> dict[Any, list[Any]]:
    on: dict[Any, list[Any]] = {}
    for _, m in _members(incident):
        _with_member(on, m)
    return on


_NOT_SHARED = frozenset(("alertname", "severity"))  # labels that say nothing of where an alert is


def _with_pairs(by_pair: dict[tuple[str, str], dict[str, None]], m: Any) -> dict[tuple[str, str], dict[str, None]]:
    """`by_pair` (the CIs whose members carry each label pair) with the member `m` added."""
    ci = _get(m, "ci")
    if ci is not None:
        for pair in (_get(m, "labels", {}) or {}).items():
            if pair[0] not in _NOT_SHARED:
                got = by_pair.get(pair)
                if got is None:
                    by_pair[pair] = {ci: None}
                else:
                    got[ci] = None
    return by_pair


def _pairs_by_ci(incident: Any) -> dict[tuple[str, str], dict[str, None]]:
    by_pair: dict[tuple[str, str], dict[str, None]] = {}
    for _, m in _members(incident):
        _with_pairs(by_pair, m)
    return by_pair


class TopologyCorrelator:
    """The `Correlator` of daemon/pipeline.py built on the CMDB dependency graph."""

    def __init__(
        self,
        cmdb: Callable[[], Cmdb] | Cmdb,
        config: CorrelationConfig | None = None,
        fallback: Any = None,
    ) -> None:
        """`fallback` is a Correlator for alerts outside the CMDB (label grouping); built in when None."""
        self._cmdb = cmdb if callable(cmdb) else (lambda: cmdb)
        self.config = config or CorrelationConfig()
        # alerts on no CMDB CI group by labels (the daemon passes the grouper built from
        # the `incidents:` settings)
        defaults = IncidentSettings()
        self.fallback = fallback or LabelGrouper(defaults.group_by, defaults.group_window, while_firing=False)
        self.kinds = AlertKinds.build(
            tuple(self.config.cause_alerts) + DEFAULT_CAUSE,
            tuple(self.config.symptom_alerts) + DEFAULT_SYMPTOM,
            tuple(self.config.resource_alerts) + DEFAULT_RESOURCE,
        )
        self.model = FaultModel(**self.config.model)
        self._topo: Topology | None = None
        self._impacts: Impacts | None = None  # with the topology: see `analyze`
        self._explainer: Explainer | None = None
        self.changes: Any = None  # the daemon's change records (rules.changes.ChangeStore): see `attach_changes`
        self._evidence_of: dict[str, tuple[int, Any, Weights]] = {}  # see `evidence`
        self._on_of: dict[str, tuple[int, Any, dict[Any, list[Any]]]] = {}  # see `_members_on`
        self._pairs_of: dict[str, tuple[int, Any, dict[tuple[str, str], dict[str, None]]]] = {}  # see `_sharing`
        self._match_names: dict[str, frozenset[str]] = {}  # see `_match_labels`
        self._ended: dict[str, tuple[int, Any, float | None]] = {}  # see `over`
        self._fronts: dict[str, tuple[int, Any, str, set[str]]] = {}  # see `_front_of`

    @property
    def topology(self) -> Topology:
        cmdb = self._cmdb()
        if self._topo is None or self._topo.cmdb is not cmdb:
            self._topo = Topology(cmdb, self.config.depth)
            self._impacts = Impacts(self._topo)
            self._evidence_of.clear()  # whether a member's CI is in the CMDB may differ
            self._on_of.clear()
            self._pairs_of.clear()
            self._match_names.clear()
            self._fronts.clear()  # which CIs sit right above a root may differ
        return self._topo

    # -- placement -------------------------------------------------------

    @property
    def explainer(self) -> Explainer:
        topo = self.topology
        if self._explainer is None or self._explainer.topo is not topo:
            self._explainer = Explainer(topo, self.model)
            self._wire_changes()
        return self._explainer

    def attach_changes(self, changes: Any) -> None:
        """Let recorded changes count as evidence in root-cause ranking: `changes` has
        `suspected_change_for(ci, at)`, `base_rate(at, cis)` and `version`."""
        self.changes = changes
        self._wire_changes()

    def _wire_changes(self) -> None:
        ex = self._explainer
        if ex is not None and self.changes is not None:
            ex.changes = self.change_lookup
            ex.changes_version = lambda: self.changes.version

    def change_lookup(self, ci: str, at: float) -> tuple[float, str] | None:
        """What a change recorded on `ci` shortly before `at` (the first alert) says for a
        fault there: the likelihood ratio of seeing it if `ci` is the root (`after_change`)
        against seeing one on any CI at a random moment (the changes' base rate)."""
        c = self.changes.suspected_change_for(ci, at)
        if c is None:
            return None
        p = self.changes.base_rate(at, len(self.topology.cmdb))
        bonus = math.log(self.model.after_change / p)
        if bonus <= 0:
            return None
        what = f"{c.id} ({c.summary})" if c.summary else c.id
        return bonus, f"change {what} began {max(0.0, at - c.starts_at) / 60:.0f} min before the first alert"

    def alert_evidence(self, labels: Mapping[str, str], first_at: float) -> Evidence:
        kind = self.kinds.weight(labels)
        return Evidence(kind, self.model.noise_for(labels.get("severity"), kind), (first_at,), kind == RESOURCE)

    def evidence(self, incident: Any) -> Weights:
        """The incident's alerting CIs with what their alerts say (and when they began).
        Remembered per incident revision (see `_per_revision`); callers must not change
        what they get back."""
        cmdb = self.topology.cmdb  # first: a new CMDB empties the cache

        def grow(weights: Weights, m: Any) -> Weights:
            found = self._member_evidence(m, cmdb)
            return weights if found is None else weights.adding(*found)

        return self._per_revision(self._evidence_of, incident, lambda inc: self._evidence(inc, cmdb), grow)

    def _members_on(self, incident: Any) -> dict[Any, list[Any]]:
        """The incident's members by CI, each CI's in the incident's order (None: those on
        no CI), remembered per incident revision like `evidence`: placing an alert asks
        which of a large incident's alerts sit on a few CIs. Callers must not change it."""
        return self._per_revision(self._on_of, incident, _members_by_ci, _with_member)

    @staticmethod
    def _per_revision(cache: dict[str, tuple[int, Any, V]], incident: Any, build: Callable[[Any], V],
                      grow: Callable[[V, Any], V]) -> V:
        """What `build(incident)` gives, remembered in `cache` for the incident's latest
        revision (see `Incident.revision`), and worked out as `grow(what the revision
        before gave, the member)` when the incident only gained that member (see
        `Incident.appended`). Only the latest revision: revisions move forward, and a
        large incident's state at every revision it went through would fill the memory.
        What has no revision is built afresh."""
        revision = _get(incident, "revision")
        if revision is None:
            return build(incident)
        iid = _get(incident, "id")
        known = cache.get(iid)
        if known is not None and known[1] is incident:
            if known[0] == revision:
                return known[2]
            appended = _get(incident, "appended")
            if known[0] == revision - 1 and appended is not None and appended[0] == revision:
                got = grow(known[2], appended[1])
                cache[iid] = (revision, incident, got)
                return got
        got = build(incident)
        remember(cache, iid, (revision, incident, got), 20_000)
        return got

    def _member_evidence(self, m: Any, cmdb: Cmdb) -> tuple[str, Evidence] | None:
        """A member's CI and what its alert says there; None off the CMDB."""
        ci = _get(m, "ci")
        if ci is None or ci not in cmdb:
            return None
        t = _get(m, "since") or _get(m, "first_at") or 0.0
        return ci, self.alert_evidence(_get(m, "labels", {}) or {}, t)

    def _evidence(self, incident: Any, cmdb: Cmdb) -> Weights:
        found: dict[str, list[Evidence]] = {}
        for _, m in _members(incident):
            got = self._member_evidence(m, cmdb)
            if got is not None:
                found.setdefault(got[0], []).append(got[1])
        out = Weights()
        for ci, evs in found.items():
            out[ci] = Evidence.of_all(evs)
        return out

    def place(self, event: AlertEvent, incidents: Any, now: float, since: float | None = None,
              leaving: str | None = None) -> Placement:
        """Where a new alert goes: the incident whose fault explains it, several of them
        merged, or none (a new incident). An alert let go by the incident `leaving` is
        placed again among the others: firing since `since`, it may join one of those active
        at any time since then (it merges none: what it says of them was known as it came),
        and its evidence begins then."""
        fp = event.fingerprint
        topo = self.topology
        ci = event.ci
        at = now if since is None else min(since, now)
        firing = self._firing_in(incidents, now, fp)
        if firing is not None:
            return Placement([firing.id], "the same alert fired again", _get(firing, "group_key", ""))
        window = event.correlation_window or self.config.window
        if ci is None or ci not in topo.cmdb:
            # the CIs its labels fit, listed when that takes a few match blocks; none: no
            # incident's root cause can take it (an alert storm off the CMDB)
            fitting = topo.cmdb.fitting(event.alert.labels, FITTING_BLOCKS)
            fits = partial(topo.cmdb.fits, event.alert.labels) if fitting is None else fitting.__contains__
            scoped = self._place_in_scope(event, fits, fitting, incidents, now, window, at, leaving) \
                if fitting != set() else None
            if scoped is not None:
                return scoped
            placed = self.fallback.place(event, incidents, now, since=since, leaving=leaving)
            why = "no CMDB CI matches its labels"
            placed.reason = f"{why}; {placed.reason}" if placed.reason else why
            return placed

        ex = self.explainer
        w_x = self.alert_evidence(event.alert.labels, at)
        worse = self._worse_state(incidents, now, fp, ci, event.alert.labels, w_x)
        if worse is not None:
            return worse
        alone = {ci: w_x}
        ln_fault = math.log(self.model.new_fault)
        # a business service's alert may begin after the fault ended (an SLO's burn rate is
        # measured over an hour and more), anyone else's while its fault lasts
        begun = at if since is not None else event.alert.began(at)
        lags = self._business(ci)
        options: list[tuple[float, Any, Weights, float, Any]] = []
        s_alone: float | None = None
        h_alone: Any = None
        related: list[tuple[Any, dict[str, Evidence]]] = []
        for inc in self._joinable(incidents, now, fp, ci):
            if inc.id == leaving or (not lags and self.over(inc, begun)) \
                    or not self._active(inc, at, window, ci, w_x):
                continue
            weights = self.evidence(inc)
            if not weights or not topo.related_to_any(ci, weights.keys(), self.config.max_hops):
                continue
            related.append((inc, weights))
            after = ex.best_with(weights, ci, w_x)
            if after is None:
                continue  # no single fault explains this alert together with the incident
            s_inc, h_inc = ex.fault_or_noise(weights)
            if s_alone is None:
                s_alone, h_alone = ex.fault_or_noise(alone)
            separate = _both(ex, s_inc, h_inc, s_alone, h_alone, alone)
            # the longer the incident has been quiet, the less a new alert looks like its fault
            quiet = max(0.0, at - _num(_get(inc, "last_alert_at"), at))
            gain = after.loglik + ln_fault - math.log1p(quiet / self.model.settle) - separate
            if ci in weights:  # one more alert on a CI the incident has: its own likelihood
                gain += self._repeat_or_new_part(inc, weights, ci, event.alert.labels, w_x, after)
            if gain > 0:
                options.append((gain, inc, weights, s_inc, after))
        if not options:
            common = self._common_cause(ci, w_x, related, at) if len(related) > 1 and leaving is None else None
            if common is not None:
                return common
            return Placement([], f"opens an incident: no active incident that one fault at or below {ci} explains better",
                             f"ci:{ci}")
        if len(options) > 1:
            self._by_presence(ci, event.alert.labels, options, at)
            self._by_named_dependency(ci, event.alert.labels, options)
        options.sort(key=lambda o: (-o[0], -(_get(o[1], "last_alert_at", 0.0) or 0.0)))
        gain, best_inc, best_weights, _, best_hyp = options[0]
        ids = [best_inc.id]
        merged: Mapping[str, Evidence] = best_weights  # the incidents merged so far, without the new alert
        ll_merged, h_merged = best_hyp.loglik + ln_fault, best_hyp
        for _g, other, weights, _s, _h in options[1:] if leaving is None else ():
            apart = _num(_get(other, "opened_at"), now) - _num(_get(best_inc, "opened_at"), now)
            s_other, h_other = ex.fault_or_noise(weights, apart)
            # (with the new alert added last: the same incidents were weighed together
            # at the alert before, so their census is known)
            union = Weights.union(merged, weights)
            hyp = ex.best_adding(union, ci, w_x)
            if hyp is None or not (hyp.explains_any(weights) and hyp.explains_any(best_weights)):
                continue  # merged, one incident's alerts would only be noise beside the other's fault
            if hyp.loglik + ln_fault > _both(ex, ll_merged, h_merged, s_other, h_other, weights):
                ids.append(other.id)
                merged, ll_merged, h_merged = union, hyp.loglik + ln_fault, hyp
        reason = self._reason(ci, best_weights, best_hyp, topo)
        if len(ids) > 1:
            reason += f"; one fault at {h_merged.ci} explains {len(ids)} incidents: merged"
        return Placement(ids, reason, _get(best_inc, "group_key", "") or f"ci:{ci}")

    def _worse_state(self, incidents: Any, now: float, fp: str, ci: str, labels: Mapping[str, str],
                     ev: Evidence) -> Placement | None:
        """The incident in which a part of `ci` that this alert is about (a device, a mount
        point: labels beyond those the CMDB matches the CI by and the scrape target's)
        still fires a warning of a resource running short, when this alert reports a worse
        state of the very same part: the same labels but its name and severity
        (node_exporter's filesystem alerts: filling up, then almost out of space). One
        episode raises them one after another, often hours apart, and the worse alert
        is a stronger kind, which a quiet incident would not otherwise take."""
        if ev.kind <= RESOURCE:
            return None
        what = _identity(labels)
        if not (what.keys() - self._match_labels(ci) - TARGET_LABELS):
            return None  # about the CI as a whole: a resource short there is no sure sign of its fault
        on_ci = getattr(incidents, "joinable_incidents", None)
        for inc in on_ci(now, on=(ci,)) if on_ci is not None else self._joinable(incidents, now, fp, ci):
            got = self.evidence(inc).get(ci)
            if got is None or not got.resource_only:  # (its alerts on `ci` all warn of a resource)
                continue
            for m in self._members_on(inc).get(ci, ()):
                theirs = _get(m, "labels", {}) or {}
                if _get(m, "status") != "resolved" and _identity(theirs) == what:
                    return Placement([_get(inc, "id")], f"the same part of {ci} as {theirs.get('alertname', '')}, "
                                     "still firing here, in a worse state", _get(inc, "group_key", "") or f"ci:{ci}")
        return None

    def _match_labels(self, ci: str) -> frozenset[str]:
        """The label names the CMDB matches `ci` by, over all its match blocks."""
        topo = self.topology
        got = self._match_names.get(ci)
        if got is None:
            item = topo.cmdb.get(ci)
            got = frozenset(m.name for block in (item.match if item is not None else ()) for m in block.matchers)
            remember(self._match_names, ci, got, 200_000)
        return got

    @staticmethod
    def _firing_in(incidents: Any, now: float, fp: str) -> Any:
        """The incident a new alert may join in which the same alert is firing, if any."""
        holder_of = getattr(incidents, "incident_for", None)
        if holder_of is None:
            candidates = list(incidents.open_incidents())
        else:
            holder = holder_of(fp)
            candidates = [holder] if holder is not None and incidents.joinable(holder, now) else []
        for inc in candidates:
            m = _get(inc, "alerts", {}).get(fp)
            if m is not None and _get(m, "status") != "resolved":
                return inc
        return None

    def _joinable(self, incidents: Any, now: float, fp: str, ci: str | None) -> list[Any]:
        """The incidents a new alert may join, in opening order. For an alert on the CMDB
        CI `ci` among many incidents (an alert storm opens thousands), only those with
        alerts on CIs related to it, or holding the alert itself, found through the
        incidents' index by CI: the others cannot relate to it. Among fewer, looking
        through them all costs less than finding the CIs related to a CI near a hub."""
        joinable = getattr(incidents, "joinable_incidents", None)
        if joinable is None:
            return list(incidents.open_incidents())
        if ci is None or getattr(incidents, "held", 0) < INDEXED_FROM:
            return list(joinable(now))
        near = self.topology.related(ci, self.config.max_hops)
        holder = incidents.incident_for(fp)
        return joinable(now, on=near if holder is None else {*near, *holder.cis})

    @staticmethod
    def _holding_alerts_on(incidents: Any, now: float, cis: set[str] | None) -> list[Any]:
        """The incidents a new alert may join that hold an alert on one of `cis` (None: on
        any CI), in opening order, as far as the manager's index tells (else all of them).
        An alert storm off the CMDB opens an incident per group of alerts, and each next
        alert of the storm asks."""
        joinable = getattr(incidents, "joinable_incidents", None)
        if joinable is None:
            return list(incidents.open_incidents())
        return list(joinable(now, on=cis) if cis is not None else joinable(now, on_any_ci=True))

    def _repeat_or_new_part(self, inc: Any, weights: dict[str, Evidence], ci: str, labels: Mapping[str, str],
                            w_x: Evidence, after: Any) -> float:
        """log P of the alert `labels` on `ci`, a CI the incident already has alerts on. One
        more alert on the same thing costs what `repeat_loglik` says. But a CI matched by
        several values of one label (a business service per `slo`) has parts that fail
        apart: an alert on another part (another SLO burning) says the fault reached
        that part too, as much news as a CI that had not alerted yet, so it pays what
        adding a fresh CI would: the incident's likelihood with the alert's part as a
        new alerting CI, against without it."""
        ex = self.explainer
        if not self._other_part(inc, ci, labels):
            return ex.repeat_loglik(after, ci, w_x)
        rest = {y: ev for y, ev in weights.items() if y != ci}
        h_rest = ex.best(rest) if rest else None
        fresh = ex.best_with(rest, ci, w_x) if h_rest is not None else None
        h_all = ex.best(weights)
        if fresh is None or h_all is None or h_rest is None:
            return ex.repeat_loglik(after, ci, w_x)
        return (fresh.loglik - h_rest.loglik) - (after.loglik - h_all.loglik)

    def _matched_values(self, ci: str) -> dict[str, set[str]]:
        """The values `ci` is matched by with `=`, by label, over all its match blocks."""
        values: dict[str, set[str]] = {}
        item = self.topology.cmdb.get(ci)
        for block in item.match if item is not None else ():
            for m in block.matchers:
                if m.is_equality:
                    values.setdefault(m.name, set()).add(m.value)
        return values

    def _part_labels(self, ci: str, labels: Mapping[str, str]) -> set[str]:
        """The labels of `labels` that tell parts of `ci` apart: those `ci` is matched by
        with `=` and several values (a business service with one block per `slo`)."""
        return {n for n, vs in self._matched_values(ci).items() if len(vs) > 1 and n in labels}

    def _other_part(self, inc: Any, ci: str, labels: Mapping[str, str]) -> bool:
        """Whether every alert the incident has on `ci` is on another part of it than
        `labels` (`slo=a` against `slo=b`, see `_part_labels`). Alerts that carry other
        labels than the ones telling parts apart, or the same values, are about the
        same thing."""
        names = self._part_labels(ci, labels)
        if not names:
            return False
        own = [_get(m, "labels", {}) or {} for m in self._members_on(inc).get(ci, ())]
        return bool(own) and all(any(n in theirs and theirs[n] != labels[n] for n in names) for theirs in own)

    def _by_presence(self, ci: str, labels: Mapping[str, str], options: list, now: float) -> None:
        """Weigh the incidents an alert could join by whether their fault is still present
        where the alert is. The gain of joining discounts an incident by how long it has
        been quiet (its fault may be over); but an incident with an alert still firing on
        this CI or on a CI it directly depends on, one its fault explains, shows that fault
        there right now, however long ago its last new alert came. Such an incident counts
        as no quieter than the most recent one whose fault shows nothing there: a fault
        elsewhere that alerted lately is no likelier to be what reached this CI. Closer
        still is an incident firing on the very part of this CI the alert is about (the
        same SLO of a business service, burning over another window): it counts as no
        quieter than the most recent one that shows its fault only further off. Between
        incidents that show their fault equally close, the quiet spells still decide."""
        near = set(self.topology.cmdb.depends_on(ci))
        near.add(ci)
        parts = self._part_labels(ci, labels)
        level: list[int] = []
        quiet: list[float] = []
        for _gain, inc, weights, _s, hyp in options:
            quiet.append(max(0.0, now - _num(_get(inc, "last_alert_at"), now)))
            shown = {y for y in near if y in weights and (y == hyp.ci or y in hyp.explained)}
            on = self._members_on(inc) if shown else {}
            firing = [m for y in shown for m in on.get(y, ()) if _get(m, "status") != "resolved"]
            if not firing:
                level.append(0)
            elif parts and any(_get(m, "ci") == ci and _same_part(parts, _get(m, "labels", {}) or {}, labels)
                               for m in firing):
                level.append(2)
            else:
                level.append(1)
        settle = self.model.settle
        for k in range(len(options)):
            cap = min((q for j, q in enumerate(quiet) if level[j] < level[k]), default=None)
            if cap is not None and quiet[k] > cap:
                gain, inc, weights, s_inc, hyp = options[k]
                options[k] = (gain + math.log1p(quiet[k] / settle) - math.log1p(cap / settle), inc, weights, s_inc, hyp)

    def _by_named_dependency(self, ci: str, labels: Mapping[str, str], options: list) -> None:
        """Weigh the incidents an alert could join by the dependency its labels name. A
        gateway's alert per route (`route=/api/orders` on the front-end) says which of
        its CI's direct dependencies the failure came through: a fault at or below that
        dependency (or at the CI itself) explains the naming, while for a fault that
        reaches the CI another way it is a coincidence, as likely as naming any one of
        the CI's dependencies at random. Only the choice between incidents changes
        (whether the alert joins one at all does not): several faults may reach a shared
        dependent, and this is what tells their symptoms apart."""
        named = self._named_dependencies(ci, labels)
        if not named:
            return
        topo = self.topology
        at_random = -math.log(max(2, len(topo.cmdb.depends_on(ci))))
        for k, (gain, inc, weights, s_inc, hyp) in enumerate(options):
            root = hyp.ci
            if root != ci and not any(root == d or root in topo.below(d) for d in named):
                options[k] = (gain + at_random, inc, weights, s_inc, hyp)

    def _named_dependencies(self, ci: str, labels: Mapping[str, str]) -> list[str]:
        """The direct dependencies of `ci` that the alert's labels name: a word of a label
        value (other than the values `ci` itself is matched by) equals a value that
        identifies the dependency in the CMDB and differs from `ci`'s own (`orders` of
        `service=orders`, not the cluster both share)."""
        own = self._matched_values(ci)
        words: set[str] = set()
        for k, v in labels.items():
            if k not in ("alertname", "severity") and v not in own.get(k, ()):
                words.update(w for w in _WORDS.split(v) if w)
        if not words:
            return []
        return [d for d in self.topology.cmdb.depends_on(ci)
                if any(v in words and v not in own.get(name, ()) for name, vs in self._matched_values(d).items()
                       for v in vs)]

    def _common_cause(self, ci: str, w_x: Evidence, related: list[tuple[Any, dict[str, Evidence]]],
                      now: float) -> Placement | None:
        """An alert that no single incident explains may reveal what several share: the
        third node of a zone going down says the zone's network failed, while each pair of
        nodes looked like one node's fault and noise. Merges the incidents whose CIs one
        fault explains together with the alert, if that is likelier than each apart."""
        ex = self.explainer
        hyp = ex.best(Weights.union({ci: w_x}, *(weights for _, weights in related)))
        if hyp is None or ci in hyp.unexplained:
            return None
        # incidents that look like faults of their own (a lone disk warning is likelier
        # noise, and no evidence of a common cause)
        covered = set(hyp.explained) | {hyp.ci}
        members = sorted((r for r in related if not covered.isdisjoint(r[1])
                          and ex.fault_or_noise(r[1])[1] is not None),
                         key=lambda r: (_num(_get(r[0], "opened_at"), now), r[0].id))
        if len(members) < 2:
            return None
        hyp = ex.best(Weights.union({ci: w_x}, *(weights for _, weights in members)))
        if hyp is None or ci in hyp.unexplained:
            return None
        # separate: each incident a fault of its own (a later one starting close to the
        # first is the rarer coincidence), and the alert noise or a fault of its own
        first = _num(_get(members[0][0], "opened_at"), now)
        separate = ex.fault_or_noise({ci: w_x})[0]
        for k, (inc, weights) in enumerate(members):
            separate += ex.fault_or_noise(weights, None if k == 0 else _num(_get(inc, "opened_at"), now) - first)[0]
        quiet = min(max(0.0, now - _num(_get(inc, "last_alert_at"), now)) for inc, _ in members)
        together = hyp.loglik + math.log(self.model.new_fault) - math.log1p(quiet / self.model.settle)
        if together <= separate:
            return None
        ids = [inc.id for inc, _ in members]
        return Placement(ids, f"one fault at {hyp.ci} explains this alert and the {len(ids)} incidents "
                              "it relates to: merged", _get(members[0][0], "group_key", "") or f"ci:{ci}")

    def _place_in_scope(self, event: AlertEvent, fits: Callable[[str], bool], fitting: set[str] | None,
                        incidents: Any, now: float, window: float, at: float,
                        leaving: str | None) -> Placement | None:
        """An alert on no CI (a job-wide `TargetDown`) joins an active incident whose likely
        root cause its labels fit, or else one of the alerting CIs that root explains (the
        nodes below a failed network), if there is one: the most recently active. See
        `_shared_label` for what else it takes. `fits`: whether its labels fit a CI; `at`
        and `leaving` as `place` has them."""
        labels = event.alert.labels
        cmdb = self.topology.cmdb
        best: tuple[float, Any, str, tuple[str, str], str] | None = None
        for inc in self._holding_alerts_on(incidents, now, fitting):
            last = _num(_get(inc, "last_alert_at"), _num(_get(inc, "opened_at"), now))
            if at - last > window or not _get(inc, "is_open", True) or inc.id == leaving:
                continue
            weights = self.evidence(inc)
            if not weights:
                continue
            _, hyp = self.explainer.fault_or_noise(weights)
            if hyp is None or (best is not None and last <= best[0]):
                continue
            for x in self._sharing(inc, hyp, labels):
                if fits(x):
                    theirs = [_get(m, "labels", {}) or {} for m in self._members_on(inc).get(x, ())]
                    shared = self._shared_label(labels, theirs, x, cmdb)
                    if shared is not None:
                        best = (last, inc, x, shared, hyp.ci)
                        break
        if best is None:
            return None
        _, inc, x, (key, value), root = best
        what = "the likely root cause" if x == root else f"which depends on the likely root cause {root}"
        return Placement([inc.id], f"no CMDB CI matches its labels; they fit {x}, {what}, "
                                   f"and share {key}={value} with its alerts", _get(inc, "group_key", ""))

    def _sharing(self, inc: Any, hyp: Any, labels: Mapping[str, str]) -> list[str]:
        """The root and the CIs it explains (`hyp`) on which the incident has an alert that
        shares a label with `labels` (see `_shared_label`), in the hypothesis' order. Looked
        up by label pair, not CI by CI: an alert storm off the CMDB, during an incident
        that spans a whole cluster, asks for each alert."""
        by_pair = self._per_revision(self._pairs_of, inc, _pairs_by_ci, _with_pairs)
        found = {x for name, value in labels.items() for x in by_pair.get((name, value), ())
                 if name not in self._match_labels(x)}
        return [x for x in (hyp.ci, *hyp.explained) if x in found] if found else []

    @staticmethod
    def _shared_label(labels: Mapping[str, str], theirs_all: Iterable[Mapping[str, str]], ci: str,
                      cmdb: Cmdb) -> tuple[str, str] | None:
        """A label the alert shares with the incident's alerts on `ci` (`theirs_all`, their
        labels), other than the ones `ci` is matched by (fitting them is what made it a
        candidate) and the alert name and severity: the job that scrapes the CI, say.
        Fitting a cluster-wide aggregate (a failing rule group, a failed batch job) to
        whatever fails in the cluster at the time would be a guess."""
        item = cmdb.get(ci)
        ignored = {"alertname", "severity"}
        if item is not None:
            ignored |= {m.name for block in item.match for m in block.matchers}
        for theirs in theirs_all:
            for k, v in labels.items():
                if k not in ignored and theirs.get(k) == v:
                    return k, v
        return None

    def forget(self, incident_id: str) -> None:
        """The incident is gone from the manager (evicted, or merged into another): what is
        remembered of it goes too. Each cache keeps the incident itself, and with it all
        of its alerts; bounded in number, they would still hold thousands of resolved
        incidents on a daemon that runs for months."""
        for cache in (self._evidence_of, self._on_of, self._pairs_of, self._ended, self._fronts):
            cache.pop(incident_id, None)
        if self._impacts is not None:
            self._impacts.forget(incident_id)

    def over(self, inc: Any, begun: float, ci: str | None = None) -> bool:
        """The incident's fault was over before an alert that `begun` then: every one of its
        alerts had ended, the last more than `symptom_lag` before (a fault's symptoms begin
        while it lasts), and none of them flapped (a flapping incident waits before it
        resolves: its fault may well go on). Its last end is kept per incident revision
        once none fires (a member firing again makes a new revision).

        `ci`: that of one of its own alerts firing again. Where the fault shows first (see
        `_front`), that is the fault itself going on: not over. Elsewhere, on a CI its fault
        had reached, it is a symptom that needs a fault going on as much as a new alert does,
        but for a business service's (an SLO's burn rate lags far behind the fault). Asked
        of the members last: the cheaper questions rule most incidents out first."""
        firing = getattr(inc, "any_firing", None)
        if (firing is not None and firing()) or _get(inc, "flapping"):
            return False
        iid = _get(inc, "id")
        revision = _get(inc, "revision")
        known = self._ended.get(iid)
        if firing is not None and known is not None and known[0] == revision and known[1] is inc:
            last = known[2]
        else:
            last = None
            for _, m in _members(inc):
                if _get(m, "status") != "resolved":
                    return False
                end = _ended_at(m)
                if last is None or end > last:
                    last = end
            if firing is not None and revision is not None:
                remember(self._ended, iid, (revision, inc, last), 20_000)
        if last is None or begun - last <= self.model.symptom_lag:
            return False
        if ci is not None:
            root = _get(inc, "root_cause")
            if root is None or self._business(ci):
                return False
            if len(_get(inc, "alerts", ())) < 2 or ci in self._front_of(inc, root):
                return False
        return True

    def _front_of(self, inc: Any, root: str) -> set[str]:
        """`_front` of the incident's members, kept per incident revision: after a fault is
        over, each of thousands of its symptoms may fire again and ask (letting one go
        leaves the revision as it is)."""
        iid = _get(inc, "id")
        revision = _get(inc, "revision")
        known = self._fronts.get(iid)
        if revision is not None and known is not None and known[:3] == (revision, inc, root):
            return known[3]
        front = self._front(root, list(_members(inc)))
        if revision is not None:
            remember(self._fronts, iid, (revision, inc, root, front), 20_000)
        return front

    def _active(self, inc: Any, now: float, window: float, ci: str, ev: Evidence) -> bool:
        """Still gathering symptoms: a new alert within `window`, opened within `max_span`.
        Later, a CI still firing in the incident (or only just resolved: alerts flap) keeps
        collecting its own late alerts when they say no more than its earlier ones (a node
        down, then not ready), but for one that only reported its own resources there: CPU
        throttling or a filling disk rarely causes errors (see `FaultModel.resource_spreads`),
        and errors that come later are another fault's. A CI still down in it (a cause kind
        of alert, firing) collects those of the CIs above it, within `max_hops`."""
        opened = _num(_get(inc, "opened_at"), now)
        if now - opened > self.config.max_span:
            return False
        last = _num(_get(inc, "last_alert_at"), opened)
        if now - last <= window:
            return True
        # a quiet incident with no member on `ci` or within `max_hops` below it is not,
        # whatever its members' states: ruled out by the CIs of its evidence (those of
        # all its members in the CMDB, kept per revision) without looking through them
        topo = self.topology
        below = topo.below(ci)
        hops = self.config.max_hops
        weights = self.evidence(inc)
        near = topo.below_within(ci, hops)
        if not (any(x in weights for x in near) if len(near) < len(weights)
                else any(below.get(x, hops + 1) <= hops for x in weights)):
            return False
        on = self._members_on(inc)
        own = on.get(ci, ())
        own_kind = max((self.kinds.weight(_get(m, "labels", {}) or {}) for m in own), default=0.0)
        if own and ev.kind <= own_kind and (own_kind != RESOURCE or ev.kind == RESOURCE) and any(
            _get(m, "status") == "firing" or now - _num(_get(m, "last_at"), 0.0) <= window for m in own
        ):
            return True
        # its fault goes on below the new alert's CI, and reaches dependents as late as
        # their own `for:` delays make them alert
        weight = self.kinds.weight
        return any(_get(m, "status") == "firing" and weight(_get(m, "labels", {}) or {}) == CAUSE
                   for x, members in on.items() if 0 < below.get(x, hops + 1) <= hops for m in members)

    def _reason(self, ci: str, weights: dict[str, Evidence], hyp: Any, topo: Topology) -> str:
        root = hyp.ci
        if ci in weights:
            return f"{ci} already has alerts in this incident"
        if root == ci:
            return f"a fault at {ci} explains this incident's alerts on " + ", ".join(sorted(weights)[:4])
        hops = topo.below(ci).get(root, 0)
        path = describe_path(topo.cmdb.dependency_path(ci, root, max(hops, 1)) or [])
        head = f"{ci} depends on {root} ({hops} hop{'s' if hops != 1 else ''}), the likely root cause"
        return f"{head}: {path}" if path else head

    # -- analysis --------------------------------------------------------

    def analyze(self, incident: Any, now: float, incidents: Any = None) -> Analysis:
        """Root cause, ranked candidates, impact and explanation of `incident`. With the
        open `incidents`, a fault that began near the same time in one of them is a candidate
        too, when the CMDB could lack the dependency it would take (`_from_elsewhere`)."""
        topo = self.topology
        weights = self.evidence(incident)
        if not weights:
            return self.fallback.analyze(incident, now)
        ex = self.explainer
        ranked = ex.rank(weights, limit=ex.max_candidates)
        if incidents is not None and ranked and ranked[0].alerted:
            ranked = self._from_elsewhere(incident, weights, ranked, incidents)
        scores = normalised_scores(ranked)
        top = ranked[: max(self.config.candidates, 1)]
        candidates = [{"ci": h.ci, "score": s, "why": self._why(h, weights)}
                      for h, (_, s) in zip(top, scores, strict=False)]
        root = top[0]
        iid = _get(incident, "id")
        # a cause elsewhere reaches the alerts through the CI it reads as its dependent
        base = root.explained[0] if root.outside else root.ci
        imps = self._impacts  # (made with the topology)
        imp = impacted(base, weights, topo) if iid is None or imps is None else imps.of(iid, base, weights)
        if root.outside:
            imp = with_first(base, imp, topo)
        explanation = f"root cause {candidates[0]['why']}"
        if len(top) > 1:
            explanation += f" (next: {top[1].ci}, {candidates[1]['score']:.2f} vs {candidates[0]['score']:.2f})"
        if imp:
            explanation += f"; impacts {', '.join(imp[:5])}" + (f" and {len(imp) - 5} more" if len(imp) > 5 else "")
        rereads: list[str] = []
        if incidents is not None and root.alerted and not root.outside and root.ci != _get(incident, "root_cause"):
            rereads = self._read_elsewhere(incident, root.ci, weights, incidents)
        return Analysis(
            root_cause=root.ci,
            candidates=candidates,
            impacted=imp,
            explanation=explanation,
            priority=impact_priority(root.ci, imp, topo.cmdb),
            detach=self._unexplained(incident, root, weights),
            rereads=rereads,
        )

    def _from_elsewhere(self, incident: Any, weights: Weights, ranked: list[Hypothesis],
                        incidents: Any) -> list[Hypothesis]:
        """`ranked` with the root causes of open incidents whose fault began up to
        `coincidence` before or after this incident's alerts, on a CI that its root cause
        (an alerting CI) could depend on without the CMDB recording it (`DependencyShapes`):
        a stale CMDB splits one fault into two incidents, and the second one's alerts
        then come from the first one's root. A root's own alerts may well come last (a
        crash shows as its dependents' errors at once, as its own pods' state only after
        longer `for:` delays), so the cause may have opened after this incident; it then
        asks for this one to be ranked again (`_read_elsewhere`). Scored by
        `Explainer.through_unrecorded`."""
        opened_recently = getattr(incidents, "opened_recently", None)
        if opened_recently is None:
            return ranked
        top = ranked[0]
        base = top.ci
        first = min(ev.first_at for ev in weights.values())
        window = self.model.coincidence
        iid = _get(incident, "id")
        found: dict[str, Hypothesis] = {}
        for other in opened_recently(first - window, OTHERS_LOOKED_AT):
            cause = other.root_cause
            if cause is None or cause in weights or cause in found or other.id == iid \
                    or not self._could_lack(base, cause):
                continue
            ev = self.evidence(other).get(cause)
            if ev is None or abs(first - ev.first_at) > window:
                continue  # (its root raised no alert of its own, or not near these alerts' time)
            minutes = abs(first - ev.first_at) / 60
            when = f"from {minutes:.0f} min before" if ev.first_at <= first else f"since {minutes:.0f} min after"
            found[cause] = self.explainer.through_unrecorded(
                top, weights, cause, ev, self.topology.shapes.choices(base),
                f"alerting in {other.id} {when}; {base} may depend on it without the CMDB recording it")
        if not found:
            return ranked
        # (a stable sort: ties keep the ranking's order, the candidates from elsewhere after)
        return sorted([*ranked, *found.values()], key=lambda h: -round(h.loglik, 9))

    def _read_elsewhere(self, incident: Any, root: str, weights: Weights, incidents: Any) -> list[str]:
        """The other open incidents whose ranking this one's root cause, an alerting CI new
        to it, joins as a cause from elsewhere (see `_from_elsewhere`): their alerts began
        within `coincidence` of its own, on a root that could depend on it without the
        CMDB recording it. Those opened before it had no such candidate when they were
        last ranked."""
        opened_recently = getattr(incidents, "opened_recently", None)
        if opened_recently is None:
            return []
        at = weights[root].first_at
        window = self.model.coincidence
        iid = _get(incident, "id")
        out = []
        for other in opened_recently(at - window, OTHERS_LOOKED_AT):
            base = other.root_cause
            if other.id == iid or base is None or not self._could_lack(base, root):
                continue
            theirs = self.evidence(other)
            if base in theirs and abs(min(ev.first_at for ev in theirs.values()) - at) <= window:
                out.append(other.id)
        return out

    def _could_lack(self, base: str, cause: str) -> bool:
        """Whether `base` could depend on `cause` over a dependency the CMDB lacks: one of a
        kind it records (`DependencyShapes.could_depend`), between CIs it relates by no
        dependency path either way (within the topology's depth)."""
        topo = self.topology
        return topo.shapes.could_depend(base, cause) and cause not in topo.below(base) \
            and base not in topo.below(cause)

    def _business(self, ci: str | None) -> bool:
        """Whether `ci` is a business service (whose SLO alerts lag behind a fault)."""
        item = self.topology.cmdb.cis.get(ci) if ci is not None else None
        return item is not None and item.business_service

    def _front(self, root: str, members: list[tuple[str, Any]]) -> set[str]:
        """Where a fault at `root` shows first among an incident's members: on the root, or,
        for a root that raised no alert (a partitioned network, a database slow below its
        own thresholds), on the CIs right above it."""
        if any(_get(m, "ci") == root for _, m in members):
            return {root}
        below = self.topology.below
        return {c for _, m in members if (c := _get(m, "ci")) is not None and below(c).get(root) == 1}

    def outlasting(self, incident: Any) -> tuple[float, float, list[str]] | None:
        """When the fault of `incident` ended, when the alerts still firing after it stop
        being read as its symptoms, and those alerts. The fault ended with the last alert
        on its root cause, or, for a root that raised none (a partitioned network, a
        database slow below its own thresholds), on the CIs right above it, where it
        showed first. Its symptoms clear with it, within `recovery_grace` (a caller's
        errors stop once the database answers again); an alert firing on past that was
        noise, or another fault, that began near this one. But for a business service's:
        an SLO's burn rate is measured over windows of an hour and more, and its alert
        may well outlast the fault that burnt the budget. None while the fault still
        alerts, or when nothing tells when it ended."""
        root = _get(incident, "root_cause")
        if root is None:
            return None
        members = list(_members(incident))
        front = self._front(root, members)
        cleared: float | None = None
        lingering = []
        for fp, m in members:
            ci = _get(m, "ci")
            if ci in front:
                if _get(m, "status") == "firing":
                    return None
                end = _ended_at(m)
                cleared = end if cleared is None else max(cleared, end)
            elif _get(m, "status") == "firing" and not _get(m, "kept_by") and not self._business(ci):
                lingering.append(fp)
        if cleared is None or not lingering:
            return None
        return cleared, cleared + self.model.recovery_grace, lingering

    def _unexplained(self, incident: Any, root: Any, weights: dict[str, Evidence]) -> list[str]:
        """Weak alerts (not critical) that the root cause leaves unexplained while it explains
        several CIs: noise that happened to arrive nearby."""
        if len(root.explained) + (1 if root.alerted else 0) < 2 or not root.unexplained:
            return []
        weak = {ci for ci in root.unexplained if weights[ci].noise >= self.model.noise}
        return [fp for fp, m in _members(incident) if _get(m, "ci") in weak]

    def _why(self, h: Any, weights: dict[str, Evidence]) -> str:
        parts = []
        n = len(weights)
        covered = len(h.explained) + (1 if h.alerted and not h.outside else 0)
        if n > 1:
            parts.append(f"explains {covered} of {n} alerting CIs" if covered < n else f"explains all {n} alerting CIs")
        if h.outside:
            parts.append(h.outside)
        elif h.alerted:
            kind = self.kinds_name(weights[h.ci].kind)
            parts.append(f"its own alerts are {kind} alerts")
        else:
            parts.append("it raised no alert of its own" + (f" and {h.quiet} of its dependents are quiet" if h.quiet else ""))
        if h.change:
            parts.append(h.change)
        return f"{h.ci}: " + "; ".join(parts)

    @staticmethod
    def kinds_name(weight: float) -> str:
        return KIND_NAMES.get(weight, "state")


def correlator_from_config(
    cmdb: Callable[[], Cmdb] | Cmdb, section: Mapping[str, Any] | None, fallback: Any = None
) -> TopologyCorrelator:
    return TopologyCorrelator(cmdb, CorrelationConfig.from_mapping(section), fallback)


__all__: Sequence[str] = ("CorrelationConfig", "TopologyCorrelator", "correlator_from_config")
