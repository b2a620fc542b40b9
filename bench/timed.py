"""What the benchmarks share: `incidentd replay` as a whole process, timed; the resident
memory of this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def replay(config: str, events: str, out: str) -> tuple[float, dict[str, Any]]:
    """Replay `events` with `config` into `out`: the seconds it took and the result."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "daemon.cli", "replay", "--config", config,
                    "--input", events, "--output", out], cwd=ROOT, check=True)
    took = time.perf_counter() - t0
    with open(out) as fh:
        return took, json.load(fh)


def rss() -> int:
    """Resident set size of this process in bytes (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
