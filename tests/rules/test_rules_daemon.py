"""The rules package in the daemon: silences and changes API over real HTTP,
persistence, reload, replay `change` events and `suspected_change`, check-config."""

import json

import pytest
from harness import T0

from daemon.app import Daemon
from daemon.cli import check_config_errors
from daemon.clock import VirtualClock
from daemon.config import load_config
from daemon.replay import run_replay
from daemon.timefmt import format_rfc3339


def write_config(tmp_path, rules: str, extra: str = "") -> str:
    (tmp_path / "rules.yaml").write_text(rules)
    path = tmp_path / "config.yaml"
    path.write_text(f"data_dir: data\nrules: [rules.yaml]\n{extra}")
    return str(path)


def alert(**labels) -> dict:
    return {"labels": labels, "annotations": {}, "startsAt": "2026-01-01T00:00:00Z"}


async def test_silence_api_create_list_expire(tmp_path, daemon_for):
    c = await daemon_for(write_config(tmp_path, "rules: []\n"))
    status, body = await c.call(
        "POST",
        "/api/v1/silences",
        {
            "matchers": [{"name": "service", "value": "orders", "isRegex": False, "isEqual": True}],
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "2026-01-01T01:00:00Z",
            "createdBy": "jane",
            "comment": "load test",
        },
    )
    assert status == 200
    sid = body["silenceID"]
    status, listed = await c.call("GET", "/api/v1/silences")
    assert [(s["id"], s["status"]["state"], s["createdBy"]) for s in listed] == [
        (sid, "active", "jane")
    ]

    await c.call("POST", "/api/v1/alerts", [alert(alertname="Errors", service="orders")])
    await c.call("POST", "/api/v1/alerts", [alert(alertname="Errors", service="search")])
    incidents = await c.incidents(1)
    assert [i["alerts"][0]["labels"]["service"] for i in incidents] == [
        "search"
    ]  # silenced: no incident
    _, metrics = await c.call("GET", "/metrics")
    assert 'incidentd_alerts_suppressed_total{reason="silenced"} 1.0' in metrics

    status, expired = await c.call("DELETE", f"/api/v1/silences/{sid}")
    assert status == 200 and expired["status"]["state"] == "expired"


def webhook(*alerts: dict) -> dict:
    return {"version": "4", "status": "firing", "receiver": "incidentd", "alerts": list(alerts),
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "",
            "groupKey": "{}:{}", "truncatedAlerts": 0}  # fmt: skip


def wh_alert(**labels) -> dict:
    """A firing webhook alert: its endsAt is Go's zero time."""
    return {"status": "firing", "labels": labels, "annotations": {},
            "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}  # fmt: skip


async def test_a_webhook_alert_inhibits_until_the_webhook_that_resolves_it(tmp_path, daemon_for):
    rules = (
        "inhibit_rules:\n  - source_matchers: ['severity=\"critical\"']\n"
        "    target_matchers: ['severity=\"warning\"']\n    equal: [service]\n"
    )
    c = await daemon_for(write_config(tmp_path, rules))
    crit = wh_alert(alertname="Down", severity="critical", service="orders")
    warn = wh_alert(alertname="Slow", severity="warning", service="orders")
    hook = "/api/v1/alerts/alertmanager"
    assert (await c.call("POST", hook, webhook(crit)))[0] == 200
    assert (await c.call("POST", hook, webhook(warn)))[0] == 200
    # Alertmanager sends the warning's group again (another pod joined it) an hour
    # later; the critical alert, unchanged, is not re-sent before its repeat_interval
    c.daemon.clock.advance(3600)
    more = wh_alert(alertname="Slow", severity="warning", service="orders", pod="b")
    assert (await c.call("POST", hook, webhook(warn, more)))[0] == 200
    await c.daemon.wait_idle()
    _, slow = await c.call("GET", "/api/v1/incidents/INC-000002")
    assert [bool(a["inhibited_by"]) for a in slow["alerts"]] == [True, True]
    assert slow["paging"] is False
    # resolved: the next re-send of the warnings is no longer inhibited
    assert (await c.call("POST", hook, webhook(dict(crit, status="resolved",
                                                     endsAt="2026-01-01T01:00:00Z"))))[0] == 200
    assert (await c.call("POST", hook, webhook(warn, more)))[0] == 200
    await c.daemon.wait_idle()
    _, slow = await c.call("GET", "/api/v1/incidents/INC-000002")
    assert [a["inhibited_by"] for a in slow["alerts"]] == [None, None] and slow["paging"] is True


async def test_inhibition_holds_across_a_restart(tmp_path, daemon_for):
    rules = (
        "inhibit_rules:\n  - source_matchers: ['severity=\"critical\"']\n"
        "    target_matchers: ['severity=\"warning\"']\n    equal: [service]\n"
    )
    config = write_config(tmp_path, rules)
    c = await daemon_for(config)
    crit = {"labels": {"alertname": "Down", "severity": "critical", "service": "orders"}}
    warn = {"labels": {"alertname": "Slow", "severity": "warning", "service": "orders"}}
    await c.post_alerts(crit)
    await c.post_alerts(warn)
    await c.daemon.wait_idle()
    await c.stop()
    # after the restart, the warning is sent again before the critical alert is
    c = await daemon_for(config, clock=VirtualClock(T0 + 60))
    await c.post_alerts(warn)
    await c.daemon.wait_idle()
    _, slow = await c.call("GET", "/api/v1/incidents/INC-000002")
    assert slow["alerts"][0]["inhibited_by"] and slow["paging"] is False


async def test_a_silence_recorded_ahead_silences_an_alert_that_fired_before_it_started(
    tmp_path, daemon_for
):
    c = await daemon_for(write_config(tmp_path, "rules: []\n"))
    status, _ = await c.call(
        "POST",
        "/api/v1/silences",
        {"matchers": ['service="orders"'], "startsAt": "2026-01-01T01:00:00Z",
         "endsAt": "2026-01-01T03:00:00Z", "comment": "maintenance tonight"},
    )  # fmt: skip
    assert status == 200
    c.daemon.clock.advance(600)
    down = wh_alert(alertname="Down", service="orders")
    hook = "/api/v1/alerts/alertmanager"
    assert (await c.call("POST", hook, webhook(down)))[0] == 200  # pages: not silenced yet
    await c.daemon.wait_idle()
    # Alertmanager's next re-send (repeat_interval) comes while the silence is active
    c.daemon.clock.advance(3 * 3600 - 600 - 60)
    assert (await c.call("POST", hook, webhook(down)))[0] == 200
    await c.daemon.wait_idle()
    _, inc = await c.call("GET", "/api/v1/incidents/INC-000001")
    assert inc["alerts"][0]["silenced_by"] and inc["paging"] is False


async def test_posting_an_expired_silence_again_makes_a_new_one_and_keeps_the_old(
    tmp_path, daemon_for
):
    c = await daemon_for(write_config(tmp_path, "rules: []\n"))
    first = {"matchers": ['env="staging"'], "endsAt": "2026-01-01T01:00:00Z", "comment": "deploy 1"}
    _, body = await c.call("POST", "/api/v1/silences", first)
    old_id = body["silenceID"]
    c.daemon.clock.advance(2 * 3600)
    again = {**first, "id": old_id, "endsAt": "2026-01-01T03:00:00Z", "comment": "deploy 2"}
    status, body = await c.call("POST", "/api/v1/silences", again)
    assert status == 200 and body["silenceID"] != old_id
    _, listed = await c.call("GET", "/api/v1/silences")
    assert [(s["comment"], s["endsAt"], s["status"]["state"]) for s in listed] == [
        ("deploy 1", "2026-01-01T01:00:00.000Z", "expired"),
        ("deploy 2", "2026-01-01T03:00:00.000Z", "active"),
    ]


async def test_a_silence_from_a_rule_file_is_changed_in_the_file_not_by_the_api(
    tmp_path, daemon_for
):
    rules = "silences:\n  - {id: db-upgrade, matchers: ['env=\"staging\"'], ends_at: 2026-01-02T00:00:00Z}\n"
    c = await daemon_for(write_config(tmp_path, rules))
    change = {"id": "db-upgrade", "matchers": ['env="prod"'], "endsAt": "2026-01-02T00:00:00Z"}
    for method, path, body in (("POST", "/api/v1/silences", change),
                               ("DELETE", "/api/v1/silences/db-upgrade", None)):  # fmt: skip
        status, answer = await c.call(method, path, body)
        assert status == 409, (method, answer)
        assert answer == {"error": f"silence db-upgrade comes from {tmp_path}/rules.yaml",
                          "detail": "edit the rule file and reload"}  # fmt: skip
    _, listed = await c.call("GET", "/api/v1/silences")
    assert [(s["id"], s["matchers"][0]["value"]) for s in listed] == [("db-upgrade", "staging")]


async def test_invalid_silence_is_a_400_with_the_field(tmp_path, daemon_for):
    c = await daemon_for(write_config(tmp_path, "rules: []\n"))
    status, body = await c.call(
        "POST", "/api/v1/silences", {"matchers": ['env="x"'], "endsAt": "yesterday"}
    )
    assert (
        status == 400
        and body["error"] == "invalid silence"
        and body["detail"].startswith("endsAt:")
    )
    status, body = await c.call("DELETE", "/api/v1/silences/nope")
    assert status == 404
    # Alertmanager refuses a silence that ended already rather than store one that does nothing
    status, body = await c.call(
        "POST",
        "/api/v1/silences",
        {"matchers": ['env="x"'], "startsAt": "2025-12-31T22:00:00Z", "endsAt": "2025-12-31T23:00:00Z"},
    )
    assert status == 400 and body["detail"].startswith("endsAt: in the past")
    assert (await c.call("GET", "/api/v1/silences"))[1] == []


async def test_silences_survive_a_restart(tmp_path, daemon_for):
    config = write_config(tmp_path, "rules: []\n")
    c = await daemon_for(config)
    _, body = await c.call(
        "POST",
        "/api/v1/silences",
        {"matchers": ['env="staging"'], "endsAt": "2026-01-02T00:00:00Z"},
    )
    await c.daemon.stop()
    await c.session.close()
    c2 = await daemon_for(config)
    _, listed = await c2.call("GET", "/api/v1/silences")
    assert [s["id"] for s in listed] == [body["silenceID"]]


async def test_change_api_marks_alerts_expected(tmp_path, daemon_for):
    rules = "rules:\n  - {match: ['service=\"orders-db\"'], team: data}\n"
    cmdb = tmp_path / "cmdb.yaml"
    cmdb.write_text("cis:\n  - {id: orders-db, type: database, match: {service: orders-db}}\n")
    c = await daemon_for(write_config(tmp_path, rules, "cmdb: [cmdb.yaml]\n"))
    status, body = await c.call(
        "POST",
        "/api/v1/changes",
        {
            "id": "CHG-7",
            "ci": "orders-db",
            "summary": "upgrade",
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-01T01:00:00Z",
        },
    )
    assert status == 200, body
    await c.until(lambda b: len(b) == 1, "/api/v1/changes")
    await c.call("POST", "/api/v1/alerts", [alert(alertname="PostgresDown", service="orders-db")])
    [inc] = await c.incidents(1)
    assert inc["alerts"][0]["expected"] == "CHG-7" and inc["paging"] is False
    status, body = await c.call("POST", "/api/v1/changes", {"id": "CHG-8"})
    assert status == 400 and body["detail"] == "ci: required string"
    # times that could not be written back out are refused, not stored to fail later
    for field, value in (("end", 1e300), ("start", -1e15), ("end", "9999-12-31T23:59:59-23:59")):
        change = {"id": "CHG-9", "ci": "orders-db", "start": "2026-01-01T00:00:00Z", field: value}
        status, body = await c.call("POST", "/api/v1/changes", change)
        assert status == 400 and body["detail"].startswith(f"{field}: time out of range"), body
    assert [ch["id"] for ch in (await c.call("GET", "/api/v1/changes"))[1]] == ["CHG-7"]


async def test_posted_changes_start_as_written_and_survive_a_restart_whatever_source_they_name(
        tmp_path, daemon_for):
    config = write_config(tmp_path, "rules: []\n")
    c = await daemon_for(config)
    posted = [
        # a `source` in the body does not make it a rule file's (those are not stored)
        {"id": "CHG-1", "ci": "orders-db", "start": "2026-01-01T00:00:00Z", "source": "rules.yaml"},
        # `at` is the start when `start` is absent, as in a replay event
        {"id": "CHG-2", "ci": "orders-db", "at": "2025-12-31T22:00:00Z", "end": "2025-12-31T23:00:00Z"},
        # the epoch is a time like any other, not "no start"
        {"id": "CHG-3", "ci": "orders-db", "start": 0, "end": "2025-12-31T23:00:00Z"},
        {"id": "CHG-4", "ci": "orders-db", "summary": None},  # starts when received
    ]
    status, body = await c.call("POST", "/api/v1/changes", posted)
    assert status == 200 and body["accepted"] == ["CHG-1", "CHG-2", "CHG-3", "CHG-4"], body
    expect = [
        ("CHG-1", "2026-01-01T00:00:00Z", None, "api"),
        ("CHG-2", "2025-12-31T22:00:00Z", "2025-12-31T23:00:00Z", "api"),
        ("CHG-3", "1970-01-01T00:00:00Z", "2025-12-31T23:00:00Z", "api"),
        ("CHG-4", format_rfc3339(T0), None, "api"),
    ]

    def shown(listed):
        return sorted((ch["id"], ch["start"], ch["end"], ch["source"]) for ch in listed)

    await c.until(lambda b: len(b) == 4, "/api/v1/changes")
    assert shown((await c.call("GET", "/api/v1/changes"))[1]) == expect
    await c.daemon.stop()
    await c.session.close()
    c2 = await daemon_for(config)
    assert shown((await c2.call("GET", "/api/v1/changes"))[1]) == expect


@pytest.mark.parametrize("body, detail", [
    ({"id": "CHG-1", "ci": "db", "summary": []}, "summary: expected a string"),
    ({"id": "CHG-1", "ci": "db", "summary": "x" * 10_001}, "summary: at most 10000 characters"),
    ({"id": "CHG-1", "ci": "d" * 10_001}, "ci: at most 10000 characters"),
    ({"id": "CHG-1", "ci": "db", "at": "2026-01-01T00:00:00Z\n"}, "start: not an RFC 3339 timestamp"),
])
async def test_a_change_field_of_the_wrong_type_or_size_is_400(tmp_path, daemon_for, body, detail):
    c = await daemon_for(write_config(tmp_path, "rules: []\n"))
    status, got = await c.call("POST", "/api/v1/changes", body)
    assert status == 400 and got["detail"].startswith(detail), got
    assert (await c.call("GET", "/api/v1/changes"))[1] == []


@pytest.mark.parametrize("field, value, detail", [
    ("createdBy", {}, "createdBy: expected a string"),
    ("comment", [], "comment: expected a string"),
    ("id", 0, "id: expected a string"),
    ("updatedAt", [], "updatedAt: "),
    ("createdBy", "x" * 201, "createdBy: at most 200 characters"),
    ("comment", "x" * 10_001, "comment: at most 10000 characters"),
])
async def test_a_silence_field_of_the_wrong_type_or_size_is_400(tmp_path, daemon_for, field, value, detail):
    c = await daemon_for(write_config(tmp_path, "rules: []\n"))
    silence = {"matchers": ['env="x"'], "endsAt": "2026-01-02T00:00:00Z", field: value}
    status, body = await c.call("POST", "/api/v1/silences", silence)
    assert status == 400 and body["detail"].startswith(detail), body
    assert (await c.call("GET", "/api/v1/silences"))[1] == []


TEAMS = ("receivers: [{name: hook, type: webhook, url: 'http://127.0.0.1:9/'}]\n"
         "teams: {first: {receivers: [hook]}, second: {receivers: [hook]}}\n")


async def test_reload_keeps_the_running_rules_when_a_file_is_broken(tmp_path, daemon_for):
    config = write_config(tmp_path, "rules:\n  - {match: [], team: first}\n", TEAMS)
    c = await daemon_for(config)
    (tmp_path / "rules.yaml").write_text("rules:\n  - {match: ['a=~\"(\"'], team: broken}\n")
    status, body = await c.call("POST", "/-/reload")
    assert status == 400 and not body["ok"]
    assert body["components"]["rules"]["errors"][0].startswith(f"{tmp_path}/rules.yaml:2: match[0]")
    _, metrics = await c.call("GET", "/metrics")
    assert "incidentd_config_last_reload_successful 0.0" in metrics
    await c.call("POST", "/api/v1/alerts", [alert(alertname="A")])
    [inc] = await c.incidents(1)
    assert inc["team"] == "first"

    # checked as check-config checks it: a team the config does not know is refused too
    (tmp_path / "rules.yaml").write_text("rules:\n  - {match: [], team: third}\n")
    status, body = await c.call("POST", "/-/reload")
    assert status == 400 and "unknown team 'third'" in body["components"]["rules"]["errors"][0]
    (tmp_path / "rules.yaml").write_text("rules:\n  - {match: [], team: second}\n")
    status, body = await c.call("POST", "/-/reload")
    assert status == 200 and body["ok"]
    _, metrics = await c.call("GET", "/metrics")
    assert "incidentd_config_last_reload_successful 1.0" in metrics
    await c.call("POST", "/api/v1/alerts", [alert(alertname="B")])
    incs = await c.incidents(2)
    assert [i["team"] for i in incs] == ["first", "second"]


def test_replay_change_events_expected_alerts_and_suspected_change(tmp_path):
    cmdb = tmp_path / "cmdb.yaml"
    cmdb.write_text("cis:\n  - {id: orders-db, type: database, match: {service: orders-db}}\n")
    config_path = write_config(
        tmp_path, "rules: []\n", "cmdb: [cmdb.yaml]\nchanges: {suspect_window: 1h}\n"
    )
    events = [
        {
            "kind": "change",
            "at": "2026-01-01T00:00:00Z",
            "ci": "orders-db",
            "id": "CHG-1",
            "summary": "index rebuild",
            "end": "2026-01-01T00:20:00Z",
        },
        {
            "kind": "alert",
            "at": "2026-01-01T00:10:00Z",
            "alert": {
                "labels": {"alertname": "SlowQueries", "service": "orders-db"},
                "status": "firing",
            },
        },
        {
            "kind": "alert",
            "at": "2026-01-01T00:50:00Z",
            "alert": {
                "labels": {"alertname": "PostgresDown", "service": "orders-db"},
                "status": "firing",
            },
        },
    ]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    result = run_replay(
        load_config(config_path), str(tmp_path / "events.jsonl"), str(tmp_path / "out.json")
    )
    by_alert = {
        a["labels"]["alertname"]: (inc, a) for inc in result["incidents"] for a in inc["alerts"]
    }
    slow_inc, _ = by_alert["SlowQueries"]
    down_inc, _ = by_alert["PostgresDown"]
    assert down_inc["suspected_change"] == {
        "id": "CHG-1",
        "summary": "index rebuild",
        "ci": "orders-db",
    }
    assert slow_inc["paging"] is False  # its only alert came in during the change


def test_check_config_reports_broken_rules_and_unknown_receivers(tmp_path):
    config = write_config(
        tmp_path,
        "rules:\n  - {match: [], receiver: pagr}\n  - {match: ['x=~\"[\"']}\n",
        "receivers: [{name: pager, type: webhook, url: \"http://127.0.0.1:9/\"}]\nchanges: {suspect_window: soon}\n",
    )
    errors = check_config_errors(config)
    assert errors == [
        f"{config}:4: changes.suspect_window: not a duration (use e.g. 30s, 5m, 1h): 'soon'",
        f"{tmp_path}/rules.yaml:3: match[0]: invalid regex in x=~'[': missing ]: [",
        f"{tmp_path}/rules.yaml:2: rule 'rules[0]': unknown receiver 'pagr'",
    ]


def test_daemon_refuses_to_start_with_broken_rules(tmp_path):
    from daemon.config import ConfigError

    config = write_config(tmp_path, "rules:\n  - {match: ['x=~\"[\"']}\n")
    with pytest.raises(ConfigError) as exc:
        Daemon(load_config(config))
    assert exc.value.errors[0].startswith(f"{tmp_path}/rules.yaml:2:")


def test_run_refuses_a_rule_naming_an_unknown_receiver_as_check_config_does(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    config = write_config(tmp_path, "rules:\n  - {match: [], receiver: pagr}\n",
                          "listen: 127.0.0.1:9\nreceivers: [{name: pager, type: webhook, url: \"http://127.0.0.1:9/\"}]\n")
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "run", "--config", config,
                           "--data-dir", str(tmp_path / "data")],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == f"incidentd: {tmp_path}/rules.yaml:2: rule 'rules[0]': unknown receiver 'pagr'"
    assert not (tmp_path / "data").exists()  # refused before anything was started


async def test_a_reload_takes_the_whole_new_configuration_or_none_of_it(tmp_path, daemon_for):
    config = write_config(tmp_path, "rules:\n  - {match: [], team: first}\n", TEAMS)
    c = await daemon_for(config)
    # good rules, but a section the daemon would not start with: nothing is taken
    (tmp_path / "rules.yaml").write_text("rules:\n  - {match: [], team: second}\n")
    with open(config, "a") as fh:
        fh.write("sla: {P9: {acknowledge: 5m}}\n")
    status, body = await c.call("POST", "/-/reload")
    assert status == 400 and not body["ok"] and "P9" in body["components"]["sla"]["errors"][0]
    assert await c.metric("incidentd_config_last_reload_successful") == 0
    await c.call("POST", "/api/v1/alerts", [alert(alertname="A")])
    [inc] = await c.incidents(1)
    assert inc["team"] == "first"


async def test_an_alert_a_reload_starts_dropping_still_resolves_its_incident(tmp_path, daemon_for):
    """A drop rule added while the alert is in an open incident stops new occurrences,
    not the end of the one already there (which would keep the incident open for good)."""
    c = await daemon_for(write_config(tmp_path, "rules: []\n"))
    hook = "/api/v1/alerts/alertmanager"
    firing = wh_alert(alertname="Flaky", service="orders")
    assert (await c.call("POST", hook, webhook(firing)))[0] == 200
    [inc] = await c.incidents(1)
    (tmp_path / "rules.yaml").write_text("rules:\n  - {match: ['alertname=\"Flaky\"'], drop: true}\n")
    status, body = await c.call("POST", "/-/reload")
    assert status == 200 and body["ok"]
    ended = dict(firing, status="resolved", endsAt="2026-01-01T00:00:00Z")
    assert (await c.call("POST", hook, dict(webhook(ended), status="resolved")))[0] == 200
    await c.until(lambda b: b["state"] == "resolved", f"/api/v1/incidents/{inc['id']}")
    other = wh_alert(alertname="Flaky", service="search")  # a new one is dropped
    assert (await c.call("POST", hook, webhook(other)))[0] == 200
    await c.call("POST", hook, dict(webhook(dict(other, status="resolved", endsAt="2026-01-01T00:00:00Z")),
                                    status="resolved"))

    async def both_dropped() -> bool:
        return await c.metric("incidentd_alerts_dropped_total") == 2

    await c.until(both_dropped, "incidentd_alerts_dropped_total")
    assert len(await c.incidents(1)) == 1
