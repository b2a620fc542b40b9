"""A real daemon in the test's event loop, behind real HTTP on loopback, and a client for it.

Shared by the package tests (`daemon_for` in tests/conftest.py). The daemon runs
on a virtual clock at T0 unless a test passes its own clock.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from daemon.app import Daemon

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Client:
    """Real HTTP to an in-process daemon; an optional bearer token on every call."""

    def __init__(self, daemon: Daemon, session: aiohttp.ClientSession, token: str | None = None) -> None:
        host, port = daemon.bound
        self.base = f"http://{host}:{port}"
        self.session = session
        self.daemon = daemon
        self.token = token
        self.stopped = False

    async def stop(self) -> None:
        """Stop the daemon (as SIGTERM would); its store stays on disk."""
        if not self.stopped:
            self.stopped = True
            await self.session.close()
            await self.daemon.stop()

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, JSON body or text)."""
        h = dict(headers or {})
        tok = token if token is not None else self.token
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        async with self.session.request(method, self.base + path, json=body, headers=h) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except json.JSONDecodeError:
                return resp.status, text

    async def post_alerts(self, *alerts: dict[str, Any]) -> None:
        status, body = await self.call("POST", "/api/v1/alerts", list(alerts))
        assert status == 200, body

    async def until(self, predicate: Callable[..., Any], what: str, timeout: float = 30.0) -> Any:
        """Poll until `predicate` holds and return what made it hold: a coroutine function
        is awaited as is; a plain function gets the JSON of `GET what`."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            if inspect.iscoroutinefunction(predicate):
                got = await predicate()
                if got:
                    return got
            else:
                _, last = await self.call("GET", what)
                if predicate(last):
                    return last
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: never held within {timeout}s; last {last}")
            await asyncio.sleep(0.01)

    async def incidents(self, n: int, state: str = "all") -> list:
        body = await self.until(lambda b: len(b["incidents"]) >= n, f"/api/v1/incidents?state={state}")
        return body["incidents"]

    async def metric(self, name: str) -> float:
        """The sum of every series of `name` in /metrics."""
        _, text = await self.call("GET", "/metrics")
        pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", re.M)
        return sum(float(v) for v in pattern.findall(text))


def write_config(tmp_path, body: str = "") -> str:
    """`config.yaml` in `tmp_path`, the store in `tmp_path/data`."""
    path = tmp_path / "config.yaml"
    path.write_text(f"data_dir: data\n{body}")
    return str(path)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
