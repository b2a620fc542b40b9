"""Delivery through failures: retries, order, exactly one delivery per
notification, a down receiver blocking nothing else; restart and SIGKILL."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import aiohttp
import pytest
from notify_helpers import T0, alert, free_port, outbox_rows, write_config

from daemon.clock import VirtualClock


def flaky_config(url: str, other: str) -> str:
    return f"""
receivers:
  - {{name: flaky, type: webhook, url: "{url}", timeout: 300ms, max_concurrency: 2}}
  - {{name: steady, type: webhook, url: "{other}"}}
notify:
  group_wait: 0s
  retry: {{max_attempts: 50, initial_backoff: 10ms, max_backoff: 100ms}}
  events: [open, priority_raised, root_cause_changed, acknowledged, resolved]
  default: {{receivers: [flaky, steady]}}
"""


async def test_failing_receiver_recovers_and_gets_each_notification_once_in_order(tmp_path, sink, daemon_for):
    port = free_port()  # nothing listens yet: connection refused
    steady = await sink()
    c = await daemon_for(write_config(tmp_path, flaky_config(f"http://127.0.0.1:{port}/hook", steady.url)))
    for i in range(5):
        await c.post_alerts(alert(f"Alert{i}", service="checkout"))
    # the steady receiver is not held up by the one that is down
    await steady.wait_for(5)
    # ingest goes on while the receiver is down
    await c.post_alerts(alert("Alert5", service="checkout"))
    await c.until(lambda b: len(b["incidents"]) == 6, "/api/v1/incidents")
    for i in (1, 3):
        status, _ = await c.call("POST", f"/api/v1/incidents/INC-00000{i}/ack", {"author": "bob"})
        assert status == 200
        status, _ = await c.call("POST", f"/api/v1/incidents/INC-00000{i}/resolve", {"author": "bob"})
        assert status == 200
    await asyncio.sleep(0.3)
    flaky = await sink(port)
    flaky.script = [500, "timeout", 503, 500, "timeout"]  # it comes back badly, then well
    got = [m["body"] for m in await flaky.wait_for(10, timeout=20)]
    await c.daemon.components.parts["notify"].deliverer.drained()
    ids = [b["notification_id"] for b in got]
    assert len(ids) == len(set(ids)) == 10  # each exactly once
    by_incident: dict[str, list[str]] = {}
    for b in got:
        by_incident.setdefault(b["incident"]["id"], []).append(b["reason"])
    assert by_incident["INC-000001"] == ["opened", "acknowledged", "resolved"]
    assert by_incident["INC-000003"] == ["opened", "acknowledged", "resolved"]
    assert all(v == ["opened"] for k, v in by_incident.items() if k not in ("INC-000001", "INC-000003"))
    rows = outbox_rows(c.daemon)
    assert {r[4] for r in rows} == {"delivered"}
    assert max(r[5] for r in rows if r[2] == "flaky") > 1  # it took retries
    # every failed attempt is in the incident's timeline
    inc = await c.until(lambda b: True, "/api/v1/incidents/INC-000001")
    texts = [e["text"] for e in inc["timeline"] if e["kind"] == "notification" and "flaky" in e["text"]]
    assert any("failed, attempt 1" in t for t in texts)
    assert sum(t.startswith("notified flaky") for t in texts) == 3


async def test_a_receiver_answering_400_is_given_up_and_the_next_notification_goes(tmp_path, sink, daemon_for):
    bad, steady = await sink(), await sink()
    bad.script = [400]
    c = await daemon_for(write_config(tmp_path, flaky_config(bad.url, steady.url)))
    await c.post_alerts(alert("A", service="x"))
    await c.call("POST", "/api/v1/incidents/INC-000001/ack", {"author": "bob"})
    [got] = await bad.wait_for(1)
    assert got["body"]["reason"] == "acknowledged"
    await c.daemon.components.parts["notify"].deliverer.drained()
    states = {(r[2], r[3]): r[4] for r in outbox_rows(c.daemon)}
    assert states[("flaky", "opened")] == "failed"


async def test_a_redirect_is_a_failed_attempt_that_is_retried_not_a_delivery(tmp_path, sink, daemon_for):
    hook, steady = await sink(), await sink()
    hook.script = ["redirect", "redirect"]  # followed, the POST would become a GET without the message
    c = await daemon_for(write_config(tmp_path, flaky_config(hook.url, steady.url)))
    await c.post_alerts(alert("A", service="x"))
    [got] = await hook.wait_for(1)
    assert got["body"]["reason"] == "opened"
    await c.daemon.components.parts["notify"].deliverer.drained()
    assert (hook.attempts, hook.gets) == (3, 0)
    inc = await c.until(lambda b: True, "/api/v1/incidents/INC-000001")
    texts = [e["text"] for e in inc["timeline"] if e["kind"] == "notification" and "flaky" in e["text"]]
    assert texts[:2] == [f"notification to flaky (opened) failed, attempt {i}: HTTP 301: redirected, not followed"
                         for i in (1, 2)]
    assert texts[2].startswith("notified flaky (opened), attempt 3")
    assert not any("t0k3n" in t for t in texts)  # the Location is not repeated


async def test_delivery_errors_show_the_receiver_url_without_its_path_query_or_password(tmp_path, sink, daemon_for):
    from structlog.testing import capture_logs

    from daemon.notify.config import ReceiverConfig
    from daemon.notify.receivers import DeliveryError, HttpReceiver

    hook, steady = await sink(), await sink()
    hook.script = [500]  # its error page repeats the path and query
    secret_url = f"http://alice:PW0rd@127.0.0.1:{hook.port}/services/T0/B0/S3CRET?token=T0K"
    c = await daemon_for(write_config(tmp_path, flaky_config(secret_url, steady.url)))
    with capture_logs() as logs:
        await c.post_alerts(alert("A", service="x"))
        await hook.wait_for(1)
        await c.daemon.components.parts["notify"].deliverer.drained()
    inc = await c.until(lambda b: True, "/api/v1/incidents/INC-000001")
    texts = [e["text"] for e in inc["timeline"] if e["kind"] == "notification" and "flaky" in e["text"]]
    assert texts[0] == "notification to flaky (opened) failed, attempt 1: HTTP 500: " \
                       "(detail withheld: it names the receiver URL)"
    shown = json.dumps([inc["timeline"], logs], default=str)
    assert "attempt failed" in shown and not any(s in shown for s in ("S3CRET", "T0K", "PW0rd")), shown

    # an exception naming the whole URL (one check-config refuses, sent anyway): only its origin is said
    async with aiohttp.ClientSession() as session:
        for url, said in ((f"http://127.0.0.1:{free_port()}/services/T0/B0/S3CRET", "Cannot connect to host"),
                          ("https://127.0.0.1:99999/services/T0/B0/S3CRET", "InvalidUrlClientError: <receiver URL>")):
            receiver = HttpReceiver(ReceiverConfig(name="x", type="webhook", url=url), session)
            message = {"id": 1, "reason": "opened", "incident": {"id": "INC-000001", "alerts": [], "alerts_total": 1}}
            with pytest.raises(DeliveryError) as exc:
                await receiver.send(message)
            assert said in str(exc.value) and "S3CRET" not in str(exc.value), exc.value


async def test_a_restart_resumes_undelivered_notifications(tmp_path, sink, daemon_for):
    port = free_port()
    steady = await sink()
    path = write_config(tmp_path, flaky_config(f"http://127.0.0.1:{port}/hook", steady.url))
    c = await daemon_for(path, clock=VirtualClock(T0))
    await c.post_alerts(alert("A", service="x"), alert("B", service="y"))
    await steady.wait_for(2)
    await c.stop()
    rows = [r for r in await asyncio.to_thread(_rows, tmp_path) if r[0] == "flaky"]
    assert rows and all(state == "pending" for _, state in rows)
    flaky = await sink(port)
    await daemon_for(path, clock=VirtualClock(T0 + 60))
    got = await flaky.wait_for(2)
    assert sorted(b["body"]["incident"]["id"] for b in got) == ["INC-000001", "INC-000002"]
    assert len(steady.received) == 2  # nothing sent twice to the receiver that had it


async def test_notifications_for_a_receiver_out_of_the_config_wait_until_a_reload_brings_it_back(
        tmp_path, sink, daemon_for):
    port = free_port()
    steady = await sink()
    path = write_config(tmp_path, flaky_config(f"http://127.0.0.1:{port}/hook", steady.url))
    c = await daemon_for(path, clock=VirtualClock(T0))
    await c.post_alerts(alert("A", service="x"))
    await steady.wait_for(1)
    await c.stop()
    # started without the receiver: its row stays pending
    without = flaky_config(f"http://127.0.0.1:{port}/hook", steady.url).replace(
        "  - {name: flaky, type: webhook", "  # - {name: flaky, type: webhook").replace("[flaky, steady]", "[steady]")
    with open(path, "w") as fh:
        fh.write(f"data_dir: {tmp_path / 'data'}\n{without}")
    c2 = await daemon_for(path, clock=VirtualClock(T0 + 60))
    flaky = await sink(port)
    await asyncio.sleep(0.3)
    assert flaky.received == []
    # a reload brings it back: the row goes out
    write_config(tmp_path, flaky_config(f"http://127.0.0.1:{port}/hook", steady.url))
    status, body = await c2.call("POST", "/-/reload")
    assert status == 200, body
    [got] = await flaky.wait_for(1)
    assert got["body"]["incident"]["id"] == "INC-000001"
    assert [state for r, state in await asyncio.to_thread(_rows, tmp_path) if r == "flaky"] == ["delivered"]


async def test_a_stop_lets_the_attempt_in_flight_finish_so_a_restart_does_not_send_it_again(
        tmp_path, sink, daemon_for):
    slow = await sink()
    slow.script = ["slow"]
    path = write_config(tmp_path, f"""
receivers:
  - {{name: slow, type: webhook, url: "{slow.url}", timeout: 5s}}
notify:
  group_wait: 0s
  events: [open]
  default: {{receivers: [slow]}}
""")
    c = await daemon_for(path, clock=VirtualClock(T0))
    await c.post_alerts(alert("A", service="x"))
    for _ in range(500):  # until the request is at the receiver, which answers 0.5 s later
        if slow.attempts:
            break
        await asyncio.sleep(0.01)
    await c.stop()  # as SIGTERM would
    assert len(slow.received) == 1
    assert await asyncio.to_thread(_rows, tmp_path) == [("slow", "delivered")]
    await daemon_for(path, clock=VirtualClock(T0 + 60))
    await asyncio.sleep(0.3)
    assert len(slow.received) == 1  # not sent again


async def test_a_stop_does_not_wait_out_a_retry_backoff(tmp_path, sink, daemon_for):
    port = free_port()  # nothing listens: every attempt fails, then waits
    path = write_config(tmp_path, f"""
receivers:
  - {{name: down, type: webhook, url: "http://127.0.0.1:{port}/hook"}}
notify:
  group_wait: 0s
  events: [open]
  retry: {{max_attempts: 10, initial_backoff: 60s, max_backoff: 60s}}
  default: {{receivers: [down]}}
""")
    c = await daemon_for(path, clock=VirtualClock(T0))
    await c.post_alerts(alert("A", service="x"))
    for _ in range(500):
        if [s for _, s in await asyncio.to_thread(_attempts, tmp_path) if s]:
            break
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await c.stop()
    assert time.monotonic() - started < 2
    assert await asyncio.to_thread(_attempts, tmp_path) == [("pending", 1)]  # resumed by the next start


def _attempts(tmp_path):
    return _rows(tmp_path, "state, attempts")


def _rows(tmp_path, columns="receiver, state"):
    import sqlite3

    conn = sqlite3.connect(tmp_path / "data" / "incidentd.sqlite3")
    try:
        return conn.execute(f"SELECT {columns} FROM notify_outbox ORDER BY id").fetchall()
    finally:
        conn.close()


async def test_sigkill_with_notifications_pending_then_restart_delivers_them(tmp_path, sink):
    port = free_port()
    listen = f"127.0.0.1:{free_port()}"
    steady = await sink()
    path = write_config(tmp_path, flaky_config(f"http://127.0.0.1:{port}/hook", steady.url))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}

    def spawn():
        return subprocess.Popen([sys.executable, "-m", "daemon.cli", "run", "--config", path, "--listen", listen],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def wait_ready():
        async with aiohttp.ClientSession() as s:
            for _ in range(300):
                try:
                    async with s.get(f"http://{listen}/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("daemon did not become ready")

    proc = spawn()
    try:
        await wait_ready()
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://{listen}/api/v1/alerts",
                              json=[alert(f"Alert{i}", service="s") for i in range(3)]) as r:
                assert r.status == 200
        await steady.wait_for(3)
        # delivery is at least once: wait for the outcomes to be committed, so the
        # steady receiver has nothing to get twice
        for _ in range(200):
            if [s for r, s in await asyncio.to_thread(_rows, tmp_path) if r == "steady"] == ["delivered"] * 3:
                break
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        rows = await asyncio.to_thread(_rows, tmp_path)
        assert [s for r, s in rows if r == "flaky"] == ["pending"] * 3
        flaky = await sink(port)
        started = time.monotonic()
        proc = spawn()
        await wait_ready()
        got = await flaky.wait_for(3, timeout=15)
        assert sorted(g["body"]["incident"]["id"] for g in got) == ["INC-000001", "INC-000002", "INC-000003"]
        assert time.monotonic() - started < 15
        assert len(steady.received) == 3
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
