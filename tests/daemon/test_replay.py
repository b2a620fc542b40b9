"""`incidentd replay` on small hand-written event files (CONTRACT.md sections 3
and 4): the exact incidents expected, from the real command."""

import json
import os
import stat
import subprocess
import sys

import pytest
from daemon_helpers import REPO


def ev(
    at: str,
    labels: dict,
    status: str | None = "firing",
    starts: str | None = None,
    ends: str | None = None,
    **annotations: str,
) -> dict:
    alert: dict = {
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts or f"2026-01-01T{at}Z",
    }
    if status is not None:
        alert["status"] = status
    if ends is not None:
        alert["endsAt"] = f"2026-01-01T{ends}Z"
    return {"kind": "alert", "at": f"2026-01-01T{at}Z", "alert": alert}


def replay(tmp_path, events: list[dict], config: str | None = None) -> subprocess.CompletedProcess:
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    cmd = [
        sys.executable,
        "-m",
        "daemon.cli",
        "replay",
        "--input",
        str(tmp_path / "events.jsonl"),
        "--output",
        str(tmp_path / "result.json"),
    ]
    if config is not None:
        (tmp_path / "config.yaml").write_text(config)
        cmd += ["--config", str(tmp_path / "config.yaml")]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def incidents(tmp_path, events: list[dict], config: str | None = None) -> list[tuple]:
    done = replay(tmp_path, events, config)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert set(result) >= {"incidents", "problems", "anomalies"}
    return [
        (
            i["id"],
            i["opened_at"],
            i["resolved_at"],
            i["severity"],
            sorted(a["labels"].get("pod", "") for a in i["alerts"]),
        )
        for i in result["incidents"]
    ]


DB = {"alertname": "DatabaseDown", "service": "orders-db"}


def test_two_pods_of_one_fault_make_one_incident_resolved_when_both_are(tmp_path):
    events = [
        ev("00:00:00", {**DB, "pod": "a", "severity": "critical"}, summary="orders-db down"),
        ev("00:00:30", {**DB, "pod": "b", "severity": "warning"}),
        ev("00:01:00", {**DB, "pod": "a", "severity": "critical"}),  # re-sent: the same alert
        ev(
            "00:05:00",
            {**DB, "pod": "a", "severity": "critical"},
            "resolved",
            starts="2026-01-01T00:00:00Z",
            ends="00:04:50",
        ),
        ev(
            "00:06:00",
            {**DB, "pod": "b", "severity": "warning"},
            "resolved",
            starts="2026-01-01T00:00:30Z",
            ends="00:06:00",
        ),
    ]
    assert incidents(tmp_path, events) == [
        ("INC-000001", "2026-01-01T00:00:00Z", "2026-01-01T00:06:00Z", "critical", ["a", "b"])
    ]


def test_api_form_alerts_resolve_after_resolve_timeout_without_a_repost(tmp_path):
    events = [
        ev(
            "01:00:00",
            {"alertname": "HighLatency", "service": "checkout", "severity": "warning"},
            status=None,
        ),
        ev(
            "01:03:00",
            {"alertname": "HighLatency", "service": "checkout", "severity": "warning"},
            status=None,
            starts="2026-01-01T01:00:00Z",
        ),
    ]
    assert incidents(tmp_path, events, "incidents: {resolve_timeout: 5m}\n") == [
        ("INC-000001", "2026-01-01T01:00:00Z", "2026-01-01T01:08:00Z", "warning", [""])
    ]


def test_firing_again_within_the_reopen_window_reopens_and_after_it_opens_anew(tmp_path):
    a = {**DB, "severity": "critical"}
    events = [
        ev("00:00:00", a),
        ev("00:01:00", a, "resolved", ends="00:01:00", starts="2026-01-01T00:00:00Z"),
        ev("00:05:00", a),  # 4 minutes later: reopens INC-000001
        ev("00:06:00", a, "resolved", ends="00:06:00", starts="2026-01-01T00:05:00Z"),
        ev("00:30:00", a),  # 24 minutes later: a new incident
        ev("00:31:00", a, "resolved", ends="00:31:00", starts="2026-01-01T00:30:00Z"),
    ]
    assert incidents(tmp_path, events, "incidents: {reopen_window: 10m}\n") == [
        ("INC-000001", "2026-01-01T00:00:00Z", "2026-01-01T00:06:00Z", "critical", [""]),
        ("INC-000002", "2026-01-01T00:30:00Z", "2026-01-01T00:31:00Z", "critical", [""]),
    ]


def test_a_flapping_alert_keeps_one_incident_that_resolves_once_it_settles(tmp_path):
    a = {**DB, "severity": "warning"}
    events = []
    for minute in range(0, 10, 2):  # fires and resolves every minute for 10 minutes
        events.append(ev(f"00:{minute:02d}:00", a, starts=f"2026-01-01T00:{minute:02d}:00Z"))
        events.append(
            ev(
                f"00:{minute + 1:02d}:00",
                a,
                "resolved",
                ends=f"00:{minute + 1:02d}:00",
                starts=f"2026-01-01T00:{minute:02d}:00Z",
            )
        )
    assert incidents(tmp_path, events, "incidents: {flap_threshold: 4, flap_window: 15m}\n") == [
        ("INC-000001", "2026-01-01T00:00:00Z", "2026-01-01T00:24:00Z", "warning", [""])
    ]


def test_separate_services_make_separate_incidents_in_opening_order(tmp_path):
    events = [
        ev("00:00:00", {"alertname": "Down", "service": "b", "severity": "info"}),
        ev("00:00:01", {"alertname": "Down", "service": "a", "severity": "error"}),
    ]
    result = incidents(tmp_path, events)
    assert [(i[0], i[1], i[3]) for i in result] == [
        ("INC-000001", "2026-01-01T00:00:00Z", "info"),
        ("INC-000002", "2026-01-01T00:00:01Z", "error"),
    ]


def test_an_invalid_event_stops_replay_with_file_and_line(tmp_path):
    events = [ev("00:00:00", {"alertname": "A"}), ev("00:00:01", {"alertname": "B", "severity": 3})]
    done = replay(tmp_path, events)
    assert done.returncode != 0
    assert done.stderr.strip().endswith(
        "events.jsonl:2: alert.labels.severity: expected a string, got a number"
    )
    assert not (tmp_path / "result.json").exists()


@pytest.mark.parametrize("output, message", [
    ("out", "out: cannot write: it is a directory"),
    ("out/", "out/: cannot write: it is a directory"),
    ("events.jsonl/r.json", "events.jsonl/r.json: cannot write: "),
])
def test_an_output_that_cannot_be_written_is_refused_at_once_leaving_no_file_behind(tmp_path, output, message):
    (tmp_path / "out").mkdir()
    (tmp_path / "events.jsonl").write_text(json.dumps(ev("00:00:00", {"alertname": "A"})) + "\n")
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "replay", "--input", "events.jsonl",
                           "--output", output, "--config", os.devnull], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1
    [err] = done.stderr.strip().splitlines()
    assert err.startswith(f"incidentd: {message}"), err
    assert sorted(os.listdir(tmp_path)) == ["events.jsonl", "out"] and os.listdir(tmp_path / "out") == []


def test_an_output_in_a_directory_that_does_not_exist_yet_is_written_there(tmp_path):
    (tmp_path / "events.jsonl").write_text(json.dumps(ev("00:00:00", {"alertname": "A"})) + "\n")
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "replay", "--input", str(tmp_path / "events.jsonl"),
                           "--output", str(tmp_path / "runs" / "1" / "result.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    assert len(json.loads((tmp_path / "runs" / "1" / "result.json").read_text())["incidents"]) == 1


@pytest.mark.parametrize("line, message", [
    (b'{"kind": "alert", "at": "2026-01-01T00:00:01Z", "alert": {"labels": {"a": "\xff"}}}',
     "str is not valid UTF-8"),
    (b'{"kind": "change", "at": "2026-01-01T00:00:01Z", "ci": "payments"}', "id: required string"),
    (b'{"kind": "change", "at": "2026-01-01T00:00:01Z", "ci": "payments", "id": "C1", "end": 1e300}',
     "end: time out of range"),
    (b'{"kind": "alert", "at": "9999-12-31T23:59:59-23:59", "alert": {"labels": {"a": "b"}}}',
     "at: time out of range"),
    (b'{"kind": "alert", ', "invalid JSON at character 20: unexpected end of data"),
    (b'{"kind": "alert", "at": "2026-01-01T00:00:01Z", "alert": {"labels": {"a": "\\ud800"}}}',
     "invalid JSON at character 76: no low surrogate in string"),
    (b'{"kind": "alert", "at": "2026-01-01T00:00:01Z", "alert": {"labels": {"a": "b"}, "annotations": '
     + b"[" * 1100 + b"]" * 1100 + b"}}", "invalid JSON at character 1119: depth limit exceeded"),
])
def test_a_line_of_bad_bytes_or_a_bad_change_stops_replay_with_file_and_line(tmp_path, line, message):
    first = json.dumps(ev("00:00:00", {"alertname": "A"})).encode()
    (tmp_path / "events.jsonl").write_bytes(first + b"\n" + line + b"\n")
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "replay", "--input", str(tmp_path / "events.jsonl"),
                           "--output", str(tmp_path / "result.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    [err] = done.stderr.strip().splitlines()  # one line, no traceback
    assert "events.jsonl:2: " in err and message in err, err
    assert not (tmp_path / "result.json").exists()


def test_a_file_with_a_byte_order_mark_and_crlf_lines_replays_as_without(tmp_path):
    events = [ev("00:00:00", {"alertname": "A"}), ev("00:01:00", {"alertname": "A"}, "resolved", ends="00:01:00")]
    (tmp_path / "events.jsonl").write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(e).encode() + b"\r\n"
                                                                    for e in events) + b"\r\n")
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "replay", "--input", str(tmp_path / "events.jsonl"),
                           "--output", str(tmp_path / "result.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [incident] = json.loads((tmp_path / "result.json").read_text())["incidents"]
    assert (incident["opened_at"], incident["resolved_at"]) == ("2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z")


def test_samples_with_nan_or_infinite_values_as_json_dumps_writes_them_are_skipped(tmp_path):
    events = [ev("00:00:00", {"alertname": "A"})]
    for i, value in enumerate([1.0, float("nan"), 2.0, float("inf"), float("-inf"), 3]):
        events.append({"kind": "sample", "at": f"2026-01-01T00:0{i}:30Z", "labels": {"__name__": "m"},
                       "value": value})
    events.append(ev("00:09:00", {"alertname": "A"}, "resolved", ends="00:09:00"))
    text = "".join(json.dumps(e) + "\n" for e in events)
    assert "NaN" in text and "-Infinity" in text
    (tmp_path / "events.jsonl").write_text(text.replace("-Infinity", "-1e400"))  # another way to write it
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "replay", "--input", str(tmp_path / "events.jsonl"),
                           "--output", str(tmp_path / "result.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [incident] = json.loads((tmp_path / "result.json").read_text())["incidents"]
    assert incident["resolved_at"] == "2026-01-01T00:09:00Z"


def test_commands_that_serve_nothing_load_neither_the_http_stack_nor_numpy(tmp_path):
    """check-config and an alert-only replay run many times in scripts and benchmarks:
    aiohttp loads when the daemon serves or sends, numpy and PyOD with the first series
    a detector selects."""
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"kind": "alert", "at": "2026-01-05T10:00:00Z", "alert": {
        "labels": {"alertname": "Down", "service": "a"}, "startsAt": "2026-01-05T10:00:00Z"}}) + "\n")
    probe = (
        "import sys\n"
        "from daemon.cli import main\n"
        f"main(['replay', '--input', {str(events)!r}, '--output', {str(tmp_path / 'r.json')!r}])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiohttp', 'numpy', 'pyod'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert json.loads((tmp_path / "r.json").read_text())["incidents"][0]["alerts"][0]["labels"]["service"] == "a"


def test_the_command_flushes_what_it_printed_and_keeps_its_exit_code(tmp_path):
    """`incidentd` leaves its heap to the operating system at exit (no interpreter
    teardown): buffered output must still arrive, with the command's exit code."""
    good = tmp_path / "good.yaml"
    good.write_text("incidents:\n  group_window: 5m\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("incidents:\n  group_window: soon\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe buffers stdout
    ok = subprocess.run([sys.executable, "-m", "daemon.cli", "check-config", "--config", str(good)],
                        cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert (ok.returncode, ok.stdout) == (0, f"{good}: OK\n")
    broken = subprocess.run([sys.executable, "-m", "daemon.cli", "check-config", "--config", str(bad)],
                            cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert broken.returncode == 1
    assert broken.stderr.startswith(f"{bad}:2: ") and "group_window" in broken.stderr and broken.stdout == ""


def test_under_a_profiler_the_command_exits_as_usual_so_that_it_writes_out(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("incidents:\n  group_window: 5m\n")
    out = tmp_path / "profile.out"
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "daemon.cli", "check-config",
                           "--config", str(cfg)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0


def test_check_config_warns_of_a_top_level_key_nothing_reads(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("incidents: {group_window: 5m}\nlistne: 127.0.0.1:9095\nproblems: {}\nsla: {}\n")
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "check-config", "--config", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, f"{path}: OK\n")  # other tools' keys may share the file
    [warning] = done.stderr.splitlines()
    assert warning.startswith(f"{path}:2: warning: unknown key 'listne', ignored (known: ") and "listen" in warning


def test_check_config_warns_of_two_cis_with_the_same_match_block(tmp_path):
    (tmp_path / "cmdb.yaml").write_text(
        "cis:\n"
        "  - {id: orders, match: {service: orders}}\n"
        "  - id: orders-old\n"
        "    matches:\n"
        "      - {service: orders, env: prod}\n"
        "      - {service: orders}\n"  # the same as orders': its alerts go to orders
        "  - {id: orders-prod, match: {env: prod, service: orders}}\n"  # the same as orders-old's first
        "  - {id: orders-eu, match: {service: orders, region: eu}}\n")
    path = tmp_path / "config.yaml"
    path.write_text("cmdb: [cmdb.yaml]\n")
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "check-config", "--config", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, f"{path}: OK\n")  # valid: only likely not meant
    cmdb = tmp_path / "cmdb.yaml"
    assert done.stderr.splitlines() == [
        f"{cmdb}:6: warning: CI 'orders-old' has the same match block as CI 'orders' ({cmdb}:2): "
        "the alerts it matches go to 'orders'",
        f"{cmdb}:7: warning: CI 'orders-prod' has the same match block as CI 'orders-old' ({cmdb}:5): "
        "the alerts it matches go to 'orders-old'",
    ]


def test_a_result_is_written_through_a_symbolic_link_and_into_a_pipe(tmp_path):
    (tmp_path / "events.jsonl").write_text(json.dumps(ev("00:00:00", {"alertname": "A"})) + "\n")
    (tmp_path / "link.json").symlink_to("kept/result.json")
    (tmp_path / "kept").mkdir()
    os.mkfifo(tmp_path / "pipe")
    replay = [sys.executable, "-m", "daemon.cli", "replay", "--input", str(tmp_path / "events.jsonl"), "--output"]
    done = subprocess.run([*replay, str(tmp_path / "link.json")], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "link.json").is_symlink()  # not replaced by a file of its own
    assert len(json.loads((tmp_path / "kept" / "result.json").read_text())["incidents"]) == 1
    with subprocess.Popen([*replay, str(tmp_path / "pipe")], cwd=REPO) as proc:
        with open(tmp_path / "pipe") as pipe:
            assert len(json.load(pipe)["incidents"]) == 1
    assert proc.returncode == 0 and stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode)
