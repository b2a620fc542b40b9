"""The incident manager alone, on a virtual clock: dedup, lifecycle, timers,
flapping, timeline, and what it writes to the store."""

import random

import pytest

from correlation.grouping import LabelGrouper
from daemon.build import Components, load_state
from daemon.clock import VirtualClock
from daemon.config import IncidentSettings
from daemon.incidents import IncidentError, IncidentManager
from daemon.model import Alert, severity_rank
from daemon.pipeline import AlertEvent, Analysis, Pipeline, Placement
from daemon.store import Store, Writes

T0 = 1_767_225_600.0


class World:
    """An incident manager with label grouping, driven by a virtual clock."""

    def __init__(self, correlator=None, **settings) -> None:
        s = IncidentSettings(**settings)
        self.clock = VirtualClock(T0)
        self.manager = IncidentManager(s, correlator or LabelGrouper(s.group_by, s.group_window))

    @property
    def now(self) -> float:
        return self.clock.now()

    def fire(self, ends_in: float | None = None, **labels: str) -> None:
        ends = self.now + ends_in if ends_in is not None else None
        alert = Alert(labels, {}, T0, ends, "firing")
        event = AlertEvent(alert)
        if not self.manager.absorb_repost(event, self.now):
            self.manager.apply([event], self.now)

    def fire_since(self, starts_at: float, **labels: str) -> None:
        """An Alertmanager notification of a firing alert that became active at `starts_at`."""
        event = AlertEvent(Alert(labels, {}, starts_at, None, "firing"))
        if not self.manager.absorb_repost(event, self.now):
            self.manager.apply([event], self.now)

    def resolve(self, **labels: str) -> None:
        self.manager.apply([AlertEvent(Alert(labels, {}, T0, self.now, "resolved"))], self.now)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.manager.tick(self.now)

    def incidents(self):
        return sorted(self.manager.incidents.values(), key=lambda i: i.seq)

    def only(self):
        [inc] = self.incidents()
        return inc

    def timeline(self, inc) -> list[str]:
        return [e.kind for e in self.manager._timeline if e.incident_id == inc.id]


DB = {"alertname": "DatabaseDown", "service": "orders-db", "severity": "critical"}


def test_the_same_label_set_firing_again_updates_its_alert():
    w = World()
    w.fire(**DB)
    w.advance(60)
    w.fire(**DB)
    inc = w.only()
    [m] = inc.alerts.values()
    assert (m.first_at, m.last_at) == (T0, T0 + 60)
    assert w.timeline(inc) == ["opened", "alert_attached"]


def test_lifecycle_open_acknowledged_resolved_with_wrong_transitions_refused():
    w = World()
    w.fire(**DB)
    inc = w.only()
    w.advance(30)
    w.manager.acknowledge(inc.id, "alice", w.now)
    assert (inc.state, inc.acknowledged_by, inc.acknowledged_at) == (
        "acknowledged",
        "alice",
        T0 + 30,
    )
    with pytest.raises(IncidentError) as exc:
        w.manager.acknowledge(inc.id, "bob", w.now)
    assert exc.value.status == 409
    w.manager.resolve(inc.id, "bob", w.now)
    assert (inc.state, inc.resolved_by) == ("resolved", "bob")
    with pytest.raises(IncidentError):
        w.manager.resolve(inc.id, "bob", w.now)
    with pytest.raises(IncidentError) as exc:
        w.manager.acknowledge("INC-424242", "bob", w.now)
    assert exc.value.status == 404


def test_resolves_by_itself_when_the_last_alert_resolves():
    w = World()
    w.fire(pod="a", **DB)
    w.fire(pod="b", **DB)
    w.advance(10)
    w.resolve(pod="a", **DB)
    assert w.only().state == "open"
    w.advance(10)
    w.resolve(pod="b", **DB)
    inc = w.only()
    assert (inc.state, inc.resolved_at, inc.resolved_by) == ("resolved", T0 + 20, "incidentd")


def test_resolves_when_the_last_alert_resolves_whatever_fired_again_or_joined_meanwhile():
    """The count of firing alerts that resolving keeps must follow every way an alert
    comes back or joins: firing again, a new alert, an incident merged in."""
    w = World(Scripted(None, 1, 1, None, (1, 2)), reopen_window=600)
    for pod in "abc":
        w.fire(pod=pod, **DB)
    inc = w.only()
    w.advance(10)
    w.resolve(pod="a", **DB)
    w.resolve(pod="b", **DB)
    w.advance(10)
    w.fire(pod="a", **DB)  # fires again within the reopen window
    w.resolve(pod="c", **DB)
    assert inc.state == "open"
    w.fire(pod="d", **DB)  # opens INC-2 (the script says so) ...
    w.fire(pod="e", **DB)  # ... which this one merges into INC-1
    assert inc.state == "open" and set(_members(inc)) == set("abcde")
    for pod in "ade":
        assert inc.state == "open"
        w.advance(1)
        w.resolve(pod=pod, **DB)
    assert (inc.state, inc.resolved_at) == ("resolved", w.now)


def test_an_alert_not_posted_again_resolves_at_its_endsat():
    w = World()
    w.fire(ends_in=240, **DB)
    w.advance(239.9)
    assert w.only().state == "open"
    w.advance(0.1)
    assert (w.only().state, w.only().resolved_at) == ("resolved", T0 + 240)


def test_reposts_keep_one_expire_timer_per_alert_and_the_last_endsat_wins():
    w = World()
    for _ in range(1000):
        w.fire(ends_in=240, **DB)
        w.advance(1)
    assert len(w.manager._timers) <= 2
    assert w.only().state == "open"
    w.advance(239)
    assert (w.only().state, w.only().resolved_at) == ("resolved", T0 + 999 + 240)


def test_reopens_within_the_window_and_is_forgotten_after_it():
    w = World(reopen_window=600)
    w.fire(**DB)
    w.advance(10)
    w.resolve(**DB)
    w.advance(599.9)
    w.fire(**DB)
    inc = w.only()
    assert (inc.state, inc.resolved_at) == ("open", None)
    assert w.timeline(inc)[-2:] == ["alert_firing", "reopened"]

    w.advance(10)
    w.resolve(**DB)
    w.advance(600)  # the window has passed (it is half-open): the incident leaves memory
    assert w.incidents() == []
    w.fire(**DB)
    assert w.only().id != inc.id


def test_an_alert_changing_state_flap_threshold_times_is_flapping_and_its_incident_waits_to_settle():
    w = World(flap_threshold=4, flap_window=900, reopen_window=600)
    w.fire(**DB)
    for _ in range(2):
        w.advance(60)
        w.resolve(**DB)
        w.advance(60)
        w.fire(**DB)
    inc = w.only()
    assert inc.flapping and next(iter(inc.alerts.values())).flapping
    w.advance(60)
    w.resolve(**DB)
    assert inc.state == "open"
    assert inc.resolve_due == w.now + 900
    w.advance(899)
    assert inc.state == "open"
    w.advance(1)
    assert inc.state == "resolved"
    assert w.timeline(inc).count("opened") == 1
    assert w.timeline(inc).count("flapping") == 1


def test_a_flapping_incident_that_fires_again_before_settling_stays_open():
    w = World(flap_threshold=2, flap_window=900)
    w.fire(**DB)
    w.advance(10)
    w.resolve(**DB)  # resolved: not flapping yet (one change)
    w.advance(10)
    w.fire(**DB)  # reopened, second change: flapping
    w.advance(10)
    w.resolve(**DB)
    inc = w.only()
    assert inc.state == "open" and inc.resolve_due is not None
    w.advance(100)
    w.fire(**DB)
    assert inc.resolve_due is None
    w.advance(2000)
    assert inc.state == "open"


def test_severity_is_the_highest_and_sets_the_priority():
    w = World()
    base = {"alertname": "HighLatency", "service": "checkout"}
    w.fire(pod="a", severity="info", **base)
    assert (w.only().severity, w.only().priority) == ("info", "P4")
    w.fire(pod="b", severity="critical", **base)
    w.fire(pod="c", severity="warning", **base)
    assert (w.only().severity, w.only().priority) == ("critical", "P2")


def test_notes_and_who_did_what_are_in_the_timeline():
    w = World()
    w.fire(**DB)
    inc = w.only()
    w.manager.add_note(inc.id, "failing over", "carol", w.now)
    w.manager.acknowledge(inc.id, "carol", w.now)
    entries = [(e.kind, e.actor, e.text) for e in w.manager._timeline if e.incident_id == inc.id]
    assert entries[2:] == [
        ("note", "carol", "failing over"),
        ("acknowledged", "carol", "acknowledged by carol"),
    ]


def test_what_is_written_to_the_store_restores_the_same_incidents(tmp_path):
    w = World()
    w.fire(ends_in=240, pod="a", **DB)
    w.fire(ends_in=240, pod="b", **DB)
    w.advance(100)
    w.fire(ends_in=240, pod="a", **DB)  # a re-post: stored as an alert_seen row
    store = Store(str(tmp_path / "s.sqlite3"), threaded=False)
    writes = Writes()
    w.manager.drain_writes(writes)
    store.apply_sync(writes)

    again = World()
    components = Components(Pipeline([], again.manager), again.manager)
    load_state(components, store, w.now)
    [inc] = again.incidents()
    assert inc.id == w.only().id
    assert {fp: (m.last_at, m.ends_at) for fp, m in inc.alerts.items()} == {
        fp: (m.last_at, m.ends_at) for fp, m in w.only().alerts.items()
    }
    again.clock.set(w.now)
    again.advance(140)  # pod b ends at T0+240; pod a at T0+340
    assert inc.state == "open"
    again.advance(100)
    assert (inc.state, inc.resolved_at) == ("resolved", T0 + 340)
    store.close()



class OpeningBurst(LabelGrouper):
    """Groups what arrives within a minute of an incident's opening, whatever the labels."""

    def __init__(self) -> None:
        super().__init__([], 0)

    def place(self, event, incidents, now, since=None, leaving=None):
        for inc in incidents.open_incidents():
            if now - inc.opened_at <= 60:
                return Placement([inc.id], "within a minute of its opening", inc.group_key)
        return Placement([], "", f"burst:{now}")


def _members(inc) -> dict[str, str]:
    return {m.labels["pod"]: m.status for m in inc.alerts.values()}


def _fire_again_later(w: World, after: float = 600) -> None:
    """a and b fire, a resolves, and fires again `after` seconds later (b keeps firing)."""
    w.fire(pod="a", **DB)
    w.fire(pod="b", **DB)
    w.advance(10)
    w.resolve(pod="a", **DB)
    w.advance(after)
    w.fire(pod="a", **DB)


def test_an_alert_resolved_within_the_reopen_window_fires_again_in_its_open_incident():
    w = World(OpeningBurst(), reopen_window=600)
    _fire_again_later(w, 599)
    inc = w.only()
    assert _members(inc) == {"a": "firing", "b": "firing"}
    assert w.timeline(inc)[-1] == "alert_firing"


def test_an_alert_resolved_longer_ago_is_a_new_occurrence_even_while_its_incident_is_open():
    w = World(OpeningBurst(), reopen_window=600)
    _fire_again_later(w)  # placed afresh: the correlator opens a new incident for it
    first, second = w.incidents()
    assert first.state == "open" and _members(first) == {"a": "resolved", "b": "firing"}
    assert _members(second) == {"a": "firing"}
    [fp] = second.alerts
    assert w.manager.incident_for(fp) is second
    w.advance(10)
    w.resolve(pod="a", **DB)  # the new occurrence resolves its own incident
    assert (first.state, second.state) == ("open", "resolved")


def test_label_grouping_takes_a_new_occurrence_back_into_its_group_while_the_group_fires():
    w = World(reopen_window=600)
    _fire_again_later(w)
    inc = w.only()
    assert _members(inc) == {"a": "firing", "b": "firing"}
    assert w.timeline(inc)[-1] == "alert_attached"
    assert {m.labels["pod"]: m.first_at for m in inc.alerts.values()} == {"a": T0 + 610, "b": T0}


@pytest.mark.parametrize("while_firing", [False, True])
def test_label_grouping_beside_a_cmdb_takes_a_new_alert_only_within_the_group_window_of_the_last(while_firing):
    """A failed job's alert lingers for hours: beside the CMDB's correlation, another job
    failing later is another occurrence, although the group key is the same and the
    first alert still fires. Grouping by labels alone keeps the group while it fires."""
    s = IncidentSettings(group_window=300)
    w = World(LabelGrouper(s.group_by, s.group_window, while_firing=while_firing), group_window=300)
    job = {"alertname": "KubeJobFailed", "namespace": "shop", "severity": "warning"}
    w.fire(job_name="backup-1", **job)
    w.advance(240)
    w.fire(job_name="backup-2", **job)  # within 5 minutes of the last new alert: the same burst
    w.advance(290)
    w.fire(job_name="warmup-3", **job)  # 290 s after the last new alert
    w.advance(3 * 3600)
    w.fire(job_name="export-4", **job)  # hours later, with the first three still firing
    if while_firing:
        assert {m.labels["job_name"] for m in w.only().alerts.values()} == {"backup-1", "backup-2", "warmup-3", "export-4"}
        return
    first, second = w.incidents()
    assert {m.labels["job_name"] for m in first.alerts.values()} == {"backup-1", "backup-2", "warmup-3"}
    assert [m.labels["job_name"] for m in second.alerts.values()] == ["export-4"]
    assert first.group_key == second.group_key and first.is_open


def test_label_grouping_beside_a_cmdb_takes_back_an_alert_of_the_group_while_it_fires():
    s = IncidentSettings(reopen_window=600)
    w = World(LabelGrouper(s.group_by, s.group_window, while_firing=False), reopen_window=600)
    _fire_again_later(w)
    assert _members(w.only()) == {"a": "firing", "b": "firing"}


def test_an_alert_that_began_again_after_its_last_notification_is_a_new_occurrence():
    """No resolution came (a receiver with `send_resolved: false`): Alertmanager re-sends
    a firing alert with the same startsAt, and one that fired again has a later one."""
    w = World(reopen_window=600)
    disk = {"alertname": "DiskFillingUp", "instance": "n1", "severity": "warning"}
    w.fire_since(T0, **disk)
    w.advance(4 * 3600)
    w.fire_since(T0, **disk)  # re-sent at its repeat interval: the same occurrence
    assert [m.status for m in w.only().alerts.values()] == ["firing"]
    last = w.now
    w.advance(3 * 86400)
    w.fire_since(w.now - 30, **disk)  # active again since half a minute ago
    first, second = w.incidents()
    assert first.state == "resolved" and first.alerts[next(iter(first.alerts))].ends_at == last
    assert second.is_open and [m.first_at for m in second.alerts.values()] == [w.now]
    w.advance(300)
    w.fire_since(w.now - 330, **disk)  # and re-sent
    assert [i.state for i in w.incidents()] == ["resolved", "open"]


def test_an_alert_posted_with_an_end_to_come_keeps_its_occurrence_whatever_its_start():
    """A sender posting without startsAt (each post starts now) but with an endsAt ahead
    overlaps its last post: Alertmanager merges them into one alert, and so does this."""
    w = World(reopen_window=600)
    disk = {"alertname": "DiskFillingUp", "instance": "n1", "severity": "warning"}
    for _ in range(4):
        event = AlertEvent(Alert(disk, {}, w.now, w.now + 3600, "firing"))
        if not w.manager.absorb_repost(event, w.now):
            w.manager.apply([event], w.now)
        w.advance(1800)
    inc = w.only()
    assert inc.id == "INC-000001" and [m.status for m in inc.alerts.values()] == ["firing"]


def test_a_flapping_alert_stays_in_its_incident_however_long_it_was_resolved():
    w = World(OpeningBurst(), flap_threshold=2, flap_window=900, reopen_window=600)
    w.fire(pod="a", **DB)
    w.fire(pod="b", **DB)
    w.advance(10)
    w.resolve(pod="a", **DB)
    w.advance(10)
    w.fire(pod="a", **DB)
    w.advance(10)
    w.resolve(pod="a", **DB)
    w.advance(700)
    w.fire(pod="a", **DB)
    inc = w.only()
    assert _members(inc) == {"a": "firing", "b": "firing"}


class Scripted(LabelGrouper):
    """Places each new alert as told: None opens an incident, n joins INC-n, (n, m, ...)
    joins INC-n and merges the others into it."""

    def __init__(self, *plan: int | tuple[int, ...] | None) -> None:
        super().__init__([], 0)
        self.plan = list(plan)

    def place(self, event, incidents, now, since=None, leaving=None):
        target = self.plan.pop(0)
        seqs = () if target is None else target if isinstance(target, tuple) else (target,)
        return Placement([f"INC-{n:06d}" for n in seqs], "as scripted", f"s:{now}")


def test_restoring_gives_an_alert_in_two_incidents_to_the_one_where_it_fired_last(tmp_path):
    w = World(Scripted(None, None, 2, 1), reopen_window=600)
    w.fire(pod="c", **DB)  # INC-1
    w.advance(100)
    w.fire(pod="a", **DB)  # INC-2, with b
    w.fire(pod="b", **DB)
    w.advance(10)
    w.resolve(pod="a", **DB)
    w.advance(600)
    w.fire(pod="a", **DB)  # a new occurrence, in the older incident
    first, second = w.incidents()
    assert (_members(first), _members(second)) == ({"c": "firing", "a": "firing"}, {"a": "resolved", "b": "firing"})
    store = Store(str(tmp_path / "s.sqlite3"), threaded=False)
    writes = Writes()
    w.manager.drain_writes(writes)
    store.apply_sync(writes)
    again = World(LabelGrouper([], 0), reopen_window=600)
    load_state(Components(Pipeline([], again.manager), again.manager), store, w.now)
    fp = next(f for f, m in first.alerts.items() if m.labels["pod"] == "a")
    assert again.manager.incident_for(fp).id == first.id
    again.advance(1)
    again.manager.apply([AlertEvent(Alert({"pod": "a", **DB}, {}, T0, again.now, "resolved"))], again.now)
    assert again.manager.get(first.id).alerts[fp].status == "resolved"
    store.close()


def test_merging_two_incidents_that_both_hold_an_alert_keeps_its_latest_occurrence():
    w = World(Scripted(None, 1, None, (2, 1)), reopen_window=600)
    _fire_again_later(w)  # a and b in INC-1; a again, later, in INC-2
    w.advance(10)
    w.fire(pod="c", **DB)  # joins INC-2 and merges INC-1 into it
    [inc] = [i for i in w.incidents() if i.state != "merged"]
    assert inc.id == "INC-000002"
    assert _members(inc) == {"a": "firing", "b": "firing", "c": "firing"}
    assert {m.labels["pod"]: m.first_at for m in inc.alerts.values()} == {"a": T0 + 610, "b": T0, "c": T0 + 620}


class JoinsThenDetaches:
    """Every alert joins the first open incident; analysis names the alert of a one-alert
    incident as its root and detaches `Noise` from an incident with more."""

    def place(self, event, incidents, now, since=None, leaving=None):
        ids = [i.id for i in incidents.open_incidents()][:1]
        return Placement(ids, "joins" if ids else "opens", "g")

    def analyze(self, inc, now, incidents=None):
        noise = [fp for fp, m in inc.alerts.items() if m.labels["alertname"] == "Noise"]
        if len(inc.alerts) > 1 and noise:
            return Analysis(root_cause="db", detach=noise)
        [m] = inc.alerts.values()
        return Analysis(root_cause=m.labels["alertname"].lower())

    def outlasting(self, incident):
        return None


def test_an_alert_detached_into_a_new_incident_gets_that_incident_analysed():
    w = World(correlator=JoinsThenDetaches())
    w.fire(**DB)
    w.fire(alertname="Noise", service="search", severity="info")
    first, second = w.incidents()
    assert [m.labels["alertname"] for m in second.alerts.values()] == ["Noise"]
    assert (first.root_cause, second.root_cause) == ("databasedown", "noise")


def test_severity_and_paging_follow_every_alert_that_joins_or_changes_its_silence():
    """Worked out from the revision before when an alert only joined: the same as from
    all alerts, through joins, silences coming and going on alerts already in, and a
    first alert that is not suppressed after suppressed ones."""
    rnd = random.Random(3)
    w = World()
    sent: dict[str, tuple[dict, str | None]] = {}
    quiet_joins = 0  # alerts that joined while every one was suppressed
    for step in range(400):
        if sent and rnd.random() < 0.3:  # one sent before, re-posted with another silence
            name = rnd.choice(sorted(sent))
            labels = sent[name][0]
        else:
            name = f"a{step}"
            labels = {"alertname": "Errors", "service": "orders", "pod": name,
                      "severity": rnd.choice(["critical", "warning", "info", "page", "none", "bogus", ""])}
        # (a silenced alert opens no incident: the first is not)
        silence = "s1" if step and rnd.random() < (0.9 if step < 60 else 0.3) else None
        sent[name] = (labels, silence)
        event = AlertEvent(Alert(labels, {}, T0, None, "firing"), silenced_by=silence)
        w.manager.apply([event], w.now)
        inc = w.only()
        members = list(inc.alerts.values())
        live = [m for m in members if not m.suppressed] or members
        top = max(live, key=lambda m: severity_rank(m.labels.get("severity")))
        assert (inc.severity, inc.paging) == (top.labels.get("severity") or "none",
                                              any(not m.suppressed for m in members)), step
        quiet_joins += not inc.paging and name == f"a{step}"
    assert len(w.only().alerts) > 250 and quiet_joins >= 3


class Steered:
    """A correlator that puts each new alert where the test says: into `to`, or a new incident."""

    def __init__(self) -> None:
        self.to: str | None = None

    def place(self, event, incidents, now, since=None, leaving=None):
        return Placement([self.to] if self.to else [], "steered", "steered")

    def analyze(self, incident, now, incidents=None):
        return Analysis()

    def outlasting(self, incident):
        return None


@pytest.mark.parametrize("move", ["split", "merge"])
def test_an_old_occurrence_moved_by_a_person_leaves_the_alert_with_its_new_occurrence(move):
    """An alert resolved in one incident fired anew in another; moving the incident's old
    occurrence (a split, a merge) must not take the alert from where it fires now: its
    resolution resolves the new occurrence."""
    steer = Steered()
    w = World(correlator=steer)
    x, y = {"alertname": "X", "job": "a"}, {"alertname": "Y", "job": "a"}
    w.fire(**x)
    [a] = w.incidents()
    steer.to = a.id
    w.fire(**y)
    w.resolve(**x)
    w.advance(3600)  # beyond the reopen window: the next firing is a new occurrence
    steer.to = None
    w.fire(**x)
    b = w.incidents()[-1]
    assert b is not a and b.alerts[fp_x := Alert(x, {}, T0, None, "firing").fingerprint].status == "firing"
    if move == "split":
        w.manager.split(a.id, [fp_x], "alice", w.now)
    else:
        w.fire(alertname="Z", job="a")
        c = w.incidents()[-1]
        w.manager.merge(c.id, [a.id], "alice", w.now)
    w.advance(60)
    w.resolve(**x)
    assert b.alerts[fp_x].status == "resolved"
    assert w.manager.incident_for(fp_x) is b


class Topology:
    """The manager with the CMDB's correlation: `api` depends on `db`."""

    def __init__(self) -> None:
        from cmdb import load_cmdb_docs
        from correlation.engine import TopologyCorrelator

        cmdb = load_cmdb_docs([("test.yaml", {"cis": [
            {"id": "db", "match": {"service": "db"}},
            {"id": "api", "match": {"service": "api"}, "depends_on": ["db"]},
        ]})])
        self.world = World(correlator=TopologyCorrelator(cmdb))

    def fire(self, name: str, ci: str, severity: str = "critical", status: str = "firing") -> None:
        w = self.world
        labels = {"alertname": name, "service": ci, "severity": severity}
        ends = w.now if status == "resolved" else None
        w.manager.apply([AlertEvent(Alert(labels, {}, w.now, ends, status), ci=ci)], w.now)

    def resolve(self, name: str, ci: str, severity: str = "critical") -> None:
        self.fire(name, ci, severity, "resolved")

    def database_fault(self) -> None:
        """The database goes down, and a minute later the API's errors follow."""
        self.fire("MongodbDown", "db")
        self.world.advance(60)
        self.fire("HighErrorRate", "api")


def test_an_incident_resolves_once_every_alert_it_gained_has_resolved():
    """Whether an incident still has an alert firing is kept as alerts join (one of them
    already resolved) and resolve, whichever resolves first."""
    t = Topology()
    w = t.world
    t.database_fault()
    w.advance(30)
    t.resolve("MongodbDown", "db")
    [inc] = w.incidents()
    assert inc.is_open  # the API's errors still fire
    w.advance(30)
    t.resolve("HighLatencyP99", "api", "warning")  # joins, already resolved
    assert len(inc.alerts) == 3 and inc.is_open
    w.advance(30)
    t.resolve("HighErrorRate", "api")
    assert inc.state == "resolved" and inc.resolved_at == w.now


def test_a_flapping_fault_takes_its_symptoms_while_it_settles():
    """The database flaps: the incident waits `flap_window` before it resolves, and the
    fault may go on meanwhile, so the API's errors minutes after the last flap join it."""
    t = Topology()
    w = t.world
    for _ in range(3):
        t.fire("MongodbDown", "db")
        w.advance(60)
        t.resolve("MongodbDown", "db")
        w.advance(60)
    [inc] = w.incidents()
    assert inc.flapping and inc.is_open
    w.advance(180)
    t.fire("HighErrorRate", "api")
    assert w.incidents() == [inc] and len(inc.alerts) == 2


def test_an_alert_firing_on_long_after_the_root_cause_resolved_is_let_go():
    """A fault's symptoms clear with it: latency on the API that keeps firing 20 minutes
    after the database it depends on recovered was not the database's doing. It leaves
    the incident, which then resolves, and becomes an incident of its own."""
    t = Topology()
    w = t.world
    t.database_fault()
    w.advance(30)
    t.fire("HighLatencyP99", "api", "warning")
    [inc] = w.incidents()
    assert inc.root_cause == "db" and len(inc.alerts) == 3
    w.advance(900)
    t.resolve("MongodbDown", "db")
    w.advance(120)
    t.resolve("HighErrorRate", "api")  # a symptom clears a little after its cause: it stays
    ended = w.now
    w.advance(1200 - 120 - 1)
    assert w.incidents() == [inc] and inc.is_open  # the latency alert still keeps it open
    w.advance(1)
    # resolved as of when its last alert ended (and so let go at once: it cannot reopen)
    assert inc.state == "resolved" and inc.resolved_at == ended
    [other] = w.incidents()
    assert {m.labels["alertname"] for m in inc.alerts.values()} == {"MongodbDown", "HighErrorRate"}
    assert [m.labels["alertname"] for m in other.alerts.values()] == ["HighLatencyP99"]
    assert other.is_open and other.root_cause == "api"
    texts = [e.text for e in w.manager._timeline if e.incident_id == inc.id]
    assert "alert HighLatencyP99 detached: firing 20 min after the alerts of the fault at db resolved" in texts
    assert texts[-1] == "incident resolved: the alerts of the fault at db resolved"


def test_an_alert_reopening_an_incident_after_its_fault_ended_is_let_go_in_time():
    """The incident resolved with its fault; a latency alert on the API (its error rate's
    lagging companion) reopens it 100 s later and fires on: 20 minutes after the
    database's alert ended, it goes."""
    t = Topology()
    w = t.world
    t.database_fault()
    w.advance(900)
    t.resolve("MongodbDown", "db")
    ended = w.now
    w.advance(30)
    t.resolve("HighErrorRate", "api")
    [inc] = w.incidents()
    assert inc.state == "resolved"
    w.advance(100)
    t.fire("HighLatencyP99", "api", "warning")
    assert inc.is_open and len(inc.alerts) == 3  # reopened within the reopen window
    w.advance(ended + 1200 - w.now - 1)
    assert len(inc.alerts) == 3
    w.advance(1)
    assert len(inc.alerts) == 2 and inc.state == "resolved"


def test_an_alert_outlasting_a_root_cause_that_fired_again_stays():
    """The root cause alerting again within the grace: the fault goes on, and so may its symptoms."""
    t = Topology()
    w = t.world
    t.database_fault()
    w.advance(900)
    t.resolve("MongodbDown", "db")
    w.advance(600)
    t.fire("MongodbDown", "db")  # down again: the same occurrence, firing again
    w.advance(3600)
    [inc] = w.incidents()
    assert inc.is_open and len(inc.alerts) == 2
    t.resolve("MongodbDown", "db")
    w.advance(1199)
    assert len(inc.alerts) == 2
    w.advance(1)
    assert len(inc.alerts) == 1 and inc.state == "resolved"


def test_a_fault_at_a_root_without_an_alert_ends_with_the_alerts_right_above_it():
    """A host that raised nothing: its fault showed on the services on it, and ended when
    their alerts did. Latency on a service that calls one of them, firing on long after,
    was something else; the services' own alerts stay while any of them fires."""
    from cmdb import load_cmdb_docs
    from correlation.engine import TopologyCorrelator

    cmdb = load_cmdb_docs([("test.yaml", {"cis": [
        {"id": "host", "match": {"instance": "host"}},
        {"id": "a", "match": {"service": "a"}, "depends_on": ["host"]},
        {"id": "b", "match": {"service": "b"}, "depends_on": ["host"]},
        {"id": "web", "match": {"service": "web"}, "depends_on": ["a"]},
    ]})])
    w = World(correlator=TopologyCorrelator(cmdb))

    def send(ci: str, status: str = "firing") -> None:
        labels = {"alertname": "HighLatencyP99", "service": ci, "severity": "warning"}
        ends = w.now if status == "resolved" else None
        w.manager.apply([AlertEvent(Alert(labels, {}, w.now, ends, status), ci=ci)], w.now)

    for ci in ("a", "b", "web"):
        send(ci)
        w.advance(30)
    [inc] = w.incidents()
    assert inc.root_cause == "host" and len(inc.alerts) == 3
    send("a", "resolved")
    w.advance(7200)  # b still fires: the fault goes on, and web's latency may be its
    assert w.incidents() == [inc] and len(inc.alerts) == 3
    send("b", "resolved")
    w.advance(1199)
    assert len(inc.alerts) == 3 and inc.is_open
    w.advance(1)
    assert inc.state == "resolved" and {m.ci for m in inc.alerts.values()} == {"a", "b"}
    [other] = w.incidents()
    assert [m.ci for m in other.alerts.values()] == ["web"]
    texts = [e.text for e in w.manager._timeline if e.incident_id == inc.id]
    assert "alert HighLatencyP99 detached: firing 20 min after the alerts of the fault at host resolved" in texts


def test_an_outlasting_alert_is_let_go_after_a_restart_too(tmp_path):
    t = Topology()
    w = t.world
    t.fire("MongodbDown", "db")
    w.advance(60)
    t.fire("HighLatencyP99", "api", "warning")
    w.advance(900)
    t.resolve("MongodbDown", "db")
    w.advance(600)
    store = Store(str(tmp_path / "s.sqlite3"), threaded=False)
    writes = Writes()
    w.manager.drain_writes(writes)
    store.apply_sync(writes)
    again = Topology()
    again.world.clock.set(w.now)
    manager = again.world.manager
    load_state(Components(Pipeline([], manager), manager), store, w.now)
    [inc] = again.world.incidents()
    again.world.advance(599)
    assert len(inc.alerts) == 2 and inc.is_open
    again.world.advance(1)
    assert len(inc.alerts) == 1 and inc.state == "resolved"
    [other] = again.world.incidents()
    assert [m.labels["alertname"] for m in other.alerts.values()] == ["HighLatencyP99"]
    store.close()
