"""Detectors in replay (sample events -> anomalies and MetricAnomaly incidents,
deterministic), stale series, and check-config of the detector sections."""

import json

import numpy as np

from daemon.cli import check_config_errors, main
from daemon.clock import VirtualClock
from daemon.config import load_config
from daemon.metrics import Metrics
from detectors.config import load_detector_settings
from detectors.stage import DetectorPart

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
CONFIG = """
detectors:
  - name: latency
    match: ['__name__="latency_seconds"']
    warmup: 100
    window: 200
    refit_every: 50
    stale_after: 30m
"""


def at(minute: int) -> str:
    return f"2026-01-01T{minute // 60:02d}:{minute % 60:02d}:00Z"


def sample_events(n: int, labels: dict, spike: range = range(0), seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"kind": "sample", "at": at(i), "labels": labels,
             "value": 0.2 + float(rng.normal(0.0, 0.01)) + (0.3 if i in spike else 0.0)}
            for i in range(n)]


def replay(tmp_path, events: list[dict], config: str = CONFIG) -> dict:
    (tmp_path / "config.yaml").write_text(config)
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    out = tmp_path / "result.json"
    assert main(["replay", "--config", str(tmp_path / "config.yaml"),
                 "--input", str(tmp_path / "events.jsonl"), "--output", str(out)]) == 0
    return json.loads(out.read_text())


def test_replayed_samples_give_anomalies_and_a_metric_anomaly_incident(tmp_path):
    labels = {"__name__": "latency_seconds", "service": "checkout"}
    events = sample_events(400, labels, spike=range(300, 330))
    result = replay(tmp_path, events)
    (anomaly,) = result["anomalies"]
    assert anomaly["labels"] == labels and anomaly["detector"] == "latency"
    assert at(300) <= anomaly["at"] <= at(310) and 0.9 < anomaly["score"] <= 1.0
    assert anomaly["resolved_at"] is not None
    (incident,) = result["incidents"]
    assert [a["labels"]["alertname"] for a in incident["alerts"]] == ["MetricAnomaly"]
    assert incident["alerts"][0]["labels"]["service"] == "checkout"
    assert incident["opened_at"] == anomaly["at"] and incident["resolved_at"] is not None
    assert replay(tmp_path, events) == result  # inline refits: the same every time


def test_an_anomalous_series_that_stops_reporting_resolves_once_quiet(tmp_path):
    labels = {"__name__": "latency_seconds", "service": "checkout"}
    events = sample_events(320, labels, spike=range(300, 320))  # ends while anomalous
    result = replay(tmp_path, events)
    (anomaly,) = result["anomalies"]
    # quiet, and its episode ended, at the first sweep (every 7.5 minutes) after both
    # stale_after (30 minutes) and 100 of its one-minute intervals without samples
    resolved = anomaly["resolved_at"]
    assert at(319 + 100) < resolved <= at(319 + 108)
    assert result["incidents"][0]["resolved_at"] == resolved


def test_series_no_detector_selects_are_ignored(tmp_path):
    events = sample_events(400, {"__name__": "other"}, spike=range(300, 330))
    assert replay(tmp_path, events)["anomalies"] == []


def test_without_a_detectors_section_every_series_gets_the_default_detector(tmp_path):
    (tmp_path / "c.yaml").write_text("listen: 127.0.0.1:0\n")
    settings, errors = load_detector_settings(load_config(str(tmp_path / "c.yaml")))
    assert errors == [] and [s.name for s in settings.sample_specs] == ["default"]


def test_promql_detectors_do_not_take_posted_samples(tmp_path):
    settings, errors = load_detector_settings(_config(
        tmp_path, "prometheus: {url: 'http://127.0.0.1:9090'}\n"
        "detectors:\n  - name: cpu\n    promql: 'rate(cpu[5m])'\n"))
    assert errors == []
    part = DetectorPart(settings, VirtualClock(T0), Metrics())
    assert part.observe([({"__name__": "cpu"}, T0, 1.0)], T0) == []
    assert settings.sample_specs == () and [s.name for s in settings.query_specs] == ["cpu"]


def _config(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(str(path))


def test_check_config_points_at_the_broken_fields(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "prometheus:\n"                       # 1
        "  url: ftp://example\n"              # 2
        "  retries: -1\n"                     # 3
        "detectors:\n"                        # 4
        "  - name: a\n"                       # 5
        "    match: ['x=~\"(\"']\n"           # 6
        "  - name: b\n"                       # 7
        "    sensitivity: 2\n"                # 8
        "  - name: a\n"                       # 9
        "  - name: c\n"                       # 10
        "    promql: up\n"                    # 11
        "    colour: red\n")                  # 12
    errors = check_config_errors(str(path))
    p = str(path)
    assert f"{p}:2: prometheus.url: expected an http(s) URL, got 'ftp://example'" in errors
    assert f"{p}:3: prometheus.retries: expected an integer from 0 to 10" in errors
    assert any(e.startswith(f"{p}:6: detectors[0].match: invalid regex") for e in errors)
    assert any(e.startswith(f"{p}:8: detectors[1].sensitivity:") for e in errors)
    assert f"{p}:9: detectors[2].name: duplicate detector name 'a' (first at detectors[0])" in errors
    assert any(e.startswith(f"{p}:12: detectors[3].colour: unknown field") for e in errors)


def test_promql_detectors_need_a_prometheus_section(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("detectors:\n  - name: cpu\n    promql: up\n")
    assert check_config_errors(str(path)) == [
        f"{path}:2: detectors with promql need a prometheus: {{url: ...}} section"]
    assert main(["replay", "--config", str(path), "--input", "x", "--output", "y"]) == 1


def test_detect_decides_as_replay_does_on_a_series_with_gaps(tmp_path):
    """`detect`'s is_anomaly is the daemon's decision (CONTRACT section 5), also where a
    series pauses: an hourly series that misses a few hours goes on as before, one away
    for more than 100 of its intervals has its episode ended and keeps its model."""
    from datetime import UTC, datetime

    rng = np.random.default_rng(3)
    times, t = [], T0
    for i in range(900):
        t += 3600 * (4 if i in (300, 500) else 150 if i == 606 else 1)
        times.append(t)
    values = 10.0 + rng.normal(0.0, 0.3, 900)
    values[590:606] += 6.0  # an episode open when the series goes away for 150 hours
    values[800:816] += 6.0
    (tmp_path / "series.csv").write_text("timestamp,value\n" + "".join(
        f"{datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M:%S},{v:.4f}\n" for t, v in zip(times, values, strict=True)))
    (tmp_path / "config.yaml").write_text(CONFIG)
    assert main(["detect", "--config", str(tmp_path / "config.yaml"), "--input", str(tmp_path / "series.csv"),
                 "--output", str(tmp_path / "out.csv")]) == 0
    rows = (tmp_path / "out.csv").read_text().splitlines()[1:]
    by_detect = [times[i] for i, row in enumerate(rows) if row.endswith(",1")]

    events = [{"kind": "sample", "at": f"{datetime.fromtimestamp(t, UTC):%Y-%m-%dT%H:%M:%SZ}",
               "labels": {"__name__": "latency_seconds"}, "value": float(v)} for t, v in zip(times, values, strict=True)]
    anomalies = replay(tmp_path, events)["anomalies"]
    by_replay = [datetime.fromisoformat(a["at"]).timestamp() for a in anomalies]
    assert by_detect == by_replay
    first, second = (times.index(t) for t in by_detect)
    assert 590 <= first < 606 and 800 <= second < 816  # the second one opens anew
    assert times[605] < datetime.fromisoformat(anomalies[0]["resolved_at"]).timestamp() < times[606]


def test_check_config_fits_the_model_as_the_first_fit_does(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("detectors:\n  - name: lat\n    model: knn\n"
                    "    params: {n_neighbors: 100, metric: manhattan}\n")
    [error] = check_config_errors(str(path))
    assert error.startswith(f"{path}:4: detectors[0].params: knn refuses them: Expected n_neighbors"
                            " < n_samples_fit, but n_neighbors = 100, n_samples_fit = 71")
    assert error.endswith("(the first fit, on 150 values, fits 143 feature rows and its seed model 71;"
                          " a longer warmup gives it more)")
    path.write_text("detectors:\n  - name: lat\n    model: knn\n    warmup: 300\n"
                    "    params: {n_neighbors: 100, metric: manhattan}\n")
    assert check_config_errors(str(path)) == []


def test_a_model_fit_that_fails_in_replay_is_counted_and_the_replay_goes_on(tmp_path):
    """Hourly samples with a daily cycle: the seed model of the first fit has fewer rows
    than check-config's trial fit, too few for 65 neighbours; the next fit has enough."""
    config = CONFIG.replace("    warmup: 100\n    window: 200\n    refit_every: 50\n",
                            "    params: {n_neighbors: 65, metric: manhattan}\n")
    rng = np.random.default_rng(0)
    values = 50.0 + 10.0 * np.sin(2 * np.pi * np.arange(700) / 24) + rng.normal(0.0, 1.0, 700)
    values[600:603] += 30.0
    labels = {"__name__": "latency_seconds"}
    settings, errors = load_detector_settings(_config(tmp_path, config))
    assert errors == []
    metrics = Metrics()
    part = DetectorPart(settings, VirtualClock(T0), metrics)
    for i, v in enumerate(values):
        part.observe([(labels, T0 + 3600.0 * i, float(v))], T0 + 3600.0 * i)
    assert metrics.registry.get_sample_value("incidentd_detector_refit_failures_total") == 1
    events = [{"kind": "sample", "at": f"2026-01-{1 + i // 24:02d}T{i % 24:02d}:00:00Z", "labels": labels,
               "value": float(v)} for i, v in enumerate(values)]
    (anomaly,) = replay(tmp_path, events, config)["anomalies"]
    assert anomaly["at"] == "2026-01-26T04:00:00Z"  # sample 604
