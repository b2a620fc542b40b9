"""The durable outbox and its delivery worker.

Rows are written by the policy in the same transaction as the incident
change that causes them (`drain_writes`). The `Deliverer` runs only in the
daemon: it reads committed pending rows and sends them, one lane per
(incident, receiver) so that one incident's notifications reach a receiver
in order, while a per-receiver semaphore bounds the attempts in flight and a
down receiver only holds up its own lanes. Each attempt's outcome is
committed (row state, incident timeline) before the lane moves on; a restart
resumes every row still pending, and a stop (SIGTERM) first lets the attempts
in flight finish and commit. Delivery is at least once: a crash between
a receiver's answer and the commit of the outcome sends that message again
(receivers get `Idempotency-Key` / the notification id to deduplicate).

Retries back off exponentially with full jitter, up to `max_backoff`; when
any attempt to a receiver succeeds, its lanes waiting in backoff retry at
once, so a recovered receiver drains without waiting out the backoff.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Counter, Gauge, Histogram

from daemon.notify.config import NotifySettings
from daemon.notify.receivers import DeliveryError, Receiver, make_receiver
from daemon.store import Store, dumps, register_schema

if TYPE_CHECKING:
    import aiohttp

log = structlog.get_logger("incidentd.notify")

SCHEMA = """
CREATE TABLE IF NOT EXISTS notify_outbox (
    id INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL,
    receiver TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,            -- pending | delivered | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at REAL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notify_outbox_by_state_id ON notify_outbox (state, id);
CREATE INDEX IF NOT EXISTS notify_outbox_by_incident ON notify_outbox (incident_id, id);
CREATE TABLE IF NOT EXISTS notify_state (incident_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
"""
register_schema("notify", SCHEMA)

STOP_GRACE = 5.0  # seconds a stop waits for attempts in flight (container runtimes allow 10)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


def backoff(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max, initial * 2^(attempt-1))]."""
    cap = min(maximum, initial * (2 ** min(attempt - 1, 30)))
    return rng.uniform(0, cap)


@dataclass(slots=True)
class Pending:
    id: int
    incident_id: str
    receiver: str
    attempts: int
    created_at: float
    message: dict[str, Any]


class _ReceiverLanes:
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.semaphore = asyncio.Semaphore(receiver.config.max_concurrency)
        self.recovered = asyncio.Event()
        self.lanes: dict[str, deque[Pending]] = {}
        self.removed = False  # a reload took the receiver out of the config


class Deliverer:
    """The delivery worker: a daemon part with `start()`/`stop()` (see the module docstring)."""

    def __init__(self, settings: NotifySettings, store: Store, clock: Any, registry: Any = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.rng = random.Random()
        self._receivers: dict[str, _ReceiverLanes] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task] = {}
        self._session: aiohttp.ClientSession | None = None
        self._loop_task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._seen = 0  # highest outbox id taken into a lane
        self._expected = 0  # highest id the policy has written (maybe not committed yet)
        self._stopping = False
        self.attempts = Counter("incidentd_notification_attempts_total",
                                "Delivery attempts, by receiver and outcome (delivered, failed, given_up).",
                                ["receiver", "outcome"], registry=registry)
        self.latency = Histogram("incidentd_notification_latency_seconds",
                                 "Time from a notification being written to it being delivered.",
                                 ["receiver"], buckets=_LATENCY_BUCKETS, registry=registry)
        self.attempt_seconds = Histogram("incidentd_notification_attempt_seconds",
                                         "Duration of one delivery attempt.", ["receiver"],
                                         buckets=_LATENCY_BUCKETS, registry=registry)
        self.pending = Gauge("incidentd_notifications_pending",
                             "Notifications in the outbox not yet delivered or given up, by receiver.",
                             ["receiver"], registry=registry)
        self._count: dict[str, int] = {}
        self._orphans: dict[str, list[Pending]] = {}  # rows for receivers not in the config

    # -- lifecycle ----------------------------------------------------------------

    def expect(self, top_id: int) -> None:
        """The policy wrote rows up to `top_id`; they are committed soon."""
        self._expected = max(self._expected, top_id)
        self._wake.set()

    async def start(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession()
        for name, rc in self.settings.receivers.items():
            self._receivers[name] = _ReceiverLanes(make_receiver(rc, self._session))
            self.pending.labels(name).set(0)
        self._take_new()
        if self._seen:
            log.info("resuming undelivered notifications", pending=sum(self._count.values()))
        self._loop_task = asyncio.create_task(self._loop(), name="notify-deliverer")

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop delivering. Attempts in flight get up to `grace` seconds to finish and
        have their outcome committed, so that the next start does not send them again;
        nothing new is attempted, and lanes waiting out a backoff stop at once. What is
        left stays pending for the next start."""
        self._stopping = True
        self._wake.set()
        for lanes in self._receivers.values():
            lanes.recovered.set()  # ends the backoff waits
        lanes_running = list(self._tasks.values())
        if lanes_running:
            await asyncio.wait(lanes_running, timeout=grace)
        tasks = [t for t in (self._loop_task, *self._tasks.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def drained(self, timeout: float = 30.0) -> None:
        """Wait until nothing is pending (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while self._tasks or self._seen < self._expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"outbox not drained: {sum(self._count.values())} pending")
            await asyncio.sleep(0.005)

    # -- reading the outbox ---------------------------------------------------------

    def _take_new(self) -> int:
        rows = self.store.query(
            "SELECT id, incident_id, receiver, attempts, created_at, message FROM notify_outbox"
            " WHERE state='pending' AND id > ? ORDER BY id", (self._seen,))
        for rid, iid, receiver, attempts, created_at, message in rows:
            self._seen = max(self._seen, rid)
            self._enqueue(Pending(rid, iid, receiver, attempts, created_at, json.loads(message)))
        for name, n in self._count.items():
            self.pending.labels(name).set(n)
        self._expected = max(self._expected, self._seen)
        return len(rows)

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), 1.0)
            except TimeoutError:
                pass
            self._wake.clear()
            self._take_new()
            # rows the policy wrote may still be on their way to the disk: look again shortly
            spins = 0
            while self._seen < self._expected and spins < 200 and not self._stopping:
                await asyncio.sleep(0.002)
                self._take_new()
                spins += 1

    # -- delivering ---------------------------------------------------------------

    def _enqueue(self, p: Pending) -> None:
        lanes = self._receivers.get(p.receiver)
        if lanes is None or lanes.removed:  # not in the config (now): kept until it is again
            if p.receiver not in self._orphans:
                log.warning("notifications for a receiver not in the config stay pending", receiver=p.receiver)
            self._orphans.setdefault(p.receiver, []).append(p)
            return
        lanes.lanes.setdefault(p.incident_id, deque()).append(p)
        self._count[p.receiver] = self._count.get(p.receiver, 0) + 1
        key = (p.receiver, p.incident_id)
        if key not in self._tasks:
            self._tasks[key] = asyncio.get_running_loop().create_task(self._lane(lanes, p.incident_id))

    def receivers_changed(self) -> None:
        """After a reload: rows kept for a receiver that is back go out; a receiver that
        left stops sending (its rows stay pending, and go out if it comes back)."""
        for name, lanes in self._receivers.items():
            lanes.removed = name not in self.settings.receivers
        for name in [n for n in self._orphans if n in self._receivers and not self._receivers[n].removed]:
            for p in self._orphans.pop(name):
                self._enqueue(p)
            self.pending.labels(name).set(self._count.get(name, 0))

    async def _lane(self, lanes: _ReceiverLanes, iid: str) -> None:
        queue = lanes.lanes[iid]
        key = (lanes.receiver.name, iid)
        try:
            while queue and not self._stopping:
                if lanes.removed:
                    name = lanes.receiver.name
                    self._count[name] -= len(queue)
                    self.pending.labels(name).set(self._count[name])
                    self._orphans.setdefault(name, []).extend(queue)
                    queue.clear()
                    break
                p = queue[0]
                done = await self._attempt(lanes, p)
                if done is None:
                    break  # stopping
                if done:
                    queue.popleft()
                    self._count[p.receiver] -= 1
                    self.pending.labels(p.receiver).set(self._count[p.receiver])
                    continue
                delay = backoff(p.attempts, self.settings.retry.initial_backoff,
                                self.settings.retry.max_backoff, self.rng)
                event = lanes.recovered
                try:
                    await asyncio.wait_for(event.wait(), delay)
                except TimeoutError:
                    pass
        finally:
            self._tasks.pop(key, None)
            if not queue:
                lanes.lanes.pop(iid, None)

    async def _attempt(self, lanes: _ReceiverLanes, p: Pending) -> bool | None:
        """One attempt; True when the row is finished (delivered or given up), None when
        the deliverer stopped before it began."""
        receiver = lanes.receiver
        retry = self.settings.retry
        async with lanes.semaphore:
            if self._stopping:
                return None
            started = time.monotonic()
            try:
                await receiver.send(p.message)
                error: DeliveryError | None = None
            except DeliveryError as exc:
                error = exc
            except Exception as exc:  # a bug in a receiver must not kill the lane
                log.exception("receiver failed unexpectedly", receiver=receiver.name)
                error = DeliveryError(f"{type(exc).__name__}: {exc}")
        took = time.monotonic() - started
        self.attempt_seconds.labels(receiver.name).observe(took)
        p.attempts += 1
        now = self.clock.now()
        reason = p.message.get("reason", "")
        if error is None:
            outcome, state = "delivered", "delivered"
            text = f"notified {receiver.name} ({reason}), attempt {p.attempts}, {took * 1000:.0f} ms"
        elif not error.retryable or p.attempts >= retry.max_attempts:
            outcome, state = "given_up", "failed"
            text = f"notification to {receiver.name} ({reason}) given up after attempt {p.attempts}: {error}"
        else:
            outcome, state = "failed", "pending"
            text = f"notification to {receiver.name} ({reason}) failed, attempt {p.attempts}: {error}"
        data = dumps({"notification": p.id, "receiver": receiver.name, "reason": reason,
                      "attempt": p.attempts, "outcome": outcome, "error": str(error) if error else None})

        def commit(conn: Any) -> None:
            conn.execute("UPDATE notify_outbox SET state=?, attempts=?, last_error=?, delivered_at=? WHERE id=?",
                         (state, p.attempts, str(error) if error else None,
                          now if error is None else None, p.id))
            conn.execute("INSERT INTO timeline (incident_id, at, kind, actor, text, data) VALUES (?,?,?,?,?,?)",
                         (p.incident_id, now, "notification", "incidentd", text, data))

        await self.store.write(commit)
        self.attempts.labels(receiver.name, outcome).inc()
        if error is None:
            self.latency.labels(receiver.name).observe(max(0.0, now - p.created_at))
            if not lanes.recovered.is_set():
                lanes.recovered.set()  # wake this receiver's lanes waiting in backoff
                lanes.recovered = asyncio.Event()
        else:
            log.warning("notification attempt failed", receiver=receiver.name, incident_id=p.incident_id,
                        attempt=p.attempts, error=str(error), outcome=outcome)
        return state != "pending"
