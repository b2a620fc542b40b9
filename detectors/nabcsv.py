"""``incidentd detect``: stream one NAB-layout CSV through the online detector.

Input ``timestamp,value``; output ``timestamp,value,anomaly_score,is_anomaly``
with one row per input row, in order, timestamps and values copied verbatim
(CONTRACT.md section 5). ``is_anomaly`` is 1 on the rows where the detector
raises its alert (an episode opens), i.e. exactly when the daemon would
send an alert; the rows of an episode that is already open are 0, so one
degradation is one detection. ``anomaly_score`` is in the same spirit, so
that thresholding it (NAB's ``--mode threshold`` and ``optimize``) is
meaningful: the surprise ``-log10 p`` of the anomaly likelihood, scaled into
[0, 1], on the rows where it exceeds every surprise of the previous
``REFRACTORY`` rows, and 0 on the others. A threshold T then detects the
rows where the surprise first rises above T (or above its recent peak),
not every row of a long excursion. (Measured on NAB with NAB's optimize
sweep: 38.4 / 32.8 / 43.2 against 27.3 / 5.1 / 35.7 for ``1 - p`` on every
row.) The refit runs inline: row t depends only on
rows up to t, and a prefix of the input gives a prefix of the output.

A row whose timestamp is not after the one before it (out of order, or
repeated, as in a few of NAB's own files) is skipped by the detector, as the
daemon skips such a sample, and scores 0: it still has its output row, and
the command warns once, naming the first such row. A value that is empty or
not finite (NaN, inf) is likewise ignored by the detector and scores 0.

``python -m detectors.nabcsv --config C --input I --output O`` runs it alone.
"""

from __future__ import annotations

import argparse
import codecs
import collections
import csv
import io
import math
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detectors.decision import REFRACTORY
from detectors.series import SeriesDetector
from detectors.spec import DEFAULT_SPEC, DetectorSpec

if TYPE_CHECKING:
    from daemon.config import Config

# anomaly_score = -log10(tail probability) / SURPRISE_FULL, capped at 1, on
# the rows where that surprise is higher than on each of the previous
# REFRACTORY rows; 0 elsewhere.
SURPRISE_FULL = 30.0


def _rows(reader: Any, path: str | Path) -> Iterator[list[str]]:
    """The rows of a CSV reader; what the csv module refuses (a field over its size
    limit, a NUL byte) as a ValueError naming the file and the line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ValueError(f"{path}:{reader.line_num}: {exc}") from None
        yield row


def _epoch(text: str) -> float:
    text = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    try:  # other ISO 8601 forms (`T`, fractions, offsets); without an offset, UTC
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"unrecognised timestamp {text!r} (expected YYYY-MM-DD HH:MM:SS)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def load_spec(config_path: str | Path | None) -> DetectorSpec:
    """The first detector of the config file (read and checked as the daemon reads
    it: errors are `file:line: message`), or the built-in default."""
    if config_path is None:
        return DEFAULT_SPEC
    from daemon.config import ConfigError, load_config

    try:
        config = load_config(str(config_path))
    except ConfigError as exc:
        raise ValueError(exc.errors[0]) from None
    return spec_of(config)


def spec_of(config: Config) -> DetectorSpec:
    """The first detector of a loaded config, or the built-in default."""
    from detectors.config import load_detector_settings

    settings, errors = load_detector_settings(config)
    if errors:
        raise ValueError(errors[0])
    return settings.specs[0] if settings.specs else DEFAULT_SPEC


def detect_csv(spec: DetectorSpec | None, input_path: str | Path, output_path: str | Path) -> list[str]:
    """Run the detector over ``input_path`` and write the scores to ``output_path``;
    return the warnings (rows the detector skipped)."""
    detector = SeriesDetector(spec or DEFAULT_SPEC, inline_refit=True)
    recent: collections.deque[float] = collections.deque(maxlen=REFRACTORY)
    data = Path(input_path).read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]  # as editors and spreadsheets save UTF-8
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{input_path}:{line}: not UTF-8 text") from None
    with io.StringIO(text, newline="") as src:
        reader = _rows(csv.reader(src), input_path)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["timestamp", "value"]:
            raise ValueError(f"{input_path}: expected header timestamp,value")
        rows = []
        last_ts, last_text = -math.inf, ""
        skipped, first_skipped = 0, ""
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 2:
                raise ValueError(f"{input_path}:{lineno}: expected timestamp,value")
            ts_text, value_text = row[0], row[1]
            try:
                # an empty cell is a missing value: ignored by the detector, as NaN is
                value = float(value_text) if value_text.strip() else math.nan
                ts = _epoch(ts_text)
            except ValueError as exc:
                raise ValueError(f"{input_path}:{lineno}: {exc}") from None
            if ts <= last_ts:  # the detector skips it (`SeriesDetector.update`)
                if not skipped:
                    first_skipped = (f"{input_path}:{lineno}: timestamp {ts_text.strip()} is not after"
                                     f" the previous row's ({last_text.strip()})")
                skipped += 1
            else:
                last_ts, last_text = ts, ts_text
            away = detector.away(ts)  # as the daemon treats a series that was away
            if away == "gone":
                detector = SeriesDetector(spec or DEFAULT_SPEC, inline_refit=True)
            elif away == "quiet":
                detector.end_episode()
            d = detector.update(ts, value)
            prior = max(recent, default=0.0)
            recent.append(d.surprise)
            col = min(1.0, d.surprise / SURPRISE_FULL)
            if d.surprise <= prior:
                col = 0.0
            rows.append((ts_text, value_text, f"{col:.9f}", 1 if d.transition == "open" else 0))
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    with open(output_path, "w", newline="", encoding="utf-8") as dst:
        writer = csv.writer(dst, lineterminator="\n")
        writer.writerow(["timestamp", "value", "anomaly_score", "is_anomaly"])
        writer.writerows(rows)
    if skipped:
        return [f"{first_skipped}; rows out of order or repeated are not fed to the detector"
                f" and score 0 ({skipped} in this file)"]
    return []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detectors.nabcsv", description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=None)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    args = ap.parse_args(argv)
    try:
        warnings = detect_csv(load_spec(args.config), args.input, args.output)
    except (OSError, ValueError) as exc:
        print(f"detect: {exc}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"detect: warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
