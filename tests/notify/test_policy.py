"""Notification policy, escalation and SLA on the virtual clock, through the
real pipeline and store (no network: nothing is delivered, rows are written)."""

import json
import socket
import tempfile

import pytest
from notify_helpers import T0, write_config

from daemon.build import build_pipeline
from daemon.clock import VirtualClock
from daemon.config import load_config
from daemon.metrics import Metrics
from daemon.model import Alert
from daemon.store import Store, Writes
from daemon.timefmt import format_rfc3339

CONFIG = """
receivers:
  - {name: chat, type: slack, url: "http://127.0.0.1:9/chat"}
  - {name: pager, type: pagerduty, url: "http://127.0.0.1:9/pd", routing_key: K}
  - {name: lead, type: webhook, url: "http://127.0.0.1:9/lead"}
  - {name: boss, type: webhook, url: "http://127.0.0.1:9/boss"}
teams:
  payments: {receivers: [pager], escalation_policy: payments}
escalation_policies:
  payments:
    - {targets: [pager], delay: 10m}
    - {targets: [lead], delay: 20m}
    - {targets: [boss, chat]}
notify:
  group_wait: 30s
  repeat_interval: 1h
  default: {receivers: [chat]}
sla:
  P2: {acknowledge: 15m, resolve: 2h}
"""


class World:
    """A pipeline on a virtual clock over a store file; `restart()` builds a fresh one on the same file."""

    def __init__(self, tmp_path, config: str = CONFIG) -> None:
        self.config = load_config(write_config(tmp_path, config))
        self.path = str(tmp_path / "store.sqlite3")
        self.clock = VirtualClock(T0)
        self._build()

    def _build(self) -> None:
        from daemon.build import load_state

        self.store = Store(self.path, threaded=False)
        self.metrics = Metrics()
        self.c = build_pipeline(self.config, self.clock, self.metrics, self.store)
        load_state(self.c, self.store, self.clock.now())

    def restart(self) -> None:
        self.store.close()
        self._build()

    def flush(self) -> None:
        w = Writes()
        self.c.pipeline.drain_writes(w)
        self.store.apply_sync(w)

    def fire(self, name: str, **labels: str) -> None:
        labels = {"alertname": name, **labels}
        # re-posts keep the startsAt they began with, as Alertmanager's do (see `IncidentManager._began_anew`)
        a = Alert(labels=labels, annotations={}, starts_at=T0, ends_at=None, status="firing")
        self.c.pipeline.process_alerts([a], self.clock.now())
        self.flush()

    def run_until(self, seconds: float) -> None:
        """Advance the clock, firing every timer at its own time."""
        end = self.clock.now() + seconds
        while (due := self.c.pipeline.next_deadline()) is not None and due <= end:
            self.clock.set(due)
            self.c.pipeline.tick(due)
            self.flush()
        self.clock.set(end)

    def ack(self, iid: str, who: str = "alice") -> None:
        self.c.incidents.acknowledge(iid, who, self.clock.now())
        self.c.pipeline.publish(self.c.incidents.drain_changes(), self.clock.now())
        self.flush()

    def resolve(self, iid: str, who: str = "alice") -> None:
        self.c.incidents.resolve(iid, who, self.clock.now())
        self.c.pipeline.publish(self.c.incidents.drain_changes(), self.clock.now())
        self.flush()

    def outbox(self) -> list[tuple[str, str, float, dict]]:
        rows = self.store.query("SELECT receiver, reason, created_at, message FROM notify_outbox ORDER BY id")
        return [(r, why, at - T0, json.loads(m)) for r, why, at, m in rows]

    def timeline(self, iid: str, kind: str) -> list[str]:
        return [t for (t,) in self.store.query(
            "SELECT text FROM timeline WHERE incident_id=? AND kind=? ORDER BY id", (iid, kind))]


def test_first_message_waits_for_the_group_and_carries_its_alerts(tmp_path):
    w = World(tmp_path)
    w.fire("CheckoutErrors", service="checkout", severity="warning")
    w.run_until(10)
    w.fire("CheckoutErrors", service="checkout", severity="warning", instance="b")
    assert w.outbox() == []
    w.run_until(30)
    [(receiver, reason, at, msg)] = w.outbox()
    assert (receiver, reason, at) == ("chat", "opened", 30)
    assert msg["incident"]["alerts_total"] == 2


def test_priority_raise_and_resolve_notify_after_the_first_message_only(tmp_path):
    w = World(tmp_path)
    w.fire("Errors", service="checkout", severity="warning")
    w.fire("Errors", service="checkout", severity="critical", instance="b")  # raised during group wait
    w.run_until(30)
    w.fire("Errors", service="checkout", severity="critical", instance="c")
    w.resolve("INC-000001")
    reasons = [(r, why) for r, why, _, _ in w.outbox()]
    assert reasons == [("chat", "opened"), ("chat", "resolved")]


def test_repeat_while_unacknowledged_and_not_after_ack(tmp_path):
    w = World(tmp_path)
    w.fire("Errors", service="checkout")
    w.run_until(30 + 3600 * 2)
    assert [(why, at) for _, why, at, _ in w.outbox()] == [("opened", 30), ("repeat", 3630), ("repeat", 7230)]
    w.ack("INC-000001")
    w.run_until(3600 * 5)
    assert len(w.outbox()) == 3


def test_escalation_levels_until_acknowledged(tmp_path):
    w = World(tmp_path)
    w.fire("CardDeclines", service="payments", team="payments", severity="critical")
    w.c.incidents.incidents["INC-000001"].team = "payments"  # as a routing rule would set it
    w.run_until(30)
    assert [(r, why) for r, why, _, _ in w.outbox()] == [("pager", "opened")]
    w.run_until(600)  # 10m after the first page, nobody acknowledged
    assert [(r, why, at) for r, why, at, _ in w.outbox()][1:] == [("lead", "escalated", 630)]
    assert w.timeline("INC-000001", "escalated")[0].startswith("escalated to level 2 (lead)")
    w.ack("INC-000001", "lead-on-call")
    w.run_until(3600)
    reasons = [(r, why) for r, why, _, _ in w.outbox()]
    assert ("boss", "escalated") not in reasons
    # PagerDuty follows the ack; Slack-style and webhook receivers do not get acks by default
    assert reasons[-1] == ("pager", "acknowledged")


def test_escalation_deadline_survives_a_restart(tmp_path):
    w = World(tmp_path)
    w.fire("CardDeclines", service="payments")
    w.c.incidents.incidents["INC-000001"].team = "payments"
    w.run_until(300)
    w.restart()  # the daemon goes down between the first page and the escalation
    w.run_until(330 + 1200 + 1)
    got = [(r, why, at) for r, why, at, _ in w.outbox()]
    assert got == [("pager", "opened", 30), ("lead", "escalated", 630),
                   ("boss", "escalated", 1830), ("chat", "escalated", 1830)]


def test_group_wait_survives_a_restart(tmp_path):
    w = World(tmp_path)
    w.fire("Errors", service="checkout")
    w.run_until(5)
    w.restart()
    w.run_until(60)
    assert [(why, at) for _, why, at, _ in w.outbox()] == [("opened", 30)]


def test_sla_breach_is_a_timeline_event_a_metric_and_on_the_incident(tmp_path):
    w = World(tmp_path)
    w.fire("CardDeclines", service="payments", severity="critical")  # P2
    inc = w.c.incidents.get("INC-000001")
    assert inc.priority == "P2"
    assert inc.extra["sla"]["acknowledge_by"] == "2026-01-01T00:15:00Z"
    w.run_until(900 + 1)
    assert inc.extra["sla"]["acknowledge_breached"] is True
    assert w.timeline("INC-000001", "sla_breach") == ["SLA breached: P2 incident not acknowledged within 900s"]
    metrics = w.c.parts["sla"].tracker.breaches.labels("acknowledge", "P2")._value.get()
    assert metrics == 1
    w.ack("INC-000001")
    w.resolve("INC-000001")
    assert inc.extra["sla"]["resolve_breached"] is False


def test_sla_deadline_survives_a_restart_and_ack_in_time_is_no_breach(tmp_path):
    w = World(tmp_path)
    w.fire("CardDeclines", service="payments", severity="critical")
    w.fire("Other", service="orders", severity="critical")
    w.run_until(600)
    w.restart()
    w.ack("INC-000002")
    w.run_until(7200 + 1)
    assert w.timeline("INC-000001", "sla_breach") == [
        "SLA breached: P2 incident not acknowledged within 900s",
        "SLA breached: P2 incident not resolved within 7200s"]
    assert w.timeline("INC-000002", "sla_breach") == ["SLA breached: P2 incident not resolved within 7200s"]


def test_stats_report_mtta_mttr_compliance_and_noise(tmp_path):
    from daemon.stats import compute_stats

    w = World(tmp_path)
    w.fire("A", service="payments", severity="critical")
    w.fire("A", service="payments", severity="critical", instance="2")
    w.fire("B", service="orders", severity="critical")
    w.run_until(60)
    w.ack("INC-000001")
    w.run_until(1000)
    w.ack("INC-000002")  # late: breached
    w.resolve("INC-000001")
    w.resolve("INC-000002")
    s = compute_stats(w.store, T0 - 1, w.clock.now())
    assert s["incidents"] == 2
    assert s["mtta_seconds"] == (60 + 1060) / 2
    assert s["by_priority"]["P2"]["sla_acknowledge_compliance"] == 0.5
    assert s["by_team"]["none"]["incidents"] == 2
    assert s["incidents_per_service"] == {"orders": 1, "payments": 1}
    assert s["alerts_per_incident"] == 1.5
    assert s["noise_reduction"] == round(1 - 2 / 3, 4)


def test_replay_runs_the_policy_without_sending(tmp_path):
    from daemon.replay import run_replay

    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"kind": "alert", "at": "2026-01-01T00:00:00Z", "alert": {
        "labels": {"alertname": "X", "service": "s"}, "startsAt": "2026-01-01T00:00:00Z"}}) + "\n")
    config = load_config(write_config(tmp_path, CONFIG))
    result = run_replay(config, str(events), str(tmp_path / "out.json"))
    [inc] = result["incidents"]
    # the alert resolved itself after resolve_timeout (5m): within every P5 target
    assert inc["sla"] == {"priority": "P5", "acknowledge_by": "2026-01-02T00:00:00Z",
                          "resolve_by": "2026-01-08T00:00:00Z", "acknowledge_breached": False,
                          "resolve_breached": False}


def test_replay_writes_the_repeats_of_a_quiet_stretch_as_they_come(tmp_path, monkeypatch):
    """A day between two events with an alert firing throughout and a repeat every minute:
    1,440 repeat notifications, written to the store in batches during the stretch rather
    than held until the next event; the result is the same either way."""
    from daemon import replay

    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"kind": "alert", "at": at, "alert": {
        "labels": {"alertname": name, "service": "s"}, "status": "firing", "startsAt": at,
        "endsAt": "2027-01-01T00:00:00Z"}}) + "\n" for at, name in (
            ("2026-01-01T00:00:00Z", "X"), ("2026-01-02T00:00:00Z", "Y"))))
    config = load_config(write_config(tmp_path, CONFIG.replace("repeat_interval: 1h", "repeat_interval: 1m")))

    def run(flush_every: int) -> tuple[dict, int, int]:
        monkeypatch.setattr(replay, "FLUSH_TIMERS", flush_every)
        with tempfile.TemporaryDirectory() as workdir:
            components, store = replay.replay_events(config, str(events), workdir)
            try:
                repeats = store.query_one("SELECT COUNT(*) FROM notify_outbox WHERE reason='repeat'")[0]
                return replay.build_result(components, store), store.commits, repeats
            finally:
                store.close()

    once, commits_once, repeats = run(10**9)
    batched, commits_batched, _ = run(100)
    assert repeats >= 1440
    assert commits_batched >= commits_once + 1440 // 100  # a write every 100 timers fired
    assert batched == once


def _resolved(w, name: str, **labels: str) -> None:
    labels = {"alertname": name, **labels}
    a = Alert(labels=labels, annotations={}, starts_at=T0, ends_at=w.clock.now(), status="resolved")
    w.c.pipeline.process_alerts([a], w.clock.now())
    w.flush()


def _host_down_inhibits(tmp_path) -> World:
    """A world whose rules let HostDown inhibit every other alert on its instance."""
    (tmp_path / "rules.yaml").write_text(
        "inhibit_rules:\n  - {name: host-down, source_matchers: ['alertname=\"HostDown\"'],"
        " target_matchers: ['alertname!=\"HostDown\"'], equal: [instance]}\n")
    return World(tmp_path, CONFIG + "rules: [rules.yaml]\n")


def test_an_alert_no_longer_inhibited_pages_then(tmp_path):
    w = _host_down_inhibits(tmp_path)
    w.fire("HostDown", instance="h1")
    w.run_until(60)
    w.fire("DiskFull", instance="h1")  # inhibited: an incident that does not page
    w.run_until(60)
    assert [(why, msg["incident"]["id"]) for _, why, _, msg in w.outbox()] == [("opened", "INC-000001")]
    _resolved(w, "HostDown", instance="h1")
    w.run_until(60)
    w.fire("DiskFull", instance="h1")  # still firing, no longer inhibited: it pages now
    w.run_until(30)
    assert [(why, at) for _, why, at, msg in w.outbox() if msg["incident"]["id"] == "INC-000002"] == [
        ("opened", 180)]
    assert w.timeline("INC-000002", "alert_unsuppressed")


def test_an_inhibiting_alert_that_comes_later_stops_the_reminders_of_one_already_firing(tmp_path):
    w = _host_down_inhibits(tmp_path)
    w.fire("DiskFull", instance="h1")
    w.run_until(60)
    w.fire("HostDown", instance="h1")  # the cause shows up after its symptom paged
    for _ in range(24):  # both re-posted every 5 minutes, as Alertmanager re-sends them
        w.run_until(300)
        w.fire("HostDown", instance="h1")
        w.fire("DiskFull", instance="h1")
    assert w.c.incidents.get("INC-000001").paging is False
    [why] = w.timeline("INC-000001", "alert_suppressed")
    assert why.startswith("alert DiskFull is now inhibited by host-down: HostDown[")
    sent = [(msg["incident"]["id"], why) for _, why, _, msg in w.outbox()]
    assert sent == [("INC-000001", "opened"), ("INC-000002", "opened"), ("INC-000002", "repeat")]


def test_a_silence_added_while_an_alert_fires_stops_its_reminders(tmp_path):
    from rules.silences import Silence

    w = World(tmp_path)
    w.fire("Errors", service="checkout")
    w.run_until(60)
    silences = w.c.parts["rules"].silences
    s = silences.add(Silence.from_dict({"matchers": ['alertname="Errors"'], "endsAt": T0 + 3 * 3600},
                                       now=w.clock.now()), w.clock.now())
    w.fire("Errors", service="checkout")  # the next re-post meets the silence
    assert w.c.incidents.get("INC-000001").paging is False
    assert w.timeline("INC-000001", "alert_suppressed") == [f"alert Errors is now silenced by {s.id}"]
    w.run_until(2 * 3600)
    assert [why for _, why, _, _ in w.outbox()] == ["opened"]  # no reminders while silenced
    silences.expire(s.id, w.clock.now())
    w.fire("Errors", service="checkout")
    w.run_until(3600)
    assert [why for _, why, _, _ in w.outbox()] == ["opened", "repeat"]


def test_a_reopened_incident_keeps_its_acknowledgement_and_deadlines(tmp_path):
    from daemon.stats import compute_stats

    w = World(tmp_path)
    w.fire("CardDeclines", service="payments", severity="critical")  # P2: acknowledge within 15m
    w.run_until(60)
    w.ack("INC-000001")
    _resolved(w, "CardDeclines", service="payments", severity="critical")
    w.run_until(300)
    assert w.c.incidents.get("INC-000001").state == "resolved"
    w.fire("CardDeclines", service="payments", severity="critical")  # within the reopen window
    assert w.c.incidents.get("INC-000001").state == "open"  # to be acknowledged again
    w.run_until(3600)
    assert w.timeline("INC-000001", "sla_breach") == []  # it was acknowledged in time
    w.ack("INC-000001", "bob")
    w.resolve("INC-000001")
    s = compute_stats(w.store, T0 - 1, w.clock.now())
    assert (s["incidents"], s["mtta_seconds"]) == (1, 60)
    assert s["by_priority"]["P2"]["sla_acknowledge_compliance"] == 1.0


@pytest.mark.parametrize("resolved_first", [False, True])
def test_an_incident_merged_away_leaves_no_sla_record(tmp_path, resolved_first):
    from daemon.pipeline import IncidentChange

    w = World(tmp_path)
    w.fire("A", service="payments", severity="critical")
    if resolved_first:
        _resolved(w, "A", service="payments", severity="critical")
    w.fire("B", service="orders", severity="critical")
    tracker = w.c.parts["sla"].tracker
    into = w.c.incidents.get("INC-000002")
    tracker.on_changes([IncidentChange("merged", into, w.clock.now(), detail={"merged": "INC-000001"})],
                       w.clock.now())
    w.flush()
    w.run_until(3600)
    assert set(tracker.active) == {"INC-000002"} and w.timeline("INC-000001", "sla_breach") == []
    assert [i for (i,) in w.store.query("SELECT incident_id FROM sla")] == ["INC-000002"]


def test_a_priority_raised_later_brings_in_the_route_for_that_priority(tmp_path):
    config = CONFIG.replace("  default: {receivers: [chat]}\n",
                            "  default: {receivers: [chat]}\n  routes: [{match: {priority: [P2]}, receivers: [pager]}]\n")
    w = World(tmp_path, config)
    w.fire("Errors", service="checkout", severity="warning")
    w.run_until(30)
    assert w.c.incidents.get("INC-000001").priority != "P2"
    w.fire("Errors", service="checkout", severity="critical", instance="b")
    assert w.c.incidents.get("INC-000001").priority == "P2"
    assert [(r, why) for r, why, _, _ in w.outbox()] == [
        ("chat", "opened"), ("chat", "priority_raised"), ("pager", "priority_raised")]
    w.run_until(3600)
    assert sorted(r for r, why, _, _ in w.outbox() if why == "repeat") == ["chat", "pager"]


def test_the_acknowledge_target_counts_from_when_the_incident_first_pages(tmp_path):
    w = _host_down_inhibits(tmp_path)
    w.fire("HostDown", instance="h1", severity="critical")
    w.fire("DiskFull", instance="h1", severity="critical")  # P2, inhibited: pages nobody
    w.ack("INC-000001")
    w.run_until(20 * 60)
    assert w.timeline("INC-000002", "sla_breach") == []  # nobody was asked to acknowledge it
    _resolved(w, "HostDown", instance="h1", severity="critical")
    w.fire("DiskFull", instance="h1", severity="critical")  # pages now: 15 minutes from here
    assert w.c.incidents.get("INC-000002").extra["sla"]["acknowledge_by"] == format_rfc3339(T0 + 35 * 60)
    w.run_until(16 * 60)
    assert w.timeline("INC-000002", "sla_breach") == ["SLA breached: P2 incident not acknowledged within 900s"]


def test_the_first_message_of_a_known_problem_recurring_carries_its_workaround(tmp_path):
    from daemon.notify.config import ReceiverConfig
    from daemon.notify.templates import Templates, context, render

    w = World(tmp_path)
    for _ in range(2):  # the same fault twice: a problem
        w.fire("MysqlDown", service="orders-db", severity="critical")
        w.run_until(600)
        _resolved(w, "MysqlDown", service="orders-db", severity="critical")
        w.run_until(86400)
    problems = w.c.parts["problems"]
    [pid] = list(problems.problems)
    problems.update(pid, {"workaround": "fail over to the replica"}, "alice", w.clock.now())
    w.flush()
    w.fire("MysqlDown", service="orders-db", severity="critical")
    w.run_until(30)
    _, why, _, msg = w.outbox()[-1]
    assert why == "opened" and msg["incident"]["known_problem"]["workaround"] == "fail over to the replica"
    webhook, slack = (Templates.for_receiver(ReceiverConfig(name="x", type=t, url="http://127.0.0.1:9/"))
                      for t in ("webhook", "slack"))
    text = render(webhook.text, context(msg, "x"))
    assert f"Known problem {pid}: " in text and "Workaround: fail over to the replica\n" in text
    assert "workaround: fail over to the replica" in render(slack.text, context(msg, "x"))
    assert "<td>fail over to the replica</td>" in render(webhook.html, context(msg, "x"))


def test_a_silence_recorded_ahead_silences_a_firing_alert_when_it_starts(tmp_path):
    from rules.silences import Silence

    w = World(tmp_path)
    w.fire("Errors", service="checkout")
    w.run_until(60)
    silences = w.c.parts["rules"].silences
    silences.add(Silence.from_dict({"matchers": ['alertname="Errors"'], "startsAt": T0 + 600,
                                    "endsAt": T0 + 5 * 3600}, now=w.clock.now()), w.clock.now())
    for _ in range(3):  # re-posts every 5 minutes; the silence starts at 10 minutes
        w.run_until(300)
        w.fire("Errors", service="checkout")
    assert w.c.incidents.get("INC-000001").paging is False
    w.run_until(3 * 3600)
    assert [why for _, why, _, _ in w.outbox()] == ["opened"]


def test_an_inhibiting_alert_a_rule_marks_keeps_inhibiting_while_it_fires(tmp_path):
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {match: ['alertname=\"HostDown\"'], set_labels: {role: cause}}\n"
        "inhibit_rules:\n  - {name: cause, source_matchers: ['role=\"cause\"'],"
        " target_matchers: ['role!=\"cause\"'], equal: [instance]}\n")
    w = World(tmp_path, CONFIG + "rules: [rules.yaml]\n")
    host = {"instance": "h1", "severity": "critical"}
    for minute in range(12):  # HostDown re-posted each minute with a 4-minute endsAt
        a = Alert(labels={"alertname": "HostDown", **host}, annotations={}, starts_at=T0,
                  ends_at=w.clock.now() + 240, status="firing")
        w.c.pipeline.process_alerts([a], w.clock.now())
        if minute == 0:
            w.fire("DiskFull", **host)
        elif minute % 2 == 0:
            w.fire("DiskFull", **host)
        w.flush()
        w.run_until(60)
    assert [msg["incident"]["id"] for _, _, _, msg in w.outbox()] == ["INC-000001"]
    assert w.timeline("INC-000002", "alert_unsuppressed") == []


def test_reopening_an_incident_that_resolved_by_itself_is_no_acknowledge_breach(tmp_path):
    w = World(tmp_path)
    w.fire("CardDeclines", service="payments", severity="critical")  # P2: acknowledge within 15m
    w.run_until(600)
    _resolved(w, "CardDeclines", service="payments", severity="critical")  # answered by resolving
    w.run_until(480)
    w.fire("CardDeclines", service="payments", severity="critical")  # reopens at 18m
    w.run_until(600)
    assert w.timeline("INC-000001", "sla_breach") == []


def test_a_receiver_listed_twice_gets_each_message_once(tmp_path):
    config = CONFIG.replace("  payments: {receivers: [pager], escalation_policy: payments}",
                            "  payments: {receivers: [pager, lead, pager]}").replace(
        "  default: {receivers: [chat]}\n",
        "  default: {receivers: [chat, lead, chat]}\n"
        "  routes: [{match: {priority: [P2]}, receivers: [boss, boss]}]\n")
    w = World(tmp_path, config)
    w.fire("Errors", service="checkout", severity="warning")  # the default route
    w.fire("CardDeclines", service="payments", severity="warning")
    w.c.incidents.incidents["INC-000002"].team = "payments"  # as a routing rule would set it
    w.run_until(30)
    w.fire("Errors", service="checkout", severity="critical", instance="b")  # P2: the route's receivers join
    w.resolve("INC-000001")
    w.resolve("INC-000002")
    sent = [(msg["incident"]["id"], r, why) for r, why, _, msg in w.outbox()]
    assert sent == [
        ("INC-000001", "chat", "opened"), ("INC-000001", "lead", "opened"),
        ("INC-000002", "pager", "opened"), ("INC-000002", "lead", "opened"),
        ("INC-000001", "chat", "priority_raised"), ("INC-000001", "lead", "priority_raised"),
        ("INC-000001", "boss", "priority_raised"),
        ("INC-000001", "chat", "resolved"), ("INC-000001", "lead", "resolved"), ("INC-000001", "boss", "resolved"),
        ("INC-000002", "pager", "resolved"), ("INC-000002", "lead", "resolved"),
    ]


@pytest.mark.parametrize("merged_at", [700, 1000])
def test_a_merge_keeps_the_earlier_incidents_acknowledge_clock_and_breach(tmp_path, merged_at):
    """The incident merged away began first: the surviving one is answerable from then
    (700 s: it breaches at 900 s, not at 1500 s), and a breach it already had stands
    (1000 s: counted once)."""
    from daemon.pipeline import IncidentChange

    w = World(tmp_path)
    w.fire("A", service="payments", severity="critical")  # P2: acknowledge within 15m
    w.run_until(600)
    w.fire("B", service="orders", severity="critical")
    w.run_until(merged_at - 600)
    tracker = w.c.parts["sla"].tracker
    into = w.c.incidents.get("INC-000002")
    tracker.on_changes([IncidentChange("merged", into, w.clock.now(), detail={"merged": "INC-000001"})],
                       w.clock.now())
    w.run_until(1600 - merged_at)
    rec = tracker.active["INC-000002"]
    assert rec.opened_at == T0 and rec.acknowledge_due == T0 + 900 and rec.acknowledge_breached
    assert tracker.breaches.labels("acknowledge", "P2")._value.get() == 1
    expected = ["SLA breached: P2 incident not acknowledged within 900s"] if merged_at == 700 else []
    assert w.timeline("INC-000002", "sla_breach") == expected


@pytest.mark.parametrize("restart", [False, True])
def test_a_reopened_incident_that_was_never_acknowledged_does_not_count_as_acknowledged(tmp_path, restart):
    """Its resolution answered the page (the acknowledge target was met, once), but
    nobody acknowledged it: no MTTA until someone does."""
    from daemon.stats import compute_stats

    w = World(tmp_path)
    w.fire("CardDeclines", service="payments", severity="critical")  # P2: acknowledge within 15m
    w.fire("OrdersDown", service="orders", severity="critical")
    w.run_until(120)
    w.ack("INC-000002")
    w.run_until(480)
    _resolved(w, "CardDeclines", service="payments", severity="critical")  # at 10m, not acknowledged
    w.run_until(60)
    if restart:  # the record comes back from the store, not from memory
        w.restart()
    w.fire("CardDeclines", service="payments", severity="critical")  # reopens
    assert w.c.incidents.get("INC-000001").state == "open"
    w.run_until(3600)
    s = compute_stats(w.store, T0 - 1, w.clock.now())
    assert (s["acknowledged"], s["mtta_seconds"]) == (1, 120)  # only INC-000002
    assert (s["sla_acknowledge_compliance"], s["sla_acknowledge_breaches"]) == (1.0, 0)
    assert w.timeline("INC-000001", "sla_breach") == []

    def decided() -> float | None:
        return w.metrics.registry.get_sample_value(
            "incidentd_sla_outcomes_total", {"target": "acknowledge", "priority": "P2", "outcome": "met"})

    before = decided()
    w.ack("INC-000001")  # at 71m: now it is acknowledged; the target was decided already
    s = compute_stats(w.store, T0 - 1, w.clock.now())
    assert (s["acknowledged"], s["mtta_seconds"]) == (2, (120 + 71 * 60) / 2)
    assert s["sla_acknowledge_compliance"] == 1.0 and decided() == before


def test_a_store_written_before_the_answered_column_opens_with_its_sla_rows_answered(tmp_path):
    """Stores of the previous version have no `acknowledge_answered_at`: opening one adds
    it, filled as that version read its rows (answered when acknowledged or resolved),
    and an incident it marked acknowledged when it reopened unacknowledged is not."""
    import sqlite3

    from daemon.stats import compute_stats

    path = str(tmp_path / "old.sqlite3")
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE sla (incident_id TEXT PRIMARY KEY, priority TEXT NOT NULL, team TEXT, service TEXT,
            alerts INTEGER NOT NULL DEFAULT 1, opened_at REAL NOT NULL, acknowledge_due REAL, resolve_due REAL,
            acknowledged_at REAL, resolved_at REAL, acknowledge_breached INTEGER NOT NULL DEFAULT 0,
            resolve_breached INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE timeline (id INTEGER PRIMARY KEY, incident_id TEXT NOT NULL, at REAL NOT NULL,
            kind TEXT NOT NULL, actor TEXT NOT NULL, text TEXT NOT NULL, data TEXT);
    """)
    conn.execute("INSERT INTO timeline (incident_id, at, kind, actor, text) VALUES"
                 " ('acked', ?, 'acknowledged', 'alice', 'acknowledged by alice')", (T0 + 60,))
    conn.executemany("INSERT INTO sla (incident_id, priority, opened_at, acknowledge_due, resolve_due,"
                     " acknowledged_at, resolved_at) VALUES (?, 'P2', ?, ?, ?, ?, ?)", [
                         ("acked", T0, T0 + 900, T0 + 7200, T0 + 60, T0 + 100),
                         ("resolved", T0, T0 + 900, T0 + 7200, None, T0 + 600),
                         ("open", T0, T0 + 900, T0 + 7200, None, None),
                         ("reopened", T0, T0 + 900, T0 + 7200, T0 + 300, None)])  # resolved at 300
    conn.commit()
    conn.close()
    for _ in range(2):  # and again, once it has the column
        store = Store(path, threaded=False)
        answered = store.query("SELECT incident_id, acknowledge_answered_at FROM sla ORDER BY incident_id")
        s = compute_stats(store, T0 - 1, T0 + 1000)
        assert (store.get_meta("schema_version"), store.query("SELECT count(*) FROM incidents")) == ("1", [(0,)])
        store.close()
        assert answered == [("acked", T0 + 60), ("open", None), ("reopened", T0 + 300), ("resolved", T0 + 600)]
        assert (s["incidents"], s["acknowledged"], s["mtta_seconds"]) == (4, 1, 60)
        assert (s["sla_acknowledge_compliance"], s["sla_acknowledge_breaches"]) == (1.0, 0)


class _Merging:
    """Places the first two alerts in incidents of their own, then the third in the
    second incident, merging the first into it (as a CI related to both would)."""

    def __init__(self, correlator) -> None:
        self.inner, self.seen = correlator, 0

    def place(self, event, incidents, now, since=None, leaving=None):
        from daemon.pipeline import Placement

        self.seen += 1
        ids = {1: [], 2: [], 3: ["INC-000002", "INC-000001"]}[self.seen]
        return Placement(ids, "related to both", f"k{self.seen}")

    def analyze(self, incident, now, incidents=None):
        return self.inner.analyze(incident, now)

    def outlasting(self, incident):
        return None


def test_an_acknowledged_incident_merged_into_a_paging_one_stops_its_escalation(tmp_path):
    """Someone is on the fault: the incident it became part of is acknowledged as of
    then, stops escalating, and its acknowledge target was met then."""
    from daemon.stats import compute_stats

    w = World(tmp_path)
    incidents = w.c.incidents
    incidents.correlator = _Merging(incidents.correlator)
    w.fire("CardDeclines", service="payments", severity="critical")  # P2: INC-1
    w.run_until(60)
    w.fire("CardDeclines", service="payments", severity="critical", instance="b")  # INC-2
    incidents.incidents["INC-000002"].team = "payments"  # as a routing rule would set it: it escalates
    w.run_until(60)
    w.ack("INC-000001")  # at 120 s
    w.run_until(180)
    w.fire("PaymentsDown", service="payments", severity="critical")  # at 300 s: merges INC-1 into INC-2
    inc = incidents.get("INC-000002")
    assert (inc.state, inc.acknowledged_at, inc.acknowledged_by) == ("acknowledged", T0 + 120, "alice")
    assert w.timeline("INC-000002", "acknowledged") == [
        "acknowledged: INC-000001, merged in, was acknowledged by alice"]
    w.run_until(3600)
    sent = [(msg["incident"]["id"], r, why) for r, why, _, msg in w.outbox()]
    assert sent[-1] == ("INC-000002", "pager", "acknowledged")  # PagerDuty follows the ack
    assert [s for s in sent if s[2] in ("escalated", "repeat")] == []  # lead was due at 690 s
    assert w.timeline("INC-000002", "sla_breach") == []
    s = compute_stats(w.store, T0 - 1, w.clock.now())
    assert (s["incidents"], s["acknowledged"], s["mtta_seconds"]) == (1, 1, 120)


TLS = "listen: 127.0.0.1:9443\ntls: {cert: server.crt, key: server.key}\n"


@pytest.mark.parametrize("config, base", [
    (CONFIG, "http://127.0.0.1:9095"),
    (TLS + CONFIG, "https://127.0.0.1:9443"),
    (TLS + CONFIG.replace("notify:\n", "notify:\n  external_url: http://incidentd.example/\n"),
     "http://incidentd.example"),
    ("listen: 0.0.0.0:9095\n" + CONFIG, f"http://{socket.gethostname()}:9095"),
    ("listen: '[::]:9095'\n" + CONFIG, f"http://{socket.gethostname()}:9095"),
], ids=["plain", "tls", "external-url", "any-ipv4", "any-ipv6"])
def test_message_links_use_https_when_the_api_serves_tls_and_the_external_url_wins(tmp_path, config, base):
    w = World(tmp_path, config)
    w.fire("Errors", service="checkout")
    w.run_until(30)
    [(_, _, _, msg)] = w.outbox()
    assert msg["link"] == f"{base}/api/v1/incidents/INC-000001"
