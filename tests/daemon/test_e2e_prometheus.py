"""End to end with Debian's Prometheus and Alertmanager on loopback.

Prometheus scrapes a small exporter the test runs (`sink_fault` gauges) and
incidentd's own `/metrics`; its `ServiceFault` rule fires, Alertmanager
delivers the webhook to a real `incidentd run`, and the test checks the
incident, its resolution once the gauges drop to 0, and that Prometheus sees
incidentd's target up. The configs are those of the captured fixtures
(../shared/fixtures/setup) with free ports. Prometheus runs with a short
`--rules.alert.resend-delay`: an alert that fires at its first evaluation is
otherwise only sent a minute later.
"""

import json
import shutil
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
from aiohttp import web
from daemon_helpers import DaemonProcess, free_port, http_get

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or ALERTMANAGER is None,
    reason="needs Debian's prometheus and prometheus-alertmanager (apt-get install prometheus "
    "prometheus-alertmanager; .ci/run installs them)",
)

ALERTMANAGER_YML = """\
route:
  receiver: incidentd
  group_by: ['alertname', 'service']
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1m
receivers:
  - name: incidentd
    webhook_configs:
      - url: http://127.0.0.1:{incidentd}/api/v1/alerts/alertmanager
        send_resolved: true
        max_alerts: 0
"""

PROMETHEUS_YML = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
  external_labels:
    cluster: local
rule_files: [rules.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:{alertmanager}']
scrape_configs:
  - job_name: incidentd
    static_configs:
      - targets: ['127.0.0.1:{incidentd}']
  - job_name: exporter
    static_configs:
      - targets: ['127.0.0.1:{exporter}']
"""

RULES_YML = """\
groups:
  - name: incidentd-e2e
    interval: 1s
    rules:
      - alert: ServiceFault
        expr: sink_fault > 0
        labels:
          severity: critical
        annotations:
          summary: '{{ $labels.service }} is failing on {{ $labels.pod }}'
          runbook_url: https://runbooks.example.org/ServiceFault
"""

PODS = ("checkout-6f7c9d8b5-q7wzn", "checkout-6f7c9d8b5-x2k8p")
WAIT = 90.0  # seconds: bound on every wait (service discovery alone takes ~5 s)


class Exporter:
    """Serves `sink_fault{service, pod}` gauges for Prometheus to scrape."""

    def __init__(self) -> None:
        self.faults = {pod: 1 for pod in PODS}
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def metrics(self, request: web.Request) -> web.Response:
        lines = ["# HELP sink_fault 1 while the pod is failing.", "# TYPE sink_fault gauge"]
        lines += [
            f'sink_fault{{service="checkout",pod="{pod}"}} {v}' for pod, v in self.faults.items()
        ]
        return web.Response(text="\n".join(lines) + "\n")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def until(what: str, fetch, predicate, procs: list[subprocess.Popen]):
    import asyncio

    deadline = time.monotonic() + WAIT
    last = None
    while time.monotonic() < deadline:
        for p in procs:
            assert p.poll() is None, (
                f"{p.args[0]} exited with {p.returncode} while waiting for {what}"
            )
        try:
            last = fetch()
            if predicate(last):
                return last
        except (OSError, ValueError, KeyError):
            pass
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what}: not within {WAIT}s; last seen {last!r}"[:3000])


def get_json(url: str):
    status, body = http_get(url, timeout=5)
    if status != 200:
        raise ValueError(status)
    return json.loads(body)


async def test_alertmanager_webhook_opens_and_resolves_an_incident_and_prometheus_scrapes_incidentd(
    tmp_path: Path,
):
    exporter = Exporter()
    await exporter.start()
    incidentd = DaemonProcess(tmp_path / "incidentd").start()
    am_port, prom_port = free_port(), free_port()
    ports = {"incidentd": incidentd.port, "alertmanager": am_port, "exporter": exporter.port}
    (tmp_path / "alertmanager.yml").write_text(
        ALERTMANAGER_YML.replace("{incidentd}", str(incidentd.port))
    )
    prom_yml = PROMETHEUS_YML
    for name, port in ports.items():
        prom_yml = prom_yml.replace("{" + name + "}", str(port))
    (tmp_path / "prometheus.yml").write_text(prom_yml)
    (tmp_path / "rules.yml").write_text(RULES_YML)

    procs: list[subprocess.Popen] = []
    logs = []
    try:
        for name, cmd in (
            (
                "alertmanager",
                [
                    ALERTMANAGER,
                    "--config.file=alertmanager.yml",
                    "--storage.path=am-data",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    f"--web.external-url=http://127.0.0.1:{am_port}/",
                    "--cluster.listen-address=",
                ],
            ),
            (
                "prometheus",
                [
                    PROMETHEUS,
                    "--config.file=prometheus.yml",
                    "--storage.tsdb.path=prom-data",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    f"--web.external-url=http://127.0.0.1:{prom_port}/",
                    "--rules.alert.resend-delay=2s",
                ],
            ),
        ):
            log = open(tmp_path / f"{name}.log", "wb")
            logs.append(log)
            procs.append(subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT))
        procs.append(incidentd.proc)
        incidents_url = f"{incidentd.base}/api/v1/incidents?state=all"

        def fault_incidents():
            return [
                i
                for i in get_json(incidents_url)["incidents"]
                if any(a["labels"].get("alertname") == "ServiceFault" for a in i["alerts"])
            ]

        [inc] = await until(
            "an incident with both pods' ServiceFault alerts",
            fault_incidents,
            lambda incs: len(incs) == 1 and len(incs[0]["alerts"]) == 2,
            procs,
        )
        assert inc["state"] == "open"
        assert inc["severity"] == "critical"
        assert sorted(a["labels"]["pod"] for a in inc["alerts"]) == sorted(PODS)
        for a in inc["alerts"]:
            assert a["status"] == "firing"
            assert a["labels"]["cluster"] == "local" and a["labels"]["job"] == "exporter"
            assert a["annotations"]["summary"] == f"checkout is failing on {a['labels']['pod']}"
        assert inc["title"].startswith("checkout is failing on ")

        exporter.faults[PODS[0]] = 0
        [inc] = await until(
            "the first pod's alert resolved",
            fault_incidents,
            lambda incs: sorted(a["status"] for a in incs[0]["alerts"]) == ["firing", "resolved"],
            procs,
        )
        assert inc["state"] == "open"

        exporter.faults[PODS[1]] = 0
        [inc] = await until(
            "the incident resolved",
            fault_incidents,
            lambda incs: incs[0]["state"] == "resolved",
            procs,
        )
        assert inc["resolved_by"] == "incidentd"
        assert all(a["status"] == "resolved" for a in inc["alerts"])

        query = urllib.parse.quote('up{job="incidentd"}')
        up = await until(
            "Prometheus to report incidentd up",
            lambda: get_json(f"http://127.0.0.1:{prom_port}/api/v1/query?query={query}"),
            lambda r: [s["value"][1] for s in r["data"]["result"]] == ["1"],
            procs,
        )
        assert up["data"]["result"][0]["metric"]["instance"] == f"127.0.0.1:{incidentd.port}"
        _, metrics = http_get(incidentd.base + "/metrics")
        assert (
            b'incidentd_alerts_received_total{outcome="accepted",source="alertmanager"}' in metrics
        )
    finally:
        for p in procs[:2]:
            stop_process(p)
        for log in logs:
            log.close()
        incidentd.stop()
        await exporter.stop()
