"""Recorded anomalies: ``GET /api/v1/anomalies`` and the replay result's ``anomalies``.

Each anomaly is ``{"labels": {...}, "at": RFC3339, "score": 0.0}`` (CONTRACT.md
section 4) plus the detector, the value, the expected range, when it resolved
and the fingerprint of its ``MetricAnomaly`` alert.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from daemon.store import Store
from daemon.timefmt import format_rfc3339

if TYPE_CHECKING:
    from aiohttp import web

MAX_LIMIT = 100_000  # anomalies in one answer


def anomaly_views(store: Store, state: str = "all", limit: int | None = None) -> list[dict[str, Any]]:
    """Anomalies in the order they were raised (newest last)."""
    where = {"open": " WHERE resolved_at IS NULL", "resolved": " WHERE resolved_at IS NOT NULL"}
    sql = ("SELECT fingerprint, detector, at, resolved_at, score, doc FROM anomalies"
           f"{where.get(state, '')} ORDER BY at DESC, id DESC")
    if limit is not None:
        rows = store.query(sql + " LIMIT ?", (limit,))
    else:
        rows = store.query(sql)
    rows.reverse()
    out = []
    for fp, detector, at, resolved_at, score, doc in rows:
        d = json.loads(doc)
        out.append({
            "labels": d["labels"],
            "at": format_rfc3339(at),
            "score": round(score, 6),
            "detector": detector,
            "value": d.get("value"),
            "expected_low": d.get("expected_low"),
            "expected_high": d.get("expected_high"),
            "resolved_at": format_rfc3339(resolved_at) if resolved_at is not None else None,
            "fingerprint": fp,
        })
    return out


def anomalies_section(components: Any, store: Store) -> list[dict[str, Any]]:
    """The replay result's ``anomalies`` section."""
    return anomaly_views(store)


async def list_anomalies(request: web.Request) -> web.Response:
    from aiohttp import web

    from daemon.api import DAEMON_KEY, error, query_count

    daemon = request.app[DAEMON_KEY]
    state = request.query.get("state", "all")
    if state not in ("open", "resolved", "all"):
        return error(400, "invalid state", "state must be open, resolved or all")
    limit = query_count(request.query.get("limit", "1000"), MAX_LIMIT)
    if limit is None:
        return error(400, "invalid limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
    views = anomaly_views(daemon.store, state, limit)
    return web.json_response({"anomalies": views})


def add_anomaly_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/anomalies", list_anomalies)
