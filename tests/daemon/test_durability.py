"""A 2xx means durable: SIGKILL the daemon while clients post, restart it, and
every alert that got a 2xx is in the store and ends in an incident."""

import asyncio
import json
import os
import signal
import time

import aiohttp
from daemon_helpers import DaemonProcess, http_get, v2_alert

from daemon.model import fingerprint

SENDERS = 8
BATCH = 5


def labels_of(i: int) -> dict[str, str]:
    return {
        "alertname": "KillTest",
        "service": f"svc-{i % 40}",
        "instance": f"host-{i}:9100",
        "severity": "warning",
    }


async def post_until_killed(base: str, acked: list[int], stop: asyncio.Event) -> int:
    """Senders post batches of new alerts until the daemon stops answering."""
    counter = iter(range(10**9))
    failures = 0

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while not stop.is_set():
            ids = [next(counter) for _ in range(BATCH)]
            try:
                async with session.post(
                    base + "/api/v1/alerts", json=[v2_alert(labels_of(i)) for i in ids]
                ) as resp:
                    await resp.read()
                    if resp.status == 200:
                        acked.extend(ids)
            except aiohttp.ClientError:
                failures += 1
                await asyncio.sleep(0.01)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        await asyncio.gather(*(sender(session) for _ in range(SENDERS)))
    return failures


async def test_every_alert_answered_2xx_survives_sigkill_and_ends_in_an_incident(tmp_path):
    daemon = DaemonProcess(tmp_path / "data").start()
    acked: list[int] = []
    stop = asyncio.Event()
    posting = asyncio.create_task(post_until_killed(daemon.base, acked, stop))
    try:
        while len(acked) < 3000:
            await asyncio.sleep(0.05)
            assert not posting.done(), posting
        os.kill(daemon.proc.pid, signal.SIGKILL)  # with requests in flight
        await asyncio.sleep(0.3)
        stop.set()
        failures = await asyncio.wait_for(posting, 30)
    finally:
        stop.set()
        daemon.kill()
    assert daemon.proc.returncode == -signal.SIGKILL
    assert failures > 0, "the kill should have cut requests in flight"

    daemon.start()
    try:
        deadline = time.monotonic() + 60
        while b"\nincidentd_inbox_depth 0.0\n" not in http_get(daemon.base + "/metrics")[1]:
            assert time.monotonic() < deadline, "the recovered inbox was never processed"
            time.sleep(0.1)
        status, body = http_get(daemon.base + "/api/v1/incidents?state=all", timeout=30)
        assert status == 200
        in_incidents = {
            a["fingerprint"] for inc in json.loads(body)["incidents"] for a in inc["alerts"]
        }
    finally:
        daemon.stop()
    missing = [i for i in acked if fingerprint(labels_of(i)) not in in_incidents]
    assert missing == [], f"{len(missing)} of {len(acked)} acknowledged alerts lost"


def test_only_a_throwaway_store_skips_syncing_to_disk(tmp_path):
    """The daemon's store syncs its write-ahead log at checkpoints (every commit with
    `inbox.fsync`); replay's scratch store, deleted when the run ends, never does."""
    from daemon.store import Store

    levels = {}
    for name, kw in (("daemon", {}), ("fsync", {"fsync": True}), ("replay", {"scratch": True})):
        store = Store(str(tmp_path / f"{name}.sqlite3"), threaded=False, **kw)
        try:
            levels[name] = store.query_one("PRAGMA synchronous")[0]
        finally:
            store.close()
    assert levels == {"daemon": 1, "fsync": 2, "replay": 0}  # NORMAL, FULL, OFF


def test_a_store_file_that_is_not_sqlite_stops_the_start_with_one_line_and_is_left_alone(tmp_path):
    import subprocess
    import sys

    from daemon_helpers import REPO, free_port

    data = tmp_path / "data"
    data.mkdir()
    store = data / "incidentd.sqlite3"
    store.write_bytes(b"a text file where the store should be\n")
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "run", "--data-dir", str(data),
                           "--listen", f"127.0.0.1:{free_port()}"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"incidentd: cannot start: {store}: not a usable SQLite store (file is not a database)")
    assert "Traceback" not in done.stderr + done.stdout
    assert store.read_bytes() == b"a text file where the store should be\n"
