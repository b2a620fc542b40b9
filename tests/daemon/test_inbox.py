"""The durable inbox: a 2xx means committed, unprocessed rows are processed on
start, a full inbox answers 503 with Retry-After, and the durability setting
picks SQLite's synchronous mode."""

import asyncio
import json
import sqlite3
import zlib

import aiohttp
import pytest
from daemon_helpers import T0, free_port, v2_alert, write_config

from daemon.app import STORE_FILE, WorkerFailed, decode_inbox_row, serve
from daemon.config import load_config
from daemon.pipeline import Pipeline

ALERTS = "/api/v1/alerts"


async def stall_worker(daemon) -> None:
    """Stop the pipeline worker, as if it had fallen far behind."""
    worker = daemon._tasks[0]
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)


def resume_worker(daemon) -> None:
    daemon._tasks[0] = asyncio.create_task(daemon._worker())


def inbox_rows(tmp_path) -> int:
    with sqlite3.connect(tmp_path / "data" / STORE_FILE) as conn:
        return conn.execute("SELECT count(*) FROM inbox").fetchone()[0]


async def test_alerts_accepted_but_not_processed_are_processed_on_the_next_start(
    start_daemon, tmp_path
):
    c = await start_daemon()
    await stall_worker(c.daemon)
    assert await c.post(ALERTS, [v2_alert({"alertname": "A"}), v2_alert({"alertname": "B"})]) == (
        200,
        {"status": "success", "accepted": 2},
    )
    assert inbox_rows(tmp_path) == 1
    await c.daemon.stop()  # nothing processed: the rows stay in the inbox

    c2 = await start_daemon()
    incidents = await c2.incidents()
    assert sorted(i["alerts"][0]["labels"]["alertname"] for i in incidents) == ["A", "B"]
    assert inbox_rows(tmp_path) == 0


async def test_alert_accepted_after_the_inbox_emptied_survives_a_crash_before_processing(
    start_daemon, tmp_path
):
    # SQLite reuses row ids once a table is empty: recovery must not skip
    # rows by comparing ids with those of rows processed earlier.
    c = await start_daemon()
    for name in ("A", "B", "C"):
        await c.post(ALERTS, [v2_alert({"alertname": name})])
    assert len(await c.incidents()) == 3
    assert inbox_rows(tmp_path) == 0
    await stall_worker(c.daemon)
    assert (await c.post(ALERTS, [v2_alert({"alertname": "D"})]))[0] == 200
    await c.daemon.stop()

    c2 = await start_daemon()
    names = [i["alerts"][0]["labels"]["alertname"] for i in await c2.incidents()]
    assert names == ["A", "B", "C", "D"]


async def test_a_full_inbox_answers_503_with_retry_after_and_accepts_again_once_drained(
    start_daemon, tmp_path
):
    c = await start_daemon("inbox: {max_depth: 3, retry_after: 7}\n")
    await stall_worker(c.daemon)
    batch = [v2_alert({"alertname": "A", "n": str(i)}) for i in range(2)]
    assert (await c.post(ALERTS, batch))[0] == 200
    status, body, headers = await c.call("POST", ALERTS, batch)
    assert status == 503
    assert headers["Retry-After"] == "7"
    assert body["error"] == "inbox full"
    assert inbox_rows(tmp_path) == 1, "nothing of a refused request is stored"

    resume_worker(c.daemon)
    await c.settle()
    assert (await c.post(ALERTS, batch))[0] == 200
    [inc] = await c.incidents()
    assert len(inc["alerts"]) == 2


async def test_one_request_larger_than_max_depth_is_accepted_when_the_inbox_is_empty(start_daemon):
    # otherwise a sender whose batches exceed max_depth could never deliver
    c = await start_daemon("inbox: {max_depth: 3}\n")
    assert (await c.post(ALERTS, [v2_alert({"alertname": "A", "n": str(i)}) for i in range(5)]))[
        0
    ] == 200


async def test_throttled_alerts_are_counted_in_the_metrics(start_daemon):
    c = await start_daemon("inbox: {max_depth: 1}\n")
    await stall_worker(c.daemon)
    await c.post(ALERTS, [v2_alert({"alertname": "A"})])
    await c.post(ALERTS, [v2_alert({"alertname": "B"})])
    _, text, _ = await c.call("GET", "/metrics")
    assert 'incidentd_alerts_received_total{outcome="throttled",source="api"} 1.0' in text
    assert 'incidentd_alerts_received_total{outcome="accepted",source="api"} 1.0' in text
    assert "incidentd_inbox_depth 1.0" in text


async def test_crash_durability_is_the_default_and_power_durability_fsyncs_every_commit(
    start_daemon,
):
    default = await start_daemon()
    assert default.daemon.store._wconn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert default.daemon.store._wconn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    await default.daemon.stop()
    power = await start_daemon("inbox: {durability: power}\n")
    assert power.daemon.store._wconn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


async def test_concurrent_requests_share_commits(start_daemon):
    c = await start_daemon()
    await stall_worker(c.daemon)
    before = c.daemon.store.commits
    results = await asyncio.gather(
        *(c.post(ALERTS, [v2_alert({"alertname": "A", "n": str(i)})]) for i in range(50))
    )
    assert all(status == 200 for status, _ in results)
    assert c.daemon.store.commits - before < 50


def test_inbox_rows_are_read_back_compressed_or_not():
    body = json.dumps([v2_alert({"alertname": "A", "severity": "critical"})]).encode()
    plain = decode_inbox_row("alerts", "api", body, T0, 300.0)
    packed = decode_inbox_row("alerts", "api", zlib.compress(body, 1), T0, 300.0)
    assert plain == packed
    assert [(a.labels["alertname"], a.status, a.ends_at) for a in plain] == [
        ("A", "firing", T0 + 300.0)
    ]


async def test_a_failing_pipeline_stops_the_daemon_with_an_error_and_keeps_the_alerts(
    tmp_path, monkeypatch
):
    def broken(self, alerts, now):
        raise RuntimeError("stage exploded")

    monkeypatch.setattr(Pipeline, "process_alerts", broken)
    config = load_config(write_config(tmp_path, "log: {level: error}\n"))
    port = free_port()
    serving = asyncio.create_task(serve(config, f"127.0.0.1:{port}"))
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.post(
                    f"http://127.0.0.1:{port}/api/v1/alerts", json=[v2_alert({"alertname": "A"})]
                ) as resp:
                    assert resp.status == 200
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
    with pytest.raises(WorkerFailed, match="stage exploded"):
        await asyncio.wait_for(serving, 10)
    assert inbox_rows(tmp_path) == 1, "the alert stays in the inbox for the next start"


async def test_a_row_the_pipeline_fails_on_alone_is_set_aside_and_the_others_go_through(
    start_daemon, tmp_path, monkeypatch
):
    original = Pipeline.process_alerts

    def with_a_bug(self, alerts, now):  # a bug that one alert's labels set off
        if any(a.labels.get("poison") for a in alerts):
            raise RuntimeError("stage exploded")
        return original(self, alerts, now)

    monkeypatch.setattr(Pipeline, "process_alerts", with_a_bug)
    c = await start_daemon("log: {level: error}\n")
    await stall_worker(c.daemon)
    for labels in ({"alertname": "A"}, {"alertname": "P", "poison": "yes"}, {"alertname": "B"}):
        assert (await c.post(ALERTS, [v2_alert(labels)]))[0] == 200
    resume_worker(c.daemon)  # the three rows in one batch: it fails
    with pytest.raises(RuntimeError, match="stage exploded"):
        await asyncio.wait_for(c.daemon._tasks[0], 10)
    await c.daemon.stop()
    assert inbox_rows(tmp_path) == 3

    # the next start takes the rows one by one: A goes through, P fails alone and is
    # set aside with its error, and the worker stops again
    c2 = await start_daemon("log: {level: error}\n")
    with pytest.raises(RuntimeError, match="stage exploded"):
        await asyncio.wait_for(c2.daemon._tasks[0], 10)
    await c2.daemon.stop()
    with sqlite3.connect(tmp_path / "data" / STORE_FILE) as conn:
        [(body, error)] = conn.execute("SELECT body, error FROM inbox_dead").fetchall()
    assert b'"poison"' in (zlib.decompress(body) if body[:1] == b"x" else body)
    assert error == "RuntimeError: stage exploded"

    # and the start after that is a normal one
    c3 = await start_daemon("log: {level: error}\n")
    names = sorted(i["alerts"][0]["labels"]["alertname"] for i in await c3.incidents())
    assert names == ["A", "B"] and inbox_rows(tmp_path) == 0
    assert not c3.daemon._tasks[0].done()
