"""Validation of what clients post: Alertmanager webhooks, API v2 alert lists, samples.

Everything a client sends is checked before anything is stored; the first
problem is reported with its place (`alerts[3].labels.severity: expected a
string`), so the sender can fix it. Nothing here touches the store.
"""

from __future__ import annotations

import math
from typing import Any

from daemon.model import LABEL_NAME, Alert
from daemon.timefmt import MAX_TS, TimestampError, parse_rfc3339

_TS_CACHE: dict[str, float | None] = {}
_VALID_NAMES: set[str] = set()  # label names already checked against LABEL_NAME
_MISSING = object()
_STR_ONLY = {str}


class PayloadError(ValueError):
    """A client error: `where` names the offending part of the payload."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


def parse_time(value: Any, where: str) -> float | None:
    """RFC 3339 to epoch seconds (None for Go's zero time); cached, since
    `startsAt` repeats on every re-send of an alert."""
    if not isinstance(value, str):
        raise PayloadError(where, f"expected an RFC 3339 timestamp string, got {_kind(value)}")
    try:
        return _TS_CACHE[value]
    except KeyError:
        pass
    try:
        ts = parse_rfc3339(value)
    except TimestampError as exc:
        raise PayloadError(where, str(exc)) from None
    if len(_TS_CACHE) > 100_000:
        _TS_CACHE.clear()
    _TS_CACHE[value] = ts
    return ts


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _string_map(value: Any, where: str, *, required: bool) -> dict[str, str]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(where, f"expected an object of strings, got {_kind(value)}")
    if required and not value:
        raise PayloadError(where, "at least one label is required")
    for k, v in value.items():
        if not isinstance(v, str):
            raise PayloadError(f"{where}.{k}", f"expected a string, got {_kind(v)}")
        if required and not LABEL_NAME.match(k):
            raise PayloadError(f"{where}.{k}", "invalid label name (must match [A-Za-z_][A-Za-z0-9_]*)")
    if required:
        if len(_VALID_NAMES) > 10_000:
            _VALID_NAMES.clear()
        _VALID_NAMES.update(value)
        if "" in value.values():
            # as in Alertmanager (and Prometheus), a label with an empty value is no label:
            # {a="x", b=""} is the alert {a="x"}, with the same fingerprint
            value = {k: v for k, v in value.items() if v}
            if not value:
                raise PayloadError(where, "at least one label with a non-empty value is required")
    return value


def _checked_time(value: Any) -> Any:
    """The timestamp (None for absent or Go's zero time), or _MISSING when it is not a
    valid one. A new one is parsed here: every new occurrence of an alert brings a new
    `startsAt`, and the full path would check the whole alert again for it."""
    if value is None or value == "":
        return None
    if type(value) is not str:
        return _MISSING
    try:
        return parse_time(value, "")
    except PayloadError:
        return _MISSING


def _fast_alert(obj: Any, now: float, source: str, status_field: bool, resolve_timeout: float) -> Alert | None:
    """`parse_alert` for the common case: a well-formed alert whose label names were
    seen before. None means: take the full path, which also names the problem if
    there is one."""
    if type(obj) is not dict:
        return None
    labels = obj.get("labels")
    if type(labels) is not dict or not labels or not _VALID_NAMES.issuperset(labels) \
            or not set(map(type, labels.values())) <= _STR_ONLY or "" in labels.values():
        return None
    annotations = obj.get("annotations")
    if annotations is None:
        annotations = {}
    elif type(annotations) is not dict or not set(map(type, annotations.values())) <= _STR_ONLY:
        return None
    starts_at = _checked_time(obj.get("startsAt"))
    ends_at = _checked_time(obj.get("endsAt"))
    if starts_at is _MISSING or ends_at is _MISSING:
        return None
    if starts_at is not None and ends_at is not None and ends_at < starts_at:
        return None
    gen = obj.get("generatorURL")
    if gen is None:
        gen = ""
    elif type(gen) is not str:
        return None
    status = None
    if status_field:
        status = obj.get("status", "firing")
        if status not in ("firing", "resolved"):
            return None
    return _alert(labels, annotations, starts_at, ends_at, status, gen, now, source, resolve_timeout)


def _alert(labels: dict[str, str], annotations: dict[str, str], starts_at: float | None, ends_at: float | None,
           status: str | None, gen: str, now: float, source: str, resolve_timeout: float) -> Alert:
    """The alert from validated fields. A webhook's `status` is taken as sent (a resolved
    alert without `endsAt` ends now); without one (API v2) an `endsAt` in the past means
    resolved, and a firing alert without one ends `resolve_timeout` from now unless
    posted again, as in Alertmanager. A `startsAt` ahead of the clock (a sender's clock
    running fast) moves those default ends along, so that no alert ends before it starts;
    without `startsAt`, an alert that ended already started then (Alertmanager takes
    `endsAt` for it), so that a resolution sent again is known for the same occurrence."""
    if starts_at is None:
        start = now if ends_at is None else min(now, ends_at)
    else:
        start = starts_at
    if status == "resolved":
        if ends_at is None:
            ends_at = max(now, start)
    elif status is None:
        if ends_at is not None and ends_at <= now:
            status = "resolved"
        else:
            status = "firing"
            if ends_at is None:
                ends_at = min(max(now, start) + resolve_timeout, MAX_TS)
    return Alert(labels=labels, annotations=annotations, starts_at=start,
                 ends_at=ends_at, status=status, generator_url=gen, source=source, received_at=now)


def parse_alert(obj: Any, where: str, *, now: float, source: str, status_field: bool,
                resolve_timeout: float) -> Alert:
    """One alert. `status_field`: webhook alerts carry `status`; API v2 alerts derive
    it from `endsAt` (in the past means resolved), as Alertmanager does."""
    if not isinstance(obj, dict):
        raise PayloadError(where, f"expected an alert object, got {_kind(obj)}")
    labels = _string_map(obj.get("labels"), f"{where}.labels", required=True)
    annotations = _string_map(obj.get("annotations"), f"{where}.annotations", required=False)
    starts_at = parse_time(obj["startsAt"], f"{where}.startsAt") if obj.get("startsAt") not in (None, "") else None
    ends_at = parse_time(obj["endsAt"], f"{where}.endsAt") if obj.get("endsAt") not in (None, "") else None
    if starts_at is not None and ends_at is not None and ends_at < starts_at:
        raise PayloadError(f"{where}.endsAt", "endsAt is before startsAt")
    gen = obj.get("generatorURL", "")
    if gen is None:
        gen = ""
    if not isinstance(gen, str):
        raise PayloadError(f"{where}.generatorURL", f"expected a string, got {_kind(gen)}")
    status = None
    if status_field:
        status = obj.get("status", "firing")
        if status not in ("firing", "resolved"):
            raise PayloadError(f"{where}.status", f"expected 'firing' or 'resolved', got {status!r}"[:200])
    return _alert(labels, annotations, starts_at, ends_at, status, gen, now, source, resolve_timeout)


def read_alert(obj: Any, where: str, *, now: float, source: str, status_field: bool,
               resolve_timeout: float) -> Alert:
    """`parse_alert`, through the fast path when the alert is a well-formed re-post."""
    return _fast_alert(obj, now, source, status_field, resolve_timeout) or parse_alert(
        obj, where, now=now, source=source, status_field=status_field, resolve_timeout=resolve_timeout)


def parse_webhook(body: Any, *, now: float, resolve_timeout: float) -> list[Alert]:
    """Alertmanager's webhook payload (version 4)."""
    if not isinstance(body, dict):
        raise PayloadError("", f"expected an Alertmanager webhook object, got {_kind(body)}")
    version = body.get("version", "4")
    if version != "4":
        raise PayloadError("version", f"unsupported webhook version {version!r}; incidentd reads version \"4\""[:200])
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts", f"expected a list of alerts, got {_kind(alerts)}")
    return [read_alert(a, f"alerts[{i}]", now=now, source="alertmanager", status_field=True,
                       resolve_timeout=resolve_timeout) for i, a in enumerate(alerts)]


def parse_alert_list(body: Any, *, now: float, resolve_timeout: float, source: str = "api") -> list[Alert]:
    """A JSON list of alerts in Alertmanager API v2 form (`POST /api/v2/alerts`)."""
    if not isinstance(body, list):
        raise PayloadError("", f"expected a JSON list of alerts, got {_kind(body)}")
    return [read_alert(a, f"[{i}]", now=now, source=source, status_field=False, resolve_timeout=resolve_timeout)
            for i, a in enumerate(body)]


def parse_samples(body: Any) -> list[tuple[dict[str, str], float, float]]:
    """`[{"labels": {"__name__": ...}, "value": float, "at": RFC3339}]` to (labels, at, value)."""
    if not isinstance(body, list):
        raise PayloadError("", f"expected a JSON list of samples, got {_kind(body)}")
    out = []
    for i, s in enumerate(body):
        where = f"[{i}]"
        if not isinstance(s, dict):
            raise PayloadError(where, f"expected a sample object, got {_kind(s)}")
        labels = _string_map(s.get("labels"), f"{where}.labels", required=True)
        if "__name__" not in labels:
            raise PayloadError(f"{where}.labels", "the __name__ label is required")
        value = s.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PayloadError(f"{where}.value", f"expected a number, got {_kind(value)}")
        try:
            value = float(value)
        except OverflowError:
            raise PayloadError(f"{where}.value", "number out of range") from None
        if not math.isfinite(value):
            raise PayloadError(f"{where}.value", "expected a finite number")
        at = parse_time(s.get("at"), f"{where}.at")
        if at is None:
            raise PayloadError(f"{where}.at", "the zero time is not a sample time")
        out.append((labels, at, float(value)))
    return out
