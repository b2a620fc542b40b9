"""A person merging incidents the correlation kept apart, through real HTTP on loopback:
the alerts move, the root cause is ranked again, the merge holds, and what was
acknowledged stays acknowledged."""

from daemon_helpers import v2_alert

ALERTS = "/api/v1/alerts"

CMDB = """
cis:
  - {id: web, match: {service: web}, depends_on: [orders, search]}
  - {id: orders, match: {service: orders}, depends_on: [db]}
  - {id: cart, match: {service: cart}, depends_on: [db]}
  - {id: search, match: {service: search}}
  - {id: db, type: database, match: {service: db}}
"""


def alert(name: str, severity: str, service: str) -> dict:
    return v2_alert({"alertname": name, "severity": severity, "service": service})


def names(inc: dict) -> set[str]:
    return {a["labels"]["alertname"] for a in inc["alerts"]}


async def two_incidents(start_daemon, tmp_path):
    """A database fault, and an info alert on an unrelated service that the ranking
    leaves out of it as noise."""
    (tmp_path / "cmdb.yaml").write_text(CMDB)
    c = await start_daemon("cmdb: [cmdb.yaml]\n")
    await c.post(ALERTS, [alert("MongodbDown", "critical", "db")])
    await c.advance(30)
    await c.post(ALERTS, [alert("CPUThrottlingHigh", "info", "search")])
    await c.advance(30)
    await c.post(ALERTS, [alert("HighErrorRate", "critical", "orders")])
    await c.advance(5)
    fault, noise = sorted(await c.incidents("open"), key=lambda i: i["id"])
    assert names(fault) == {"MongodbDown", "HighErrorRate"} and names(noise) == {"CPUThrottlingHigh"}
    return c, fault["id"], noise["id"]


async def test_a_merge_moves_the_alerts_and_the_source_points_at_the_target(start_daemon, tmp_path):
    c, fault, noise = await two_incidents(start_daemon, tmp_path)
    status, body = await c.post(f"/api/v1/incidents/{fault}/merge", {"incidents": [noise], "author": "alice"})
    assert status == 200, body
    assert body["id"] == fault
    assert names(body) == {"MongodbDown", "HighErrorRate", "CPUThrottlingHigh"}
    assert body["root_cause"] == "db"
    assert {a["kept_by"] for a in body["alerts"]} == {"alice"}
    src = await c.incident(noise)
    assert (src["state"], src["merged_into"], src["alerts"]) == ("merged", fault, [])
    merged = [e for e in (await c.incident(fault))["timeline"] if e["kind"] == "merged"]
    assert [(e["actor"], e["text"]) for e in merged] == [("alice", f"{noise} merged in: merged by alice")]
    assert [i["id"] for i in await c.incidents("open")] == [fault]


async def test_what_a_person_merged_stays_when_the_root_cause_is_ranked_again(start_daemon, tmp_path):
    c, fault, noise = await two_incidents(start_daemon, tmp_path)
    await c.post(f"/api/v1/incidents/{fault}/merge", {"incidents": [noise], "author": "alice"})
    await c.advance(30)
    await c.post(ALERTS, [alert("HighErrorRate", "critical", "cart")])  # joins, and ranks again
    await c.advance(5)
    [inc] = await c.incidents("open")
    assert names(inc) == {"MongodbDown", "HighErrorRate", "CPUThrottlingHigh"}
    assert len(inc["alerts"]) == 4 and inc["root_cause"] == "db"
    assert sorted(str(a["kept_by"]) for a in inc["alerts"]) == ["None", "alice", "alice", "alice"]
    assert not [e for e in (await c.incident(fault))["timeline"] if e["kind"] == "alert_detached"]


async def test_a_merged_in_acknowledgement_acknowledges_the_target(start_daemon, tmp_path):
    c, fault, noise = await two_incidents(start_daemon, tmp_path)
    await c.post(f"/api/v1/incidents/{noise}/ack", {"author": "bob"})
    status, body = await c.post(f"/api/v1/incidents/{fault}/merge", {"incidents": [noise], "author": "alice"})
    assert status == 200
    assert (body["state"], body["acknowledged_by"]) == ("acknowledged", "bob")


async def test_merge_requests_that_cannot_be_done_say_why(start_daemon, tmp_path):
    c, fault, noise = await two_incidents(start_daemon, tmp_path)
    url = f"/api/v1/incidents/{fault}/merge"
    for body in ({}, {"incidents": []}, {"incidents": "INC-000002"}, {"incidents": [7]}, [noise]):
        status, answer = await c.post(url, body)
        assert status == 400, (body, answer)
        assert "incidents" in answer["detail"] or "JSON object" in answer["detail"], (body, answer)
    status, answer = await c.post(url, {"incidents": [fault]})
    assert status == 400 and "itself" in answer["error"]
    status, answer = await c.post(url, {"incidents": [noise, "INC-999999"]})
    assert (status, answer["detail"]) == (404, "INC-999999")
    status, answer = await c.post("/api/v1/incidents/INC-999999/merge", {"incidents": [noise]})
    assert (status, answer["detail"]) == (404, "INC-999999")
    await c.post(f"/api/v1/incidents/{noise}/resolve", {"author": "bob"})
    status, answer = await c.post(f"/api/v1/incidents/{noise}/merge", {"incidents": [fault]})
    assert status == 409 and "resolved" in answer["error"]
    # nothing moved
    assert {i["id"]: len(i["alerts"]) for i in await c.incidents("all")} == {fault: 2, noise: 1}


async def one_fault(start_daemon, tmp_path):
    (tmp_path / "cmdb.yaml").write_text(CMDB)
    c = await start_daemon("cmdb: [cmdb.yaml]\n")
    for name, service in (("MongodbDown", "db"), ("HighErrorRate", "orders"), ("HighLatency", "web")):
        await c.post(ALERTS, [alert(name, "critical", service)])
        await c.advance(20)
    [inc] = await c.incidents("open")
    assert names(inc) == {"MongodbDown", "HighErrorRate", "HighLatency"}
    return c, inc


async def test_a_split_moves_alerts_to_a_new_incident_that_later_alerts_do_not_merge_back(start_daemon, tmp_path):
    c, inc = await one_fault(start_daemon, tmp_path)
    [web] = [a["fingerprint"] for a in inc["alerts"] if a["labels"]["service"] == "web"]
    status, new = await c.post(f"/api/v1/incidents/{inc['id']}/split", {"alerts": [web], "author": "alice"})
    assert status == 201, new
    assert new["id"] != inc["id"] and new["state"] == "open"
    assert [(a["fingerprint"], a["kept_by"]) for a in new["alerts"]] == [(web, "alice")]
    assert new["kept_apart_from"] == [inc["id"]] and new["root_cause"] == "web"
    old = await c.incident(inc["id"])
    assert names(old) == {"MongodbDown", "HighErrorRate"} and old["kept_apart_from"] == [new["id"]]
    assert any(e["kind"] == "alert_detached" and e["actor"] == "alice" for e in old["timeline"])
    # an alert on orders relates to both (web depends on orders, orders on db): it joins one, merges nothing
    await c.post(ALERTS, [alert("HighLatency", "warning", "orders")])
    await c.advance(5)
    now = {i["id"]: names(i) for i in await c.incidents("open")}
    assert set(now) == {inc["id"], new["id"]}
    assert sum("HighLatency" in n for n in now.values()) == 2  # the web one, and the new one in one of them
    # a person may still merge them
    status, body = await c.post(f"/api/v1/incidents/{inc['id']}/merge", {"incidents": [new["id"]]})
    assert status == 200 and len(body["alerts"]) == 4 and body["kept_apart_from"] == []


async def test_split_requests_that_cannot_be_done_say_why(start_daemon, tmp_path):
    c, inc = await one_fault(start_daemon, tmp_path)
    url = f"/api/v1/incidents/{inc['id']}/split"
    fps = [a["fingerprint"] for a in inc["alerts"]]
    for body in ({}, {"alerts": []}, {"alerts": fps[0]}, {"alerts": [None]}):
        status, answer = await c.post(url, body)
        assert status == 400 and "alerts" in answer["detail"], (body, answer)
    status, answer = await c.post(url, {"alerts": ["0123456789abcdef"]})
    assert status == 400 and "not in incident" in answer["error"]
    status, answer = await c.post(url, {"alerts": fps})
    assert status == 400 and "at least one alert must stay" in answer["error"]
    status, answer = await c.post("/api/v1/incidents/INC-999999/split", {"alerts": fps[:1]})
    assert (status, answer["detail"]) == (404, "INC-999999")
    await c.post(f"/api/v1/incidents/{inc['id']}/resolve", {"author": "bob"})
    status, answer = await c.post(url, {"alerts": fps[:1]})
    assert status == 409
    assert [len(i["alerts"]) for i in await c.incidents("all")] == [3]
