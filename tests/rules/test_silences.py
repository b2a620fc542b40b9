"""Silences: matchers and a time range on the pipeline's clock, as in Alertmanager."""

import pytest

from daemon.clock import VirtualClock
from daemon.model import Alert
from daemon.pipeline import AlertEvent
from rules.silences import Silence, SilenceError, SilenceStore
from rules.stages import SilenceStage

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def ev(labels, ci=None):
    return AlertEvent(
        Alert(labels=labels, annotations={}, starts_at=T0, ends_at=None, status="firing"), ci=ci
    )


def silence(**kw):
    data = {
        "matchers": ['env="staging"'],
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "2026-01-01T01:00:00Z",
        "createdBy": "jane",
        "comment": "rebuild",
    } | kw
    return Silence.from_dict(data, now=T0)


def test_silence_applies_between_start_and_end_on_the_virtual_clock():
    clock = VirtualClock(T0 - 60)
    store = SilenceStore()
    s = store.add(silence(), now=clock.now())
    stage = SilenceStage(store)
    assert s.state(clock.now()) == "pending"
    before = ev({"env": "staging"})
    stage.process([before], clock.now())
    clock.advance(120)
    during = ev({"env": "staging"})
    stage.process([during], clock.now())
    clock.advance(3600)
    after = ev({"env": "staging"})
    stage.process([after], clock.now())
    assert (before.silenced_by, during.silenced_by, after.silenced_by) == (None, s.id, None)
    assert s.state(clock.now()) == "expired"
    assert during.suppressed and during.notes == [f"silenced by {s.id}"]


def test_expiring_a_silence_ends_it_now():
    store = SilenceStore()
    s = store.add(silence(), now=T0)
    store.expire(s.id, now=T0 + 10)
    assert s.ends_at == T0 + 10 and store.silenced_by({"env": "staging"}, T0 + 11) is None


def test_non_matching_alert_is_not_silenced():
    store = SilenceStore()
    store.add(silence(), now=T0)
    assert store.silenced_by({"env": "prod"}, T0 + 1) is None


def test_alertmanager_api_form_round_trips():
    s = Silence.from_dict(
        {
            "matchers": [
                {"name": "alertname", "value": "Disk.*", "isRegex": True, "isEqual": True},
                {"name": "env", "value": "prod", "isRegex": False, "isEqual": False},
            ],
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "2026-01-01T02:00:00.000Z",
            "createdBy": "ops",
            "comment": "disk swap",
        },
        now=T0,
    )
    assert [str(m) for m in s.matchers] == ['alertname=~"Disk.*"', 'env!="prod"']
    again = Silence.from_dict(s.to_dict())
    assert (
        again.id,
        again.matchers,
        again.starts_at,
        again.ends_at,
        again.created_by,
        again.comment,
    ) == (s.id, s.matchers, s.starts_at, s.ends_at, s.created_by, s.comment)
    assert s.to_dict(now=T0 + 1)["status"] == {"state": "active"}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"endsAt": "2025-12-31T00:00:00Z"}, "endsAt: must be after startsAt"),
        ({"matchers": []}, "at least one matcher"),
        ({"matchers": ['env=~".*"']}, "must not match the empty string"),
        ({"endsAt": "soon"}, "endsAt: not an RFC 3339"),
        ({"endsAt": 1e12}, "endsAt: time out of range"),
        ({"endsAt": "9999-12-31T23:59:59-23:59"}, "endsAt: time out of range"),
        ({"startsAt": -1e18}, "startsAt: time out of range"),
        ({"matchers": [{"name": "a", "value": "x", "isRegex": "yes"}]}, "isRegex and isEqual must be true or false"),
        ({"matchers": [{"name": "a", "value": "x", "isEqual": "no"}]}, "isRegex and isEqual must be true or false"),
    ],
)
def test_invalid_silences_are_rejected_with_the_field(bad, message):
    with pytest.raises(SilenceError, match=message):
        silence(**bad)


def test_updating_an_active_silence_matchers_replaces_it():
    store = SilenceStore()
    s = store.add(silence(), now=T0)
    new = store.add(silence(id=s.id, matchers=['env="dev"']), now=T0 + 5)
    assert new.id != s.id and s.ends_at == T0 + 5


def test_on_change_hook_sees_adds_and_expiries():
    seen = []
    store = SilenceStore(on_change=lambda s: seen.append((s.id, s.ends_at)))
    s = store.add(silence(), now=T0)
    store.expire(s.id, now=T0 + 1)
    assert seen == [(s.id, T0 + 3600), (s.id, T0 + 1)]


def test_silence_may_match_ci_attributes():
    store = SilenceStore()
    store.add(silence(matchers=['ci.owner="team-legacy"']), now=T0)
    stage = SilenceStage(store, ci_attrs={"old-app": {"owner": "team-legacy"}}.get)
    a, b = ev({"alertname": "X"}, ci="old-app"), ev({"alertname": "X"}, ci="new-app")
    stage.process([a, b], T0 + 1)
    assert a.silenced_by and b.silenced_by is None
