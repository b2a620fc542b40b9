"""The HTTP API on aiohttp: ingest, incidents, health and `/metrics`.

Every error is JSON `{"error": ..., "detail": ...}` with a 4xx status when the
client sent something wrong; a 5xx only for the daemon's own faults, and never
with a stack trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from daemon.incidents import IncidentError
from daemon.ingest import PayloadError, parse_alert_list, parse_samples, parse_webhook
from daemon.model import MAX_NAME, MAX_TEXT
from daemon.views import (
    incident_seq,
    incident_view,
    load_incident_doc,
    load_incident_docs,
    timeline_view,
)

if TYPE_CHECKING:
    from daemon.app import Daemon

log = structlog.get_logger("incidentd.api")

DAEMON_KEY: web.AppKey[Daemon] = web.AppKey("daemon")


def error(status: int, message: str, detail: Any = None, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "detail": detail}, status=status, headers=headers)


# set on a request whose `Expect` header asks for something other than `100-continue`
UNMET_EXPECTATION = web.RequestKey("unmet_expectation", str)


def _expecting(default: Callable[[web.Request], Awaitable[Any]]) -> Callable[[web.Request], Awaitable[Any]]:
    """A route's `Expect` handler: `100-continue` as aiohttp answers it; any other
    expectation is answered by `errors_middleware` with the JSON error every other
    refusal has (aiohttp's own answer is a plain-text 417), without reading the body."""

    async def expect(request: web.Request) -> Any:
        value = request.headers.get("Expect", "")
        if value.lower() == "100-continue" or request.version < (1, 1):
            return await default(request)
        request[UNMET_EXPECTATION] = value
        request[BODY_UNREAD] = True
        return None

    return expect


@web.middleware
async def errors_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    unmet = request.get(UNMET_EXPECTATION)
    if unmet is not None:
        resp: web.StreamResponse = error(417, "unsupported Expect header", f"only 100-continue is understood, "
                                                                           f"not {unmet[:64]!r}")
    else:
        resp = await _handle(request, handler)
    if request.get(BODY_UNREAD):
        resp.force_close()
    resource = request.match_info.route.resource
    name = resource.canonical if resource is not None else "other"
    request.app[DAEMON_KEY].metrics.requests.labels(name, str(resp.status)).inc()
    return resp


async def _handle(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            return exc
        reason = exc.reason or "error"
        detail = None
        if exc.status == 413:
            reason = "request body too large"
            detail = f"the limit is {request.app[DAEMON_KEY].config.inbox.max_body_bytes} bytes"
        elif exc.status == 404:
            reason = f"no such endpoint: {request.method} {request.path}"
        elif exc.status == 405:
            reason = f"method {request.method} not allowed on {request.path}"
        return error(exc.status, reason, detail, headers={k: v for k, v in exc.headers.items()
                                                           if k in ("Allow", "Retry-After")})
    except Exception:
        log.exception("request failed", path=request.path, method=request.method)
        return error(500, "internal error", "see the daemon's log")


def parse_error_reason(exc: HttpProcessingError) -> str:
    """What aiohttp's HTTP parser refused, without the bytes it quotes: they may be
    an `Authorization` header and its token."""
    first = exc.message.split("\n", 1)[0]
    for cut in (": ", "'", '"', "bytearray(", "b'"):
        first = first.split(cut, 1)[0]
    return first.strip(" :.") or type(exc).__name__


class _ParserErrorsAsJson(RequestHandler):
    """A connection whose request the HTTP parser refuses (a header with control
    characters, a line over 8 KiB, an unknown `Content-Encoding`) is answered like
    every other error: a JSON 400, and a one-line log entry, neither of which repeats
    what was sent."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        reason = parse_error_reason(exc)
        log.info("HTTP request refused", remote=request.remote, status=status, error=reason)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent")
        resp = error(status, f"bad HTTP request: {reason}")
        resp.force_close()
        return resp


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _ParserErrorsAsJson(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer HTTP parser errors as JSON."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server
        return server


MAX_LIST = 10_000  # incidents in one page of a listing (`limit`)
MAX_AHEAD = 3600.0  # how far ahead of the daemon's clock a sample's time may be

_ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")  # what aiohttp decodes without extras


def query_count(raw: str, most: int) -> int | None:
    """A query parameter that is to be a whole number from 1 to `most`; None when not."""
    n = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else 0
    return n if 1 <= n <= most else None


def content_encoding(request: web.Request) -> str:
    """The request's Content-Encoding, lower case; "identity" when it names none."""
    return request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"


async def read_json(request: web.Request) -> tuple[bytes, Any]:
    """The request body as bytes and as parsed JSON; 415/413/400 errors name the problem."""
    ctype = request.content_type
    if ctype not in ("application/json", "text/json") and not ctype.endswith("+json"):
        raise ApiError(415, "unsupported content type", f"expected application/json, got {ctype or 'none'}")
    encoding = content_encoding(request)
    if encoding not in _ENCODINGS:
        raise ApiError(400, "bad content encoding",
                       f"unsupported Content-Encoding: {encoding[:64]} (use gzip, deflate or none)")
    limit = request.app[DAEMON_KEY].config.inbox.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "request body too large", f"the limit is {limit} bytes")
    body = await read_body(request)
    if len(body) > limit:
        raise ApiError(413, "request body too large", f"the limit is {limit} bytes")
    try:
        return body, orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # also invalid UTF-8, too deep, integers past 64 bits
        raise ApiError(400, "malformed JSON", str(exc)) from None


# set on a request whose body was left unread (not in its Content-Encoding, or cut off by
# the client): its connection closes after the answer instead of reading on in the body
BODY_UNREAD = web.RequestKey("body_unread", bool)


async def read_body(request: web.Request) -> bytes:
    """The request body, decompressed; a 400 ApiError when it cannot be read."""
    try:
        return await request.read()
    except web.RequestPayloadError:
        request[BODY_UNREAD] = True
        # nothing more of it is read: without this, aiohttp would read on in it after the
        # answer (to keep the connection) and log the same error again, as its own
        request.content.feed_eof()
        raise ApiError(400, "bad content encoding", f"the body is not {content_encoding(request)[:64]} data") from None
    except ConnectionResetError:  # the client went away: nobody reads the answer, but it is its doing
        request[BODY_UNREAD] = True
        raise ApiError(400, "incomplete body", "the connection closed before the end of the body") from None


class ApiError(Exception):
    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail

    def response(self) -> web.Response:
        return error(self.status, self.message, self.detail)


async def _ingest_alerts(request: web.Request, source: str) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    m = daemon.metrics
    try:
        body, data = await read_json(request)
        now = daemon.clock.now()
        rt = daemon.config.incidents.resolve_timeout
        if source == "alertmanager":
            alerts = parse_webhook(data, now=now, resolve_timeout=rt)
        else:
            alerts = parse_alert_list(data, now=now, resolve_timeout=rt, source=source)
    except ApiError as exc:
        m.alerts_received.labels(source, "rejected").inc()
        return exc.response()
    except PayloadError as exc:
        m.alerts_received.labels(source, "rejected").inc()
        return error(400, "invalid alerts", str(exc))
    if not alerts:
        return web.json_response({"status": "success", "accepted": 0})
    from daemon.app import InboxFull

    try:
        await daemon.accept("alerts", source, body, alerts)
    except InboxFull:
        m.alerts_received.labels(source, "throttled").inc(len(alerts))
        retry = daemon.config.inbox.retry_after
        return error(503, "inbox full", f"the pipeline is behind; retry in {retry}s",
                     headers={"Retry-After": str(retry)})
    m.alerts_received.labels(source, "accepted").inc(len(alerts))
    return web.json_response({"status": "success", "accepted": len(alerts)})


async def post_webhook(request: web.Request) -> web.Response:
    return await _ingest_alerts(request, "alertmanager")


async def post_alerts(request: web.Request) -> web.Response:
    return await _ingest_alerts(request, "api")


async def post_samples(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    try:
        body, data = await read_json(request)
        samples = parse_samples(data)
        ahead = daemon.clock.now() + MAX_AHEAD
        for i, (_, at, _) in enumerate(samples):
            if at > ahead:  # a series' detector takes no sample older than its newest
                raise PayloadError(f"[{i}].at", f"more than {int(MAX_AHEAD)}s ahead of the daemon's clock")
    except ApiError as exc:
        daemon.metrics.samples_received.labels("rejected").inc()
        return exc.response()
    except PayloadError as exc:
        daemon.metrics.samples_received.labels("rejected").inc()
        return error(400, "invalid samples", str(exc))
    if samples:
        from daemon.app import InboxFull

        try:
            await daemon.accept("samples", "api", body, samples)
        except InboxFull:
            retry = daemon.config.inbox.retry_after
            return error(503, "inbox full", f"retry in {retry}s", headers={"Retry-After": str(retry)})
    daemon.metrics.samples_received.labels("accepted").inc(len(samples))
    return web.json_response({"status": "success", "accepted": len(samples)})


async def get_metrics(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    # generate_latest writes text format 0.0.4, which every Prometheus 2.x reads
    return web.Response(body=daemon.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    if daemon.ready:
        return web.json_response({"status": "ready"})
    return error(503, "not ready", "store unreachable or configuration not loaded")


async def list_incidents(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    state = request.query.get("state", "open")
    if state not in ("open", "resolved", "all"):
        return error(400, "invalid state", "state must be open, resolved or all")
    limit = None
    if "limit" in request.query:
        limit = query_count(request.query["limit"], MAX_LIST)
        if limit is None:
            return error(400, "invalid limit", f"limit must be an integer from 1 to {MAX_LIST}")
    before_seq = None
    if "before" in request.query:
        before_seq = incident_seq(daemon.store, request.query["before"])
        if before_seq is None:
            return error(400, "invalid before", f"no such incident: {request.query['before'][:200]!r}")
    docs = load_incident_docs(daemon.store, state, limit, before_seq)
    live = daemon.incidents.get
    # incidents still in memory are shown as they are now: a re-post updates the
    # stored document only lazily (see IncidentManager.drain_writes)
    views = [incident_view(inc.to_doc() if (inc := live(d["id"])) is not None else d) for d in docs]
    return web.json_response({"incidents": views})


async def get_incident(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    iid = request.match_info["id"]
    doc = load_incident_doc(daemon.store, iid)
    live = daemon.incidents.get(iid)
    if live is not None:
        doc = live.to_doc()
    if doc is None:
        return error(404, "no such incident", iid)
    view = incident_view(doc)
    view["timeline"] = timeline_view(daemon.store, iid)
    return web.json_response(view)


async def _optional_json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    body, data = await read_json(request)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid body", "expected a JSON object")
    return data


def _actor(request: web.Request, data: dict[str, Any], key: str = "author") -> str:
    ident = request.get("identity")
    if ident:
        return str(ident)
    value = data.get(key)
    if value is None or value == "":  # (a wrong type is refused below, not taken as none)
        value = data.get("actor")
    if value is None or value == "":
        value = "anonymous"
    if not isinstance(value, str):
        raise ApiError(400, "invalid body", f"{key}: expected a string")
    if len(value) > MAX_NAME:
        raise ApiError(400, "invalid body", f"{key}: at most {MAX_NAME} characters")
    return value


async def _command(request: web.Request, action: str) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    iid = request.match_info["id"]
    try:
        data = await _optional_json(request)
        actor = _actor(request, data)
        now = daemon.clock.now()
        if action == "ack":
            daemon.incidents.acknowledge(iid, actor, now)
        elif action == "resolve":
            note = data.get("note", "")
            if not isinstance(note, str):
                raise ApiError(400, "invalid body", "note: expected a string")
            if len(note) > MAX_TEXT:
                raise ApiError(400, "invalid body", f"note: at most {MAX_TEXT} characters")
            daemon.incidents.resolve(iid, actor, now, note)
        elif action == "merge":
            daemon.incidents.merge(iid, _incident_ids(data), actor, now)
        elif action == "split":
            iid = daemon.incidents.split(iid, _fingerprints(data), actor, now).id
        else:
            text = data.get("text")
            if not isinstance(text, str) or not text.strip():
                raise ApiError(400, "invalid note", "text: a non-empty string is required")
            if len(text) > MAX_TEXT:
                raise ApiError(400, "invalid note", f"text: at most {MAX_TEXT} characters")
            if daemon.incidents.get(iid) is None and load_incident_doc(daemon.store, iid) is not None:
                daemon.incidents.add_note_to_stored(iid, text, actor, now)
            else:
                daemon.incidents.add_note(iid, text, actor, now)
        daemon.pipeline.publish(daemon.incidents.drain_changes(), now)
        await daemon.flush()
    except ApiError as exc:
        return exc.response()
    except IncidentError as exc:
        if exc.status == 404:
            wanted = [iid, *(_incident_ids(data) if action == "merge" else [])]
            unknown = [i for i in wanted if load_incident_doc(daemon.store, i) is None]
            if unknown:
                return error(404, "no such incident", unknown[0])
            return error(409, str(exc), iid)
        return error(exc.status, str(exc), iid)
    doc = load_incident_doc(daemon.store, iid)
    view = incident_view(doc) if doc else {"id": iid}
    return web.json_response(view, status=201 if action in ("notes", "split") else 200)


MAX_MERGE = 100  # incidents merged by one request


def _incident_ids(data: dict[str, Any]) -> list[str]:
    ids = data.get("incidents")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise ApiError(400, "invalid body", "incidents: a non-empty list of incident ids is required")
    if len(ids) > MAX_MERGE:
        raise ApiError(400, "invalid body", f"incidents: at most {MAX_MERGE} at a time")
    return ids


def _fingerprints(data: dict[str, Any]) -> list[str]:
    fps = data.get("alerts")
    if not isinstance(fps, list) or not fps or not all(isinstance(f, str) and f for f in fps):
        raise ApiError(400, "invalid body", "alerts: a non-empty list of alert fingerprints is required")
    return fps


async def ack_incident(request: web.Request) -> web.Response:
    return await _command(request, "ack")


async def resolve_incident(request: web.Request) -> web.Response:
    return await _command(request, "resolve")


async def add_note(request: web.Request) -> web.Response:
    return await _command(request, "notes")


async def merge_incidents(request: web.Request) -> web.Response:
    return await _command(request, "merge")


async def split_incident(request: web.Request) -> web.Response:
    return await _command(request, "split")


async def post_reload(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    result = await daemon.reload()
    return web.json_response(result, status=200 if result["ok"] else 400)


RouteAdder = Callable[[web.Application, "Daemon"], None]
_EXTRA_ROUTES: list[RouteAdder] = []


def register_routes(adder: RouteAdder) -> RouteAdder:
    """Let a package add its endpoints (silences, problems, CMDB) to the app."""
    _EXTRA_ROUTES.append(adder)
    return adder


def make_app(daemon: Daemon) -> web.Application:
    from daemon.auth import auth_middleware

    auth = daemon.components.parts.get("auth")
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware(lambda: getattr(auth, "settings", None))],
        client_max_size=daemon.config.inbox.max_body_bytes + 1,
    )
    app[DAEMON_KEY] = daemon
    r = app.router
    r.add_post("/api/v1/alerts/alertmanager", post_webhook)
    r.add_post("/api/v1/alerts", post_alerts)
    r.add_post("/api/v2/alerts", post_alerts)  # Prometheus posting straight to incidentd
    r.add_post("/api/v1/samples", post_samples)
    r.add_get("/metrics", get_metrics)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/api/v1/incidents", list_incidents)
    r.add_get("/api/v1/incidents/{id}", get_incident)
    r.add_post("/api/v1/incidents/{id}/ack", ack_incident)
    r.add_post("/api/v1/incidents/{id}/resolve", resolve_incident)
    r.add_post("/api/v1/incidents/{id}/notes", add_note)
    r.add_post("/api/v1/incidents/{id}/merge", merge_incidents)
    r.add_post("/api/v1/incidents/{id}/split", split_incident)
    r.add_post("/-/reload", post_reload)
    for adder in _EXTRA_ROUTES:
        adder(app, daemon)
    for part in daemon.components.parts.values():
        routes = getattr(part, "add_routes", None)
        if routes is not None:
            routes(app, daemon)
    for route in app.router.routes():
        # (aiohttp takes an `Expect` handler only as a route is added, and keeps it here)
        route._expect_handler = _expecting(route._expect_handler)  # type: ignore[assignment]
    return app
