"""Ingest benchmark: incidentd's `POST /api/v1/alerts` against Alertmanager's `POST /api/v2/alerts`.

10,000 distinct, realistic label sets are posted in Alertmanager API v2 form,
over and over as Prometheus re-sends firing alerts (same `startsAt`, `endsAt`
moved forward on every pass). Two scenarios by default:

- throughput: batch 100, 8 requests in flight, as fast as the server answers;
- latency: batch 1 at a fixed 500 requests/s (open loop), p50/p99.

For incidentd, each scenario runs with `inbox.durability: crash` (the default,
survives SIGKILL) and `power` (fsync on every group commit). It reports
accepted alerts/s, request latency p50/p99, CPU seconds of the server process
(from /proc), and for incidentd the processed rate: alerts processed by the
pipeline (`incidentd_pipeline_alerts_processed_total`) from the start of the
measurement until the inbox is empty again. Where Debian's
`prometheus-alertmanager` is installed, the same load runs against it and the
ratio incidentd / Alertmanager is printed.

The load generator and the servers share the machine's cores; on a small
machine the generator's own CPU use lowers every number (see `client_cpu_s`).

    python bench/ingest.py                       # both scenarios, both durabilities, Alertmanager if present
    python bench/ingest.py --scenario throughput --duration 20 --durability crash
    python bench/ingest.py --batch 50 --concurrency 16 --scenario throughput
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
DISTINCT = 10_000

ALERTNAMES = [
    "HighErrorRate",
    "HighLatency",
    "PodCrashLooping",
    "PodNotReady",
    "ContainerOOMKilled",
    "CPUThrottlingHigh",
    "DiskWillFillIn4Hours",
    "MemoryPressure",
    "TargetDown",
    "KubeDeploymentReplicasMismatch",
    "NodeFilesystemAlmostFull",
    "EndpointDown",
    "CertificateExpiresSoon",
    "QueueBacklogGrowing",
    "ReplicationLagHigh",
    "SLOBurnRateFast",
]
SEVERITIES = ["warning", "warning", "critical", "info"]


def label_sets(n: int = DISTINCT, seed: int = 7) -> list[dict[str, str]]:
    """`n` distinct label sets shaped like a Kubernetes cluster's alerts."""
    rnd = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        k = rnd.randrange(60)  # 60 services in 12 namespaces, each with many pods
        svc = f"{['api', 'web', 'worker', 'db', 'cache', 'queue'][k % 6]}-{k // 6}"
        ns = f"team-{k % 12}"
        pod = f"{svc}-{rnd.getrandbits(32):08x}-{rnd.getrandbits(20):05x}"
        labels = {
            "alertname": rnd.choice(ALERTNAMES),
            "cluster": f"prod-{rnd.randrange(3)}",
            "namespace": ns,
            "service": svc,
            "job": "kubernetes-pods",
            "pod": pod,
            "instance": f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}:8080",
            "severity": rnd.choice(SEVERITIES),
            "prometheus": "monitoring/k8s",
        }
        key = tuple(sorted(labels.items()))
        if key not in seen:
            seen.add(key)
            out.append(labels)
    return out


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Bodies:
    """Pre-serialised request bodies; `endsAt` is moved forward on every pass
    over the label sets, as Prometheus does on every re-send."""

    PLACEHOLDER = b"__ENDS_AT__"

    def __init__(self, batch: int, started: float) -> None:
        sets = label_sets()
        self.templates = []
        for i in range(0, len(sets), batch):
            alerts = [
                {
                    "labels": ls,
                    "annotations": {
                        "summary": f"{ls['alertname']} on {ls['pod']}",
                        "runbook_url": "https://runbooks.example.org/x",
                    },
                    "startsAt": rfc3339(started - 3600 + (hash(ls["pod"]) % 3000)),
                    "endsAt": "__ENDS_AT__",
                    "generatorURL": "http://prometheus:9090/graph?g0.expr=up&g0.tab=1",
                }
                for ls in sets[i : i + batch]
            ]
            self.templates.append(json.dumps(alerts, separators=(",", ":")).encode())
        self.batch = batch
        self.current: list[bytes] = []
        self.pos = 0
        self._refresh()

    def _refresh(self) -> None:
        ends = rfc3339(time.time() + 240).encode()
        self.current = [t.replace(self.PLACEHOLDER, ends) for t in self.templates]

    def next(self) -> bytes:
        body = self.current[self.pos]
        self.pos += 1
        if self.pos == len(self.current):
            self.pos = 0
            self._refresh()
        return body


# -- servers ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, all threads


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


@dataclass
class Server:
    name: str
    url: str  # where alerts are posted
    proc: subprocess.Popen
    metrics_url: str | None = None
    workdir: str = ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def metric(self, name: str) -> float:
        text = get(self.metrics_url).decode()
        m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} not ready within {timeout}s")


def start_incidentd(durability: str, workdir: str) -> Server:
    port = free_port()
    cfg = Path(workdir) / "config.yaml"
    cfg.write_text(f"data_dir: data\ninbox:\n  durability: {durability}\nlog:\n  level: warning\n")
    log = open(Path(workdir) / "incidentd.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daemon.cli",
            "run",
            "--config",
            str(cfg),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_ready(base + "/readyz", proc)
    return Server(
        f"incidentd ({durability})", base + "/api/v1/alerts", proc, base + "/metrics", workdir
    )


def start_alertmanager(workdir: str) -> Server | None:
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        return None
    port = free_port()
    cfg = Path(workdir) / "alertmanager.yml"
    cfg.write_text(
        "route:\n  receiver: blackhole\n  group_by: [alertname, service]\n"
        "receivers:\n  - name: blackhole\n"
    )
    log = open(Path(workdir) / "alertmanager.log", "wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={cfg}",
            f"--storage.path={workdir}/am-data",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_ready(base + "/-/ready", proc)
    return Server("alertmanager", base + "/api/v2/alerts", proc, base + "/metrics", workdir)


# -- load -----------------------------------------------------------------------------


@dataclass
class Result:
    server: str
    scenario: str
    batch: int
    concurrency: int
    rate: float
    seconds: float = 0.0
    requests: int = 0
    accepted_alerts: int = 0
    rejected_requests: int = 0
    accepted_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    processed_per_s: float | None = None
    drain_s: float | None = None
    extra: dict = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def drive(
    url: str,
    bodies: Bodies,
    *,
    concurrency: int,
    rate: float,
    duration: float,
    latencies: list[float] | None,
) -> tuple[int, int, int]:
    """Post for `duration` seconds: closed loop with `concurrency` in flight, or
    open loop at `rate` requests/s. Returns (requests, accepted alerts, rejected)."""
    headers = {"Content-Type": "application/json"}
    ok = bad = accepted = 0
    end = time.perf_counter() + duration
    conn = aiohttp.TCPConnector(limit=max(concurrency, 1) if not rate else 0)
    async with aiohttp.ClientSession(connector=conn, skip_auto_headers=("User-Agent",)) as session:

        async def one(body: bytes) -> None:
            nonlocal ok, bad, accepted
            t = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                status = resp.status
            if latencies is not None:
                latencies.append(time.perf_counter() - t)
            if 200 <= status < 300:
                ok += 1
                accepted += bodies.batch
            else:
                bad += 1

        if rate:
            interval = 1.0 / rate
            nxt = time.perf_counter()
            pending: set[asyncio.Task] = set()
            while nxt < end:
                delay = nxt - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(one(bodies.next()))
                pending.add(task)
                task.add_done_callback(pending.discard)
                nxt += interval
            await asyncio.gather(*pending)
        else:

            async def worker() -> None:
                while time.perf_counter() < end:
                    await one(bodies.next())

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok + bad, accepted, bad


def client_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_scenario(
    server: Server,
    scenario: str,
    batch: int,
    concurrency: int,
    rate: float,
    duration: float,
    warmup: bool,
) -> Result:
    bodies = Bodies(batch, time.time())
    is_incidentd = server.name.startswith("incidentd")
    res = Result(server.name, scenario, batch, concurrency if not rate else 0, rate)
    if warmup:
        # one pass over every label set, so the measurement sees re-posts of known
        # alerts (the steady state) rather than 10,000 incidents being opened
        t = time.perf_counter()
        asyncio.run(_post_all(server.url, Bodies(100, time.time())))
        if is_incidentd:
            wait_drained(server, 300)
        res.extra["first_pass_alerts_per_s"] = round(DISTINCT / (time.perf_counter() - t))
    processed0 = server.metric("incidentd_pipeline_alerts_processed_total") if is_incidentd else 0.0
    gen2 = 'python_gc_collections_total{generation="2"}'
    full_gc0 = server.metric(gen2) if is_incidentd else 0.0
    cpu0, ccpu0 = cpu_seconds(server.proc.pid), client_cpu()
    latencies: list[float] = []
    t0 = time.perf_counter()
    res.requests, res.accepted_alerts, res.rejected_requests = asyncio.run(
        drive(
            server.url,
            bodies,
            concurrency=concurrency,
            rate=rate,
            duration=duration,
            latencies=latencies,
        )
    )
    res.seconds = time.perf_counter() - t0
    res.server_cpu_s = cpu_seconds(server.proc.pid) - cpu0
    res.client_cpu_s = client_cpu() - ccpu0
    res.accepted_per_s = res.accepted_alerts / res.seconds
    res.p50_ms = percentile(latencies, 0.50) * 1000
    res.p99_ms = percentile(latencies, 0.99) * 1000
    res.max_ms = max(latencies, default=0.0) * 1000
    if is_incidentd:
        drained = wait_drained(server, 300)
        res.drain_s = drained - t0 - res.seconds
        processed = server.metric("incidentd_pipeline_alerts_processed_total") - processed0
        res.processed_per_s = processed / (drained - t0)
        res.server_cpu_s = cpu_seconds(server.proc.pid) - cpu0  # includes catching up
        res.extra["full_gc_collections"] = server.metric(gen2) - full_gc0
    return res


async def _post_all(url: str, bodies: Bodies) -> None:
    async with aiohttp.ClientSession() as session:
        sem = asyncio.Semaphore(4)

        async def one(body: bytes) -> None:
            async with sem:
                for _ in range(100):
                    async with session.post(
                        url, data=body, headers={"Content-Type": "application/json"}
                    ) as r:
                        await r.read()
                        if r.status != 503:
                            return
                    await asyncio.sleep(0.2)

        await asyncio.gather(*(one(b) for b in bodies.current))


def wait_drained(server: Server, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.metric("incidentd_inbox_depth") == 0:
            return time.perf_counter()
        time.sleep(0.02)
    raise SystemExit(f"{server.name}: inbox not drained within {timeout}s")


SCENARIOS = {"throughput": (100, 8, 0.0), "latency": (1, 0, 500.0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    ap.add_argument("--batch", type=int, help="alerts per request (overrides the scenario)")
    ap.add_argument("--concurrency", type=int, help="requests in flight (closed loop)")
    ap.add_argument("--rate", type=float, help="requests/s (open loop; overrides --concurrency)")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of measured load per run")
    ap.add_argument("--durability", choices=["crash", "power", "both"], default="both")
    ap.add_argument("--no-alertmanager", action="store_true", help="do not run Alertmanager")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    durabilities = ["crash", "power"] if args.durability == "both" else [args.durability]
    results: list[Result] = []
    print(
        f"{os.cpu_count()} CPUs; load generator, incidentd and Alertmanager share them", flush=True
    )
    for scenario in scenarios:
        batch, conc, rate = SCENARIOS[scenario]
        batch = args.batch or batch
        conc = args.concurrency or conc
        rate = args.rate if args.rate is not None else (0.0 if args.concurrency else rate)
        targets = [("incidentd", d) for d in durabilities]
        if not args.no_alertmanager:
            targets.append(("alertmanager", ""))
        for kind, durability in targets:
            with tempfile.TemporaryDirectory(prefix="incidentd-bench-") as workdir:
                server = (
                    start_incidentd(durability, workdir)
                    if kind == "incidentd"
                    else start_alertmanager(workdir)
                )
                if server is None:
                    print("prometheus-alertmanager not installed: no comparison", flush=True)
                    continue
                try:
                    res = run_scenario(
                        server, scenario, batch, conc, rate, args.duration, warmup=True
                    )
                finally:
                    server.stop()
            results.append(res)
            print(format_result(res), flush=True)
    print_summary(results)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0


def format_result(r: Result) -> str:
    load = (
        f"batch {r.batch} x {r.concurrency} in flight"
        if not r.rate
        else f"batch {r.batch} at {r.rate:.0f} req/s"
    )
    line = (
        f"{r.server:20} {load:28} accepted {r.accepted_per_s:9.0f} alerts/s  p50 {r.p50_ms:6.2f} ms"
        f"  p99 {r.p99_ms:7.2f} ms  server CPU {r.server_cpu_s:5.1f} s  client CPU {r.client_cpu_s:5.1f} s"
        f"  ({r.requests} requests in {r.seconds:.1f} s, {r.rejected_requests} rejected)"
    )
    if r.processed_per_s is not None:
        line += (
            f"\n{'':20} processed {r.processed_per_s:9.0f} alerts/s (inbox empty {r.drain_s:.2f} s after the load);"
            f" first pass, {DISTINCT} new alerts posted and processed:"
            f" {r.extra.get('first_pass_alerts_per_s', 0)} alerts/s;"
            f" full GC passes: {r.extra.get('full_gc_collections', 0):.0f}"
        )
    return line


def print_summary(results: list[Result]) -> None:
    am = {r.scenario: r for r in results if r.server == "alertmanager"}
    for r in results:
        ref = am.get(r.scenario)
        if r.server.startswith("incidentd") and ref and ref.accepted_per_s:
            print(
                f"{r.scenario}: {r.server} / alertmanager = {r.accepted_per_s / ref.accepted_per_s:.2f}"
                f" ({r.accepted_per_s:.0f} vs {ref.accepted_per_s:.0f} alerts/s)"
            )


if __name__ == "__main__":
    sys.exit(main())
