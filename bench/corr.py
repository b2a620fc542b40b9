"""Replays the dev-sockshop correlation scenario with `incidentd replay` and scores it.

    python bench/corr.py [--shared ../shared/corr]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "corr"))
    p.add_argument("--scenario", default="dev-sockshop")
    args = p.parse_args()
    scen = os.path.join(args.shared, args.scenario)
    if not os.path.isdir(scen):
        print(f"scenario not found: {scen}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "config.yaml")
        with open(cfg, "w") as fh:
            fh.write(f"cmdb: [{os.path.abspath(os.path.join(scen, 'cmdb.yaml'))}]\n")
        out = os.path.join(tmp, "result.json")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "daemon.cli", "replay", "--config", cfg,
                        "--input", os.path.join(scen, "events.jsonl"), "--output", out],
                       check=True, cwd=ROOT)
        print(f"replay: {time.perf_counter() - t0:.2f}s")
        subprocess.run([sys.executable, os.path.join(args.shared, "score.py"),
                        "--truth", os.path.join(scen, "truth.json"), "--result", out], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
