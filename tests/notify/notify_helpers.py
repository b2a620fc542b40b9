"""Helpers for the notification tests: loopback receivers that record what they
get (and can be told to fail), payloads, and the outbox as stored."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp import web
from harness import free_port  # noqa: F401  (re-exported to the notify tests)

from daemon.app import Daemon

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Sink:
    """An HTTP receiver on loopback. `script` is a list of behaviours for the next
    requests ("ok", 500, "timeout", "reset", "redirect": a 301 to a page that takes
    GETs, counted in `gets`; "slow": ok after `slow_for` seconds); after it runs out
    every request is ok. A status answer
    repeats the request's path, as many servers' error pages do."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []  # bodies answered 2xx, in order
        self.attempts = 0
        self.gets = 0
        self.script: list[Any] = []
        self.slow_for = 0.5
        self.port = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self.arrived = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.attempts += 1
        action = self.script.pop(0) if self.script else "ok"
        if action == "timeout":  # the sender gives up first; this answer is never seen
            await asyncio.sleep(5)
            return web.Response(status=504)
        if action == "redirect":
            raise web.HTTPMovedPermanently("/moved/t0k3n-in-the-path")
        if isinstance(action, int):
            return web.Response(status=action, text=f"receiver says no to POST {request.path_qs}")
        if action == "slow":
            await asyncio.sleep(self.slow_for)
        self.received.append({"body": body, "headers": dict(request.headers)})
        self.arrived.set()
        return web.json_response({"status": "ok"})

    async def _get(self, request: web.Request) -> web.StreamResponse:
        self.gets += 1
        return web.json_response({"status": "ok"})

    async def start(self, port: int = 0) -> Sink:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        app.router.add_get("/{tail:.*}", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.received) < n:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"expected {n} notifications, got {len(self.received)}: {self.received}")
            await asyncio.sleep(0.01)
        return self.received


def write_config(tmp_path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\n{text}")
    return str(path)


def alert(name: str = "HighErrorRate", **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, **labels},
            "annotations": {"summary": f"{name} on {labels.get('service', 'something')}"},
            "startsAt": "2026-01-01T00:00:00Z"}


def outbox_rows(daemon: Daemon) -> list[tuple]:
    return daemon.store.query("SELECT id, incident_id, receiver, reason, state, attempts FROM notify_outbox ORDER BY id")


PYTHON = os.environ.get("PYTHON_FOR_TESTS") or __import__("sys").executable
