"""Silence updates and expiries behave as in the real Alertmanager.

The same requests go to Debian's `prometheus-alertmanager` (API v2) and to
incidentd, both on the wall clock, and what each then lists is compared.
Times are sent relative to the moment of the request and read back the same
way, so both sides can be compared although their clocks read a few
milliseconds apart.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import aiohttp
import pytest
from harness import free_port

from daemon.clock import SystemClock
from daemon.timefmt import format_rfc3339, parse_rfc3339

ALERTMANAGER = shutil.which("prometheus-alertmanager")
pytestmark = pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="needs Debian's prometheus-alertmanager (apt-get install prometheus-alertmanager; "
    ".ci/run installs it)",
)

HOUR = 3600.0
# named offsets from the time of the request; "now" is what a clamped start reads as
OFFSETS = {"-1d": -24 * HOUR, "+1h": HOUR, "+2h": 2 * HOUR, "+1d": 24 * HOUR, "+2d": 48 * HOUR}


def _body(matcher: str, starts_at: float, ends_at: float, sid: str | None = None) -> dict:
    """A silence in the API v2 form, on `team=<matcher>`."""
    body = {
        "matchers": [{"name": "team", "value": matcher, "isRegex": False}],
        "startsAt": format_rfc3339(starts_at, millis=True),
        "endsAt": format_rfc3339(ends_at, millis=True),
        "createdBy": "jane",
        "comment": "maintenance",
    }
    if sid is not None:
        body["id"] = sid
    return body


class Side:
    """One silence API: Alertmanager's or incidentd's, with its paths."""

    def __init__(self, session: aiohttp.ClientSession, base: str, collection: str, item: str) -> None:
        self.session, self.base, self.collection, self.item = session, base, collection, item
        self.names: dict[str, str] = {}  # silence id -> the test's name for it
        self.sent_at: dict[str, float] = {}  # silence id -> when the test last wrote it

    async def send(self, body: dict) -> tuple[int, str | None]:
        """POST a silence; (status, the id that holds it now, None when refused)."""
        async with self.session.post(self.base + self.collection, json=body) as resp:
            if resp.status != 200:
                return resp.status, None
            return resp.status, (await resp.json(content_type=None))["silenceID"]

    async def post(self, name: str | None, matcher: str, starts: str, ends: str) -> tuple[int, str | None]:
        """Create (name None) or update the silence the test calls `name`; returns
        (status, the test's name for the silence that holds the request now)."""
        now = time.time()
        sid = self._id(name) if name is not None else None
        status, got = await self.send(_body(matcher, now + OFFSETS[starts], now + OFFSETS[ends], sid))
        if got is None:
            return status, None
        self.sent_at[got] = now
        kept = got == sid
        self.names.setdefault(got, name if kept else f"{name or 'new'}/{len(self.names)}")
        return status, self.names[got]

    async def delete(self, name: str) -> int:
        async with self.session.delete(self.base + self.item + self._id(name)) as resp:
            return resp.status

    async def listing(self) -> list[tuple[str, str, str, str, str]]:
        """(name, state, matcher, start, end) per silence, times as named offsets
        from when the test last wrote the silence, or "now" for a time a write
        or an expiry set (within a few seconds of the request)."""
        async with self.session.get(self.base + self.collection) as resp:
            assert resp.status == 200
            silences = await resp.json()
        rows = []
        for s in silences:
            sent = self.sent_at[s["id"]]
            rows.append((self.names.get(s["id"], "unexpected"), s["status"]["state"], s["matchers"][0]["value"],
                         _named(parse_rfc3339(s["startsAt"]) - sent),
                         _named(parse_rfc3339(s["endsAt"]) - sent)))
        return sorted(rows)

    def _id(self, name: str) -> str:
        return next(sid for sid, n in self.names.items() if n == name)


def _named(offset: float) -> str:
    for name, value in OFFSETS.items():
        if abs(offset - value) < 60:
            return name
    return "now" if abs(offset) < 60 else f"{offset:+.0f}s"


async def _scenario(side: Side) -> list:
    """A sequence of creations, updates and expiries; what each step answers and
    what the API lists at the end."""
    seen: list = []

    async def step(what: str, coro) -> None:
        seen.append((what, await coro))

    await step("new, started in the past", side.post(None, "db", "-1d", "+1d"))
    active = seen[-1][1][1]
    await step("new, pending", side.post(None, "web", "+1h", "+1d"))
    pending = seen[-1][1][1]
    await step("new, pending, to delete", side.post(None, "cache", "+1h", "+1d"))
    doomed = seen[-1][1][1]
    await step("new, active, matchers to change", side.post(None, "queue", "-1d", "+1d"))
    rematched = seen[-1][1][1]
    await step("new, pending, start to move into the past", side.post(None, "mail", "+1h", "+1d"))
    backdated = seen[-1][1][1]
    seen.append(("listing after creation", await side.listing()))

    # the active silence started "now" when it was created; a later write must
    # send that start back for an update in place
    async with side.session.get(side.base + side.item + side._id(active)) as resp:
        start = parse_rfc3339((await resp.json())["startsAt"])
    _, sid = await side.send(_body("db", start, time.time() + 2 * 24 * HOUR, side._id(active)))
    side.sent_at[sid] = side.sent_at[side._id(active)]
    kept = sid == side._id(active)
    seen.append(("active: end moved, same start", kept))

    await step("active: start moved", side.post(active, "db", "+1h", "+2d"))
    await step("pending: both times moved", side.post(pending, "web", "+2h", "+2d"))
    await step("pending: start moved into the past", side.post(backdated, "mail", "-1d", "+1d"))
    await step("active: other matchers", side.post(rematched, "queue2", "-1d", "+1d"))
    await step("delete pending", side.delete(doomed))
    await step("write to an expired one", side.post(doomed, "cache", "+1h", "+1d"))
    now = time.time()
    await step("unknown id", side.send(_body("db", now, now + HOUR, "3c9a2d4e-0000-4000-8000-000000000000")))
    await step("end in the past", side.post(None, "db", "-1d", "-1d"))
    seen.append(("listing at the end", await side.listing()))
    return seen


async def test_silence_updates_and_expiries_match_alertmanager(tmp_path, daemon_for):
    port = free_port()
    (tmp_path / "alertmanager.yml").write_text("route:\n  receiver: none\nreceivers:\n  - name: none\n")
    log = open(tmp_path / "alertmanager.log", "wb")
    am = subprocess.Popen(
        [ALERTMANAGER, "--config.file=alertmanager.yml", "--storage.path=am-data",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    (tmp_path / "config.yaml").write_text("data_dir: data\n")
    incidentd = await daemon_for(str(tmp_path / "config.yaml"), clock=SystemClock())
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    async with session.get(base + "/-/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            expected = await _scenario(Side(session, base, "/api/v2/silences", "/api/v2/silence/"))
            got = await _scenario(Side(session, incidentd.base, "/api/v1/silences", "/api/v1/silences/"))
    finally:
        am.terminate()
        am.wait(timeout=10)
        log.close()
    for (what, exp), (_, mine) in zip(expected, got, strict=True):
        assert mine == exp, what
