"""Random JSON at every ingest endpoint of a real `incidentd run`: never a 5xx,
the process never dies, and whatever was accepted is processed."""

import http.client
import json
import time

import pytest
from daemon_helpers import DaemonProcess, http_get
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ENDPOINTS = ["/api/v1/alerts", "/api/v2/alerts", "/api/v1/alerts/alertmanager", "/api/v1/samples"]

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
any_json = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
timestamps = (
    st.sampled_from(
        [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.123+02:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "",
            "now",
        ]
    )
    | st.text(max_size=30)
    | scalars
)
label_maps = st.dictionaries(
    st.sampled_from(["alertname", "severity", "service", "__name__", "a-b", ""])
    | st.text(max_size=8),
    st.text(max_size=12) | scalars,
    max_size=4,
)
alert_like = st.fixed_dictionaries(
    {},
    optional={
        "labels": label_maps | any_json,
        "annotations": label_maps,
        "startsAt": timestamps,
        "endsAt": timestamps,
        "status": st.sampled_from(["firing", "resolved", "pending"]) | scalars,
        "generatorURL": st.text(max_size=10) | scalars,
        "value": scalars,
        "at": timestamps,
    },
)
bodies = (
    any_json
    | st.lists(alert_like, max_size=5)
    | st.fixed_dictionaries(
        {"version": st.just("4") | scalars, "alerts": st.lists(alert_like, max_size=5)}
    )
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    proc = DaemonProcess(tmp_path_factory.mktemp("fuzz")).start()
    yield proc
    proc.stop()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(ENDPOINTS), body=bodies)
def test_random_json_never_gets_a_5xx(daemon, path, body):
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status < 500, payload
    if resp.status >= 400:
        assert payload["error"] and "Traceback" not in json.dumps(payload)
    assert daemon.proc.poll() is None


def test_the_daemon_survived_and_processed_what_it_accepted(daemon):
    assert daemon.proc.poll() is None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        _, text = http_get(daemon.base + "/metrics")
        if b"\nincidentd_inbox_depth 0.0\n" in text:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the inbox never drained")
    assert http_get(daemon.base + "/readyz")[0] == 200
    assert b'"level": "error"' not in daemon.log.read_bytes()
