"""HTTP endpoints of the rules package: silences (Alertmanager's API v2 shapes)
and change records.

- `POST /api/v1/silences` → `{"silenceID": id}`; a body with a known `id` updates it.
- `GET /api/v1/silences[?state=active|pending|expired]`, `GET /api/v1/silences/{id}`.
- `DELETE /api/v1/silences/{id}` expires it now.
- `POST /api/v1/changes` (`{id, ci, summary, start, end}`, or a list of them):
  committed to the inbox like alerts, so it is ordered with them and survives a crash.
- `GET /api/v1/changes`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from daemon.api import ApiError, error, read_json
from rules.changes import Change, ChangeError
from rules.silences import ACTIVE, EXPIRED, PENDING, Silence, SilenceError

if TYPE_CHECKING:
    from rules.daemon import RulesPart


def add_routes(app: web.Application, daemon: Any, part: RulesPart) -> None:
    async def post_silence(request: web.Request) -> web.Response:
        try:
            _, data = await read_json(request)
        except ApiError as exc:
            return exc.response()
        now = daemon.clock.now()
        try:
            silence = Silence.from_dict(data, now=now)
        except SilenceError as exc:
            return error(400, "invalid silence", str(exc))
        if silence.ends_at <= now:  # as Alertmanager: it would silence nothing, ever
            return error(400, "invalid silence", "endsAt: in the past; a silence must end in the future")
        if isinstance(data, dict) and data.get("id"):
            old = part.silences.get(silence.id)
            if old is None:
                return error(404, f"no such silence: {silence.id}")
            if old.source != "api":
                return error(409, f"silence {silence.id} comes from {old.source}",
                             "edit the rule file and reload")  # fmt: skip
        silence.source = "api"
        silence = part.silences.add(silence, now)
        await daemon.flush()
        return web.json_response({"silenceID": silence.id})

    async def list_silences(request: web.Request) -> web.Response:
        state = request.query.get("state")
        if state is not None and state not in (ACTIVE, PENDING, EXPIRED):
            return error(400, "invalid state", "use active, pending or expired")
        now = daemon.clock.now()
        return web.json_response([s.to_dict(now) for s in part.silences.list(now, state)])

    async def get_silence(request: web.Request) -> web.Response:
        s = part.silences.get(request.match_info["id"])
        if s is None:
            return error(404, f"no such silence: {request.match_info['id']}")
        return web.json_response(s.to_dict(daemon.clock.now()))

    async def delete_silence(request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        s = part.silences.get(sid)
        if s is None:
            return error(404, f"no such silence: {sid}")
        if s.source != "api":
            return error(
                409, f"silence {sid} comes from {s.source}", "edit the rule file and reload"
            )
        part.silences.expire(sid, daemon.clock.now())
        await daemon.flush()
        return web.json_response(s.to_dict(daemon.clock.now()))

    async def post_changes(request: web.Request) -> web.Response:
        try:
            _, data = await read_json(request)
        except ApiError as exc:
            return exc.response()
        items = data if isinstance(data, list) else [data]
        now = daemon.clock.now()
        records = []
        for i, item in enumerate(items):
            try:
                change = Change.from_dict(item, now=now)
            except ChangeError as exc:
                where = f"[{i}]." if isinstance(data, list) else ""
                return error(400, "invalid change", f"{where}{exc}")
            # the start as read (`start`, else `at`, else the time of receipt), fixed now so
            # that a replayed inbox agrees; no `source`: a change posted here is the API's,
            # whatever the body says (`RulesPart.add_change`)
            record = {k: v for k, v in item.items() if k not in ("at", "start", "source")}
            records.append({**record, "start": _rfc3339(change.starts_at)})
        from daemon.app import InboxFull

        try:
            for record in records:  # one inbox row each: a row is re-read as one change
                await daemon.accept("change", "api", json.dumps(record).encode(), [record])
        except InboxFull:
            return error(503, "inbox full", "retry later")
        return web.json_response({"status": "success", "accepted": [r["id"] for r in records]})

    async def list_changes(request: web.Request) -> web.Response:
        return web.json_response([c.to_dict() for c in part.changes.list()])

    r = app.router
    r.add_post("/api/v1/silences", post_silence)
    r.add_get("/api/v1/silences", list_silences)
    r.add_get("/api/v1/silences/{id}", get_silence)
    r.add_delete("/api/v1/silences/{id}", delete_silence)
    r.add_post("/api/v1/changes", post_changes)
    r.add_get("/api/v1/changes", list_changes)


def _rfc3339(ts: float) -> str:
    from daemon.timefmt import format_rfc3339

    return format_rfc3339(ts, millis=True) or ""
