"""Notification benchmarks, on loopback, with the daemon in this process.

1. Latency: incidents open at RATE/s (one new alert each, group_wait 0s); for each,
   the time from the alert being accepted (HTTP 200) to its first notification
   arriving at a webhook receiver. Reports p50/p99.
2. Drain: the receiver is down while N incidents open (N notifications pending,
   retried with backoff); then it comes back. Reports how fast the outbox drains.

    python bench/notify.py [--rate 100] [--seconds 20] [--pending 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from daemon.app import Daemon  # noqa: E402
from daemon.config import load_config  # noqa: E402
from daemon.logs import configure_logging  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.count = 0
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.arrived.setdefault(body["incident"]["id"], time.monotonic())
        self.count += 1
        return web.json_response({})

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()


def config(tmp: str, port: int, concurrency: int) -> str:
    path = os.path.join(tmp, "config.yaml")
    with open(path, "w") as fh:
        fh.write(f"""data_dir: {tmp}/data
incidents: {{group_by: [alertname]}}
receivers:
  - {{name: hook, type: webhook, url: "http://127.0.0.1:{port}/hook", max_concurrency: {concurrency}, timeout: 5s}}
notify:
  group_wait: 0s
  repeat_interval: 0s
  retry: {{max_attempts: 100, initial_backoff: 1s, max_backoff: 10s}}
  default: {{receivers: [hook]}}
""")
    return path


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def latency(rate: int, seconds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        rx = Receiver()
        await rx.start(port)
        daemon = Daemon(load_config(config(tmp, port, 8)))
        await daemon.start("127.0.0.1:0")
        base = f"http://{daemon.bound[0]}:{daemon.bound[1]}"
        accepted: dict[str, float] = {}
        n = rate * seconds
        async with aiohttp.ClientSession() as s:
            async def post(i: int) -> None:
                body = [{"labels": {"alertname": f"Bench{i}", "service": f"svc{i % 50}", "severity": "critical"},
                         "annotations": {"summary": "bench"}}]
                async with s.post(base + "/api/v1/alerts", json=body) as r:
                    assert r.status == 200
                accepted[f"INC-{i + 1:06d}"] = time.monotonic()

            start = time.monotonic()
            tasks = []
            for i in range(n):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                tasks.append(asyncio.create_task(post(i)))
            await asyncio.gather(*tasks)
        deadline = time.monotonic() + 60
        while len(rx.arrived) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        lat = [rx.arrived[k] - t for k, t in accepted.items() if k in rx.arrived]
        print(f"latency: {n} incidents at {rate}/s, {len(lat)} first notifications delivered")
        print(f"  alert accepted -> first notification delivered: p50 {pct(lat, 50) * 1000:.1f} ms, "
              f"p99 {pct(lat, 99) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms, mean {statistics.mean(lat) * 1000:.1f} ms")
        await daemon.stop()
        await rx.runner.cleanup()


async def drain(pending: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()  # nobody listens: the receiver is down
        daemon = Daemon(load_config(config(tmp, port, concurrency)))
        await daemon.start("127.0.0.1:0")
        base = f"http://{daemon.bound[0]}:{daemon.bound[1]}"
        async with aiohttp.ClientSession() as s:
            for lo in range(0, pending, 1000):
                body = [{"labels": {"alertname": f"Drain{i}", "severity": "warning"}, "annotations": {}}
                        for i in range(lo, min(pending, lo + 1000))]
                async with s.post(base + "/api/v1/alerts", json=body) as r:
                    assert r.status == 200
        deliverer = daemon.components.parts["notify"].deliverer
        t0 = time.monotonic()
        while deliverer._seen < pending and time.monotonic() - t0 < 120:
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # every lane has failed at least once and waits in backoff
        waiting = daemon.store.query_one("SELECT COUNT(*) FROM notify_outbox WHERE state='pending'")[0]
        rx = Receiver()
        started = time.monotonic()
        await rx.start(port)
        while rx.count < pending and time.monotonic() - started < 300:
            await asyncio.sleep(0.02)
        took = time.monotonic() - started
        await deliverer.drained(60)
        left = daemon.store.query_one("SELECT COUNT(*) FROM notify_outbox WHERE state='pending'")[0]
        print(f"drain: {waiting} notifications pending while the receiver was down "
              f"(max_concurrency {concurrency})")
        print(f"  receiver back -> {rx.count} delivered in {took:.2f} s: {rx.count / took:.0f} notifications/s; "
              f"{left} left pending, {rx.count - pending} duplicates")
        await daemon.stop()
        await rx.runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rate", type=int, default=100)
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--pending", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--skip-drain", action="store_true")
    args = p.parse_args()
    configure_logging("error", "console")
    if not args.skip_latency:
        asyncio.run(latency(args.rate, args.seconds))
    if not args.skip_drain:
        asyncio.run(drain(args.pending, args.concurrency))


if __name__ == "__main__":
    main()
