"""A real daemon on a loopback port and an HTTP client for it (detector tests)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime

import aiohttp

from daemon.app import Daemon
from daemon.config import load_config


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_config(tmp_path, body: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(f"data_dir: data\n{body}")
    return str(path)


class Client:
    def __init__(self, daemon: Daemon, session: aiohttp.ClientSession) -> None:
        host, port = daemon.bound
        self.base = f"http://{host}:{port}"
        self.session = session
        self.daemon = daemon

    async def call(self, method: str, path: str, body=None) -> tuple[int, object]:
        async with self.session.request(method, self.base + path, json=body) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except json.JSONDecodeError:
                return resp.status, text

    async def post_samples(self, samples: list[dict]) -> None:
        status, body = await self.call("POST", "/api/v1/samples", samples)
        assert status == 200, body

    async def metric(self, name: str) -> float:
        """The sum of every series of `name` in /metrics."""
        _, text = await self.call("GET", "/metrics")
        pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", re.M)
        return sum(float(v) for v in pattern.findall(text))

    async def until(self, predicate, what: str, timeout: float = 30.0):
        """Poll `predicate()` (a coroutine function) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            got = await predicate()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: never happened within {timeout}s")
            await asyncio.sleep(0.05)


async def start_daemon(config_path: str, started: list) -> Client:
    daemon = Daemon(load_config(config_path))
    await daemon.start("127.0.0.1:0")
    session = aiohttp.ClientSession()
    started.append((daemon, session))
    return Client(daemon, session)
