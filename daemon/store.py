"""The SQLite store: the durable inbox, incidents, their timelines, and whatever
other packages keep (each registers its own tables).

One writer thread owns the write connection and commits everything that is
queued at once (group commit), so a burst of concurrent requests costs one
commit, not one per request. WAL with `synchronous=NORMAL` survives a process
crash; `fsync=True` (`synchronous=FULL`) also survives power loss. Readers use
their own connection and never wait for the writer.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

SCHEMA_VERSION = 1

_CORE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    count INTEGER NOT NULL,
    body BLOB NOT NULL
);
-- the rows of an inbox batch the pipeline failed on: at the next start each is
-- processed alone, and one that fails alone moves to inbox_dead, for a person to
-- look at, so that one row the pipeline cannot take does not stop every start
CREATE TABLE IF NOT EXISTS inbox_suspect (row_id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS inbox_dead (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    count INTEGER NOT NULL,
    body BLOB NOT NULL,
    failed_at REAL NOT NULL,
    error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    opened_at REAL NOT NULL,
    resolved_at REAL,
    updated_at REAL NOT NULL,
    severity TEXT NOT NULL,
    priority TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_by_state_seq ON incidents (state, seq);
CREATE INDEX IF NOT EXISTS incidents_by_opened_at ON incidents (opened_at);
CREATE TABLE IF NOT EXISTS timeline (
    id INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    text TEXT NOT NULL,
    data TEXT
);
CREATE INDEX IF NOT EXISTS timeline_by_incident ON timeline (incident_id, id);
-- re-posts of firing alerts: when each was last seen and when it ends, kept
-- apart so that a re-post does not rewrite its incident's whole document
CREATE TABLE IF NOT EXISTS alert_seen (
    fingerprint TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    last_at REAL NOT NULL,
    ends_at REAL
);
CREATE INDEX IF NOT EXISTS alert_seen_by_incident ON alert_seen (incident_id);
"""

# Other packages add their tables here before the store opens (see `register_schema`).
_EXTRA_SCHEMAS: dict[str, str] = {}


def register_schema(name: str, ddl: str) -> None:
    """Add `CREATE TABLE IF NOT EXISTS ...` statements run when a store opens."""
    _EXTRA_SCHEMAS[name] = ddl


# Columns added to a table after stores were first written with it (see `register_column`).
_ADDED_COLUMNS: list[tuple[str, str, str, str]] = []


def register_column(table: str, column: str, declaration: str, backfill: str = "") -> None:
    """A column added to `table` (whose `CREATE TABLE` names it too): a store written
    without it gets it when it opens, then `backfill`, an UPDATE of the rows already
    there, in the same transaction."""
    _ADDED_COLUMNS.append((table, column, declaration, backfill))


@dataclass(slots=True)
class Writes:
    """Statements to run in one transaction: `(sql, [params, ...])` pairs, in order."""

    ops: list[tuple[str, list[tuple[Any, ...]]]] = field(default_factory=list)

    def add(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        if self.ops and self.ops[-1][0] == sql:
            self.ops[-1][1].append(params)
        else:
            self.ops.append((sql, [params]))

    def extend(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        rows = list(rows)
        if rows:
            self.ops.append((sql, rows))

    def __bool__(self) -> bool:
        return bool(self.ops)

    def apply(self, conn: sqlite3.Connection) -> None:
        for sql, rows in self.ops:
            if len(rows) == 1:
                conn.execute(sql, rows[0])
            else:
                conn.executemany(sql, rows)


class StoreClosed(RuntimeError):
    pass


class StoreError(RuntimeError):
    """The file cannot serve as this incidentd's store (not SQLite, or a newer schema)."""


def store_problem(path: str) -> str | None:
    """Why the existing file at `path` is not a store this incidentd can read, found
    without changing it (None when it is one): for tools that only read a store."""
    from urllib.parse import quote

    try:
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"{path}: not an incidentd store ({exc})"
    if row is None:
        return f"{path}: not an incidentd store (no schema version)"
    return _too_new(path, row[0])


def _too_new(path: str, version: str) -> str | None:
    """Why a store of schema `version` is not for this incidentd, or None."""
    if int(version) > SCHEMA_VERSION:
        return f"{path}: store schema version {version} is newer than this incidentd ({SCHEMA_VERSION})"
    return None


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future | None
    result: Any = None
    error: BaseException | None = None


def _connect(path: str, sync: str, journal: str = "WAL") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute(f"PRAGMA journal_mode={journal}")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class Store:
    """SQLite in WAL mode with a group-committing writer thread.

    `threaded=False` runs writes inline (replay and unit tests: one thread,
    deterministic). `scratch=True` is for a store thrown away when the process is
    done (replay's): nothing is ever synced to disk, which took a twentieth of a
    replay of long history, and its rollback journal is kept in memory instead of a
    write-ahead log (a transaction can still be rolled back, and the one thread
    that uses it reads between commits): two fifths less time writing it.
    """

    def __init__(self, path: str, *, fsync: bool = False, threaded: bool = True,
                 on_commit: Callable[[], None] | None = None, scratch: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self._on_commit = on_commit
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        sync = "FULL" if fsync else "OFF" if scratch else "NORMAL"
        journal = "MEMORY" if scratch else "WAL"
        try:
            self._wconn = _connect(path, sync, journal)
            self._migrate(self._wconn)
            self._rconn = _connect(path, sync, journal)
        except sqlite3.DatabaseError as exc:  # a file that is not SQLite, or a damaged one
            raise StoreError(f"{path}: not a usable SQLite store ({exc})") from None
        self._threaded = threaded
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.commits = 0
        if threaded:
            self._thread = threading.Thread(target=self._writer, name="incidentd-store", daemon=True)
            self._thread.start()

    # -- schema ---------------------------------------------------------------

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.executescript(_CORE_SCHEMA)
        for ddl in _EXTRA_SCHEMAS.values():
            conn.executescript(ddl)
        for table, column, declaration, backfill in _ADDED_COLUMNS:
            conn.execute("BEGIN IMMEDIATE")  # the check too: two processes may open an old store
            try:
                if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
                    if backfill:
                        conn.execute(backfill)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif (too_new := _too_new(self.path, row[0])) is not None:
            raise StoreError(too_new)

    # -- writing --------------------------------------------------------------

    def _writer(self) -> None:
        conn = self._wconn
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            while True:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                jobs.append(nxt)
            self._run_jobs(conn, jobs)
            for j in jobs:
                if j.loop is not None and j.future is not None:
                    j.loop.call_soon_threadsafe(_settle, j)

    def _run_jobs(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            for i, j in enumerate(jobs):
                conn.execute(f"SAVEPOINT j{i}")
                try:
                    j.result = j.fn(conn)
                    conn.execute(f"RELEASE j{i}")
                except Exception as exc:  # one bad job must not undo the others
                    conn.execute(f"ROLLBACK TO j{i}")
                    conn.execute(f"RELEASE j{i}")
                    j.error = exc
            conn.execute("COMMIT")
            self.commits += 1
            if self._on_commit is not None:
                self._on_commit()
        except Exception as exc:  # the commit itself failed: every job fails
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            for j in jobs:
                j.error = j.error or exc

    async def write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `fn(conn)` in a transaction; returns once it is committed."""
        if self._closed:
            raise StoreClosed("store is closed")
        if not self._threaded:
            return self.write_sync(fn)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put(_Job(fn, loop, fut))
        return await fut

    def write_sync(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `fn(conn)` in a transaction on the calling thread (not while threaded)."""
        if self._closed:
            raise StoreClosed("store is closed")
        if self._threaded:
            raise RuntimeError("write_sync on a threaded store; use `await write`")
        job = _Job(fn, None, None)
        self._run_jobs(self._wconn, [job])
        if job.error:
            raise job.error
        return job.result

    async def apply(self, writes: Writes) -> None:
        if writes:
            await self.write(writes.apply)

    def apply_sync(self, writes: Writes) -> None:
        if writes:
            self.write_sync(writes.apply)

    # -- reading --------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._rconn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        return self._rconn.execute(sql, params).fetchone()

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.query_one("SELECT value FROM meta WHERE key=?", (key,))
        return row[0] if row else default

    def ping(self) -> bool:
        try:
            self._rconn.execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
        self._rconn.close()
        self._wconn.close()


def _settle(job: _Job) -> None:
    fut = job.future
    if fut is None or fut.done():
        return
    if job.error is not None:
        fut.set_exception(job.error)
    else:
        fut.set_result(job.result)


def dumps(value: Any) -> str:
    """Compact JSON for the store's documents (orjson: incident documents are
    written back after every change, and the standard encoder was the largest
    cost of processing a re-posted alert)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
