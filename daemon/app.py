"""The daemon process: store, durable inbox, pipeline worker, timers and HTTP server.

Ingest commits every accepted request to the inbox before answering (group
commit: the store's writer thread commits all requests queued at that moment
together). The worker takes what was committed, runs it through the pipeline
and commits the result in the same transaction that deletes the processed
rows from the inbox, so a crash at any point loses nothing and processes
nothing twice. On start, whatever the inbox
still holds is processed first.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from daemon import checks, heap
from daemon.build import Components, build_pipeline, load_state
from daemon.clock import SystemClock
from daemon.config import Config, ConfigError, load_config
from daemon.ingest import parse_alert_list, parse_samples, parse_webhook
from daemon.metrics import Metrics
from daemon.store import Store, Writes

log = structlog.get_logger("incidentd.daemon")

STORE_FILE = "incidentd.sqlite3"
BATCH_LIMIT = 4096  # alerts per pipeline batch: keeps the event loop responsive


class InboxFull(Exception):
    pass


@dataclass(slots=True)
class InboxItem:
    row_id: int
    kind: str  # alerts | samples | change
    items: list[Any]
    received_at: float
    accepted_mono: float
    suspect: bool = False  # in a batch the pipeline failed on before: processed alone


def _insert_inbox_row(now: float, source: str, kind: str, n: int, body: bytes) -> Callable[[sqlite3.Connection], int]:
    def insert(conn: sqlite3.Connection) -> int:
        # compressed here, in the store's writer thread (zlib lets go of the GIL):
        # request bodies are repetitive JSON, and writing a fifth of the pages to the
        # WAL (then freeing them once processed) is what the store spends its time on
        packed = zlib.compress(body, 1)
        return conn.execute(
            "INSERT INTO inbox (received_at, source, kind, count, body) VALUES (?,?,?,?,?)",
            (now, source, kind, n, packed if len(packed) < len(body) else body),
        ).lastrowid or 0  # (set by an INSERT)

    return insert


def decode_inbox_row(kind: str, source: str, body: bytes, received_at: float,
                     resolve_timeout: float) -> list[Any]:
    """Parse an inbox row again (after a restart) exactly as ingest parsed it."""
    if body[:1] == b"x":  # a zlib stream; JSON text never starts with "x"
        body = zlib.decompress(body)
    data = json.loads(body)
    if kind == "alerts":
        if source == "alertmanager":
            return parse_webhook(data, now=received_at, resolve_timeout=resolve_timeout)
        return parse_alert_list(data, now=received_at, resolve_timeout=resolve_timeout, source=source)
    if kind == "samples":
        return parse_samples(data)
    return [data]


class Daemon:
    def __init__(self, config: Config, clock: SystemClock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = Metrics(process=True)
        os.makedirs(config.data_dir, exist_ok=True)
        self.store = Store(os.path.join(config.data_dir, STORE_FILE), fsync=config.inbox.fsync,
                           on_commit=self.metrics.inbox_commits.inc)
        self.components: Components = build_pipeline(config, self.clock, self.metrics, self.store)
        self.pipeline = self.components.pipeline
        self.incidents = self.components.incidents
        self._queue: deque[InboxItem] = deque()
        self._depth = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._runner: web.AppRunner | None = None
        self._ready = False
        self._stopping = False
        self._reload_lock = asyncio.Lock()
        self.bound: tuple[str, int] | None = None

    # -- inbox ------------------------------------------------------------------

    @property
    def inbox_depth(self) -> int:
        return self._depth

    async def accept(self, kind: str, source: str, body: bytes, items: list[Any]) -> None:
        """Commit a validated request to the inbox; returns once durable."""
        n = len(items)
        if self._depth + n > self.config.inbox.max_depth and self._depth > 0:
            raise InboxFull()
        now = self.clock.now()
        self._depth += n  # reserve room before waiting on the commit
        try:
            row_id = await self.store.write(_insert_inbox_row(now, source, kind, n, body))
        except BaseException:
            self._depth -= n
            raise
        self._queue.append(InboxItem(row_id, kind, items, now, time.monotonic()))
        self.metrics.inbox_depth.set(self._depth)
        self._wake.set()

    def _recover_inbox(self) -> None:
        """Queue every inbox row: a row is deleted in the same transaction that
        commits what processing it changed, so whatever is left was not processed."""
        rows = self.store.query("SELECT id, received_at, source, kind, body FROM inbox ORDER BY id")
        suspects = {r for (r,) in self.store.query("SELECT row_id FROM inbox_suspect")}
        rt = self.config.incidents.resolve_timeout
        for row_id, received_at, source, kind, body in rows:
            try:
                items = decode_inbox_row(kind, source, body, received_at, rt)
            except Exception:  # stored only after validation; never expected
                log.error("unreadable inbox row skipped", row=row_id)
                continue
            self._queue.append(InboxItem(row_id, kind, items, received_at, time.monotonic(), row_id in suspects))
            self._depth += len(items)
        if rows:
            log.info("recovering unprocessed inbox rows", rows=len(rows), items=self._depth)
        [(dead,)] = self.store.query("SELECT count(*) FROM inbox_dead")
        if dead:
            log.warning("inbox rows the pipeline failed on are set aside in the store's inbox_dead table",
                        rows=dead)

    # -- worker -----------------------------------------------------------------

    async def _worker(self) -> None:
        while not self._stopping:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch: list[InboxItem] = []
            count = 0
            while self._queue and count < BATCH_LIMIT:
                if batch and self._queue[0].suspect:
                    break
                item = self._queue.popleft()
                batch.append(item)
                count += len(item.items)
                if item.suspect:
                    break  # alone: if it fails again, it is the one
            now = self.clock.now()
            try:
                for item in batch:
                    if item.kind == "alerts":
                        self.pipeline.process_alerts(item.items, now)
                    elif item.kind == "samples":
                        self.pipeline.process_samples(item.items, now)
                    elif item.kind == "change":
                        for change in item.items:
                            self.pipeline.process_change(change, now)
                writes = Writes()
                self.pipeline.drain_writes(writes)  # what the batch changed, serialised
            except Exception as exc:
                log.exception("pipeline failed on a batch; its inbox rows stay for the next start",
                              first_row=batch[0].row_id)
                await self._set_aside(batch, exc)
                raise
            # the processed rows go in the same transaction as what processing them
            # changed: a crash before the commit processes them again, after it never
            writes.extend("DELETE FROM inbox WHERE id = ?", [(item.row_id,) for item in batch])
            if batch[0].suspect:
                writes.add("DELETE FROM inbox_suspect WHERE row_id = ?", (batch[0].row_id,))
            await self.store.apply(writes)
            self._depth -= count
            self.metrics.inbox_depth.set(self._depth)
            if self._depth == 0 and not self._queue:
                self._idle.set()
            done = time.monotonic()
            for item in batch:
                if item.kind == "alerts":
                    self.metrics.pipeline_latency.observe(done - item.accepted_mono)
            await asyncio.sleep(0)

    async def _set_aside(self, batch: list[InboxItem], exc: Exception) -> None:
        """After the pipeline failed on `batch` (the worker then stops and the daemon
        exits for a supervisor to restart): its rows are marked to be processed one by
        one at the next start, and a row that already failed on its own moves to
        `inbox_dead`. A row the pipeline cannot take costs two restarts, not all of them."""
        writes = Writes()
        if len(batch) == 1 and batch[0].suspect:
            row = batch[0].row_id
            writes.add("INSERT INTO inbox_dead (id, received_at, source, kind, count, body, failed_at, error)"
                       " SELECT id, received_at, source, kind, count, body, ?, ? FROM inbox WHERE id = ?",
                       (self.clock.now(), f"{type(exc).__name__}: {exc}"[:2000], row))
            writes.add("DELETE FROM inbox WHERE id = ?", (row,))
            writes.add("DELETE FROM inbox_suspect WHERE row_id = ?", (row,))
            log.error("inbox row moved to inbox_dead: the pipeline fails on it alone", row=row)
        else:
            writes.extend("INSERT OR IGNORE INTO inbox_suspect (row_id) VALUES (?)", [(i.row_id,) for i in batch])
        try:
            await self.store.apply(writes)
        except Exception:
            log.exception("could not set the failed inbox rows aside")

    async def _timers(self) -> None:
        while not self._stopping:
            due = self.pipeline.next_deadline()
            now = self.clock.now()
            wait = 1.0 if due is None else min(1.0, max(0.0, due - now))
            await asyncio.sleep(wait)
            await self.fire_timers()

    async def fire_timers(self) -> None:
        """Fire the pipeline's timers that are due on the daemon's clock, and commit
        what they changed (the timer task calls it; tests on a virtual clock too)."""
        now = self.clock.now()
        due = self.pipeline.next_deadline()
        if due is not None and due <= now:
            self.pipeline.tick(now)
            await self.flush()

    async def wait_idle(self) -> None:
        """Return once everything accepted so far is processed and committed."""
        while self._depth > 0 or self._queue:
            self._idle.clear()
            await self._idle.wait()

    async def flush(self) -> None:
        """Commit what the pipeline changed (API commands, timers)."""
        writes = Writes()
        self.pipeline.drain_writes(writes)
        await self.store.apply(writes)

    # -- lifecycle --------------------------------------------------------------

    async def start(self, listen: str | None = None) -> None:
        from daemon.api import ApiRunner, make_app
        from daemon.config import split_listen

        load_state(self.components, self.store, self.clock.now())
        self._recover_inbox()
        # Full passes of the cyclic GC pause the loop for tens of milliseconds once
        # thousands of incidents are in memory, and requests allocate many short-lived
        # objects that wait in the inbox queue for the worker (see daemon.heap).
        heap.settle()
        self.metrics.inbox_depth.set(self._depth)
        host, port = split_listen(listen or self.config.listen)
        app = make_app(self)
        self._runner = ApiRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        from daemon.auth import ssl_context

        auth = self.components.parts.get("auth")
        tls = ssl_context(auth.settings) if auth is not None else None
        site = web.TCPSite(self._runner, host, port, reuse_address=True, backlog=1024, ssl_context=tls)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.bound = sockets[0].getsockname()[:2] if sockets else (host, port)
        self._tasks = [asyncio.create_task(self._worker(), name="pipeline-worker"),
                       asyncio.create_task(self._timers(), name="timers")]
        for part in self.components.parts.values():
            starter = getattr(part, "start", None)
            if starter is not None:
                await starter()
        self._ready = True
        log.info("incidentd started", listen=f"{self.bound[0]}:{self.bound[1]}", tls=tls is not None,
                 data_dir=self.config.data_dir, stages=self.pipeline.order)

    @property
    def ready(self) -> bool:
        return self._ready and self.store.ping()

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file and the files it names (CMDB, rules: its lists may have
        changed too); a bad file keeps what is running. Each part takes its sections of
        the fresh config (`part.reload(fresh)`); what needs a restart (`listen`,
        `data_dir`, the inbox) does not change."""
        async with self._reload_lock:
            # reading and checking the files builds the new CMDB, seconds for tens of
            # thousands of CIs: in a thread, so that meanwhile the daemon serves and
            # correlates on what it has
            fresh, results = await asyncio.to_thread(self._read_config)
            if "cmdb" in results:  # only what was refused is in them
                cmdb = self.components.parts.get("cmdb")
                if cmdb is not None:
                    cmdb.holder.failed(results["cmdb"]["errors"])
            return self._take_config(fresh, results)

    def _read_config(self) -> tuple[Config | None, dict[str, Any]]:
        """The config file re-read and all of it checked, as check-config and a start
        would: a reload takes the whole new configuration or none of it (the CMDB
        part's reload finds the CMDB the check built: see cmdb.loader._load_once)."""
        try:
            fresh = load_config(self.config.path) if self.config.path else self.config
        except ConfigError as exc:
            return None, {"config": {"ok": False, "errors": exc.errors}}
        bad = {name: errors for name, errors in checks.check_parts(fresh).items() if errors}
        if bad:
            return None, {name: {"ok": False, "errors": errors} for name, errors in bad.items()}
        return fresh, {}

    def _take_config(self, fresh: Config | None, results: dict[str, Any]) -> dict[str, Any]:
        """Each part takes its sections of `fresh` (none when it was refused)."""
        ok = fresh is not None
        for name, part in self.components.parts.items() if fresh is not None else ():
            fn = getattr(part, "reload", None)
            if fn is None:
                continue
            try:
                errors = fn(fresh)
            except Exception as exc:  # a reload must never take the daemon down
                errors = [str(exc)]
            results[name] = {"ok": not errors, "errors": errors or []}
            ok = ok and not errors
        self.metrics.config_reload_ok.set(1 if ok else 0)
        heap.resettle()
        if ok:
            log.info("configuration reloaded")
        else:
            log.error("configuration reload failed; the running configuration stays", results=results)
        return {"ok": ok, "components": results}

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for part in self.components.parts.values():
            stopper = getattr(part, "stop", None)
            if stopper is not None:
                await stopper()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        if self._runner is not None:
            await self._runner.cleanup()
        try:
            await self.flush()
        except Exception:
            pass
        self.store.close()
        log.info("incidentd stopped")


class WorkerFailed(RuntimeError):
    """The pipeline worker stopped on an error; what it had not committed stays in the inbox."""


async def serve(config: Config, listen: str | None = None) -> None:
    """Run the daemon until SIGINT/SIGTERM; SIGHUP reloads the configuration.
    Raises WorkerFailed if the pipeline worker stopped on an error, so that the
    process exits non-zero and a supervisor restarts it."""
    daemon = Daemon(config)
    await daemon.start(listen)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(daemon.reload()))
    worker = daemon._tasks[0]
    done, _ = await asyncio.wait(
        [asyncio.ensure_future(stop.wait()), worker], return_when=asyncio.FIRST_COMPLETED
    )
    failure = worker.exception() if worker in done and not worker.cancelled() else None
    if failure is not None:
        log.error("pipeline worker stopped", error=str(failure))
    await daemon.stop()
    if failure is not None:
        raise WorkerFailed(f"the pipeline worker stopped: {failure}") from failure
