"""Helpers for the daemon tests: payload builders, a client for an in-process
daemon on a virtual clock behind real HTTP on loopback, and a real
`incidentd run` subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from harness import free_port  # noqa: F401  (re-exported to the daemon tests)

from daemon.app import Daemon
from daemon.clock import VirtualClock
from daemon.timefmt import format_rfc3339

REPO = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def ts(t: float) -> str:
    return format_rfc3339(t, millis=True)


def v2_alert(
    labels: dict[str, str], starts: float = T0, ends: float | None = None, **annotations: str
) -> dict[str, Any]:
    """An alert as Prometheus posts it to Alertmanager's `/api/v2/alerts`."""
    a: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations,
        "startsAt": ts(starts),
        "generatorURL": "http://prometheus:9090/graph",
    }
    if ends is not None:
        a["endsAt"] = ts(ends)
    return a


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    """An Alertmanager webhook (version 4) carrying `alerts` (each with `status`)."""
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "receiver": "incidentd",
        "status": status,
        "alerts": list(alerts),
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
    }


def wh_alert(
    labels: dict[str, str], status: str = "firing", starts: float = T0, ends: float | None = None
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": labels,
        "annotations": {},
        "startsAt": ts(starts),
        "endsAt": ts(ends) if ends is not None else "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": "",
    }


class Client:
    """Real HTTP to an in-process daemon; `settle()` waits for the pipeline worker."""

    def __init__(self, daemon: Daemon, session: aiohttp.ClientSession) -> None:
        host, port = daemon.bound
        self.base = f"http://{host}:{port}"
        self.session = session
        self.daemon = daemon
        self.clock: VirtualClock = daemon.clock  # type: ignore[assignment]

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        kwargs: dict[str, Any] = {"headers": headers}
        if data is not None:
            kwargs["data"] = data
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.base + path, **kwargs) as resp:
            text = await resp.text()
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = text
            return resp.status, parsed, resp.headers

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        status, parsed, _ = await self.call("POST", path, body)
        return status, parsed

    async def settle(self) -> None:
        """Wait until everything accepted is processed, then fire due timers."""
        await asyncio.wait_for(self.daemon.wait_idle(), 10)
        await self.daemon.fire_timers()

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.settle()

    async def incidents(self, state: str = "all") -> list[dict[str, Any]]:
        await self.settle()
        status, body, _ = await self.call("GET", f"/api/v1/incidents?state={state}")
        assert status == 200, body
        return body["incidents"]

    async def incident(self, iid: str) -> dict[str, Any]:
        await self.settle()
        status, body, _ = await self.call("GET", f"/api/v1/incidents/{iid}")
        assert status == 200, body
        return body


# -- a real `incidentd run` process -------------------------------------------------


def write_config(tmp_path: Path, text: str = "") -> str:
    """A config file in `tmp_path` with the store in `tmp_path/data`."""
    path = tmp_path / "config.yaml"
    path.write_text("data_dir: data\n" + text)
    return str(path)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class DaemonProcess:
    """`python -m daemon.cli run` on a free loopback port, stopped by PID."""

    def __init__(self, data_dir: Path, config: str | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.config = config
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log = data_dir / "daemon.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> DaemonProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "daemon.cli",
            "run",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
        ]
        if self.config:
            cmd += ["--config", self.config]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"incidentd exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                if http_get(self.base + "/readyz", 0.5)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise AssertionError(
            f"incidentd not ready within {timeout}s: {self.log.read_text()[-2000:]}"
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=20)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
