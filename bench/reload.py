"""Reload of a large CMDB in a running daemon: how long `POST /-/reload` takes, and
how long the daemon keeps a request waiting meanwhile.

A daemon on loopback holds a generated CMDB (the tiered shop of
bench/corr_scale.py); the file is touched so that the reload builds it again,
and while the reload runs a client asks `GET /healthz` back to back and posts
an alert every 50 ms. Reported: the reload's duration, and the slowest
and median answer to the others during it (an event loop held by the build
shows as a slowest answer as long as the build).

    python bench/reload.py [--cis 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

import aiohttp
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from corr_scale import tiered_topology  # noqa: E402

from daemon.app import Daemon  # noqa: E402
from daemon.config import load_config  # noqa: E402
from daemon.logs import configure_logging  # noqa: E402


async def _during(session: aiohttp.ClientSession, base: str, done: asyncio.Event) -> tuple[list[float], int]:
    """Answer times of back-to-back health checks, and alerts posted every 50 ms, until `done`."""
    times: list[float] = []
    posted = 0
    last_post = 0.0
    while not done.is_set():
        t = time.perf_counter()
        if t - last_post >= 0.05:
            alert = [{"labels": {"alertname": "Probe", "service": f"svc0{posted % 4}", "cluster": "t0",
                                 "namespace": "app"}}]
            async with session.post(f"{base}/api/v1/alerts", json=alert) as r:
                assert r.status == 200, await r.text()
            posted += 1
            last_post = t
        else:
            async with session.get(f"{base}/healthz") as r:
                assert r.status == 200
        times.append(time.perf_counter() - t)
    return times, posted


async def run(n_cis: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmdb = os.path.join(tmp, "cmdb.yaml")
        with open(cmdb, "w") as f:
            yaml.safe_dump(tiered_topology(n_cis), f)
        config = os.path.join(tmp, "config.yaml")
        with open(config, "w") as f:
            f.write(f"listen: 127.0.0.1:0\ndata_dir: {tmp}/data\ncmdb: [cmdb.yaml]\n")
        t = time.perf_counter()
        daemon = Daemon(load_config(config))
        await daemon.start()
        print(f"start with {n_cis} CIs: {time.perf_counter() - t:.2f} s")
        base = f"http://{daemon.bound[0]}:{daemon.bound[1]}"
        async with aiohttp.ClientSession() as session:
            for i in range(rounds):
                os.utime(cmdb)  # the same file, newer: built again
                done = asyncio.Event()
                probe = asyncio.create_task(_during(session, base, done))
                t = time.perf_counter()
                async with session.post(f"{base}/-/reload") as r:
                    body = await r.json()
                took = time.perf_counter() - t
                done.set()
                times, posted = await probe
                assert body["ok"], body
                print(f"reload {i + 1}: {took:.2f} s; meanwhile {len(times)} requests ({posted} alert posts),"
                      f" slowest {max(times) * 1000:.0f} ms, median {statistics.median(times) * 1000:.1f} ms")
        await daemon.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cis", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    configure_logging("warning")
    asyncio.run(run(args.cis, args.rounds))


if __name__ == "__main__":
    main()
