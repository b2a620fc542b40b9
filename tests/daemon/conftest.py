"""Fixtures for the daemon tests."""

import aiohttp
import pytest
from daemon_helpers import T0, Client, write_config

from daemon.app import Daemon
from daemon.clock import VirtualClock
from daemon.config import load_config


@pytest.fixture
async def start_daemon(tmp_path):
    """`await start_daemon(config_text)`: a daemon on a virtual clock at T0, on a free port."""
    started: list[tuple[Daemon, aiohttp.ClientSession]] = []

    async def start(config_text: str = "", clock: VirtualClock | None = None) -> Client:
        daemon = Daemon(
            load_config(write_config(tmp_path, config_text)), clock=clock or VirtualClock(T0)
        )
        await daemon.start("127.0.0.1:0")
        session = aiohttp.ClientSession()
        started.append((daemon, session))
        return Client(daemon, session)

    yield start
    for daemon, session in started:
        await session.close()
        await daemon.stop()
