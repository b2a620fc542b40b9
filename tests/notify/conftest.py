"""Fixtures for the notification tests."""

from __future__ import annotations

import pytest
from notify_helpers import Sink


@pytest.fixture
async def sink():
    sinks: list[Sink] = []

    async def make(port: int = 0) -> Sink:
        s = await Sink().start(port)
        sinks.append(s)
        return s

    yield make
    for s in sinks:
        await s.stop()
