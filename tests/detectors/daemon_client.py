"""The shared daemon client with what the detector tests add: posting samples,
and a daemon on the wall clock (samples carry real timestamps)."""

from __future__ import annotations

from datetime import UTC, datetime

import harness
from harness import write_config  # noqa: F401 - re-exported for the detector tests

from daemon.clock import SystemClock


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Client(harness.Client):
    async def post_samples(self, samples: list[dict]) -> None:
        status, body = await self.call("POST", "/api/v1/samples", samples)
        assert status == 200, body


async def start_daemon(daemon_for, config_path: str) -> Client:
    """A daemon on the system clock, stopped by the `daemon_for` fixture after the test."""
    return await daemon_for(config_path, clock=SystemClock(), client=Client)
