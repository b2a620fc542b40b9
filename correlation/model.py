"""How well a fault at one CI explains a set of alerting CIs: a small likelihood model.

A fault at a root CI `R` shows up on `R` itself and spreads to the CIs that
depend on `R`, hop by hop, each hop with some probability. Alerts that the
fault cannot explain are noise, or travelled along a dependency the CMDB does
not know about (real CMDBs go stale). So for a hypothesis `R`:

    log L(R) = log prior(R)
             + sum over alerting CIs X of log P(X's alerts | fault at R)
             + for an unalerted R, log P(its direct dependents stay quiet)

- `prior`: a failing component usually raises an alert of its own; a root
  without one (a partitioned network, a database slow below its thresholds)
  is possible but needs the evidence of several dependents.
- `X == R`: the kind of `R`'s own alerts: an instance down or a full disk says
  "this CI is broken" more than high latency does (kinds.py).
- `X` depends on `R`: one factor per hop from the nearest explained CI below
  `X` (the fault travels through the alerting CIs between), times how
  typical `X`'s alert is for a symptom of something below it. The CIs on
  those hops stayed quiet: one of them is common (a node passing a network
  partition on to the databases on it, a service whose own alert did not
  fire), but a fault that crossed several quiet CIs in a row to reach `X`
  is not, so each one after the first costs `relay`.
- otherwise: noise or a dependency the CMDB lacks, `noise`.
- a change recorded on `R` shortly before the first alert (a deploy, a node
  drain) multiplies the prior by the likelihood ratio of seeing it: a fault
  follows a change on its root in `after_change` of cases, while a given CI
  has such a change at a random moment only as often as the recorded changes'
  base rate says (few changes on many CIs: strong evidence; changes
  everywhere all the time: none).

Grouping uses the same numbers: an alert joins an incident when one fault
explaining both is more likely than two independent faults (`new_fault` is
the prior odds of a second, unrelated fault starting at the same time).
Model selection with one small set of probabilities, rather than a weighted
sum of hand-picked features, keeps the knobs few and their meaning plain.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from itertools import chain
from operator import add, itemgetter

from correlation.kinds import CAUSE, RESOURCE, STATE, SYMPTOM
from correlation.topology import Budgeted, Topology, remember

# up to this many CIs reached, the nearest explained CI below each next one is looked for
# among them all; past it, hop by hop below that CI (see `Explainer.score`)
FEW_REACHED = 8

# remembered rankings hold at most this many alerting CIs in their keys in all (about 10 MB):
# a key holds the evidence of every alerting CI, and an incident of a thousand CIs would
# otherwise keep one such key for each alert it gained
RANKED_CIS = 100_000

# from this many alerting CIs, a score is kept in its parts and worked out from them when
# the CIs grow by one (see `Explainer._grown`); the parts kept hold at most `PARTS_CIS`
# CIs in all
PARTS_FROM = 48
PARTS_CIS = 100_000


@dataclass(frozen=True, slots=True)
class FaultModel:
    """The probabilities of the model; each has a plain meaning."""

    propagate: float = 0.7  # a fault crosses one more dependency hop and is alerted on
    silent_root: float = 0.1  # a root raises no alert of its own
    quiet_dependent: float = 0.6  # a direct dependent of an unalerted root stays quiet
    noise: float = 0.02  # an alert the hypothesis cannot explain is noise or an unknown dependency
    noise_info: float = 0.25  # ... much more often so for an info-level alert
    noise_resource: float = 0.25  # ... or a resource condition (throttling, a filling disk)
    noise_critical: float = 0.01  # ... and less often for a critical one
    new_fault: float = 0.05  # prior odds of a second, unrelated fault starting meanwhile
    # a fault follows a change recorded on its root CI (a deploy, a config push, a node
    # drain): one in five, a cautious reading of how many outages changes cause
    after_change: float = 0.2
    settle: float = 300.0  # seconds: a fault's symptoms follow each other within a few of these
    coincidence: float = 600.0  # two unrelated faults starting closer than this are proportionally rarer
    delay_grace: float = 600.0  # a dependent alerting this long after what it depends on is still typical
    delay_scale: float = 600.0  # beyond the grace, each such span more halves... (e-folds) the likelihood
    # a fault's symptoms clear with it: a caller's errors stop within minutes of the
    # database answering again, though each hop back takes a while (a rate over five
    # minutes falling below its threshold, then Alertmanager's next group_interval). An
    # alert still firing this long after the fault's own alerts resolved is not the
    # fault's (see `TopologyCorrelator.outlasting`)
    recovery_grace: float = 1200.0
    # ... and they begin while it lasts: a dependent's alert may begin a little after the
    # fault's alerts ended (an error rate averaged over a minute or two stays above its
    # threshold that much longer; a flapping root's alert is resolved between its flaps),
    # not later. An alert beginning later than this after every alert of an incident
    # ended is not that incident's fault (see `TopologyCorrelator.over`)
    symptom_lag: float = 120.0
    own_cause: float = 0.9  # the root's own alerts, by kind
    own_state: float = 0.7
    own_resource: float = 0.6
    own_symptom: float = 0.5
    dep_cause: float = 0.5  # a dependent's alerts, by kind: errors and latency are what
    dep_state: float = 0.8  # dependents show; their own resources rarely suffer
    dep_resource: float = 0.2
    dep_symptom: float = 1.0
    # the chance that a root whose alerts all report its own resources (throttling, a
    # filling disk, a busy node) is nonetheless what its dependents' alerts come from:
    # such conditions rarely travel along dependencies (see `correlation.kinds`)
    resource_spreads: float = 0.2
    # a fault passes through one more quiet CI (no alert of its own) on its way to an
    # alerting dependent, beyond the first such CI (see the module docstring): without
    # it, a CI deep below a busy part of the graph explains concurrent faults above it
    # through long quiet chains as one
    relay: float = 0.5
    # a CI depends on one more CI than the CMDB records, one of those it could depend on
    # (of the types CIs of its type depend on, in its partition), each as likely. Kept
    # low: faults at nearby CIs that start within minutes of each other happen in any busy
    # system, and reading one as the cause of the other must not outrank an incident's
    # own root that explains its alerts, unless they started seconds apart (see
    # `Explainer.through_unrecorded`)
    unknown_dependency: float = 0.04

    def own(self, kind: float) -> float:
        return {CAUSE: self.own_cause, STATE: self.own_state, RESOURCE: self.own_resource,
                SYMPTOM: self.own_symptom}.get(kind, self.own_state)

    def dep(self, kind: float) -> float:
        return {CAUSE: self.dep_cause, STATE: self.dep_state, RESOURCE: self.dep_resource,
                SYMPTOM: self.dep_symptom}.get(kind, self.dep_state)

    def noise_for(self, severity: str | None, kind: float | None = None) -> float:
        """How likely an alert is unrelated to any fault, by severity and kind."""
        sev = (severity or "").lower()
        if sev in ("critical", "page", "error", "high"):
            p = self.noise_critical
        elif sev in ("info", "none", "low", "debug"):
            p = self.noise_info
        else:
            p = self.noise
        return max(p, self.noise_resource) if kind == RESOURCE else p


@dataclass(frozen=True, slots=True)
class Evidence:
    """What an alerting CI's alerts say: the strongest kind, and how likely they are noise."""

    kind: float
    noise: float
    onsets: tuple[float, ...] = (0.0,)  # when its alerts began firing, ascending, each time once
    resource_only: bool = False  # every alert on the CI is of kind RESOURCE
    # worked out once: rankings are remembered by the evidence of every alerting CI, and
    # a CI of a large incident has many onsets
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.kind, self.noise, self.onsets, self.resource_only)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def first_at(self) -> float:
        return self.onsets[0]

    def onset_before(self, t: float) -> float | None:
        """The latest onset at or before `t` (what a dependent alerting at `t` followed)."""
        best = None
        for o in self.onsets:
            if o <= t:
                best = o
        return best

    def stronger(self, other: Evidence | None) -> Evidence:
        if other is None:
            return self
        onsets = self.onsets if other.onsets == self.onsets else tuple(sorted({*self.onsets, *other.onsets}))
        return Evidence(max(self.kind, other.kind), min(self.noise, other.noise), onsets,
                        self.resource_only and other.resource_only)

    @staticmethod
    def of_all(found: Sequence[Evidence]) -> Evidence:
        """What `stronger` folds the evidence of several alerts on one CI to, in one pass:
        a CI with thousands of alerts (the pods of a big deployment) costs no more than
        sorting their onsets once."""
        if len(found) == 1:
            return found[0]
        return Evidence(max(e.kind for e in found), min(e.noise for e in found),
                        tuple(sorted({o for e in found for o in e.onsets})), all(e.resource_only for e in found))


@dataclass(slots=True)
class Hypothesis:
    ci: str
    loglik: float
    explained: list[str]
    unexplained: list[str]
    alerted: bool
    quiet: int  # direct dependents that stay quiet (unalerted roots only)
    change: str = ""  # the recorded change on the CI shortly before, when one counted
    change_bonus: float = 0.0  # what it added to `loglik`
    # a root outside the incident: how its fault would reach the incident's alerts (see
    # `Explainer.through_unrecorded`)
    outside: str = ""

    def explains_any(self, cis: Iterable[str]) -> bool:
        """Whether this fault explains one of `cis` (as its root or a dependent)."""
        return not {self.ci, *self.explained}.isdisjoint(cis)


class Weights(dict[str, Evidence]):
    """An incident's alerting CIs with their evidence, never changed once made (as
    `TopologyCorrelator.evidence` gives them). The items that rankings are remembered
    by (`Explainer._key`) are worked out once for them, and the weights one alert later
    (`Weights.adding`) take them over with that alert's CI changed: a large incident's
    next alert does not hash every CI's evidence again. (`noise`: see `Explainer.noise_of`.)"""

    __slots__ = ("items_key", "noise")
    items_key: frozenset[tuple[str, Evidence]]
    noise: float

    @staticmethod
    def union(first: Mapping[str, Evidence], *others: Mapping[str, Evidence]) -> Weights:
        """The evidence of several alert sets together (the stronger where a CI is in
        several). When `first` is `Weights` with its items worked out, the union's are
        derived from them (`first` is most often the largest: an incident, or the
        incidents merged so far)."""
        out = Weights(first)
        was: dict[str, Evidence | None] = {}  # the CIs that changed, with what `first` had
        for weights in others:
            for x, w in weights.items():
                old = out.get(x)
                out[x] = new = w.stronger(old)
                if new != old and x not in was:
                    was[x] = old
        known: frozenset[tuple[str, Evidence]] | None = getattr(first, "items_key", None)
        if known is not None:
            gone = {(x, old) for x, old in was.items() if old is not None}
            out.items_key = (known - gone) | {(x, out[x]) for x in was} if was else known
        return out

    def adding(self, ci: str, ev: Evidence) -> Weights:
        """These weights with the alert `ev` on `ci` added (`ev.stronger` than what `ci` had)."""
        return Weights.union(self, {ci: ev})


class Census(dict[str, int]):
    """`Explainer.census` of a set of alerting CIs, with the candidates among them once
    `Explainer.candidates` picked them: they depend on that set alone."""

    __slots__ = ("candidates",)
    candidates: list[str]


def _items_key(weights: Mapping[str, Evidence]) -> frozenset[tuple[str, Evidence]]:
    """`frozenset(weights.items())`, worked out once for `Weights`."""
    got: frozenset[tuple[str, Evidence]] | None = getattr(weights, "items_key", None)
    if got is None:
        got = frozenset(weights.items())
        if isinstance(weights, Weights):
            weights.items_key = got
    return got


# (log-likelihood bonus, description) of a recorded change on `ci` shortly before a
# fault whose first alert came at `at`; None when there is none
ChangeLookup = Callable[[str, float], "tuple[float, str] | None"]


@dataclass(slots=True)
class _Parts:
    """`Explainer.score` of one root kept in the parts it adds up, in the order it adds
    them: the score for one more alerting CI is then worked out from them, and adding
    them up again in that order gives the very number `score` gives for the CIs in the
    order they joined (see `Explainer._grown`)."""

    alerted: bool
    first: list[float]  # the prior of a silent root, then (in the alerts' order) the root's own
    # alerts and each unexplained CI's noise
    unexplained: list[str]
    order: list[tuple[int, str]]  # the explained CIs by (hops below them to the root, name)
    follows: dict[str, tuple[int, str]]  # explained CI -> (hops to the CI it follows, that CI)
    terms: dict[str, tuple[float, ...]]  # explained CI -> what it adds
    start: float  # the first onset among the explained CIs
    direct: int  # explained CIs one hop above the root


_second = itemgetter(1)


class Explainer:
    """Scores root hypotheses for a set of alerting CIs on a `Topology`."""

    def __init__(self, topo: Topology, model: FaultModel | None = None, max_candidates: int = 64) -> None:
        self.topo = topo
        self.model = model or FaultModel()
        self.max_candidates = max_candidates
        self.silent_reach = 2  # hops below an alerting CI where a silent root is looked for
        self.full_scores = 12  # candidates scored exactly at most, best by the quick estimate
        self.keep = 5  # the top places a full ranking gets right (analysis lists candidates)
        self._log: dict[float, float] = {}
        # rankings and how many of their places are exact, sized by the alerting CIs in their keys
        self._ranked: Budgeted[tuple, tuple[list[Hypothesis], int]] = Budgeted(RANKED_CIS, 4096)
        self.changes: ChangeLookup | None = None  # see `_change_bonus`
        self.changes_version: Callable[[], int] = lambda: 0  # moves when a change is recorded
        self._census: dict[frozenset[str], Census] = {}
        # (ranking key, root) -> its score's parts, sized by the alerting CIs they hold
        self._parts: Budgeted[tuple[tuple, str], _Parts] = Budgeted(PARTS_CIS, 4096)
        m = self.model
        kinds = (CAUSE, STATE, RESOURCE, SYMPTOM)
        self._ln_own = {k: self._ln(m.own(k)) for k in kinds}
        self._ln_dep = {k: self._ln(m.dep(k)) for k in kinds}

    def _ln(self, p: float) -> float:
        v = self._log.get(p)
        if v is None:
            v = self._log[p] = math.log(max(p, 1e-12))
        return v

    def census(self, cis: frozenset[str]) -> Census:
        """The possible roots of a fault behind `cis` (the CIs themselves and what lies
        within `silent_reach` below each) with how many of `cis` each explains.
        Remembered per set of CIs: it changes only when a new CI starts alerting."""
        got = self._census.get(cis)
        if got is None:
            topo = self.topo
            pool: set[str] = set(cis)
            for x in cis:
                pool.update(topo.below_within(x, self.silent_reach))
            got = self._explaining(pool, cis)
            remember(self._census, cis, got, 8192)
        return got

    def census_with(self, cis: frozenset[str], ci: str) -> Census:
        """`census(cis | {ci})`, worked out from `census(cis)`."""
        if ci in cis:
            return self.census(cis)
        key = cis | {ci}
        got = self._census.get(key)
        if got is None:
            topo = self.topo
            known = self.census(cis)
            got = Census(known)
            for r in topo.below(ci).keys() & known.keys():
                got[r] += 1
            new = [r for r in topo.below_within(ci, self.silent_reach) if r not in got]
            got.update(self._explaining(new, key))
            remember(self._census, key, got, 8192)
        return got

    def _explaining(self, roots: Iterable[str], cis: frozenset[str]) -> Census:
        """How many of `cis` each of `roots` lies below: one pass per CI's closure, or,
        with fewer roots than CIs (a CI joining a large incident), one look per root at
        what depends on it (`r` lies below `x` exactly when `x` lies above `r`)."""
        got = Census(dict.fromkeys(roots, 0))
        if len(got) < len(cis):
            above = self.topo.above
            for r in got:
                over = above(r)
                got[r] = len(cis & over.keys()) + (r in cis and r not in over)
            return got
        for x in cis:
            below = self.topo.below(x)
            # through whichever is smaller: the roots, or what x depends on
            if len(got) <= len(below):
                under = [r for r in got if r in below]
            else:
                under = [r for r in below if r in got]
            for r in under:
                got[r] += 1
        return got

    def candidates(self, weights: Mapping[str, Evidence], count: Mapping[str, int] | None = None) -> list[str]:
        """The CIs worth scoring: alerting CIs, and unalerted CIs close below them that
        explain two of them (or the only one). An alert left unexplained costs far more
        than a hop or a weaker kind of alert, so only CIs explaining nearly as many
        alerting CIs as the best can win. `count`: the census of `weights`' CIs; the
        candidates are kept with it."""
        if count is None:
            count = self.census(frozenset(weights))
        known: list[str] | None = getattr(count, "candidates", None)
        if known is not None:
            return known
        top = max(count.values())
        need = max(2 if len(weights) > 1 else 1, top - 1)
        out = [r for r, n in count.items() if (r in weights and n >= top - 2) or n >= need]
        if len(out) > self.max_candidates:
            # most alerting CIs explained first, then alerting CIs, then by name (stable
            # sorts with keys in C: this runs for every new alert near a hub)
            out.sort()
            out = [r for r in out if r in weights] + [r for r in out if r not in weights]
            out.sort(key=count.__getitem__, reverse=True)
            out = out[: self.max_candidates]
        if isinstance(count, Census):
            count.candidates = out
        return out

    def _bounds(self, roots: list[str], weights: Mapping[str, Evidence],
                belows: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
        """Quick optimistic estimates of `score` for many roots: each explained CI pays at
        most its own distance (the exact score lets it pay from a nearer explained CI),
        no delays and no quiet CIs relaying, and an unalerted root pays for the direct
        dependents that cannot all be alerting. Written as what explaining each alerting
        CI gains over calling it noise."""
        silent = self._ln(self.model.silent_root)
        quiet = self._ln(self.model.quiet_dependent)
        n = len(weights)
        dependents = self.topo.cmdb.dependent_count
        prop = self._ln(self.model.propagate)
        base = 0.0
        gains = []
        for x, ev in weights.items():
            noise = self._ln(ev.noise)
            base += noise
            gains.append((x, belows[x], prop + self._ln_dep.get(ev.kind, self._ln_dep[STATE]) - noise,
                          self._ln_own.get(ev.kind, self._ln_own[STATE]) - noise))
        out = {}
        for r in roots:
            total = base if r in weights else base + silent + max(0, dependents(r) - n) * quiet
            for x, below_x, as_dependent, as_root in gains:
                if x == r:
                    total += as_root
                elif r in below_x:
                    total += as_dependent
            out[r] = total
        return out

    def score(self, root: str, weights: Mapping[str, Evidence],
              belows: Mapping[str, Mapping[str, int]] | None = None) -> Hypothesis:
        """log L of a fault at `root` given the alerting CIs and their evidence."""
        m = self.model
        topo = self.topo
        if belows is None:
            belows = {x: topo.below(x) for x in weights}
        ln = self._ln
        alerted = root in weights
        total = 0.0 if alerted else ln(m.silent_root)
        explained: list[tuple[int, str]] = []
        unexplained: list[str] = []
        direct = 0  # alerting CIs that depend on root directly
        for x, ev in weights.items():
            if x == root:
                total += self._ln_own.get(ev.kind, self._ln_own[STATE])
                continue
            d = belows[x].get(root)
            if d is None:
                unexplained.append(x)
                total += ln(ev.noise)
            else:
                explained.append((d, x))
                direct += d == 1
        # each explained CI pays for the hops from the nearest explained CI below it,
        # and for arriving much later than that CI (a fault spreads in minutes, not hours)
        explained.sort()
        reached = [root]
        reached_set = {root}
        start = min((weights[x].onsets[0] for _, x in explained), default=0.0)
        term, followed = self._term, self._followed
        for d, x in explained:
            below_x = belows[x]
            # the nearest explained CI below x, by name on a tie: among those reached so
            # far, or, once a fault reached many CIs (where that would be quadratic), hop
            # by hop down from x, up to the root at `d` hops
            if len(reached) <= FEW_REACHED:
                hops, parent = d, root
                for y in reached:
                    h = below_x.get(y)
                    if h is not None and (h < hops or (h == hops and y < parent)):
                        hops, parent = h, y
            else:
                hops, parent = self._nearest(x, d, root, reached_set.__contains__)
            ev = weights[x]
            for v in term(ev, hops, followed(weights, parent, ev, start)):
                total += v
            reached.append(x)
            reached_set.add(x)
        if alerted and explained and weights[root].resource_only:
            total += ln(m.resource_spreads)
        quiet = 0
        if not alerted:
            quiet = topo.cmdb.dependent_count(root) - direct
            total += quiet * ln(m.quiet_dependent)
        return Hypothesis(root, total, [x for _, x in explained], unexplained, alerted, quiet)

    # -- a score in parts, grown by one alerting CI at a time ----------------------------
    #
    # A large incident gains its alerts one by one, and each new alert has the incident's
    # candidate roots scored again over all its alerting CIs. Kept in the parts `score`
    # adds up, the score with one more CI changes only where that CI enters: its own
    # part, the later CIs that now follow it, the CIs that follow a silent root when it
    # moves their first onset, and the count of quiet dependents.

    def _term(self, ev: Evidence, hops: int, followed: float | None) -> tuple[float, ...]:
        """What an explained CI adds to `score`, in the order it adds it: the `hops` from
        the CI it follows, the quiet CIs between them after the first, and arriving more
        than `delay_grace` after that CI's onset at or before its own first (`followed`)."""
        m = self.model
        out = [hops * self._ln(m.propagate) + self._ln_dep.get(ev.kind, self._ln_dep[STATE])]
        if hops > 2:
            out.append((hops - 2) * self._ln(m.relay))
        t = ev.onsets[0]
        if followed is not None and t - followed > m.delay_grace:
            out.append(-((t - followed - m.delay_grace) / m.delay_scale))
        return tuple(out)

    @staticmethod
    def _followed(weights: Mapping[str, Evidence], parent: str, ev: Evidence, start: float) -> float | None:
        """When what a CI with evidence `ev` follows began: the parent's onset at or before
        its first, or, for a silent root, the first onset among the explained CIs."""
        followed_ev = weights.get(parent)
        return followed_ev.onset_before(ev.onsets[0]) if followed_ev is not None else start

    def _nearest(self, x: str, d: int, root: str, reached: Callable[[str], bool]) -> tuple[int, str]:
        """The nearest CI below `x` that `reached` takes (the root, `d` hops below, always
        does), by name on a tie: as `score` finds it."""
        shells = self.topo.shells(x)
        return next((h, y) for h in range(1, d + 1) for y in shells[h] if y == root or reached(y))

    def _parts_of(self, root: str, weights: Mapping[str, Evidence]) -> _Parts:
        """`score`'s parts, from the start."""
        below = self.topo.below
        alerted = root in weights
        first = [] if alerted else [self._ln(self.model.silent_root)]
        unexplained: list[str] = []
        order: list[tuple[int, str]] = []
        direct = 0
        for x, ev in weights.items():
            if x == root:
                first.append(self._ln_own.get(ev.kind, self._ln_own[STATE]))
                continue
            d = below(x).get(root)
            if d is None:
                unexplained.append(x)
                first.append(self._ln(ev.noise))
            else:
                order.append((d, x))
                direct += d == 1
        order.sort()
        start = min((weights[x].onsets[0] for _, x in order), default=0.0)
        follows: dict[str, tuple[int, str]] = {}
        terms: dict[str, tuple[float, ...]] = {}
        for d, x in order:
            hops, parent = self._nearest(x, d, root, follows.__contains__)
            follows[x] = (hops, parent)
            terms[x] = self._term(weights[x], hops, self._followed(weights, parent, weights[x], start))
        return _Parts(alerted, first, unexplained, order, follows, terms, start, direct)

    def _grown(self, root: str, was: _Parts, weights: Mapping[str, Evidence], ci: str) -> _Parts | None:
        """The parts for `weights`, the CIs `was` is for and `ci` besides; None when `ci` is
        the root (everything changes)."""
        if ci == root:
            return None
        ev = weights[ci]
        d = self.topo.below(ci).get(root)
        if d is None:
            return _Parts(was.alerted, [*was.first, self._ln(ev.noise)], [*was.unexplained, ci], was.order,
                          was.follows, was.terms, was.start, was.direct)
        key = (d, ci)
        order = list(was.order)
        order.insert(bisect.bisect_left(order, key), key)
        follows, terms = dict(was.follows), dict(was.terms)
        start = min(was.start, ev.onsets[0]) if was.order else ev.onsets[0]
        below = self.topo.below

        def before(y: str) -> bool:
            """y is an explained CI ahead of `ci` in the order (reached before it)."""
            return y in follows and (below(y)[root], y) < key

        hops, parent = self._nearest(ci, d, root, before)
        follows[ci] = (hops, parent)
        terms[ci] = self._term(ev, hops, self._followed(weights, parent, ev, start))
        # the CIs after it in the order that now follow it: those above it, nearer than what
        # they followed (or as near and first by name)
        above = self.topo.above(ci)
        for x, h in (above.items() if len(above) <= len(was.follows) else
                     ((x, above[x]) for x in was.follows if x in above)):
            now = follows.get(x)
            if now is not None and (h, ci) < now and (below(x)[root], x) > key:
                follows[x] = (h, ci)
                terms[x] = self._term(weights[x], h, ev.onset_before(weights[x].onsets[0]))
        if start != was.start and root not in weights:  # those following the silent root follow `start`
            for x, (h, y) in follows.items():
                if y == root and x != ci:
                    terms[x] = self._term(weights[x], h, start)
        return _Parts(was.alerted, was.first, was.unexplained, order, follows, terms, start, was.direct + (d == 1))

    def _restated(self, was: _Parts, weights: Mapping[str, Evidence], ci: str, old: Evidence) -> _Parts | None:
        """The parts for `weights`, where `ci` alerted again since `was` (its evidence was
        `old`): when that only added later onsets, only what the CIs following `ci` pay
        for arriving late changes. None when its kind, noise or first onset changed."""
        new = weights[ci]
        if (new.kind, new.noise, new.onsets[0]) != (old.kind, old.noise, old.onsets[0]):
            return None
        terms = None
        for x, (h, y) in was.follows.items():
            if y == ci:
                if terms is None:
                    terms = dict(was.terms)
                terms[x] = self._term(weights[x], h, new.onset_before(weights[x].onsets[0]))
        if terms is None:
            return was
        return _Parts(was.alerted, was.first, was.unexplained, was.order, was.follows, terms, was.start, was.direct)

    def _hypothesis(self, root: str, parts: _Parts, weights: Mapping[str, Evidence]) -> Hypothesis:
        """The hypothesis `score` gives, from its parts, added up in its order."""
        m = self.model
        explained = list(map(_second, parts.order))
        extra: list[float] = []
        if parts.alerted and explained and weights[root].resource_only:
            extra.append(self._ln(m.resource_spreads))
        quiet = 0
        if not parts.alerted:
            quiet = self.topo.cmdb.dependent_count(root) - parts.direct
            extra.append(quiet * self._ln(m.quiet_dependent))
        total = reduce(add, chain(parts.first, chain.from_iterable(map(parts.terms.__getitem__, explained)), extra),
                       0.0)
        return Hypothesis(root, total, explained, list(parts.unexplained), parts.alerted, quiet)

    def _score_kept(self, root: str, weights: Mapping[str, Evidence], key: tuple,
                    grown_from: tuple[tuple, str, Evidence | None] | None) -> Hypothesis:
        """`score`, kept in its parts under the ranking key of `weights`, and worked out
        from the parts kept for the alerts before the last one when there are some
        (`grown_from`: their ranking key, the last alert's CI and what that CI's alerts
        said before, None for a CI new to them)."""
        parts = None
        if grown_from is not None:
            prev_key, ci, old = grown_from
            was = self._parts.get((prev_key, root))
            if was is not None:
                parts = self._grown(root, was, weights, ci) if old is None else self._restated(was, weights, ci, old)
        if parts is None:
            parts = self._parts_of(root, weights)
        self._parts.put((key, root), parts, len(weights))
        return self._hypothesis(root, parts, weights)

    def rank(self, weights: Mapping[str, Evidence], limit: int = 10) -> list[Hypothesis]:
        """Hypotheses best first; ties go to an alerted CI, then to the one that alerted
        first. The first `min(limit, keep)` are exact; later ones are the rest of what
        was scored. Remembered per set of alerting CIs: grouping asks about the same
        incident again and again, and analysis asks right after grouping did."""
        if not weights:
            return []
        need = max(1, min(limit, self.keep))
        key = self._key(weights)
        got = self._ranked.get(key)
        if got is None or got[1] < need:
            got = self._ranked.put(key, (self._scored(weights, self.candidates(weights), need, key), need), len(weights))
        return got[0][:limit]

    def _scored(self, weights: Mapping[str, Evidence], cands: list[str], keep: int,
                key: tuple | None = None, grown_from: tuple[tuple, str, Evidence | None] | None = None
                ) -> list[Hypothesis]:
        """The best `keep` candidates scored exactly, best first (of at most `full_scores`
        tried, in the order of the quick estimate). Branch and bound: the estimate never
        falls below the exact score, so once it drops under the `keep`-th best exact
        score no later candidate can enter that top. From `PARTS_FROM` alerting CIs,
        scores are kept in parts under the ranking `key` of `weights` (see `_score_kept`)."""
        kept = key if key is not None and len(weights) >= PARTS_FROM else None  # (the key scores are kept under)
        belows = {} if kept is not None else {x: self.topo.below(x) for x in weights}  # (kept scores go without)
        changed = self._change_bonus(cands, weights)

        def exact(r: str) -> Hypothesis:
            h = self._score_kept(r, weights, kept, grown_from) if kept is not None else self.score(r, weights, belows)
            if r in changed:
                bonus, h.change = changed[r]
                h.loglik += bonus
                h.change_bonus = bonus
            return h

        if len(cands) <= keep:
            return self._ordered([exact(r) for r in cands], weights)
        bound = self._bounds(cands, weights, belows or {x: self.topo.below(x) for x in weights})
        for r, (bonus, _) in changed.items():
            bound[r] += bonus
        hyps: list[Hypothesis] = []
        top: list[float] = []  # the best `keep` exact scores so far, ascending
        for r in sorted(cands, key=lambda r: (-bound[r], r))[: self.full_scores]:
            if len(top) == keep and bound[r] < top[0]:
                break
            h = exact(r)
            hyps.append(h)
            bisect.insort(top, h.loglik)
            if len(top) > keep:
                top.pop(0)
        return self._ordered(hyps, weights)

    @staticmethod
    def _ordered(hyps: list[Hypothesis], weights: Mapping[str, Evidence]) -> list[Hypothesis]:
        hyps.sort(key=lambda h: (-round(h.loglik, 9), not h.alerted,
                                 weights[h.ci].first_at if h.alerted else math.inf, h.ci))
        return hyps

    def _key(self, weights: Mapping[str, Evidence]) -> tuple:
        """What a ranking depends on: the evidence and the changes recorded so far. For
        one alerting CI its onset matters only through the changes recorded shortly
        before it on the candidates, so those stand for it: every new incident is one
        alerting CI at first, and the CIs that alert recur, while their onsets do not."""
        version = self.changes_version()
        if len(weights) == 1:
            ((ci, ev),) = weights.items()
            alone = frozenset(((ci, ev.kind, ev.noise),))
            if not version:
                return (alone, 0)
            return (alone, tuple(sorted(self._change_bonus(self.candidates(weights), weights).items())))
        return (_items_key(weights), version)

    def _change_bonus(self, cands: Iterable[str], weights: Mapping[str, Evidence]) -> dict[str, tuple[float, str]]:
        """The candidates with a recorded change shortly before the first alert, with the
        log-likelihood it adds (see `TopologyCorrelator.change_lookup`)."""
        if self.changes is None or not self.changes_version():
            return {}
        at = min(ev.first_at for ev in weights.values())
        out = {}
        for r in cands:
            got = self.changes(r, at)
            if got is not None:
                out[r] = got
        return out

    def best_with(self, weights: Mapping[str, Evidence], ci: str, ev: Evidence) -> Hypothesis | None:
        """The best hypothesis for `weights` plus the alert `ev` on `ci` when it explains
        `ci`; None when a fault that leaves `ci` unexplained is likelier. Grouping asks
        this for every new alert and every incident near it; the census of possible
        roots is worked out from the incident's. The full ranking is kept: the alert
        usually joins, and analysis asks for it next."""
        hyp = self.best_adding(weights, ci, ev)
        return hyp if hyp is not None and ci not in hyp.unexplained else None

    def best_adding(self, weights: Mapping[str, Evidence], ci: str, ev: Evidence) -> Hypothesis | None:
        """`best` of `weights` with the alert `ev` on `ci` added, its census of possible
        roots worked out from the census of `weights`."""
        joint = weights.adding(ci, ev) if isinstance(weights, Weights) else {**weights, ci: ev.stronger(weights.get(ci))}
        if not weights:
            return self.best(joint)
        key = self._key(joint)
        got = self._ranked.get(key)
        if got is None:
            count = self.census_with(frozenset(weights), ci)
            # a large incident's scores grow from those of the incident without the alert
            grown_from = (self._key(weights), ci, weights.get(ci)) if len(joint) >= PARTS_FROM else None
            scored = self._scored(joint, self.candidates(joint, count), self.keep, key, grown_from)
            got = self._ranked.put(key, (scored, self.keep), len(joint))
        return got[0][0] if got[0] else None  # `best(joint)`, its key known

    def through_unrecorded(self, hyp: Hypothesis, weights: Mapping[str, Evidence], cause: str,
                           cause_ev: Evidence, choices: int, outside: str) -> Hypothesis:
        """A fault at `cause`, a CI alerting elsewhere (`cause_ev`) near the time these
        alerts began, read as what `hyp` (an alerting root of them) explains them from:
        `hyp.ci` depends on `cause` over a dependency the CMDB lacks. Its alerts then count
        as a dependent's, one hop from the cause (`propagate`); the missing dependency costs
        `unknown_dependency`, shared among the `choices` of CIs `hyp.ci` could depend on; a
        cause that only reports its own resources rarely spreads (`resource_spreads`); and
        one fault spares the coincidence of a second, unrelated one starting as much later
        (what `fault_or_noise` charges). That holds for a cause alerting first: one whose
        alerts came after these (its `for:` delays ran longer) may be their cause, but the
        timing says nothing for it, and it pays the full odds of a second fault. `outside`
        says where the cause alerts, for the explanation."""
        m = self.model
        kind = weights[hyp.ci].kind
        apart = min(ev.first_at for ev in weights.values()) - cause_ev.first_at
        odds = m.new_fault * min(1.0, (apart + 1.0) / m.coincidence) if apart >= 0.0 else m.new_fault
        loglik = (hyp.loglik - hyp.change_bonus - self._ln_own.get(kind, self._ln_own[STATE])
                  + self._ln(m.propagate) + self._ln_dep.get(kind, self._ln_dep[STATE])
                  + math.log(m.unknown_dependency / max(choices, 1)) - math.log(odds))
        if cause_ev.resource_only:
            loglik += self._ln(m.resource_spreads)
        return Hypothesis(cause, loglik, [hyp.ci, *hyp.explained], list(hyp.unexplained), True, 0,
                          outside=outside)

    def repeat_loglik(self, hyp: Hypothesis, ci: str, ev: Evidence) -> float:
        """log P of one more alert `ev` on `ci`, a CI that already alerts, under the fault
        `hyp`. Evidence is kept per CI, so without this any later alert on a CI the fault
        reached would join it for free, while as noise it pays: a dependent pays the kind
        of its alert as a dependent's (its CPU throttling or filling disk is rarely the
        fault's doing). The root pays nothing: a failing CI raises its alerts one after
        another as their `for:` delays run out (crash looping, then replicas missing)."""
        if ci == hyp.ci:
            return 0.0
        return self._ln_dep.get(ev.kind, self._ln_dep[STATE])

    def fault_or_noise(self, weights: Mapping[str, Evidence],
                       apart: float | None = None) -> tuple[float, Hypothesis | None]:
        """log L of the likelier reading of these alerts: one fault (paying the prior odds
        of a fault, lower when it would start `apart` seconds from another) or unrelated
        noise; the hypothesis is None when noise is likelier."""
        hyp = self.best(weights)
        noise = self.noise_of(weights)
        if hyp is None:
            return noise, None
        odds = self.model.new_fault
        if apart is not None:
            odds *= min(1.0, (abs(apart) + 1.0) / self.model.coincidence)
        fault = hyp.loglik + math.log(odds)
        return (fault, hyp) if fault >= noise else (noise, None)

    def noise_of(self, weights: Mapping[str, Evidence]) -> float:
        """log L of every one of these alerts being noise (worked out once for `Weights`:
        grouping asks it of every incident near each new alert)."""
        got: float | None = getattr(weights, "noise", None)
        if got is None:
            got = sum(self._ln(ev.noise) for ev in weights.values())
            if isinstance(weights, Weights):
                weights.noise = got
        return got

    def best(self, weights: Mapping[str, Evidence]) -> Hypothesis | None:
        ranked = self.rank(weights, limit=1)
        return ranked[0] if ranked else None


def normalised_scores(hyps: Iterable[Hypothesis]) -> list[tuple[str, float]]:
    """Posterior-like scores in (0, 1] that sum to at most 1 over the listed hypotheses."""
    hyps = list(hyps)
    if not hyps:
        return []
    top = max(h.loglik for h in hyps)
    exps = [math.exp(h.loglik - top) for h in hyps]
    z = sum(exps)
    return [(h.ci, round(e / z, 4)) for h, e in zip(hyps, exps, strict=True)]
