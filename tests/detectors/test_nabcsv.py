import csv
from pathlib import Path

import numpy as np
import pytest

from detectors.nabcsv import detect_csv, load_spec, main

NAB_FILE = (Path(__file__).resolve().parents[3] / "shared" / "nab" / "data"
            / "artificialWithAnomaly" / "art_daily_jumpsup.csv")


def _write_generated(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    x = 20 + 5 * np.sin(2 * np.pi * np.arange(n) / 288) + rng.normal(size=n)
    x[900:] += 10
    with open(path, "w", newline="") as fh:
        fh.write("timestamp,value\n")
        for i, v in enumerate(x):
            h, m = divmod(i * 5, 60)
            d, h = divmod(h, 24)
            fh.write(f"2014-04-{d + 1:02d} {h:02d}:{m:02d}:00,{v:.4f}\n")


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_prefix_of_the_input_gives_the_same_rows(tmp_path):
    full_in = tmp_path / "full.csv"
    if NAB_FILE.exists():
        lines = NAB_FILE.read_text().splitlines()[:1400]
        full_in.write_text("\n".join(lines) + "\n")
    else:
        _write_generated(full_in, 1399)  # and the header: 1400 lines, as the excerpt above
    prefix_in = tmp_path / "prefix.csv"
    prefix_in.write_text("\n".join(full_in.read_text().splitlines()[:1001]) + "\n")
    detect_csv(None, full_in, tmp_path / "full_out.csv")
    detect_csv(None, prefix_in, tmp_path / "prefix_out.csv")
    full, prefix = _rows(tmp_path / "full_out.csv"), _rows(tmp_path / "prefix_out.csv")
    assert full[0] == ["timestamp", "value", "anomaly_score", "is_anomaly"]
    assert len(full) == 1400 and len(prefix) == 1001
    assert prefix == full[:1001]
    inputs = _rows(full_in)
    for out, inp in zip(full[1:], inputs[1:], strict=True):
        assert out[:2] == inp[:2]
        assert 0.0 <= float(out[2]) <= 1.0 and out[3] in ("0", "1")


def test_config_uses_first_detector_and_cli_reports_bad_input(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("detectors:\n  - name: a\n    sensitivity: 0.2\n  - name: b\n")
    assert load_spec(cfg).name == "a" and load_spec(cfg).sensitivity == 0.2
    bad = tmp_path / "bad.csv"
    bad.write_text("time,v\n")
    assert main(["--config", str(cfg), "--input", str(bad), "--output", str(tmp_path / "o.csv")]) == 1
    assert "expected header" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["detectors: {}\n", "detectors:\n  - name: x\n    warmup: -1\n"])
def test_invalid_config_is_rejected(tmp_path, text):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ValueError, match="detectors"):
        load_spec(cfg)


def _detect(tmp_path, config: str | None, csv_bytes: bytes) -> tuple[int, str]:
    import subprocess
    import sys

    (tmp_path / "in.csv").write_bytes(csv_bytes)
    cmd = [sys.executable, "-m", "daemon.cli", "detect", "--input", str(tmp_path / "in.csv"),
           "--output", str(tmp_path / "out.csv")]
    if config is not None:
        (tmp_path / "c.yaml").write_text(config)
        cmd += ["--config", str(tmp_path / "c.yaml")]
    done = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
                          timeout=120)
    return done.returncode, done.stderr


@pytest.mark.parametrize("config, csv_bytes, message", [
    ("cmdb: [cmdb.yaml\n", b"timestamp,value\n", "c.yaml:2: invalid YAML"),
    ("detectors:\n  - name: d\n    params: {bogus_param: 1}\n", b"timestamp,value\n",
     "c.yaml:3: detectors[0].params: knn takes no parameter 'bogus_param'"),
    ("detectors:\n  - {name: d, model: lof, params: {n_neighbors: x}}\n", b"timestamp,value\n",
     "c.yaml:2: detectors[0].params: lof refuses them: The 'n_neighbors' parameter"),
    ("detectors:\n  - {name: d, params: {n_neighbors: 100, metric: manhattan}}\n", b"timestamp,value\n",
     "c.yaml:2: detectors[0].params: knn refuses them: Expected n_neighbors < n_samples_fit"),
    ("cmdb: [missing.yaml]\n", b"timestamp,value\n", "missing.yaml"),
    (None, b"timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,\xff\n", "in.csv:3: not UTF-8 text"),
    (None, b"timestamp,value\n2014-04-01 00:00:00," + b"1" * 200_000 + b"\n",
     "in.csv:2: field larger than field limit"),
    ("detectors:\n  - {name: d, stale_after: .nan}\n", b"timestamp,value\n",
     "c.yaml:2: detectors[0].stale_after: must be a positive, finite duration, got nan"),
])
def test_detect_fails_in_one_line_naming_the_file_and_line(tmp_path, config, csv_bytes, message):
    code, err = _detect(tmp_path, config, csv_bytes)
    assert code == 1
    [line] = err.strip().splitlines()  # no traceback
    assert line.startswith("incidentd: ") and message in line, line
    assert not (tmp_path / "out.csv").exists()


def test_rows_out_of_order_or_repeated_are_skipped_with_a_warning_and_keep_their_output_row(tmp_path):
    rows = ["2014-04-01 00:00:00,1", "2014-04-01 00:05:00,2", "2014-04-01 00:05:00,3",  # repeated
            "2014-04-01 00:10:00,4", "2014-04-01 00:02:00,5", "2014-04-01 00:15:00,6"]  # back in time
    code, err = _detect(tmp_path, None, ("timestamp,value\n" + "\n".join(rows) + "\n").encode())
    assert code == 0
    assert err.splitlines() == [
        f"incidentd: warning: {tmp_path}/in.csv:4: timestamp 2014-04-01 00:05:00 is not after the previous"
        " row's (2014-04-01 00:05:00); rows out of order or repeated are not fed to the detector and score 0"
        " (2 in this file)"]
    out = _rows(tmp_path / "out.csv")
    assert [r[:2] for r in out[1:]] == [r.split(",") for r in rows]  # one row per input row, in order
    assert [r[2:] for r in (out[3], out[5])] == [["0.000000000", "0"]] * 2
    code, err = _detect(tmp_path, None, ("timestamp,value\n" + "\n".join(rows[:2] + rows[3:4]) + "\n").encode())
    assert (code, err) == (0, "")


def test_a_byte_order_mark_and_crlf_lines_give_the_rows_of_the_plain_file(tmp_path):
    _write_generated(tmp_path / "plain.csv", 300)
    plain = (tmp_path / "plain.csv").read_bytes()
    code, err = _detect(tmp_path, None, b"\xef\xbb\xbf" + plain.replace(b"\n", b"\r\n") + b"\r\n")
    assert (code, err) == (0, "")
    detect_csv(None, tmp_path / "plain.csv", tmp_path / "plain_out.csv")
    assert _rows(tmp_path / "out.csv") == _rows(tmp_path / "plain_out.csv")
    assert len(_rows(tmp_path / "out.csv")) == 301


@pytest.mark.parametrize("form", ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%S+00:00",
                                  "%Y-%m-%d %H:%M:%S.%f"])
def test_iso_8601_timestamps_give_the_scores_of_nab_ones(tmp_path, form):
    from datetime import datetime

    _write_generated(tmp_path / "plain.csv", 300)
    plain = _rows(tmp_path / "plain.csv")
    iso = [plain[0]] + [[datetime.strptime(t, "%Y-%m-%d %H:%M:%S").strftime(form), v] for t, v in plain[1:]]
    code, err = _detect(tmp_path, None, "".join(f"{t},{v}\n" for t, v in iso).encode())
    assert (code, err) == (0, "")
    detect_csv(None, tmp_path / "plain.csv", tmp_path / "plain_out.csv")
    out = _rows(tmp_path / "out.csv")
    assert [r[0] for r in out] == [r[0] for r in iso]  # copied as written
    assert [r[1:] for r in out] == [r[1:] for r in _rows(tmp_path / "plain_out.csv")]


def test_an_empty_value_cell_is_a_missing_value_scored_0_as_nan(tmp_path):
    _write_generated(tmp_path / "plain.csv", 400)
    rows = _rows(tmp_path / "plain.csv")
    for i in (3, 150, 320):
        rows[i][1] = ""
    code, err = _detect(tmp_path, None, "".join(f"{t},{v}\n" for t, v in rows).encode())
    assert (code, err) == (0, "")
    out = _rows(tmp_path / "out.csv")
    assert [r[:2] for r in out[1:]] == rows[1:] and [out[i][2:] for i in (3, 150, 320)] == [["0.000000000", "0"]] * 3
    for i in (3, 150, 320):
        rows[i][1] = "nan"
    (tmp_path / "nan.csv").write_text("".join(f"{t},{v}\n" for t, v in rows))
    detect_csv(None, tmp_path / "nan.csv", tmp_path / "nan_out.csv")
    assert [r[2:] for r in out] == [r[2:] for r in _rows(tmp_path / "nan_out.csv")]


def test_detect_names_the_file_it_cannot_read_or_write(tmp_path):
    import subprocess
    import sys

    (tmp_path / "in.csv").write_text("timestamp,value\n2014-04-01 00:00:00,1\n")
    (tmp_path / "out").mkdir()
    for args, message in ((["--input", "nosuch.csv", "--output", "o.csv"],
                           "incidentd: nosuch.csv: cannot read: No such file or directory"),
                          (["--input", "in.csv", "--output", "out"], "incidentd: out: cannot write: Is a directory")):
        done = subprocess.run([sys.executable, "-m", "daemon.cli", "detect", *args], cwd=tmp_path, text=True,
                              capture_output=True, timeout=120,
                              env={"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"})
        assert (done.returncode, done.stderr.strip()) == (1, message)
