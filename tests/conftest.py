"""Fixtures shared by every package's tests."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from harness import T0, Client

from daemon.app import Daemon
from daemon.clock import VirtualClock
from daemon.config import load_config


@pytest.fixture
async def daemon_for():
    """`await daemon_for(config_path, clock=None, token=None, client=Client)`: a daemon
    on a free loopback port (on a virtual clock at T0 unless given one); stopped after
    the test."""
    started: list[Client] = []

    async def start(config_path: str, clock: Any = None, token: str | None = None,
                    client: type[Client] = Client) -> Client:
        daemon = Daemon(load_config(config_path), clock=clock or VirtualClock(T0))
        await daemon.start("127.0.0.1:0")
        c = client(daemon, aiohttp.ClientSession(), token)
        started.append(c)
        return c

    yield start
    for c in started:
        await c.stop()
