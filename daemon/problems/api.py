"""Problem endpoints (CONTRACT.md section 2, plus the people's edits).

| method and path | what |
| --- | --- |
| `GET /api/v1/problems?status=open\\|known_error\\|resolved` | problems (default: all) |
| `GET /api/v1/problems/{id}` | one problem with its incidents and history |
| `PATCH /api/v1/problems/{id}` | `status`, `title`, `cause`, `workaround`, `fix_ref` |
| `POST /api/v1/problems/{id}/merge` | `{"problems": ["PRB-…"]}`: merge those into this one |
| `POST /api/v1/problems/{id}/split` | `{"incidents": ["INC-…"], "title": "…"}`: move them to a new problem |
| `POST /api/v1/problems/{id}/incidents` | `{"incident": "INC-…"}`: link an incident by hand |
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from daemon.api import DAEMON_KEY, ApiError, _actor, error, read_json
from daemon.model import MAX_TEXT, optional_text
from daemon.problems.model import STATUSES, problem_view
from daemon.problems.service import ProblemError, ProblemsPart

if TYPE_CHECKING:
    from daemon.app import Daemon


def _part(request: web.Request) -> tuple[Daemon, ProblemsPart]:
    daemon = request.app[DAEMON_KEY]
    return daemon, daemon.components.parts["problems"]


async def _body(request: web.Request) -> dict[str, Any]:
    _, data = await read_json(request)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid body", "expected a JSON object")
    return data


def _invalid_body(message: str) -> ApiError:
    return ApiError(400, "invalid body", message)


def _id_list(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ApiError(400, "invalid body", f"{key}: expected a non-empty list of ids")
    return value


async def list_problems(request: web.Request) -> web.Response:
    daemon, part = _part(request)
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        return error(400, "invalid status", f"status must be one of {', '.join(STATUSES)}")
    now = daemon.clock.now()
    return web.json_response({"problems": [problem_view(p, now) for p in part.listing(status)]})


async def get_problem(request: web.Request) -> web.Response:
    daemon, part = _part(request)
    try:
        p = part.get(request.match_info["id"])
    except ProblemError as exc:
        return error(exc.status, str(exc), exc.detail)
    return web.json_response(problem_view(p, daemon.clock.now(), detail=True))


async def _edit(request: web.Request, action: str) -> web.Response:
    daemon, part = _part(request)
    pid = request.match_info["id"]
    try:
        data = await _body(request)
        actor = _actor(request, data)
        data.pop("author", None)
        data.pop("actor", None)
        now = daemon.clock.now()
        status = 200
        if action == "patch":
            p = part.update(pid, data, actor, now)
        elif action == "merge":
            p = part.merge(pid, _id_list(data, "problems"), actor, now)
        elif action == "split":
            # (a longer title is refused, as PATCH refuses it, rather than cut)
            title = optional_text(data.get("title"), "title", MAX_TEXT, _invalid_body)
            p = part.split(pid, _id_list(data, "incidents"), actor, now, title)
            status = 201
        else:
            iid = data.get("incident")
            if not isinstance(iid, str) or not iid:
                raise ApiError(400, "invalid body", "incident: expected an incident id")
            p = part.link_incident(pid, iid, actor, now)
        await daemon.flush()
    except ApiError as exc:
        return exc.response()
    except ProblemError as exc:
        return error(exc.status, str(exc), exc.detail)
    return web.json_response(problem_view(p, daemon.clock.now(), detail=True), status=status)


async def patch_problem(request: web.Request) -> web.Response:
    return await _edit(request, "patch")


async def merge_problems(request: web.Request) -> web.Response:
    return await _edit(request, "merge")


async def split_problem(request: web.Request) -> web.Response:
    return await _edit(request, "split")


async def link_incident(request: web.Request) -> web.Response:
    return await _edit(request, "link")


def add_routes(app: web.Application, daemon: Daemon) -> None:
    r = app.router
    r.add_get("/api/v1/problems", list_problems)
    r.add_get("/api/v1/problems/{id}", get_problem)
    r.add_patch("/api/v1/problems/{id}", patch_problem)
    r.add_post("/api/v1/problems/{id}/merge", merge_problems)
    r.add_post("/api/v1/problems/{id}/split", split_problem)
    r.add_post("/api/v1/problems/{id}/incidents", link_incident)
