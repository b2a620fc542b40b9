"""JSON views of incidents, as the API and the replay result show them (CONTRACT.md section 4)."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import orjson

from daemon.store import Store
from daemon.timefmt import format_rfc3339

_INTERNAL = {"impact_priority"}


def incident_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The incident as clients see it, from its stored document."""
    ts = format_rfc3339
    alerts = []
    for m in doc.get("alerts", []):
        alerts.append({
            "fingerprint": m["fingerprint"],
            "labels": m["labels"],
            "annotations": m.get("annotations", {}),
            "status": m["status"],
            "ci": m.get("ci"),
            "starts_at": ts(m.get("starts_at")),
            "ends_at": ts(m.get("ends_at")),
            "first_seen_at": ts(m.get("first_at")),
            "last_seen_at": ts(m.get("last_at")),
            "reason": m.get("reason", ""),
            "silenced_by": m.get("silenced_by"),
            "inhibited_by": m.get("inhibited_by"),
            "expected": m.get("expected"),
            "flapping": m.get("flapping", False),
            "kept_by": m.get("kept_by"),  # the person who merged it in: kept here
        })
    view = {
        "id": doc["id"],
        "state": doc["state"],
        "title": doc.get("title", ""),
        "opened_at": ts(doc["opened_at"]),
        "acknowledged_at": ts(doc.get("acknowledged_at")),
        "acknowledged_by": doc.get("acknowledged_by"),
        "resolved_at": ts(doc.get("resolved_at")),
        "resolved_by": doc.get("resolved_by"),
        "updated_at": ts(doc.get("updated_at")),
        "severity": doc.get("severity", "none"),
        "priority": doc.get("priority", "P5"),
        "paging": doc.get("paging", True),
        "flapping": doc.get("flapping", False),
        "team": doc.get("team"),
        "receiver": doc.get("receiver"),
        "group_key": doc.get("group_key", ""),
        "alerts": alerts,
        "root_cause": doc.get("root_cause"),
        "root_cause_candidates": doc.get("root_cause_candidates", []),
        "impacted": doc.get("impacted", []),
        "explanation": doc.get("explanation", ""),
        "problem_id": doc.get("problem_id"),
    }
    if doc.get("merged_into"):
        view["merged_into"] = doc["merged_into"]
    for key, value in (doc.get("extra") or {}).items():
        if key not in _INTERNAL and key not in view:
            view[key] = value
    return view


def timeline_view(store: Store, incident_id: str) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT at, kind, actor, text, data FROM timeline WHERE incident_id=? ORDER BY id", (incident_id,)
    )
    return [
        {"at": format_rfc3339(at, millis=True), "kind": kind, "actor": actor, "text": text,
         "data": orjson.loads(data) if data else None}
        for at, kind, actor, text, data in rows
    ]


_STATE_WHERE = {"open": "state IN ('open','acknowledged')", "resolved": "state='resolved'"}


def load_incident_docs(store: Store, state: str = "all", limit: int | None = None,
                       before_seq: int | None = None) -> list[dict[str, Any]]:
    """Incident documents in opening order; `state` is open (incl. acknowledged), resolved
    or all. With `limit`, only the last `limit` of them; with `before_seq`, only those
    that opened before the incident of that `seq` (a page further back)."""
    where = _STATE_WHERE.get(state, "state != 'merged'")
    params: tuple[int, ...] = ()
    if before_seq is not None:
        where += " AND seq < ?"
        params = (before_seq,)
    # put in order here, by `seq` (one per incident), not by an ORDER BY: SQLite would
    # copy every document through a temporary B-tree (8 MB for 3,400 incidents), which
    # took longer than reading them
    if limit is None:
        rows = store.query(f"SELECT seq, doc FROM incidents WHERE {where}", params)
    else:
        # a page: the incidents' places first, from the (state, seq) index alone, then the
        # documents of the page only
        keys = sorted(store.query(f"SELECT seq, rowid FROM incidents WHERE {where}", params))
        page = [rowid for _, rowid in keys[-limit:]] if limit > 0 else []
        rows = []
        for i in range(0, len(page), 500):
            chunk = page[i:i + 500]
            rows += store.query(f"SELECT seq, doc FROM incidents WHERE rowid IN ({','.join('?' * len(chunk))})",
                                tuple(chunk))
    rows.sort(key=itemgetter(0))
    return [orjson.loads(doc) for _, doc in rows]


def incident_seq(store: Store, incident_id: str) -> int | None:
    row = store.query_one("SELECT seq FROM incidents WHERE id=?", (incident_id,))
    return row[0] if row else None


def load_incident_doc(store: Store, incident_id: str) -> dict[str, Any] | None:
    row = store.query_one("SELECT doc FROM incidents WHERE id=?", (incident_id,))
    return orjson.loads(row[0]) if row else None
