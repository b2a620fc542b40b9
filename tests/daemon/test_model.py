"""Alert identity and timestamps follow Prometheus and Alertmanager exactly."""

import json
import math
from pathlib import Path

import pytest

from daemon.ingest import parse_alert
from daemon.model import fingerprint, severity_rank
from daemon.timefmt import (
    TimestampError,
    format_rfc3339,
    parse_duration,
    parse_rfc3339,
    parse_time_value,
)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


def test_fingerprint_matches_alertmanager_for_known_label_set():
    labels = {"alertname": "ServiceFault", "cluster": "local", "instance": "127.0.0.1:9095",
              "job": "incidentd", "pod": "checkout-6f7c9d8b5-q7wzn", "service": "checkout",
              "severity": "critical"}
    assert fingerprint(labels) == "ff5e725f12b78975"


def test_fingerprint_separates_names_from_values():
    assert fingerprint({"a": "bc"}) != fingerprint({"ab": "c"})


def test_fingerprint_ignores_label_order():
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures not present")
def test_fingerprint_reproduces_every_captured_webhook_fingerprint():
    seen = 0
    for path in FIXTURES.glob("alertmanager-webhook-*.json"):
        for alert in json.loads(path.read_text())["alerts"]:
            assert fingerprint(alert["labels"]) == alert["fingerprint"], path.name
            seen += 1
    assert seen >= 4


def test_go_zero_time_means_no_end():
    assert parse_rfc3339("0001-01-01T00:00:00Z") is None
    assert parse_rfc3339("0000-00-00T00:00:00Z") is None  # the same, as SQL writes no date


def test_a_zero_year_with_an_impossible_date_or_a_line_break_is_no_timestamp():
    for text in ("0001-99-99T99:99:99Z", "0000-13-01T00:00:00Z", "2026-11-24T10:00:00Z\n",
                 "0001-01-01T00:00:00Z\n"):
        with pytest.raises(TimestampError):
            parse_rfc3339(text)


def test_rfc3339_with_offset_and_millis():
    assert parse_rfc3339("2026-11-23T17:30:14.604Z") == pytest.approx(1795455014.604)
    assert parse_rfc3339("2026-11-23T18:30:14+01:00") == parse_rfc3339("2026-11-23T17:30:14Z")
    assert format_rfc3339(parse_rfc3339("2026-01-01T00:00:00Z")) == "2026-01-01T00:00:00Z"


def test_durations_in_prometheus_form():
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == 90
    assert parse_duration(15) == 15
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


def test_a_duration_that_is_not_a_finite_number_is_refused():
    for value in (math.nan, math.inf, 10**400, "9" * 400 + "s"):  # YAML .nan, .inf, and past float's range
        with pytest.raises(ValueError, match="not a finite duration"):
            parse_duration(value)


def test_severity_order():
    assert severity_rank("critical") > severity_rank("warning") > severity_rank("info") > severity_rank(None)


def test_rfc3339_refuses_what_it_could_not_write_back():
    for text in ("1969-12-31T23:59:59Z", "9999-12-31T23:59:59-23:59", "10000-01-01T00:00:00Z",
                 "2026-11-24T04:00:00+24:00", "2026-11-24T04:00:00,5Z"):
        with pytest.raises(TimestampError):
            parse_rfc3339(text)
    assert format_rfc3339(parse_rfc3339("9999-12-31T23:59:59Z")) == "9999-12-31T23:59:59Z"
    assert parse_time_value(0) == 0.0
    for value in (-1, 1e300, float("nan")):
        with pytest.raises(TimestampError, match="out of range"):
            parse_time_value(value)


def test_an_alert_starting_ahead_of_the_clock_does_not_end_before_it_starts():
    now, ahead = 1767225600.0, 1767225600.0 + 3600
    v2 = parse_alert({"labels": {"alertname": "A"}, "startsAt": format_rfc3339(ahead)}, "[0]",
                     now=now, source="api", status_field=False, resolve_timeout=300)
    assert (v2.status, v2.starts_at, v2.ends_at) == ("firing", ahead, ahead + 300)
    hook = parse_alert({"labels": {"alertname": "A"}, "status": "resolved", "startsAt": format_rfc3339(ahead)},
                       "[0]", now=now, source="webhook", status_field=True, resolve_timeout=300)
    assert hook.ends_at == ahead
