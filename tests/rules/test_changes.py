"""Changes: alerts under an active change are expected; a recent change is suspected."""

import random

from daemon.model import Alert
from daemon.pipeline import AlertEvent
from rules.changes import Change, ChangeStore
from rules.stages import MaintenanceStage

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DEPS = {("checkout", "orders-db")}


def ev(ci):
    return AlertEvent(
        Alert(
            labels={"alertname": "X"}, annotations={}, starts_at=T0, ends_at=None, status="firing"
        ),
        ci=ci,
    )


def change(**kw):
    return Change.from_dict(
        {
            "id": "CHG-1",
            "ci": "orders-db",
            "summary": "upgrade to 16",
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-01T01:00:00Z",
        }
        | kw
    )


def test_alert_from_a_ci_under_an_active_change_is_expected():
    store = ChangeStore()
    store.add(change())
    stage = MaintenanceStage(store)
    during, before, after, elsewhere = (
        ev("orders-db"),
        ev("orders-db"),
        ev("orders-db"),
        ev("checkout"),
    )
    stage.process([before], T0 - 1)
    stage.process([during, elsewhere], T0 + 60)
    stage.process([after], T0 + 3600)
    assert during.expected == "CHG-1" and during.suppressed
    assert during.notes == ["expected: change CHG-1 (upgrade to 16)"]
    assert before.expected is None and after.expected is None and elsewhere.expected is None


def test_dependents_are_covered_when_configured():
    store = ChangeStore(cover_dependents=True, depends_on=lambda a, b: (a, b) in DEPS)
    store.add(change())
    e = ev("checkout")
    MaintenanceStage(store).process([e], T0 + 60)
    assert e.expected == "CHG-1" and "which checkout depends on" in e.notes[0]


def test_change_event_from_replay_starts_at_its_time_and_may_be_open_ended():
    c = Change.from_dict(
        {
            "kind": "change",
            "at": "2026-01-01T00:00:00Z",
            "ci": "payments",
            "id": "CHG-2",
            "summary": "deploy",
        }
    )
    assert c.starts_at == T0 and c.ends_at is None and c.is_active(T0 + 10**6)


def test_suspected_change_is_one_that_ended_within_the_window_before_the_incident():
    store = ChangeStore(suspect_window=1800)
    store.add(change())  # ends at T0 + 3600
    assert store.suspected_change_for("orders-db", T0 + 3600 + 600).id == "CHG-1"
    assert store.suspected_change_for("orders-db", T0 + 3600 + 1801) is None
    assert store.suspected_change_for("checkout", T0 + 3600 + 600) is None
    assert store.suspected_change_for("orders-db", T0 - 10) is None  # change had not started


def test_the_latest_change_is_suspected_first():
    store = ChangeStore(suspect_window=7200)
    store.add(change(id="OLD", end="2026-01-01T00:30:00Z"))
    store.add(change(id="NEW"))
    assert store.suspected_change_for("orders-db", T0 + 4000).id == "NEW"


def test_change_sent_again_replaces_the_record():
    store = ChangeStore()
    store.add(change())
    store.add(change(end="2026-01-01T00:10:00Z"))
    assert len(store.list()) == 1 and store.active_for("orders-db", T0 + 900) is None


def test_the_base_rate_follows_records_added_replaced_and_removed():
    """How often a CI has a suspected change at a random moment: the changes begun in
    the horizon, each suspected for the window, over the CIs and the time they span."""
    rnd = random.Random(3)
    store = ChangeStore(suspect_window=3600.0)
    assert store.base_rate(0.0, 10) == 1.0  # nothing recorded: no evidence either way
    for i in range(200):
        t = rnd.uniform(0, 30 * 86400)
        store.add(Change(f"C{i % 150}", f"ci{i % 7}", t, t + 60, source="api" if i % 3 else "file"))
    store.replace_source("file", [Change("F1", "ci1", 86400.0, None)])

    def plain(at: float, horizon: float = 7 * 86400.0) -> float:
        starts = [c.starts_at for c in store.list() if at - horizon <= c.starts_at <= at]
        if not starts:
            return 1.0
        return min(1.0, len(starts) * 3600.0 / (100 * max(at - min(starts), 3600.0)))

    for at in (0.0, 86400.0, 10 * 86400.0, 29 * 86400.0, 40 * 86400.0):
        assert store.base_rate(at, 100) == plain(at)
    assert 0 < store.base_rate(29 * 86400.0, 100) < 0.1


def test_the_active_change_follows_time_and_records_in_any_order():
    """`active_for` keeps its answer while no change starts or ends: it must agree with
    a scan of every record at each moment, forwards, backwards, and after records are
    added, replaced or dropped in between."""
    rnd = random.Random(3)
    store = ChangeStore()
    cis = ["a", "b", "c"]
    for step in range(400):
        if rnd.random() < 0.2:
            start = T0 + rnd.randrange(0, 36_000, 300)
            end = None if rnd.random() < 0.2 else start + rnd.randrange(0, 7200, 300)
            store.add(Change(f"CHG-{rnd.randrange(30)}", rnd.choice(cis), start, end, "", "api"))
        elif rnd.random() < 0.05:
            store.replace_source("api", [])
        now = T0 + rnd.randrange(-600, 40_000, 150)  # often right on a start or an end
        ci = rnd.choice(cis)
        expected = next((c for c in store._changes.values() if c.ci == ci and c.is_active(now)), None)
        assert store.active_for(ci, now) is expected, (step, now)
