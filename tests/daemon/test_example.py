"""The README's first command: the example config, CMDB and rules on a real daemon,
and examples/demo.sh (curl, the example webhook sink, the incident listing) against it."""

import os
import socket
import subprocess

from daemon_helpers import REPO, DaemonProcess

SINK_PORT = 9099  # where examples/config.yaml's receivers post; demo.sh starts the sink


def test_the_demo_shows_one_incident_with_its_root_cause_and_pages_its_team(tmp_path):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the sink (http.server) binds
        try:
            s.bind(("127.0.0.1", SINK_PORT))
        except OSError:
            raise AssertionError(f"port {SINK_PORT}, the example's webhook sink, is in use") from None
    daemon = DaemonProcess(tmp_path / "data", os.path.join(REPO, "examples", "config.yaml")).start()
    try:
        demo = subprocess.run(["sh", os.path.join(REPO, "examples", "demo.sh")], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "INCIDENTD_URL": daemon.base})
    finally:
        daemon.stop()
    assert demo.returncode == 0, demo.stderr
    out = demo.stdout
    assert '"accepted": 5' in out
    assert "[data-pager] opened: INC-000001 P1 orders-db is down (root cause orders-db)" in out
    assert "1 open incident(s)" in out
    assert "root cause: orders-db   impacted: shop, checkout, storefront, orders" in out
