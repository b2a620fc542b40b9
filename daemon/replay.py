"""`incidentd replay`: recorded events through the daemon's own pipeline, on a virtual clock.

The clock is the `at` of the event being processed; timers due before an
event fire first, at their own time. After the last event the clock runs on
until every timer due within 24 hours has fired. The store is a fresh
SQLite file in a temporary directory; nothing touches the network.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from typing import Any

import orjson

from daemon import heap
from daemon.build import Components, build_pipeline
from daemon.clock import VirtualClock
from daemon.config import Config
from daemon.ingest import PayloadError, parse_time, read_alert
from daemon.metrics import Metrics
from daemon.store import Store, Writes
from daemon.views import incident_view, load_incident_docs
from rules.changes import Change

DRAIN_HORIZON = 86400.0
FLUSH_EVERY = 2000  # events between writes to the store
# timers fired between writes within a quiet stretch: an incident whose timers fall in
# several batches is written once for each, so the batches are large (a repeat
# notification holds about a kilobyte until written)
FLUSH_TIMERS = 50_000

# Other packages add sections to the result (problems, anomalies): name -> builder.
ResultSection = Callable[[Components, Store], list[dict[str, Any]]]
_RESULT_SECTIONS: dict[str, ResultSection] = {}


def register_result_section(name: str, builder: ResultSection) -> None:
    _RESULT_SECTIONS[name] = builder


class ReplayError(Exception):
    pass


def _fire_due(components: Components, store: Store, clock: VirtualClock, until: float) -> None:
    """Fire the timers due up to `until`, each at its own time. A long quiet stretch
    (days between two events) fires many (a repeat notification every interval): what
    they write goes to the store every `FLUSH_TIMERS` of them, not all at the next event."""
    pipeline = components.pipeline
    fired = 0
    while True:
        due = pipeline.next_deadline()
        if due is None or due > until:
            return
        clock.set(due)
        pipeline.tick(clock.now())
        fired += 1
        if fired % FLUSH_TIMERS == 0:
            _flush(components, store)


def _loads(line: bytes) -> Any:
    """orjson, and for a line it refuses the standard parser, which also reads the
    NaN, Infinity and out-of-range numbers that Python's json.dumps writes for a
    sample with no measurement; anything else orjson refuses (a lone surrogate
    escape, which no label or result could hold) stays orjson's error."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        try:
            ev = json.loads(line)
            orjson.dumps(ev)
        except (ValueError, TypeError, RecursionError):  # (nested past what either reads)
            raise exc from None
        return ev


def _flush(components: Components, store: Store) -> None:
    writes = Writes()
    components.pipeline.drain_writes(writes)
    store.apply_sync(writes)


def replay_events(config: Config, input_path: str, workdir: str) -> tuple[Components, Store]:
    """Run the events file through a fresh pipeline; returns it with its store."""
    clock = VirtualClock()
    store = Store(os.path.join(workdir, "replay.sqlite3"), threaded=False, scratch=True)
    components = build_pipeline(config, clock, Metrics(), store)
    heap.settle()  # as the daemon does after start-up
    pipeline = components.pipeline
    rt = config.incidents.resolve_timeout
    started = False
    last_at = 0.0
    try:
        fh = open(input_path, "rb")  # orjson reads the bytes and checks they are UTF-8
    except OSError as exc:
        raise ReplayError(f"{input_path}: cannot read: {exc.strerror}") from exc
    # a replay makes no reference cycles (a collector pass over the heap of a 50,000-event
    # replay finds nothing to free), so the collector's passes during it are wasted work
    with fh, heap.paused(keep=True):
        for lineno, line in enumerate(fh, 1):
            if lineno == 1 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8):]  # as editors and PowerShell write UTF-8; orjson refuses it
            if not line.strip():
                continue
            where = f"{input_path}:{lineno}"
            try:
                ev = _loads(line)
                if not isinstance(ev, dict):
                    raise PayloadError("", "an event must be a JSON object")
                at = parse_time(ev.get("at"), "at")
                if at is None:
                    raise PayloadError("at", "the zero time is not an event time")
            except orjson.JSONDecodeError as exc:  # its own "line 1" would name a second line
                raise ReplayError(f"{where}: invalid JSON at character {exc.pos + 1}: {exc.msg}") from None
            except PayloadError as exc:
                raise ReplayError(f"{where}: {exc}") from None
            if not started:
                clock.set(at)
                started = True
            if at < last_at:
                at = last_at  # events out of order: keep the clock monotonic
            _fire_due(components, store, clock, at)
            clock.set(at)
            last_at = at
            kind = ev.get("kind")
            try:
                if kind == "alert":
                    raw = ev.get("alert")
                    alert = read_alert(raw, "alert", now=at, source="replay",
                                        status_field=isinstance(raw, dict) and "status" in raw,
                                        resolve_timeout=rt)
                    pipeline.process_alerts([alert], at)
                elif kind == "sample":
                    from daemon.ingest import parse_samples

                    value = ev.get("value")
                    if not (isinstance(value, float) and not math.isfinite(value)):
                        # NaN or out of range: no measurement, which the detector would ignore
                        samples = parse_samples([{"labels": ev.get("labels"), "value": value,
                                                  "at": ev.get("at")}])
                        pipeline.process_samples(samples, at)
                elif kind == "change":
                    try:
                        Change.from_dict(dict(ev, source="replay"), now=at)
                    except ValueError as exc:
                        raise PayloadError("", str(exc)) from None
                    pipeline.process_change(ev, at)
                else:
                    raise PayloadError("kind", f"unknown event kind {kind!r}")
            except PayloadError as exc:
                raise ReplayError(f"{where}: {exc}") from None
            if lineno % FLUSH_EVERY == 0:
                _flush(components, store)
    _fire_due(components, store, clock, last_at + DRAIN_HORIZON)
    _flush(components, store)
    return components, store


def build_result(components: Components, store: Store) -> dict[str, Any]:
    incidents = []
    for doc in load_incident_docs(store, "all"):
        # the result shows five fields of each alert: taken from the document, not from
        # the full view of each alert (with its four timestamps formatted)
        members = doc.pop("alerts", [])
        view = incident_view(doc)
        view["alerts"] = [{"fingerprint": m["fingerprint"], "labels": m["labels"], "ci": m.get("ci"),
                           "reason": m.get("reason", ""), "status": m["status"]} for m in members]
        incidents.append(view)
    result: dict[str, Any] = {"incidents": incidents, "problems": [], "anomalies": []}
    for name, builder in _RESULT_SECTIONS.items():
        result[name] = builder(components, store)
    return result


def run_replay(config: Config, input_path: str, output_path: str) -> dict[str, Any]:
    # a result that cannot be written is known before the replay, not after it
    if os.path.isdir(output_path):
        raise ReplayError(f"{output_path}: cannot write: it is a directory")
    folder = os.path.dirname(os.path.abspath(output_path))
    try:
        os.makedirs(folder, exist_ok=True)  # as `detect` makes its output's directory
    except OSError as exc:
        raise ReplayError(f"{output_path}: cannot write: {exc.strerror or exc}") from None
    with tempfile.TemporaryDirectory(prefix="incidentd-replay-") as workdir:
        components, store = replay_events(config, input_path, workdir)
        try:
            result = build_result(components, store)
        finally:
            store.close()
    # orjson: the standard encoder falls back to pure Python when indenting
    data = orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    if os.path.exists(output_path) and not os.path.isfile(output_path):
        with open(output_path, "wb") as fh:  # a pipe or a device (/dev/stdout): written into
            fh.write(data)
        return result
    target = os.path.realpath(output_path)  # a symbolic link is written through, not replaced
    tmp = target + ".tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)  # no half-written file left behind
        raise
    return result
