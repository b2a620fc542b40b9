"""Ingest and the incident lifecycle through real HTTP on loopback, against a
real SQLite file; the daemon runs on a virtual clock, so nothing sleeps."""

from daemon_helpers import T0, v2_alert, webhook, wh_alert

from daemon.clock import VirtualClock

ALERTS = "/api/v1/alerts"
WEBHOOK = "/api/v1/alerts/alertmanager"


def db_down(**extra: str) -> dict[str, str]:
    return {"alertname": "DatabaseDown", "service": "orders-db", "severity": "critical", **extra}


def kinds(timeline: list[dict]) -> list[str]:
    return [e["kind"] for e in timeline]


async def test_same_label_set_firing_again_updates_the_alert_instead_of_opening_an_incident(
    start_daemon,
):
    c = await start_daemon()
    assert await c.post(ALERTS, [v2_alert(db_down(), summary="orders-db down")]) == (
        200,
        {"status": "success", "accepted": 1},
    )
    await c.advance(30)
    await c.post(ALERTS, [v2_alert(db_down(), summary="orders-db still down")])
    await c.advance(30)
    await c.post(WEBHOOK, webhook(wh_alert(db_down())))

    [inc] = await c.incidents()
    assert inc["state"] == "open"
    assert inc["title"] == "orders-db down"
    [alert] = inc["alerts"]
    assert alert["labels"] == db_down()
    assert alert["first_seen_at"] == "2026-01-01T00:00:00Z"
    assert alert["last_seen_at"] == "2026-01-01T00:01:00Z"


async def test_label_order_does_not_change_identity(start_daemon):
    c = await start_daemon()
    await c.post(ALERTS, [v2_alert({"alertname": "A", "b": "1", "c": "2"})])
    await c.post(ALERTS, [v2_alert({"c": "2", "b": "1", "alertname": "A"})])
    [inc] = await c.incidents()
    assert len(inc["alerts"]) == 1


async def test_a_label_with_an_empty_value_is_no_label_as_in_alertmanager(start_daemon):
    from daemon.model import fingerprint

    c = await start_daemon()
    await c.post(WEBHOOK, webhook(wh_alert(db_down(pod=""))))
    await c.post(ALERTS, [v2_alert(db_down())])
    [inc] = await c.incidents()
    [alert] = inc["alerts"]
    assert alert["labels"] == db_down()
    assert alert["fingerprint"] == fingerprint(db_down())  # what Alertmanager shows for both


async def test_acknowledge_then_resolve_by_hand_records_who_did_it(start_daemon):
    c = await start_daemon()
    await c.post(ALERTS, [v2_alert(db_down())])
    [inc] = await c.incidents()
    iid = inc["id"]

    await c.advance(120)
    status, body = await c.post(f"/api/v1/incidents/{iid}/ack", {"author": "alice"})
    assert status == 200
    assert (body["state"], body["acknowledged_by"], body["acknowledged_at"]) == (
        "acknowledged",
        "alice",
        "2026-01-01T00:02:00Z",
    )
    status, body = await c.post(f"/api/v1/incidents/{iid}/ack", {"author": "bob"})
    assert status == 409 and "acknowledged" in body["error"]

    await c.advance(60)
    status, body = await c.post(
        f"/api/v1/incidents/{iid}/resolve", {"author": "bob", "note": "failed over"}
    )
    assert status == 200
    assert (body["state"], body["resolved_by"], body["resolved_at"]) == (
        "resolved",
        "bob",
        "2026-01-01T00:03:00Z",
    )
    status, body = await c.post(f"/api/v1/incidents/{iid}/resolve", {"author": "bob"})
    assert status == 409

    assert [i["id"] for i in await c.incidents("open")] == []
    assert [i["id"] for i in await c.incidents("resolved")] == [iid]
    timeline = (await c.incident(iid))["timeline"]
    assert [
        (e["kind"], e["actor"]) for e in timeline if e["kind"] in ("acknowledged", "resolved")
    ] == [("acknowledged", "alice"), ("resolved", "bob")]
    assert "failed over" in timeline[-1]["text"]


async def test_commands_on_an_unknown_incident_are_404(start_daemon):
    c = await start_daemon()
    for action in ("ack", "resolve"):
        status, body = await c.post(f"/api/v1/incidents/INC-999999/{action}", {})
        assert status == 404 and body["detail"] == "INC-999999"
    status, _, _ = await c.call("GET", "/api/v1/incidents/INC-999999")
    assert status == 404


async def test_incident_resolves_by_itself_once_all_its_alerts_are_resolved(start_daemon):
    c = await start_daemon()
    pod_a, pod_b = db_down(pod="a"), db_down(pod="b")
    await c.post(WEBHOOK, webhook(wh_alert(pod_a), wh_alert(pod_b)))
    [inc] = await c.incidents()
    assert len(inc["alerts"]) == 2

    await c.advance(60)
    await c.post(WEBHOOK, webhook(wh_alert(pod_a, "resolved", ends=T0 + 55), wh_alert(pod_b)))
    [inc] = await c.incidents()
    assert inc["state"] == "open"
    assert sorted(a["status"] for a in inc["alerts"]) == ["firing", "resolved"]

    await c.advance(60)
    await c.post(WEBHOOK, webhook(wh_alert(pod_b, "resolved", ends=T0 + 115)))
    [inc] = await c.incidents()
    assert (inc["state"], inc["resolved_by"], inc["resolved_at"]) == (
        "resolved",
        "incidentd",
        "2026-01-01T00:02:00Z",
    )
    assert kinds((await c.incident(inc["id"]))["timeline"]) == [
        "opened",
        "alert_attached",
        "alert_attached",
        "alert_resolved",
        "alert_resolved",
        "resolved",
    ]


async def test_api_v2_alert_with_endsat_in_the_past_is_a_resolution(start_daemon):
    c = await start_daemon()
    await c.post(ALERTS, [v2_alert(db_down(), ends=T0 + 240)])
    await c.advance(60)
    await c.post(ALERTS, [v2_alert(db_down(), ends=T0 + 50)])
    [inc] = await c.incidents()
    assert inc["state"] == "resolved"
    assert inc["alerts"][0]["ends_at"] == "2026-01-01T00:00:50Z"


async def test_api_v2_alert_that_is_not_posted_again_resolves_at_its_endsat(start_daemon):
    c = await start_daemon()
    await c.post(ALERTS, [v2_alert(db_down(), ends=T0 + 240)])
    await c.advance(239)
    assert (await c.incidents())[0]["state"] == "open"
    await c.advance(1)
    [inc] = await c.incidents()
    assert (inc["state"], inc["resolved_at"]) == ("resolved", "2026-01-01T00:04:00Z")


async def test_alert_firing_again_within_the_reopen_window_reopens_its_incident(start_daemon):
    c = await start_daemon("incidents: {reopen_window: 10m}\n")
    await c.post(WEBHOOK, webhook(wh_alert(db_down())))
    await c.advance(60)
    await c.post(WEBHOOK, webhook(wh_alert(db_down(), "resolved", ends=T0 + 60)))
    [inc] = await c.incidents()
    assert inc["state"] == "resolved"

    await c.advance(599)
    await c.post(WEBHOOK, webhook(wh_alert(db_down(), starts=T0 + 659)))
    [again] = await c.incidents()
    assert again["id"] == inc["id"]
    assert (again["state"], again["resolved_at"]) == ("open", None)
    assert kinds((await c.incident(inc["id"]))["timeline"])[-3:] == [
        "resolved",
        "alert_firing",
        "reopened",
    ]


async def test_alert_firing_after_the_reopen_window_opens_a_new_incident(start_daemon):
    c = await start_daemon("incidents: {reopen_window: 10m}\n")
    await c.post(WEBHOOK, webhook(wh_alert(db_down())))
    await c.advance(60)
    await c.post(WEBHOOK, webhook(wh_alert(db_down(), "resolved", ends=T0 + 60)))
    await c.advance(601)
    await c.post(WEBHOOK, webhook(wh_alert(db_down(), starts=T0 + 661)))
    first, second = await c.incidents()
    assert first["state"] == "resolved" and second["state"] == "open"
    assert first["id"] != second["id"]
    assert second["alerts"][0]["fingerprint"] == first["alerts"][0]["fingerprint"]


async def test_flapping_alert_is_marked_and_keeps_one_incident_open_until_it_settles(start_daemon):
    c = await start_daemon("incidents: {flap_window: 15m, flap_threshold: 4, reopen_window: 10m}\n")
    t = 0
    for _ in range(3):  # fires and resolves every minute
        await c.post(WEBHOOK, webhook(wh_alert(db_down(), starts=T0 + t)))
        await c.advance(60)
        t += 60
        await c.post(WEBHOOK, webhook(wh_alert(db_down(), "resolved", ends=T0 + t)))
        await c.advance(60)
        t += 60
    [inc] = await c.incidents()
    assert inc["flapping"] is True
    assert inc["alerts"][0]["flapping"] is True
    assert inc["state"] == "open", "a flapping incident waits for the alert to settle"
    timeline = kinds((await c.incident(inc["id"]))["timeline"])
    assert timeline.count("flapping") == 1
    assert timeline.count("opened") == 1

    await c.advance(15 * 60)
    [inc] = await c.incidents()
    assert inc["state"] == "resolved"
    resolved = [e for e in (await c.incident(inc["id"]))["timeline"] if e["kind"] == "resolved"]
    # it resolved and reopened twice before the alert counted as flapping; since
    # then it stayed open until the alert had settled for flap_window
    assert [e["text"] for e in resolved] == [
        "incident resolved: all alerts resolved",
        "incident resolved: all alerts resolved",
        "incident resolved: flapping alerts settled",
    ]


async def test_severity_is_the_highest_of_the_incident_alerts(start_daemon):
    c = await start_daemon()
    base = {"alertname": "HighLatency", "service": "checkout"}
    await c.post(ALERTS, [v2_alert({**base, "pod": "a", "severity": "warning"})])
    [inc] = await c.incidents()
    assert inc["severity"] == "warning"
    await c.post(
        ALERTS,
        [
            v2_alert({**base, "pod": "b", "severity": "critical"}),
            v2_alert({**base, "pod": "c", "severity": "info"}),
        ],
    )
    [inc] = await c.incidents()
    assert len(inc["alerts"]) == 3
    assert inc["severity"] == "critical"


async def test_notes_carry_their_author_into_the_timeline(start_daemon):
    c = await start_daemon()
    await c.post(ALERTS, [v2_alert(db_down())])
    [inc] = await c.incidents()
    await c.advance(30)
    status, _ = await c.post(
        f"/api/v1/incidents/{inc['id']}/notes",
        {"text": "replica lag 40s, failing over", "author": "carol"},
    )
    assert status == 201
    status, body = await c.post(
        f"/api/v1/incidents/{inc['id']}/notes", {"text": "  ", "author": "carol"}
    )
    assert status == 400 and "text" in body["detail"]
    # too long is refused, not cut short
    for note, detail in (({"text": "x" * 10_001, "author": "carol"}, "text: at most 10000 characters"),
                         ({"text": "ok", "author": "c" * 201}, "author: at most 200 characters"),
                         # an empty value of another type is no name either, not "anonymous"
                         ({"text": "ok", "author": []}, "author: expected a string"),
                         ({"text": "ok", "author": 0}, "author: expected a string")):
        status, body = await c.post(f"/api/v1/incidents/{inc['id']}/notes", note)
        assert (status, body["detail"]) == (400, detail)
    note = (await c.incident(inc["id"]))["timeline"][-1]
    assert note == {
        "at": "2026-01-01T00:00:30.000Z",
        "kind": "note",
        "actor": "carol",
        "text": "replica lag 40s, failing over",
        "data": None,
    }


async def test_timeline_tells_the_incident_story_in_order(start_daemon):
    c = await start_daemon()
    await c.post(WEBHOOK, webhook(wh_alert(db_down())))
    [inc] = await c.incidents()
    iid = inc["id"]
    await c.advance(10)
    await c.post(f"/api/v1/incidents/{iid}/ack", {"author": "alice"})
    await c.advance(10)
    await c.post(f"/api/v1/incidents/{iid}/notes", {"text": "looking", "author": "alice"})
    await c.advance(10)
    await c.post(WEBHOOK, webhook(wh_alert(db_down(), "resolved", ends=T0 + 30)))
    timeline = (await c.incident(iid))["timeline"]
    assert [(e["at"][11:19], e["kind"], e["actor"]) for e in timeline] == [
        ("00:00:00", "opened", "incidentd"),
        ("00:00:00", "alert_attached", "incidentd"),
        ("00:00:10", "acknowledged", "alice"),
        ("00:00:20", "note", "alice"),
        ("00:00:30", "alert_resolved", "incidentd"),
        ("00:00:30", "resolved", "incidentd"),
    ]
    assert timeline[1]["data"]["labels"] == db_down()


async def test_different_alerts_of_different_services_open_separate_incidents(start_daemon):
    c = await start_daemon()
    await c.post(
        ALERTS,
        [
            v2_alert({"alertname": "Down", "service": "a"}),
            v2_alert({"alertname": "Down", "service": "b"}),
        ],
    )
    assert len(await c.incidents("open")) == 2


async def test_a_listing_pages_back_from_the_newest_incidents_with_limit_and_before(start_daemon):
    c = await start_daemon()
    for i in range(7):
        await c.post(ALERTS, [v2_alert({"alertname": "Down", "service": f"s{i}"})])
    await c.advance(10)
    status, body = await c.post("/api/v1/incidents/INC-000003/resolve", {"author": "alice"})
    assert status == 200, body
    everything = [i["id"] for i in await c.incidents("all")]
    assert everything == [f"INC-00000{n}" for n in range(1, 8)]

    async def page(query: str) -> list[str]:
        status, body, _ = await c.call("GET", "/api/v1/incidents?" + query)
        assert status == 200, body
        return [i["id"] for i in body["incidents"]]

    assert await page("state=all&limit=3") == everything[-3:]  # the newest, in opening order
    assert await page("state=all&limit=3&before=INC-000005") == everything[1:4]
    assert await page("state=all&limit=3&before=INC-000002") == everything[:1]
    assert await page("state=all&before=INC-000002") == everything[:1]
    assert await page("state=open&limit=3&before=INC-000005") == ["INC-000001", "INC-000002", "INC-000004"]
    assert await page("state=resolved&limit=1") == ["INC-000003"]
    assert await page("state=all&limit=10000") == everything
    for query, error in [("limit=0", "invalid limit"), ("limit=-1", "invalid limit"), ("limit=10001", "invalid limit"),
                         ("limit=ten", "invalid limit"), ("limit=", "invalid limit"),
                         ("before=INC-999999", "invalid before"), ("before=", "invalid before")]:
        status, body, _ = await c.call("GET", "/api/v1/incidents?state=all&" + query)
        assert (status, body["error"]) == (400, error), query


async def test_incidents_and_their_alerts_survive_a_restart(start_daemon, tmp_path):
    c = await start_daemon()
    await c.post(ALERTS, [v2_alert(db_down())])
    [inc] = await c.incidents()
    await c.daemon.stop()

    c2 = await start_daemon()
    await c2.post(ALERTS, [v2_alert(db_down())])
    [again] = await c2.incidents()
    assert again["id"] == inc["id"] and len(again["alerts"]) == 1
    await c2.post(ALERTS, [v2_alert({"alertname": "Other"})])
    assert [i["id"] for i in await c2.incidents()] == [inc["id"], "INC-000002"]


async def test_endsat_moved_by_reposts_survives_a_restart(start_daemon):
    # re-posts are stored apart from the incident document; a restart must not
    # expire the alert at the endsAt of its first post
    c = await start_daemon()
    await c.post(ALERTS, [v2_alert(db_down(), ends=T0 + 240)])
    await c.advance(200)
    await c.post(ALERTS, [v2_alert(db_down(), ends=T0 + 440)])
    await c.settle()
    await c.daemon.stop()

    c2 = await start_daemon(clock=VirtualClock(T0 + 300))
    [inc] = await c2.incidents()
    assert inc["state"] == "open"
    assert inc["alerts"][0]["ends_at"] == "2026-01-01T00:07:20Z"
    assert inc["alerts"][0]["last_seen_at"] == "2026-01-01T00:03:20Z"
    await c2.advance(139)
    assert (await c2.incidents())[0]["state"] == "open"
    await c2.advance(1)
    assert (await c2.incidents())[0]["state"] == "resolved"


async def test_the_resolution_of_an_incident_let_go_sent_again_opens_nothing(start_daemon):
    # Prometheus re-sends a resolved alert for 15 minutes, past the reopen window (10m)
    c = await start_daemon()
    await c.post(ALERTS, [v2_alert(db_down(), ends=T0 + 240)])
    await c.advance(60)
    await c.post(ALERTS, [v2_alert(db_down(), ends=T0 + 60)])
    for _ in range(15):
        await c.advance(60)
        await c.post(ALERTS, [v2_alert(db_down(), ends=T0 + 60)])
    [inc] = await c.incidents(state="all")
    assert (inc["id"], inc["state"]) == ("INC-000001", "resolved")
    # a new occurrence, starting after the last one ended, is an incident of its own
    await c.post(ALERTS, [v2_alert(db_down(), starts=T0 + 1000, ends=T0 + 1010)])
    assert [i["id"] for i in await c.incidents(state="all")] == ["INC-000001", "INC-000002"]


async def test_a_resolution_without_startsat_sent_again_opens_nothing_either(start_daemon):
    # a script posting Alertmanager's API v2 form with endsAt alone: the alert started
    # when it ended at the latest (Alertmanager takes endsAt for a missing startsAt)
    c = await start_daemon()
    await c.post(ALERTS, [{"labels": db_down()}])
    await c.advance(60)
    resolution = {"labels": db_down(), "endsAt": "2026-01-01T00:01:00Z"}
    for _ in range(3):
        await c.post(ALERTS, [resolution])
        await c.advance(700)  # past the reopen window: the incident is let go
    [inc] = await c.incidents(state="all")
    assert (inc["id"], inc["state"]) == ("INC-000001", "resolved")


async def test_a_note_on_an_incident_resolved_long_ago_is_taken(start_daemon):
    c = await start_daemon()
    await c.post(ALERTS, [v2_alert(db_down(), ends=T0 + 60)])
    await c.advance(120)
    await c.post(ALERTS, [v2_alert(db_down(), ends=T0 + 60)])
    await c.advance(3600)  # well past the reopen window: the incident is only in the store
    status, _ = await c.post("/api/v1/incidents/INC-000001/notes", {"text": "postmortem: PRB-7", "author": "alice"})
    assert status == 201
    note = (await c.incident("INC-000001"))["timeline"][-1]
    assert (note["kind"], note["actor"], note["text"]) == ("note", "alice", "postmortem: PRB-7")
    status, _ = await c.post("/api/v1/incidents/INC-000404/notes", {"text": "x"})
    assert status == 404
