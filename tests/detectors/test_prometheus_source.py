"""The Prometheus source against a real Prometheus (Debian's package) on loopback,
scraping a tiny exporter the test runs; timeouts, retries and the failure metric."""

import asyncio
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiohttp import web
from daemon_client import start_daemon, write_config
from harness import free_port

from detectors.config import PrometheusSettings
from detectors.prometheus import PrometheusSource
from detectors.spec import DetectorSpec

PROMETHEUS = shutil.which("prometheus")


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def exporter():
    """Serves `demo_latency_seconds` for two services (a thread, so that one
    Prometheus can scrape it for the whole module)."""
    values = {"checkout": 0.25, "cart": 0.5}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            lines = ["# TYPE demo_latency_seconds gauge"]
            lines += [f'demo_latency_seconds{{service="{k}"}} {v}' for k, v in values.items()]
            body = ("\n".join(lines) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", values
    server.shutdown()
    server.server_close()


def _query(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/api/v1/query?query=demo_latency_seconds", timeout=2) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory, exporter):
    if PROMETHEUS is None:
        pytest.skip("the prometheus binary is not installed (apt-get install prometheus)")
    address, _ = exporter
    tmp = tmp_path_factory.mktemp("prometheus")
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: demo\n    static_configs: [{{targets: ['{address}']}}]\n")
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # ready, and the exporter scraped at least once
            try:
                if len(_query(url)["data"]["result"]) == 2:
                    break
            except (OSError, KeyError, ValueError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not come up: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def source(url: str, specs: list[DetectorSpec], **settings) -> tuple[PrometheusSource, list]:
    got: list = []
    settings = {"interval": 1.0, "timeout": 2.0, "retries": 0, **settings}
    src = PrometheusSource(PrometheusSettings(url=url, **settings), specs,
                           lambda name, samples: got.append((name, list(samples))))
    return src, got


async def test_each_series_of_the_query_is_one_stream(prometheus, exporter):
    _, values = exporter
    src, got = source(prometheus, [DetectorSpec(name="latency", promql="demo_latency_seconds"),
                                   DetectorSpec(name="total", promql="sum(demo_latency_seconds)")])
    await src.open()
    try:
        await src.poll()
    finally:
        await src.stop()
    by_detector = dict(got)
    streams = {s[0]["service"]: s for s in by_detector["latency"]}
    assert set(streams) == {"checkout", "cart"}
    labels, at, value = streams["checkout"]
    assert labels == {"__name__": "demo_latency_seconds", "service": "checkout", "job": "demo",
                      "instance": labels["instance"]}
    assert value == values["checkout"] and abs(at - time.time()) < 10
    ((labels, _, value),) = by_detector["total"]
    assert labels == {} and value == pytest.approx(0.75)
    assert src.failures.labels("latency")._value.get() == 0


async def test_a_bad_query_fails_without_retries_and_counts(prometheus):
    src, got = source(prometheus, [DetectorSpec(name="bad", promql="sum(")], retries=3)
    await src.open()
    try:
        await src.poll()
    finally:
        await src.stop()
    assert got == []
    assert src.failures.labels("bad")._value.get() == 1
    assert src.retries.labels("bad")._value.get() == 0


async def test_timeouts_are_retried_with_backoff_then_counted():
    calls = []

    async def slow(request):
        calls.append(time.monotonic())
        await asyncio.sleep(1.0)
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})

    app = web.Application()
    app.router.add_post("/api/v1/query", slow)
    runner, address = await serve(app)
    src, got = source(f"http://{address}", [DetectorSpec(name="slow", promql="up")],
                      timeout=0.2, retries=2, backoff=0.05)
    await src.open()
    try:
        await src.poll()
    finally:
        await src.stop()
        await runner.cleanup()
    assert len(calls) == 3 and got == []
    assert src.failures.labels("slow")._value.get() == 1
    assert src.retries.labels("slow")._value.get() == 2


async def test_an_unreachable_server_counts_a_failure():
    src, got = source(f"http://127.0.0.1:{free_port()}", [DetectorSpec(name="down", promql="up")],
                      retries=1, backoff=0.01)
    await src.open()
    try:
        await src.poll()
    finally:
        await src.stop()
    assert got == [] and src.failures.labels("down")._value.get() == 1


async def test_the_daemon_tracks_every_series_the_query_returns(tmp_path, prometheus, daemon_for):
    config = write_config(tmp_path, f"""
prometheus: {{url: "{prometheus}", interval: 0.2s, timeout: 2s, retries: 1}}
detectors:
  - name: latency
    promql: demo_latency_seconds
    warmup: 100
    window: 100
""")
    client = await start_daemon(daemon_for, config)

    async def tracked():
        return (await client.metric("incidentd_detector_series") == 2
                and await client.metric("incidentd_prometheus_queries_total") >= 3)

    await client.until(tracked, "both series tracked")
    assert await client.metric("incidentd_prometheus_query_failures_total") == 0
    assert await client.metric("incidentd_detector_samples_scored_total") >= 4


GOOD = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {"instance": "a"}, "value": [1_767_225_600.0, "1.5"]}]}}
MALFORMED = [
    {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"instance": "a"}, "value": ["abc", "1"]}]}},
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": "x", "value": [1.0, "1"]}]}},
    {"status": "success", "data": []},
    {"status": "success", "data": {"resultType": "vector", "result": {"a": 1}}},
    {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {}, "value": [float("inf"), "1"]}]}},
]


async def fake_prometheus(answers: list[dict]) -> tuple[web.AppRunner, str, list]:
    """Answers each query with the next of ``answers``, the last one from then on."""
    calls: list = []

    async def answer(request):
        calls.append((await request.post())["query"])
        return web.json_response(answers[min(len(calls), len(answers)) - 1])

    app = web.Application()
    app.router.add_post("/api/v1/query", answer)
    runner, address = await serve(app)
    return runner, f"http://{address}", calls


@pytest.mark.parametrize("malformed", MALFORMED)
async def test_a_malformed_answer_is_a_counted_failure_and_the_next_good_one_is_taken(malformed):
    runner, url, calls = await fake_prometheus([malformed, GOOD])
    src, got = source(url, [DetectorSpec(name="q", promql="up")])
    await src.open()
    try:
        await src.poll()
        assert got == [] and src.failures.labels("q")._value.get() == 1
        await src.poll()
    finally:
        await src.stop()
        await runner.cleanup()
    assert got == [("q", [({"instance": "a"}, 1_767_225_600.0, 1.5)])] and len(calls) == 2
    assert src.failures.labels("q")._value.get() == 1


async def test_the_polling_goes_on_after_a_round_that_fails_in_any_way():
    """Malformed answers, then samples the sink fails to take: each a counted failure,
    and the polling task still takes the good answer that follows."""
    runner, url, calls = await fake_prometheus([*MALFORMED[:2], GOOD])
    taken = asyncio.Event()
    got = []

    def sink(name, samples):
        got.append((name, list(samples)))
        if len(got) == 1:
            raise RuntimeError("the detectors are not ready")
        taken.set()

    src = PrometheusSource(PrometheusSettings(url=url, interval=0.02, timeout=2.0, retries=0),
                           [DetectorSpec(name="q", promql="up")], sink)
    await src.start()
    try:
        await asyncio.wait_for(taken.wait(), timeout=10)
    finally:
        await src.stop()
        await runner.cleanup()
    assert len(calls) >= 4 and got[1] == ("q", [({"instance": "a"}, 1_767_225_600.0, 1.5)])
    assert src.failures.labels("q")._value.get() == 3
