"""RFC 3339 timestamps in and out, as Alertmanager and Prometheus write them."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

# Go's zero time: Alertmanager's `endsAt` for an alert that is still firing.
GO_ZERO_TIME = "0001-01-01T00:00:00Z"

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z",
    re.ASCII,
)

# The times incidentd accepts: from the epoch to the last second that RFC 3339's
# four-digit year can write. Anything outside would come back out as no timestamp.
MIN_TS = 0.0
MAX_TS = 253402300799.0  # 9999-12-31T23:59:59Z


class TimestampError(ValueError):
    pass


def parse_rfc3339(text: str) -> float | None:
    """Parse an RFC 3339 timestamp to epoch seconds; Go's zero time gives None."""
    if not isinstance(text, str):
        raise TimestampError(f"expected an RFC 3339 string, got {type(text).__name__}")
    m = _RFC3339.match(text)
    if not m:
        raise TimestampError(f"not an RFC 3339 timestamp: {text[:64]!r}")
    year = int(m.group(1))
    if year <= 1:
        # Go's zero time (`0001-01-01T00:00:00Z`), or another way of writing no time
        # (`0000-00-00T00:00:00Z`); a date that could not be one is no time at all
        fields = [int(m.group(i)) for i in range(2, 7)]
        if any(fields):
            try:
                month, day, hour, minute, second = fields
                datetime(1, month, day, hour, minute, second)
            except ValueError:
                raise TimestampError(f"not a valid date/time: {text[:64]!r}") from None
        return None
    frac = m.group(7)
    tz = m.group(8)
    if tz == "Z" and text[10] == "T" and (not frac or len(frac) <= 7):
        # what the regex admits in this form, datetime's own parser reads five times faster
        try:
            return in_range(datetime.fromisoformat(text).timestamp(), text)
        except ValueError:
            pass  # an impossible date: the slow path says which
    try:
        dt = datetime(
            year,
            int(m.group(2)),
            int(m.group(3)),
            int(m.group(4)),
            int(m.group(5)),
            int(m.group(6)),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise TimestampError(f"not a valid date/time: {text[:64]!r}") from exc
    ts = dt.timestamp()
    if frac:
        ts += float(frac)
    if tz not in ("Z", "z"):
        hours, minutes = int(tz[1:3]), int(tz[4:6])
        if hours > 23 or minutes > 59:
            raise TimestampError(f"not a valid UTC offset: {text[:64]!r}")
        ts -= (1 if tz[0] == "+" else -1) * (hours * 3600 + minutes * 60)
    return in_range(ts, text)


def in_range(ts: float, shown: object) -> float:
    """`ts` if it lies between the epoch and the end of year 9999, else TimestampError."""
    if not MIN_TS <= ts <= MAX_TS:  # also false for NaN
        raise TimestampError(f"time out of range (1970 to 9999): {str(shown)[:64]!r}")
    return ts


def parse_time_value(value: object) -> float:
    """A time given in a config or API body: RFC 3339 text, epoch seconds, or a
    datetime that YAML already parsed (naive means UTC). Go's zero time is refused."""
    if isinstance(value, bool):
        raise TimestampError("expected an RFC 3339 time")
    if isinstance(value, int | float):
        return in_range(float(value), value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return in_range(value.timestamp(), value)
    ts = parse_rfc3339(value)  # type: ignore[arg-type]
    if ts is None:
        raise TimestampError("expected a real time, not Go's zero time")
    return ts


def format_rfc3339(ts: float | None, millis: bool = False) -> str | None:
    """Format epoch seconds as RFC 3339 UTC (`...Z`); None stays None."""
    if ts is None:
        return None
    if not millis:
        # time.gmtime: a third of the cost of a datetime, and results and views format
        # every timestamp they hold
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_duration(value: str | int | float) -> float:
    """Parse a Prometheus-style duration (`90s`, `5m`, `1h30m`, `7d`) to seconds;
    a number is seconds. NaN and infinite durations are refused: no timer could use them."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative: {value!r}")
        try:
            total = float(value)
        except OverflowError:  # an integer beyond any float
            total = math.inf
    elif not isinstance(value, str) or not value:
        raise ValueError(f"not a duration: {value!r}")
    else:
        total = 0.0
        pos = 0
        for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", value):
            if m.start() != pos:
                raise ValueError(f"not a duration: {value!r}")
            pos = m.end()
            n = float(m.group(1))
            total += n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}[m.group(2)]
        if pos != len(value):
            raise ValueError(f"not a duration (use e.g. 30s, 5m, 1h): {value!r}")
    if not math.isfinite(total):  # YAML's .nan and .inf, or digits past float's range
        raise ValueError(f"not a finite duration: {str(value)[:64]}")
    return total
