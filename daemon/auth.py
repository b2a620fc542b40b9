"""API security: bearer tokens with roles, per-token rate and body-size limits, TLS.

Tokens are configured by the SHA-256 of their value (never the value itself);
each has a name, which becomes the actor of the acks, resolves and notes it
makes, and a role:

- `ingest`: post alerts and samples;
- `responder`: acknowledge, resolve, merge and split incidents, add notes, and read the API;
- `admin`: everything (reload, silences, changes, ...).

Without any token configured the API stays open (the built-in defaults must
work without setup); the daemon says so in its log at start.

```yaml
auth:
  tokens:
    - {name: alertmanager, role: ingest, token_sha256: 9f86d0..., rate_limit: 100, burst: 200}
    - {name: alice, role: responder, token_sha256: ..., max_body_bytes: 65536}
  open_endpoints: [/healthz, /readyz, /metrics]   # the default
tls: {cert: server.crt, key: server.key}
```
`incidentd hash-token` prints the hash of a token (or of a new random one).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import secrets
import ssl
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from daemon.config import Config, ConfigError
from daemon.yamlsrc import line_of

if TYPE_CHECKING:  # the HTTP side loads aiohttp when the daemon serves
    from aiohttp import web

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = structlog.get_logger("incidentd.auth")

ROLES = ("ingest", "responder", "admin")
DEFAULT_OPEN = ("/healthz", "/readyz", "/metrics")
_INGEST = re.compile(r"^/api/v[12]/(alerts(/alertmanager)?|samples)$")
_RESPONDER = re.compile(r"^/api/v1/incidents/[^/]+/(ack|resolve|notes|merge|split)$")


@dataclass(slots=True)
class Token:
    name: str
    role: str
    sha256: str
    rate_limit: float | None = None  # requests per second
    burst: float = 0.0
    max_body_bytes: int | None = None
    tokens: float = 0.0  # the bucket
    refilled: float = 0.0


@dataclass(slots=True)
class AuthSettings:
    tokens: dict[str, Token] = field(default_factory=dict)  # by sha256
    open_endpoints: tuple[str, ...] = DEFAULT_OPEN
    tls_cert: str | None = None
    tls_key: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)


def hash_token(token: str) -> str:
    # a header's bytes that are not UTF-8 reach here as surrogates: they hash, and match no token
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def required_role(method: str, path: str) -> str:
    """`read` for GETs (any role but ingest), else the role the endpoint needs."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return "read"
    if _INGEST.match(path):
        return "ingest"
    if _RESPONDER.match(path):
        return "responder"
    return "admin"


def allows(role: str, need: str) -> bool:
    if role == "admin":
        return True
    if need == "read":
        return role == "responder"
    return role == need


def parse_auth(config: Config) -> tuple[AuthSettings, list[str]]:
    raw = config.raw if isinstance(config.raw, Mapping) else {}
    where = config.path or "<config>"
    errors: list[str] = []
    s = AuthSettings()

    def err(node: Any, key: Any, msg: str) -> None:
        errors.append(f"{where}:{line_of(node, key)}: {msg}")

    auth = raw.get("auth")
    if auth is not None:
        if not isinstance(auth, Mapping):
            err(raw, "auth", "auth must be a mapping with tokens and open_endpoints")
            auth = {}
        tokens = auth.get("tokens", [])
        if not isinstance(tokens, list):
            err(auth, "tokens", "auth.tokens must be a list")
            tokens = []
        names: set[str] = set()
        for i, t in enumerate(tokens):
            w = f"auth.tokens[{i}]"
            if not isinstance(t, Mapping):
                err(tokens, i, f"{w} must be a mapping with name, role and token_sha256")
                continue
            name, role, digest = t.get("name"), t.get("role"), str(t.get("token_sha256", "")).lower()
            if not isinstance(name, str) or not name:
                err(t, "name", f"{w}.name is required (a non-empty string)")
                continue
            if name in names:
                err(t, "name", f"{w}: duplicate token name {name!r}")
            names.add(name)
            if role not in ROLES:
                err(t, "role", f"{w}.role must be one of {', '.join(ROLES)}")
                continue
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                err(t, "token_sha256", f"{w}.token_sha256 must be 64 hex digits (see `incidentd hash-token`)")
                continue
            tok = Token(name, role, digest)
            for key in ("rate_limit", "burst", "max_body_bytes"):
                if key in t:
                    v = t[key]
                    if not isinstance(v, int | float) or isinstance(v, bool) or v <= 0:
                        err(t, key, f"{w}.{key} must be a positive number")
                    elif key == "max_body_bytes" and not isinstance(v, int):
                        err(t, key, f"{w}.max_body_bytes must be a whole number of bytes")
                    else:
                        setattr(tok, key, int(v) if key == "max_body_bytes" else float(v))
            if tok.rate_limit is not None and tok.burst <= 0:
                tok.burst = max(1.0, tok.rate_limit)
            tok.tokens = tok.burst
            for key in t:
                if key not in ("name", "role", "token_sha256", "rate_limit", "burst", "max_body_bytes"):
                    err(t, key, f"unknown key {w}.{key}")
            if digest in s.tokens:  # one secret cannot be two identities (nor two roles)
                err(t, "token_sha256", f"{w}.token_sha256 is the same as that of token "
                                       f"{s.tokens[digest].name!r}: one token, one identity")
                continue
            s.tokens[digest] = tok
        if "open_endpoints" in auth:
            v = auth["open_endpoints"]
            if not isinstance(v, list) or not all(isinstance(x, str) and x.startswith("/") for x in v):
                err(auth, "open_endpoints", "auth.open_endpoints must be a list of paths")
            else:
                s.open_endpoints = tuple(v)
        for key in auth:
            if key not in ("tokens", "open_endpoints"):
                err(auth, key, f"unknown key auth.{key}")
    tls = raw.get("tls")
    if tls is not None:
        if not isinstance(tls, Mapping) or not isinstance(tls.get("cert"), str) or not isinstance(tls.get("key"), str):
            err(raw, "tls", "tls must be {cert: PATH, key: PATH}")
        else:
            s.tls_cert, s.tls_key = config.resolve(tls["cert"]), config.resolve(tls["key"])
            for key in tls:
                if key not in ("cert", "key"):
                    err(tls, key, f"unknown key tls.{key} (tls takes cert and key)")
    return s, errors


def check_auth(config: Config) -> list[str]:
    import os

    settings, errors = parse_auth(config)
    tls = config.raw.get("tls") if isinstance(config.raw, Mapping) else None
    missing = False
    for key, path in (("cert", settings.tls_cert), ("key", settings.tls_key)):
        if path and not os.path.isfile(path):
            errors.append(f"{config.path}:{line_of(tls, key)}: TLS file not found: {path}")
            missing = True
    if settings.tls_cert and not missing:
        try:
            ssl_context(settings)
        except (ssl.SSLError, OSError) as exc:
            errors.append(f"{config.path}:{line_of(config.raw, 'tls')}: cannot load the TLS certificate and key "
                          f"({settings.tls_cert}, {settings.tls_key}): {_ssl_reason(exc)}")
    return errors


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, _NeedsPassphrase):
        return str(exc)
    reason = getattr(exc, "reason", None)
    if reason == "KEY_VALUES_MISMATCH":
        return "the key does not belong to the certificate"
    if reason == "NO_START_LINE" or (isinstance(exc, ssl.SSLError) and reason in (None, "PEM_LIB")):
        return "not a PEM certificate and unencrypted PEM key"
    return str(reason or exc)


class _NeedsPassphrase(OSError):
    pass


def _no_passphrase() -> str:
    # a daemon has nobody to type a passphrase: never prompt on a terminal
    raise _NeedsPassphrase("the key is encrypted; give an unencrypted key (readable by the daemon only)")


def ssl_context(settings: AuthSettings) -> ssl.SSLContext | None:
    if not settings.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(settings.tls_cert, settings.tls_key, password=_no_passphrase)
    return ctx


class AuthPart:
    """Holds the auth settings (reloadable, so tokens can rotate) and logs the mode at start."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings, errors = parse_auth(config)
        if errors:
            raise ConfigError(errors)

    async def start(self) -> None:
        if self.settings.enabled:
            log.info("API requires bearer tokens", tokens=len(self.settings.tokens),
                     open_endpoints=list(self.settings.open_endpoints))
        else:
            log.warning("API is open: no auth tokens configured (auth.tokens)")

    def reload(self, fresh: Config) -> list[str]:
        settings, errors = parse_auth(fresh)
        if errors:
            return errors
        old = {t.name: t for t in self.settings.tokens.values()}
        for t in settings.tokens.values():  # keep the rate-limit buckets of tokens that stay
            if t.name in old and old[t.name].sha256 == t.sha256:
                t.tokens, t.refilled = old[t.name].tokens, old[t.name].refilled
        settings.tls_cert, settings.tls_key = self.settings.tls_cert, self.settings.tls_key  # needs a restart
        if self.settings.enabled and not settings.enabled:
            log.warning("API is open: the reloaded config has no auth tokens (auth.tokens); it required them before")
        self.settings = settings
        return []


def _deny(status: int, message: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    from aiohttp import web

    return web.json_response({"error": message, "detail": detail}, status=status, headers=headers)


def _take(tok: Token, now: float) -> float:
    """Token bucket: 0 when the request may go, else seconds until it may."""
    if tok.rate_limit is None:
        return 0.0
    if tok.refilled:
        tok.tokens = min(tok.burst, tok.tokens + (now - tok.refilled) * tok.rate_limit)
    tok.refilled = now
    if tok.tokens >= 1:
        tok.tokens -= 1
        return 0.0
    return (1 - tok.tokens) / tok.rate_limit


def auth_middleware(get_settings: Callable[[], AuthSettings | None]) -> Any:
    """The aiohttp middleware: 401 without a valid token, 403 with the wrong role,
    429 over the token's rate, 413 over its body size; sets `request["identity"]`."""
    from aiohttp import web

    from daemon.api import ApiError, content_encoding, read_body  # (that module installs this one)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        s = get_settings()
        if s is None or not s.enabled or request.path in s.open_endpoints:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="incidentd"'}
        if scheme.lower() != "bearer" or not value.strip():
            return _deny(401, "authentication required", "send Authorization: Bearer <token>", challenge)
        tok = s.tokens.get(hash_token(value.strip()))
        if tok is None:
            return _deny(401, "invalid token", "the token is not configured", challenge)
        need = required_role(request.method, request.path)
        if not allows(tok.role, need):
            return _deny(403, "forbidden", f"token {tok.name!r} has role {tok.role}; "
                                           f"{request.method} {request.path} needs {need if need != 'read' else 'responder'}")
        wait = _take(tok, time.monotonic())
        if wait > 0:
            return _deny(429, "rate limit exceeded", f"token {tok.name!r} is limited to {tok.rate_limit:g} requests/s",
                         {"Retry-After": str(max(1, int(wait + 0.999)))})
        if tok.max_body_bytes is not None and request.can_read_body:
            length = request.content_length
            encoding = content_encoding(request)
            if length is None or encoding != "identity":
                try:  # the body as the handler will see it (decompressed), cached for it
                    length = len(await read_body(request))
                except ApiError as exc:
                    return exc.response()
            if length > tok.max_body_bytes:
                return _deny(413, "request body too large", f"the limit for token {tok.name!r} is {tok.max_body_bytes} bytes")
        with warnings.catch_warnings():  # the core reads the plain key "identity" (daemon.api._actor)
            warnings.simplefilter("ignore")
            request["identity"] = tok.name
        return await handler(request)

    return middleware


# -- `incidentd hash-token` ------------------------------------------------------


def configure_hash_token(p: argparse.ArgumentParser) -> None:
    p.add_argument("token", nargs="?", help="the token (default: read one line from stdin)")
    p.add_argument("--generate", action="store_true", help="make a new random token and print it with its hash")


def run_hash_token(args: argparse.Namespace) -> int:
    if args.generate:
        token = "-"
        while token.startswith("-"):  # one that `incidentd hash-token TOKEN` can take back
            token = secrets.token_urlsafe(32)
        print(f"token: {token}")
        print(f"token_sha256: {hash_token(token)}")
        return 0
    # stripped as the API strips the Authorization header's value
    token = (args.token if args.token is not None else sys.stdin.readline()).strip()
    if not token:
        print("incidentd: no token given", file=sys.stderr)
        return 1
    print(hash_token(token))
    return 0
