"""Memory of a long run: what the daemon holds must follow its open and recent
incidents, not every incident it ever had (those are in the store).

The development scenario's week (../shared/corr) repeated for longer and longer
periods is replayed in a process of its own, as the daemon runs it; after the event loop,
the process's resident memory and the incidents still alive in it (left to the
collector: the replay freezes its heap), against those the incident manager keeps.

    python bench/long_run.py [--events 50000,100000,200000,400000]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from corr_scale import SCENARIO, scenario_events_file  # noqa: E402
from corr_variants import _read  # noqa: E402
from timed import rss  # noqa: E402

from daemon.config import load_config  # noqa: E402
from daemon.incidents import Incident  # noqa: E402
from daemon.logs import quiet_logging  # noqa: E402
from daemon.replay import replay_events  # noqa: E402


def run(n_events: int, week: int) -> None:
    with tempfile.TemporaryDirectory(prefix="incidentd-long-") as tmp:
        events, cmdb, cfg = (
            os.path.join(tmp, n) for n in ("events.jsonl", "cmdb.yaml", "config.yaml")
        )
        scenario_events_file(events, n_events, cmdb)
        with open(cfg, "w") as fh:
            fh.write(f"cmdb: [{cmdb}]\n")
        config = load_config(cfg)
        gc.collect()
        before = rss() / 2**20
        t0 = time.perf_counter()
        components, store = replay_events(config, events, tmp)
        took = time.perf_counter() - t0
        written = store.query("SELECT COUNT(*) FROM incidents")[0][0]
        gc.unfreeze()
        gc.collect()
        alive = sum(1 for o in gc.get_objects() if isinstance(o, Incident))
        kept = len(components.incidents.incidents)
        grown = rss() / 2**20 - before
        store.close()
        print(
            f"{n_events} events ({n_events / week:.0f} weeks): event loop {took:.2f}s; "
            f"{written} incidents, {kept} kept by the manager, {alive} alive; "
            f"resident memory grew {grown:.0f} MB"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", default="50000,100000,200000,400000")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one run, in this process
    args = ap.parse_args()
    if not os.path.isdir(SCENARIO):
        sys.exit(f"{SCENARIO} not found")
    if args.one:
        quiet_logging()
        run(args.one, len(_read(SCENARIO)[0]))
        return
    for n in sorted(int(x) for x in args.events.split(",") if x):  # each in a fresh process
        subprocess.run([sys.executable, __file__, "--one", str(n)], check=True)


if __name__ == "__main__":
    main()
