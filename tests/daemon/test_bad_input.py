"""Bad input gets a 4xx JSON error that names the problem; nothing of a rejected
request is stored, nothing accepted before is lost, the daemon keeps serving."""

import asyncio
import json
import logging
import sqlite3

import pytest
from daemon_helpers import T0, ts, v2_alert, webhook, wh_alert

from daemon.app import STORE_FILE

ALERTS = "/api/v1/alerts"
WEBHOOK = "/api/v1/alerts/alertmanager"
SAMPLES = "/api/v1/samples"
GOOD = {"alertname": "DiskFull", "instance": "db-1"}


def stored(tmp_path) -> tuple[int, int]:
    """(inbox rows, incidents) in the store."""
    with sqlite3.connect(tmp_path / "data" / STORE_FILE) as conn:
        return (
            conn.execute("SELECT count(*) FROM inbox").fetchone()[0],
            conn.execute("SELECT count(*) FROM incidents").fetchone()[0],
        )


@pytest.fixture
async def client(start_daemon, tmp_path):
    c = await start_daemon("inbox: {max_body_bytes: 4096}\n")
    assert (await c.post(ALERTS, [v2_alert(GOOD)]))[0] == 200
    await c.settle()
    yield c
    # whatever was rejected, the earlier alert is still there and the daemon still serves
    await c.settle()
    assert stored(tmp_path) == (0, 1)
    [inc] = await c.incidents()
    assert inc["alerts"][0]["labels"] == GOOD
    assert (await c.call("GET", "/healthz"))[0] == 200
    assert (await c.post(ALERTS, [v2_alert({"alertname": "StillServing"})]))[0] == 200


async def send(c, path: str, data: bytes, ctype: str = "application/json"):
    status, body, _ = await c.call("POST", path, data=data, headers={"Content-Type": ctype})
    return status, body


@pytest.mark.parametrize("path", [ALERTS, WEBHOOK, SAMPLES])
async def test_malformed_json_is_400(client, path):
    status, body = await send(client, path, b'[{"labels": {"alertname": "A"}')
    assert status == 400
    assert body["error"] == "malformed JSON"
    assert "line 1" in body["detail"]


@pytest.mark.parametrize("path", [ALERTS, WEBHOOK, SAMPLES])
async def test_wrong_content_type_is_415(client, path):
    status, body = await send(client, path, json.dumps([v2_alert(GOOD)]).encode(), "text/plain")
    assert status == 415
    assert body == {
        "error": "unsupported content type",
        "detail": "expected application/json, got text/plain",
    }


@pytest.mark.parametrize("encoding, detail", [
    ("gzip", "the body is not gzip data"),
    ("compress", "unsupported Content-Encoding: compress"),
    ("zstd-x", "unsupported Content-Encoding: zstd-x"),
])
async def test_a_body_not_in_its_content_encoding_is_400(client, encoding, detail):
    status, body, _ = await client.call("POST", ALERTS, data=b"[]", headers={
        "Content-Type": "application/json", "Content-Encoding": encoding})
    assert (status, body["error"]) == (400, "bad content encoding")
    assert body["detail"].startswith(detail)


async def test_an_undecodable_body_closes_its_connection_rather_than_being_read_on(client, caplog):
    host, port = client.daemon.bound
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST " + ALERTS.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Encoding: gzip\r\nContent-Length: 8\r\n\r\nnot gzip")
    answer = await asyncio.wait_for(reader.read(), 10)  # to the end: the daemon closes
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in head
    assert json.loads(body)["detail"] == "the body is not gzip data"
    assert not [r for r in caplog.records if r.name.startswith("aiohttp") and r.levelno >= logging.ERROR]


async def test_a_client_gone_before_the_end_of_its_body_is_its_fault_not_the_daemons(client):
    host, port = client.daemon.bound
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST " + ALERTS.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n[")
    await writer.drain()
    writer.close()

    async def counted():
        _, text, _ = await client.call("GET", "/metrics")
        return [line for line in text.splitlines()
                if line.startswith("incidentd_http_requests_total") and 'handler="/api/v1/alerts"' in line]

    for _ in range(200):
        lines = await counted()
        if any('code="400"' in line for line in lines):
            break
        await asyncio.sleep(0.05)
    assert any('code="400"' in line and line.endswith(" 1.0") for line in lines), lines
    assert not any('code="5' in line for line in lines), lines


async def _raw_post(client, expect: str, body: bytes) -> tuple[bytes, bytes]:
    """POST `body` to the alerts endpoint with `Expect: <expect>`, sending the body only
    after a `100 Continue`, as curl does; the head and body of the final answer."""
    host, port = client.daemon.bound
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST " + ALERTS.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Expect: " + expect.encode() + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    if first.startswith(b"HTTP/1.1 100 "):
        writer.write(body)
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = int(next(line.split(b":")[1] for line in first.split(b"\r\n") if line.lower().startswith(b"content-length")))
    answer = await asyncio.wait_for(reader.readexactly(length), 10)
    writer.close()
    return first, answer


async def test_an_expectation_other_than_100_continue_is_a_json_417_and_stores_nothing(client):
    body = json.dumps([v2_alert({"alertname": "Expecting"})]).encode()
    head, answer = await _raw_post(client, "bogus", body)
    assert head.startswith(b"HTTP/1.1 417 ") and b"Connection: close" in head
    assert json.loads(answer) == {"error": "unsupported Expect header",
                                  "detail": "only 100-continue is understood, not 'bogus'"}
    # (the alert the fixture posted, again: it stays one incident)
    head, answer = await _raw_post(client, "100-continue", json.dumps([v2_alert(GOOD)]).encode())
    assert head.startswith(b"HTTP/1.1 200 "), head
    _, text, _ = await client.call("GET", "/metrics")
    assert 'incidentd_http_requests_total{code="417",handler="/api/v1/alerts"} 1.0' in text


async def test_body_over_the_size_limit_is_413(client):
    big = json.dumps([v2_alert({"alertname": "Big", "n": str(i)}) for i in range(100)]).encode()
    assert len(big) > 4096
    status, body = await send(client, ALERTS, big)
    assert status == 413
    assert body == {"error": "request body too large", "detail": "the limit is 4096 bytes"}


async def test_body_over_the_size_limit_without_content_length_is_413(client):
    big = json.dumps([v2_alert({"alertname": "Big", "n": str(i)}) for i in range(100)]).encode()

    async def chunks():
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    async with client.session.post(
        client.base + ALERTS, data=chunks(), headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"] == "request body too large"


BAD_ALERTS = [
    (
        "no labels",
        [v2_alert(GOOD), {"annotations": {}, "startsAt": ts(T0)}],
        "[1].labels: expected an object of strings, got null",
    ),
    ("empty labels", [{"labels": {}}], "[0].labels: at least one label is required"),
    (
        "label value not a string",
        [v2_alert(GOOD), {"labels": {"alertname": "A", "severity": 3}}],
        "[1].labels.severity: expected a string, got a number",
    ),
    (
        "label value null",
        [{"labels": {"alertname": None}}],
        "[0].labels.alertname: expected a string, got null",
    ),
    (
        "bad label name",
        [{"labels": {"alert-name": "A"}}],
        "[0].labels.alert-name: invalid label name",
    ),
    (
        "annotation not a string",
        [{"labels": GOOD, "annotations": {"summary": ["x"]}}],
        "[0].annotations.summary: expected a string, got a list",
    ),
    (
        "startsAt not a timestamp",
        [{"labels": GOOD, "startsAt": "yesterday"}],
        "[0].startsAt: not an RFC 3339 timestamp: 'yesterday'",
    ),
    (
        "startsAt impossible date",
        [{"labels": GOOD, "startsAt": "2026-02-30T00:00:00Z"}],
        "[0].startsAt: not a valid date/time",
    ),
    (
        "startsAt past year 9999",
        [{"labels": GOOD, "startsAt": "9999-12-31T23:59:59-23:59"}],
        "[0].startsAt: time out of range (1970 to 9999)",
    ),
    (
        "startsAt offset over 23:59",
        [{"labels": GOOD, "startsAt": "2026-11-24T04:00:00+99:99"}],
        "[0].startsAt: not a valid UTC offset",
    ),
    *(
        (f"startsAt in ISO 8601 but not RFC 3339: {text}", [{"labels": GOOD, "startsAt": text}],
         "[0].startsAt: not an RFC 3339 timestamp")
        for text in ("2026-11-24T040000Z", "2026-11-24T04:00:00.Z", "2026-11-24T04:00:00,5Z",
                     "\uff12\uff10\uff12\uff16-11-24T04:00:00Z")
    ),
    (
        "only labels with empty values",
        [v2_alert(GOOD), {"labels": {"alertname": "", "instance": ""}}],
        "[1].labels: at least one label with a non-empty value is required",
    ),
    (
        "endsAt a number",
        [{"labels": GOOD, "endsAt": 1767225600}],
        "[0].endsAt: expected an RFC 3339 timestamp string, got a number",
    ),
    (
        "endsAt before startsAt",
        [v2_alert(GOOD), v2_alert(GOOD, starts=T0, ends=T0 - 60)],
        "[1].endsAt: endsAt is before startsAt",
    ),
    ("not a list", {"labels": GOOD}, "expected a JSON list of alerts, got an object"),
    (
        "alert not an object",
        [v2_alert(GOOD), "DiskFull"],
        "[1]: expected an alert object, got a string",
    ),
    (
        "generatorURL not a string",
        [{"labels": GOOD, "generatorURL": 5}],
        "[0].generatorURL: expected a string, got a number",
    ),
]


@pytest.mark.parametrize("case, payload, detail", BAD_ALERTS, ids=[b[0] for b in BAD_ALERTS])
async def test_invalid_api_alerts_are_400_naming_the_alert_and_field(client, case, payload, detail):
    status, body = await send(client, ALERTS, json.dumps(payload).encode())
    assert status == 400
    assert body["error"] == "invalid alerts"
    assert body["detail"].startswith(detail)


BAD_WEBHOOKS = [
    (
        "alert without labels",
        webhook(wh_alert(GOOD), {"status": "firing"}),
        "alerts[1].labels: expected an object of strings, got null",
    ),
    (
        "status unknown",
        webhook(wh_alert(GOOD), {**wh_alert(GOOD), "status": "pending"}),
        "alerts[1].status: expected 'firing' or 'resolved', got 'pending'",
    ),
    (
        "endsAt before startsAt",
        webhook(wh_alert(GOOD, "resolved", starts=T0, ends=T0 - 1)),
        "alerts[0].endsAt: endsAt is before startsAt",
    ),
    (
        "unparseable startsAt",
        webhook({**wh_alert(GOOD), "startsAt": "2026-01-01 00:00"}),
        "alerts[0].startsAt: not an RFC 3339 timestamp",
    ),
    (
        "alerts missing",
        {"version": "4", "status": "firing"},
        "alerts: expected a list of alerts, got null",
    ),
    (
        "other version",
        {**webhook(wh_alert(GOOD)), "version": "3"},
        "version: unsupported webhook version '3'",
    ),
    ("a list", [wh_alert(GOOD)], "expected an Alertmanager webhook object, got a list"),
]


@pytest.mark.parametrize("case, payload, detail", BAD_WEBHOOKS, ids=[b[0] for b in BAD_WEBHOOKS])
async def test_invalid_webhooks_are_400_naming_the_alert_and_field(client, case, payload, detail):
    status, body = await send(client, WEBHOOK, json.dumps(payload).encode())
    assert status == 400
    assert body["detail"].startswith(detail)


BAD_SAMPLES = [
    (
        "no __name__",
        [{"labels": {"job": "x"}, "value": 1, "at": ts(T0)}],
        "[0].labels: the __name__ label is required",
    ),
    (
        "value a string",
        [{"labels": {"__name__": "m"}, "value": "1", "at": ts(T0)}],
        "[0].value: expected a number",
    ),
    (
        "value a boolean",
        [{"labels": {"__name__": "m"}, "value": True, "at": ts(T0)}],
        "[0].value: expected a number",
    ),
    (
        "at missing",
        [{"labels": {"__name__": "m"}, "value": 1}],
        "[0].at: expected an RFC 3339 timestamp string",
    ),
    (
        "at far ahead of the clock",  # it would hide every later sample of its series
        [{"labels": {"__name__": "m"}, "value": 1, "at": ts(T0)},
         {"labels": {"__name__": "m"}, "value": 1, "at": "9999-12-31T23:59:59Z"}],
        "[1].at: more than 3600s ahead of the daemon's clock",
    ),
]


@pytest.mark.parametrize("case, payload, detail", BAD_SAMPLES, ids=[b[0] for b in BAD_SAMPLES])
async def test_invalid_samples_are_400_naming_the_sample_and_field(client, case, payload, detail):
    status, body = await send(client, SAMPLES, json.dumps(payload).encode())
    assert status == 400
    assert body["detail"].startswith(detail)


async def test_unknown_endpoint_and_method_are_json_errors(client):
    status, body, _ = await client.call("GET", "/api/v1/nope")
    assert status == 404 and body["error"].startswith("no such endpoint")
    status, body, headers = await client.call("GET", ALERTS)
    assert status == 405 and "POST" in headers["Allow"]


async def test_empty_alert_list_is_accepted_and_stores_nothing(client):
    assert await client.post(ALERTS, []) == (200, {"status": "success", "accepted": 0})


@pytest.mark.parametrize("path, error", [
    ("/api/v1/stats?since=1" + "0" * 400 + "s", "invalid since"),
    ("/api/v1/stats?since=9999-12-31T23:59:59-23:59", "invalid since"),
    ("/api/v1/anomalies?limit=99999999999999999999999", "invalid limit"),
    ("/api/v1/anomalies?limit=%C2%B2", "invalid limit"),
    ("/api/v1/anomalies?limit=0", "invalid limit"),
])
async def test_query_parameters_out_of_range_are_4xx(client, path, error):
    status, body, _ = await client.call("GET", path)
    assert 400 <= status < 500 and body["error"] == error, body


async def test_a_stats_window_reaching_before_1970_is_all_there_is(client):
    status, body, _ = await client.call("GET", "/api/v1/stats?since=99999999999999y")
    assert status == 200 and body["incidents"] == 1
