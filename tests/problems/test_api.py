"""The problem API over real HTTP: list, detail, PATCH of status and known-error fields,
merge and split by a person (and later clustering respecting them), linking at open
time with the workaround on the incident, metrics."""


import harness
import pytest
from problemshop import DAY, T0, db_down, db_slow, disk_full, write_config

from daemon.timefmt import format_rfc3339


class Client(harness.Client):
    """The shared client, with problem-shop helpers: alerts at T0 + t, whole faults."""

    async def post_alerts(self, t: float, alerts, resolved: bool = False) -> None:
        """Post alerts with the clock at T0 + t; waits until the pipeline has them."""
        self.daemon.clock.set(T0 + t)
        now = format_rfc3339(T0 + t)
        body = [
            {
                "labels": labels,
                "annotations": ann,
                "startsAt": now,
                **({"endsAt": now} if resolved else {}),
            }
            for labels, ann in alerts
        ]
        status, _ = await self.call("POST", "/api/v1/alerts", body)
        assert status == 200
        want = "resolved" if resolved else "firing"

        def done(b):
            seen = {
                (a["labels"]["alertname"], a["status"])
                for i in b["incidents"]
                for a in i["alerts"]
                if i["state"] == ("resolved" if resolved else "open")
            }
            return all((labels["alertname"], want) in seen for labels, _ in alerts)

        await self.until(done, "/api/v1/incidents?state=all")

    async def fault(self, t: float, alerts, duration: float = 1800.0) -> str:
        await self.post_alerts(t, alerts)
        _, body = await self.call("GET", "/api/v1/incidents?state=open")
        name = alerts[0][0]["alertname"]
        [iid] = [
            i["id"]
            for i in body["incidents"]
            if any(a["labels"]["alertname"] == name for a in i["alerts"])
        ]
        await self.post_alerts(t + duration, alerts, resolved=True)
        return iid

    async def database_problem(self) -> str:
        """The database goes down on two days: the id of the problem that makes."""
        await self.fault(0, db_down())
        await self.fault(DAY, db_down())
        _, body = await self.call("GET", "/api/v1/problems")
        [problem] = body["problems"]
        return problem["id"]

    async def incident(self, iid: str) -> dict:
        _, body = await self.call("GET", f"/api/v1/incidents/{iid}")
        return body


@pytest.fixture
def shop_api(tmp_path, daemon_for):
    async def start(problems: str = "") -> Client:
        return await daemon_for(write_config(tmp_path, problems), client=Client)

    return start


async def test_problems_are_listed_and_shown_with_their_incidents_and_statistics(shop_api):
    c = await shop_api()
    first = await c.fault(0, db_down())
    second = await c.fault(DAY, db_down(), duration=3600)
    status, body = await c.call("GET", "/api/v1/problems")
    assert status == 200
    [p] = body["problems"]
    assert p["incidents"] == [first, second]
    assert p["root_cause"] == "shop-db" and p["status"] == "open"
    assert p["count"] == 2 and p["ttr_total_seconds"] == 5400 and p["ttr_mean_seconds"] == 2700
    assert p["first_occurrence"] == format_rfc3339(T0)
    assert p["signature"].startswith("database:") and "MysqlDown" in p["signature"]
    status, detail = await c.call("GET", f"/api/v1/problems/{p['id']}")
    assert status == 200 and [x["incident_id"] for x in detail["links"]] == [first, second]
    assert (await c.incident(first))["problem_id"] == p["id"]
    status, body = await c.call("GET", "/api/v1/problems/PRB-999999")
    assert status == 404 and body["error"] == "no such problem"
    status, body = await c.call("GET", "/api/v1/problems?status=bogus")
    assert status == 400


async def test_known_error_fields_are_patched_and_validated(shop_api):
    c = await shop_api()
    pid = await c.database_problem()
    status, p = await c.call(
        "PATCH",
        f"/api/v1/problems/{pid}",
        {
            "cause": "the binlog volume fills up",
            "workaround": "purge binlogs: PURGE BINARY LOGS BEFORE NOW()",
            "author": "alice",
        },
    )
    assert status == 200
    assert p["status"] == "known_error"  # a cause or workaround makes it a known error
    assert p["known_error"]["workaround"].startswith("purge binlogs")
    assert p["history"][-1]["actor"] == "alice"
    for iid in p["incidents"]:
        # the earlier, resolved incidents show the problem's new note too
        detail = await c.incident(iid)
        assert detail["workaround"].startswith("purge binlogs")
        assert detail["known_problem"]["status"] == "known_error"
    status, p = await c.call(
        "PATCH", f"/api/v1/problems/{pid}", {"fix_ref": "CHG-42", "status": "resolved"}
    )
    assert status == 200 and p["status"] == "resolved" and p["known_error"]["fix_ref"] == "CHG-42"
    status, err = await c.call("PATCH", f"/api/v1/problems/{pid}", {"status": "closed"})
    assert status == 400 and "status must be one of" in err["detail"]
    status, err = await c.call("PATCH", f"/api/v1/problems/{pid}", {"owner": "bob"})
    assert status == 400 and "unknown field" in err["detail"]
    status, err = await c.call("PATCH", f"/api/v1/problems/{pid}", {"cause": 3})
    assert status == 400 and err["detail"] == "cause: expected a string"
    status, err = await c.call("PATCH", f"/api/v1/problems/{pid}", {"title": "x" * 10_001})
    assert status == 400 and err["detail"] == "title: at most 10000 characters"
    # it recurs after being resolved: open again (a known error, since the cause is known)
    await c.fault(2 * DAY, db_down())
    _, p = await c.call("GET", f"/api/v1/problems/{pid}")
    assert p["status"] == "known_error" and p["count"] == 3


async def test_an_opening_incident_matching_a_known_problem_is_linked_at_once_with_its_workaround(
    shop_api,
):
    c = await shop_api()
    pid = await c.database_problem()
    await c.call("PATCH", f"/api/v1/problems/{pid}", {"workaround": "fail over to the replica"})
    await c.post_alerts(2 * DAY, db_down())  # firing, not resolved
    _, body = await c.call("GET", "/api/v1/incidents?state=open")
    [inc] = body["incidents"]
    assert inc["problem_id"] == pid
    detail = await c.incident(inc["id"])
    assert detail["workaround"] == "fail over to the replica"
    assert (
        detail["known_problem"]["id"] == pid and detail["known_problem"]["status"] == "known_error"
    )
    _, metrics = await c.call("GET", "/metrics")
    assert 'incidentd_problems{status="known_error"} 1.0' in metrics
    assert "incidentd_open_incidents_with_known_problem 1.0" in metrics
    assert 'incidentd_problem_incidents_linked_total{at="open"} 1.0' in metrics
    # a workaround written later reaches the open incident too
    await c.call("PATCH", f"/api/v1/problems/{pid}", {"workaround": "restart mysqld"})
    assert (await c.incident(inc["id"]))["workaround"] == "restart mysqld"


async def test_a_merge_by_a_person_holds_for_later_incidents(shop_api):
    c = await shop_api()
    down = [await c.fault(i * DAY, db_down()) for i in range(2)]
    slow = [await c.fault((i + 2) * DAY, db_slow()) for i in range(2)]
    _, body = await c.call("GET", "/api/v1/problems")
    by_first = {p["incidents"][0]: p["id"] for p in body["problems"]}
    p_down, p_slow = by_first[down[0]], by_first[slow[0]]
    await c.call("PATCH", f"/api/v1/problems/{p_slow}", {"workaround": "kill the long query"})
    status, merged = await c.call(
        "POST", f"/api/v1/problems/{p_down}/merge", {"problems": [p_slow]}
    )
    assert status == 200 and sorted(merged["incidents"]) == sorted(down + slow)
    # the workaround came with the merged-in problem: the target is a known error now
    assert merged["status"] == "known_error" and merged["known_error"]["workaround"] == "kill the long query"
    status, gone = await c.call("GET", f"/api/v1/problems/{p_slow}")
    assert status == 409 and gone["detail"] == {"merged_into": p_down}
    assert (await c.incident(slow[0]))["problem_id"] == p_down
    later_slow = await c.fault(5 * DAY, db_slow())
    later_down = await c.fault(6 * DAY, db_down())
    assert (await c.incident(later_slow))["problem_id"] == p_down
    assert (await c.incident(later_down))["problem_id"] == p_down
    _, body = await c.call("GET", "/api/v1/problems")
    assert [p["id"] for p in body["problems"]] == [p_down]


async def test_a_split_by_a_person_holds_for_later_incidents(shop_api):
    c = await shop_api()
    disks = {
        node: await c.fault(i * DAY, [disk_full(node)])
        for i, node in enumerate(["web-1", "web-2", "web-3"])
    }
    _, body = await c.call("GET", "/api/v1/problems")
    [p] = body["problems"]
    assert len(p["incidents"]) == 3  # one pattern on the hosts of one role
    status, new = await c.call(
        "POST",
        f"/api/v1/problems/{p['id']}/split",
        {"incidents": [disks["web-3"]], "title": "web-3 log volume too small"},
    )
    assert (
        status == 201
        and new["incidents"] == [disks["web-3"]]
        and new["title"] == "web-3 log volume too small"
    )
    status, err = await c.call(
        "POST", f"/api/v1/problems/{p['id']}/split", {"incidents": [disks["web-1"], disks["web-2"]]}
    )
    assert status == 400 and "at least one incident" in err["detail"]
    again_web3 = await c.fault(5 * DAY, [disk_full("web-3")])
    again_web1 = await c.fault(6 * DAY, [disk_full("web-1")])
    assert (await c.incident(again_web3))["problem_id"] == new["id"]
    assert (await c.incident(again_web1))["problem_id"] == p["id"]
    # a title is kept whole, as PATCH keeps it, and one too long is refused, not cut short
    split = {"incidents": [disks["web-2"]], "title": "x" * 10_001}
    status, err = await c.call("POST", f"/api/v1/problems/{p['id']}/split", split)
    assert (status, err["detail"]) == (400, "title: at most 10000 characters")
    status, third = await c.call("POST", f"/api/v1/problems/{p['id']}/split", {**split, "title": "y" * 600})
    assert status == 201 and third["title"] == "y" * 600


async def test_a_person_links_an_incident_by_hand(shop_api):
    c = await shop_api()
    down = [await c.fault(i * DAY, db_down()) for i in range(2)]
    odd = await c.fault(3 * DAY, db_slow())
    _, body = await c.call("GET", "/api/v1/problems")
    pid = body["problems"][0]["id"]
    status, p = await c.call("POST", f"/api/v1/problems/{pid}/incidents", {"incident": odd})
    assert status == 200 and p["incidents"] == [*down, odd]
    assert (await c.incident(odd))["problem_id"] == pid
    status, err = await c.call("POST", f"/api/v1/problems/{pid}/incidents", {"incident": "INC-404"})
    assert status == 400


async def test_an_incident_linked_by_hand_does_not_stop_the_problem_collecting_its_recurrences(shop_api):
    c = await shop_api()
    down = [await c.fault(i * DAY, db_down()) for i in range(2)]
    _, body = await c.call("GET", "/api/v1/problems")
    pid = body["problems"][0]["id"]
    disk = await c.fault(3 * DAY, [disk_full("web-1")])  # another CI, another failure mode
    status, p = await c.call("POST", f"/api/v1/problems/{pid}/incidents", {"incident": disk})
    assert status == 200 and p["incidents"] == [*down, disk]
    again = await c.fault(5 * DAY, db_down())
    assert (await c.incident(again))["problem_id"] == pid
    _, body = await c.call("GET", "/api/v1/problems")
    assert [q["id"] for q in body["problems"]] == [pid]


async def test_an_open_incident_linked_by_hand_does_not_stop_the_problem_collecting_its_recurrences(shop_api):
    c = await shop_api()
    down = [await c.fault(i * DAY, db_down()) for i in range(2)]
    _, body = await c.call("GET", "/api/v1/problems")
    pid = body["problems"][0]["id"]
    await c.post_alerts(3 * DAY, [disk_full("web-1")])  # another CI and failure mode, still open
    _, body = await c.call("GET", "/api/v1/incidents?state=open")
    [disk] = [i["id"] for i in body["incidents"]]
    status, p = await c.call("POST", f"/api/v1/problems/{pid}/incidents", {"incident": disk})
    assert status == 200 and p["incidents"] == [*down, disk]
    await c.post_alerts(3 * DAY + 1800, [disk_full("web-1")], resolved=True)
    again = [await c.fault((5 + i) * DAY, db_down()) for i in range(2)]
    assert [(await c.incident(i))["problem_id"] for i in again] == [pid, pid]
    _, body = await c.call("GET", "/api/v1/problems")
    assert [q["id"] for q in body["problems"]] == [pid]


async def test_a_problem_resolved_while_an_incident_is_open_reopens_only_on_a_later_one(shop_api):
    c = await shop_api()
    pid = await c.database_problem()
    await c.post_alerts(2 * DAY, db_down())  # a third occurrence opens...
    c.daemon.clock.set(T0 + 2 * DAY + 60)
    status, p = await c.call("PATCH", f"/api/v1/problems/{pid}", {"status": "resolved", "fix_ref": "CHG-7"})
    assert status == 200 and p["status"] == "resolved"
    await c.post_alerts(2 * DAY + 1800, db_down(), resolved=True)  # ...and ends after the fix
    _, p = await c.call("GET", f"/api/v1/problems/{pid}")
    assert p["status"] == "resolved" and p["count"] == 3
    await c.fault(3 * DAY, db_down())  # this one began after the fix: the fix did not hold
    _, p = await c.call("GET", f"/api/v1/problems/{pid}")
    assert p["status"] == "open" and p["count"] == 4
    assert p["history"][-1]["action"] == "reopened"
