"""Alert identity and timestamps follow Prometheus and Alertmanager exactly."""

import json
from pathlib import Path

import pytest

from daemon.model import fingerprint, severity_rank
from daemon.timefmt import format_rfc3339, parse_duration, parse_rfc3339

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


def test_severity_order():
    assert severity_rank("critical") > severity_rank("warning") > severity_rank("info") > severity_rank(None)
