"""Throughput and memory of `DetectorBank` with many live series.

    python bench/detect_throughput.py [--series 10000] [--samples 1200]

Feeds ``--series`` synthetic series (noise, some with a daily cycle) in
time order through one bank with inline refits, so the refit cost is
included and amortised as in production. The first ``warmup`` samples of a
series only fill its buffer; the report separates that phase from the
steady state where every sample is scored and refits run every
``refit_every`` samples. Memory per series is the growth of the process'
resident set (RSS) divided by the number of series.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timed import rss  # noqa: E402

from detectors.bank import DetectorBank  # noqa: E402
from detectors.spec import DEFAULT_SPEC  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=DEFAULT_SPEC.warmup + 2 * DEFAULT_SPEC.refit_every)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    n, m = args.series, args.samples
    t = np.arange(m)
    data = rng.normal(size=(n, m)).astype(np.float64)
    data[::3] += 5 * np.sin(2 * np.pi * t / 288)
    labels = [{"__name__": "bench_metric", "instance": f"host-{i}"} for i in range(n)]

    import pyod.models.knn  # noqa: F401  (import cost is not per sample)

    base = rss()
    bank = DetectorBank()
    warm_until = DEFAULT_SPEC.warmup
    t0 = time.perf_counter()
    t_steady = None
    for j in range(m):
        if j == warm_until:
            t_steady = time.perf_counter()
            traced_warm = rss()
        col = data[:, j]
        ts = j * 300.0
        for i in range(n):
            bank.observe(labels[i], ts, col[i])
    t_end = time.perf_counter()
    traced = rss() - base

    steady = (m - warm_until) * n
    print(f"series: {bank.series_count()}, samples per series: {m} "
          f"(warm-up {warm_until}, then {m - warm_until} scored, refit every "
          f"{DEFAULT_SPEC.refit_every}, model {DEFAULT_SPEC.model})")
    if t_steady is not None:
        print(f"warm-up phase: {warm_until * n / (t_steady - t0):,.0f} samples/s")
        print(f"steady state (scoring + amortised refits): {steady / (t_end - t_steady):,.0f} "
              f"samples/s on one core")
        print(f"memory after warm-up: {(traced_warm - base) / n / 1024:.1f} KiB per series")
    print(f"memory with fitted models: {traced / n / 1024:.1f} KiB per series")
    return 0


if __name__ == "__main__":
    sys.exit(main())
