"""The live CMDB: reloaded on SIGHUP or `POST /-/reload`, never replaced by a bad one."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from cmdb.graph import Cmdb
from cmdb.loader import CmdbError, load_cmdb

log = structlog.get_logger("incidentd.cmdb")

class CmdbMetrics:
    """The CMDB's metrics, in the daemon's registry (each daemon has its own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry()
        self.reload_ok = Gauge(
            "incidentd_cmdb_last_reload_successful",
            "Whether the last CMDB reload succeeded (1) or failed (0).", registry=r)
        self.reload_time = Gauge(
            "incidentd_cmdb_last_reload_success_timestamp_seconds",
            "Time of the last successful CMDB reload.", registry=r)
        self.reloads = Counter(
            "incidentd_cmdb_reloads_total", "CMDB reload attempts, by result.", ["result"], registry=r)
        self.cis = Gauge("incidentd_cmdb_cis", "Configuration items in the live CMDB.", registry=r)
        self.relations = Gauge(
            "incidentd_cmdb_relations", "Dependency relations in the live CMDB.", registry=r)


class CmdbHolder:
    """Holds the current `Cmdb`; `reload()` swaps in a new one only when it loads cleanly.

    Readers take `holder.cmdb` once per use; the swap is a single reference
    assignment, so a reader never sees half a CMDB. Open incidents keep their
    CI ids; CIs that disappeared simply stop matching new alerts.
    """

    def __init__(
        self,
        paths: Iterable[str] = (),
        clock: Callable[[], float] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.paths = list(paths)
        self.metrics = CmdbMetrics(registry)
        self._clock = clock
        self.cmdb: Cmdb = Cmdb.empty()
        self.last_reload_ok = True
        self.last_error: str | None = None
        self.last_errors: list[str] = []
        self.last_reload_at: float | None = None
        self.generation = 0
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Cmdb], object]] = []

    def on_reload(self, listener: Callable[[Cmdb], object]) -> None:
        """Call `listener(new_cmdb)` after each successful swap (caches keyed on the old graph)."""
        self._listeners.append(listener)

    def load(self) -> None:
        """First load at start-up: raises CmdbError, as a bad config must stop `run`."""
        self._swap(load_cmdb(self.paths))

    def reload(self, paths: Iterable[str] | None = None) -> bool:
        """Load the files again; keep the old CMDB and record the error when they are bad."""
        with self._lock:
            if paths is not None:
                new_paths = list(paths)
            else:
                new_paths = self.paths
            try:
                cmdb = load_cmdb(new_paths)
            except CmdbError as exc:
                self.failed([str(e) for e in exc.errors])
                return False
            self.paths = new_paths
            self._swap(cmdb)
            log.info("cmdb_reloaded", cis=len(cmdb), relations=cmdb.graph.number_of_edges())
            return True

    def failed(self, errors: list[str]) -> None:
        """Record a reload that did not take (the running CMDB stays)."""
        self.last_reload_ok = False
        self.last_errors = list(errors)
        self.last_error = "\n".join(errors)
        self.metrics.reload_ok.set(0)
        self.metrics.reloads.labels(result="failure").inc()
        log.error("cmdb_reload_failed", error=self.last_error, errors=len(errors))

    def _swap(self, cmdb: Cmdb) -> None:
        self.cmdb = cmdb
        self.generation += 1
        self.last_reload_ok = True
        self.last_error = None
        self.last_errors = []
        self.last_reload_at = self._clock() if self._clock else None
        m = self.metrics
        m.reload_ok.set(1)
        if self.last_reload_at is not None:
            m.reload_time.set(self.last_reload_at)
        m.reloads.labels(result="success").inc()
        m.cis.set(len(cmdb))
        m.relations.set(cmdb.graph.number_of_edges())
        for listener in self._listeners:
            listener(cmdb)

    def status(self) -> dict:
        """For the API: is the live CMDB the one on disk, and if not, why."""
        return {
            "files": list(self.paths),
            "cis": len(self.cmdb),
            "relations": self.cmdb.graph.number_of_edges(),
            "last_reload_successful": self.last_reload_ok,
            "last_error": self.last_error,
            "errors": list(self.last_errors),
            "generation": self.generation,
        }
